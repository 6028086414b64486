"""What is particular to ``InMemorySessionKVStore``: reclamation, its background sweep, its data structures."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from fractions import Fraction

import pytest

from sessionkv import InMemorySessionKVStore
from sessionkv.memory import _BUCKET_SHIFT
from sessionkv.testing import VirtualClock


def stored(store: InMemorySessionKVStore) -> int:
    """Keys still holding memory, expired or not."""
    return len(store._entries)


def bucket_members(store: InMemorySessionKVStore) -> int:
    return sum(len(bucket) for bucket in store._buckets.values())


def assert_consistent(store: InMemorySessionKVStore) -> None:
    """Every stored key is in the index and in exactly the bucket of its deadline, and nothing else is."""
    assert list(store._index) == sorted(store._entries)
    assert bucket_members(store) == len(store._entries)
    for key, (_, deadline) in store._entries.items():
        assert key in store._buckets[deadline >> _BUCKET_SHIFT]
    assert sorted(store._bucket_heap) == sorted(store._buckets)


@pytest.mark.parametrize(
    "interval", [0, -1, 0.0, -1e-9, float("nan"), float("inf"), -float("inf"), 10**400, -(10**400)]
)
def test_cleanup_interval_must_be_positive_and_finite(interval: float) -> None:
    # vision-agents' own tests match "cleanup_interval must be > 0": a drop-in must start its message the same way
    with pytest.raises(ValueError, match=r"^cleanup_interval must be > 0"):
        InMemorySessionKVStore(cleanup_interval=interval)


@pytest.mark.parametrize("interval", ["60", None, True, b"1", [1]])
def test_cleanup_interval_must_be_a_number(interval: object) -> None:
    with pytest.raises(TypeError, match=r"^cleanup_interval must be a number of seconds"):
        InMemorySessionKVStore(cleanup_interval=interval)  # type: ignore[arg-type]


@pytest.mark.parametrize("interval", [1, 0.5, Fraction(1, 2), Decimal("0.5")])
def test_cleanup_interval_accepts_any_real_number_of_seconds(interval: float) -> None:
    assert InMemorySessionKVStore(cleanup_interval=interval).cleanup_interval == float(interval)


@pytest.mark.asyncio
async def test_new_keys_are_indexed_by_the_write_that_creates_them() -> None:
    """No deferred work: after any write returns, the index already holds every stored key, so the next keys() has
    nothing to catch up on (an earlier version sorted a whole burst of new keys inside the first keys() after it)."""
    store = InMemorySessionKVStore(clock=VirtualClock(start=1 << 10))
    await store.set("b/1", b"", 60)
    assert list(store._index) == ["b/1"]
    await store.mset([("a/1", b"", 60), ("c/1", b"", 60), ("a/1", b"x", 60)])
    assert list(store._index) == ["a/1", "b/1", "c/1"]
    await store.mset([(f"bulk/{i:05d}", b"", 60) for i in range(5_000)])  # a batch larger than a quarter of the index
    await store.set("b/1", b"overwrite", 60)
    await store.set("zz", b"", 60, only_if_exists=True)  # writes nothing, so indexes nothing
    assert_consistent(store)
    assert len(store._index) == 5_003


@pytest.mark.asyncio
async def test_sweep_reclaims_expired_keys_only() -> None:
    clock = VirtualClock(start=1 << 10)
    store = InMemorySessionKVStore(clock=clock)
    await store.mset([(f"short/{i}", b"", 1.0) for i in range(100)] + [(f"long/{i}", b"", 100.0) for i in range(50)])
    await clock.advance(1.0)
    assert stored(store) == 150  # invisible but not yet reclaimed
    assert store.sweep() == 100
    assert stored(store) == 50
    assert sorted(await store.keys("")) == sorted(f"long/{i}" for i in range(50))
    assert store.sweep() == 0
    assert_consistent(store)


@pytest.mark.asyncio
async def test_sweep_within_the_current_bucket_is_exact() -> None:
    clock = VirtualClock(start=(10 << _BUCKET_SHIFT) / 1e9)  # at the start of a bucket, so both deadlines share one
    store = InMemorySessionKVStore(clock=clock)
    await store.set("a", b"", 0.1)
    await store.set("b", b"", 0.2)
    await clock.advance(0.1)
    assert store.sweep() == 1
    assert await store.keys("") == ["b"]
    await clock.advance(0.1)
    assert store.sweep() == 1
    assert stored(store) == 0
    assert_consistent(store)


@pytest.mark.asyncio
async def test_sweep_honours_its_limit_and_resumes() -> None:
    clock = VirtualClock(start=1 << 10)
    store = InMemorySessionKVStore(clock=clock)
    await store.mset([(f"k{i}", b"", float(1 + i % 5)) for i in range(1_000)])
    await clock.advance(10)
    removed = [store.sweep(limit=300) for _ in range(5)]
    assert removed == [300, 300, 300, 100, 0]
    assert_consistent(store)


@pytest.mark.asyncio
async def test_rewriting_a_key_moves_it_between_buckets_without_leftovers() -> None:
    clock = VirtualClock(start=1 << 10)
    store = InMemorySessionKVStore(clock=clock)
    for beat in range(1_000):
        await store.set("heartbeat", str(beat).encode(), 30.0)
        await clock.advance(5.0)
    assert bucket_members(store) == 1
    assert_consistent(store)
    await clock.advance(30.0)
    store.sweep()
    assert stored(store) == 0
    assert store._buckets == {}
    assert store._bucket_heap == []


@pytest.mark.asyncio
async def test_lazy_reclamation_on_get() -> None:
    clock = VirtualClock(start=1 << 10)
    store = InMemorySessionKVStore(clock=clock)
    await store.set("k", b"v", 1.0)
    await clock.advance(1.0)
    assert await store.get("k") is None
    assert stored(store) == 0
    assert_consistent(store)


@pytest.mark.asyncio
async def test_structures_stay_consistent_through_every_operation() -> None:
    clock = VirtualClock(start=1 << 10)
    store = InMemorySessionKVStore(clock=clock)
    await store.mset([(f"k{i}", b"v", 1.0 + i) for i in range(20)])
    await store.expire(*[f"k{i}" for i in range(0, 20, 2)], ttl=50.0)
    await store.delete(["k1", "k3", "missing"])
    await store.set("k5", b"w", 3.0, only_if_exists=True)
    await clock.advance(10)
    assert await store.get("k4") == b"v"
    assert await store.get("k7") is None
    assert_consistent(store)
    store.sweep()
    assert_consistent(store)
    expected = [f"k{i}" for i in range(0, 20, 2)] + [f"k{i}" for i in range(11, 20, 2)]
    assert sorted(await store.keys("k")) == sorted(expected)


@pytest.mark.asyncio
async def test_background_sweep_runs_every_interval_and_stops_on_close() -> None:
    store = InMemorySessionKVStore(cleanup_interval=0.01)
    async with store:
        await store.set("k", b"v", 0.001)
        for _ in range(500):  # real time: the sweep runs within a few intervals; bounded so a bug fails, not hangs
            if stored(store) == 0:
                break
            await asyncio.sleep(0.01)
        assert stored(store) == 0
        sweeper = store._sweeper
        assert sweeper is not None
        assert not sweeper.done()
    assert sweeper.done()
    assert store._sweeper is None


@pytest.mark.asyncio
async def test_start_is_idempotent_and_the_store_works_after_close() -> None:
    store = InMemorySessionKVStore()
    await store.start()
    first = store._sweeper
    await store.start()
    assert store._sweeper is first
    await store.set("k", b"v", 60)
    await store.close()
    await store.close()
    # decided: close() releases nothing the operations need, so the store keeps working (as vision-agents' does),
    # unlike a RedisSessionKVStore that closed its own client (StoreClosedError)
    assert await store.get("k") == b"v"
    await store.set("k2", b"w", 60)
    assert sorted(await store.keys("k")) == ["k", "k2"]
    assert "stored_keys=2" in repr(store)
    await store.start()  # and start() after close() runs the sweep again
    assert store._sweeper is not None
    assert not store._sweeper.done()
    await store.close()


@pytest.mark.asyncio
async def test_a_bounded_sweep_never_walks_the_current_bucket() -> None:
    """A bounded sweep costs O(limit): the keys of the current bucket (a bulk load's, all in one) are left to a later
    sweep, instead of being checked one by one on every call of the background loop."""
    clock = VirtualClock(start=(10 << _BUCKET_SHIFT) / 1e9)  # at the start of a bucket
    store = InMemorySessionKVStore(clock=clock)
    await store.mset([(f"k{i}", b"", 0.1 if i % 2 else 0.5) for i in range(1_000)])
    await clock.advance(0.2)  # half expired, all still in the current bucket
    assert store.sweep(limit=10) == 0
    assert stored(store) == 1_000
    assert len(await store.keys("k")) == 500  # invisible all the same
    assert store.sweep() == 500  # the unbounded sweep is exact
    await clock.advance(1.1)  # the bucket is now in the past: bounded sweeps reclaim it, limit by limit
    assert [store.sweep(limit=300), store.sweep(limit=300)] == [300, 200]
    assert_consistent(store)
