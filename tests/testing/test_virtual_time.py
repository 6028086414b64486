"""Virtual time: one clock for timers, store expiry and the wall clock (sessionkv.testing.virtual_time)."""

from __future__ import annotations

import asyncio
import datetime
import random
import socket
import threading
import time
from decimal import Decimal
from fractions import Fraction
from typing import Any

import freezegun.api
import pytest

import sessionkv.testing
from sessionkv.store import SessionKVStore
from sessionkv.testing.virtual_time import (
    DEFAULT_EPOCH,
    DeadlockError,
    EndOfTimeError,
    RealIOError,
    VirtualClock,
    VirtualClockSessionKVStore,
    VirtualTimeError,
    VirtualTimeLoop,
    run,
    virtual_fakeredis_store,
)

NS = 1_000_000_000


def assert_wall_clock_is_real() -> None:
    assert time.time is freezegun.api.real_time
    assert time.monotonic is freezegun.api.real_monotonic
    assert datetime.datetime is freezegun.api.real_datetime
    assert datetime.date is freezegun.api.real_date


# -- the clock ----------------------------------------------------------------------------------------------------


def test_new_clock_starts_at_start_and_the_documented_epoch() -> None:
    clock = VirtualClock()
    assert (clock.now_ns(), clock.now(), clock.time()) == (0, 0.0, float(DEFAULT_EPOCH))
    assert clock.utcnow() == datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    later = VirtualClock(start=5, epoch=1_000)
    assert (later.now_ns(), later.time_ns()) == (5 * NS, 1_000 * NS)


@pytest.mark.parametrize("start", [-1, float("nan"), float("inf")])
def test_clock_rejects_impossible_start(start: float) -> None:
    with pytest.raises(ValueError, match="start"):
        VirtualClock(start=start)


@pytest.mark.parametrize("bad", [True, "1", None])
def test_clock_rejects_non_numbers(bad: object) -> None:
    with pytest.raises(TypeError, match="number of seconds"):
        VirtualClock(start=bad)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_negative_advance_is_rejected_at_once() -> None:
    clock = VirtualClock(start=10)
    with pytest.raises(ValueError, match=r"cannot advance by -1 s: virtual time never goes backwards"):
        await clock.advance(-1)
    with pytest.raises(ValueError, match="finite"):
        await clock.advance(float("nan"))
    with pytest.raises(ValueError, match=r"cannot run until t=9.5 s: it is already t=10.0 s"):
        await clock.run_until(9.5)
    assert clock.now_ns() == 10 * NS


def test_loop_rejects_bad_arguments_with_the_offending_value() -> None:
    with pytest.raises(ValueError, match=r"real_io must be 'wait' or 'forbid', got 'ignore'"):
        VirtualTimeLoop(real_io="ignore")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="clock must be a VirtualClock, got object"):
        VirtualTimeLoop(clock=object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="deadlock_grace must be >= 0 seconds, got -1"):
        VirtualTimeLoop(deadlock_grace=-1)


# -- the loop: timers, ordering, autojump ---------------------------------------------------------------------------


def test_sleep_of_an_hour_returns_with_every_clock_one_hour_later() -> None:
    clock = VirtualClock()

    async def main() -> tuple[float, float, float, datetime.datetime]:
        wall_before = time.time()
        await asyncio.sleep(3600)
        return asyncio.get_running_loop().time(), clock.now(), time.time() - wall_before, datetime.datetime.now()

    loop_time, now, wall_elapsed, wall_now = run(main(), clock=clock)
    assert (loop_time, now, wall_elapsed) == (3600.0, 3600.0, 3600.0)
    assert wall_now == datetime.datetime(2026, 1, 1, 1, 0, 0)
    assert_wall_clock_is_real()


