"""Invariants: pure functions of the recorded history (and the scenario's settings), never checks inside the nodes.

:class:`Analysis` reads the history once and derives the facts every invariant needs (session runs, node liveness
and partitions, observer reads, acknowledged writes, close requests, losses by the store). Each invariant returns a
:class:`Check`: ``holds``, ``violated`` (with the first offending events and an attribution: ``node`` logic, or the
``store`` losing an acknowledged write) or ``unknown``.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
from collections.abc import Callable
from typing import Any, Final

from sessionkv.registry import CLOSE_REQUESTS_PREFIX, SESSIONS_PREFIX
from sessionkv.sim.history import FAIL, INFO, INVOKE, OK, History
from sessionkv.sim.model import Scenario

__all__ = ["INVARIANTS", "Analysis", "Check", "Violation", "check_all"]

EPSILON: Final = 0.002
"""Seconds of tolerance on expiry deadlines (Redis keeps TTLs in whole milliseconds)."""


@dataclasses.dataclass(slots=True)
class Violation:
    invariant: str
    attribution: str
    message: str
    time: float
    node: str | None
    events: list[int]
    expected: bool = False


@dataclasses.dataclass(slots=True)
class Check:
    name: str
    status: str  # holds | violated | unknown
    summary: str
    violations: list[Violation] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(slots=True)
class SessionRun:
    key: str
    call: str
    node: str
    start: float
    start_index: int
    stop: float | None = None
    stop_index: int | None = None
    reason: str | None = None
    last_write: float | None = None  # completion time of the last write (ok or info) of its record by its node
    acks: list[float] = dataclasses.field(default_factory=list)  # ok writes of its record by its node
    idle_since: float | None = None


@dataclasses.dataclass(slots=True)
class CloseRequest:
    key: str  # the session key it is about
    time: float
    index: int
    ttl: float


@dataclasses.dataclass(slots=True)
class Observation:
    time: float  # when the read completed
    index: int
    keys: frozenset[str]
    began: float  # when it began (a read through a failover can take a while)


def _windows_contain(windows: list[tuple[float, float]], t: float) -> bool:
    return any(start <= t < end for start, end in windows)


LOST_KINDS: Final = ("registration", "heartbeat", "removal", "close_flag")
"""The kinds of acknowledged write the store can lose: a session's first acknowledged write, a later one, a delete,
a close request."""


class Analysis:
    """The facts of one run, derived in one pass over the history.

    Acknowledged writes the store lost (:attr:`lost_writes`, one ``(key, time)`` per write, the kind of each in
    :attr:`lost_kinds`) are counted from the observer's reads, so the count is a lower bound: a session record whose
    acknowledged write set a TTL that has not run out, missing from a read that began after the write completed
    (``registration`` when that was the record's first acknowledged write in its session, else ``heartbeat``); a
    deleted key (session record or close flag) present in a read that began after the delete completed, while no
    write that could have recreated it was in flight, completed after the delete began, or ended with an unknown
    outcome (the server may apply such a write late) (``removal``); a close flag
    missing the same way as a record, where the observer lists flags (the backends with replicas), or lost to a
    restart of the store without data (``close_flag``).

    ``latency_bound`` raises the store latency the invariants allow for (``close-request-honoured``) when latency is
    real rather than drawn from the scenario (the ``redis`` backend passes its operation timeout).
    """

    def __init__(self, history: History, scenario: Scenario, *, latency_bound: float = 0.0) -> None:
        self.history = history
        self.scenario = scenario
        self.end = scenario.duration
        self.runs: list[SessionRun] = []
        self.observations: list[Observation] = []
        self.close_requests: list[CloseRequest] = []
        self.counts: dict[str, int] = {}
        self.operations = 0
        self.alive: dict[str, list[tuple[float, float]]] = {n: [] for n in scenario.node_names}
        self.cut: dict[str, list[tuple[float, float]]] = {n: [] for n in scenario.node_names}
        self.faults: list[dict[str, Any]] = []
        self.marks: list[dict[str, Any]] = []
        self.samples: list[dict[str, Any]] = []
        self.deletes: dict[str, list[tuple[float, int]]] = {}
        self.starts_by_key: dict[str, list[float]] = {}
        self.lost_writes: set[tuple[str, float]] = set()
        self.lost_kinds: dict[tuple[str, float], str] = {}
        self.lost_removals: set[tuple[str, int]] = set()  # (key, observation index) where a lost delete showed
        self._removed: dict[str, tuple[int, int, float]] = {}  # key -> (delete invoke index, done index, invoke time)
        self._writing: dict[str, int] = {}  # key -> creating writes (set without xx, mset) in flight
        self._written: dict[str, float] = {}  # key -> completion index of the last creating write
        self._flags_alive: dict[str, tuple[float, float, int, str]] = {}
        self.lost_at: dict[str, list[float]] = {}
        self.limit_rejects = 0
        self.close_lost = 0
        # running sessions unseen by the observer while their node was healthy: node -> key -> (since, index)
        self._invisible: dict[str, dict[str, tuple[float, int]]] = {n: {} for n in scenario.node_names}
        self._reported_invisible: set[int] = set()
        self._cut_depth: dict[str, int] = {}
        self.wipe_events: list[tuple[float, int]] = []  # (time, index) of each restart of the store without data
        self.invisible: list[tuple[SessionRun, float, int, float, int]] = []
        # the longest a store call may take outside slow windows: the scenario's latency, or for real time (where
        # latency is whatever the machine gives) the bound the caller passes
        self.max_latency = max(scenario.latency.high, latency_bound)

        running: dict[str, SessionRun] = {}
        by_node: dict[str, dict[str, SessionRun]] = {n: {} for n in scenario.node_names}
        alive_since: dict[str, float] = {}
        cut_since: dict[str, float] = {}
        open_faults: dict[tuple[str, Any], dict[str, Any]] = {}
        pending: dict[str, int] = {}
        # key -> (expected expiry, write invoke time, write completion index, kind of write)
        alive_until: dict[str, tuple[float, float, int, str]] = {}
        idle: dict[str, float] = {}
        events = history.events
        counts = self.counts
        for index, (t_ns, node, process, type_, f, key, value, _error) in enumerate(events):
            t = t_ns / 1e9
            counts[f] = counts.get(f, 0) + 1
            if type_ == INVOKE:
                pending[process] = index
                if node != "observer":
                    self.operations += 1
                if f == "delete":
                    for k in value:
                        alive_until.pop(k, None)
                        self._flags_alive.pop(k, None)
                else:
                    for k in _creates(f, key, value):
                        self._writing[k] = self._writing.get(k, 0) + 1
                        self._removed.pop(k, None)
                continue
            if process in pending and type_ in (OK, INFO, FAIL) and f in _STORE_FS and node != "observer":
                invoke_index = pending.pop(process)
                invoke = events[invoke_index]
                for k in _creates(invoke[4], invoke[5], invoke[6]):
                    self._writing[k] -= 1
                    # an outcome unknown to the node: the server may apply it late, even after a later delete
                    self._written[k] = _NEVER if type_ == INFO else index
                if type_ == FAIL:
                    continue
                self._completion(t, index, invoke, invoke_index, type_, running, alive_until)
                continue
            if node == "observer":
                if type_ == OK:
                    began = pending.pop(process, index)
                    if key == CLOSE_REQUESTS_PREFIX:
                        self._observe_flags(t, index, began, frozenset(value))
                    else:
                        self._observe(t, index, began, frozenset(value), by_node, alive_since, cut_since, alive_until)
                continue
            if key is None:
                if node == "nemesis":
                    if f == "store_wipe":
                        self.wipe_events.append((t, index))
                    self._nemesis(t, f, value, cut_since, open_faults)
                elif f == "node_start":
                    alive_since[node] = t
                elif f in ("node_crash", "node_stop") and node in alive_since:
                    self.alive[node].append((alive_since.pop(node), t))
                continue
            if f == "session_start":
                run = SessionRun(key, str(value), node, t, index)
                self.runs.append(run)
                running[key] = run
                by_node[node][key] = run
                self.starts_by_key.setdefault(key, []).append(t)
            elif f == "session_stop":
                run_or_none = running.pop(key, None)
                if run_or_none is not None:
                    run_or_none.stop, run_or_none.stop_index, run_or_none.reason = t, index, str(value)
                    by_node[run_or_none.node].pop(key, None)
                    self._invisible[run_or_none.node].pop(key, None)
            elif f == "leave":
                idle[key] = t
                if key in running:
                    running[key].idle_since = t
            elif f == "limit_reject":
                self.limit_rejects += 1
        for node, since in alive_since.items():
            self.alive[node].append((since, self.end + 1))
        for node, since in cut_since.items():
            self.cut[node].append((since, self.end + 1))
        for fault in open_faults.values():
            self.faults.append(fault)
        self.faults.sort(key=lambda fault: (fault["start"], fault["kind"], str(fault["node"])))
        self.observation_times = [obs.time for obs in self.observations]
        self.wipes: list[float] = [fault["start"] for fault in self.faults if fault["kind"] == "store_wipe"]
        for request in self.close_requests:
            if self.flag_lost_by_store(request) is not None:
                self._lost(CLOSE_REQUESTS_PREFIX + request.key[len(SESSIONS_PREFIX) :], request.time, "close_flag")

    # -- the pass ------------------------------------------------------------------------------------------------------

    def _lost(self, key: str, t: float, kind: str) -> None:
        self.lost_writes.add((key, t))
        self.lost_kinds.setdefault((key, t), kind)

    def _completion(
        self,
        t: float,
        index: int,
        invoke: Any,
        invoke_index: int,
        type_: str,
        running: dict[str, SessionRun],
        alive_until: dict[str, tuple[float, float, int, str]],
    ) -> None:
        t_invoke = invoke[0] / 1e9
        node, f, key, value = invoke[1], invoke[4], invoke[5], invoke[6]
        if f == "set":
            ttl, xx = value[0][1], value[1][1]
            if key.startswith(CLOSE_REQUESTS_PREFIX):
                session_key = SESSIONS_PREFIX + key[len(CLOSE_REQUESTS_PREFIX) :]
                self.close_requests.append(CloseRequest(session_key, t, index, ttl))
                if type_ == OK and (not xx or _surely_alive(self._flags_alive.get(key), t)):
                    self._flags_alive[key] = (t_invoke + ttl, t, index, "close_flag")
                return
            self._wrote(key, node, t, t_invoke, index, ttl, type_, running, alive_until, conditional=xx)
        elif f == "mset":
            keys, ttl = value[0][1], value[1][1]
            ok = type_ == OK
            get = running.get
            for k in keys:
                run = get(k)
                first = run is not None and run.node == node and not run.acks
                if run is not None and run.node == node:
                    run.last_write = t
                    if ok:
                        run.acks.append(t)
                if ok:
                    alive_until[k] = (t_invoke + ttl, t_invoke, index, "registration" if first else "heartbeat")
        elif f == "delete" and type_ == OK:
            for k in value:
                self.deletes.setdefault(k, []).append((t, index))
                self._removed[k] = (invoke_index, index, t_invoke)

    def _wrote(
        self,
        key: str,
        node: str,
        t: float,
        t_invoke: float,
        index: int,
        ttl: float,
        type_: str,
        running: dict[str, SessionRun],
        alive_until: dict[str, tuple[float, float, int, str]],
        *,
        conditional: bool,
    ) -> None:
        run = running.get(key)
        first = run is not None and run.node == node and not run.acks
        if run is not None and run.node == node:
            run.last_write = t
            if type_ == OK:
                run.acks.append(t)
        if not (type_ == OK and (not conditional or _surely_alive(alive_until.get(key), t))):
            return
        alive_until[key] = (t_invoke + ttl, t_invoke, index, "registration" if first else "heartbeat")

    def _removals_back(self, index: int, since: int, keys: frozenset[str]) -> None:
        """Deleted keys this read (begun at event ``since``) shows again, where no write could have recreated them."""
        removed = self._removed
        for key in sorted(keys & removed.keys()):
            invoked, done, t_invoke = removed[key]
            if done > since:
                continue  # the read may have begun before the delete was applied
            del removed[key]
            if self._writing.get(key, 0) == 0 and self._written.get(key, -1) < invoked:
                self._lost(key, t_invoke, "removal")
                self.lost_removals.add((key, index))

    def _observe_flags(self, t: float, index: int, since: int, keys: frozenset[str]) -> None:
        """One observer read of the close flags: flags the store lost, deletes it lost."""
        self._removals_back(index, since, keys)
        expired = []
        for key, (expiry, t_done, done, kind) in self._flags_alive.items():
            if expiry <= t + EPSILON:
                expired.append(key)
            elif key not in keys and done < since:
                self._lost(key, t_done, kind)
        for key in expired:
            del self._flags_alive[key]

    def _observe(
        self,
        t: float,
        index: int,
        began: int,
        keys: frozenset[str],
        by_node: dict[str, dict[str, SessionRun]],
        alive_since: dict[str, float],
        cut_since: dict[str, float],
        alive_until: dict[str, tuple[float, float, int, str]],
    ) -> None:
        """One observer read (begun at event ``began``): samples, losses by the store, and the invisible stretches
        of running sessions."""
        self.observations.append(Observation(t, index, keys, self.history.events[began][0] / 1e9))
        self._removals_back(index, began, keys)
        ttl = self.scenario.ttl
        rounded = round(t, 6)
        for node, runs in by_node.items():
            # a set difference in C, then sorted: set order depends on the process's string hashing
            missing_set = runs.keys() - keys if runs else set()
            missing = sorted(missing_set)
            self.samples.append({"t": rounded, "node": node, "running": len(runs), "visible": len(runs) - len(missing)})
            for key in missing:
                expected = alive_until.get(key)
                if expected is not None and expected[0] > t + EPSILON and expected[2] < began:
                    self._lost(key, expected[1], expected[3])
                    self.lost_at.setdefault(key, []).append(t)
            invisible = self._invisible[node]
            if node not in alive_since or node in cut_since:
                invisible.clear()
                continue
            for key in [key for key in invisible if key not in missing_set]:
                del invisible[key]
            for key in missing:
                since = invisible.get(key)
                if since is None:
                    invisible[key] = (t, index)
                elif t - since[0] > ttl:
                    run = runs[key]
                    if run.start_index not in self._reported_invisible:
                        self._reported_invisible.add(run.start_index)
                        self.invisible.append((run, since[0], since[1], t, index))

    def _nemesis(
        self,
        t: float,
        f: str,
        value: Any,
        cut_since: dict[str, float],
        open_faults: dict[tuple[str, Any], dict[str, Any]],
    ) -> None:
        args = dict(value) if isinstance(value, tuple) else {}
        node: str | None = args.get("node")
        cut_node = str(node)
        window = args.get("window")
        if f in ("partition", "slow"):
            open_faults[(f, window)] = {"kind": f, "node": node, "start": t, "end": None}
            if f == "slow":
                self.max_latency = max(self.max_latency, float(args.get("high", 0.0)))
            else:
                depth = self._cut_depth.get(cut_node, 0)
                self._cut_depth[cut_node] = depth + 1
                if depth == 0:
                    cut_since[cut_node] = t
        elif f in ("heal", "unslow"):
            fault = open_faults.pop(("partition" if f == "heal" else "slow", window), None)
            if fault is not None:
                fault["end"] = t
                self.faults.append(fault)
            if f == "heal":
                depth = self._cut_depth.get(cut_node, 0) - 1
                self._cut_depth[cut_node] = max(depth, 0)
                if depth == 0 and cut_node in cut_since:
                    self.cut[cut_node].append((cut_since.pop(cut_node), t))
        else:
            self.faults.append({"kind": f, "node": node, "start": t, "end": t})

    # -- queries -----------------------------------------------------------------------------------------------------

    def healthy(self, node: str, t: float) -> bool:
        """Whether ``node`` runs and reaches the store at ``t``."""
        return _windows_contain(self.alive[node], t) and not _windows_contain(self.cut[node], t)

    def reachable_from(self, node: str, t: float, span: float = 0.0) -> float | None:
        """The first instant ``s >= t`` from which ``node`` stays healthy for ``span`` seconds (``None`` if none
        before the end of the run)."""
        candidates = [t, *(end for _, end in self.cut[node] if end > t), *(s for s, _ in self.alive[node] if s > t)]
        for start in sorted(candidates):
            if start > self.end:
                break
            if self.healthy_throughout(node, start, start + span):
                return start
        return None

    def healthy_throughout(self, node: str, start: float, end: float) -> bool:
        """Whether ``node`` runs and reaches the store during all of ``[start, end]``."""
        if any(cut_start <= end and cut_end > start for cut_start, cut_end in self.cut[node]):
            return False
        return any(up <= start and down > end for up, down in self.alive[node])

    def flag_lost_by_store(self, request: CloseRequest) -> float | None:
        """When the store lost this close flag (a restart without data while it was alive and not yet removed)."""
        flag = CLOSE_REQUESTS_PREFIX + request.key[len(SESSIONS_PREFIX) :]
        for wipe in self.wipes:
            if request.time <= wipe < request.time + request.ttl:
                if any(request.time <= deleted <= wipe for deleted, _ in self.deletes.get(flag, ())):
                    return None
                return wipe
        return None

    def lost_by_kind(self) -> dict[str, int]:
        """How many acknowledged writes the store lost, by kind (every kind of :data:`LOST_KINDS`, zeros included)."""
        counts = dict.fromkeys(LOST_KINDS, 0)
        for kind in self.lost_kinds.values():
            counts[kind] += 1
        return counts

    def primary_faults(self) -> list[dict[str, Any]]:
        """The primary faults' nemesis events in order: which server died or was cut (and how many session records
        it held), which replica was promoted and after how long, when the old one rejoined or the fault failed."""
        return [
            {"t": round(t_ns / 1e9, 6), "event": f, **dict(value)}
            for t_ns, node, _, _, f, _, value, _ in self.history.events
            if node == "nemesis" and f in _PRIMARY_EVENTS
        ]

    def observations_after(self, t: float) -> list[Observation]:
        return self.observations[bisect.bisect_right(self.observation_times, t) :]

    def happened(self, f: str) -> bool:
        return self.counts.get(f, 0) > 0

    def stopped(self, reason: str) -> int:
        return sum(1 for run in self.runs if run.reason == reason)

    def heartbeat_gaps(self) -> list[float]:
        gaps: list[float] = []
        for run in self.runs:
            acks = run.acks
            gaps.extend([b - a for a, b in itertools.pairwise(acks)])
        return gaps

    def restarted_after(self, key: str, t: float) -> float | None:
        for start in self.starts_by_key.get(key, ()):
            if start > t:
                return start
        return None


_STORE_FS: Final = frozenset({"set", "mset", "get", "mget", "expire", "keys", "delete"})
_NEVER: Final = float("inf")
_PRIMARY_EVENTS: Final = frozenset(
    {
        "kill_primary",
        "partition_primary",
        "primary_promoted",
        "heal_primary",
        "primary_rejoined",
        "primary_fault_failed",
    }
)


def _surely_alive(expected: tuple[float, float, int, str] | None, t: float) -> bool:
    """Whether a key whose last acknowledged write is ``expected`` certainly still existed at ``t``: a write with
    ``only_if_exists`` that arrives after the key expired is acknowledged but writes nothing."""
    return expected is not None and expected[0] > t


def _creates(f: str, key: str | None, value: Any) -> tuple[str, ...]:
    """The keys a store call may create (``set`` without ``only_if_exists``, ``mset``); nothing for other calls."""
    if f == "set" and key is not None and not value[1][1]:
        return (key,)
    if f == "mset":
        return tuple(value[0][1])
    return ()


# -- the invariants ---------------------------------------------------------------------------------------------------


def crashed_node_sessions_expire(a: Analysis) -> Check:
    """A crashed node's sessions are gone from the store within the TTL of their last write (acknowledged or not)."""
    name = "crashed-node-sessions-expire"
    crashed = [run for run in a.runs if run.reason == "node_crash"]
    if not crashed:
        return Check(name, "holds", "no node crashed while running sessions")
    found: list[Violation] = []
    checked = 0
    for run in crashed:
        assert run.stop is not None
        written = run.last_write if run.last_write is not None else run.start
        deadline = max(written, 0.0) + a.scenario.ttl + EPSILON
        again = a.restarted_after(run.key, run.stop)
        after = a.observations_after(deadline)
        if after:
            checked += 1
        for obs in after:
            if again is not None and obs.time >= again:
                break
            if obs.began < deadline:
                continue  # the read began while the record could still be alive
            if run.key in obs.keys:
                found.append(
                    Violation(
                        name,
                        "node",
                        f"{run.key} of crashed {run.node} still visible at t={obs.time:.3f}, "
                        f"{obs.time - written:.3f}s after its last write (TTL {a.scenario.ttl}s)",
                        obs.time,
                        run.node,
                        [run.stop_index or run.start_index, obs.index],
                    )
                )
                break
    if found:
        return Check(name, "violated", f"{len(found)} session(s) of crashed nodes outlived their TTL", found)
    if not checked:
        return Check(name, "unknown", "the run ended before any crashed session's TTL ran out")
    return Check(name, "holds", f"{len(crashed)} session(s) of crashed nodes expired within the TTL")


