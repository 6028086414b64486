"""Virtual time: one clock for the event loop, store expiry, wall-clock reads and fakeredis.

A :class:`VirtualClock` is the single source of time of a test. :class:`VirtualTimeLoop` is an asyncio event loop whose
``time()`` is that clock, so ``asyncio.sleep``, ``wait_for``, ``asyncio.timeout`` and ``call_later`` follow it and time
jumps straight to the next timer whenever every task is waiting on one. :class:`VirtualClockSessionKVStore` expires keys
and sweeps on the same clock, and :meth:`VirtualClock.patch_wall_clock` makes ``time.time()``, ``datetime.now()`` and
everything that reads them (fakeredis included) follow it too. :func:`run` wires all of it together::

    async def main() -> None:
        store = VirtualClockSessionKVStore(clock=clock)
        await store.set("k", b"v", ttl=30)
        await asyncio.sleep(30)  # returns at once, 30 virtual seconds later
        assert await store.get("k") is None

    clock = VirtualClock()
    run(main(), clock=clock)

The semantics are stated once, in the docstrings of :class:`VirtualClock` and :class:`VirtualTimeLoop`; the sharp edges
(threads, real I/O, C extensions reading time) are listed in ``docs/virtual-time.md``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as _dt
import heapq
import itertools
import linecache
import math
import os
import selectors
import threading
import types
from collections.abc import Callable, Coroutine, Iterator, Mapping
from contextvars import Context
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar, TypeVarTuple, Unpack

from sessionkv.clock import NS_PER_SECOND, current_clock, use_clock
from sessionkv.memory import InMemorySessionKVStore
from sessionkv.store import exact_seconds

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike

    from sessionkv.redis_store import RedisSessionKVStore

__all__ = [
    "DEFAULT_EPOCH",
    "DeadlockError",
    "EndOfTimeError",
    "RealIOError",
    "RealIOPolicy",
    "VirtualClock",
    "VirtualClockSessionKVStore",
    "VirtualTimeError",
    "VirtualTimeLoop",
    "describe_tasks",
    "run",
    "virtual_fakeredis_store",
]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

DEFAULT_EPOCH: Final = 1_767_225_600
"""Epoch seconds a new :class:`VirtualClock` reports by default: 2026-01-01T00:00:00Z, fixed so runs are repeatable."""

RealIOPolicy = Literal["wait", "forbid"]
"""What a :class:`VirtualTimeLoop` does about real file descriptors: wait for them in real time, or refuse them."""

_UTC_EPOCH: Final = _dt.datetime(1970, 1, 1)  # naive UTC, the form freezegun keeps its frozen time in
_ASYNCIO_DIR: Final = os.path.dirname(asyncio.__file__) + os.sep
_MAXIMUM_SELECT_TIMEOUT_NS: Final = 24 * 3600 * NS_PER_SECOND  # asyncio.base_events.MAXIMUM_SELECT_TIMEOUT
_FREEZEGUN_IGNORE: Final = ("_pytest.timing",)  # keeps pytest's own durations real (it binds time functions at import)


class VirtualTimeError(RuntimeError):
    """Base class of the errors raised by virtual time."""


class DeadlockError(VirtualTimeError):
    """Nothing can ever wake the loop again: no ready callback, no timer, no real I/O, no executor job.

    ``blocked`` lists one line per unfinished task: its name and where it waits.
    """

    def __init__(self, message: str, blocked: list[str]) -> None:
        super().__init__(message)
        self.blocked = blocked


class EndOfTimeError(VirtualTimeError):
    """The next timer lies beyond the loop's virtual end of time; the clock stops at ``end``."""

    def __init__(self, message: str, blocked: list[str]) -> None:
        super().__init__(message)
        self.blocked = blocked


class RealIOError(VirtualTimeError):
    """A real file descriptor was registered with a loop created with ``real_io="forbid"``."""


def _to_ns(seconds: object, *, what: str) -> int:
    """Seconds (any real number: ``int``, ``float``, ``Fraction``, ``Decimal``..., not ``bool``) to integer
    nanoseconds, rounded to the nearest nanosecond; never an ``OverflowError``."""
    if type(seconds) is float and math.isfinite(seconds):  # the hot path: call_later's delay
        return round(seconds * NS_PER_SECOND)
    if type(seconds) is int:
        return seconds * NS_PER_SECOND
    try:
        exact = exact_seconds(what, seconds)
    except ValueError:
        raise ValueError(f"{what} must be a finite number of seconds, got {seconds!r}") from None
    return round(exact * NS_PER_SECOND)


@types.coroutine
def _yield_once() -> Iterator[None]:
    """Let every other ready callback run once (a bare yield, the same as ``asyncio.sleep(0)``, minus its checks)."""
    yield


