"""Run the catalogue's checks against one backend and collect a :class:`Report`; shrink each failure to its calls.

Used by the CLI (every check in one event loop) and by the pytest contract classes (one check per test), so both run
the same checks the same way.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from sessionkv.testing.certify.catalogue import (
    CATALOGUE,
    MODEL_ID,
    Check,
    CheckSkipped,
    ContractViolation,
    Level,
    checks_for,
)
from sessionkv.testing.certify.harness import (
    STORE_METHODS,
    AdvancingClock,
    Harness,
    StoreFactory,
    TimeMode,
    accepts_clock,
    make_clock,
)
from sessionkv.testing.certify.model import Outcome, ReferenceModel, Step, compare, execute

__all__ = [
    "Backend",
    "CheckResult",
    "GuaranteeResult",
    "Report",
    "TargetError",
    "certify",
    "load_target",
    "prepare_backend",
    "run_check",
]

Status = Literal["PASS", "FAIL", "SKIPPED"]
DEFAULT_GRANULARITY_NS: Final = 1_000_000
MAX_SHRINK_STEPS: Final = 300
"""Recordings longer than this are reported as they are: replaying them many times would cost more than it tells."""


class TargetError(Exception):
    """The TARGET cannot be certified as given (usage error, exit status 2); the message says what to fix."""


@dataclass(frozen=True)
class Backend:
    """A store factory plus what the suite knows and was told about it."""

    factory: StoreFactory
    name: str
    accepts_clock: bool
    granularity_ns: int
    unsupported: Mapping[str, str] = field(default_factory=dict)
    """Check name or guarantee id -> why the backend does not support it (reported as SKIPPED with the reason)."""
    unavailable: StoreFactory | None = None
    """Returns a store whose backend is unreachable (enables the G15 check)."""

    def time_mode(self, *, real_time: bool = False) -> TimeMode:
        if self.accepts_clock and not real_time:
            return TimeMode(True, self.granularity_ns, "the factory accepts clock=")
        why = "--real-time was given" if self.accepts_clock else "the factory takes no clock= keyword"
        return TimeMode(False, self.granularity_ns, why)

    async def make(self, mode: TimeMode) -> tuple[Any, AdvancingClock | None]:
        clock = make_clock() if mode.virtual else None
        store = self.factory(clock=clock) if clock is not None else self.factory()
        if inspect.isawaitable(store):
            store = await store
        return store, clock


@dataclass
class CheckResult:
    name: str
    guarantee: str
    level: Level
    status: Status
    message: str = ""
    reproduction: list[str] = field(default_factory=list)
    shrunk: bool = False
    duration_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "guarantee": self.guarantee,
            "level": self.level,
            "status": self.status,
            "message": self.message,
            "reproduction": self.reproduction,
            "shrunk": self.shrunk,
            "duration_s": round(self.duration_s, 4),
        }


@dataclass
class GuaranteeResult:
    id: str
    statement: str
    checks: list[CheckResult]

    @property
    def status(self) -> Status:
        if any(c.status == "FAIL" for c in self.checks):
            return "FAIL"
        if any(c.status == "PASS" for c in self.checks):
            return "PASS"
        return "SKIPPED"

    @property
    def reason(self) -> str:
        """Why the row is SKIPPED (or which checks were skipped in a PASS row)."""
        skipped = [c for c in self.checks if c.status == "SKIPPED"]
        if not self.checks:
            return "not stated by the seed reference text; --level full checks it"
        if self.status == "SKIPPED":
            return "; ".join(dict.fromkeys(c.message for c in skipped))
        if self.status == "PASS" and skipped:
            return f"{len(skipped)} of {len(self.checks)} checks skipped: " + "; ".join(
                dict.fromkeys(c.message for c in skipped)
            )
        return ""


@dataclass
class Report:
    target: str
    level: Level
    seed: int
    mode: TimeMode
    guarantees: list[GuaranteeResult]
    duration_s: float = 0.0

    @property
    def failed(self) -> list[CheckResult]:
        return [c for g in self.guarantees for c in g.checks if c.status == "FAIL"]

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def status_of(self, guarantee: str) -> Status:
        return next(g.status for g in self.guarantees if g.id == guarantee)

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "level": self.level,
            "seed": self.seed,
            "time": {
                "mode": "virtual" if self.mode.virtual else "real",
                "tolerance_ns": self.mode.tolerance_ns,
                "granularity_ns": self.mode.granularity_ns,
                "description": self.mode.describe(),
            },
            "passed": not self.failed,
            "exit_status": self.exit_code,
            "duration_s": round(self.duration_s, 3),
            "guarantees": [
                {
                    "id": g.id,
                    "statement": g.statement,
                    "status": g.status,
                    "reason": g.reason,
                    "checks": [c.to_json() for c in g.checks],
                }
                for g in self.guarantees
            ],
        }


# -- the target -------------------------------------------------------------------------------------------------------


def load_target(target: str) -> StoreFactory:
    """Import ``package.module:callable`` (dotted attribute paths allowed after the colon; the current directory is
    importable, as with ``python -m``)."""
    module_name, colon, attribute = target.partition(":")
    if not colon or not module_name or not attribute:
        raise TargetError(f"TARGET must look like package.module:callable, got {target!r}")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does: a module next to the caller is importable
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise TargetError(
            f"cannot import module {module_name!r} ({exc}); check the spelling, install the package, "
            "or run from the directory that contains it"
        ) from exc
    except Exception as exc:
        raise TargetError(f"importing module {module_name!r} raised {type(exc).__name__}: {exc}") from exc
    found: Any = module
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            available = sorted(n for n in dir(module) if not n.startswith("_"))[:20]
            raise TargetError(
                f"module {module_name!r} has no attribute {attribute!r}; it has: {', '.join(available)}"
            ) from None
    if not callable(found):
        raise TargetError(f"{target} is a {type(found).__name__}, not callable; point at a function or class")
    return found  # type: ignore[no-any-return]


def _check_api(store: object, target: str) -> None:
    missing = [m for m in STORE_METHODS if not callable(getattr(store, m, None))]
    if missing:
        raise TargetError(
            f"{target}() returned {type(store).__module__}.{type(store).__name__}, which lacks the store API "
            f"({', '.join(missing)} missing); the callable must return a new SessionKVStore"
        )


async def prepare_backend(
    factory: StoreFactory,
    *,
    name: str | None = None,
    unsupported: Mapping[str, str] | None = None,
    unavailable: StoreFactory | None = None,
) -> Backend:
    """Call ``factory`` once to check it returns a store (and learn its granularity); start and close that store.

    Declarations come from the arguments, else from attributes of the factory (``unsupported``, ``unavailable``),
    else from the store (``certify_unsupported``, a class attribute or set per instance).
    """
    shown = str(name or getattr(factory, "__qualname__", None) or repr(factory))
    uses_clock = accepts_clock(factory)
    try:
        store = factory(clock=make_clock()) if uses_clock else factory()
        if inspect.isawaitable(store):
            store = await store
    except Exception as exc:
        raise TargetError(f"calling {shown}() raised {type(exc).__name__}: {exc}") from exc
    _check_api(store, shown)
    granularity = getattr(type(store), "expiry_granularity_ns", DEFAULT_GRANULARITY_NS)
    if not isinstance(granularity, int) or isinstance(granularity, bool) or granularity < 1:
        raise TargetError(f"{type(store).__name__}.expiry_granularity_ns must be a positive int, got {granularity!r}")
    try:
        await store.start()
        await store.close()
    except Exception as exc:
        raise TargetError(
            f"the store from {shown}() failed to start or close: {type(exc).__name__}: {exc}; is its backend running?"
        ) from exc
    declared: dict[str, str] = dict(getattr(store, "certify_unsupported", {}) or {})  # an instance may differ
    declared.update(getattr(factory, "unsupported", {}) or {})
    declared.update(unsupported or {})
    return Backend(
        factory,
        shown,
        uses_clock,
        granularity,
        declared,
        unavailable if unavailable is not None else getattr(factory, "unavailable", None),
    )


# -- one check --------------------------------------------------------------------------------------------------------


def _skip_reason(check: Check, backend: Backend) -> str | None:
    for key in (check.name, check.guarantee):
        if key in backend.unsupported:
            return f"declared unsupported: {backend.unsupported[key]}"
    if "unavailable" in check.needs and backend.unavailable is None:
        return "no unreachable-backend factory declared (set `unavailable` on the factory / the fixture)"
    return None


def _timeout(mode: TimeMode, check: Check) -> float:
    return 600.0 if check.guarantee == MODEL_ID else (120.0 if not mode.virtual else 60.0)


async def run_check(
    check: Check, backend: Backend, mode: TimeMode, *, seed: int = 0, level: Level = "full"
) -> CheckResult:
    """Run one check on fresh stores from ``backend`` and return its verdict, with a shrunk reproduction on failure."""
    reason = _skip_reason(check, backend)
    if reason is not None:
        return CheckResult(check.name, check.guarantee, check.level, "SKIPPED", reason)
    harness = Harness(lambda: backend.make(mode), mode, backend.unavailable, seed, level)
    started = time.perf_counter()
    result = CheckResult(check.name, check.guarantee, check.level, "PASS")
    try:
        async with asyncio.timeout(_timeout(mode, check)):
            await harness.open()
            await check.function(harness)
    except CheckSkipped as exc:
        result.status, result.message = "SKIPPED", str(exc)
    except ContractViolation as exc:
        result.status, result.message = "FAIL", str(exc)
        if exc.reproduction is not None:
            result.reproduction, result.shrunk = exc.reproduction, True
    except TimeoutError:
        result.status = "FAIL"
        result.message = f"did not finish within {_timeout(mode, check):g} s (a hang, or a deadlock in the store)"
    except Exception as exc:
        result.status, result.message = "FAIL", f"unexpected {type(exc).__name__}: {exc}"
    finally:
        await harness.close_all()
    if result.status == "FAIL" and not result.reproduction:
        result.reproduction, result.shrunk, note = await _reproduce(harness, backend, mode)
        if note:
            result.message += f" [{note}]"
    result.duration_s = time.perf_counter() - started
    return result


# -- shrinking a recorded failure -------------------------------------------------------------------------------------


@dataclass
class _Divergence:
    index: int
    lines: list[str]


async def _replay(backend: Backend, mode: TimeMode, steps: list[Step]) -> _Divergence | None:
    """Run ``steps`` on a fresh store next to the model; the first step whose outcome the model forbids, or None."""
    store, clock = await backend.make(mode)
    model = ReferenceModel()
    lines: list[str] = []
    await store.start()
    try:
        for index, step in enumerate(steps):
            if step.method == "advance":
                seconds = step.args[0]
                if clock is not None:
                    await clock.advance(seconds)
                else:
                    await asyncio.sleep(seconds)
                model.advance(seconds)
                lines.append(step.render())
                continue
            if step.method in ("start", "close"):
                continue
            expected: Outcome = model.apply(step)
            actual = await execute(store, step)
            problem = compare(step, expected, actual)
            if problem is not None:
                lines.append(f"{step.render()}  ->  {actual.render()}   <-- {problem}")
                return _Divergence(index, lines)
            lines.append(f"{step.render()}  ->  {actual.render()}")
    finally:
        await store.close()
    return None


async def _reproduce(harness: Harness, backend: Backend, mode: TimeMode) -> tuple[list[str], bool, str]:
    """The calls a failing check made, shrunk by replaying subsets against the model when the recording allows it."""
    recorded = [c.render() for c in harness.log]
    replayable = all(c.step is not None or c.text.startswith("# a fresh store") for c in harness.log)
    steps = [c.step for c in harness.log if c.step is not None]
    if not replayable:
        return recorded, False, "not shrunk: the check also acted outside the store (see the # lines)"
    if len(steps) > MAX_SHRINK_STEPS:
        return recorded, False, f"not shrunk: {len(steps)} recorded calls"
    budget_s = 20.0 if mode.virtual else 5.0
    deadline = time.perf_counter() + budget_s
    try:
        found = await _replay(backend, mode, steps)
        if found is None:
            return recorded, False, "not shrunk: replaying the recorded calls alone did not reproduce it"
        steps = steps[: found.index + 1]
        chunk = max(1, len(steps) // 2)
        while chunk >= 1 and time.perf_counter() < deadline:
            removed_any = False
            start = 0
            while start < len(steps) - 1 and time.perf_counter() < deadline:
                candidate = steps[:start] + steps[start + chunk :]
                if candidate and candidate[-1] is steps[-1]:
                    trial = await _replay(backend, mode, candidate)
                    if trial is not None:
                        steps, found, removed_any = candidate[: trial.index + 1], trial, True
                        continue
                start += chunk
            if not removed_any:
                chunk //= 2
        final = await _replay(backend, mode, steps)
    except Exception as exc:
        return recorded, False, f"not shrunk: replay raised {type(exc).__name__}: {exc}"
    if final is None:
        return recorded, False, "not shrunk: the failure did not reproduce on replay"
    return [f"{i + 1}. {line}" for i, line in enumerate(final.lines)], True, ""


# -- a whole run ------------------------------------------------------------------------------------------------------


async def certify(
    backend: Backend,
    *,
    level: Level = "full",
    seed: int = 0,
    real_time: bool = False,
    target: str | None = None,
    only: Callable[[Check], bool] | None = None,
    progress: Callable[[CheckResult], None] | None = None,
) -> Report:
    """Run every check of ``level`` (optionally filtered by ``only``) against ``backend``, one after the other."""
    mode = backend.time_mode(real_time=real_time)
    started = time.perf_counter()
    results: dict[str, list[CheckResult]] = {g.id: [] for g in CATALOGUE}
    for check in checks_for(level):
        if only is not None and not only(check):
            continue
        result = await run_check(check, backend, mode, seed=seed, level=level)
        results[check.guarantee].append(result)
        if progress is not None:
            progress(result)
    guarantees = [GuaranteeResult(g.id, g.statement, results[g.id]) for g in CATALOGUE]
    return Report(target or backend.name, level, seed, mode, guarantees, time.perf_counter() - started)
