"""Time control and call recording for certification checks.

A check never reads or moves time itself: it asks its :class:`Harness`. Two kinds of time exist:

* **virtual** (the factory accepts a ``clock`` keyword): the suite passes a clock it alone moves (one
  :class:`sessionkv.testing.virtual_time.VirtualClock` per check). Every expiry guarantee is checked on that clock
  instantly, to the nanosecond when the backend declares a 1 ns ``expiry_granularity_ns``, else within its declared
  granularity. A factory marked ``follows_wall_clock = True`` (a store that reads ``time.time()``, as fakeredis does)
  gets the same clock, which patches the process's wall clock while the check runs.
* **real** (no ``clock`` keyword, or ``--real-time``): short real TTLs, and a tolerance of exactly the backend's
  declared ``expiry_granularity_ns`` (default 1 ms). "Gone" is checked at ``end of the write + ttl + granularity``
  or later; "alive" is checked only by reads that *finish* before ``start of the write + ttl``. Nothing else is
  allowed. A :class:`ShortTtlWindow` measures whether the check's own calls kept to that rule; when they did not (a
  slow or loaded machine) and the check failed, the runner retries it with a longer TTL (:data:`REAL_SHORT_TTLS`).

:class:`RecordingStore` wraps the store under test and keeps the calls a check made, so a failure can be reported as
the sequence of calls that reproduces it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Protocol, Self, runtime_checkable

from sessionkv.clock import NS_PER_SECOND, Clock
from sessionkv.testing.certify.catalogue import ContractViolation
from sessionkv.testing.certify.model import Step, render_call, render_value, snapshot
from sessionkv.testing.virtual_time import VirtualClock

__all__ = [
    "REAL_SHORT_TTLS",
    "STORE_METHODS",
    "Call",
    "Harness",
    "RecordingStore",
    "ShortTtlWindow",
    "StoreFactory",
    "TimeMode",
    "accepts_clock",
    "make_clock",
    "render_call",
    "sleep_until",
]

STORE_METHODS: Final = ("set", "mset", "get", "mget", "expire", "keys", "delete", "start", "close")
"""What an object needs to be certified as a store (``async with`` is provided through start/close if missing)."""

StoreFactory = Callable[..., Any]
"""Returns a fresh, not yet started store (or an awaitable of one); may accept ``clock=``."""

REAL_SHORT_TTL: Final = 0.2
"""The first short TTL of real-time mode: a whole number of milliseconds (Redis is then late by at most 1 ms, never
early), long enough that the calls a check makes before letting it run out usually finish well inside it."""
REAL_SHORT_TTLS: Final = (REAL_SHORT_TTL, 0.8, 3.2)
"""The short TTLs a real-time check is tried with, in order, while its own calls overran the previous one."""
WALL_CLOCK_RESOLUTION_NS: Final = 1_000
"""A patched wall clock (freezegun) keeps time to the microsecond."""
LONG_TTL: Final = 3600.0
"""The TTL of keys a check never lets expire."""


@runtime_checkable
class AdvancingClock(Clock, Protocol):
    """A clock the suite can move: the :class:`~sessionkv.clock.Clock` protocol plus ``await advance(seconds)``."""

    async def advance(self, seconds: float) -> None: ...


def make_clock() -> AdvancingClock:
    """A fresh :class:`~sessionkv.testing.virtual_time.VirtualClock` for one store, started at 1000 s so that a backend
    subtracting small amounts never sees negative times."""
    clock: AdvancingClock = VirtualClock(start=1_000.0)
    return clock


def accepts_clock(factory: StoreFactory) -> bool:
    """True when ``factory`` takes a ``clock`` keyword (explicitly or through ``**kwargs``)."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return False
    for parameter in signature.parameters.values():
        if parameter.name == "clock" and parameter.kind in (parameter.KEYWORD_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            return True
        if parameter.kind is parameter.VAR_KEYWORD:
            return True
    return False


@dataclass(frozen=True)
class TimeMode:
    """How a certification run lets time pass; the same for every check of one run (bar real-time retries)."""

    virtual: bool
    granularity_ns: int
    """The backend's declared ``expiry_granularity_ns``: the tolerance of an expiry ("gone" is required that long
    after the deadline); a virtual clock checks a 1 ns granularity exactly."""
    reason: str
    """Why this mode was chosen, for the report."""
    real_short_ttl: float = REAL_SHORT_TTL
    """Real time: the short TTL of this attempt (one of :data:`REAL_SHORT_TTLS`)."""
    wall_clock: bool = False
    """Virtual time: the store reads the process's wall clock, so the check's clock patches it while the check runs."""

    @property
    def tolerance_ns(self) -> int:
        """How late after its deadline a key may still be readable: the declared granularity (0 for 1 ns on a
        virtual clock), plus 1 µs when the store reads the patched wall clock, which has microsecond resolution."""
        if self.virtual and self.wall_clock:
            return self.granularity_ns + WALL_CLOCK_RESOLUTION_NS
        if self.virtual and self.granularity_ns <= 1:
            return 0
        return self.granularity_ns

    @property
    def short_ttl(self) -> float:
        """A TTL that the checks let run out. Whole milliseconds in both modes, so it means the same everywhere."""
        return 2.5 if self.virtual else self.real_short_ttl

    def longer(self) -> TimeMode | None:
        """Real time: the same mode with the next longer short TTL, or ``None`` after the last one."""
        later = [ttl for ttl in REAL_SHORT_TTLS if ttl > self.real_short_ttl]
        if self.virtual or not later:
            return None
        return dataclasses.replace(self, real_short_ttl=later[0])

    def describe(self) -> str:
        if self.virtual:
            exact = "exactly" if self.tolerance_ns == 0 else f"within {self.tolerance_ns / 1e6:g} ms"
            wall = ", the wall clock follows it" if self.wall_clock else ""
            return f"virtual clock{wall}: expiry checked {exact} and instantly ({self.reason})"
        ttls = " / ".join(f"{ttl * 1000:.0f}" for ttl in REAL_SHORT_TTLS)
        return (
            f"real time: short TTL {ttls} ms (longer only when the check's own calls overran the shorter), tolerance "
            f"{self.granularity_ns / 1e6:g} ms = the backend's expiry_granularity_ns ({self.reason})"
        )


def writes_short(step: Step) -> bool:
    """Whether ``step`` writes (or refreshes to) a TTL shorter than :data:`LONG_TTL`: a key that can expire soon."""
    if step.method == "concurrently":
        return any(writes_short(s) for s in step.args)
    ttls: list[object] = []
    if step.method == "set" and len(step.args) >= 3:
        ttls = [step.args[2]]
    elif step.method == "mset" and step.args and isinstance(step.args[0], list):
        ttls = [item[2] for item in step.args[0] if isinstance(item, tuple) and len(item) == 3]
    elif step.method == "expire":
        ttls = [step.kwargs.get("ttl")]
    return any(isinstance(t, (int, float)) and not isinstance(t, bool) and 0 < t < LONG_TTL for t in ttls)


class ShortTtlWindow:
    """Real time: did every call since the first short-TTL write finish before that write's TTL could run out?

    A check may expect a short-TTL key to be alive only until ``start of its write + ttl``. The window opens at the
    start of the first short-TTL write after the last advance and records how long the calls after it ran; when they
    ran past ``ttl``, an expectation of "alive" may have been judged too late and a failure proves nothing.
    """

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.opened_at: float | None = None
        self.worst_s = 0.0
        """The longest time from the window opening to the end of a call in it, over the whole check."""

    def call(self, step: Step, started: float, ended: float) -> None:
        if self.opened_at is None and writes_short(step):
            self.opened_at = started
        if self.opened_at is not None:
            self.worst_s = max(self.worst_s, ended - self.opened_at)

    def advanced(self) -> None:
        self.opened_at = None

    @property
    def overran(self) -> bool:
        return self.worst_s >= self.ttl

    def describe(self) -> str:
        return f"its calls took {self.worst_s * 1000:.0f} ms of a {self.ttl * 1000:.0f} ms TTL"


@dataclass
class Call:
    """One recorded step: a store call with its outcome, a clock advance, or a note about what the check did.

    ``step`` is the structured form a replay can run again (``None`` for notes and for waits that cannot be replayed).
    """

    text: str
    outcome: str = ""
    step: Step | None = None

    def render(self) -> str:
        return f"{self.text}  ->  {self.outcome}" if self.outcome else self.text


class RecordingStore:
    """Forwards every store call to ``inner`` and records it with its outcome (a value or an exception).

    Deliberately not a :class:`~sessionkv.store.SessionKVStore` subclass: it must wrap foreign stores (vision-agents')
    too, and it must not validate anything itself.
    """

    def __init__(self, inner: Any, log: list[Call], window: ShortTtlWindow | None = None) -> None:
        self.inner = inner
        self.log = log
        self.window = window

    def __repr__(self) -> str:
        return f"RecordingStore({self.inner!r})"

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        step = Step(method, snapshot(args), dict(kwargs))
        call = Call(render_call(method, args, kwargs), step=step)
        self.log.append(call)
        started = time.monotonic()
        try:
            result = await getattr(self.inner, method)(*args, **kwargs)
        except BaseException as exc:
            call.outcome = f"raises {type(exc).__name__}: {exc}"
            raise
        finally:
            if self.window is not None:
                self.window.call(step, started, time.monotonic())
        call.outcome = "None" if result is None and method not in ("get",) else render_value(result)
        if method in ("start", "close", "set", "mset", "expire", "delete") and result is None:
            call.outcome = ""
        return result

    async def start(self) -> None:
        await self._call("start")

    async def close(self) -> None:
        await self._call("close")

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def set(self, key: Any, value: Any, ttl: Any, *, only_if_exists: bool = False) -> None:
        if only_if_exists:
            await self._call("set", key, value, ttl, only_if_exists=only_if_exists)
        else:
            await self._call("set", key, value, ttl)

    async def mset(self, items: Any) -> None:
        await self._call("mset", items)

    async def get(self, key: Any) -> Any:
        return await self._call("get", key)

    async def mget(self, keys: Any) -> Any:
        return await self._call("mget", keys)

    async def expire(self, *keys: Any, ttl: Any) -> None:
        await self._call("expire", *keys, ttl=ttl)

    async def keys(self, prefix: Any) -> Any:
        return await self._call("keys", prefix)

    async def delete(self, keys: Any) -> None:
        await self._call("delete", keys)


async def sleep_until(deadline: float) -> None:
    """Sleep until ``time.monotonic() >= deadline``; asyncio timers may fire a clock tick early, so loop."""
    while (left := deadline - time.monotonic()) > 0:  # noqa: ASYNC110 - waiting for a time, not for another task
        await asyncio.sleep(left)


@dataclass
class Harness:
    """What a check works with: the (recording) store, the time mode, and the means to let time pass.

    ``advance(seconds)`` moves a virtual clock by ``seconds`` plus the tolerance (0 for a 1 ns granularity); in real
    time it sleeps ``seconds`` plus the tolerance from the end of the previous call, so that a key whose TTL is
    ``seconds`` is certainly gone afterwards. ``warn`` records a strictness point the store does not meet.
    """

    factory: Callable[[], Awaitable[tuple[Any, AdvancingClock | None]]]
    mode: TimeMode
    unavailable_factory: StoreFactory | None = None
    """Declared capability (G15): returns a store whose backend cannot be reached."""
    seed: int = 0
    """Seeds the model-based test (same seed, same sequences)."""
    level: str = "full"
    clock: AdvancingClock | None = None
    """Virtual time: the one clock of this check, shared by every store it opens."""
    log: list[Call] = field(default_factory=list)
    store: RecordingStore = field(init=False)
    warnings: list[str] = field(default_factory=list)
    """Strictness points not met, in the order found (the check still passes unless ``--strict``)."""
    window: ShortTtlWindow | None = None
    """Real time: how long the check's calls ran against its short TTL (``None`` on a virtual clock)."""
    _opened: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.mode.virtual and self.window is None:
            self.window = ShortTtlWindow(self.mode.short_ttl)

    async def open(self) -> RecordingStore:
        """Create and start a fresh store from the factory; it is closed by :meth:`close_all`."""
        inner, clock = await self.factory()
        self.clock = clock
        recording = RecordingStore(inner, self.log, self.window)
        self.log.append(Call("# a fresh store from the factory, started"))
        await inner.start()
        self._opened.append(inner)
        self.store = recording
        return recording

    async def new_unstarted(self) -> RecordingStore:
        """A fresh store that is *not* started (lifecycle checks drive start/close themselves); closed at the end."""
        inner, clock = await self.factory()
        self.clock = clock
        self._opened.append(inner)
        self.log.append(Call("# a fresh store from the factory, not started"))
        return RecordingStore(inner, self.log, self.window)

    async def open_unavailable(self) -> RecordingStore:
        """A store from the declared unreachable-backend factory, started if it can be (its start may fail too)."""
        if self.unavailable_factory is None:
            raise RuntimeError("this check needs the 'unavailable' capability")
        inner = self.unavailable_factory()
        if inspect.isawaitable(inner):
            inner = await inner
        self._opened.append(inner)
        self.log.append(Call("# a store whose backend is unreachable, from the declared factory"))
        recording = RecordingStore(inner, self.log)
        with contextlib.suppress(Exception):
            await recording.start()
        return recording

    async def close_all(self) -> None:
        opened, self._opened = self._opened, []
        for inner in reversed(opened):
            try:
                await inner.close()
            except Exception:
                continue

    @property
    def short(self) -> float:
        return self.mode.short_ttl

    long: float = LONG_TTL

    def note(self, text: str) -> None:
        """Record something the check did outside the store (mutating a buffer, starting concurrent tasks)."""
        self.log.append(Call(f"# {text}"))

    def warn(self, message: str) -> None:
        """Record a strictness point the store does not meet (a warning; a failure only under ``--strict``)."""
        self.warnings.append(message)
        self.log.append(Call(f"# strictness: {message}"))

    async def expect_rejected(
        self, kind: type[Exception], call: Awaitable[object], what: str, *, strictness_input: bool = False
    ) -> bool:
        """Await a call the contract refuses with ``kind``; return whether the store refused it (raised).

        Raising the other of ``TypeError``/``ValueError`` is a strictness warning. For a correctness input
        (``strictness_input`` false) returning normally, or raising anything else, is a :class:`ContractViolation`;
        for a strictness input (a finer G14 point) it is a warning too.
        """
        try:
            result = await call
        except kind:
            return True
        except (TypeError, ValueError) as exc:
            self.warn(f"{what}: raises {type(exc).__name__} where the contract says {kind.__name__} ({exc})")
            return True
        except Exception as exc:
            if strictness_input:
                self.warn(f"{what}: raises {type(exc).__name__} where the contract says {kind.__name__} ({exc})")
                return True
            raise ContractViolation(
                f"{what}: expected {kind.__name__}, got {type(exc).__name__}: {exc} (callers catch TypeError and "
                "ValueError for bad arguments)"
            ) from exc
        if strictness_input:
            self.warn(f"{what}: accepted (returned {render_value(result)}) where the contract says {kind.__name__}")
            return False
        raise ContractViolation(f"{what}: expected {kind.__name__}, but the call returned {render_value(result)}")

    def waited(self) -> None:
        """The check let real time pass by itself (it judges its own timing): later calls open a new window."""
        if self.window is not None:
            self.window.advanced()

    async def advance(self, seconds: float) -> None:
        if self.mode.virtual:
            assert self.clock is not None
            step = seconds + self.mode.tolerance_ns / NS_PER_SECOND
            shown = f"advance({seconds!r})" if not self.mode.tolerance_ns else f"advance({seconds!r} + tolerance)"
            self.log.append(Call(shown, step=Step("advance", (step,), {})))
            await self.clock.advance(step)
            return
        self.waited()
        self.log.append(
            Call(
                f"sleep({seconds!r} + {self.mode.tolerance_ns / 1e6:g} ms tolerance)",
                step=Step("advance", (seconds + self.mode.tolerance_ns / NS_PER_SECOND,), {}),
            )
        )
        await sleep_until(time.monotonic() + seconds + self.mode.tolerance_ns / NS_PER_SECOND)
