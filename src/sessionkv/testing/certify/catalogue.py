"""The guarantee catalogue: every guarantee id, its statement, and the checks that certify it (each defined once).

A check is an ``async def check(h: Harness) -> None`` registered with :func:`check`; it raises
:class:`ContractViolation` when the store breaks its guarantee and :class:`CheckSkipped` when it cannot decide. The CLI
runner and the pytest contract classes both iterate :data:`CHECKS`, so they run the same code.

Levels: ``seed`` checks test only what the vision-agents reference text states (upsert of value and TTL, only_if_exists
on a missing key, per-item TTLs of mset, order and ``None`` of mget, expire on existing and missing keys, keys(prefix)
of live keys, delete ignoring missing keys, ``async with``). ``full`` adds every decision sessionkv fixes on top
(G01-G16 of :mod:`sessionkv.store`): input validation, literal prefixes, no resurrection, exact boundaries, atomicity,
isolation, unicode and empty keys, unavailability, plus the model-based test over random sequences.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from sessionkv.store import GUARANTEES

if TYPE_CHECKING:
    from sessionkv.testing.certify.harness import Harness

__all__ = [
    "CATALOGUE",
    "CHECKS",
    "Check",
    "CheckSkipped",
    "ContractViolation",
    "Guarantee",
    "Level",
    "check",
    "checks_for",
]

Level = Literal["seed", "full"]
LEVELS: Final = ("seed", "full")

MODEL_ID: Final = "MODEL"


class ContractViolation(AssertionError):
    """The store did something its contract forbids; the message says what, with the values seen.

    ``reproduction``, when given, is the minimal sequence of calls already found by the check itself (the model-based
    test shrinks on its own); otherwise the runner derives one from the calls the check recorded.
    """

    def __init__(self, message: str, *, reproduction: list[str] | None = None) -> None:
        super().__init__(message)
        self.reproduction = reproduction


class CheckSkipped(Exception):
    """A check could not reach a verdict (a capability the backend declares it lacks, or an inconclusive timing)."""


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

    @property
    def doc(self) -> str:
        return (self.function.__doc__ or "").strip().splitlines()[0] if self.function.__doc__ else self.name


CHECKS: dict[str, Check] = {}
"""Every check, by name, in definition order (the order they run and are reported in)."""


def check(
    guarantee: str, level: Level = "full", *, needs: frozenset[str] = frozenset()
) -> Callable[[CheckFunction], CheckFunction]:
    """Register ``async def <id>_<what>(h)`` as a check of ``guarantee`` at ``level``."""
    if guarantee not in GUARANTEES and guarantee != MODEL_ID:
        raise ValueError(f"unknown guarantee id {guarantee!r}")

    def register(function: CheckFunction) -> CheckFunction:
        name = function.__name__
        if not name.startswith(guarantee + "_"):
            raise ValueError(f"check {name!r} must be named after its guarantee: {guarantee}_...")
        if name in CHECKS:
            raise ValueError(f"check {name!r} is defined twice")
        CHECKS[name] = Check(guarantee, name, level, function, needs)
        return function

    return register


def checks_for(level: Level) -> list[Check]:
    """The checks run at ``level`` (``full`` includes ``seed``), in catalogue order."""
    import sessionkv.testing.certify.checks
    import sessionkv.testing.certify.stateful  # noqa: F401 - registers the model-based check

    return [c for c in CHECKS.values() if level == "full" or c.level == "seed"]


def expect(condition: bool, message: str) -> None:
    """Raise :class:`ContractViolation` with ``message`` unless ``condition``."""
    if not condition:
        raise ContractViolation(message)


def expect_equal(actual: object, expected: object, what: str) -> None:
    if actual != expected:
        raise ContractViolation(f"{what}: expected {expected!r}, got {actual!r}")


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
    raise ContractViolation(f"{what}: expected {names}, but the call returned {result!r}")


Unsupported = Mapping[str, str]
"""Declared unsupported checks: check name or guarantee id -> reason (shown in the report as SKIPPED)."""
