"""The failover scenarios on real local topologies (a Redis Cluster of 3+3, a Sentinel pair), shortened.

Each run starts its own topology (about 2 s) and replays its scenario at time scale 0.1 over 60 simulated seconds
(6 s real; the primary fault comes at about 2.5 s, so a failover has more than 3 s to complete). What is asserted
holds on a loaded machine: the fault happened and named its victim and the promoted replica, the loss count is the
one the recorded history gives, the run is tagged with its durability, and a write that a replica acknowledged
(``wait:1``) is never lost. Whether a session's record outlived a failover depends on how long the failover took, so
no verdict is asserted.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sessionkv.errors import StoreUnavailableError
from sessionkv.sim import Parameters, RunResult, run_scenario
from sessionkv.sim.cli import main
from sessionkv.sim.invariants import LOST_KINDS, Analysis
from sessionkv.sim.topology import WaitingClusterStore, WaitingSentinelStore
from sessionkv.testing import RedisServer
from sessionkv.testing.topologies import RedisClusterTopology, RedisSentinelTopology

SHORT = Parameters(seed=1, duration=60.0)


def assert_failover_recorded(result: RunResult) -> None:
    faults = result.stats["primary_faults"]
    events = [fault["event"] for fault in faults]
    assert events[:2] == ["kill_primary", "primary_promoted"], faults
    killed, promoted = faults[0], faults[1]
    assert promoted["old"] == killed["server"]
    assert promoted["new"] != killed["server"]
    assert killed["choose"] == "most-keys"
    assert killed["session_records"] >= 0
    assert all(met for _, met in result.coverage), result.coverage


def assert_losses_come_from_the_history(result: RunResult) -> None:
    again = Analysis(result.history, result.analysis.scenario, latency_bound=result.analysis.scenario.operation_timeout)
    assert again.lost_writes == result.analysis.lost_writes
    by_kind = result.stats["lost_acknowledged_writes_by_kind"]
    assert set(by_kind) == set(LOST_KINDS)
    assert sum(by_kind.values()) == result.stats["lost_acknowledged_writes"] == len(again.lost_writes)


def test_a_failover_on_the_cluster_records_the_victim_and_its_successor(redis_server: RedisServer) -> None:
    # redis_server: skips (or fails under --sessionkv-require-redis) when no redis-server exists; the run starts
    # its own cluster
    result = run_scenario("failover", policy="faithful", backend="redis-cluster", params=SHORT)
    assert_failover_recorded(result)
    assert_losses_come_from_the_history(result)
    assert result.durability == "async"
    assert result.to_json()["durability"] == "async"
    assert any("cluster topology" in note for note in result.notes)
    observed = [e for e in result.history.events if e[1] == "observer" and e[5] == "close_requests/"]
    assert observed, "on a backend with replicas the observer lists the close flags too"


def test_a_failover_on_sentinel_with_wait_1_is_tagged_and_replicated(redis_server: RedisServer) -> None:
    result = run_scenario("failover", policy="hardened", backend="redis-sentinel", params=SHORT, durability="wait:1")
    assert_failover_recorded(result)
    assert_losses_come_from_the_history(result)
    assert result.durability == "wait:1"
    assert "--durability wait:1" in result.reproduce
    assert any(note.startswith("durability wait:1") for note in result.notes)
    acknowledged = [e for e in result.history.events if e[1].startswith("n") and e[3] == "ok" and e[4] == "mset"]
    assert acknowledged, "writes followed by WAIT 1 were acknowledged"


def test_the_cli_tags_the_summary_and_the_json_with_the_durability(
    redis_server: RedisServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "result.json"
    argv = ["run", "failover", "--backend", "redis-cluster", "--durability", "wait:1", "--duration", "60"]
    status = main([*argv, "--json", str(path)])
    out = capsys.readouterr().out
    document = json.loads(path.read_text())
    assert document["durability"] == "wait:1"
    assert document["stats"]["primary_faults"][0]["durability"] == "wait:1"
    assert "backend redis-cluster  durability wait:1" in out
    assert "kill_primary: server" in out
    assert "primary_promoted: old" in out
    assert status == (1 if document["verdict"] == "violated" else 0)


@pytest.mark.parametrize("durability", ["async", "wait:1"])
def test_a_partitioned_primary_loses_what_it_acknowledged_unless_a_replica_had_it(
    redis_server: RedisServer, durability: str
) -> None:
    # async: over a dozen registrations, close requests and removals are made within the cut primary's first node
    # timeout (a third of them hash to its slots), and it acknowledges them; the faithful policy never rewrites a
    # lost record. wait:1: the cut primary's replica is out of reach, so no write there is acknowledged at all.
    # 200 s (20 s real): the cut lasts 50 s (5 s real) from about 80 s, and up to 5 s real more if the promotion is
    # slow (heal_after_promotion), so the heal comes before the end even on a loaded machine
    result = run_scenario(
        "primary-partitioned",
        policy="faithful",
        backend="redis-cluster",
        params=Parameters(seed=1, duration=200.0),
        durability=durability,
    )
    events = [fault["event"] for fault in result.stats["primary_faults"]]
    assert events[:2] == ["partition_primary", "primary_promoted"], result.stats["primary_faults"]
    assert "heal_primary" in events
    assert_losses_come_from_the_history(result)
    assert result.durability == durability
    lost = result.stats["lost_acknowledged_writes"]
    if durability == "async":
        assert lost > 0, result.stats
    else:
        assert lost == 0, result.stats


@pytest.mark.asyncio
async def test_a_write_that_too_few_replicas_acknowledge_fails(
    sessionkv_redis_cluster: RedisClusterTopology, sessionkv_redis_sentinel: RedisSentinelTopology
) -> None:
    # one replica per primary: WAIT 2 can never be satisfied, so the store must not report success
    cluster = WaitingClusterStore(
        replicas=2, wait_timeout_ms=50, startup_nodes=sessionkv_redis_cluster.startup_nodes, key_prefix="wait:"
    )
    sentinel = WaitingSentinelStore(
        replicas=2,
        wait_timeout_ms=50,
        sentinels=sessionkv_redis_sentinel.sentinel_addresses,
        service_name=sessionkv_redis_sentinel.service_name,
        key_prefix="wait:",
    )
    for store in (cluster, sentinel):
        async with store:
            with pytest.raises(StoreUnavailableError, match="WAIT 2 50 saw 1 replica"):
                await store.set("k", b"v", 10.0)
            with pytest.raises(StoreUnavailableError, match="WAIT 2"):
                await store.mset([("a", b"1", 10.0), ("b", b"2", 10.0)])
            assert await store.get("k") == b"v"  # applied on the primary all the same: the outcome was unknown
            store.wait_replicas = 1
            await store.set("k", b"w", 10.0)
            await store.mset([("a", b"1", 10.0), ("b", b"2", 10.0)])
            await store.expire("a", "b", ttl=20.0)
            await store.delete(["a", "b", "k"])
            assert await store.mget(["a", "b", "k"]) == [None, None, None]
