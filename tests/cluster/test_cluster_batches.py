"""How RedisClusterSessionKVStore sends batches: one script per primary (counted on the real nodes with INFO
commandstats), and the per-slot path when the script cannot cover a primary's keys: a slot moved or being migrated
under the call (MOVED/ASK), a server that rejects the script, or ``per_node_batches=False``. A write script that may
have run is never followed by the per-slot path (no replay)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
import redis
from redis.crc import key_slot

from sessionkv import redis_cluster
from sessionkv.errors import StoreUnavailableError
from sessionkv.redis_cluster import RedisClusterSessionKVStore
from sessionkv.testing import RedisServer
from sessionkv.testing.topologies import RedisClusterTopology

PREFIX = "nb:"
KEYS = [f"batch/{i}" for i in range(300)]


@contextlib.contextmanager
def raw(server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis(host=server.host, port=server.port)
    try:
        yield client
    finally:
        client.close()


def command(client: redis.Redis, *args: Any) -> Any:
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def reset_stats(topology: RedisClusterTopology) -> None:
    for primary in topology.primaries():
        with raw(primary) as client:
            client.config_resetstat()


def calls(topology: RedisClusterTopology, command: str, field: str = "calls") -> dict[int, int]:
    """Calls of ``command`` each primary counted since :func:`reset_stats` (commands run by scripts included);
    ``field="rejected_calls"``: those refused before running (a MOVED or ASK redirection)."""
    counted = {}
    for primary in topology.primaries():
        with raw(primary) as client:
            stats = client.info("commandstats")
        counted[primary.port] = int(stats.get(f"cmdstat_{command}", {}).get(field, 0))
    return counted


def slots_per_primary(topology: RedisClusterTopology, keys: list[str]) -> dict[int, int]:
    slots: dict[int, set[int]] = {p.port: set() for p in topology.primaries()}
    for key in keys:
        slots[topology.primary_for_key(PREFIX + key).port].add(key_slot((PREFIX + key).encode()))
    return {port: len(found) for port, found in slots.items()}


async def assert_served_per_slot(topology: RedisClusterTopology, store: RedisClusterSessionKVStore) -> None:
    """A batch round trip with the right results, its mget sent as one MGET per slot and no per-node script."""
    await store.mset([(k, k.encode(), 60) for k in KEYS])
    reset_stats(topology)
    assert await store.mget(KEYS) == [k.encode() for k in KEYS]
    assert calls(topology, "mget") == slots_per_primary(topology, KEYS)
    assert sum(calls(topology, "evalsha").values()) == 0
    await store.delete(KEYS)
    assert await store.keys("") == []


@pytest_asyncio.fixture
async def store(sessionkv_redis_cluster: RedisClusterTopology) -> AsyncIterator[RedisClusterSessionKVStore]:
    async with RedisClusterSessionKVStore(
        startup_nodes=sessionkv_redis_cluster.startup_nodes, key_prefix=PREFIX
    ) as store:
        yield store


@pytest.mark.asyncio
async def test_every_batch_is_one_script_per_primary(
    sessionkv_redis_cluster: RedisClusterTopology, store: RedisClusterSessionKVStore
) -> None:
    topology = sessionkv_redis_cluster
    assert min(slots_per_primary(topology, KEYS).values()) >= 2, "every primary must serve several of the slots"
    await store.mset([(k, b"warm", 60) for k in KEYS])  # the scripts are cached on every node from here on
    await store.mget(KEYS)
    await store.expire(*KEYS, ttl=60)
    await store.delete(KEYS)
    one_each = {p.port: 1 for p in topology.primaries()}
    none = {p.port: 0 for p in topology.primaries()}

    reset_stats(topology)
    await store.mset([(k, k.encode(), 60) for k in KEYS])
    assert calls(topology, "evalsha") == one_each
    assert calls(topology, "eval") == none
    assert sum(calls(topology, "set").values()) == len(KEYS)  # inside the three scripts

    reset_stats(topology)
    assert await store.mget([*KEYS, "missing", KEYS[0]]) == [k.encode() for k in KEYS] + [None, b"batch/0"]
    assert calls(topology, "evalsha") == one_each
    assert calls(topology, "mget") == none

    reset_stats(topology)
    await store.expire(*KEYS[:150], "missing", ttl=1000)
    assert calls(topology, "evalsha") == one_each
    with raw(topology.primary_for_key(PREFIX + KEYS[0])) as client:
        assert 0 < client.pttl(PREFIX + KEYS[0]) <= 1_000_000
    assert await store.get("missing") is None

    reset_stats(topology)
    await store.delete([*KEYS[:150], "missing"])
    assert calls(topology, "evalsha") == one_each
    assert sorted(await store.keys("batch/")) == sorted(KEYS[150:])


@pytest.mark.asyncio
async def test_a_node_without_the_script_cached_gets_it_in_full_once(
    sessionkv_redis_cluster: RedisClusterTopology, store: RedisClusterSessionKVStore
) -> None:
    topology = sessionkv_redis_cluster
    for primary in topology.primaries():
        with raw(primary) as client:
            client.script_flush()
    reset_stats(topology)
    await store.mset([(k, b"v", 60) for k in KEYS])
    await store.mset([(k, b"w", 60) for k in KEYS])
    assert calls(topology, "eval") == {p.port: 1 for p in topology.primaries()}  # after one NOSCRIPT each
    assert calls(topology, "evalsha") == {p.port: 2 for p in topology.primaries()}
    assert await store.mget(KEYS) == [b"w"] * len(KEYS)


@pytest.mark.asyncio
async def test_per_node_batches_off_sends_one_command_per_slot_with_the_same_results(
    sessionkv_redis_cluster: RedisClusterTopology,
) -> None:
    topology = sessionkv_redis_cluster
    async with RedisClusterSessionKVStore(
        startup_nodes=topology.startup_nodes, key_prefix=PREFIX, per_node_batches=False
    ) as store:
        await assert_served_per_slot(topology, store)


def _move_slot(topology: RedisClusterTopology, slot: int, source: RedisServer, target: RedisServer) -> None:
    """Migrate ``slot`` with its keys from ``source`` to ``target`` the way an operator's resharding does, and
    tell every primary (the replicas learn it by gossip)."""
    source_id, target_id = topology.node_id(source), topology.node_id(target)
    with raw(source) as src, raw(target) as dst:
        command(dst, "CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        command(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        while keys := command(src, "CLUSTER", "GETKEYSINSLOT", slot, 100):
            command(src, "MIGRATE", target.host, target.port, "", 0, 5000, "KEYS", *keys)
        for primary in (target, source, *topology.primaries()):
            with raw(primary) as client:
                command(client, "CLUSTER", "SETSLOT", slot, "NODE", target_id)


@contextlib.contextmanager
def slot_moved_away(topology: RedisClusterTopology, key: str) -> Iterator[tuple[RedisServer, RedisServer]]:
    """The slot of ``key`` moved to another primary for the block, then moved back; yields (old, new) owner."""
    slot = key_slot(key.encode())
    source = topology.primary_for_key(key)
    target = next(p for p in topology.primaries() if p is not source)
    _move_slot(topology, slot, source, target)
    try:
        yield source, target
    finally:
        _move_slot(topology, slot, target, source)
        topology.wait_ready()


@pytest.mark.asyncio
async def test_a_slot_moved_under_a_stale_slot_map_is_covered_per_slot_and_the_map_follows(
    sessionkv_redis_cluster: RedisClusterTopology, store: RedisClusterSessionKVStore
) -> None:
    topology = sessionkv_redis_cluster
    await store.mset([(k, b"old", 60) for k in KEYS])  # the store's map is known and the scripts cached
    moved = KEYS[7]
    with slot_moved_away(topology, PREFIX + moved) as (source, target):
        reset_stats(topology)
        assert await store.mget(KEYS) == [b"old"] * len(KEYS)  # the client still sends the slot's key to source
        # source's script failed on the moved key, so source got one MGET per slot: those it still serves, and
        # the moved one, redirected (MOVED; redis-py's client asks source again before it updates its map) and
        # followed to target
        assert calls(topology, "mget")[source.port] == slots_per_primary(topology, KEYS)[source.port]
        assert calls(topology, "mget", "rejected_calls")[source.port] >= 1
        assert calls(topology, "mget")[target.port] == 1

        await store.mset([(k, b"new", 60) for k in KEYS])  # the map now knows: one script per primary again
        with raw(target) as client:
            assert client.get(PREFIX + moved) == b"new"
        assert await store.mget(KEYS) == [b"new"] * len(KEYS)

    # moved back: the write script's served-keys check refuses the batch on target, which wrote nothing of it, and
    # the per-slot path writes it; the other primaries took their script
    reset_stats(topology)
    await store.mset([(k, b"back", 60) for k in KEYS])
    assert calls(topology, "set", "rejected_calls")[target.port] >= 1  # the per-slot SET, redirected to source
    with raw(source) as client:
        assert client.get(PREFIX + moved) == b"back"
    assert await store.mget(KEYS) == [b"back"] * len(KEYS)
    await store.expire(*KEYS, ttl=30)
    await store.delete(KEYS)
    assert await store.keys("") == []


@pytest.mark.asyncio
async def test_a_key_migrated_mid_resharding_is_read_and_written_through_ask(
    sessionkv_redis_cluster: RedisClusterTopology, store: RedisClusterSessionKVStore
) -> None:
    topology = sessionkv_redis_cluster
    await store.mset([(k, b"old", 60) for k in KEYS])
    moved = PREFIX + KEYS[11]
    slot = key_slot(moved.encode())
    assert [k for k in KEYS if key_slot((PREFIX + k).encode()) == slot] == [KEYS[11]]
    source = topology.primary_for_key(moved)
    target = next(p for p in topology.primaries() if p is not source)
    with raw(source) as src, raw(target) as dst:
        command(dst, "CLUSTER", "SETSLOT", slot, "IMPORTING", topology.node_id(source))
        command(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", topology.node_id(target))
        command(src, "MIGRATE", target.host, target.port, moved, 0, 5000)
        try:
            assert await store.mget(KEYS) == [b"old"] * len(KEYS)  # source: ASK for the migrated key
            await store.mset([(k, b"new", 60) for k in KEYS])
            assert command(src, "CLUSTER", "COUNTKEYSINSLOT", slot) == 0
            command(dst, "ASKING")
            assert dst.get(moved) == b"new"
            assert await store.mget(KEYS) == [b"new"] * len(KEYS)
        finally:
            for primary in topology.primaries():
                with raw(primary) as client:
                    command(client, "CLUSTER", "SETSLOT", slot, "NODE", topology.node_id(target))
            _move_slot(topology, slot, target, source)
            topology.wait_ready()
    assert await store.mget(KEYS) == [b"new"] * len(KEYS)


@pytest.mark.asyncio
async def test_a_server_that_rejects_the_script_is_served_per_slot_from_then_on(
    sessionkv_redis_cluster: RedisClusterTopology, store: RedisClusterSessionKVStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flag the server does not know is refused before the script runs, as Redis < 7.0 refuses the shebang."""
    topology = sessionkv_redis_cluster
    for name in ("_GET_ON_NODE", "_SET_ON_NODE", "_PEXPIRE_ON_NODE", "_UNLINK_ON_NODE"):
        script = getattr(redis_cluster, name)
        unknown_flag = script.body.replace("allow-cross-slot-keys", "allow-cross-slot-keys,from-the-future", 1)
        monkeypatch.setattr(redis_cluster, name, redis_cluster._NodeScript(unknown_flag))

    await assert_served_per_slot(topology, store)
    assert store.per_node_batches is False


