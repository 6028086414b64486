"""The recorded history is well formed, Jepsen-style: every completion closes the latest invoke of its process."""

from __future__ import annotations

import pytest

from sessionkv.sim import Parameters, run_scenario
from sessionkv.sim.history import FAIL, INFO, INVOKE, OK

STORE_FS = {"set", "mset", "get", "mget", "expire", "keys", "delete"}


@pytest.mark.parametrize(("scenario", "seed"), [("partition-short", 1), ("node-crash", 2), ("swarm", 3), ("swarm", 5)])
@pytest.mark.parametrize("policy", ["faithful", "hardened"])
def test_every_completion_closes_one_invoke(scenario: str, seed: int, policy: str) -> None:
    history = run_scenario(scenario, policy=policy, params=Parameters(seed=seed)).history
    open_ops: dict[str, str] = {}
    kinds: set[str] = set()
    last_time = 0
    for time_ns, _node, process, type_, f, _key, _value, _error in history:
        assert time_ns >= last_time
        last_time = time_ns
        if f not in STORE_FS:
            assert type_ in (OK, INFO)  # node and nemesis events are single events
            continue
        kinds.add(type_)
        if type_ == INVOKE:
            assert process not in open_ops, f"{process} invoked {f} while {open_ops.get(process)} was in flight"
            open_ops[process] = f
        else:
            assert open_ops.pop(process) == f
    # whatever is still open was cut off by the end of the run, a crash or a stop
    assert OK in kinds
    if scenario != "node-crash":
        assert FAIL in kinds or INFO in kinds  # partitions make calls fail or end unknown


def test_a_write_cut_in_flight_is_info_and_a_read_is_fail() -> None:
    result = run_scenario("partition-long", policy="hardened", params=Parameters(seed=1))
    events = result.history.events
    cut = [e for e in events if e[7] == "cut in flight"]
    unreachable = [e for e in events if e[7] == "unreachable"]
    assert unreachable
    assert all(e[3] == FAIL for e in unreachable)
    for event in cut:
        assert event[3] == (INFO if event[4] in ("set", "mset", "delete", "expire") else FAIL)
