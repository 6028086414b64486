"""Time control and call recording for certification checks.

A check never reads or moves time itself: it asks its :class:`Harness`. Two kinds of time exist:

* **virtual** (the factory accepts a ``clock`` keyword): the suite passes a clock it alone moves. Every expiry
  guarantee is checked on that clock exactly (to the nanosecond) and instantly. The clock is
  :class:`sessionkv.testing.virtual_time.VirtualClock`.
* **real** (no ``clock`` keyword, or ``--real-time``): short real TTLs, and a tolerance of exactly the backend's
  declared ``expiry_granularity_ns`` (default 1 ms). "Gone" is checked at ``end of the write + ttl + granularity``
  or later; "alive" is checked only by reads that *finish* before ``start of the write + ttl``. Nothing else is
  allowed.

:class:`RecordingStore` wraps the store under test and keeps the calls a check made, so a failure can be reported as
the sequence of calls that reproduces it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Protocol, Self, runtime_checkable

from sessionkv.clock import NS_PER_SECOND, Clock
from sessionkv.testing.certify.model import Step, render_call, render_value, snapshot
from sessionkv.testing.virtual_time import VirtualClock

__all__ = [
    "STORE_METHODS",
    "Call",
    "Harness",
    "RecordingStore",
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
"""The short TTL of real-time mode: a whole number of milliseconds (Redis is then late by at most 1 ms, never early),
and long enough that the calls a check makes before letting it run out finish well inside it."""


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
    """How a certification run lets time pass; the same for every check of one run."""

    virtual: bool
    granularity_ns: int
    """The backend's declared ``expiry_granularity_ns`` (the tolerance in real-time mode; unused on a virtual clock)."""
    reason: str
    """Why this mode was chosen, for the report."""

    @property
    def tolerance_ns(self) -> int:
        return 0 if self.virtual else self.granularity_ns

    @property
    def short_ttl(self) -> float:
        """A TTL that the checks let run out. Whole milliseconds in both modes, so it means the same everywhere."""
        return 2.5 if self.virtual else REAL_SHORT_TTL

    def describe(self) -> str:
        if self.virtual:
            return f"virtual clock: expiry checked exactly and instantly ({self.reason})"
        return (
            f"real time: short TTL {REAL_SHORT_TTL * 1000:.0f} ms, tolerance {self.granularity_ns / 1e6:g} ms "
            f"= the backend's expiry_granularity_ns ({self.reason})"
        )


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

    def __init__(self, inner: Any, log: list[Call]) -> None:
        self.inner = inner
        self.log = log

    def __repr__(self) -> str:
        return f"RecordingStore({self.inner!r})"

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        call = Call(render_call(method, args, kwargs), step=Step(method, snapshot(args), dict(kwargs)))
        self.log.append(call)
        try:
            result = await getattr(self.inner, method)(*args, **kwargs)
        except BaseException as exc:
            call.outcome = f"raises {type(exc).__name__}: {exc}"
            raise
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

    ``advance(seconds)`` moves a virtual clock by exactly ``seconds``; in real time it sleeps ``seconds`` plus the
    tolerance from the end of the previous call, so that a key whose TTL is ``seconds`` is certainly gone afterwards.
    """

    factory: Callable[[], Awaitable[tuple[Any, AdvancingClock | None]]]
    mode: TimeMode
    unavailable_factory: StoreFactory | None = None
    """Declared capability (G15): returns a store whose backend cannot be reached."""
    seed: int = 0
    """Seeds the model-based test (same seed, same sequences)."""
    level: str = "full"
    log: list[Call] = field(default_factory=list)
    store: RecordingStore = field(init=False)
    clock: AdvancingClock | None = None
    _opened: list[Any] = field(default_factory=list)

    async def open(self) -> RecordingStore:
        """Create and start a fresh store from the factory; it is closed by :meth:`close_all`."""
        inner, clock = await self.factory()
        self.clock = clock
        recording = RecordingStore(inner, self.log)
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
        return RecordingStore(inner, self.log)

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

    long: float = 3600.0

    def note(self, text: str) -> None:
        """Record something the check did outside the store (mutating a buffer, starting concurrent tasks)."""
        self.log.append(Call(f"# {text}"))

    async def advance(self, seconds: float) -> None:
        if self.mode.virtual:
            assert self.clock is not None
            self.log.append(Call(f"advance({seconds!r})", step=Step("advance", (seconds,), {})))
            await self.clock.advance(seconds)
            return
        self.log.append(
            Call(
                f"sleep({seconds!r} + {self.mode.tolerance_ns / 1e6:g} ms tolerance)",
                step=Step("advance", (seconds + self.mode.tolerance_ns / NS_PER_SECOND,), {}),
            )
        )
        await sleep_until(time.monotonic() + seconds + self.mode.tolerance_ns / NS_PER_SECOND)
