"""Waiting in a test for something only a server can tell: :func:`eventually` polls until a probe succeeds.

Why not ``async with asyncio.timeout(...)`` around a polling loop: the timeout cancels the task once, and before
Python 3.12 redis-py can lose that cancellation. With ``socket_timeout`` set (redis-py >= 8 sets 5 s by default) it
sends every command through ``asyncio.wait_for``, which returns normally when the cancellation arrives as the send
completes (CPython gh-86296). The loop then polls forever instead of failing. :func:`eventually` checks its deadline
itself between probes, so no lost cancellation can keep it running.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sessionkv.store import check_seconds

__all__ = ["NotReachedError", "eventually"]

T = TypeVar("T")

_SHOWN_MAX = 200  # characters of the last probe result quoted in the failure message


class NotReachedError(AssertionError):
    """What :func:`eventually` waited for did not happen in time (an ``AssertionError``, so pytest reports a failure).

    ``last`` is the probe's last result."""

    def __init__(self, message: str, last: object) -> None:
        super().__init__(message)
        self.last = last


async def eventually(probe: Callable[[], Awaitable[T]], *, within: float, what: str, interval: float = 0.01) -> T:
    """Await ``probe()`` every ``interval`` seconds until it returns something truthy, and return that.

    Raises :class:`NotReachedError` naming ``what``, the number of probes and the last result once ``within`` seconds
    (event-loop time, so virtual time in a virtual-time test) have passed without success; an exception from
    ``probe`` propagates at once. The deadline is checked between probes, never by cancelling one: the wait ends at
    most one probe and one ``interval`` after it, provided each probe ends (give its client a ``socket_timeout``).
    """
    within = check_seconds("within", within)
    interval = check_seconds("interval", interval)
    loop = asyncio.get_running_loop()
    give_up = loop.time() + within
    probes = 0
    while True:
        result = await probe()
        probes += 1
        if result:
            return result
        if loop.time() >= give_up:
            shown = repr(result)
            if len(shown) > _SHOWN_MAX:
                shown = shown[:_SHOWN_MAX] + "..."
            raise NotReachedError(f"not within {within:g} s ({probes} probes): {what}; last probe gave {shown}", result)
        await asyncio.sleep(interval)
