"""partition-short: one node loses the store for less than the TTL, then heals.

Its heartbeats fail during the cut, but its records outlive it, so once healed it simply carries on.

Faithful: holds. Hardened: holds.
"""

from sessionkv.sim import Parameters, Scenario


def scenario(p: Parameters) -> Scenario:
    duration = p.duration or 300.0
    s = Scenario("partition-short", nodes=p.nodes or 3, duration=duration)
    rng = p.rng("faults")
    s.open_many(p.sessions or 12, rng=p.rng("placement"), at=1.0, spread=5.0)
    s.partition("n1", at=duration * 0.3 + rng.uniform(0, 3), duration=s.ttl * 0.5)
    s.guard(
        "a node was cut while running sessions",
        lambda a: any(run.node == "n1" and run.start < a.cut["n1"][0][0] for run in a.runs) if a.cut["n1"] else False,
    )
    return s
