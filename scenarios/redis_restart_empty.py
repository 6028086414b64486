"""redis-restart-empty: the store restarts without its data (Redis without persistence) while sessions run.

Every record disappears at once; the nodes keep running their sessions and must register them again.

Faithful: violates ``running-session-visible``, attributed to the store (it lost acknowledged records), but the
nodes never recover: ``update_metrics`` finds no record and skips it, so every session stays invisible for the rest of
the run. Hardened: holds (its batched heartbeat rewrites whole records, so they are back within one period).
"""

from sessionkv.sim import Parameters, Scenario


def scenario(p: Parameters) -> Scenario:
    duration = p.duration or 300.0
    s = Scenario("redis-restart-empty", nodes=p.nodes or 3, duration=duration)
    rng = p.rng("faults")
    s.open_many(p.sessions or 12, rng=p.rng("placement"), at=1.0, spread=5.0)
    s.restart_store(at=duration * 0.4 + rng.uniform(0, 3), keep_data=False)
    s.guard("the store lost its data while sessions ran", lambda a: a.happened("store_wipe") and bool(a.runs))
    return s
