"""Clocks: the single source of time for a store.

A :class:`Clock` gives monotonic time (for expiry) and epoch time (for timestamps a human reads). Stores read time only
through a clock, so a virtual clock from :mod:`sessionkv.testing` can drive them exactly.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Protocol, runtime_checkable

__all__ = ["NS_PER_SECOND", "SYSTEM_CLOCK", "Clock", "SystemClock", "current_clock", "use_clock"]

NS_PER_SECOND = 1_000_000_000


@runtime_checkable
class Clock(Protocol):
    """Where a store reads time.

    ``now_ns()`` is monotonic integer nanoseconds: it never goes backwards and is what expiry deadlines are computed
    from (integers, so repeated additions never drift). ``now()`` is the same instant in float seconds. ``time()`` is
    epoch seconds, for timestamps such as ``SessionInfo.started_at``; it may jump and is never used for expiry.
    """

    def now_ns(self) -> int: ...

    def now(self) -> float: ...

    def time(self) -> float: ...


class SystemClock:
    """The real clock: ``time.monotonic_ns()`` for expiry and ``time.time()`` for timestamps.

    ``time()`` looks ``time.time`` up at every call, so a patched wall clock (freezegun, a virtual clock's
    ``patch_wall_clock()``) is seen; the monotonic reads are the builtins themselves (stores call them on every
    operation, and nothing patches them: freezing ``time.monotonic`` hangs asyncio).
    """

    __slots__ = ()

    now_ns = staticmethod(time.monotonic_ns)
    now = staticmethod(time.monotonic)

    def time(self) -> float:
        return time.time()

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK = SystemClock()

_clock_stack: list[Clock] = []


def current_clock() -> Clock:
    """The clock that objects built without an explicit ``clock`` use: the innermost :func:`use_clock`, else
    :data:`SYSTEM_CLOCK`.

    Read once, when a store or registry is constructed. Inside a virtual-time run (``sessionkv.testing.run``, a
    ``sessionkv_virtual_time`` test) it is the virtual clock, so a store or registry built there follows virtual time
    with nothing passed.
    """
    return _clock_stack[-1] if _clock_stack else SYSTEM_CLOCK


@contextlib.contextmanager
def use_clock(clock: Clock) -> Iterator[Clock]:
    """Make ``clock`` the :func:`current_clock` inside the ``with`` block (process-wide, nestable)."""
    if not isinstance(clock, Clock):
        raise TypeError(f"clock must have now_ns(), now() and time(), got {type(clock).__name__}")
    _clock_stack.append(clock)
    try:
        yield clock
    finally:
        # remove this exact entry even if an inner block was left out of order
        for index in range(len(_clock_stack) - 1, -1, -1):
            if _clock_stack[index] is clock:
                del _clock_stack[index]
                break
