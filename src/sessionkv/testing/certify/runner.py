"""Run the catalogue's checks against one backend and collect a :class:`Report`; shrink each failure to its calls.

Used by the CLI (every check in one event loop) and by the pytest contract classes (one check per test), so both run
the same checks the same way.

Verdicts of one check: PASS; WARN (correct, but strictness points not met: a failure only under ``--strict``); FAIL
(a correctness failure); INCONCLUSIVE (real time: the check's own calls overran every TTL it was tried with, so nothing
was proved either way); SKIPPED (declared unsupported, a missing capability, or, marked ``required``, a check that
could not run here). Exit status: 0, or 1 for any FAIL (and WARN under ``--strict``), else 3 when the run is incomplete
(INCONCLUSIVE or a required check not run) unless ``--allow-skips``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from sessionkv.testing.certify.catalogue import (
    CATALOGUE,
    MODEL_ID,
    Check,
    CheckSkipped,
    ContractViolation,
    Inconclusive,
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
from sessionkv.testing.virtual_time import VirtualClock

__all__ = [
    "Backend",
    "CheckResult",
    "GuaranteeResult",
    "Report",
    "TargetError",
    "Verdicts",
    "certify",
    "load_target",
    "prepare_backend",
    "run_check",
    "verdict_mismatches",
]

Status = Literal["PASS", "WARN", "FAIL", "INCONCLUSIVE", "SKIPPED"]
EXIT_PASS: Final = 0
EXIT_FAIL: Final = 1
EXIT_INCOMPLETE: Final = 3
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
    follows_wall_clock: bool = False
    """Declared (``factory.follows_wall_clock = True``): the store reads the process's wall clock (``time.time()``),
    so on a virtual clock that clock patches the wall clock while each check runs."""

    def time_mode(self, *, real_time: bool = False) -> TimeMode:
        if self.accepts_clock and not real_time:
            why = "the factory accepts clock="
            if self.follows_wall_clock:
                why += " and follows the wall clock"
            return TimeMode(True, self.granularity_ns, why, wall_clock=self.follows_wall_clock)
        why = "--real-time was given" if self.accepts_clock else "the factory takes no clock= keyword"
        return TimeMode(False, self.granularity_ns, why)

    async def make(self, mode: TimeMode, clock: AdvancingClock | None = None) -> tuple[Any, AdvancingClock | None]:
        """A new store for ``mode``: on a virtual clock, on ``clock`` (the check's) or a new one."""
        if mode.virtual and clock is None:
            clock = make_clock()
        store = self.factory(clock=clock) if mode.virtual else self.factory()
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
    fix: str = ""
    """How to repair the store (FAIL and WARN), where sessionkv has the answer."""
    warnings: list[str] = field(default_factory=list)
    """The strictness points not met (WARN; also kept on a FAIL)."""
    required: bool = False
    """SKIPPED: the check should have run but could not here (the run is incomplete)."""
    attempts: list[str] = field(default_factory=list)
    """Real time: why earlier attempts with shorter TTLs were not judged (their calls overran the TTL)."""

    @property
    def incomplete(self) -> bool:
        return self.status == "INCONCLUSIVE" or (self.status == "SKIPPED" and self.required)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "guarantee": self.guarantee,
            "level": self.level,
            "status": self.status,
            "message": self.message,
            "fix": self.fix,
            "warnings": self.warnings,
            "required": self.required,
            "attempts": self.attempts,
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
        """The worst verdict of its checks: FAIL, INCONCLUSIVE, WARN, PASS; SKIPPED when none ran."""
        order: tuple[Status, ...] = ("FAIL", "INCONCLUSIVE", "WARN", "PASS")
        for status in order:
            if any(c.status == status for c in self.checks):
                return status
        return "SKIPPED"

    @property
    def warning_count(self) -> int:
        return sum(len(c.warnings) for c in self.checks)

    @property
    def reason(self) -> str:
        """Why the row is SKIPPED or INCONCLUSIVE (or which checks were skipped in a row that ran)."""
        skipped = [c for c in self.checks if c.status == "SKIPPED"]
        if not self.checks:
            return "not stated by the seed reference text; --level full checks it"
        if self.status == "SKIPPED":
            return "; ".join(dict.fromkeys(c.message for c in skipped))
        if self.status == "INCONCLUSIVE":
            return "; ".join(dict.fromkeys(c.message for c in self.checks if c.status == "INCONCLUSIVE"))
        if skipped:
            return f"{len(skipped)} of {len(self.checks)} checks skipped: " + "; ".join(
                dict.fromkeys(c.message for c in skipped)
            )
        return ""


Verdicts = Mapping[str, Status]
"""Guarantee id -> row status (``Report.verdicts()``, the ``verdicts`` object of the JSON report)."""


@dataclass
class Report:
    target: str
    level: Level
    seed: int
    mode: TimeMode
    guarantees: list[GuaranteeResult]
    duration_s: float = 0.0
    strict: bool = False
    """``--strict``: strictness warnings are failures."""
    allow_skips: bool = False
    """``--allow-skips``: an incomplete run (INCONCLUSIVE, a required check not run) may still exit 0."""

    @property
    def checks(self) -> list[CheckResult]:
        return [c for g in self.guarantees for c in g.checks]

    @property
    def failed(self) -> list[CheckResult]:
        """The checks that decide a non-zero exit: FAIL, and WARN under ``--strict``."""
        return [c for c in self.checks if c.status == "FAIL" or (self.strict and c.status == "WARN")]

    @property
    def warned(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status == "WARN"]

    @property
    def incomplete(self) -> list[CheckResult]:
        return [c for c in self.checks if c.incomplete]

    @property
    def exit_code(self) -> int:
        if self.failed:
            return EXIT_FAIL
        if self.incomplete and not self.allow_skips:
            return EXIT_INCOMPLETE
        return EXIT_PASS

    def status_of(self, guarantee: str) -> Status:
        return next(g.status for g in self.guarantees if g.id == guarantee)

    def verdicts(self) -> dict[str, Status]:
        """Guarantee id -> row status: compare a run with a documented expectation (:func:`verdict_mismatches`)."""
        return {g.id: g.status for g in self.guarantees}

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "level": self.level,
            "seed": self.seed,
            "strict": self.strict,
            "allow_skips": self.allow_skips,
            "time": {
                "mode": "virtual" if self.mode.virtual else "real",
                "tolerance_ns": self.mode.tolerance_ns,
                "granularity_ns": self.mode.granularity_ns,
                "description": self.mode.describe(),
            },
            "passed": self.exit_code == EXIT_PASS,
            "exit_status": self.exit_code,
            "counts": {
                status: sum(c.status == status for c in self.checks)
                for status in ("PASS", "WARN", "FAIL", "INCONCLUSIVE", "SKIPPED")
            },
            "warnings": sum(len(c.warnings) for c in self.checks),
            "verdicts": self.verdicts(),
            "duration_s": round(self.duration_s, 3),
            "guarantees": [
                {
                    "id": g.id,
                    "statement": g.statement,
                    "status": g.status,
                    "warnings": g.warning_count,
                    "reason": g.reason,
                    "checks": [c.to_json() for c in g.checks],
                }
                for g in self.guarantees
            ],
        }


