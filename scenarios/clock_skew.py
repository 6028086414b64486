"""clock-skew: one node's wall clock runs 20 s ahead, another's jumps two minutes forward (an NTP step).

Sessions have a maximum duration of half the run. Records expire on the store's clock, so skew does not touch
expiry; but vision-agents measures ``on_call_for`` with ``time.time()``.

Faithful: violates ``session-limits-honoured``: after the jump the node closes sessions for exceeding their maximum
duration long before they have run that long. Hardened: holds (durations on the monotonic clock).
"""

from sessionkv.sim import Parameters, Scenario


def scenario(p: Parameters) -> Scenario:
    duration = p.duration or 300.0
    s = Scenario("clock-skew", nodes=p.nodes or 3, duration=duration, max_session_duration=duration * 0.5)
    rng = p.rng("faults")
    s.open_many(p.sessions or 12, rng=p.rng("placement"), at=1.0, spread=5.0)
    s.skew_clock(s.node_names[0], 20.0, at=0.0)
    s.jump_clock(s.node_names[-1], 120.0, at=duration * 0.2 + rng.uniform(0, 3))
    s.guard("a wall clock jumped", lambda a: a.happened("clock_jump"))
    s.guard("a session reached its maximum duration", lambda a: a.stopped("max_duration") > 0)
    return s