def test_equal_deadlines_fire_in_scheduling_order() -> None:
    fired: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await asyncio.sleep(seconds)
        fired.append(name)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.call_at(0.3, fired.append, "call_at-0.3")
        # 0.1 + 0.2 != 0.3 in floats; both are 300 ms to the nanosecond, so scheduling order decides
        loop.call_later(0.1 + 0.2, fired.append, "call_later-0.1+0.2")
        tasks = [asyncio.create_task(sleeper(f"task-{i}", 0.3)) for i in range(5)]
        loop.call_later(0.2, fired.append, "earlier-deadline")
        await asyncio.gather(*tasks)

    run(main())
    assert fired == ["earlier-deadline", "call_at-0.3", "call_later-0.1+0.2", *(f"task-{i}" for i in range(5))]


def test_same_program_gives_the_same_trace() -> None:
    def trace() -> list[tuple[str, int, float]]:
        clock = VirtualClock()
        events: list[tuple[str, int, float]] = []

        async def worker(name: str, period: float) -> None:
            for _ in range(4):
                await asyncio.sleep(period)
                events.append((name, clock.now_ns(), time.time()))

        async def main() -> None:
            await asyncio.gather(*(worker(f"w{i}", 0.25 * (i + 1)) for i in range(4)))

        run(main(), clock=clock)
        return events

    first = trace()
    assert first == trace()
    assert len(first) == 16


def test_wait_for_and_timeout_follow_the_clock() -> None:
    clock = VirtualClock()

    async def main() -> list[float]:
        seen = []
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.Event().wait(), timeout=5)
        seen.append(clock.now())
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(2.5):
                await asyncio.sleep(100)
        seen.append(clock.now())
        assert await asyncio.wait_for(asyncio.sleep(1, result="done"), timeout=2) == "done"
        seen.append(clock.now())
        return seen

    assert run(main(), clock=clock) == [5.0, 7.5, 8.5]


def test_advance_fires_due_timers_in_order_and_lets_woken_tasks_finish() -> None:
    clock = VirtualClock()
    log: list[tuple[str, float]] = []

    async def chained(name: str, seconds: float) -> None:
        await asyncio.sleep(seconds)
        for _ in range(3):  # several more steps after waking: advance() must wait for all of them
            await asyncio.sleep(0)
        log.append((name, clock.now()))

    async def main() -> None:
        tasks = [asyncio.create_task(chained(name, s)) for name, s in [("b", 2), ("a", 1), ("late", 11)]]
        await clock.advance(10)
        log.append(("advanced", clock.now()))
        await clock.run_until(11)
        log.append(("ran until 11", clock.now()))
        await asyncio.gather(*tasks)

    run(main(), clock=clock)
    assert log == [("a", 1.0), ("b", 2.0), ("advanced", 10.0), ("late", 11.0), ("ran until 11", 11.0)]


# -- deadlock, end of time ------------------------------------------------------------------------------------------


def test_deadlock_is_reported_with_the_stuck_task_and_where_it_waits() -> None:
    async def wait_forever(event: asyncio.Event) -> None:
        await event.wait()

    async def main() -> None:
        await asyncio.create_task(wait_forever(asyncio.Event()), name="stuck-heartbeat")

    with pytest.raises(DeadlockError) as caught:
        run(main())
    stuck = [line for line in caught.value.blocked if line.startswith("'stuck-heartbeat'")]
    assert len(stuck) == 1
    assert f"{__file__}:" in stuck[0]
    assert "in wait_forever: 'await event.wait()'" in stuck[0]
    assert "stuck-heartbeat" in str(caught.value)
    assert_wall_clock_is_real()


def test_end_of_time_stops_the_clock_at_end_and_names_the_tasks() -> None:
    clock = VirtualClock()
    ticks: list[float] = []

    async def heartbeat() -> None:
        while True:
            await asyncio.sleep(10)
            ticks.append(clock.now())

    with pytest.raises(EndOfTimeError, match=r"end of time reached at t=30.0 s: the next timer is due at t=40.0 s"):
        run(heartbeat(), clock=clock, end=30)
    assert ticks == [10.0, 20.0, 30.0]  # a timer due exactly at the end still fires
    assert clock.now() == 30.0