class VirtualClock:
    """A clock that moves only when told to, or when a :class:`VirtualTimeLoop` it drives has nothing else to do.

    Time is kept in integer nanoseconds, so steps add up without float drift. ``now_ns()`` starts at ``start`` seconds
    (default 0) and never decreases; ``now()`` is the same instant in float seconds; ``time()`` is epoch seconds and
    equals ``epoch`` (default :data:`DEFAULT_EPOCH`, 2026-01-01T00:00:00Z) at creation, moving in lockstep with
    ``now()``. Nothing here reads the real clock, so two runs of the same program see the same times.

    Moving the clock:

    * ``await advance(seconds)`` moves it forward by ``seconds`` (>= 0, finite); ``await run_until(t)`` moves it to
      ``now() == t`` (``t >= now()``). Called from a task on a :class:`VirtualTimeLoop` driven by this clock, every
      timer due on the way (``asyncio.sleep``, ``call_later``, timeouts, store sweeps) fires at its own deadline, in
      deadline order, ties in the order they were scheduled, and the tasks each one wakes run until they block before
      time moves further; the call returns at the target instant once everything due at it has run. Elsewhere (a plain
      event loop) it does the same for the waiters of :meth:`sleep`, then sets the target time.
    * A :class:`VirtualTimeLoop` moves it by itself (autojump): see there.

    Negative steps, targets in the past, NaN and infinities raise ``ValueError`` at once; non-numbers ``TypeError``.

    While :meth:`patch_wall_clock` is active, ``time.time()``, ``datetime.now()`` and friends return ``time()``, to the
    microsecond (freezegun keeps a ``datetime``).

    While it drives a run (:func:`run`, a ``sessionkv_virtual_time`` test) or patches the wall clock, it is also
    :func:`sessionkv.clock.current_clock`: stores and registries built there without ``clock=`` follow it.
    """

    __slots__ = ("_epoch_ns", "_now_ns", "_start_ns", "_waiter_seq", "_waiters", "_wall_followers")

    def __init__(self, start: float = 0.0, *, epoch: float = DEFAULT_EPOCH) -> None:
        start_ns = _to_ns(start, what="start")
        if start_ns < 0:
            raise ValueError(f"start must be >= 0 seconds, got {start!r}")
        self._start_ns = start_ns
        self._now_ns = start_ns
        self._epoch_ns = _to_ns(epoch, what="epoch")
        self._wall_followers: list[Callable[[], None]] = []
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._waiter_seq = itertools.count()

    def __repr__(self) -> str:
        return f"VirtualClock(now={self.now()!r}, time={self.time()!r})"

    # -- reading -----------------------------------------------------------------------------------------------------

    def now_ns(self) -> int:
        """Monotonic virtual time in integer nanoseconds."""
        return self._now_ns

    def now(self) -> float:
        """Monotonic virtual time in float seconds (tells nanoseconds apart below 2**23 s, ~97 days; use now_ns())."""
        return self._now_ns / NS_PER_SECOND

    def time_ns(self) -> int:
        """Virtual epoch time in integer nanoseconds."""
        return self._epoch_ns + self._now_ns - self._start_ns

    def time(self) -> float:
        """Virtual epoch time in float seconds (what ``time.time()`` returns under :meth:`patch_wall_clock`)."""
        return self.time_ns() / NS_PER_SECOND

    def utcnow(self) -> _dt.datetime:
        """Virtual epoch time as an aware UTC ``datetime`` (microsecond resolution, truncated)."""
        return self._naive_utc().replace(tzinfo=_dt.UTC)

    def _naive_utc(self) -> _dt.datetime:
        return _UTC_EPOCH + _dt.timedelta(microseconds=self.time_ns() // 1000)

    # -- moving --------------------------------------------------------------------------------------------------------

    def _move_to(self, ns: int) -> None:
        """Set the time (never backwards); every mover goes through here so the wall clock follows."""
        if ns < self._now_ns:
            raise VirtualTimeError(f"virtual time cannot go backwards: now_ns={self._now_ns}, requested {ns}")
        if ns != self._now_ns:
            self._now_ns = ns
            for follow in self._wall_followers:
                follow()

    async def advance(self, seconds: float) -> None:
        """Move forward by ``seconds`` (>= 0), firing everything due on the way in order (see the class docstring)."""
        step = _to_ns(seconds, what="seconds")
        if step < 0:
            raise ValueError(f"cannot advance by {seconds!r} s: virtual time never goes backwards; use a step >= 0")
        await self._run_to(self._now_ns + step)

    async def run_until(self, t: float) -> None:
        """Move forward to ``now() == t`` (``t >= now()``), firing everything due on the way in order."""
        target = _to_ns(t, what="t")
        if target < self._now_ns:
            raise ValueError(
                f"cannot run until t={t!r} s: it is already t={self.now()!r} s and virtual time never goes backwards"
            )
        await self._run_to(target)

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` (>= 0) of this clock's time, on a virtual-time loop or on any other loop.

        On a :class:`VirtualTimeLoop` driven by this clock this is ``asyncio.sleep``. On another loop the sleeper wakes
        when :meth:`advance` / :meth:`run_until` pass its deadline (ties in the order the sleeps began).
        """
        step = _to_ns(seconds, what="seconds")
        if step < 0:
            raise ValueError(f"cannot sleep {seconds!r} s: use a duration >= 0")
        loop = asyncio.get_running_loop()
        if isinstance(loop, VirtualTimeLoop) and loop.clock is self:
            await loop.sleep_until_ns(self._now_ns + step)
            return
        waiter: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._waiters, (self._now_ns + step, next(self._waiter_seq), waiter))
        await waiter

    async def _run_to(self, target: int) -> None:
        loop = asyncio.get_running_loop()
        if isinstance(loop, VirtualTimeLoop) and loop.clock is self:
            await loop.sleep_until_ns(target)
            await loop.settle()
            return
        # A plain loop: only our own sleepers have virtual deadlines. Wake them one deadline at a time.
        waiters = self._waiters
        while True:
            await _settle_foreign(loop)
            while waiters and waiters[0][2].done():  # cancelled sleepers
                heapq.heappop(waiters)
            if not waiters or waiters[0][0] > target:
                break
            deadline = waiters[0][0]
            self._move_to(deadline)
            while waiters and waiters[0][0] == deadline:
                future = heapq.heappop(waiters)[2]
                if not future.done():
                    future.set_result(None)
        self._move_to(target)
        await _settle_foreign(loop)

    # -- wall clock ----------------------------------------------------------------------------------------------------

    @property
    def wall_clock_patched(self) -> bool:
        """Whether :meth:`patch_wall_clock` of this clock is active."""
        return bool(self._wall_followers)

    @contextlib.contextmanager
    def patch_wall_clock(self) -> Iterator[None]:
        """Make the process's wall clock follow this clock until the block exits (also when it raises).

        Through freezegun, ``time.time()``, ``time.time_ns()``, ``datetime.datetime.now()``/``utcnow()``,
        ``datetime.date.today()``, ``time.localtime()``/``gmtime()``/``strftime()`` return :meth:`time` (microsecond
        resolution), updated on every move of this clock. freezegun also replaces ``time.monotonic()`` and
        ``time.perf_counter()``: under this patch they are never frozen but move with this clock (epoch seconds).
        Ordinary asyncio loops keep real time (freezegun's ``real_asyncio``); a :class:`VirtualTimeLoop` never reads
        ``time.monotonic``. The patch is process-wide (other threads see it too). Re-entering on the same clock is a
        no-op; patching from two clocks at once raises :class:`VirtualTimeError`.

        For the block this clock is also :func:`sessionkv.clock.current_clock` (:func:`sessionkv.clock.use_clock`):
        with the wall clock virtual, a store or registry built without ``clock=`` expires and timestamps on this clock
        too, rather than mixing virtual timestamps with real expiry.
        """
        global _wall_owner
        if _wall_owner is self:
            with use_clock(self):
                yield
            return
        if _wall_owner is not None:
            raise VirtualTimeError(
                f"the wall clock already follows {_wall_owner!r}; only one VirtualClock can patch it at a time"
            )
        import freezegun  # a testing-extra dependency: imported only when the wall clock is patched

        freezer = freezegun.freeze_time(self._naive_utc(), ignore=list(_FREEZEGUN_IGNORE), real_asyncio=True)
        factory = freezer.start()
        _wall_owner = self

        def follow() -> None:
            factory.time_to_freeze = self._naive_utc()

        self._wall_followers.append(follow)
        try:
            with use_clock(self):
                yield
        finally:
            self._wall_followers.remove(follow)
            _wall_owner = None
            freezer.stop()


_wall_owner: VirtualClock | None = None


async def _settle_foreign(loop: asyncio.AbstractEventLoop) -> None:
    """On a loop we do not own, yield until nothing else is ready (selector loops), else a fixed number of times."""
    ready = getattr(loop, "_ready", None)
    if ready is None:  # e.g. uvloop: no portable way to see the ready queue
        for _ in range(16):
            await _yield_once()
        return
    await _yield_once()
    while ready:
        await _yield_once()


class _VirtualTimerHandle(asyncio.TimerHandle):
    """A timer ordered by (integer deadline, scheduling order), so equal deadlines fire first come, first served."""

    __slots__ = ("_seq", "_when_ns")

    def __init__(
        self,
        when_ns: int,
        seq: int,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        loop: asyncio.AbstractEventLoop,
        context: Context | None,
    ) -> None:
        # _when is exactly when_ns / 1e9, the same float loop.time() returns at that instant
        super().__init__(when_ns / NS_PER_SECOND, callback, args, loop, context)
        self._when_ns = when_ns
        self._seq = seq

    def _key(self) -> tuple[int, int]:
        return (self._when_ns, self._seq)

    def __lt__(self, other: object) -> bool:
        if isinstance(other, _VirtualTimerHandle):
            return self._key() < other._key()
        if isinstance(other, asyncio.TimerHandle):
            return super().__lt__(other)
        return NotImplemented

    def __le__(self, other: object) -> bool:
        if isinstance(other, _VirtualTimerHandle):
            return self._key() <= other._key()
        if isinstance(other, asyncio.TimerHandle):
            return super().__le__(other)
        return NotImplemented

    def __gt__(self, other: object) -> bool:
        if isinstance(other, _VirtualTimerHandle):
            return self._key() > other._key()
        if isinstance(other, asyncio.TimerHandle):
            return super().__gt__(other)
        return NotImplemented

    def __ge__(self, other: object) -> bool:
        if isinstance(other, _VirtualTimerHandle):
            return self._key() >= other._key()
        if isinstance(other, asyncio.TimerHandle):
            return super().__ge__(other)
        return NotImplemented

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _VirtualTimerHandle):
            return self is other
        return super().__eq__(other)

    def __hash__(self) -> int:
        return hash(self._key())


class _VirtualSelector(selectors.BaseSelector):
    """The real selector, plus the decision of the virtual loop: poll, wait for real, jump, or report a deadlock.

    asyncio calls ``select(timeout)`` once per loop iteration with ``timeout == 0`` when callbacks are ready, the time
    to the next timer when only timers are pending, and ``None`` when there are none. That is exactly the information
    the virtual loop needs, so its whole policy lives here.
    """

    def __init__(self, inner: selectors.BaseSelector, loop: VirtualTimeLoop) -> None:
        self._inner = inner
        self._loop = loop

    def register(self, fileobj: FileDescriptorLike, events: int, data: Any = None) -> selectors.SelectorKey:
        self._loop._check_real_io(fileobj)
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        return self._inner.unregister(fileobj)

    def modify(self, fileobj: FileDescriptorLike, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def get_map(self) -> Mapping[FileDescriptorLike, selectors.SelectorKey]:
        return self._inner.get_map()

    def close(self) -> None:
        self._inner.close()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        # ``timeout`` is asyncio's float estimate; the decision is taken again here on integer nanoseconds, because
        # past 2**23 s two distinct nanoseconds can be the same float and a float "due" test would spin forever.
        loop = self._loop
        forbidden, loop._forbidden_io = loop._forbidden_io, None
        if forbidden is not None:
            raise forbidden
        now_ns = loop.clock.now_ns()
        deadline_ns = loop._next_deadline_ns()
        if loop._callbacks_ready():
            return self._inner.select(0)
        if deadline_ns is not None and deadline_ns <= now_ns:
            return self._inner.select(0)  # a timer is due: _process_events hands it to the ready queue
        # Nothing is ready to run: first collect whatever already happened (I/O, wake-ups from other threads).
        events = self._inner.select(0)
        if events:
            return events
        if loop.real_work_pending():
            # Real I/O or a thread could still complete: wait for it in real time, at most the virtual time left until
            # the next timer, so no timer fires earlier (in real time) than on a real loop, and none is skipped past.
            if deadline_ns is None:
                return self._inner.select(None)
            wait_ns = min(deadline_ns - now_ns, _MAXIMUM_SELECT_TIMEOUT_NS)
            events = self._inner.select(wait_ns / NS_PER_SECOND)
            if events:
                return events
            if wait_ns < deadline_ns - now_ns:
                # the real wait is capped at one day, as asyncio caps it: move by the time that passed, not further
                loop.clock._move_to(now_ns + wait_ns)
                return []
        elif deadline_ns is None:
            # No timer and no real work: only a thread we do not know of could still wake us.
            events = self._inner.select(loop.deadlock_grace)
            if events:
                return events
            blocked = describe_tasks(asyncio.all_tasks(loop))
            raise DeadlockError(
                f"virtual-time deadlock at t={loop.clock.now()!r} s: no task can ever wake up (no ready callback, no "
                "timer, no real I/O, no executor job, no child process). Blocked tasks:\n  "
                + "\n  ".join(blocked or ["(none)"]),
                blocked,
            )
        loop._jump_to_next_timer()
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio selector event loop whose time is a :class:`VirtualClock` (integer nanoseconds).

    ``time()`` returns ``clock.now()``; ``call_at``/``call_later`` and everything built on them (``asyncio.sleep``,
    ``wait_for``, ``asyncio.timeout``) are due when the clock reaches their deadline, rounded to the nanosecond. Timers
    fire in deadline order; equal deadlines fire in the order they were scheduled.

    Each iteration with no ready callback ends in exactly one of these ways:

    1. **Autojump.** No real work is pending: the clock jumps to the earliest timer's deadline at once, that timer (and
       any other due at the same nanosecond) fires, and the tasks it wakes run before the clock moves again.
    2. **Real wait.** Real work is pending, meaning a file descriptor other than the loop's own wake-up socket is
       registered (a socket, pipe, subprocess pipe), a ``run_in_executor``/``to_thread``/``getaddrinfo`` job is
       outstanding (until its thread returns, even when its waiter was cancelled) or the default executor is shutting
       down, or a child process started on this loop has not exited (asyncio's child watcher wakes the loop when it
       does): asyncio's own helper threads are real work in flight. The loop blocks in a real ``select`` for at most the
       virtual time left until the next timer, taken as real seconds (forever if there is none). If anything arrives it
       is handled and virtual time does not move (real I/O takes zero virtual time); if the real wait runs out, the
       clock jumps to that timer.
       Virtual time therefore never outruns real time while real work is pending. With ``real_io="forbid"`` a
       registration of a real descriptor raises :class:`RealIOError` instead.
    3. **Deadlock.** No timer and no real work: after ``deadlock_grace`` real seconds (default 0.1) without a wake-up
       from another thread, :class:`DeadlockError` is raised out of ``run_until_complete``, naming every unfinished
       task and where it waits.
    4. **End of time.** The earliest timer lies beyond ``end`` (virtual ``clock.now()`` seconds, optional): the clock
       is set to ``end`` and :class:`EndOfTimeError` is raised. Timers due exactly at ``end`` still fire.

    Which timers are due is decided on integer nanoseconds (``call_later`` adds the delay to ``clock.now_ns()``), so
    timers fire at their own nanosecond at any clock value, a year or ``MAX_TTL`` in. ``loop.time()`` itself is a
    float: it tells nanoseconds apart while ``clock.now()`` is below 2**23 s (~97 days), not after that; a deadline
    computed as ``loop.time() + delay`` (``call_at``, ``asyncio.timeout_at``) is rounded to that float.
    """

    def __init__(
        self,
        clock: VirtualClock | None = None,
        *,
        end: float | None = None,
        real_io: RealIOPolicy = "wait",
        deadlock_grace: float = 0.1,
    ) -> None:
        # BaseEventLoop.__del__ reads _closed: an argument error below must not turn into an unraisable exception
        self._closed = True
        self.clock = VirtualClock() if clock is None else clock
        if not isinstance(self.clock, VirtualClock):
            raise TypeError(f"clock must be a VirtualClock, got {type(clock).__name__}")
        if real_io not in ("wait", "forbid"):
            raise ValueError(f"real_io must be 'wait' or 'forbid', got {real_io!r}")
        self._end_ns = None if end is None else _to_ns(end, what="end")
        if self._end_ns is not None and self._end_ns < self.clock.now_ns():
            raise ValueError(f"end={end!r} s is before the clock's current time {self.clock.now()!r} s")
        grace_ns = _to_ns(deadlock_grace, what="deadlock_grace")
        if grace_ns < 0:
            raise ValueError(f"deadlock_grace must be >= 0 seconds, got {deadlock_grace!r}")
        self.deadlock_grace = grace_ns / NS_PER_SECOND
        self.real_io: RealIOPolicy = real_io
        self._forbidden_io: RealIOError | None = None
        self._timer_seq = itertools.count()
        self._executor_jobs = 0
        self._thread_jobs = 0  # functions running (or queued) in executor threads, counted by the threads themselves
        self._thread_jobs_lock = threading.Lock()
        self._children: list[asyncio.SubprocessTransport] = []
        self._close_callbacks: list[Callable[[], None]] = []
        super().__init__(_VirtualSelector(selectors.DefaultSelector(), self))
        # asyncio's _run_once pops timers with a float test, when < time() + resolution. With no resolution that test
        # pops only timers strictly past due (float rounding is monotonic), which _process_events already moved to the
        # ready queue by their integer deadline; so the float test never decides anything.
        self._clock_resolution = 0.0

    @property
    def end(self) -> float | None:
        """The virtual end of time in ``clock.now()`` seconds, or ``None``."""
        return None if self._end_ns is None else self._end_ns / NS_PER_SECOND

    def time(self) -> float:
        return self.clock.now()

    def call_later(
        self,
        delay: float,
        callback: Callable[[Unpack[Ts]], object],
        *args: *Ts,
        context: Context | None = None,
    ) -> asyncio.TimerHandle:
        # from the integer clock, not from time() + delay: past ~100 days a float sum drops nanoseconds
        if delay is None:
            raise TypeError("delay cannot be None")
        if delay == math.inf:
            return self._never(callback, args, context)
        return self.call_at_ns(self.clock.now_ns() + _to_ns(delay, what="delay"), callback, *args, context=context)

    def call_at(
        self,
        when: float,
        callback: Callable[[Unpack[Ts]], object],
        *args: *Ts,
        context: Context | None = None,
    ) -> asyncio.TimerHandle:
        if when is None:
            raise TypeError("when cannot be None")
        if when == math.inf:
            return self._never(callback, args, context)
        return self.call_at_ns(_to_ns(when, what="when"), callback, *args, context=context)

    def _never(
        self, callback: Callable[..., object], args: tuple[Any, ...], context: Context | None
    ) -> asyncio.TimerHandle:
        """A timer at +inf (``asyncio.sleep(math.inf)``, ``wait_for(..., timeout=math.inf)``): a handle that can be
        cancelled but is never scheduled, so it neither fires nor hides a deadlock behind an endless jump."""
        self._check_closed()  # type: ignore[attr-defined]  # BaseEventLoop internals
        return asyncio.TimerHandle(math.inf, callback, args, self, context)

    def call_at_ns(
        self,
        when_ns: int,
        callback: Callable[[Unpack[Ts]], object],
        *args: *Ts,
        context: Context | None = None,
    ) -> asyncio.TimerHandle:
        """Like ``call_at`` with an integer deadline in ``clock.now_ns()`` nanoseconds (no float rounding at all)."""
        self._check_closed()  # type: ignore[attr-defined]  # BaseEventLoop internals
        timer = _VirtualTimerHandle(when_ns, next(self._timer_seq), callback, args, self, context)
        internals: Any = self
        heapq.heappush(internals._scheduled, timer)
        internals_timer: Any = timer
        internals_timer._scheduled = True
        return timer

    async def sleep_until_ns(self, when_ns: int) -> None:
        """Sleep until ``clock.now_ns() >= when_ns`` (returns at once, after one yield, if that is already so)."""
        future: asyncio.Future[None] = self.create_future()
        handle = self.call_at_ns(when_ns, _resolve, future)
        try:
            await future
        finally:
            handle.cancel()

    async def settle(self) -> None:
        """Return once nothing else is ready at the current instant: the woken tasks have run until they block."""
        await _yield_once()
        while self._work_due_now():
            await _yield_once()

    def _work_due_now(self) -> bool:
        internals: Any = self
        if internals._ready:
            return True
        deadline_ns = self._next_deadline_ns()
        return deadline_ns is not None and deadline_ns <= self.clock.now_ns()

    def _callbacks_ready(self) -> bool:
        internals: Any = self
        return bool(internals._ready) or bool(internals._stopping)

    def _next_deadline_ns(self) -> int | None:
        """The integer deadline of the earliest live timer, or ``None`` (cancelled timers at the head are dropped)."""
        internals: Any = self
        scheduled: list[asyncio.TimerHandle] = internals._scheduled
        while scheduled and scheduled[0].cancelled():
            handle: Any = heapq.heappop(scheduled)
            handle._scheduled = False
            internals._timer_cancelled_count -= 1
        return _deadline_ns(scheduled[0]) if scheduled else None

    def _process_events(self, event_list: list[tuple[selectors.SelectorKey, int]]) -> None:
        # After the I/O callbacks (asyncio's order), every timer due by its integer deadline becomes ready.
        super()._process_events(event_list)  # type: ignore[misc]  # BaseSelectorEventLoop internals
        internals: Any = self
        scheduled: list[asyncio.TimerHandle] = internals._scheduled
        now_ns = self.clock.now_ns()
        while scheduled and _deadline_ns(scheduled[0]) <= now_ns:
            handle: Any = heapq.heappop(scheduled)
            handle._scheduled = False
            if handle.cancelled():
                internals._timer_cancelled_count -= 1
            else:
                internals._ready.append(handle)

    def real_work_pending(self) -> bool:
        """Whether real I/O or a thread could still wake the loop (rule 2 of the class docstring): a registered file
        descriptor other than the loop's wake-up socket, an executor job (``run_in_executor``, ``to_thread``,
        ``getaddrinfo``, the default executor's shutdown) or a child process that has not exited yet."""
        if self._executor_jobs or self._thread_jobs:
            return True
        if self._children:
            self._children = [child for child in self._children if child.get_returncode() is None]
            if self._children:
                return True
        internals: Any = self
        wakeup_fd = internals._ssock.fileno()
        return any(key.fd != wakeup_fd for key in self.get_selector_map().values())

    def get_selector_map(self) -> Mapping[FileDescriptorLike, selectors.SelectorKey]:
        internals: Any = self
        selector: selectors.BaseSelector = internals._selector
        return selector.get_map()

    def _check_real_io(self, fileobj: FileDescriptorLike) -> None:
        internals: Any = self
        wakeup = getattr(internals, "_ssock", None)
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        if self.real_io == "forbid" and (wakeup is None or fd != wakeup.fileno()):
            error = RealIOError(
                f"real I/O on fd {fd} under virtual time with real_io='forbid'; use fakeredis / in-memory fakes, or "
                "create the loop with real_io='wait' to wait for real I/O in real time"
            )
            # transports register from callbacks, whose errors only get logged: also fail the run from select()
            self._forbidden_io = self._forbidden_io or error
            raise error

    def _jump_to_next_timer(self) -> None:
        internals: Any = self
        deadline = _deadline_ns(internals._scheduled[0])
        if self._end_ns is not None and deadline > self._end_ns:
            self.clock._move_to(max(self._end_ns, self.clock.now_ns()))
            blocked = describe_tasks(asyncio.all_tasks(self))
            raise EndOfTimeError(
                f"virtual end of time reached at t={self.end!r} s: the next timer is due at "
                f"t={deadline / NS_PER_SECOND!r} s. Unfinished tasks:\n  " + "\n  ".join(blocked or ["(none)"]),
                blocked,
            )
        self.clock._move_to(deadline)

    def run_in_executor(self, executor: Any, func: Callable[[Unpack[Ts]], T], *args: *Ts) -> asyncio.Future[T]:
        # A job is real work until its result reaches the loop (counted here), and, in a thread pool, also until its
        # function returns (counted by the thread): a job whose awaiting task was cancelled, e.g. by a wait_for
        # timeout, keeps its thread busy. (A process pool pickles the function, so only the first count applies.)
        if isinstance(executor, concurrent.futures.ProcessPoolExecutor):
            future = super().run_in_executor(executor, func, *args)
        else:

            def job() -> T:
                try:
                    return func(*args)
                finally:
                    with self._thread_jobs_lock:
                        self._thread_jobs -= 1

            with self._thread_jobs_lock:
                self._thread_jobs += 1
            try:
                future = super().run_in_executor(executor, job)
            except BaseException:
                with self._thread_jobs_lock:
                    self._thread_jobs -= 1
                raise
        self._executor_jobs += 1
        future.add_done_callback(self._executor_job_done)
        return future

    def _executor_job_done(self, _: object) -> None:
        self._executor_jobs -= 1

    async def subprocess_exec(self, *args: Any, **kwargs: Any) -> tuple[asyncio.SubprocessTransport, Any]:
        return self._track_child(await super().subprocess_exec(*args, **kwargs))

    async def subprocess_shell(self, *args: Any, **kwargs: Any) -> tuple[asyncio.SubprocessTransport, Any]:
        return self._track_child(await super().subprocess_shell(*args, **kwargs))

    def _track_child(self, created: tuple[asyncio.SubprocessTransport, Any]) -> tuple[asyncio.SubprocessTransport, Any]:
        # a child that has not exited is real work: asyncio's child watcher (a thread on 3.11) wakes the loop when it
        # exits, even when no pipe of it is registered with the selector
        self._children.append(created[0])
        return created

    async def shutdown_default_executor(self, *args: Any, **kwargs: Any) -> None:
        # the shutdown runs in a helper thread that wakes the loop when done: real work, not a deadlock
        self._executor_jobs += 1
        try:
            await super().shutdown_default_executor(*args, **kwargs)
        finally:
            self._executor_jobs -= 1

    def add_close_callback(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` when the loop is closed (used to undo the wall-clock patch a loop factory started)."""
        self._close_callbacks.append(callback)

    def close(self) -> None:
        try:
            super().close()
        finally:
            callbacks, self._close_callbacks = self._close_callbacks, []
            for callback in reversed(callbacks):
                callback()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _deadline_ns(handle: asyncio.TimerHandle) -> int:
    when_ns = getattr(handle, "_when_ns", None)
    return when_ns if when_ns is not None else round(handle.when() * NS_PER_SECOND)


def _await_chain(coro: object) -> tuple[list[types.FrameType], object]:
    """The frames of a suspended coroutine chain, outermost first, and the object the innermost one awaits."""
    frames: list[types.FrameType] = []
    current: object = coro
    for _ in range(100):  # bounded: a chain is never this deep, and a cycle must not hang the error report
        frame = getattr(current, "cr_frame", None) or getattr(current, "gi_frame", None)
        frame = frame or getattr(current, "ag_frame", None)
        if frame is not None:
            frames.append(frame)
        awaited = getattr(current, "cr_await", None)
        if awaited is None:
            awaited = getattr(current, "gi_yieldfrom", None)
        if awaited is None:
            awaited = getattr(current, "ag_await", None)
        if awaited is None:
            return frames, None
        if not any(hasattr(awaited, name) for name in ("cr_frame", "gi_frame", "ag_frame")):
            return frames, awaited
        current = awaited
    return frames, None


def describe_tasks(tasks: set[asyncio.Task[Any]]) -> list[str]:
    """One line per unfinished task, sorted by name: its name, the innermost frame outside asyncio where it waits
    (file, line, function, source line) and its await chain, outermost first."""
    lines = []
    for task in sorted((t for t in tasks if not t.done()), key=lambda t: t.get_name()):
        frames, _ = _await_chain(task.get_coro())
        if not frames:
            lines.append(f"{task.get_name()!r} (no frame: {task!r})")
            continue
        # point at the innermost frame outside asyncio itself: where the user's code waits
        own = [f for f in frames if not f.f_code.co_filename.startswith(_ASYNCIO_DIR)]
        frame = own[-1] if own else frames[-1]
        code = frame.f_code
        source = linecache.getline(code.co_filename, frame.f_lineno).strip()
        chain = " -> ".join(f.f_code.co_name for f in frames)
        lines.append(
            f"{task.get_name()!r} waiting at {code.co_filename}:{frame.f_lineno} in {code.co_name}: {source!r} "
            f"(await chain: {chain})"
        )
    return lines


def run(
    main: Coroutine[Any, Any, T],
    *,
    clock: VirtualClock | None = None,
    end: float | None = None,
    real_io: RealIOPolicy = "wait",
    patch_wall_clock: bool = True,
    debug: bool | None = None,
) -> T:
    """Run ``main`` to completion on a new :class:`VirtualTimeLoop` driven by ``clock`` and return its result.

    ``clock`` defaults to a new :class:`VirtualClock`; ``end`` is the virtual end of time in ``clock.now()`` seconds.
    With ``patch_wall_clock`` (default) the wall clock follows ``clock`` for the whole run (:meth:`VirtualClock.
    patch_wall_clock`) and is restored when ``run`` returns or raises. Either way ``clock`` is
    :func:`sessionkv.clock.current_clock` during the run, so stores and registries built inside without ``clock=``
    follow it. Like ``asyncio.run``, the remaining tasks are
    cancelled, async generators and the default executor shut down, and the loop closed before returning.
    Raises :class:`DeadlockError` / :class:`EndOfTimeError` as described on :class:`VirtualTimeLoop`.
    """
    used_clock = VirtualClock() if clock is None else clock
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(use_clock(used_clock))
            if patch_wall_clock:
                stack.enter_context(used_clock.patch_wall_clock())
            runner = stack.enter_context(
                asyncio.Runner(debug=debug, loop_factory=lambda: VirtualTimeLoop(used_clock, end=end, real_io=real_io))
            )
            return runner.run(main)
    finally:
        main.close()  # no-op once it ran; avoids "never awaited" when setup failed before it started


class VirtualClockSessionKVStore(InMemorySessionKVStore):
    """The in-memory store on a :class:`VirtualClock`: expiry and cleanup sweeps follow virtual time exactly.

    A key set at virtual ``t`` with ``ttl=d`` is readable up to ``t + d - 1 ns`` and gone from ``t + d`` (G06, to the
    nanosecond). The periodic sweep started by :meth:`start` runs every ``cleanup_interval`` virtual seconds (through
    :meth:`VirtualClock.sleep`, so it also follows :meth:`VirtualClock.advance` on an ordinary event loop).

    ``clock`` defaults to :func:`sessionkv.clock.current_clock` when that is a :class:`VirtualClock` (inside
    :func:`run` or a ``sessionkv_virtual_time`` test), else to a new :class:`VirtualClock`.
    """

    clock: VirtualClock

    def __init__(self, *, cleanup_interval: float = 60.0, clock: VirtualClock | None = None) -> None:
        if clock is None:
            current = current_clock()
            virtual = current if isinstance(current, VirtualClock) else VirtualClock()
        else:
            virtual = clock
        if not isinstance(virtual, VirtualClock):
            raise TypeError(f"clock must be a VirtualClock, got {type(clock).__name__}")
        super().__init__(cleanup_interval=cleanup_interval, clock=virtual)
        self.clock = virtual

    async def _pause(self, seconds: float) -> None:
        # the clock's own sleep, so sweeps also follow VirtualClock.advance() on an ordinary event loop
        if seconds:
            await self.clock.sleep(seconds)
        else:
            await _yield_once()


def virtual_fakeredis_store(
    clock: VirtualClock, *, key_prefix: str = "sessionkv-virtual:", **store_options: Any
) -> RedisSessionKVStore:
    """A :class:`~sessionkv.redis_store.RedisSessionKVStore` on a private fakeredis server whose keys expire on
    ``clock``.

    fakeredis reads ``time.time()`` once per command, so its expiry follows ``clock`` exactly while ``clock`` patches
    the wall clock: create and use the store inside :func:`run` (or a ``sessionkv_virtual_time`` test, or a
    :meth:`VirtualClock.patch_wall_clock` block). Creating it outside raises :class:`VirtualTimeError` rather than
    letting keys silently expire in real time. Redis semantics apply: TTLs are whole milliseconds (rounded up by the
    store) and a key is still readable at exactly its deadline and gone 1 ms later (G06's 1 ms granularity), where the
    in-memory store is gone at the deadline itself. ``store_options`` go to ``RedisSessionKVStore``.
    """
    if not clock.wall_clock_patched:
        raise VirtualTimeError(
            "fakeredis reads time.time(): create and use the virtual fakeredis store while the clock patches the wall "
            "clock (inside sessionkv.testing.run(), a sessionkv_virtual_time test, or clock.patch_wall_clock())"
        )
    import fakeredis  # a testing-extra dependency

    from sessionkv.redis_store import RedisSessionKVStore

    client = fakeredis.aioredis.FakeRedis(server=fakeredis.FakeServer())
    return RedisSessionKVStore(client=client, key_prefix=key_prefix, **store_options)
