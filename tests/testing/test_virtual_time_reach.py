"""Virtual time reaches everything: objects built without a clock, horizons of years, and asyncio's own helper threads
(child watcher, default executor, getaddrinfo) counted as real work rather than reported as deadlocks."""

from __future__ import annotations

import asyncio
import math
import threading
import time

import pytest

from sessionkv import InMemorySessionKVStore, SessionRegistry
from sessionkv.clock import SYSTEM_CLOCK, current_clock
from sessionkv.store import MAX_TTL
from sessionkv.testing.virtual_time import (
    DEFAULT_EPOCH,
    DeadlockError,
    VirtualClock,
    VirtualClockSessionKVStore,
    VirtualTimeLoop,
    run,
    virtual_fakeredis_store,
)

NS = 1_000_000_000
YEAR = 365 * 24 * 3600


# -- the current clock -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("patch_wall_clock", [True, False])
def test_objects_built_inside_run_without_a_clock_follow_the_virtual_clock(patch_wall_clock: bool) -> None:
    clock = VirtualClock()

    async def main() -> None:
        assert current_clock() is clock
        store = InMemorySessionKVStore()
        registry = SessionRegistry(node_id="n1", ttl=30)
        assert (store.clock, registry.clock, VirtualClockSessionKVStore().clock) == (clock, clock, clock)
        async with store, registry:
            await store.set("k", b"v", ttl=30)
            await asyncio.sleep(10)
            info = await registry.register("c", "s")
            assert (info.started_at, info.metrics_updated_at) == (DEFAULT_EPOCH + 10, DEFAULT_EPOCH + 10)
            await asyncio.sleep(20 - 1e-9)
            assert await store.get("k") == b"v"
            await asyncio.sleep(1e-9)
            assert await store.get("k") is None
            await asyncio.sleep(5)
            assert await registry.update_metrics("c", "s", {"fps": 30})
            stored = await registry.get("c", "s")
            assert stored is not None
            assert (stored.started_at, stored.metrics_updated_at) == (DEFAULT_EPOCH + 10, DEFAULT_EPOCH + 35)
            await asyncio.sleep(30)  # the registry's default store expires on the same clock
            assert await registry.get("c", "s") is None

    assert current_clock() is SYSTEM_CLOCK
    run(main(), clock=clock, patch_wall_clock=patch_wall_clock)
    assert current_clock() is SYSTEM_CLOCK


def test_a_registry_over_a_store_without_a_clock_takes_the_runs_clock() -> None:
    clock = VirtualClock(start=7)

    async def main() -> None:
        store = virtual_fakeredis_store(clock)
        assert not hasattr(store, "clock")
        registry = SessionRegistry(store, node_id="n1", ttl=30)
        assert registry.clock is clock
        info = await registry.register("c", "s")
        assert info.started_at == DEFAULT_EPOCH
        await store.client.aclose()

    run(main(), clock=clock)


def test_patch_wall_clock_makes_the_clock_current_for_its_block() -> None:
    clock = VirtualClock()
    with clock.patch_wall_clock():
        assert current_clock() is clock
        with clock.patch_wall_clock():  # re-entering is a no-op and leaves it current
            assert current_clock() is clock
        assert current_clock() is clock
        assert InMemorySessionKVStore().clock is clock
        assert SessionRegistry().clock is clock
    assert current_clock() is SYSTEM_CLOCK
    assert InMemorySessionKVStore().clock is SYSTEM_CLOCK


# -- long horizons ---------------------------------------------------------------------------------------------------


