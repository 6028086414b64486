"""Benchmark the simulation engine: simulated seconds per wall second of the ``steady`` scenario.

The workload of issue 12: ``steady`` with 10 nodes and 100 sessions per node (1,000 sessions), 5 s maintenance
interval, 30 s TTL (the scenario's defaults), one simulated hour, on the ``memory`` and ``fakeredis`` backends, under
both policies. The baseline is real time itself: the speed-up is simulated seconds / wall seconds of the same run
(goal: at least 1000x on memory with the default policy, ``hardened``). The engine is single-threaded, so the same
figure per CPU second of the process is printed too: on a loaded machine it is the one to compare between runs.
With ``--repeat N`` each configuration runs N times and the first run (imports, warm caches) is reported apart from
the best and the worst.

    python benchmarks/bench_sim.py            # one simulated hour per configuration (minutes)
    python benchmarks/bench_sim.py --quick    # one simulated minute per configuration (CI smoke)
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

NODES = 10
SESSIONS_PER_NODE = 100
GOAL = 1000.0
"""Simulated seconds per wall second wanted on memory with the default policy."""

DEFAULT_POLICY = "hardened"


@dataclass
class Runs:
    backend: str
    policy: str
    simulated_s: float = 0.0
    walls_s: list[float] = field(default_factory=list)
    cpus_s: list[float] = field(default_factory=list)
    operations: int = 0
    verdict: str = "?"

    def speed(self, wall_s: float) -> float:
        return self.simulated_s / wall_s

    def line(self) -> str:
        first, best, worst = self.walls_s[0], min(self.walls_s), max(self.walls_s)
        return (
            f"  {self.backend:<10} {self.policy:<9} {self.verdict:<9} {self.operations:>10,} {first:>9.2f} "
            f"{self.speed(first):>9.0f}x {self.speed(best):>9.0f}x {self.speed(worst):>9.0f}x "
            f"{self.speed(min(self.cpus_s)):>9.0f}x {self.operations / best:>12,.0f}"
        )


def engine() -> tuple[Any, Any]:
    """``(run_scenario, Parameters)`` of the simulation engine, or exit naming what is missing."""
    try:
        sim = importlib.import_module("sessionkv.sim")
        return sim.run_scenario, sim.Parameters
    except (ImportError, AttributeError) as exc:
        sys.exit(f"bench_sim: this checkout has no simulation engine (sessionkv.sim.run_scenario): {exc}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one simulated minute per configuration")
    parser.add_argument("--duration", type=float, default=None, help="simulated seconds (default 3600; quick: 60)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per configuration (default 1)")
    parser.add_argument("--backends", default="memory,fakeredis", help="comma-separated (default memory,fakeredis)")
    parser.add_argument("--policies", default="hardened,faithful", help="comma-separated (default hardened,faithful)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat must be >= 1, got {args.repeat}")
    duration = args.duration or (60.0 if args.quick else 3600.0)
    run_scenario, parameters = engine()
    params = parameters(seed=args.seed, nodes=NODES, sessions=NODES * SESSIONS_PER_NODE, duration=duration)

    print(
        f"sessionkv sim: steady, {NODES} nodes x {SESSIONS_PER_NODE} sessions, {duration:g} simulated s, "
        f"seed {args.seed}; Python {sys.version.split()[0]}"
    )
    print("speed = simulated seconds per wall second (the baseline: real time, 1x)")
    print(
        f"  {'backend':<10} {'policy':<9} {'verdict':<9} {'store ops':>10} {'first s':>9} {'first':>10} "
        f"{'best':>10} {'worst':>10} {'best/CPU':>10} {'ops/wall s':>12}"
    )
    results: list[Runs] = []
    for backend in args.backends.split(","):
        for policy in args.policies.split(","):
            runs = Runs(backend, policy)
            for _ in range(args.repeat):
                began, began_cpu = time.perf_counter(), time.process_time()
                result = run_scenario("steady", policy=policy, backend=backend, params=params)
                runs.walls_s.append(time.perf_counter() - began)
                runs.cpus_s.append(time.process_time() - began_cpu)
                runs.simulated_s = float(result.stats["simulated_s"])
                runs.operations = int(result.stats["operations"])
                runs.verdict = str(result.verdict)
            results.append(runs)
            print(runs.line(), flush=True)
    for runs in results:
        if runs.backend == "memory" and runs.policy == DEFAULT_POLICY:
            speed, cpu_speed = runs.speed(min(runs.walls_s)), runs.speed(min(runs.cpus_s))
            status = "met" if speed >= GOAL else "NOT met"
            print(
                f"goal >= {GOAL:.0f}x on memory with the default policy ({DEFAULT_POLICY}): {speed:.0f}x wall "
                f"({cpu_speed:.0f}x per CPU second), {status}"
            )


if __name__ == "__main__":
    main()
