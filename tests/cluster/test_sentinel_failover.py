"""The single-server store on a Sentinel-managed primary, through real failovers of the plugin's Sentinel topology.

Waits derive from the topology's ``down_after`` (500 ms) with generous factors and poll; nothing asserts a duration.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import redis
from redis.asyncio.sentinel import Sentinel

from sessionkv import RedisSessionKVStore
from sessionkv.errors import StoreUnavailableError
from sessionkv.redis_sentinel import RedisSentinelSessionKVStore
from sessionkv.testing.topologies import RedisSentinelTopology

PREFIX = "sfo:"


@pytest_asyncio.fixture
async def store(sessionkv_redis_sentinel: RedisSentinelTopology) -> AsyncIterator[RedisSentinelSessionKVStore]:
    """Deadline 60 down-after periods, one attempt 2 of them, and enough read retries to fill the deadline."""
    topology = sessionkv_redis_sentinel
    async with RedisSentinelSessionKVStore(
        sentinels=topology.sentinel_addresses,
        service_name=topology.service_name,
        key_prefix=PREFIX,
        operation_timeout=60 * topology.down_after,
        attempt_timeout=2 * topology.down_after,
        read_retries=40,
    ) as store:
        yield store


def value_on(port: int, key: str) -> bytes | None:
    with contextlib.closing(redis.Redis(port=port)) as client:
        return client.get(key)  # type: ignore[return-value]


@pytest.mark.asyncio
async def test_reads_under_load_follow_a_killed_primary_to_the_promoted_replica(
    sessionkv_redis_sentinel: RedisSentinelTopology, store: RedisSentinelSessionKVStore
) -> None:
    topology = sessionkv_redis_sentinel
    items = [(f"r/{i}", f"v{i}".encode(), 600) for i in range(100)]
    keys, expected = [k for k, _, _ in items], [v for _, v, _ in items]
    await store.mset(items)
    await asyncio.to_thread(topology.wait_replicated)
    victim = topology.primary()
    failures: list[str] = []
    rounds_after = [0] * 3
    promoted = asyncio.Event()

    async def reader(n: int) -> None:
        while rounds_after[n] < 3:
            try:
                if await store.mget(keys) != expected:
                    failures.append("mget returned other values")
                if sorted(await store.keys("r/")) != sorted(keys):
                    failures.append("keys listed other keys")
            except Exception as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
            if promoted.is_set():
                rounds_after[n] += 1
            await asyncio.sleep(0)

    readers = [asyncio.create_task(reader(n)) for n in range(3)]
    await asyncio.sleep(0.05)
    topology.kill(victim)
    try:
        new_primary = await asyncio.to_thread(topology.wait_for_promotion, victim)
        promoted.set()
        await asyncio.wait_for(asyncio.gather(*readers), timeout=60 * topology.down_after)
    finally:
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    assert failures == []
    assert value_on(new_primary.port, PREFIX + keys[0]) == expected[0]


@pytest.mark.asyncio
async def test_a_write_that_fails_on_a_dead_primary_is_not_replayed_on_the_promoted_replica(
    sessionkv_redis_sentinel: RedisSentinelTopology, store: RedisSentinelSessionKVStore
) -> None:
    topology = sessionkv_redis_sentinel
    await store.set("warm", b"v", 600)
    victim = topology.primary()
    topology.kill(victim)
    with pytest.raises(StoreUnavailableError):
        await store.set("k", b"first", 600)
    new_primary = await asyncio.to_thread(topology.wait_for_promotion, victim)
    assert await store.get("k") is None, "the failed write reached the promoted replica: it was replayed"
    await store.set("k", b"second", 600)
    assert value_on(new_primary.port, PREFIX + "k") == b"second"


@pytest.mark.asyncio
async def test_after_a_sentinel_failover_reads_and_writes_reach_the_new_primary(
    sessionkv_redis_sentinel: RedisSentinelTopology, store: RedisSentinelSessionKVStore
) -> None:
    topology = sessionkv_redis_sentinel
    await store.set("k", b"before", 600)
    old = topology.primary()
    new = await asyncio.to_thread(topology.manual_failover)
    assert new is not old
    assert await store.get("k") == b"before"  # a SENTINEL FAILOVER waits for the replica: nothing is lost
    for _ in range(2):  # the first write may meet a connection the failover closed: it fails, and is not replayed
        with contextlib.suppress(StoreUnavailableError):
            await store.set("k", b"after", 600)
    assert value_on(new.port, PREFIX + "k") == b"after"
    with contextlib.closing(redis.Redis(port=old.port)) as client:
        assert client.info("replication")["role"] == "slave"


@pytest.mark.asyncio
async def test_a_users_own_master_for_client_keeps_the_contract_basics_and_follows_a_failover(
    sessionkv_redis_sentinel: RedisSentinelTopology,
) -> None:
    topology = sessionkv_redis_sentinel
    sentinel = Sentinel(topology.sentinel_addresses, socket_timeout=5)  # type: ignore[no-untyped-call]
    sentinel_clients = list(sentinel.sentinels)  # redis-py may reorder (and under concurrency corrupt) its own list
    client = sentinel.master_for(topology.service_name)
    try:
        async with RedisSessionKVStore(client=client, key_prefix="own:") as store:
            await store.mset([("a", b"1", 600), ("b", b"2", 600)])
            assert await store.mget(["a", "missing", "b"]) == [b"1", None, b"2"]
            await asyncio.to_thread(topology.manual_failover)
            assert await store.get("a") == b"1"
            for _ in range(2):
                with contextlib.suppress(StoreUnavailableError):
                    await store.set("c", b"3", 600)
            assert sorted(await store.keys("")) == ["a", "b", "c"]
    finally:
        await client.aclose()
        for connection in sentinel_clients:
            await connection.aclose()
