"""Acknowledged writes the store lost, counted from a constructed history: every kind is found, and what only looks
like a loss (a read that began before the write completed, a key a concurrent write may have recreated) is not."""

from __future__ import annotations

from typing import Any

from sessionkv.sim.history import INFO, INVOKE, OK, History
from sessionkv.sim.invariants import LOST_KINDS, Analysis, check_all
from sessionkv.sim.model import Scenario

S1, S2, S3 = "sessions/c1/s1", "sessions/c2/s2", "sessions/c3/s3"
FLAG = "close_requests/c4/s4"


class Recorder:
    def __init__(self) -> None:
        self.history = History()

    def add(
        self, t: float, node: str, process: str, type_: str, f: str, key: str | None = None, value: Any = None
    ) -> None:
        self.history.add(round(t * 1e9), node, process, type_, f, key, value)

    def write(self, t: float, done: float, process: str, f: str, key: str | None, value: Any, node: str = "n1") -> None:
        self.add(t, node, process, INVOKE, f, key, value)
        self.add(done, node, process, OK, f, key, None)

    def set(
        self, t: float, key: str, *, done: float | None = None, process: str = "n1/maint", ttl: float = 30.0
    ) -> None:
        node = "client" if process.startswith("client") else "n1"
        self.write(t, done or t + 0.001, process, "set", key, (("ttl", ttl), ("xx", False)), node)

    def observe(self, t: float, keys: tuple[str, ...], prefix: str = "sessions/", *, done: float | None = None) -> None:
        self.add(t, "observer", "observer", INVOKE, "keys", prefix)
        self.add(done or t + 0.001, "observer", "observer", OK, "keys", prefix, keys)

    def session(self, t: float, key: str, f: str = "session_start", value: str = "c") -> None:
        self.add(t, "n1", "n1/node", OK, f, key, value)


def analyse(recorder: Recorder) -> Analysis:
    return Analysis(recorder.history, Scenario("constructed", nodes=1, duration=100.0, ttl=30.0))


def constructed() -> Recorder:
    r = Recorder()
    r.add(0.0, "n1", "n1/node", OK, "node_start")
    for key in (S1, S2, S3):
        r.session(1.0, key)
        r.set(1.0, key, process=f"n1/start:{key}")  # registrations
    r.set(2.0, FLAG, process="client/close", ttl=3600.0)
    r.observe(2.5, (S1, S2, S3))
    r.observe(2.6, (FLAG,), "close_requests/")
    r.observe(3.0, (S2, S3))  # S1's registration is gone: lost
    r.set(4.0, S1)  # a heartbeat of S1 (it is running; faithful would skip it, the store accepts it)
    r.observe(5.0, (S2, S3))  # lost again: the heartbeat
    # a heartbeat that completes after the read began: missing from that read proves nothing
    r.add(6.0, "n1", "n1/maint", INVOKE, "set", S1, (("ttl", 30.0), ("xx", False)))
    r.add(6.0005, "observer", "observer", INVOKE, "keys", "sessions/")
    r.add(6.001, "n1", "n1/maint", OK, "set", S1, None)
    r.add(6.002, "observer", "observer", OK, "keys", "sessions/", (S2, S3))
    r.session(6.5, S1, "session_stop", "node_stop")
    # S2 removed, then back with nothing that could have written it: the store lost the delete
    r.session(6.9, S2, "session_stop", "call_ended")
    r.write(7.0, 7.001, "n1/close:s2", "delete", None, (S2, "close_requests/c2/s2"))
    # S3 removed while a heartbeat batch that names it was in flight: that write may have recreated it
    r.session(6.9, S3, "session_stop", "call_ended")
    r.add(6.95, "n1", "n1/maint2", INVOKE, "mset", None, (("keys", (S3,)), ("ttl", 30.0)))
    r.write(7.0, 7.002, "n1/close:s3", "delete", None, (S3,))
    r.add(
        7.05,
        "n1",
        "n1/maint2",
        INFO,
        "mset",
        None,
        None,
    )
    r.observe(8.0, (S2, S3))
    r.observe(9.0, (), "close_requests/")  # the flag, an hour's TTL, is gone: lost
    return r


