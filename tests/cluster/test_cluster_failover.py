"""Real failovers on the plugin's Redis Cluster: a primary is killed, paused, restarted empty or handed over, and the
store's reads are retried until the promoted replica answers while its writes are never replayed.

Timing: every wait is derived from the cluster's ``node_timeout`` (500 ms) with a generous factor, and polls; no test
asserts how long anything took. The fixture heals and flushes the cluster before the next test.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import redis
from redis.exceptions import ConnectionError as RedisConnectionError

from sessionkv.errors import StoreUnavailableError
from sessionkv.redis_cluster import RedisClusterSessionKVStore
from sessionkv.testing.topologies import RedisClusterTopology

PREFIX = "fo:"


@pytest_asyncio.fixture
async def store(sessionkv_redis_cluster: RedisClusterTopology) -> AsyncIterator[RedisClusterSessionKVStore]:
    """A store whose deadline spans a failover many times over (60 node timeouts); one attempt waits 2 node timeouts
    for its node, so a read stuck on a frozen primary is retried on the promoted replica."""
    node_timeout = sessionkv_redis_cluster.node_timeout
    async with RedisClusterSessionKVStore(
        startup_nodes=sessionkv_redis_cluster.startup_nodes,
        key_prefix=PREFIX,
        operation_timeout=60 * node_timeout,
        attempt_timeout=2 * node_timeout,
    ) as store:
        yield store


def value_on(port: int, key: str) -> bytes | None:
    client = redis.Redis(port=port)
    try:
        return client.get(key)  # type: ignore[return-value]
    finally:
        client.close()


@pytest.mark.asyncio
async def test_reads_under_load_are_retried_across_a_killed_primary_and_see_every_replicated_write(
    sessionkv_redis_cluster: RedisClusterTopology, store: RedisClusterSessionKVStore
) -> None:
    topology = sessionkv_redis_cluster
    items = [(f"r/{i}", f"v{i}".encode(), 600) for i in range(300)]
    keys = [k for k, _, _ in items]
    expected = [v for _, v, _ in items]
    await store.mset(items)
    await asyncio.to_thread(topology.wait_replicated)
    victim = topology.primary_for_key(PREFIX + keys[0])

    failures: list[str] = []
    rounds_after_promotion = [0] * 4
    promoted = asyncio.Event()
    stop = asyncio.Event()

    async def reader(n: int) -> None:
        while not stop.is_set():
            try:
                if await store.mget(keys) != expected:
                    failures.append("mget returned other values")
                if await store.get(keys[0]) != expected[0]:
                    failures.append("get returned another value")
                if len(await store.keys("r/")) != len(keys):
                    failures.append("keys listed another number of keys")
            except Exception as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
            if promoted.is_set():
                rounds_after_promotion[n] += 1
                if rounds_after_promotion[n] >= 3:
                    return
            await asyncio.sleep(0)

    readers = [asyncio.create_task(reader(n)) for n in range(4)]
    await asyncio.sleep(0.05)
    topology.kill(victim)
    try:
        new_primary = await asyncio.to_thread(topology.wait_for_promotion, victim)
        promoted.set()
        await asyncio.wait_for(asyncio.gather(*readers), timeout=60 * topology.node_timeout)
    finally:
        stop.set()
        await asyncio.gather(*readers, return_exceptions=True)
    assert failures == []
    assert min(rounds_after_promotion) >= 3
    assert value_on(new_primary.port, PREFIX + keys[0]) == expected[0]


@pytest.mark.asyncio
async def test_a_write_that_fails_on_a_dead_primary_is_not_replayed_on_the_promoted_replica(
    sessionkv_redis_cluster: RedisClusterTopology, store: RedisClusterSessionKVStore
) -> None:
    topology = sessionkv_redis_cluster
    victim = topology.primary_for_key(PREFIX + "k")
    await store.set("other", b"warm", 600)  # the client knows the slot map before the fault
    topology.kill(victim)

    with pytest.raises(StoreUnavailableError) as raised:
        await store.set("k", b"first", 600)
    assert isinstance(raised.value.cause, RedisConnectionError)

    new_primary = await asyncio.to_thread(topology.wait_for_promotion, victim)
    assert await store.get("k") is None, "the failed write reached the promoted replica: it was replayed"
    assert value_on(new_primary.port, PREFIX + "k") is None
    await store.set("k", b"second", 600)  # the next call follows the new slot map
    assert value_on(new_primary.port, PREFIX + "k") == b"second"


@pytest.mark.asyncio
async def test_writes_under_load_during_a_failover_succeed_or_raise_store_unavailable_and_end_as_acknowledged(
    sessionkv_redis_cluster: RedisClusterTopology, store: RedisClusterSessionKVStore
) -> None:
    topology = sessionkv_redis_cluster
    keys = [f"w/{i}" for i in range(40)]
    victim = topology.primary_for_key(PREFIX + keys[0])
    await store.mset([(k, b"0", 600) for k in keys])
    unexpected: list[str] = []
    unavailable = [0]
    acknowledged: dict[str, bytes] = {}
    promoted = asyncio.Event()

    async def writer(key: str) -> None:
        sequence = 0
        while True:
            sequence += 1
            value = f"{sequence}".encode()
            try:
                await store.set(key, value, 600)
            except StoreUnavailableError:
                unavailable[0] += 1
            except Exception as exc:
                unexpected.append(f"{key}: {type(exc).__name__}: {exc}")
                return
            else:
                acknowledged[key] = value
                if promoted.is_set():
                    return  # the last write of this key was acknowledged after the failover
            await asyncio.sleep(0.01)

    writers = [asyncio.create_task(writer(k)) for k in keys]
    await asyncio.sleep(0.05)
    topology.kill(victim)
    try:
        await asyncio.to_thread(topology.wait_for_promotion, victim)
        promoted.set()
        await asyncio.wait_for(asyncio.gather(*writers), timeout=60 * topology.node_timeout)
    finally:
        for task in writers:
            task.cancel()
        await asyncio.gather(*writers, return_exceptions=True)
    assert unexpected == []
    assert unavailable[0] >= 1, "no write met the dead primary: the test did not exercise a failover"
    assert await store.mget(keys) == [acknowledged[k] for k in keys]


@pytest.mark.asyncio
async def test_a_paused_primary_is_replaced_and_rejoins_as_a_replica(
    sessionkv_redis_cluster: RedisClusterTopology, store: RedisClusterSessionKVStore
) -> None:
    topology = sessionkv_redis_cluster
    await store.set("p", b"kept", 600)
    await asyncio.to_thread(topology.wait_replicated)
    victim = topology.primary_for_key(PREFIX + "p")
    topology.pause(victim)
    try:
        new_primary = await asyncio.to_thread(topology.wait_for_promotion, victim)
        assert await store.get("p") == b"kept"
    finally:
        topology.resume(victim)
    await asyncio.to_thread(topology.wait_ready)
    assert victim in topology.replicas_of(new_primary)


@pytest.mark.asyncio
async def test_a_primary_restarted_empty_at_once_takes_its_replicas_data_with_it(
    sessionkv_redis_cluster: RedisClusterTopology, store: RedisClusterSessionKVStore
) -> None:
    topology = sessionkv_redis_cluster
    keys = [f"e/{i}" for i in range(60)]
    await store.mset([(k, b"v", 600) for k in keys])
    await asyncio.to_thread(topology.wait_replicated)
    victim = topology.primary_for_key(PREFIX + keys[0])
    on_victim = [k for k in keys if topology.primary_for_key(PREFIX + k) is victim]
    elsewhere = [k for k in keys if k not in on_victim]

    topology.restart_empty(victim, after_failover=False)
    await asyncio.to_thread(topology.wait_ready)
    for replica in topology.replicas_of(victim):
        await asyncio.to_thread(topology.wait_replicated)
        with contextlib.closing(redis.Redis(port=replica.port)) as client:
            assert client.dbsize() == 0, "the replica kept data its empty primary no longer has"
    assert topology.primary_for_key(PREFIX + keys[0]) is victim
    assert await store.mget(on_victim) == [None] * len(on_victim)
    assert await store.mget(elsewhere) == [b"v"] * len(elsewhere)


@pytest.mark.asyncio
async def test_a_primary_restarted_empty_after_the_failover_rejoins_as_a_replica_and_nothing_is_lost(
    sessionkv_redis_cluster: RedisClusterTopology, store: RedisClusterSessionKVStore
) -> None:
    topology = sessionkv_redis_cluster
    await store.set("r", b"kept", 600)
    await asyncio.to_thread(topology.wait_replicated)
    victim = topology.primary_for_key(PREFIX + "r")
    topology.restart_empty(victim)
    await asyncio.to_thread(topology.wait_ready)
    assert victim in topology.replicas()
    assert await store.get("r") == b"kept"


@pytest.mark.asyncio
async def test_a_manual_failover_loses_no_acknowledged_write(
    sessionkv_redis_cluster: RedisClusterTopology, store: RedisClusterSessionKVStore
) -> None:
    topology = sessionkv_redis_cluster
    keys = [f"m/{i}" for i in range(100)]
    await store.mset([(k, k.encode(), 600) for k in keys])  # no wait for replication: the handover waits for it
    victim = topology.primary_for_key(PREFIX + keys[0])
    replica = topology.replicas_of(victim)[0]
    await asyncio.to_thread(topology.manual_failover, replica)
    assert topology.primary_for_key(PREFIX + keys[0]) is replica
    assert await store.mget(keys) == [k.encode() for k in keys]
