"""What a backend cannot do is refused before the run starts, with a message naming the way out (no server needed:
the checks run when the engine is built, before any topology)."""

from __future__ import annotations

import pytest

from sessionkv.sim import Parameters, Scenario, ScenarioError, run_scenario
from sessionkv.sim.cli import main
from sessionkv.sim.engine import Engine, make_policy
from sessionkv.sim.topology import Durability


@pytest.mark.parametrize("backend", ["memory", "fakeredis", "redis"])
@pytest.mark.parametrize("scenario", ["failover", "primary-partitioned"])
def test_primary_faults_need_a_backend_with_primaries(scenario: str, backend: str) -> None:
    with pytest.raises(ScenarioError, match=r"use --backend redis-cluster or redis-sentinel \(.* has none\)"):
        run_scenario(scenario, backend=backend, params=Parameters(seed=1))


def test_a_primary_partition_needs_the_cluster() -> None:
    s = Scenario("p", duration=10.0)
    s.partition_primary(at=1.0, duration=3.0)
    with pytest.raises(ScenarioError, match="needs --backend redis-cluster"):
        Engine(s, make_policy("hardened"), Parameters(), backend="redis-sentinel")


@pytest.mark.parametrize("backend", ["redis-cluster", "redis-sentinel"])
def test_per_node_partitions_and_whole_store_wipes_are_refused_on_topologies(backend: str) -> None:
    with pytest.raises(ScenarioError, match="per-node partition needs a fault proxy"):
        run_scenario("partition-long", backend=backend, params=Parameters(seed=1))
    with pytest.raises(ScenarioError, match="restarting the whole store empty is not supported"):
        run_scenario("redis-restart-empty", backend=backend, params=Parameters(seed=1))


def test_durability_wait_needs_replicas() -> None:
    with pytest.raises(ScenarioError, match="needs replicas to wait for"):
        run_scenario("steady", backend="redis", params=Parameters(seed=1), durability="wait:1")


@pytest.mark.parametrize("text", ["wait", "wait:0", "wait:-1", "sync", "WAIT:1", ""])
def test_a_bad_durability_names_both_forms(text: str) -> None:
    with pytest.raises(ScenarioError, match=r"'async' or 'wait:N'"):
        Durability.parse(text)


def test_durability_labels() -> None:
    assert Durability.parse("async").label == "async"
    assert Durability.parse("wait:2") == Durability(2)
    assert Durability(2).label == "wait:2"


def test_a_primary_fault_picks_its_victim_a_known_way() -> None:
    s = Scenario("p", duration=10.0)
    with pytest.raises(ScenarioError, match="choose must be one of most-keys, seeded"):
        s.kill_primary(at=1.0, choose="biggest")


def test_the_cli_refuses_with_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "failover"]) == 2
    assert "kill_primary at t=" in capsys.readouterr().err
    assert main(["run", "steady", "--backend", "redis-cluster", "--durability", "wait:x"]) == 2
    assert "wait:N" in capsys.readouterr().err
    assert main(["explore", "failover", "--backend", "redis-cluster", "--seeds", "1"]) == 2
    assert "redis-cluster is not reproducible" in capsys.readouterr().err
