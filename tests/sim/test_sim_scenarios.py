"""Every built-in scenario on both in-process backends under both policies, with the verdict its docs promise."""

from __future__ import annotations

import pytest

from sessionkv.sim import Parameters, Scenario, builtin_scenarios, run_scenario

# scenario -> invariants the faithful policy violates (hardened: none, every time)
FAITHFUL_VIOLATES: dict[str, set[str]] = {
    "steady": set(),
    "node-crash": {"running-session-visible"},
    "rolling-restart": set(),
    "partition-short": set(),
    "partition-long": {"running-session-visible", "close-request-honoured"},
    "redis-restart-empty": {"running-session-visible"},
    "close-storm": set(),
    "slow-store": {"running-session-visible", "heartbeat-gaps"},
    "per-call-limit-race": {"per-call-limit"},
    "clock-skew": {"session-limits-honoured"},
    "swarm": {"running-session-visible", "close-request-honoured"},  # seed 1's draw: wipes, partitions, ...
}


# scenarios about the store's own primaries: they run on redis-cluster / redis-sentinel only
# (tests/sim/test_sim_failover.py), and are refused before they start anywhere else
NEEDS_PRIMARIES = {"failover", "primary-partitioned"}


def test_the_scenarios_ship() -> None:
    assert sorted(builtin_scenarios()) == sorted(set(FAITHFUL_VIOLATES) | NEEDS_PRIMARIES)


@pytest.mark.parametrize("backend", ["memory", "fakeredis"])
@pytest.mark.parametrize("scenario", sorted(FAITHFUL_VIOLATES))
def test_hardened_holds_everywhere(scenario: str, backend: str) -> None:
    result = run_scenario(scenario, policy="hardened", backend=backend, params=Parameters(seed=1))
    assert result.violated() == [], [v.message for c in result.checks for v in c.violations]
    assert result.verdict == "ok", result.coverage
    assert result.exit_code == 0
    assert all(met for _, met in result.coverage)


@pytest.mark.parametrize("backend", ["memory", "fakeredis"])
@pytest.mark.parametrize("scenario", sorted(FAITHFUL_VIOLATES))
def test_faithful_shows_vision_agents_weaknesses(scenario: str, backend: str) -> None:
    result = run_scenario(scenario, policy="faithful", backend=backend, params=Parameters(seed=1))
    assert set(result.violated()) == FAITHFUL_VIOLATES[scenario]
    if FAITHFUL_VIOLATES[scenario]:
        assert result.verdict == "violated"
        assert result.exit_code == 1
        for check in result.checks:
            for violation in check.violations:
                assert violation.events, "a violation names its first offending events"
                assert violation.attribution in ("node", "store")
                assert not violation.expected
    else:
        assert result.verdict == "ok"


def test_data_loss_is_attributed_to_the_store() -> None:
    result = run_scenario("redis-restart-empty", policy="faithful", params=Parameters(seed=3))
    visible = next(check for check in result.checks if check.name == "running-session-visible")
    assert visible.violations
    assert {v.attribution for v in visible.violations} == {"store"}
    assert result.stats["lost_acknowledged_writes"] == result.stats["sessions_started"]
    assert result.to_json()["stats"]["lost_acknowledged_writes"] > 0


def test_close_requests_lost_to_the_ttl_are_counted() -> None:
    faithful = run_scenario("partition-long", policy="faithful", params=Parameters(seed=2))
    hardened = run_scenario("partition-long", policy="hardened", params=Parameters(seed=2))
    assert faithful.stats["close_requests"] > 0
    assert faithful.stats["close_requests_lost_to_ttl"] == faithful.stats["close_requests"]
    assert hardened.stats["close_requests_lost_to_ttl"] == 0


@pytest.mark.parametrize("seed", [2, 3, 4])
def test_verdicts_do_not_depend_on_the_seed(seed: int) -> None:
    for scenario in ("partition-long", "slow-store", "redis-restart-empty"):
        assert run_scenario(scenario, policy="hardened", params=Parameters(seed=seed)).verdict == "ok"
        assert (
            "running-session-visible"
            in run_scenario(scenario, policy="faithful", params=Parameters(seed=seed)).violated()
        )


def test_hardened_holds_whatever_faults_the_swarm_draws() -> None:
    kinds: set[str] = set()
    for seed in range(1, 16):
        result = run_scenario("swarm", policy="hardened", params=Parameters(seed=seed))
        assert result.verdict == "ok", (seed, [v.message for c in result.checks for v in c.violations])
        kinds |= {fault["kind"] for fault in result.analysis.faults}
    assert {"crash", "partition", "slow", "store_wipe", "clock_jump", "maint_kill"} <= kinds


def test_overlapping_partitions_keep_the_node_cut_until_the_last_heal() -> None:
    def overlapping(p: Parameters) -> Scenario:
        s = Scenario("overlap", nodes=2, duration=120.0)
        s.open("n1", "c1", at=1.0)
        s.partition("n1", at=10.0, duration=20.0)
        s.partition("n1", at=20.0, duration=40.0)
        return s

    result = run_scenario(overlapping, policy="hardened", params=Parameters(seed=1))
    assert result.analysis.cut["n1"] == [(10.0, 60.0)]
    failures = [e[0] / 1e9 for e in result.history.events if e[1] == "n1" and e[3] in ("fail", "info")]
    assert failures
    assert min(failures) > 10.0
    assert max(failures) < 62.0
    assert any(t > 45.0 for t in failures)  # still cut after the first window's heal at 30 s
    assert [f["kind"] for f in result.to_json()["timeline"]["faults"]] == ["partition", "partition"]


def test_parameters_resize_a_scenario() -> None:
    result = run_scenario("steady", params=Parameters(seed=1, nodes=5, sessions=20, duration=60.0))
    assert result.parameters["nodes"] == 5
    assert result.stats["sessions_started"] == 20
    assert result.stats["simulated_s"] == 60.0
    assert {sample["node"] for sample in result.analysis.samples} == {"n1", "n2", "n3", "n4", "n5"}
