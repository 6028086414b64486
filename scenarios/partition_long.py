"""partition-long: one node loses the store for twice the TTL; close requests for its sessions arrive meanwhile.

Its records expire during the cut although the sessions keep running. After the heal the node must make them
visible again, and the close requests written while it was cut must still reach it.

Faithful: violates ``running-session-visible`` (``update_metrics`` skips a missing record and never re-registers, so
the sessions run invisible for ever) and ``close-request-honoured`` (the flags expire after the TTL, before the node
can read them: counted as lost to the TTL). Hardened: holds (re-registration at the first cycle after the heal;
close flags live an hour).
"""

from sessionkv.sim import Parameters, Scenario


def scenario(p: Parameters) -> Scenario:
    duration = p.duration or 300.0
    s = Scenario("partition-long", nodes=p.nodes or 3, duration=duration)
    rng = p.rng("faults")
    opened = s.open_many(p.sessions or 12, rng=p.rng("placement"), at=1.0, spread=5.0)
    start = duration * 0.3 + rng.uniform(0, 3)
    s.partition("n1", at=start, duration=s.ttl * 2)
    victims = [(call, sid) for node, call, sid in opened if node == "n1"][:2]
    for call, sid in victims:
        s.request_close(call, sid, at=start + rng.uniform(1, s.ttl / 2), by="client")
    s.guard("a node was cut while running sessions", lambda a: any(run.node == "n1" for run in a.runs))
    s.guard(
        "the cut outlasted the TTL",
        lambda a: bool(a.cut["n1"]) and a.cut["n1"][0][1] - a.cut["n1"][0][0] > a.scenario.ttl,
    )
    return s
