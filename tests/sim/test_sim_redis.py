"""A shortened replay on a real redis-server (real time, each node behind its own fault proxy).

Real time, so every margin comes from the scenario: at time scale 0.1 the TTL is 3 s and the maintenance interval
0.5 s, so a healthy node has six heartbeats of slack before a record could expire, and the faithful policy's
data loss lasts for the rest of the run (it never re-registers), far longer than the TTL.
"""

from __future__ import annotations

from sessionkv.sim import Parameters, run_scenario
from sessionkv.testing import RedisServer


def test_hardened_recovers_from_redis_losing_its_data(redis_server: RedisServer) -> None:
    # redis_server: skips (or fails under --sessionkv-require-redis) when no redis-server is available; the run
    # starts its own server, since it restarts it empty
    result = run_scenario(
        "redis-restart-empty", policy="hardened", backend="redis", params=Parameters(seed=1, duration=100.0)
    )
    assert result.violated() == [], [v.message for c in result.checks for v in c.violations]
    assert result.verdict == "ok"
    assert result.stats["lost_acknowledged_writes"] > 0  # the restart really lost the records
    assert any("real Redis" in note for note in result.notes)
    assert result.parameters["ttl_s"] == 3.0


def test_faithful_stays_invisible_after_redis_loses_its_data(redis_server: RedisServer) -> None:
    result = run_scenario(
        "redis-restart-empty", policy="faithful", backend="redis", params=Parameters(seed=1, duration=100.0)
    )
    assert "running-session-visible" in result.violated()
    visible = next(check for check in result.checks if check.name == "running-session-visible")
    assert {v.attribution for v in visible.violations} == {"store"}


def test_a_partition_cuts_one_node_through_its_proxy(redis_server: RedisServer) -> None:
    result = run_scenario(
        "partition-long", policy="hardened", backend="redis", params=Parameters(seed=1, duration=100.0)
    )
    assert result.verdict == "ok", [v.message for c in result.checks for v in c.violations]
    cut = [e for e in result.history.events if e[1] == "n1" and e[3] in ("fail", "info")]
    others = [e for e in result.history.events if e[1] in ("n2", "n3") and e[3] in ("fail", "info")]
    assert cut, "the partitioned node's calls failed"
    assert not others, "the other nodes never lost the store"
