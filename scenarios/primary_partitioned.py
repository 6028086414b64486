"""primary-partitioned: a cluster primary is cut from every other server but not from its clients (redis-cluster).

Sessions run on every node. At about 40 % of the run the primary holding the most session records is isolated: the
cluster bus to and from it and its replication link are cut, while the nodes' clients still reach it. It keeps
acknowledging their writes (heartbeats, registrations, close flags, removals) until it notices, after the node
timeout, that it cannot reach a majority of primaries and refuses further writes; meanwhile the majority side fails
it and promotes its replica. When the partition heals, the old primary learns of the newer configuration, becomes a
replica of the promoted one and discards its data: every write it acknowledged while cut off is lost. This is the
second window the Redis Cluster specification states for asynchronous replication (the first is a primary dying
before it replicated an acknowledged write; see ``failover``). ``--durability wait:1`` closes it: no replica can
acknowledge a write on the minority side, so those writes fail instead of being acknowledged.

Faithful: a lost registration or heartbeat is never re-registered (``running-session-visible``, attributed to the
store); lost removals bring records back (``removed-stays-removed``, attributed to the store). Hardened: rewrites
whole records every period, so lost records return within one period; a lost removal still shows. Needs
``--backend redis-cluster`` (and a topology with network faults); elsewhere it is refused before it starts.
"""

from sessionkv.sim import Parameters, Scenario


def scenario(p: Parameters) -> Scenario:
    duration = p.duration or 120.0
    s = Scenario("primary-partitioned", nodes=p.nodes or 3, duration=duration)
    rng = p.rng("faults")
    opened = s.open_many(p.sessions or 12, rng=p.rng("placement"), at=1.0, spread=5.0)
    cut_at = duration * 0.4 + rng.uniform(0, 3)
    cut_for = 50.0  # at time scale 0.1: 5 s, ten node timeouts, so the replica is promoted before the heal
    writes = p.rng("writes")
    # writes of every kind in the first node timeout of the cut (0.5 s at time scale 0.1), while the cut primary
    # still acknowledges; about a third of the keys hash to its slots
    for index, (_, call, sid) in enumerate(opened):
        if index % 3 == 0:
            s.request_close(call, sid, at=cut_at + writes.uniform(0.2, 3.0))
        elif index % 3 == 1:
            s.end_session(call, sid, at=cut_at + writes.uniform(0.2, 3.0))
    for node in s.node_names:
        for n in range(2):
            s.open(node, f"cut-{node}-{n}", at=cut_at + writes.uniform(0.2, 3.0))
    # the story needs the promotion before the heal: on a loaded machine the election can take longer than the cut
    s.partition_primary(at=cut_at, duration=cut_for, choose="most-keys", heal_after_promotion=True)
    s.guard("a primary was cut off and a replica was promoted", lambda a: a.happened("primary_promoted"))
    s.guard("sessions ran when the primary was cut off", lambda a: bool(a.runs))
    return s
