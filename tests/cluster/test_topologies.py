"""The topologies themselves: port blocks, readiness as the servers report it, and nothing left behind on stop."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
import redis

from sessionkv.testing import topologies
from sessionkv.testing.topologies import (
    BLOCK_SIZE,
    CLUSTER_BUS_OFFSET,
    RedisClusterTopology,
    RedisSentinelTopology,
    port_block,
)


def ephemeral_low() -> int:
    return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0): it is dead for our purpose once reaped; ours are waited for by RedisServer
    return True


def test_port_blocks_lie_below_the_ephemeral_range_bus_ports_included(monkeypatch: pytest.MonkeyPatch) -> None:
    # The arithmetic of the preferred blocks, independent of which ports other processes hold right now (another
    # run's cluster on this machine once made gw0 and gw1 fall through to the same free block).
    monkeypatch.setattr(topologies, "_port_free", lambda host, port: True)
    low = ephemeral_low()
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    first = port_block(bus=True)
    assert first + BLOCK_SIZE - 1 + CLUSTER_BUS_OFFSET < low
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    assert port_block(bus=True) != first
    assert port_block(bus=False) + BLOCK_SIZE - 1 < low


def test_a_taken_port_moves_the_block(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw7")
    free = port_block()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", free + 3))
        holder.listen()
        assert port_block() != free


def test_the_session_cluster_reports_ok_on_every_node_and_synced_replicas(
    sessionkv_redis_cluster: RedisClusterTopology,
) -> None:
    topology = sessionkv_redis_cluster
    assert len(topology.primaries()) == 3
    assert len(topology.replicas()) == 3
    for server in topology.servers:
        with contextlib.closing(redis.Redis(port=server.port, decode_responses=True)) as client:
            assert "cluster_state:ok" in client.execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]
            if server in topology.replicas():
                assert client.info("replication")["master_link_status"] == "up"
    assert topology.startup_seconds is not None


def test_a_sentinel_topology_leaves_no_process_and_no_directory_behind() -> None:
    topology = RedisSentinelTopology(service_name="hygiene").start()
    try:
        pids = [s.pid for s in topology.servers]
        directories = [s.directory for s in topology.servers] + [topology._directory]
        assert len(pids) == 5
        assert all(pid is not None and alive(pid) for pid in pids)
    finally:
        topology.stop()
    assert not any(alive(pid) for pid in pids if pid is not None)
    assert not any(d is not None and d.exists() for d in directories)
    topology.stop()  # idempotent


def test_a_cluster_topology_leaves_no_process_no_directory_and_no_nodes_conf_behind() -> None:
    topology = RedisClusterTopology(primaries=3, replicas_per_primary=0).start()
    try:
        pids = [s.pid for s in topology.servers]
        directories = [s.directory for s in topology.servers]
        assert all(d is not None and (d / "nodes.conf").exists() for d in directories)
    finally:
        topology.stop()
    assert not any(alive(pid) for pid in pids if pid is not None)
    assert not any(d is not None and d.exists() for d in directories)


@pytest.mark.parametrize(("primaries", "replicas"), [(0, 1), (3, 2), (3, -1)])
def test_a_cluster_shape_that_does_not_fit_is_rejected(primaries: int, replicas: int) -> None:
    with pytest.raises(ValueError, match="at most"):
        RedisClusterTopology(primaries=primaries, replicas_per_primary=replicas)


def test_a_sentinel_shape_that_does_not_fit_is_rejected() -> None:
    with pytest.raises(ValueError, match="quorum"):
        RedisSentinelTopology(sentinels=3, quorum=4)
    with pytest.raises(ValueError, match="service_name"):
        RedisSentinelTopology(service_name="two words")
