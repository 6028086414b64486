"""What happens when: a :class:`Scenario` (the fleet, its settings, its timeline) and how scenario scripts are loaded.

A scenario script is a small Python file with a ``scenario(params)`` function that returns a :class:`Scenario`; the
built-in ones live in the repository's ``scenarios/`` folder (one file per story). A script draws everything random
(timing jitter, session placement) from ``params.rng(name)``, so a run is a pure function of the seed.

Timeline verbs are named for what an operator would do (``crash``, ``restart``, ``partition``, ``heal`` ...). Faults
with a duration (``partition``, ``slow_store``) are one :class:`Action` each, so that shrinking can shorten them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import math
import random
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from sessionkv.sim.invariants import Analysis

__all__ = [
    "FAULT_VERBS",
    "PRIMARY_CHOICES",
    "PRIMARY_VERBS",
    "Action",
    "Guard",
    "Latency",
    "Parameters",
    "Scenario",
    "ScenarioError",
    "builtin_scenarios",
    "load_scenario",
    "scenarios_dir",
]


class ScenarioError(ValueError):
    """A scenario (script, name, parameter or action) is malformed; the message says what to change."""


@dataclasses.dataclass(frozen=True, slots=True)
class Latency:
    """Store latency of one call: uniform between ``low`` and ``high`` seconds (virtual on in-process backends)."""

    low: float = 0.0005
    high: float = 0.002

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high) and 0 <= self.low <= self.high):
            raise ScenarioError(f"latency needs finite 0 <= low <= high, got low={self.low!r} high={self.high!r}")

    def draw(self, rng: random.Random) -> float:
        return self.low + (self.high - self.low) * rng.random()

    def to_json(self) -> dict[str, float]:
        return {"low": self.low, "high": self.high}


PRIMARY_VERBS: Final = frozenset({"kill_primary", "partition_primary"})
"""Faults of the store's own servers: they need a backend with primaries and replicas (``redis-cluster``,
``redis-sentinel``); the engine refuses them elsewhere before the run starts."""

PRIMARY_CHOICES: Final = ("most-keys", "seeded")
"""How a primary fault picks its victim: the primary holding the most session records at that moment (ties: the
lowest port), or one drawn from the seed's ``primary`` stream."""

FAULT_VERBS: Final = (
    frozenset(
        {
            "crash",
            "restart",
            "stop",
            "partition",
            "slow_store",
            "store_restart",
            "clock_skew",
            "clock_jump",
            "maint_kill",
        }
    )
    | PRIMARY_VERBS
)
"""Verbs that are faults (what explore shrinks); the others are workload."""

VERBS: Final = FAULT_VERBS | {"start", "open", "request_close", "end_session", "leave"}