def test_end_before_the_clock_is_rejected() -> None:
    with pytest.raises(ValueError, match="before the clock's current time"):
        VirtualTimeLoop(VirtualClock(start=10), end=5)


# -- real I/O and threads -------------------------------------------------------------------------------------------


def test_pending_socket_is_waited_for_in_real_time_not_jumped_past() -> None:
    clock = VirtualClock()
    log: list[tuple[str, float]] = []

    async def timer() -> None:
        await asyncio.sleep(3600)
        log.append(("timer", clock.now()))

    async def main() -> None:
        ours, theirs = socket.socketpair()
        with ours, theirs:
            reader, writer = await asyncio.open_connection(sock=ours)
            pending = asyncio.create_task(timer())
            # another thread answers a little later (in real time); the loop must wait for it, not jump an hour
            sender = threading.Timer(0.05, theirs.sendall, args=(b"pong\n",))
            sender.start()
            log.append((repr(await reader.readline()), clock.now()))
            sender.join()
            writer.close()
            await writer.wait_closed()
            await pending

    run(main(), clock=clock)
    assert log == [("b'pong\\n'", 0.0), ("timer", 3600.0)]


def test_real_io_can_be_forbidden() -> None:
    async def main() -> None:
        ours, theirs = socket.socketpair()
        with ours, theirs:
            reader, writer = await asyncio.open_connection(sock=ours)
            try:
                await reader.read(1)
            finally:
                writer.close()

    with pytest.raises(RealIOError, match=r"real I/O on fd \d+ under virtual time with real_io='forbid'"):
        run(main(), real_io="forbid")


def test_thread_work_is_waited_for_before_time_jumps() -> None:
    clock = VirtualClock()
    log: list[tuple[str, float]] = []

    def blocking() -> str:
        threading.Event().wait(0.05)  # real blocking work in a thread
        return "thread done"

    async def timer() -> None:
        await asyncio.sleep(60)
        log.append(("timer", clock.now()))

    async def main() -> None:
        pending = asyncio.create_task(timer())
        log.append((await asyncio.to_thread(blocking), clock.now()))
        await pending

    run(main(), clock=clock)
    assert log == [("thread done", 0.0), ("timer", 60.0)]


# -- wall clock -----------------------------------------------------------------------------------------------------


def test_wall_clock_is_restored_when_the_run_raises() -> None:
    async def main() -> None:
        assert time.time() == DEFAULT_EPOCH
        raise LookupError("boom")

    with pytest.raises(LookupError, match="boom"):
        run(main())
    assert_wall_clock_is_real()


def test_wall_clock_follows_to_the_microsecond_and_monotonic_moves_with_it() -> None:
    clock = VirtualClock(epoch=1_000_000)
    with clock.patch_wall_clock():
        assert clock.wall_clock_patched
        monotonic_before = time.monotonic()
        assert time.time() == 1_000_000.0
        run(asyncio.sleep(1.5), clock=clock)  # re-entering the patch of the same clock is a no-op
        assert time.time() == 1_000_001.5
        assert time.monotonic() - monotonic_before == 1.5  # never frozen: moves with the virtual clock
        assert datetime.date.today() == datetime.date(1970, 1, 12)
    assert not clock.wall_clock_patched
    assert_wall_clock_is_real()


def test_two_clocks_cannot_patch_the_wall_clock_at_once() -> None:
    with (
        VirtualClock().patch_wall_clock(),
        pytest.raises(VirtualTimeError, match="only one VirtualClock"),
        VirtualClock().patch_wall_clock(),
    ):
        pass
    assert_wall_clock_is_real()


# -- the store on virtual time --------------------------------------------------------------------------------------