def running_session_visible(a: Analysis) -> Check:
    """A session running on a healthy, connected node is visible to the observer: invisible for more than the TTL is
    a violation."""
    name = "running-session-visible"
    ttl = a.scenario.ttl
    found: list[Violation] = []
    for run, since, since_index, seen_at, seen_index in a.invisible:
        lost = [t for t in a.lost_at.get(run.key, ()) if since - ttl <= t <= seen_at]
        wipes = [index for t, index in a.wipe_events if since - ttl <= t <= seen_at] if lost else []
        found.append(
            Violation(
                name,
                "store" if lost else "node",
                f"{run.key} runs on {run.node} (healthy, connected) but was invisible from "
                f"t={since:.3f} to t={seen_at:.3f} (> TTL {ttl}s)"
                + ("; the store lost its acknowledged record" if lost else ""),
                seen_at,
                run.node,
                [run.start_index, *wipes[:1], since_index, seen_index],
            )
        )
    if found:
        return Check(name, "violated", f"{len(found)} running session(s) invisible for longer than the TTL", found)
    if not a.runs:
        return Check(name, "unknown", "no session ran")
    return Check(name, "holds", f"all {len(a.runs)} session(s) visible while their node was healthy")


def close_request_honoured(a: Analysis) -> Check:
    """A close request for a running session closes it within one maintenance period plus store latency of the
    moment its node is healthy; a flag that expires before that is counted as lost to the TTL."""
    name = "close-request-honoured"
    scenario = a.scenario
    slack = scenario.maintenance_interval + 4 * a.max_latency + EPSILON
    found: list[Violation] = []
    considered = 0
    a.close_lost = 0
    runs_by_key: dict[str, list[SessionRun]] = {}
    for run in a.runs:
        runs_by_key.setdefault(run.key, []).append(run)
    for request in a.close_requests:
        match = next(
            (
                r
                for r in runs_by_key.get(request.key, ())
                if r.start <= request.time and (r.stop is None or r.stop > request.time)
            ),
            None,
        )
        if match is None:
            continue
        run = match
        reachable = a.reachable_from(run.node, request.time, slack)
        if reachable is None:
            continue
        deadline = reachable + slack
        if deadline > a.end:
            continue
        considered += 1
        if run.stop is not None and run.stop <= deadline:
            continue
        if run.stop is not None and run.reason == "node_crash":
            continue
        flag = CLOSE_REQUESTS_PREFIX + request.key[len(SESSIONS_PREFIX) :]
        if a.flag_lost_by_store(request) is not None or (flag, request.time) in a.lost_writes:
            continue  # the store lost the flag: counted in lost_acknowledged_writes, no node could honour it
        lost = request.time + request.ttl < deadline
        if lost:
            a.close_lost += 1
        found.append(
            Violation(
                name,
                "node",
                f"close of {run.key} requested at t={request.time:.3f}; {run.node} reachable from "
                f"t={reachable:.3f} but the session still ran at t={deadline:.3f}"
                + (f" (the flag expired after {request.ttl}s: lost to the TTL)" if lost else ""),
                deadline,
                run.node,
                [request.index, run.start_index] + ([run.stop_index] if run.stop_index is not None else []),
            )
        )
    if found:
        return Check(name, "violated", f"{len(found)} of {considered} close request(s) not honoured in time", found)
    if not considered:
        return Check(name, "holds" if not a.close_requests else "unknown", "no close request for a running session")
    return Check(name, "holds", f"{considered} close request(s) honoured within {slack:.3f}s of reachability")


