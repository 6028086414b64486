"""node-crash: one node crashes and comes back empty; another node's maintenance task dies.

At about a third of the run a node is killed without cleanup: its records must expire within the TTL of their last
heartbeat, and the sessions it ran are gone with it. It restarts as a fresh, empty instance later. Midway, the
maintenance task of another node dies (an unexpected exception) while the node itself keeps serving its sessions.

Faithful: violates ``running-session-visible`` (and ``heartbeat-gaps`` is left with no further heartbeats): nothing
supervises vision-agents' maintenance task, so the surviving node's sessions stop heartbeating and expire while they
run. Hardened: holds (its supervisor restarts the task within one cycle).
"""

from sessionkv.sim import Parameters, Scenario


def scenario(p: Parameters) -> Scenario:
    duration = p.duration or 300.0
    s = Scenario("node-crash", nodes=p.nodes or 3, duration=duration)
    rng = p.rng("faults")
    s.open_many(p.sessions or 12, rng=p.rng("placement"), at=1.0, spread=5.0)
    s.crash("n1", at=duration * 0.3 + rng.uniform(0, 3))
    s.restart("n1", at=duration * 0.6 + rng.uniform(0, 3))
    if s.nodes > 1:
        s.kill_maintenance(s.node_names[-1], at=duration * 0.4 + rng.uniform(0, 3))
    s.guard("a node crashed while running sessions", lambda a: a.stopped("node_crash") > 0)
    s.guard(
        "a crashed session's TTL ran out during the run",
        lambda a: any(
            run.reason == "node_crash" and run.stop is not None and run.stop + a.scenario.ttl < a.end for run in a.runs
        ),
    )
    return s
