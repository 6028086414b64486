"""rolling-restart: every node is stopped gracefully and started again, one after the other, under load.

A deploy: each node's ``stop()`` closes its sessions and removes their records; new sessions keep opening on the
nodes that are up. Nothing may linger and nothing removed may come back.

Faithful: holds. Hardened: holds.
"""

from sessionkv.sim import Parameters, Scenario


def scenario(p: Parameters) -> Scenario:
    duration = p.duration or 300.0
    s = Scenario("rolling-restart", nodes=p.nodes or 3, duration=duration)
    rng = p.rng("placement")
    sessions = p.sessions or 12
    s.open_many(sessions // 2, rng=rng, at=1.0, spread=5.0)
    step = duration * 0.6 / s.nodes
    for index, node in enumerate(s.node_names):
        at = duration * 0.2 + index * step + rng.uniform(0, 2)
        s.stop(node, at=at)
        s.restart(node, at=at + step / 3)
    s.open_many(sessions - sessions // 2, rng=rng, at=duration * 0.2, spread=duration * 0.6)
    s.guard("every node was restarted", lambda a: a.counts.get("node_stop", 0) >= a.scenario.nodes)
    s.guard("a restart closed running sessions", lambda a: a.stopped("node_stop") > 0)
    return s
