"""On in-process backends a run is a pure function of (scenario, policy, parameters, seed)."""

from __future__ import annotations

import pytest

from sessionkv.sim import Parameters, run_scenario
from sessionkv.sim.history import History


@pytest.mark.parametrize("backend", ["memory", "fakeredis"])
@pytest.mark.parametrize("policy", ["faithful", "hardened"])
def test_same_seed_same_history(backend: str, policy: str) -> None:
    first = run_scenario("node-crash", policy=policy, backend=backend, params=Parameters(seed=7))
    second = run_scenario("node-crash", policy=policy, backend=backend, params=Parameters(seed=7))
    assert first.history.first_divergence(second.history) is None
    assert first.trace_hash == second.trace_hash
    assert len(first.history) > 100


def test_another_seed_gives_another_history() -> None:
    hashes = {run_scenario("steady", params=Parameters(seed=seed)).trace_hash for seed in range(1, 6)}
    assert len(hashes) == 5


def test_the_backend_does_not_change_the_history_of_a_run() -> None:
    # both in-process backends see the same latencies and timeline; only the store differs
    memory = run_scenario("partition-long", policy="faithful", backend="memory", params=Parameters(seed=5))
    fake = run_scenario("partition-long", policy="faithful", backend="fakeredis", params=Parameters(seed=5))
    assert memory.violated() == fake.violated()
    assert memory.stats["operations"] == fake.stats["operations"]


def test_first_divergence_names_the_first_differing_event() -> None:
    one, two = History(), History()
    for history in (one, two):
        history.add(0, "n1", "n1/maint", "invoke", "get", "sessions/c/s")
    one.add(1_000, "n1", "n1/maint", "ok", "get", "sessions/c/s", True)
    two.add(1_000, "n1", "n1/maint", "ok", "get", "sessions/c/s", False)
    assert one.first_divergence(two) == 1
    assert one.trace_hash() != two.trace_hash()
    two.events.pop()
    assert one.first_divergence(two) == 1  # where the shorter one ends
    assert History().first_divergence(History()) is None


def test_check_determinism_names_the_first_diverging_event(capsys: pytest.CaptureFixture[str]) -> None:
    from sessionkv.sim.cli import _report_determinism

    first = run_scenario("steady", params=Parameters(seed=1, duration=60.0)).history
    second = run_scenario("steady", params=Parameters(seed=2, duration=60.0)).history
    where = first.first_divergence(second)
    assert where is not None
    assert _report_determinism(first, second, first.trace_hash(), second.trace_hash()) == 1
    err = capsys.readouterr().err
    assert f"the runs diverge at event {where}" in err
    assert f'"index": {where}' in err
    assert _report_determinism(first, first, first.trace_hash(), first.trace_hash()) == 0
