"""The per-check deadline of certification holds even when the backend swallows a cancellation."""

from __future__ import annotations

import asyncio

import pytest

from sessionkv.testing.certify.runner import _insistent_timeout
from sessionkv.testing.virtual_time import run


async def _swallows_first_cancellation(forever: bool) -> str:
    swallowed = 0
    while True:
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            if swallowed:
                raise
            swallowed += 1  # what redis-py's send does on Python 3.11 when the cancellation lands as it completes
            if not forever:
                return "ended after swallowing"


def test_a_swallowed_cancellation_is_sent_again_and_ends_in_timeout_error() -> None:
    async def main() -> int:
        with pytest.raises(TimeoutError):
            async with _insistent_timeout(1.0):
                await _swallows_first_cancellation(forever=True)
        task = asyncio.current_task()
        assert task is not None
        return task.cancelling()

    assert run(main()) == 0  # the count is balanced: later timeouts in the same task still work


def test_asyncio_timeout_alone_would_not_end_that_loop() -> None:
    # The control: with one cancellation only, the loop outlives its deadline (here bounded by an outer, second
    # deadline so the test itself ends).
    async def main() -> bool:
        try:
            async with asyncio.timeout(5.0) as outer:
                async with asyncio.timeout(1.0):
                    await _swallows_first_cancellation(forever=True)
        except TimeoutError:
            return outer.expired()
        return False

    assert run(main()) is True  # only the outer deadline ended it


def test_a_body_that_ends_after_the_deadline_leaves_the_count_balanced() -> None:
    async def main() -> tuple[str, int]:
        async with _insistent_timeout(1.0):
            result = await _swallows_first_cancellation(forever=False)
        task = asyncio.current_task()
        assert task is not None
        return result, task.cancelling()

    assert run(main()) == ("ended after swallowing", 0)


def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    async def main() -> None:
        async def inner() -> None:
            async with _insistent_timeout(100.0):
                await asyncio.sleep(1000)

        task = asyncio.create_task(inner())
        await asyncio.sleep(1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
