"""swarm: the seed picks which kinds of fault happen (swarm testing) and when; made for ``sessionkv sim explore``.

Each seed enables a random subset of the fault kinds (node crash and restart, short and long partitions, a slow
store, the store restarting empty, a wall-clock jump, a dead maintenance task) and schedules one to three faults of
each enabled kind at random times, over a fleet whose sessions open throughout the run and are sometimes asked to
close. Different seeds stress different combinations; ``explore`` then shrinks a failing one to the faults that
matter.

Faithful: violates on most seeds (which invariants depends on the kinds drawn). Hardened: holds.
"""

from sessionkv.sim import Latency, Parameters, Scenario

KINDS = ("crash", "partition-short", "partition-long", "slow", "wipe", "clock-jump", "maint-kill")


def scenario(p: Parameters) -> Scenario:
    duration = p.duration or 400.0
    s = Scenario("swarm", nodes=p.nodes or 4, duration=duration)
    pick = p.rng("swarm")
    enabled = [kind for kind in KINDS if pick.random() < 0.5] or [pick.choice(KINDS)]
    rng = p.rng("faults")
    opened = s.open_many(p.sessions or 16, rng=p.rng("placement"), at=1.0, spread=duration * 0.5)
    closer = p.rng("closes")
    for _, call, sid in opened:
        if closer.random() < 0.3:
            s.request_close(call, sid, at=closer.uniform(duration * 0.5, duration * 0.8), by="client")
    for kind in enabled:
        for _ in range(rng.randint(1, 3)):
            at = rng.uniform(10.0, duration * 0.75)
            node = rng.choice(s.node_names)
            if kind == "crash":
                s.crash(node, at=at)
                s.restart(node, at=at + rng.uniform(5.0, 60.0))
            elif kind == "partition-short":
                s.partition(node, at=at, duration=rng.uniform(1.0, s.ttl * 0.8))
            elif kind == "partition-long":
                s.partition(node, at=at, duration=rng.uniform(s.ttl * 1.2, s.ttl * 3))
            elif kind == "slow":
                s.slow_store(Latency(1.0, rng.uniform(2.0, 6.0)), at=at, duration=rng.uniform(10.0, 60.0))
            elif kind == "wipe":
                s.restart_store(at=at, keep_data=False)
            elif kind == "clock-jump":
                s.jump_clock(node, rng.uniform(-120.0, 120.0), at=at)
            else:
                s.kill_maintenance(node, at=at)
    s.guard("faults happened while sessions ran", lambda a: bool(a.faults) and bool(a.runs))
    return s
