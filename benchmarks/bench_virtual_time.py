"""Benchmark virtual time: 33 store tests with TTL waits, run with real sleeps and on virtual time, in one run.

The suite is the behaviours of vision-agents' in-memory store tests
(``tests/test_agents/test_session_registry/test_in_memory_store.py``: 14 tests, ``asyncio.sleep`` waits of 0.5 to 2 s),
of the in-memory half of its registry tests (``test_registry.py``: 9 async tests re-expressed on the store, with the
3 s + 3 s refresh and 1.5 s expiry waits), plus 10 contract tests with the same kind of real-sleep TTL waits, written
here (G04, G05, G06, G07, G09, G10 and the cleanup sweep). Each test gets a fresh store, as with a function fixture:

* real: ``asyncio.run`` and :class:`InMemorySessionKVStore` on the system clock, sleeping for real;
* virtual: :func:`sessionkv.testing.virtual_time.run` (wall clock patched through freezegun, as in a marked test) and
  :class:`VirtualClockSessionKVStore`; the very same test functions, sleeps included.

Every test asserts its outcome in both modes, so a speed-up cannot come from skipping work. Prints both totals and the
ratio real / virtual.

    python benchmarks/bench_virtual_time.py            # full suite (~23 s of real sleeps)
    python benchmarks/bench_virtual_time.py --quick    # CI smoke: every TTL and sleep scaled by 0.05 (~1 s)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable

from sessionkv import InMemorySessionKVStore
from sessionkv.store import SessionKVStore
from sessionkv.testing.virtual_time import VirtualClock, VirtualClockSessionKVStore, run

StoreTest = Callable[[SessionKVStore, float], Awaitable[None]]
"""A test: the store and the time scale (every TTL and sleep is multiplied by it)."""

TESTS: list[StoreTest] = []


def store_test(test: StoreTest) -> StoreTest:
    TESTS.append(test)
    return test


# -- vision-agents test_in_memory_store.py behaviours (14) ------------------------------------------------------------


@store_test
async def set_and_get(store: SessionKVStore, s: float) -> None:
    await store.set("k1", b"hello", ttl=10 * s)
    assert await store.get("k1") == b"hello"


@store_test
async def get_missing_key(store: SessionKVStore, s: float) -> None:
    assert await store.get("nonexistent") is None


@store_test
async def set_overwrites(store: SessionKVStore, s: float) -> None:
    await store.set("k1", b"first", ttl=10 * s)
    await store.set("k1", b"second", ttl=10 * s)
    assert await store.get("k1") == b"second"


@store_test
async def ttl_expiry(store: SessionKVStore, s: float) -> None:
    await store.set("ephemeral", b"bye", ttl=0.5 * s)
    await asyncio.sleep(2 * s)
    assert await store.get("ephemeral") is None


@store_test
async def mset_and_mget(store: SessionKVStore, s: float) -> None:
    await store.mset([("a", b"1", 10 * s), ("b", b"2", 10 * s), ("c", b"3", 10 * s)])
    assert await store.mget(["a", "b", "c"]) == [b"1", b"2", b"3"]


@store_test
async def mget_partial_missing(store: SessionKVStore, s: float) -> None:
    await store.mset([("x", b"1", 10 * s), ("y", b"2", 10 * s)])
    assert await store.mget(["x", "y", "z"]) == [b"1", b"2", None]


@store_test
async def mget_empty(store: SessionKVStore, s: float) -> None:
    assert await store.mget([]) == []


@store_test
async def expire_refreshes_ttl(store: SessionKVStore, s: float) -> None:
    await store.set("refresh_me", b"val", ttl=1 * s)
    await asyncio.sleep(0.5 * s)
    await store.expire("refresh_me", ttl=2 * s)
    await asyncio.sleep(1 * s)
    assert await store.get("refresh_me") == b"val"


@store_test
async def expire_nonexistent_key(store: SessionKVStore, s: float) -> None:
    await store.expire("ghost", ttl=5 * s)
    assert await store.get("ghost") is None


@store_test
async def expire_multiple_keys(store: SessionKVStore, s: float) -> None:
    await store.mset([("m1", b"a", 1 * s), ("m2", b"b", 1 * s)])
    await asyncio.sleep(0.5 * s)
    await store.expire("m1", "m2", ttl=2 * s)
    await asyncio.sleep(1 * s)
    assert await store.mget(["m1", "m2"]) == [b"a", b"b"]


@store_test
async def keys_with_prefix(store: SessionKVStore, s: float) -> None:
    await store.mset([("sessions/s1", b"a", 10 * s), ("sessions/s2", b"b", 10 * s), ("other/x", b"c", 10 * s)])
    assert sorted(await store.keys("sessions/")) == ["sessions/s1", "sessions/s2"]


@store_test
async def delete(store: SessionKVStore, s: float) -> None:
    await store.mset([("d1", b"a", 10 * s), ("d2", b"b", 10 * s)])
    await store.delete(["d1"])
    assert await store.mget(["d1", "d2"]) == [None, b"b"]


@store_test
async def delete_nonexistent(store: SessionKVStore, s: float) -> None:
    await store.delete(["does_not_exist"])
    assert await store.get("does_not_exist") is None


@store_test
async def delete_empty(store: SessionKVStore, s: float) -> None:
    await store.delete([])


# -- vision-agents test_registry.py behaviours, in-memory backend, on the store (9) -----------------------------------


def session_record(call_id: str, session_id: str, **extra: object) -> bytes:
    now = time.time()  # the registry stamps records with the wall clock: virtual under the patch
    record = {"session_id": session_id, "call_id": call_id, "node_id": "node-1", "started_at": now}
    return json.dumps({**record, "metrics_updated_at": now, "metrics": {}, **extra}).encode()


@store_test
async def register_and_get(store: SessionKVStore, s: float) -> None:
    await store.set("sessions/call-1/sess-1", session_record("call-1", "sess-1"), ttl=5 * s)
    raw = await store.get("sessions/call-1/sess-1")
    assert raw is not None
    assert json.loads(raw)["session_id"] == "sess-1"


@store_test
async def get_for_call(store: SessionKVStore, s: float) -> None:
    for session_id in ("s1", "s2"):
        await store.set(f"sessions/call-multi/{session_id}", session_record("call-multi", session_id), ttl=5 * s)
    keys = await store.keys("sessions/call-multi/")
    assert {json.loads(raw or b"{}")["session_id"] for raw in await store.mget(keys)} == {"s1", "s2"}


@store_test
async def remove(store: SessionKVStore, s: float) -> None:
    await store.set("sessions/call-r/to-remove", session_record("call-r", "to-remove"), ttl=5 * s)
    await store.delete(["sessions/call-r/to-remove"])
    assert await store.get("sessions/call-r/to-remove") is None


@store_test
async def refresh_extends_ttl(store: SessionKVStore, s: float) -> None:
    await store.set("sessions/call-r/sess-r", session_record("call-r", "sess-r"), ttl=5 * s)
    await asyncio.sleep(3 * s)
    await store.expire("sessions/call-r/sess-r", ttl=5 * s)
    await asyncio.sleep(3 * s)
    assert await store.get("sessions/call-r/sess-r") is not None


@store_test
async def request_close_and_get_close_requests(store: SessionKVStore, s: float) -> None:
    await store.set("sessions/call-c/sess-close", session_record("call-c", "sess-close"), ttl=5 * s)
    await store.set("close_requests/call-c/sess-close", b"", ttl=5 * s)
    flags = await store.mget(["close_requests/call-c/sess-close", "close_requests/call-x/other"])
    assert flags == [b"", None]


@store_test
async def update_metrics(store: SessionKVStore, s: float) -> None:
    key = "sessions/call-m/sess-m"
    await store.set(key, session_record("call-m", "sess-m"), ttl=5 * s)
    raw = await store.get(key)
    assert raw is not None
    record = json.loads(raw)
    record["metrics"] = {"latency_ms": 42.0}
    await store.set(key, json.dumps(record).encode(), ttl=5 * s, only_if_exists=True)
    assert json.loads(await store.get(key) or b"{}")["metrics"]["latency_ms"] == 42.0


@store_test
async def session_expires_without_refresh(store: SessionKVStore, s: float) -> None:
    await store.set("sessions/call-e/sess-expire", session_record("call-e", "sess-expire"), ttl=1 * s)
    await asyncio.sleep(1.5 * s)
    assert await store.get("sessions/call-e/sess-expire") is None


@store_test
async def get_ignores_extra_keys(store: SessionKVStore, s: float) -> None:
    await store.set("sessions/c-extra/s-extra", session_record("c-extra", "s-extra", unknown_field=1), ttl=10 * s)
    assert json.loads(await store.get("sessions/c-extra/s-extra") or b"{}")["call_id"] == "c-extra"


@store_test
async def get_for_call_ignores_extra_keys(store: SessionKVStore, s: float) -> None:
    await store.set("sessions/c-fc/s-fc", session_record("c-fc", "s-fc", future_field=True), ttl=10 * s)
    assert await store.keys("sessions/c-fc/") == ["sessions/c-fc/s-fc"]


# -- contract tests with TTL waits (10) -------------------------------------------------------------------------------


@store_test
async def only_if_exists_never_resurrects_expired_key(store: SessionKVStore, s: float) -> None:
    await store.set("k", b"old", ttl=0.5 * s)
    await asyncio.sleep(1 * s)
    await store.set("k", b"new", ttl=10 * s, only_if_exists=True)
    assert await store.get("k") is None


@store_test
async def only_if_exists_writes_live_key(store: SessionKVStore, s: float) -> None:
    await store.set("k", b"old", ttl=1 * s)
    await store.set("k", b"new", ttl=2 * s, only_if_exists=True)
    await asyncio.sleep(1.5 * s)
    assert await store.get("k") == b"new"


@store_test
async def shorter_ttl_shortens_life(store: SessionKVStore, s: float) -> None:
    await store.set("k", b"v", ttl=10 * s)
    await store.set("k", b"v", ttl=0.5 * s)
    await asyncio.sleep(1 * s)
    assert await store.get("k") is None


@store_test
async def keys_never_lists_expired(store: SessionKVStore, s: float) -> None:
    await store.mset([("p/short", b"a", 0.5 * s), ("p/long", b"b", 10 * s)])
    await asyncio.sleep(1 * s)
    assert await store.keys("p/") == ["p/long"]


@store_test
async def mget_answers_none_for_expired(store: SessionKVStore, s: float) -> None:
    await store.mset([("a", b"1", 0.5 * s), ("b", b"2", 10 * s)])
    await asyncio.sleep(1 * s)
    assert await store.mget(["a", "b", "a"]) == [None, b"2", None]


@store_test
async def mset_items_keep_their_own_ttl(store: SessionKVStore, s: float) -> None:
    await store.mset([("a", b"1", 0.5 * s), ("b", b"2", 1.5 * s)])
    await asyncio.sleep(1 * s)
    assert await store.mget(["a", "b"]) == [None, b"2"]


@store_test
async def expire_never_resurrects(store: SessionKVStore, s: float) -> None:
    await store.set("k", b"v", ttl=0.5 * s)
    await asyncio.sleep(1 * s)
    await store.expire("k", ttl=10 * s)
    assert await store.get("k") is None


@store_test
async def expire_can_shorten(store: SessionKVStore, s: float) -> None:
    await store.set("k", b"v", ttl=10 * s)
    await store.expire("k", ttl=0.5 * s)
    await asyncio.sleep(1 * s)
    assert await store.get("k") is None


@store_test
async def set_after_expiry_starts_fresh(store: SessionKVStore, s: float) -> None:
    await store.set("k", b"v1", ttl=0.5 * s)
    await asyncio.sleep(1 * s)
    await store.set("k", b"v2", ttl=0.5 * s)
    assert await store.get("k") == b"v2"


@store_test
async def expired_keys_are_gone_for_every_operation(store: SessionKVStore, s: float) -> None:
    await store.mset([(f"e/{i}", b"x", 0.5 * s) for i in range(50)])
    await asyncio.sleep(1 * s)
    assert (await store.keys("e/"), await store.get("e/0"), await store.mget(["e/1"])) == ([], None, [None])


# -- runners -----------------------------------------------------------------------------------------------------------


async def _with_store(store: SessionKVStore, test: StoreTest, scale: float) -> None:
    async with store:
        await test(store, scale)


def run_real(scale: float) -> float:
    start = time.perf_counter()
    for test in TESTS:
        asyncio.run(_with_store(InMemorySessionKVStore(cleanup_interval=1.0 * scale), test, scale))
    return time.perf_counter() - start


def run_virtual(scale: float) -> tuple[float, float]:
    """Returns (real seconds spent, virtual seconds elapsed over all tests)."""
    start = time.perf_counter()
    virtual_elapsed = 0.0
    for test in TESTS:
        clock = VirtualClock()
        run(
            _with_store(VirtualClockSessionKVStore(cleanup_interval=1.0 * scale, clock=clock), test, scale), clock=clock
        )
        virtual_elapsed += clock.now()
    return time.perf_counter() - start, virtual_elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CI smoke run: every TTL and sleep scaled by 0.05")
    parser.add_argument("--repeat", type=int, default=3, help="virtual-time repetitions (median reported)")
    args = parser.parse_args()
    scale = 0.05 if args.quick else 1.0
    assert len(TESTS) == 33, len(TESTS)
    # the machine is shared: repeat the fast side and report the median (the slow side is dominated by its sleeps)
    virtual_runs = [run_virtual(scale) for _ in range(max(1, args.repeat))]
    virtual_real = statistics.median(real for real, _ in virtual_runs)
    virtual_elapsed = virtual_runs[0][1]
    real = run_real(scale)
    print(f"{len(TESTS)} store tests, time scale {scale}")
    print(f"  real sleeps:  {real:8.3f} s")
    print(
        f"  virtual time: {virtual_real:8.3f} s median of {len(virtual_runs)} "
        f"({', '.join(f'{r:.3f}' for r, _ in virtual_runs)}; {virtual_elapsed:.3f} virtual seconds in the tests)"
    )
    print(f"  speed-up:     {real / virtual_real:8.1f}x")


if __name__ == "__main__":
    main()