def test_a_year_of_hourly_sleeps_ends_on_the_exact_nanosecond() -> None:
    clock = VirtualClock()
    fired: list[int] = []

    async def main() -> None:
        wall = time.time()
        for _ in range(YEAR // 3600):
            await asyncio.sleep(3600)
        assert clock.now_ns() == YEAR * NS
        assert time.time() - wall == YEAR
        loop = asyncio.get_running_loop()

        # past 2**23 s neighbouring nanoseconds share a float: each timer must still fire at its own nanosecond
        def fire() -> None:
            fired.append(clock.now_ns() - YEAR * NS)

        for offset in (3, 1, 2):
            loop.call_later(offset * 1e-9, fire)
        await asyncio.sleep(1e-9)
        assert fired == [1]
        await asyncio.sleep(5e-9)

    run(main(), clock=clock)
    assert fired == [1, 2, 3]


def test_keys_expire_to_the_nanosecond_with_the_clock_started_at_max_ttl() -> None:
    clock = VirtualClock(start=MAX_TTL)
    start_ns = int(MAX_TTL) * NS

    async def main() -> None:
        # sweeps once a virtual year: every 60 s would be 16 million wake-ups on the way to 2 * MAX_TTL
        store = InMemorySessionKVStore(cleanup_interval=YEAR)
        virtual = VirtualClockSessionKVStore(cleanup_interval=YEAR)
        async with store, virtual:
            for each in (store, virtual):
                await each.set("long", b"v", ttl=MAX_TTL)
                await each.set("short", b"v", ttl=1e-9)
                await each.set("minute", b"v", ttl=60)
            await asyncio.sleep(1e-9)
            assert clock.now_ns() == start_ns + 1
            for each in (store, virtual):
                assert await each.keys("") == ["long", "minute"]
            await asyncio.sleep(60 - 2e-9)
            for each in (store, virtual):
                assert await each.get("minute") == b"v"
            await asyncio.sleep(1e-9)
            for each in (store, virtual):
                assert await each.keys("") == ["long"]
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(asyncio.Event().wait(), timeout=3600)
            assert clock.now_ns() == start_ns + (60 + 3600) * NS
            await asyncio.sleep(MAX_TTL - 3660)
            await asyncio.sleep(-1e-9)  # a negative delay is due at once, as on any loop
            await clock.advance(-0.0)
            assert clock.now_ns() == start_ns + int(MAX_TTL) * NS
            for each in (store, virtual):
                assert await each.keys("") == []

    run(main(), clock=clock, end=None)


def test_an_infinite_timeout_never_fires_and_a_task_sleeping_forever_is_a_deadlock() -> None:
    clock = VirtualClock()

    async def main() -> None:
        assert await asyncio.wait_for(asyncio.sleep(5, result="done"), timeout=math.inf) == "done"
        assert clock.now() == 5.0
        await asyncio.sleep(math.inf)

    with pytest.raises(DeadlockError, match=r"deadlock at t=5\.0 s"):
        run(main(), clock=clock)


# -- asyncio's helper threads are real work ---------------------------------------------------------------------------


def _sleeper_and_log(clock: VirtualClock, log: list[tuple[str, float]]) -> asyncio.Task[None]:
    async def timer() -> None:
        await asyncio.sleep(60)
        log.append(("timer", clock.now()))

    return asyncio.create_task(timer())


def test_a_subprocess_wait_is_waited_for_not_reported_as_a_deadlock() -> None:
    clock = VirtualClock()
    log: list[tuple[str, float]] = []

    async def main() -> None:
        # no pipes: nothing of the child is registered with the selector, only the child watcher knows about it
        returncode = await (await asyncio.create_subprocess_exec("sleep", "0.3")).wait()
        log.append((f"exec exited {returncode}", clock.now()))
        pending = _sleeper_and_log(clock, log)  # a timer must not fire before the child exits
        shell = await asyncio.create_subprocess_shell("sleep 0.2; exit 3")
        log.append((f"shell exited {await shell.wait()}", clock.now()))
        await pending

    run(main(), clock=clock)
    assert log == [("exec exited 0", 0.0), ("shell exited 3", 0.0), ("timer", 60.0)]


def test_a_deadlock_after_the_child_exited_is_still_reported() -> None:
    async def main() -> None:
        await (await asyncio.create_subprocess_exec("true")).wait()
        await asyncio.Event().wait()

    with pytest.raises(DeadlockError, match="no child process"):
        run(main())


def test_getaddrinfo_is_waited_for() -> None:
    clock = VirtualClock()
    log: list[tuple[str, float]] = []

    async def main() -> None:
        pending = _sleeper_and_log(clock, log)
        addresses = await asyncio.get_running_loop().getaddrinfo("localhost", 6379)
        log.append((f"resolved {len(addresses) > 0}", clock.now()))
        await pending

    run(main(), clock=clock)
    assert log == [("resolved True", 0.0), ("timer", 60.0)]


def test_run_in_executor_is_waited_for_even_after_its_waiter_gave_up() -> None:
    clock = VirtualClock()
    gate = threading.Event()
    seen_by_thread: list[float] = []

    def blocking() -> None:
        gate.wait()
        seen_by_thread.append(clock.now())  # the loop must not have jumped while this thread was still working

    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualTimeLoop)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(loop.run_in_executor(None, blocking), timeout=0.1)
        assert clock.now() == 0.1
        gate.set()
        await asyncio.sleep(5)  # the job outlives its waiter: time may move only once its thread is done
        assert seen_by_thread == [0.1]
        assert await loop.run_in_executor(None, sum, [1, 2, 3]) == 6

    run(main(), clock=clock)
    assert clock.now() == 5.1
