"""close-storm: many nodes, many sessions, a burst of close requests from every node and from clients.

Half of the sessions are asked to close within a few seconds, from random nodes and from outside clients; some
other calls end by themselves at the same time (their node removes them outside the maintenance loop).

Faithful: holds. Hardened: holds.
"""

from sessionkv.sim import Parameters, Scenario


def scenario(p: Parameters) -> Scenario:
    duration = p.duration or 200.0
    s = Scenario("close-storm", nodes=p.nodes or 5, duration=duration)
    rng = p.rng("storm")
    opened = s.open_many(p.sessions or 40, rng=p.rng("placement"), at=1.0, spread=10.0)
    burst = duration * 0.4
    for index, (_, call, sid) in enumerate(opened):
        if index % 2 == 0:
            by = rng.choice([*s.node_names, "client"])
            s.request_close(call, sid, at=burst + rng.uniform(0, 5), by=by)
        elif index % 4 == 1:
            s.end_session(call, sid, at=burst + rng.uniform(0, 5))
    s.guard("close requests reached running sessions", lambda a: a.stopped("close_request") > 0)
    s.guard("calls ended by themselves", lambda a: a.stopped("call_ended") > 0)
    return s
