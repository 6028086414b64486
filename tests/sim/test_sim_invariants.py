"""The invariants catch the policy bugs they are about, vacuous runs are reported, expected violations do not fail."""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path

import pytest

from sessionkv.sim import FaithfulPolicy, NodeContext, NodeLogic, Parameters, run_scenario
from sessionkv.sim.model import build
from sessionkv.sim.policies import FaithfulLauncher, SimSession

RACE_SCRIPT = '''
"""ghost-race: sessions whose calls end while a slow store is still serving their node's heartbeats."""

from sessionkv.sim import Latency, Parameters, Scenario


def scenario(p: Parameters) -> Scenario:
    s = Scenario("ghost-race", nodes=2, duration=120.0, latency=Latency(0.2, 0.3))
    opened = s.open_many(p.sessions or 40, rng=p.rng("placement"), at=1.0, spread=2.0)
    rng = p.rng("ends")
    for _, call, sid in opened[: len(opened) // 2]:
        s.end_session(call, sid, at=20.0 + rng.uniform(0, 30))
    s.guard("calls ended by themselves", lambda a: a.stopped("call_ended") > 0)
    return s
'''


class BlindHeartbeatLauncher(FaithfulLauncher):
    """Broken on purpose: the heartbeat rewrites the whole record *without* ``only_if_exists``."""

    async def heartbeat(self, session: SimSession) -> None:
        await self.ctx.registry.register(session.call_id, session.session_id)


class BlindHeartbeatPolicy(FaithfulPolicy):
    name = "blind-heartbeat"

    def node(self, ctx: NodeContext) -> NodeLogic:
        return BlindHeartbeatLauncher(ctx)


class DeafLauncher(FaithfulLauncher):
    """Broken on purpose: never polls close requests (idle and duration limits still apply)."""

    async def _close_expired_sessions(self) -> None:
        return None


class DeafPolicy(FaithfulPolicy):
    name = "deaf"

    def node(self, ctx: NodeContext) -> NodeLogic:
        return DeafLauncher(ctx)


@pytest.fixture
def ghost_race(tmp_path: Path) -> str:
    path = tmp_path / "ghost_race.py"
    path.write_text(textwrap.dedent(RACE_SCRIPT), encoding="utf-8")
    return str(path)


def test_heartbeats_without_only_if_exists_resurrect_removed_records(ghost_race: str) -> None:
    broken = run_scenario(ghost_race, policy=BlindHeartbeatPolicy(), params=Parameters(seed=1))
    assert "removed-stays-removed" in broken.violated()
    violation = next(c for c in broken.checks if c.name == "removed-stays-removed").violations[0]
    assert violation.attribution == "node"
    assert "without being started again" in violation.message
    # the real launcher's conditional write cannot resurrect: same scenario, same seed, no violation
    faithful = run_scenario(ghost_race, policy="faithful", params=Parameters(seed=1))
    assert "removed-stays-removed" not in faithful.violated()


def test_ignored_close_requests_are_caught() -> None:
    broken = run_scenario("close-storm", policy=DeafPolicy(), params=Parameters(seed=1))
    assert broken.violated() == ["close-request-honoured"]
    assert broken.verdict == "violated"
    faithful = run_scenario("close-storm", policy="faithful", params=Parameters(seed=1))
    assert faithful.verdict == "ok"


def test_a_run_whose_guards_did_not_happen_is_vacuous() -> None:
    scenario = build("node-crash", Parameters(seed=1))
    workload = [action for action in scenario.timeline() if action.verb == "open"]
    result = run_scenario("node-crash", policy="hardened", params=Parameters(seed=1), schedule=workload)
    assert result.violated() == []
    assert result.verdict == "vacuous"
    assert result.exit_code == 0  # vacuous is not a violation, but it is not "ok" either
    assert [met for _, met in result.coverage] == [False, False]
    assert result.to_json()["verdict"] == "vacuous"


def test_expected_violations_are_reported_but_do_not_fail(tmp_path: Path) -> None:
    path = tmp_path / "known_race.py"
    path.write_text(
        textwrap.dedent(
            '''
            """known-race: the per-call-limit race, declared as a known weakness."""

            from sessionkv.sim import Parameters, Scenario, load_scenario

            def scenario(p: Parameters) -> Scenario:
                race, _, _ = load_scenario("per-call-limit-race")
                s = race(p)
                s.expect("per-call-limit")
                return s
            '''
        ),
        encoding="utf-8",
    )
    result = run_scenario(str(path), policy="faithful", params=Parameters(seed=1))
    assert result.violated() == ["per-call-limit"]
    assert result.exit_code == 0
    assert result.verdict == "ok"
    document = result.to_json()
    assert document["violations"]
    assert all(v["expected"] for v in document["violations"])
    assert next(i for i in document["invariants"] if i["name"] == "per-call-limit")["expected"] is True


def test_crashed_sessions_expire_within_the_ttl_of_their_last_write() -> None:
    result = run_scenario("node-crash", policy="hardened", params=Parameters(seed=2))
    check = next(c for c in result.checks if c.name == "crashed-node-sessions-expire")
    assert check.status == "holds"
    analysis = result.analysis
    crashed = [run for run in analysis.runs if run.reason == "node_crash"]
    assert crashed
    for run in crashed:
        assert run.last_write is not None
        assert run.stop is not None
        crashed_at = run.stop
        seen = [obs.time for obs in analysis.observations if run.key in obs.keys and obs.time > crashed_at]
        assert all(t < run.last_write + result.parameters["ttl_s"] for t in seen)


def test_heartbeat_gaps_follow_the_maintenance_interval() -> None:
    def steady_gaps(policy: str) -> list[float]:
        result = run_scenario("steady", policy=policy, params=Parameters(seed=1))
        # from the first heartbeat on (the registration comes at an arbitrary point of the cycle)
        return [b - a for run in result.analysis.runs for a, b in itertools.pairwise(run.acks[1:])]

    faithful, hardened = steady_gaps("faithful"), steady_gaps("hardened")
    # faithful sleeps after its work: period = interval + the cycle's store latency; hardened keeps a fixed rate
    assert faithful
    assert hardened
    assert min(faithful) > 5.0
    assert max(abs(gap - 5.0) for gap in hardened) < 4 * 0.002  # only the latency of its two calls varies
