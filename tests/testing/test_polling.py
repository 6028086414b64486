"""eventually(): a wait that fails in time even when its probe loses cancellations (virtual time: no real waiting)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import pytest

from sessionkv.testing.polling import NotReachedError, eventually


@pytest.mark.asyncio
@pytest.mark.sessionkv_virtual_time
async def test_returns_the_first_truthy_probe_result() -> None:
    answers: Iterator[object] = iter([0, None, [], "ready", "later"])

    async def probe() -> object:
        return next(answers)

    assert await eventually(probe, within=1, what="ready") == "ready"


@pytest.mark.asyncio
@pytest.mark.sessionkv_virtual_time
async def test_fails_after_its_deadline_naming_what_it_waited_for() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def probe() -> int:
        return 0

    with pytest.raises(NotReachedError, match=r"not within 2 s \(\d+ probes\): the flag; last probe gave 0") as info:
        await eventually(probe, within=2, what="the flag", interval=0.5)
    assert info.value.last == 0
    assert 2 <= loop.time() - started <= 2.5  # at most one interval past the deadline


@pytest.mark.asyncio
@pytest.mark.sessionkv_virtual_time
async def test_a_probe_that_loses_every_cancellation_cannot_keep_the_wait_running() -> None:
    # What redis-py's wait_for does on Python 3.11 when a cancellation lands as a send completes (CPython gh-86296):
    # the probe returns normally. A timeout that cancels the poll once would then never end it.
    async def probe() -> bool:
        with contextlib.suppress(asyncio.CancelledError):  # losing the cancellation is the point
            await asyncio.sleep(0.1)
        return False

    with pytest.raises(NotReachedError):
        await eventually(probe, within=1, what="never")


@pytest.mark.asyncio
@pytest.mark.sessionkv_virtual_time
async def test_a_failing_probe_fails_the_wait_at_once() -> None:
    async def probe() -> bool:
        raise ConnectionError("refused")

    with pytest.raises(ConnectionError, match="refused"):
        await eventually(probe, within=60, what="anything")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("option", "value"), [("within", 0), ("within", float("nan")), ("interval", -1), ("interval", float("inf"))]
)
async def test_rejects_a_duration_that_is_not_positive_and_finite(option: str, value: float) -> None:
    async def probe() -> bool:
        return True

    options = {"within": 1.0, "interval": 0.01, option: value}
    with pytest.raises(ValueError, match=f"{option} must be > 0"):
        await eventually(probe, what="x", **options)
