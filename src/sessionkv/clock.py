"""Clocks: the single source of time for a store.

A :class:`Clock` gives monotonic time (for expiry) and epoch time (for timestamps a human reads). Stores read time only
through a clock, so a virtual clock from :mod:`sessionkv.testing` can drive them exactly.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

__all__ = ["NS_PER_SECOND", "Clock", "SystemClock"]

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
    """The real clock: ``time.monotonic_ns()`` for expiry and ``time.time()`` for timestamps."""

    __slots__ = ()

    # the builtins themselves, not wrappers: stores call these on every operation
    now_ns = staticmethod(time.monotonic_ns)
    now = staticmethod(time.monotonic)
    time = staticmethod(time.time)

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK = SystemClock()