def test_every_kind_of_lost_write_is_counted_once() -> None:
    analysis = analyse(constructed())
    assert analysis.lost_by_kind() == {"registration": 1, "heartbeat": 1, "removal": 1, "close_flag": 1}
    assert sorted(analysis.lost_writes) == sorted([(S1, 1.0), (S1, 4.0), (S2, 7.0), (FLAG, 2.001)])
    assert set(analysis.lost_by_kind()) == set(LOST_KINDS)


def test_a_lost_removal_is_the_stores_and_a_racing_write_the_nodes() -> None:
    analysis = analyse(constructed())
    removed = next(check for check in check_all(analysis) if check.name == "removed-stays-removed")
    by_key = {v.message.split()[0]: v for v in removed.violations}
    assert by_key[S2].attribution == "store"
    assert "undid the acknowledged removal" in by_key[S2].message
    assert by_key[S3].attribution == "node"


def test_a_read_that_sees_everything_loses_nothing() -> None:
    r = Recorder()
    r.add(0.0, "n1", "n1/node", OK, "node_start")
    r.session(1.0, S1)
    r.set(1.0, S1, process="n1/start")
    r.set(2.0, FLAG, process="client/close", ttl=3600.0)
    r.observe(3.0, (S1,))
    r.observe(3.1, (FLAG,), "close_requests/")
    r.write(4.0, 4.001, "client/close", "delete", None, (FLAG,))
    r.observe(5.0, (), "close_requests/")  # deleted, not lost
    r.observe(40.0, ())  # S1 expired: its TTL ran out at 31 s
    analysis = analyse(r)
    assert analysis.lost_writes == set()
    assert analysis.lost_by_kind() == dict.fromkeys(LOST_KINDS, 0)


def test_a_conditional_write_after_the_key_expired_proves_nothing() -> None:
    # faithful's heartbeat is a write with only_if_exists: acknowledged even when the record expired before it
    # arrived, and then it writes nothing; the record missing afterwards is an expiry, not a loss
    r = Recorder()
    r.add(0.0, "n1", "n1/node", OK, "node_start")
    r.session(1.0, S1)
    r.set(1.0, S1, process="n1/start", ttl=3.0)  # expires at 4.0 at the earliest
    r.observe(2.0, (S1,))
    r.write(4.5, 4.501, "n1/maint", "set", S1, (("ttl", 3.0), ("xx", True)))
    r.observe(5.0, ())
    r.write(5.5, 5.501, "n1/maint", "set", S1, (("ttl", 3.0), ("xx", False)))  # a real rewrite
    r.write(6.0, 6.001, "n1/maint", "set", S1, (("ttl", 3.0), ("xx", True)))  # while it surely exists
    r.observe(7.0, ())  # both the rewrite and the extension were lost
    analysis = analyse(r)
    assert analysis.lost_writes == {(S1, 6.0)}
    assert analysis.lost_by_kind()["heartbeat"] == 1


def test_a_write_of_unknown_outcome_may_recreate_a_deleted_key() -> None:
    # a registration that timed out (info) may still be applied by the server after the delete that followed it
    r = Recorder()
    r.add(0.0, "n1", "n1/node", OK, "node_start")
    r.add(1.0, "n1", "n1/start", INVOKE, "set", S1, (("ttl", 30.0), ("xx", False)))
    r.add(
        2.0,
        "n1",
        "n1/start",
        INFO,
        "set",
        S1,
        None,
    )
    r.write(2.5, 2.501, "n1/start", "delete", None, (S1,))
    r.observe(3.0, (S1,))
    assert analyse(r).lost_writes == set()
