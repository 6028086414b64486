"""per-call-limit-race: two nodes open a session for the same call at nearly the same time, limit one per call.

Each call gets two ``start_session`` requests on different nodes, a fraction of a second apart (less than the time a
node takes to launch an agent, for some of them).

Faithful: violates ``per-call-limit``: ``get_for_call`` then ``register`` is check-then-act with no cross-node lock,
so both nodes see zero sessions and both start one. Hardened: holds (register, then count; a node that sees more than
the limit withdraws), at the price of rejecting both sessions in some races.
"""

from sessionkv.sim import Parameters, Scenario


def scenario(p: Parameters) -> Scenario:
    duration = p.duration or 120.0
    s = Scenario("per-call-limit-race", nodes=max(2, p.nodes or 3), duration=duration, max_sessions_per_call=1)
    rng = p.rng("race")
    calls = max(1, (p.sessions or 12) // 2)
    for index in range(calls):
        first, second = rng.sample(s.node_names, 2)
        at = 2.0 + index * duration * 0.5 / calls + rng.uniform(0, 1)
        s.open(first, f"c{index + 1}", at=at)
        s.open(second, f"c{index + 1}", at=at + rng.uniform(0, 0.4))
    s.guard("the per-call limit rejected a session", lambda a: a.limit_rejects > 0)
    return s
