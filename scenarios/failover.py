"""failover: a primary of the store dies while the nodes heartbeat, and a replica is promoted (cluster, Sentinel).

Sessions run on every node. At about 40 % of the run the primary holding the most session records is killed
(SIGKILL, no goodbye) in the middle of a burst of writes: sessions opening (registrations), close requests (flags) and
calls ending by themselves (removals), on top of the steady heartbeats. The cluster (or the Sentinels) notice after
the node timeout (``down-after-milliseconds``) and promote its replica; the dead server comes back empty as a replica.

What can be lost: replication is asynchronous. The Redis Cluster specification says so plainly: a primary acknowledges
a write to the client before its replicas have it, so a write acknowledged in the moment before the primary dies,
and not yet sent on, is gone when a replica takes over; and in a partition the primary on the minority side keeps
accepting writes until the node timeout, all of which are lost when the partition heals (``primary-partitioned``
shows that one). Sentinel-managed replication has the same first window. ``stats.lost_acknowledged_writes`` counts
what the observer saw go missing, by kind; ``--durability wait:1`` makes each acknowledgement wait for one replica
(``WAIT 1``), which closes the first window for a single failure. On loopback the replica is microseconds behind, so
a kill usually loses nothing or a handful of writes: the count is measured, not assumed.

Faithful and hardened: the writes to the dead primary's slots fail for the length of the failover (about one to two
seconds on these topologies); a lost or expired record is never re-registered by the faithful policy (violating
``running-session-visible``, attributed to the store when it lost an acknowledged write), and is within one period by
the hardened one. Needs ``--backend redis-cluster`` or ``redis-sentinel``; elsewhere it is refused before it starts.
"""

from sessionkv.sim import Parameters, Scenario


def scenario(p: Parameters) -> Scenario:
    duration = p.duration or 120.0
    s = Scenario("failover", nodes=p.nodes or 3, duration=duration)
    rng = p.rng("faults")
    opened = s.open_many(p.sessions or 12, rng=p.rng("placement"), at=1.0, spread=5.0)
    kill_at = duration * 0.4 + rng.uniform(0, 3)
    # the burst around the kill: every kind of write the registry makes is in flight when the primary dies
    burst = p.rng("burst")
    for index, (_, call, sid) in enumerate(opened):
        if index % 4 == 0:
            s.request_close(call, sid, at=kill_at + burst.uniform(-0.3, 0.05))
        elif index % 4 == 1:
            s.end_session(call, sid, at=kill_at + burst.uniform(-0.3, 0.05))
    for node in s.node_names:
        s.open(node, f"late-{node}", at=kill_at + burst.uniform(-0.3, 0.05))
    s.kill_primary(at=kill_at, choose="most-keys")
    s.guard("a primary died and a replica was promoted", lambda a: a.happened("primary_promoted"))
    s.guard("sessions ran when the primary died", lambda a: bool(a.runs))
    return s
