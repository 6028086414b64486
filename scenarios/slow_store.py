"""slow-store: every store call takes 4-6 s for two minutes (latency spikes longer than the heartbeat interval).

Faithful: violates ``running-session-visible`` and ``heartbeat-gaps``: its heartbeats are two sequential calls per
session, so with about ten sessions per node one round takes over 80 s, longer than the TTL; records expire, and a
missing record is never re-registered. Hardened: holds (one batched write per cycle, re-registration).
"""

from sessionkv.sim import Latency, Parameters, Scenario


def scenario(p: Parameters) -> Scenario:
    duration = p.duration or 400.0
    s = Scenario("slow-store", nodes=p.nodes or 3, duration=duration)
    rng = p.rng("faults")
    s.open_many(p.sessions or 30, rng=p.rng("placement"), at=1.0, spread=5.0)
    s.slow_store(Latency(4.0, 6.0), at=duration * 0.2 + rng.uniform(0, 3), duration=120.0)
    s.guard("the store was slow while sessions ran", lambda a: a.happened("slow") and bool(a.runs))
    return s