@pytest.mark.asyncio
async def test_a_write_script_that_stops_part_way_leaves_only_the_rest_to_the_per_slot_path(
    sessionkv_redis_cluster: RedisClusterTopology, store: RedisClusterSessionKVStore
) -> None:
    """A user whose ACL lets it touch only some keys: each primary's script writes keys until the first it may not
    touch, and reports how many; the rest go per slot, where the forbidden keys fail. No key is written twice (SET
    calls counted on the nodes), every allowed key is written, and the store reports the failure."""
    topology = sessionkv_redis_cluster
    allowed = [k for k in KEYS if k.startswith("batch/1")]
    for server in topology.servers:
        with raw(server) as client:
            client.acl_setuser("some", enabled=True, nopass=True, keys=[f"{PREFIX}batch/1*"], commands=["+@all"])
    try:
        async with RedisClusterSessionKVStore(
            url=f"redis://some@{topology.host}:{topology.servers[0].port}", key_prefix=PREFIX
        ) as limited:
            reset_stats(topology)
            with pytest.raises(StoreUnavailableError, match="mset failed"):
                await limited.mset([(k, b"v", 60) for k in KEYS])
            assert calls(topology, "evalsha") == {p.port: 1 for p in topology.primaries()}
            assert sum(calls(topology, "set").values()) == len(allowed)
            assert limited.per_node_batches is True
    finally:
        for server in topology.servers:
            with raw(server) as client:
                client.acl_deluser("some")
    assert await store.mget(KEYS) == [b"v" if k in allowed else None for k in KEYS]


@pytest.mark.asyncio
async def test_per_node_batches_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="per_node_batches must be True or False"):
        RedisClusterSessionKVStore(startup_nodes=[("127.0.0.1", 7000)], per_node_batches="yes")  # type: ignore[arg-type]