@dataclasses.dataclass(frozen=True, slots=True)
class Action:
    """One timeline entry: ``verb`` at virtual time ``at`` (seconds since the run began).

    ``node`` is the node that acts or suffers (``None`` for store-wide faults); ``duration`` bounds a fault window
    (``None`` = until the end); ``args`` holds the verb's own arguments (JSON-able values only).
    """

    at: float
    verb: str
    node: str | None = None
    duration: float | None = None
    args: tuple[tuple[str, Any], ...] = ()

    def arg(self, name: str, default: Any = None) -> Any:
        for key, value in self.args:
            if key == name:
                return value
        return default

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "verb": self.verb, "node": self.node, "duration": self.duration, "args": dict(self.args)}

    @classmethod
    def from_json(cls, data: Any) -> Action:
        if not isinstance(data, dict) or "at" not in data or "verb" not in data:
            raise ScenarioError(f"an action is an object with at and verb, got {data!r}")
        if data["verb"] not in VERBS:
            raise ScenarioError(f"unknown verb {data['verb']!r}; known: {', '.join(sorted(VERBS))}")
        args = data.get("args") or {}
        if not isinstance(args, dict):
            raise ScenarioError(f"action args must be an object, got {args!r}")
        duration = data.get("duration")
        return cls(
            at=float(data["at"]),
            verb=str(data["verb"]),
            node=data.get("node"),
            duration=None if duration is None else float(duration),
            args=tuple(sorted(args.items())),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Guard:
    """A coverage guard: ``check(analysis)`` is true when what the scenario is about did happen in the run."""

    name: str
    check: Callable[[Analysis], bool]


@dataclasses.dataclass(frozen=True, slots=True)
class Parameters:
    """What the command line (or a test) may set; ``None`` leaves the scenario's own default.

    ``seed`` feeds every random choice: :meth:`rng` derives one independent stream per ``name`` (stable across
    processes and Python versions, never the global ``random``).
    """

    seed: int = 1
    nodes: int | None = None
    sessions: int | None = None
    duration: float | None = None

    def rng(self, name: str) -> random.Random:
        digest = hashlib.blake2b(f"{self.seed}/{name}".encode(), digest_size=8).digest()
        return random.Random(int.from_bytes(digest, "big"))


@dataclasses.dataclass(slots=True)
class Scenario:
    """A fleet, its settings and a timeline. Build one with the constructor, then call the verbs.

    Times are virtual seconds since the run began; node names are ``n1`` ... ``nN``. All nodes start at 0 unless
    ``autostart=False`` (then use :meth:`start`). ``latency`` is every store call's latency outside slow windows;
    ``launch_delay`` is the time a node takes to create its agent between the per-call-limit check and the
    registration (vision-agents' ``launch()``). ``operation_timeout`` is how long a call to an unreachable store
    takes to fail. ``observe_interval`` is the observer's period (default ``ttl / 10``). ``max_sessions_per_call``,
    ``max_session_duration`` and ``idle_timeout`` are the launcher's limits (``None``/``0`` = off).
    ``expected`` names invariants whose violation this scenario expects (a known weakness it documents).
    """

    name: str
    nodes: int = 3
    duration: float = 300.0
    ttl: float = 30.0
    maintenance_interval: float = 5.0
    latency: Latency = dataclasses.field(default_factory=Latency)
    launch_delay: Latency = dataclasses.field(default_factory=lambda: Latency(0.05, 0.2))
    operation_timeout: float = 1.0
    observe_interval: float | None = None
    max_sessions_per_call: int | None = None
    max_session_duration: float | None = None
    idle_timeout: float = 0.0
    autostart: bool = True
    description: str = ""
    actions: list[Action] = dataclasses.field(default_factory=list)
    guards: list[Guard] = dataclasses.field(default_factory=list)
    expected: frozenset[str] = frozenset()
    sessions_opened: int = 0

    def __post_init__(self) -> None:
        if self.nodes < 1:
            raise ScenarioError(f"a scenario needs at least one node, got nodes={self.nodes}")
        for what in ("duration", "ttl", "maintenance_interval", "operation_timeout"):
            value = getattr(self, what)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ScenarioError(f"{what} must be a finite number > 0, got {value!r}")

    @property
    def node_names(self) -> list[str]:
        return [f"n{i}" for i in range(1, self.nodes + 1)]

    @property
    def observe_every(self) -> float:
        return self.observe_interval if self.observe_interval is not None else self.ttl / 10

    def _node(self, node: str) -> str:
        if node not in self.node_names:
            raise ScenarioError(f"unknown node {node!r}: this scenario has {', '.join(self.node_names)}")
        return node

    def _add(self, at: float, verb: str, node: str | None = None, duration: float | None = None, **args: Any) -> None:
        if not (math.isfinite(at) and at >= 0):
            raise ScenarioError(f"{verb}: at must be a finite time >= 0, got {at!r}")
        if duration is not None and not (math.isfinite(duration) and duration > 0):
            raise ScenarioError(f"{verb}: duration must be a finite number > 0, got {duration!r}")
        self.actions.append(Action(round(at, 6), verb, node, duration, tuple(sorted(args.items()))))

    # -- workload ------------------------------------------------------------------------------------------------------

    def start(self, node: str, *, at: float) -> None:
        """Start ``node`` (a fresh instance with no sessions)."""
        self._add(at, "start", self._node(node))

    def open(self, node: str, call_id: str, *, at: float, session_id: str | None = None) -> str:
        """Ask ``node`` to start a session for ``call_id`` at ``at``; returns the session id (``s1``, ``s2`` ...)."""
        self.sessions_opened += 1
        sid = session_id or f"s{self.sessions_opened}"
        self._add(at, "open", self._node(node), call=call_id, session=sid)
        return sid

    def open_many(
        self, count: int, *, rng: random.Random, at: float = 1.0, spread: float = 5.0, calls: int = 0
    ) -> list[tuple[str, str, str]]:
        """Open ``count`` sessions on nodes drawn from ``rng``, at ``at`` plus a jitter below ``spread`` seconds.

        ``calls`` > 0 spreads them over that many calls (default: one call per session). Returns the
        ``(node, call_id, session_id)`` of each.
        """
        opened = []
        for index in range(count):
            call = f"c{index % calls + 1}" if calls else f"c{index + 1}"
            node = rng.choice(self.node_names)
            opened.append((node, call, self.open(node, call, at=at + spread * rng.random())))
        return opened

    def request_close(self, call_id: str, session_id: str, *, at: float, by: str = "client") -> None:
        """Write the close flag of a session, from ``by`` (a node name, or ``"client"`` for an outside caller)."""
        self._add(at, "request_close", None if by == "client" else self._node(by), call=call_id, session=session_id)

    def end_session(self, call_id: str, session_id: str, *, at: float) -> None:
        """The call ends by itself (the agent's task finishes): its node removes the session."""
        self._add(at, "end_session", None, call=call_id, session=session_id)

    def leave(self, call_id: str, session_id: str, *, at: float) -> None:
        """Every participant but the agent leaves the call: the session is idle from now (``idle_timeout``)."""
        self._add(at, "leave", None, call=call_id, session=session_id)

    # -- faults --------------------------------------------------------------------------------------------------------

    def crash(self, node: str, *, at: float) -> None:
        """Kill ``node`` at once: no cleanup, its records stay until they expire."""
        self._add(at, "crash", self._node(node))

    def stop(self, node: str, *, at: float) -> None:
        """Stop ``node`` gracefully: the launcher's ``stop()`` (its sessions are closed and removed)."""
        self._add(at, "stop", self._node(node))

    def restart(self, node: str, *, at: float) -> None:
        """Start ``node`` again as a fresh instance (after a crash or stop)."""
        self._add(at, "restart", self._node(node))

    def partition(self, node: str, *, at: float, duration: float | None = None) -> None:
        """Cut ``node`` from the store for ``duration`` seconds (``None`` = until the end); ``heal`` is implicit."""
        self._add(at, "partition", self._node(node), duration)

    def slow_store(
        self, latency: Latency, *, at: float, duration: float | None = None, node: str | None = None
    ) -> None:
        """Every store call (of ``node``, or of every node) takes ``latency`` for ``duration`` seconds."""
        self._add(
            at, "slow_store", None if node is None else self._node(node), duration, low=latency.low, high=latency.high
        )

    def restart_store(self, *, at: float, keep_data: bool = False) -> None:
        """Restart the store; ``keep_data=False`` loses everything (Redis without persistence). With ``keep_data=True``
        the restart is recorded but loses nothing, so the nodes see no difference."""
        self._add(at, "store_restart", None, keep_data=keep_data)

    def skew_clock(self, node: str, offset: float, *, at: float) -> None:
        """From ``at`` on, ``node``'s wall clock reads virtual time plus ``offset`` seconds."""
        self._add(at, "clock_skew", self._node(node), offset=offset)

    def jump_clock(self, node: str, delta: float, *, at: float) -> None:
        """``node``'s wall clock jumps by ``delta`` seconds (added to its current skew)."""
        self._add(at, "clock_jump", self._node(node), delta=delta)

    def kill_primary(self, *, at: float, choose: str = "most-keys", rejoin: bool = True) -> None:
        """SIGKILL one primary of the store (``choose``: see :data:`PRIMARY_CHOICES`) and let a replica be promoted;
        with ``rejoin`` the dead server is started again, empty, as a replica once the promotion is done. The history
        records which server died (and how many session records it held) and which one was promoted. Needs a backend
        with primaries (``redis-cluster``, ``redis-sentinel``)."""
        self._add(at, "kill_primary", None, choose=_choice(choose), rejoin=bool(rejoin))

    def partition_primary(
        self, *, at: float, duration: float, choose: str = "most-keys", heal_after_promotion: bool = False
    ) -> None:
        """Cut one primary of a Redis Cluster from every other server (cluster bus and replication) for ``duration``
        seconds while clients still reach it: it acknowledges writes until it notices it is in the minority (the node
        timeout), its replica is promoted on the majority side, and when the partition heals it rejoins as a replica
        and drops what it acknowledged meanwhile. Needs ``redis-cluster``.

        ``heal_after_promotion``: the cut lasts ``duration`` and, if the replica is not promoted by then (a loaded
        machine slows the election), until it is, within ten more node timeouts; the extra time is noted in the
        result. Off, a cut shorter than the failover heals with nobody promoted (and nothing lost)."""
        self._add(
            at,
            "partition_primary",
            None,
            duration,
            choose=_choice(choose),
            heal_after_promotion=bool(heal_after_promotion),
        )

    def kill_maintenance(self, node: str, *, at: float) -> None:
        """The maintenance task of ``node`` dies (an unexpected exception); the node itself keeps running."""
        self._add(at, "maint_kill", self._node(node))

    # -- checking ------------------------------------------------------------------------------------------------------

    def guard(self, name: str, check: Callable[[Analysis], bool]) -> None:
        """Declare what must have happened for the run to mean anything; if it did not, the run is vacuous."""
        self.guards.append(Guard(name, check))

    def expect(self, *invariants: str) -> None:
        """Declare violations this scenario expects (a known weakness): they are reported but do not fail the run."""
        self.expected = self.expected | frozenset(invariants)

    # -- schedule ------------------------------------------------------------------------------------------------------

    def timeline(self) -> list[Action]:
        """The actions sorted by time (ties keep the order they were declared in)."""
        return sorted(self.actions, key=lambda action: action.at)

    def faults(self) -> list[Action]:
        return [action for action in self.timeline() if action.verb in FAULT_VERBS]

    def with_actions(self, actions: Sequence[Action]) -> Scenario:
        """A copy whose timeline is ``actions`` (settings and guards stay): what shrinking and ``--schedule`` use."""
        for action in actions:
            if action.node is not None and action.node not in self.node_names:
                raise ScenarioError(
                    f"the schedule names node {action.node!r}; this run has {', '.join(self.node_names)}"
                )
        return dataclasses.replace(self, actions=list(actions))

    def parameters_json(self) -> dict[str, Any]:
        return {
            "nodes": self.nodes,
            "sessions": self.sessions_opened,
            "duration_s": self.duration,
            "ttl_s": self.ttl,
            "maintenance_interval_s": self.maintenance_interval,
            "latency_s": self.latency.to_json(),
            "launch_delay_s": self.launch_delay.to_json(),
            "operation_timeout_s": self.operation_timeout,
            "observe_interval_s": self.observe_every,
            "max_sessions_per_call": self.max_sessions_per_call,
            "max_session_duration_s": self.max_session_duration,
            "idle_timeout_s": self.idle_timeout,
        }


def _choice(choose: str) -> str:
    if choose not in PRIMARY_CHOICES:
        raise ScenarioError(f"choose must be one of {', '.join(PRIMARY_CHOICES)}, got {choose!r}")
    return choose


ScenarioFunction = Callable[[Parameters], Scenario]


def scenarios_dir() -> Path:
    """The folder of built-in scenario scripts: ``$SESSIONKV_SCENARIOS`` if set, else the copy a wheel installs next
    to this module, else ``scenarios/`` of the source checkout."""
    import os

    override = os.environ.get("SESSIONKV_SCENARIOS")
    if override:
        return Path(override)
    installed = Path(__file__).resolve().parent / "scenarios"
    return installed if installed.is_dir() else Path(__file__).resolve().parents[3] / "scenarios"


def builtin_scenarios() -> dict[str, Path]:
    """Built-in scenario names (the CLI's) and their scripts, sorted by name."""
    folder = scenarios_dir()
    if not folder.is_dir():
        return {}
    return {path.stem.replace("_", "-"): path for path in sorted(folder.glob("*.py")) if not path.stem.startswith("_")}


_LOADED: dict[str, tuple[ScenarioFunction, str]] = {}


def load_scenario(name_or_path: str | Path) -> tuple[ScenarioFunction, str, Path]:
    """Return ``(scenario_function, description, path)`` of a built-in name or a script path.

    Raises :class:`ScenarioError` naming the known scenarios when the name is unknown, or saying what the script
    lacks.
    """
    text = str(name_or_path)
    builtins = builtin_scenarios()
    if text in builtins:
        path = builtins[text]
    else:
        path = Path(text)
        if not (path.suffix == ".py" and path.is_file()):
            known = ", ".join(builtins) or "(none found: is the scenarios/ folder there?)"
            raise ScenarioError(f"no scenario {text!r}: give a built-in name ({known}) or the path of a .py script")
    resolved = str(path.resolve())
    if resolved not in _LOADED:
        module_name = "sessionkv_scenario_" + hashlib.blake2b(resolved.encode(), digest_size=6).hexdigest()
        spec = importlib.util.spec_from_file_location(module_name, resolved)
        if spec is None or spec.loader is None:
            raise ScenarioError(f"cannot load scenario script {resolved}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[module_name]
            raise ScenarioError(f"scenario script {resolved} failed to load: {type(exc).__name__}: {exc}") from exc
        function = getattr(module, "scenario", None)
        if not callable(function):
            raise ScenarioError(f"scenario script {resolved} must define scenario(params) -> Scenario")
        _LOADED[resolved] = (function, (module.__doc__ or "").strip())
    function, doc = _LOADED[resolved]
    return function, doc, path


def build(name_or_path: str | Path | ScenarioFunction, params: Parameters) -> Scenario:
    """Call a scenario function (a script's, by built-in name or path, or one given directly) with ``params``.

    Checks that it returned a :class:`Scenario`.
    """
    if callable(name_or_path):
        function, doc, path = name_or_path, name_or_path.__doc__ or "", Path(getattr(name_or_path, "__name__", "?"))
    else:
        function, doc, path = load_scenario(name_or_path)
    scenario = function(params)
    if not isinstance(scenario, Scenario):
        raise ScenarioError(f"scenario(params) of {path} must return a Scenario, got {type(scenario).__name__}")
    if not scenario.description:
        scenario.description = doc.splitlines()[0] if doc else ""
    return scenario


def first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""