def verdict_mismatches(actual: Report | Mapping[str, Any], expected: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """Guarantee id -> (expected, actual) for every id of ``expected`` whose row status differs; ``{}`` when all agree.

    ``actual`` is a :class:`Report` or its JSON document (``sessionkv certify --json PATH``, loaded). ``expected`` maps
    ids to a status (``"PASS"``, ``"WARN"``, ``"FAIL"``, ``"INCONCLUSIVE"``, ``"SKIPPED"``); ids it leaves out are not
    compared. An unknown id is reported with the actual status ``"MISSING"``.
    """
    if isinstance(actual, Report):
        found: Mapping[str, Any] = actual.verdicts()
    else:
        found = actual.get("verdicts") or {row["id"]: row["status"] for row in actual["guarantees"]}
    return {gid: (want, str(found.get(gid, "MISSING"))) for gid, want in expected.items() if found.get(gid) != want}


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

    Declarations come from the arguments, else from attributes of the factory (``unsupported``, ``unavailable``,
    ``follows_wall_clock``), else from the store (``certify_unsupported``, a class attribute or set per instance).
    """
    shown = str(name or getattr(factory, "__qualname__", None) or repr(factory))
    uses_clock = accepts_clock(factory)
    wall_clock = bool(getattr(factory, "follows_wall_clock", False)) and uses_clock
    try:
        clock = make_clock() if uses_clock else None
        with _wall_clock_of(clock if wall_clock else None):
            store = factory(clock=clock) if uses_clock else factory()
            if inspect.isawaitable(store):
                store = await store
    except Exception as exc:
        raise TargetError(f"calling {shown}() raised {type(exc).__name__}: {exc}") from exc
    _check_api(store, shown)
    granularity = getattr(type(store), "expiry_granularity_ns", DEFAULT_GRANULARITY_NS)
    if not isinstance(granularity, int) or isinstance(granularity, bool) or granularity < 1:
        raise TargetError(f"{type(store).__name__}.expiry_granularity_ns must be a positive int, got {granularity!r}")
    try:
        with _wall_clock_of(clock if wall_clock else None):
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
        wall_clock,
    )


def _wall_clock_of(clock: AdvancingClock | None) -> contextlib.AbstractContextManager[None]:
    """The wall-clock patch of ``clock`` (a :class:`VirtualClock`), or nothing."""
    if isinstance(clock, VirtualClock):
        return clock.patch_wall_clock()
    return contextlib.nullcontext()


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
    """Run one check on fresh stores from ``backend`` and return its verdict, with a shrunk reproduction on failure.

    Real time: a failure of an attempt whose own calls overran its short TTL proves nothing, so the check runs again
    with the next longer TTL (:data:`~sessionkv.testing.certify.harness.REAL_SHORT_TTLS`); after the last one the
    verdict is INCONCLUSIVE, never FAIL.
    """
    reason = _skip_reason(check, backend)
    if reason is not None:
        return CheckResult(check.name, check.guarantee, check.level, "SKIPPED", reason)
    started = time.perf_counter()
    attempts: list[str] = []
    attempt: TimeMode | None = mode
    while True:
        assert attempt is not None
        result, overran = await _attempt(check, backend, attempt, seed, level)
        if overran is None or result.status in ("PASS", "WARN", "SKIPPED"):
            break
        attempts.append(f"TTL {attempt.short_ttl * 1000:.0f} ms: {overran}")
        attempt = attempt.longer()
        if attempt is None:
            result = CheckResult(
                check.name,
                check.guarantee,
                check.level,
                "INCONCLUSIVE",
                f"real time ran out under the check on every attempt ({'; '.join(attempts)}): the machine or the "
                "backend is too slow to judge it; not a failure",
            )
            break
    result.attempts = attempts
    result.duration_s = time.perf_counter() - started
    return result


_RECANCEL_EVERY_S: Final = 0.5


@contextlib.asynccontextmanager
async def _insistent_timeout(delay: float) -> AsyncIterator[None]:
    """Like ``asyncio.timeout(delay)``, but a cancellation the check's code swallows is sent again.

    ``asyncio.timeout`` cancels once. A backend built on redis-py can lose that cancellation on Python 3.11 (redis-py
    sends through ``asyncio.wait_for``, which returns normally when the cancellation lands as the send completes:
    CPython gh-86296), and a check that loops over such a backend would then never end. Here the task is cancelled
    again every :data:`_RECANCEL_EVERY_S` seconds after the deadline until the block ends; the block then raises
    ``TimeoutError``, and the task's cancellation count is restored, exactly as ``asyncio.timeout`` leaves it.
    """
    task = asyncio.current_task()
    assert task is not None, "_insistent_timeout runs inside a task"
    loop = asyncio.get_running_loop()
    sent = 0
    handle: asyncio.TimerHandle | None = None

    def fire() -> None:
        nonlocal sent, handle
        sent += 1
        task.cancel()
        handle = loop.call_later(_RECANCEL_EVERY_S, fire)

    handle = loop.call_later(delay, fire)
    cancelling_before = task.cancelling()
    try:
        yield
    except asyncio.CancelledError:
        if sent and _uncancel(task, sent) <= cancelling_before:
            raise TimeoutError(f"did not finish within {delay:g} s") from None
        raise
    else:
        if sent:  # the body ended on its own although the deadline passed; keep the count balanced
            _uncancel(task, sent)
    finally:
        handle.cancel()


def _uncancel(task: asyncio.Task[Any], times: int) -> int:
    remaining = task.cancelling()
    for _ in range(times):
        remaining = task.uncancel()
    return remaining


async def _attempt(
    check: Check, backend: Backend, mode: TimeMode, seed: int, level: Level
) -> tuple[CheckResult, str | None]:
    """One run of ``check``; the second item says how real time overran the attempt (``None``: it did not)."""
    clock = make_clock() if mode.virtual else None
    harness = Harness(lambda: backend.make(mode, clock), mode, backend.unavailable, seed, level, clock)
    result = CheckResult(check.name, check.guarantee, check.level, "PASS", fix=check.fix)
    overran: str | None = None
    with _wall_clock_of(clock if mode.wall_clock else None):
        try:
            async with _insistent_timeout(_timeout(mode, check)):
                await harness.open()
                await check.function(harness)
        except CheckSkipped as exc:
            result.status, result.message, result.required = "SKIPPED", str(exc), exc.required
        except Inconclusive as exc:
            result.status, result.message = "INCONCLUSIVE", str(exc)
            overran = str(exc)
        except ContractViolation as exc:
            result.status = "WARN" if exc.severity == "strictness" else "FAIL"
            result.message, result.fix = str(exc), exc.fix or check.fix
            if exc.reproduction is not None:
                result.reproduction, result.shrunk = exc.reproduction, True
            if result.status == "WARN":
                harness.warnings.append(result.message)
        except TimeoutError:
            result.status = "FAIL"
            result.message = f"did not finish within {_timeout(mode, check):g} s (a hang, or a deadlock in the store)"
        except Exception as exc:
            result.status, result.message = "FAIL", f"unexpected {type(exc).__name__}: {exc}"
        finally:
            await harness.close_all()
        result.warnings = harness.warnings
        if result.status == "PASS" and harness.warnings:
            result.status = "WARN"
            result.message = f"{len(harness.warnings)} strictness point(s) not met"
        if result.status == "FAIL" and harness.window is not None and harness.window.overran:
            overran = harness.window.describe()
        if result.status == "FAIL" and overran is None and not result.reproduction:
            result.reproduction, result.shrunk, note = await _reproduce(harness, backend, mode, clock)
            if note:
                result.message += f" [{note}]"
    return result, overran


# -- shrinking a recorded failure -------------------------------------------------------------------------------------


@dataclass
class _Divergence:
    index: int
    lines: list[str]


async def _replay(
    backend: Backend, mode: TimeMode, steps: list[Step], clock: AdvancingClock | None
) -> _Divergence | None:
    """Run ``steps`` on a fresh store next to the model; the first step whose outcome the model forbids, or None."""
    store, clock = await backend.make(mode, clock)
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


async def _reproduce(
    harness: Harness, backend: Backend, mode: TimeMode, clock: AdvancingClock | None
) -> tuple[list[str], bool, str]:
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
        found = await _replay(backend, mode, steps, clock)
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
                    trial = await _replay(backend, mode, candidate, clock)
                    if trial is not None:
                        steps, found, removed_any = candidate[: trial.index + 1], trial, True
                        continue
                start += chunk
            if not removed_any:
                chunk //= 2
        final = await _replay(backend, mode, steps, clock)
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
    strict: bool = False,
    allow_skips: bool = False,
) -> Report:
    """Run every check of ``level`` (optionally filtered by ``only``) against ``backend``, one after the other.

    ``strict`` makes strictness warnings failures; ``allow_skips`` lets an incomplete run exit 0 (see the module).
    """
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
    return Report(
        target or backend.name, level, seed, mode, guarantees, time.perf_counter() - started, strict, allow_skips
    )
