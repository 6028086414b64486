"""Running a scenario end to end and the :class:`RunResult` it produces (SIM_SPEC's JSON shape).

:func:`run_scenario` is the library entry point: build the scenario from its script, run the engine, analyse the
history, check every invariant and the coverage guards, and return a :class:`RunResult`. The verdict is ``violated``
when an invariant was violated and the scenario did not expect it, else ``vacuous`` when a coverage guard did not
happen, else ``ok``.
"""

from __future__ import annotations

import dataclasses
import shlex
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sessionkv.sim.engine import REAL_BACKENDS, Engine, make_policy
from sessionkv.sim.history import History
from sessionkv.sim.invariants import Analysis, Check, check_all
from sessionkv.sim.model import Action, Parameters, Scenario, ScenarioFunction, build
from sessionkv.sim.policies import Policy

__all__ = ["RunResult", "reproduce_command", "run_scenario"]


@dataclasses.dataclass(slots=True)
class RunResult:
    """One run: its settings, verdict, checks, coverage, statistics and the history itself."""

    scenario: str
    backend: str
    policy: str
    seed: int
    parameters: dict[str, Any]
    trace_hash: str
    verdict: str
    checks: list[Check]
    coverage: list[tuple[str, bool]]
    stats: dict[str, Any]
    history: History
    analysis: Analysis
    notes: list[str]
    reproduce: str
    schedule: list[Action]
    durability: str = "async"

    @property
    def unexpected(self) -> int:
        return sum(1 for check in self.checks for v in check.violations if not v.expected)

    @property
    def exit_code(self) -> int:
        return 1 if self.unexpected else 0

    def violated(self) -> list[str]:
        return [check.name for check in self.checks if check.status == "violated"]

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document (SIM_SPEC): first offending events are full history events."""
        history = self.history
        violations = [
            {
                "invariant": v.invariant,
                "expected": v.expected,
                "attribution": v.attribution,
                "message": v.message,
                "time": round(v.time, 6),
                "node": v.node,
                "first_events": history.events_json(sorted(set(v.events))),
            }
            for check in self.checks
            for v in check.violations
        ]
        expected = self.analysis.scenario.expected
        return {
            "scenario": self.scenario,
            "backend": self.backend,
            "durability": self.durability,
            "policy": self.policy,
            "seed": self.seed,
            "parameters": self.parameters,
            "trace_hash": self.trace_hash,
            "verdict": self.verdict,
            "invariants": [
                {"name": c.name, "status": c.status, "summary": c.summary, "expected": c.name in expected}
                for c in self.checks
            ],
            "violations": violations,
            "coverage": [{"name": name, "met": met} for name, met in self.coverage],
            "stats": self.stats,
            "timeline": {
                "nodes": self.analysis.scenario.node_names,
                "samples": self.analysis.samples,
                "faults": self.analysis.faults,
                "marks": [
                    {"t": round(v.time, 6), "node": v.node, "invariant": v.invariant}
                    for check in self.checks
                    for v in check.violations
                ],
            },
            "heartbeat_gaps_s": self.analysis.heartbeat_gaps(),
            "schedule": [action.to_json() for action in self.schedule],
            "notes": self.notes,
            "reproduce": self.reproduce,
        }


def reproduce_command(
    scenario: str,
    backend: str,
    policy: str,
    params: Parameters,
    schedule_path: str | None = None,
    time_scale: float = 0.1,
    durability: str = "async",
) -> str:
    """The exact ``sessionkv sim run`` command line that replays a run (on real servers: the same plan, not the
    same history)."""
    parts = ["sessionkv", "sim", "run", scenario, "--backend", backend, "--policy", policy, "--seed", str(params.seed)]
    if params.nodes is not None:
        parts += ["--nodes", str(params.nodes)]
    if params.sessions is not None:
        parts += ["--sessions", str(params.sessions)]
    if params.duration is not None:
        parts += ["--duration", f"{params.duration:g}"]
    if schedule_path is not None:
        parts += ["--schedule", schedule_path]
    if backend in REAL_BACKENDS and time_scale != 0.1:
        parts += ["--time-scale", f"{time_scale:g}"]
    if durability != "async":
        parts += ["--durability", durability]
    return shlex.join(parts)


def scenario_label(name_or_path: str | Path | ScenarioFunction) -> str:
    """How a run names its scenario: the built-in name, the script path, or the function's name."""
    if callable(name_or_path):
        return str(getattr(name_or_path, "__name__", repr(name_or_path)))
    return str(name_or_path)


