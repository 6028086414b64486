"""``sessionkv sim``: list, run and explore multi-node scenarios.

Exit status: ``run`` 0 when no unexpected violation, 1 otherwise (or when ``--check-determinism`` finds a
divergence); ``explore`` 1 when a seed violated an invariant, 0 when none did; 2 for usage errors everywhere.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sessionkv.sim.engine import BACKENDS, REAL_BACKENDS
from sessionkv.sim.history import History
from sessionkv.sim.model import Action, Parameters, ScenarioError, build, builtin_scenarios, first_line, load_scenario
from sessionkv.sim.policies import POLICIES
from sessionkv.sim.result import RunResult, run_scenario

__all__ = ["main"]


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's own usage errors: exit 2 with the usage line
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", help="a built-in scenario name (see 'sessionkv sim list') or a path to a script")
    parser.add_argument("--backend", choices=BACKENDS, default="memory", help="store backend (default: memory)")
    parser.add_argument(
        "--policy", choices=sorted(POLICIES), default="hardened", help="node policy (default: hardened)"
    )
    parser.add_argument("--nodes", type=_positive_int, help="number of nodes (default: the scenario's)")
    parser.add_argument("--sessions", type=_positive_int, help="number of sessions in total (default: the scenario's)")
    parser.add_argument("--duration", type=_positive_float, help="simulated seconds (default: the scenario's)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sessionkv sim", description="Multi-node failure simulations of the session registry.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("list", help="list the built-in scenarios")
    run = sub.add_parser("run", help="run one scenario and check its invariants")
    _add_common(run)
    run.add_argument("--seed", type=int, default=1, help="the seed of every random choice (default: 1)")
    run.add_argument("--json", metavar="PATH", help="write the result as JSON")
    run.add_argument("--report", metavar="DIR", help="write the HTML report (timeline, heartbeat gaps) into DIR")
    run.add_argument("--history", metavar="PATH", help="write the history as JSON Lines")
    run.add_argument("--check-determinism", action="store_true", help="run twice and compare the histories")
    run.add_argument(
        "--schedule",
        metavar="PATH",
        help="a JSON list of actions replacing the scenario's timeline (what explore writes)",
    )
    run.add_argument(
        "--time-scale",
        type=_positive_float,
        default=0.1,
        help="backends on real servers (redis, redis-cluster, redis-sentinel): multiply every duration (default 0.1)",
    )
    run.add_argument(
        "--durability",
        default="async",
        metavar="async|wait:N",
        help="redis-cluster and redis-sentinel: async (default) acknowledges a write once its primary applied it; "
        "wait:N follows every write of a node with WAIT N (N replicas acknowledged it)",
    )
    explore = sub.add_parser("explore", help="run many seeds, stop at the first violation and shrink its faults")
    _add_common(explore)
    explore.add_argument("--seeds", type=_positive_int, required=True, help="how many seeds to try")
    explore.add_argument("--first-seed", type=int, default=1, help="the first seed (default: 1)")
    explore.add_argument("--jobs", type=_positive_int, default=None, help="worker processes (default: CPU count)")
    explore.add_argument("--schedule-out", metavar="PATH", help="where to write the shrunk schedule (JSON)")
    return parser


def main(argv: Sequence[str]) -> int:
    """Run ``sessionkv sim ...`` and return the exit status."""
    try:
        options = _parser().parse_args(list(argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        if options.command == "list":
            return _list()
        if options.command == "run":
            return _run(options)
        return _explore(options)
    except (_UsageError, ScenarioError) as exc:
        print(f"sessionkv sim {options.command}: error: {exc}", file=sys.stderr)
        return 2


def _list() -> int:
    scenarios = builtin_scenarios()
    if not scenarios:
        print("no built-in scenarios found (the scenarios/ folder is missing)", file=sys.stderr)
        return 2
    width = max(map(len, scenarios))
    for name in scenarios:
        _, doc, _ = load_scenario(name)
        summary = first_line(doc).split(":", 1)[-1].strip()
        print(f"{name:<{width}}  {summary}")
    return 0


def _params(options: argparse.Namespace, seed: int) -> Parameters:
    return Parameters(seed=seed, nodes=options.nodes, sessions=options.sessions, duration=options.duration)


def _load_schedule(path: str) -> list[Action]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _UsageError(f"cannot read the schedule {path}: {exc}") from exc
    if not isinstance(data, list):
        raise _UsageError(f"the schedule {path} must be a JSON list of actions")
    return [Action.from_json(item) for item in data]


@contextmanager
def _progress(label: str, total: float) -> Iterator[Callable[[float], None] | None]:
    """A rich progress bar on stderr while a run goes (nothing when stderr is not a terminal or rich is missing)."""
    if not sys.stderr.isatty():
        yield None
        return
    try:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    except ImportError:  # pragma: no cover - rich is in the sim extra
        yield None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
        TimeElapsedColumn(),
        transient=True,
        console=None,
    ) as progress:
        task = progress.add_task(label, total=total)
        yield lambda t: progress.update(task, completed=min(t, total))


def _check_backend_options(options: argparse.Namespace) -> None:
    if options.backend in REAL_BACKENDS and getattr(options, "check_determinism", False):
        raise _UsageError(
            f"--check-determinism needs an in-process backend (memory or fakeredis): {options.backend} is real time"
        )
    if options.report and importlib.util.find_spec("sessionkv.sim.report") is None:
        raise _UsageError(
            "--report needs sessionkv.sim.report, which is not part of this build; run without --report "
            "(the --json result holds everything the report shows)"
        )


def _run(options: argparse.Namespace) -> int:
    _check_backend_options(options)
    params = _params(options, options.seed)
    schedule = _load_schedule(options.schedule) if options.schedule else None
    scenario = build(options.scenario, params)
    total = scenario.duration * (options.time_scale if options.backend in REAL_BACKENDS else 1.0)
    with _progress(f"{options.scenario} ({options.policy}, {options.backend})", total) as progress:
        result = run_scenario(
            options.scenario,
            policy=options.policy,
            backend=options.backend,
            params=params,
            schedule=schedule,
            schedule_path=options.schedule,
            progress=progress,
            time_scale=options.time_scale,
            durability=options.durability,
        )
    status = result.exit_code
    if options.check_determinism:
        again = run_scenario(
            options.scenario,
            policy=options.policy,
            backend=options.backend,
            params=params,
            schedule=schedule,
            schedule_path=options.schedule,
        )
        status = max(status, _report_determinism(result.history, again.history, result.trace_hash, again.trace_hash))
    if options.history:
        result.history.export(options.history)
    if options.json:
        Path(options.json).write_text(json.dumps(result.to_json(), indent=1) + "\n", encoding="utf-8")
    _print_summary(result)
    if options.report:
        # the report module is written separately (SIM_SPEC.md); imported only here
        report: Any = importlib.import_module("sessionkv.sim.report")
        page = report.write_report(result.to_json(), options.report)
        print(f"report: {page}")
    return status


def _report_determinism(first: History, second: History, hash1: str, hash2: str) -> int:
    where = first.first_divergence(second)
    if where is None and hash1 == hash2:
        print(f"determinism: two runs recorded the same {len(first)} events (trace hash {hash1})")
        return 0
    print(f"determinism: the runs diverge at event {where}", file=sys.stderr)
    for label, history in (("first ", first), ("second", second)):
        if where is not None and where < len(history):
            print(f"  {label}: {json.dumps(history.event(where, history.events[where]))}", file=sys.stderr)
        else:
            print(f"  {label}: (history ends)", file=sys.stderr)
    return 1


def _print_summary(result: RunResult) -> None:
    durability = f"  durability {result.durability}" if "primary_faults" in result.stats else ""
    print(
        f"scenario {result.scenario}  policy {result.policy}  backend {result.backend}{durability}  seed {result.seed}"
    )
    stats = result.stats
    lost = stats["lost_acknowledged_writes"]
    by_kind = ", ".join(
        f"{n} {kind.replace('_', ' ')}" for kind, n in stats["lost_acknowledged_writes_by_kind"].items()
    )
    print(
        f"simulated {stats['simulated_s']:g} s in {stats['wall_s']:.3f} s wall; {stats['operations']} store "
        f"operations; {stats['sessions_started']} sessions; {lost} acknowledged writes lost by the store"
        + (f" ({by_kind})" if lost else "")
        + f"; {stats['close_requests_lost_to_ttl']} close requests lost to the TTL"
    )
    for fault in stats.get("primary_faults", ()):
        details = ", ".join(f"{name} {value}" for name, value in fault.items() if name not in ("t", "event"))
        print(f"  t={fault['t']:.3f} {fault['event']}: {details}")
    for check in result.checks:
        mark = {"holds": "ok  ", "violated": "FAIL", "unknown": "??  "}[check.status]
        expected = " (expected)" if check.violations and all(v.expected for v in check.violations) else ""
        print(f"  {mark} {check.name}: {check.summary}{expected}")
        for violation in check.violations[:3]:
            print(f"         [{violation.attribution}] {violation.message}")
            for index in sorted(set(violation.events))[:4]:
                event = result.history.event(index, result.history.events[index])
                where = event["key"] or ""
                line = f"#{index} t={event['time']} {event['node']} {event['type']} {event['f']} {where}"
                print(f"           {line}".rstrip())
        if len(check.violations) > 3:
            print(f"         ... and {len(check.violations) - 3} more")
    for name, met in result.coverage:
        print(f"  {'met ' if met else 'MISS'} coverage: {name}")
    for note in result.notes:
        print(f"  note: {note}")
    print(f"verdict: {result.verdict}   trace hash: {result.trace_hash}")
    print(f"reproduce: {result.reproduce}")


def _explore(options: argparse.Namespace) -> int:
    from sessionkv.sim.explore import explore

    if options.backend in REAL_BACKENDS:
        raise _UsageError(
            f"explore needs an in-process backend (memory or fakeredis): {options.backend} is not reproducible"
        )
    jobs = options.jobs or os.cpu_count() or 1
    seeds = list(range(options.first_seed, options.first_seed + options.seeds))
    with _progress(f"explore {options.scenario} ({options.policy})", len(seeds)) as progress:
        found = explore(
            options.scenario,
            seeds,
            policy=options.policy,
            backend=options.backend,
            nodes=options.nodes,
            sessions=options.sessions,
            duration=options.duration,
            jobs=jobs,
            progress=progress,
        )
    if found is None:
        print(f"explore: {len(seeds)} seed(s) of {options.scenario} under {options.policy}: no violation")
        return 0
    path = options.schedule_out or f"sim-schedule-{Path(options.scenario).stem}-seed{found.seed}.json"
    Path(path).write_text(json.dumps([a.to_json() for a in found.schedule], indent=1) + "\n", encoding="utf-8")
    print(f"explore: seed {found.seed} violates {', '.join(found.violated)} (after {found.tried} seed(s))")
    print(f"shrunk the timeline from {len(found.original)} to {len(found.schedule)} action(s) in {found.runs} runs:")
    for action in found.schedule:
        print(f"  {json.dumps(action.to_json())}")
    print(f"schedule written to {path}")
    print(f"reproduce: {found.reproduce(path)}")
    return 1