def removed_stays_removed(a: Analysis) -> Check:
    """A session record deleted after its session stopped never comes back, unless the session is started again."""
    name = "removed-stays-removed"
    found: list[Violation] = []
    for run in a.runs:
        if run.stop is None:
            continue
        deletes = [d for d in a.deletes.get(run.key, ()) if d[0] >= run.stop]
        if not deletes:
            continue
        deleted_at, delete_index = deletes[0]
        again = a.restarted_after(run.key, deleted_at)
        for obs in a.observations_after(deleted_at):
            if again is not None and obs.time >= again:
                break
            if obs.began < deleted_at:
                continue  # the read began before the delete was acknowledged: it may have listed the key before
            if run.key in obs.keys:
                lost = (run.key, obs.index) in a.lost_removals
                found.append(
                    Violation(
                        name,
                        "store" if lost else "node",
                        f"{run.key} was removed at t={deleted_at:.3f} and is back at t={obs.time:.3f} "
                        "without being started again"
                        + (
                            "; the store undid the acknowledged removal (lost in a failover, or still listed by a "
                            "primary cut off from the cluster)"
                            if lost
                            else ""
                        ),
                        obs.time,
                        run.node,
                        [run.stop_index or run.start_index, delete_index, obs.index],
                    )
                )
                break
    if found:
        return Check(name, "violated", f"{len(found)} removed record(s) came back", found)
    return Check(name, "holds", "no removed record came back")