def run_scenario(
    name_or_path: str | Path | ScenarioFunction,
    *,
    policy: str | Policy = "hardened",
    backend: str = "memory",
    params: Parameters | None = None,
    schedule: Sequence[Action] | None = None,
    schedule_path: str | None = None,
    progress: Callable[[float], None] | None = None,
    time_scale: float = 0.1,
    durability: str = "async",
) -> RunResult:
    """Run one scenario and check it. ``schedule`` replaces the scenario's timeline (shrinking, ``--schedule``).

    ``name_or_path`` is a built-in scenario name, the path of a scenario script, or a ``scenario(params)`` function.

    ``time_scale`` applies to the backends on real servers only (``redis``, ``redis-cluster``, ``redis-sentinel``;
    real time): every duration of the scenario is multiplied by it, so a 300 s scenario replays in 30 s by default.
    ``durability`` (``async`` or ``wait:N``) applies to ``redis-cluster`` and ``redis-sentinel``: with ``wait:N``
    every write of a node is followed by ``WAIT N``; the result is tagged with it either way.
    """
    params = params or Parameters()
    scenario = build(name_or_path, params)
    if schedule is not None:
        scenario = scenario.with_actions(schedule)
    return run_built(
        scenario,
        scenario_label(name_or_path),
        policy=policy,
        backend=backend,
        params=params,
        schedule_path=schedule_path,
        progress=progress,
        time_scale=time_scale,
        durability=durability,
    )


def run_built(
    scenario: Scenario,
    label: str,
    *,
    policy: str | Policy,
    backend: str,
    params: Parameters,
    schedule_path: str | None = None,
    progress: Callable[[float], None] | None = None,
    time_scale: float = 0.1,
    durability: str = "async",
) -> RunResult:
    """Run an already built :class:`Scenario` (what :func:`run_scenario` and exploration share)."""
    from sessionkv.sim.topology import PRIMARY_BACKENDS, Durability

    chosen = make_policy(policy) if isinstance(policy, str) else policy
    durable = Durability.parse(durability)
    ran = scenario
    notes: list[str] = []
    if backend in REAL_BACKENDS:
        from sessionkv.sim.realredis import scale_scenario

        # a topology's failover takes about two node timeouts (1 s): a node's call may wait one of them
        ran = scale_scenario(scenario, time_scale, min_timeout=1.0 if backend in PRIMARY_BACKENDS else 0.25)
        what = "real Redis" if backend == "redis" else f"a real local {backend.removeprefix('redis-')} topology"
        notes.append(
            f"{what}: this run replays the plan at time scale {time_scale:g} (every duration x{time_scale:g}, "
            "times in the history are real seconds); timing is real, so the history is not reproducible by seed"
        )
    if backend in PRIMARY_BACKENDS:
        notes.append(
            f"durability {durable.label}: "
            + (
                "a write is acknowledged once its primary applied it; replication to the replica is asynchronous"
                if not durable.replicas
                else f"every write of a node is followed by WAIT {durable.replicas} on the same connection; a write "
                "fewer replicas acknowledged in time fails (outcome unknown to the node)"
            )
        )
    engine = Engine(ran, chosen, params, backend=backend, durability=durable)
    engine.progress = progress
    output = engine.run()
    notes.extend(output.notes)
    analysing = time.perf_counter()
    analysis = Analysis(output.history, ran, latency_bound=ran.operation_timeout if backend in REAL_BACKENDS else 0.0)
    checks = check_all(analysis)
    coverage = [(guard.name, bool(guard.check(analysis))) for guard in ran.guards]
    unexpected = any(not v.expected for check in checks for v in check.violations)
    verdict = "violated" if unexpected else ("vacuous" if not all(met for _, met in coverage) else "ok")
    history = output.history
    trace_hash = history.trace_hash()
    analysis_s = time.perf_counter() - analysing
    stats: dict[str, Any] = {
        "operations": analysis.operations,
        "events": len(history),
        "simulated_s": ran.duration,
        "wall_s": round(output.wall_s, 4),
        "analysis_s": round(analysis_s, 4),
        "speed_x": round(ran.duration / output.wall_s, 1) if output.wall_s > 0 else None,
        "lost_acknowledged_writes": len(analysis.lost_writes),
        "lost_acknowledged_writes_by_kind": analysis.lost_by_kind(),
        "close_requests_lost_to_ttl": analysis.close_lost,
        "close_requests": len(analysis.close_requests),
        "sessions_started": len(analysis.runs),
        "limit_rejections": analysis.limit_rejects,
        "observations": len(analysis.observations),
    }
    if backend in PRIMARY_BACKENDS:
        stats["primary_faults"] = analysis.primary_faults()
    return RunResult(
        scenario=label,
        backend=backend,
        policy=chosen.name,
        seed=params.seed,
        parameters=ran.parameters_json(),
        trace_hash=trace_hash,
        verdict=verdict,
        checks=checks,
        coverage=coverage,
        stats=stats,
        history=history,
        analysis=analysis,
        notes=notes,
        reproduce=reproduce_command(label, backend, chosen.name, params, schedule_path, time_scale, durable.label),
        schedule=scenario.timeline(),
        durability=durable.label,
    )
