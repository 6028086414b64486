"""The guarantee catalogue: every guarantee id, its statement, and the checks that certify it (each defined once).

A check is an ``async def check(h: Harness) -> None`` registered with :func:`check`; it raises
:class:`ContractViolation` when the store breaks its guarantee and :class:`CheckSkipped` when it cannot decide. The CLI
runner and the pytest contract classes both iterate :data:`CHECKS`, so they run the same code.

Levels: ``seed`` checks test only what the vision-agents reference text states (upsert of value and TTL, only_if_exists
on a missing key, per-item TTLs of mset, order and ``None`` of mget, expire on existing and missing keys, keys(prefix)
of live keys, delete ignoring missing keys, ``async with``). ``full`` adds every decision sessionkv fixes on top
(G01-G16 of :mod:`sessionkv.store`): input validation, literal prefixes, no resurrection, exact boundaries, atomicity,
isolation, unicode and empty keys, unavailability, plus the model-based test over random sequences.

Severities: a check's :class:`ContractViolation` is a **correctness** failure (data, expiry, batches, rejection of
non-finite or non-positive TTLs and of non-bytes values with nothing written...): it decides the exit status. The finer
argument points of G14 (a TTL above ``MAX_TTL``, a ``Fraction`` or ``bool`` TTL, a bare ``str`` given as a key list,
keys that are not ``str`` or hold a lone surrogate, which of ``TypeError``/``ValueError`` a rejection raises) are
**strictness** points: a check records them with ``Harness.warn`` and they are warnings unless ``--strict``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from sessionkv.store import GUARANTEES
from sessionkv.testing.certify.model import describe_difference, render_value

if TYPE_CHECKING:
    from sessionkv.testing.certify.harness import Harness

__all__ = [
    "CATALOGUE",
    "CHECKS",
    "Check",
    "CheckSkipped",
    "ContractViolation",
    "Guarantee",
    "Inconclusive",
    "Level",
    "Severity",
    "StrictnessWarning",
    "check",
    "checks_for",
]

Level = Literal["seed", "full"]
Severity = Literal["correctness", "strictness"]
LEVELS: Final = ("seed", "full")

MODEL_ID: Final = "MODEL"


class ContractViolation(AssertionError):
    """The store did something its contract forbids; the message says what, with the values seen.

    ``reproduction``, when given, is the minimal sequence of calls already found by the check itself (the model-based
    test shrinks on its own); otherwise the runner derives one from the calls the check recorded. ``fix`` says how to
    repair the store where sessionkv has the answer (else the check's own ``fix`` is shown). ``severity`` is
    ``"strictness"`` only for a check whose every point is a finer G14 point (the model-based test, when only a
    strictness input provokes the divergence).
    """

    def __init__(
        self,
        message: str,
        *,
        reproduction: list[str] | None = None,
        fix: str | None = None,
        severity: Severity = "correctness",
    ) -> None:
        super().__init__(message)
        self.reproduction = reproduction
        self.fix = fix
        self.severity: Severity = severity


class CheckSkipped(Exception):
    """A check cannot run: the backend declares it lacks a capability, or the harness cannot observe what it needs.

    ``required`` marks a check that should have run but could not in this environment (the model-based test without
    hypothesis): the run is then incomplete and exits non-zero unless ``--allow-skips``.
    """

    def __init__(self, reason: str, *, required: bool = False) -> None:
        super().__init__(reason)
        self.required = required


class StrictnessWarning(UserWarning):
    """A finer G14 point the store does not meet: a warning, a failure only under ``--strict`` / ``strict = True``."""


class Inconclusive(Exception):
    """Real time ran out under the check: its own calls took too much of the TTL to judge the store.

    The runner retries the check with a longer TTL and reports INCONCLUSIVE (never FAIL) if that does not help.
    """


@dataclass(frozen=True)
class Guarantee:
    id: str
    statement: str


CATALOGUE: Final[tuple[Guarantee, ...]] = (
    *(Guarantee(gid, statement) for gid, statement in GUARANTEES.items()),
    Guarantee(MODEL_ID, "random sequences of every operation and clock advances agree with the reference model"),
)
"""Every row of the report, in order: G01-G16 of :mod:`sessionkv.store` plus the model-based test."""

CheckFunction = Callable[["Harness"], Awaitable[None]]


@dataclass(frozen=True)
class Check:
    guarantee: str
    name: str
    """The test name without ``test_`` (it starts with the guarantee id), stable across releases."""
    level: Level
    function: CheckFunction
    needs: frozenset[str] = frozenset()
    """Capabilities the check needs beyond the store API (``"unavailable"``: a factory of an unreachable store)."""
    fix: str = ""
    """How to repair a store that fails this check, where sessionkv has the answer (shown under every failure)."""
    severity: Severity = "correctness"
    """``"strictness"``: every point the check makes is a finer G14 point (it can only warn, unless ``--strict``)."""

    @property
    def doc(self) -> str:
        return (self.function.__doc__ or "").strip().splitlines()[0] if self.function.__doc__ else self.name


CHECKS: dict[str, Check] = {}
"""Every check, by name, in definition order (the order they run and are reported in)."""


def check(
    guarantee: str,
    level: Level = "full",
    *,
    needs: frozenset[str] = frozenset(),
    fix: str = "",
    severity: Severity = "correctness",
) -> Callable[[CheckFunction], CheckFunction]:
    """Register ``async def <id>_<what>(h)`` as a check of ``guarantee`` at ``level``; ``fix`` is the repair advice."""
    if guarantee not in GUARANTEES and guarantee != MODEL_ID:
        raise ValueError(f"unknown guarantee id {guarantee!r}")

    def register(function: CheckFunction) -> CheckFunction:
        name = function.__name__
        if not name.startswith(guarantee + "_"):
            raise ValueError(f"check {name!r} must be named after its guarantee: {guarantee}_...")
        if name in CHECKS:
            raise ValueError(f"check {name!r} is defined twice")
        CHECKS[name] = Check(guarantee, name, level, function, needs, fix, severity)
        return function

    return register


def checks_for(level: Level) -> list[Check]:
    """The checks run at ``level`` (``full`` includes ``seed``), in catalogue order."""
    import sessionkv.testing.certify.checks
    import sessionkv.testing.certify.stateful  # noqa: F401 - registers the model-based check

    return [c for c in CHECKS.values() if level == "full" or c.level == "seed"]


def expect(condition: bool, message: str, *, fix: str | None = None) -> None:
    """Raise :class:`ContractViolation` with ``message`` (and ``fix``) unless ``condition``."""
    if not condition:
        raise ContractViolation(message, fix=fix)


def expect_equal(actual: object, expected: object, what: str, *, fix: str | None = None) -> None:
    """Raise :class:`ContractViolation` unless ``actual == expected``; long collections are elided with counts."""
    if actual != expected:
        raise ContractViolation(f"{what}: {describe_difference(actual, expected)}", fix=fix)


async def expect_raises(
    kind: type[BaseException] | tuple[type[BaseException], ...], call: Awaitable[object], what: str
) -> BaseException:
    """Await ``call`` and return the exception it raised, which must be a ``kind``."""
    names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
    try:
        result = await call
    except kind as exc:
        return exc
    except Exception as exc:
        raise ContractViolation(f"{what}: expected {names}, got {type(exc).__name__}: {exc}") from exc
    raise ContractViolation(f"{what}: expected {names}, but the call returned {render_value(result)}")


Unsupported = Mapping[str, str]
"""Declared unsupported checks: check name or guarantee id -> reason (shown in the report as SKIPPED)."""
