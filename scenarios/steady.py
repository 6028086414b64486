"""steady: a healthy fleet heartbeats its sessions; nothing fails.

The baseline every other story is compared with, and the benchmark's workload. Sessions open on nodes drawn from the
seed during the first seconds and run to the end.

Faithful: holds. Hardened: holds.
"""

from sessionkv.sim import Parameters, Scenario


def scenario(p: Parameters) -> Scenario:
    s = Scenario("steady", nodes=p.nodes or 3, duration=p.duration or 300.0)
    s.open_many(p.sessions or 12, rng=p.rng("placement"), at=1.0, spread=5.0)
    s.guard("sessions ran", lambda a: len(a.runs) > 0)
    s.guard("sessions heartbeated", lambda a: len(a.heartbeat_gaps()) > 0)
    return s