def test_one_advance_expires_a_key_fires_a_heartbeat_and_moves_the_wall_clock() -> None:
    clock = VirtualClock()

    async def main() -> tuple[list[float], bytes | None, bytes | None, float]:
        beats: list[float] = []

        async def heartbeat() -> None:
            while True:
                await asyncio.sleep(10)
                beats.append(clock.now())

        store = VirtualClockSessionKVStore(clock=clock)
        await store.set("session", b"alive", ttl=30)
        task = asyncio.create_task(heartbeat())
        wall_before = time.time()
        await clock.advance(29.999_999_999)
        before = await store.get("session")
        await clock.advance(0.000_000_001)
        after = await store.get("session")
        task.cancel()
        return beats, before, after, time.time() - wall_before

    beats, before, after, wall_elapsed = run(main(), clock=clock)
    assert beats == [10.0, 20.0, 30.0]
    assert (before, after) == (b"alive", None)
    assert wall_elapsed == 30.0


@pytest.mark.asyncio
async def test_expiry_boundary_is_exact_to_the_nanosecond_on_a_plain_loop() -> None:
    clock = VirtualClock(start=123.456)
    store = VirtualClockSessionKVStore(clock=clock)
    await store.set("k", b"v", ttl=0.3)
    set_at = clock.now_ns()
    await clock.run_until((set_at + 300_000_000 - 1) / NS)
    assert clock.now_ns() == set_at + 300_000_000 - 1
    assert await store.get("k") == b"v"
    assert await store.keys("") == ["k"]
    await clock.advance(1e-9)
    assert clock.now_ns() == set_at + 300_000_000
    assert await store.get("k") is None
    assert await store.keys("") == []


def test_cleanup_sweep_runs_at_virtual_intervals() -> None:
    clock = VirtualClock()

    async def main() -> list[int]:
        counts = []
        async with VirtualClockSessionKVStore(cleanup_interval=5, clock=clock) as store:
            await store.mset([(f"k{i}", b"v", 1) for i in range(100)])
            await clock.advance(4.999)
            counts.append(len(store._entries))  # expired but not yet reclaimed
            await clock.advance(0.001)
            counts.append(len(store._entries))  # the sweep at t=5 reclaimed them
        return counts

    assert run(main(), clock=clock) == [100, 0]


@pytest.mark.asyncio
async def test_clock_sleepers_on_a_plain_loop_wake_in_deadline_then_scheduling_order() -> None:
    clock = VirtualClock()
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.now()))

    tasks = [asyncio.create_task(sleeper(n, s)) for n, s in [("b", 2), ("a1", 1), ("a2", 1), ("c", 9)]]
    await asyncio.sleep(0)
    await clock.advance(5)
    assert woke == [("a1", 1.0), ("a2", 1.0), ("b", 2.0)]
    assert clock.now() == 5.0
    tasks[-1].cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def test_store_rejects_a_clock_that_is_not_virtual() -> None:
    with pytest.raises(TypeError, match="clock must be a VirtualClock"):
        VirtualClockSessionKVStore(clock=object())  # type: ignore[arg-type]


# -- fakeredis on virtual time ----------------------------------------------------------------------------------------


def _expiry_script(seed: int, steps: int = 300) -> list[tuple[str, tuple[Any, ...]]]:
    """A seeded random store workload. Writes happen on whole milliseconds with whole-millisecond TTLs; every probe
    happens half a millisecond later, so no probe ever lands exactly on a deadline (where Redis, expiring 1 ms later
    than the in-memory store, would legitimately differ: G06 granularity)."""
    rng = random.Random(seed)
    keys = [f"s/{i}" for i in range(8)]
    script: list[tuple[str, tuple[Any, ...]]] = []
    for _ in range(steps):
        op = rng.choice(["set", "set", "set_xx", "mset", "expire", "delete", "wait", "wait"])
        ttl = rng.randint(1, 400) / 1000
        if op == "set":
            script.append(("set", (rng.choice(keys), rng.randbytes(3), ttl)))
        elif op == "set_xx":
            script.append(("set_xx", (rng.choice(keys), rng.randbytes(3), ttl)))
        elif op == "mset":
            script.append(
                ("mset", tuple((k, rng.randbytes(2), rng.randint(1, 400) / 1000) for k in rng.sample(keys, 3)))
            )
        elif op == "expire":
            script.append(("expire", (tuple(rng.sample(keys, 2)), ttl)))
        elif op == "delete":
            script.append(("delete", (rng.choice(keys),)))
        else:
            script.append(("wait", (rng.randint(1, 300),)))
    return script


