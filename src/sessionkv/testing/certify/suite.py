"""Contract test classes: a backend's own CI runs the identical certification suite by subclassing one class.

::

    from sessionkv.testing.certify.suite import SessionKVStoreContract

    class TestMyStore(SessionKVStoreContract):
        unsupported = {"G15": "an in-process store cannot become unreachable"}   # optional: shown as skip reasons

        @pytest.fixture
        def store_factory(self):
            return lambda *, clock=None: MyStore(clock=clock)    # accept clock= for exact, instant expiry checks

One test per check of :data:`~sessionkv.testing.certify.catalogue.CHECKS`, named ``test_<guarantee id>_<what>``; each
runs the check through the same runner as ``sessionkv certify`` (fresh stores, its own event loop), so a failure shows
the same message, fix and reproducing calls. The verdicts map to pytest as the CLI's do to its exit status: FAIL fails
the test; WARN (strictness points only) passes with a :class:`StrictnessWarning` per point, or fails when the class
sets ``strict = True``; INCONCLUSIVE (real time ran out on every attempt) and SKIPPED skip with the reason. The tests
are plain synchronous functions: they work in pytest-asyncio strict and auto mode and without pytest-asyncio at all.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import pytest

from sessionkv.testing.certify.catalogue import Check, Level, StrictnessWarning, checks_for
from sessionkv.testing.certify.harness import StoreFactory
from sessionkv.testing.certify.runner import CheckResult, prepare_backend, run_check

__all__ = ["SessionKVStoreContract", "StrictnessWarning"]


class SessionKVStoreContract:
    """Every certification check as a pytest test. Subclass it as ``Test...`` and override :meth:`store_factory`.

    Class attributes: ``level`` (``"full"`` or ``"seed"``), ``unsupported`` (check name or guarantee id -> reason:
    those tests skip with the reason), ``real_time`` (use real TTLs even if the factory accepts ``clock=``), ``seed``
    (of the model-based test), ``strict`` (strictness warnings fail the test). Override
    :meth:`unavailable_store_factory` to enable G15.
    """

    level: ClassVar[Level] = "full"
    unsupported: ClassVar[Mapping[str, str]] = {}
    real_time: ClassVar[bool] = False
    seed: ClassVar[int] = 0
    strict: ClassVar[bool] = False

    @pytest.fixture
    def store_factory(self) -> StoreFactory:
        """Override: return a callable that returns a new, not yet started store (may accept ``clock=``)."""
        pytest.skip(f"{type(self).__name__} does not override the store_factory fixture")

    @pytest.fixture
    def unavailable_store_factory(self) -> StoreFactory | None:
        """Override to enable G15: a callable returning a store whose backend cannot be reached."""
        return None

    def run_contract_check(
        self, check: Check, store_factory: StoreFactory, unavailable_store_factory: StoreFactory | None
    ) -> CheckResult:
        if self.level == "seed" and check.level != "seed":
            pytest.skip("not part of the seed level")

        async def run() -> CheckResult:
            backend = await prepare_backend(
                store_factory,
                name=type(self).__name__,
                unsupported=self.unsupported,
                unavailable=unavailable_store_factory,
            )
            return await run_check(
                check, backend, backend.time_mode(real_time=self.real_time), seed=self.seed, level=self.level
            )

        result = asyncio.run(run())
        if result.status == "SKIPPED":
            pytest.skip(result.message)
        if result.status == "INCONCLUSIVE":
            pytest.skip(f"INCONCLUSIVE: {result.message}")
        failing = result.status == "FAIL" or (self.strict and result.status == "WARN")
        if failing:
            lines = [f"{check.guarantee} violated: {result.message}"]
            lines += [f"  - {warning}" for warning in result.warnings]
            if result.fix:
                lines.append(f"  fix: {result.fix}")
            if result.reproduction:
                lines.append("  " + ("smallest reproducing sequence:" if result.shrunk else "calls the check made:"))
                lines += [f"    {line}" for line in result.reproduction[-60:]]
            pytest.fail("\n".join(lines), pytrace=False)
        for warning in result.warnings:
            fix = f" (fix: {result.fix})" if result.fix else ""
            warnings.warn(StrictnessWarning(f"{check.name}: {warning}{fix}"), stacklevel=2)
        return result


def _make_test(check: Check) -> Callable[..., None]:
    def test(
        self: SessionKVStoreContract, store_factory: StoreFactory, unavailable_store_factory: StoreFactory | None
    ) -> None:
        self.run_contract_check(check, store_factory, unavailable_store_factory)

    test.__name__ = test.__qualname__ = f"test_{check.name}"
    test.__doc__ = check.doc
    return test


def _install_tests(target: Any) -> None:
    for check in checks_for("full"):
        setattr(target, f"test_{check.name}", _make_test(check))


_install_tests(SessionKVStoreContract)