def per_call_limit(a: Analysis) -> Check:
    """At no instant do more sessions of one call run than ``max_sessions_per_call``."""
    name = "per-call-limit"
    limit = a.scenario.max_sessions_per_call
    if not limit:
        return Check(name, "holds", "no per-call limit in this scenario")
    moments: list[tuple[float, int, int, SessionRun]] = []
    for run in a.runs:
        moments.append((run.start, run.start_index, 1, run))
        if run.stop is not None and run.stop_index is not None:
            moments.append((run.stop, run.stop_index, -1, run))
    moments.sort(key=lambda item: item[1])
    live: dict[str, list[SessionRun]] = {}
    found: list[Violation] = []
    reported: set[str] = set()
    for t, _, delta, run in moments:
        group = live.setdefault(run.call, [])
        if delta > 0:
            group.append(run)
            if len(group) > limit and run.call not in reported:
                reported.add(run.call)
                found.append(
                    Violation(
                        name,
                        "node",
                        f"call {run.call} runs {len(group)} sessions at t={t:.3f} (limit {limit}): "
                        + ", ".join(f"{r.key} on {r.node}" for r in group),
                        t,
                        run.node,
                        [r.start_index for r in group],
                    )
                )
        else:
            group.remove(run)
    if found:
        return Check(name, "violated", f"{len(found)} call(s) exceeded the limit of {limit}", found)
    return Check(name, "holds", f"no call ever ran more than {limit} session(s)")