async def _play(
    stores: list[SessionKVStore], clock: VirtualClock, script: list[tuple[str, tuple[Any, ...]]]
) -> list[list[object]]:
    """Apply every step to every store in lockstep on one clock; return each store's probe results."""
    seen: list[list[object]] = [[] for _ in stores]
    everything = [f"s/{i}" for i in range(8)]
    for op, args in script:
        if op == "wait":
            await clock.advance(args[0] / 1000 - 0.000_5)
        for store, results in zip(stores, seen, strict=True):
            if op == "set":
                await store.set(*args)
            elif op == "set_xx":
                await store.set(*args, only_if_exists=True)
            elif op == "mset":
                await store.mset(list(args))
            elif op == "expire":
                await store.expire(*args[0], ttl=args[1])
            elif op == "delete":
                await store.delete([args[0]])
            else:
                results.append((clock.now_ns(), sorted(await store.keys("s/")), await store.mget(everything)))
        if op == "wait":
            await clock.advance(0.000_5)
    return seen


def test_same_script_gives_the_same_expiry_on_memory_and_fakeredis() -> None:
    script = _expiry_script(seed=20260101)
    clock = VirtualClock()

    async def main() -> list[list[object]]:
        return await _play([VirtualClockSessionKVStore(clock=clock), virtual_fakeredis_store(clock)], clock, script)

    on_memory, on_fakeredis = run(main(), clock=clock)
    assert on_memory == on_fakeredis
    values = [value for probe in on_memory for value in probe[2]]  # type: ignore[index]
    assert None in values
    assert any(value is not None for value in values)


def test_fakeredis_key_lives_through_its_deadline_millisecond_then_expires() -> None:
    clock = VirtualClock()

    async def main() -> list[bytes | None]:
        store = virtual_fakeredis_store(clock)
        await store.set("k", b"v", ttl=0.25)
        seen = []
        for step in (0.249, 0.001, 0.001):
            await clock.advance(step)
            seen.append(await store.get("k"))
        return seen

    assert run(main(), clock=clock) == [b"v", b"v", None]


def test_virtual_fakeredis_store_needs_the_patched_wall_clock() -> None:
    with pytest.raises(VirtualTimeError, match=r"fakeredis reads time\.time\(\)"):
        virtual_fakeredis_store(VirtualClock())


@pytest.mark.parametrize(
    ("seconds", "expected_ns"),
    [(Decimal("0.3"), 300_000_000), (Fraction(1, 3), 333_333_333), (10**12, 10**21), (0.25, 250_000_000)],
)
def test_clock_durations_take_every_real_number_exactly(seconds: object, expected_ns: int) -> None:
    clock = VirtualClock()
    sessionkv.testing.run(clock.advance(seconds))  # type: ignore[arg-type]
    assert clock.now_ns() == expected_ns


@pytest.mark.parametrize("seconds", [float("nan"), float("inf"), Decimal("NaN"), Decimal("Infinity")])
def test_a_non_finite_duration_is_a_value_error(seconds: object) -> None:
    with pytest.raises(ValueError, match="must be a finite number of seconds"):
        VirtualClock(start=seconds)  # type: ignore[arg-type]