def heartbeat_gaps(a: Analysis) -> Check:
    """Between two acknowledged heartbeats of a session whose node stayed healthy, less than the TTL passes."""
    name = "heartbeat-gaps"
    ttl = a.scenario.ttl
    found: list[Violation] = []
    for run in a.runs:
        for before, after in zip(run.acks, run.acks[1:], strict=False):
            if (
                after - before > ttl
                and a.healthy(run.node, before)
                and not any(start < after and end > before for start, end in a.cut[run.node])
            ):
                found.append(
                    Violation(
                        name,
                        "node",
                        f"{run.key} on {run.node}: {after - before:.3f}s between heartbeats at t={before:.3f} and "
                        f"t={after:.3f} (TTL {ttl}s) while connected",
                        after,
                        run.node,
                        [run.start_index],
                    )
                )
                break
    gaps = a.heartbeat_gaps()
    longest = max(gaps, default=0.0)
    if found:
        return Check(name, "violated", f"{len(found)} session(s) had a heartbeat gap longer than the TTL", found)
    if not gaps:
        return Check(name, "unknown", "no session heartbeated twice")
    return Check(name, "holds", f"{len(gaps)} gaps, longest {longest:.3f}s (TTL {ttl}s)")


def session_limits_honoured(a: Analysis) -> Check:
    """No session is closed for its maximum duration or idle timeout before that much time really passed."""
    name = "session-limits-honoured"
    scenario = a.scenario
    found: list[Violation] = []
    for run in a.runs:
        if run.stop is None:
            continue
        if run.reason == "max_duration" and scenario.max_session_duration is not None:
            lived, limit = run.stop - run.start, scenario.max_session_duration
        elif run.reason == "idle_timeout" and run.idle_since is not None:
            lived, limit = run.stop - run.idle_since, scenario.idle_timeout
        else:
            continue
        if lived < limit - EPSILON:
            found.append(
                Violation(
                    name,
                    "node",
                    f"{run.key} on {run.node} closed for {run.reason} after {lived:.3f}s (limit {limit}s)",
                    run.stop,
                    run.node,
                    [run.start_index, run.stop_index or run.start_index],
                )
            )
    if found:
        return Check(name, "violated", f"{len(found)} session(s) closed before their limit", found)
    return Check(name, "holds", "no session closed before its duration or idle limit")


INVARIANTS: dict[str, Callable[[Analysis], Check]] = {
    "crashed-node-sessions-expire": crashed_node_sessions_expire,
    "running-session-visible": running_session_visible,
    "close-request-honoured": close_request_honoured,
    "removed-stays-removed": removed_stays_removed,
    "per-call-limit": per_call_limit,
    "heartbeat-gaps": heartbeat_gaps,
    "session-limits-honoured": session_limits_honoured,
}
"""Every invariant by name, in report order."""


def check_all(analysis: Analysis) -> list[Check]:
    checks = [check(analysis) for check in INVARIANTS.values()]
    for check in checks:
        for violation in check.violations:
            violation.expected = check.name in analysis.scenario.expected
    return checks
