"""Exploration: many seeds of one scenario, the first that violates an invariant, and its timeline shrunk.

Seeds run in worker processes but results are taken in seed order, so the seed reported is the smallest violating
one whatever the number of workers. Shrinking keeps that seed and edits the timeline only: it drops chunks of actions
then single actions (delta debugging), then halves fault durations, keeping each edit while the run still violates
one of the invariants the original run violated. Every step is a deterministic run, so the result is reproducible
with ``sessionkv sim run ... --seed S --schedule PATH``.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from sessionkv.sim.model import Action, Parameters, build
from sessionkv.sim.result import reproduce_command, run_built

__all__ = ["Found", "explore", "shrink"]


@dataclasses.dataclass(slots=True)
class Found:
    """The first violating seed, what it violated, and the shrunk timeline."""

    scenario: str
    policy: str
    backend: str
    params: Parameters
    seed: int
    violated: list[str]
    tried: int
    original: list[Action]
    schedule: list[Action]
    runs: int

    def reproduce(self, schedule_path: str | None) -> str:
        return reproduce_command(self.scenario, self.backend, self.policy, self.params, schedule_path)


def _violations(
    scenario_name: str, policy: str, backend: str, params: Parameters, actions: Sequence[Action] | None
) -> list[str]:
    scenario = build(scenario_name, params)
    if actions is not None:
        scenario = scenario.with_actions(actions)
    result = run_built(scenario, scenario_name, policy=policy, backend=backend, params=params)
    return sorted({v.invariant for check in result.checks for v in check.violations if not v.expected})


def _try_seed(job: tuple[str, str, str, Parameters]) -> tuple[int, list[str]]:
    scenario_name, policy, backend, params = job
    return params.seed, _violations(scenario_name, policy, backend, params, None)


def explore(
    scenario: str,
    seeds: Sequence[int],
    *,
    policy: str = "hardened",
    backend: str = "memory",
    nodes: int | None = None,
    sessions: int | None = None,
    duration: float | None = None,
    jobs: int = 1,
    progress: Callable[[float], None] | None = None,
) -> Found | None:
    """Run ``seeds`` in order (``jobs`` worker processes); return the first violation, shrunk, or ``None``."""
    jobs_list = [
        (scenario, policy, backend, Parameters(seed=seed, nodes=nodes, sessions=sessions, duration=duration))
        for seed in seeds
    ]
    hit: tuple[int, list[str]] | None = None
    tried = 0
    if jobs <= 1:
        for job in jobs_list:
            tried += 1
            seed, violated = _try_seed(job)
            if progress is not None:
                progress(tried)
            if violated:
                hit = (seed, violated)
                break
    else:
        context: Any = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            for seed, violated in pool.map(_try_seed, jobs_list, chunksize=1):
                tried += 1
                if progress is not None:
                    progress(tried)
                if violated:
                    hit = (seed, violated)
                    break
            pool.shutdown(wait=True, cancel_futures=True)
    if hit is None:
        return None
    seed, violated = hit
    params = Parameters(seed=seed, nodes=nodes, sessions=sessions, duration=duration)
    original = build(scenario, params).timeline()
    schedule, runs = shrink(scenario, policy, backend, params, original, set(violated))
    return Found(scenario, policy, backend, params, seed, violated, tried, original, schedule, runs)


def shrink(
    scenario: str, policy: str, backend: str, params: Parameters, actions: list[Action], targets: set[str]
) -> tuple[list[Action], int]:
    """The smallest timeline found that still violates one of ``targets``, and the number of runs it took."""
    runs = 0

    def fails(candidate: list[Action]) -> bool:
        nonlocal runs
        runs += 1
        return bool(targets & set(_violations(scenario, policy, backend, params, candidate)))

    current = list(actions)
    chunk = max(1, len(current) // 2)
    while current:
        index, removed = 0, False
        while index < len(current):
            candidate = current[:index] + current[index + chunk :]
            if candidate != current and fails(candidate):
                current, removed = candidate, True
            else:
                index += chunk
        if chunk == 1 and not removed:
            break
        chunk = max(1, chunk // 2) if not removed else chunk
    for position, action in enumerate(current):
        if action.duration is None:
            continue
        for _ in range(6):
            assert action.duration is not None
            shorter = dataclasses.replace(action, duration=round(action.duration / 2, 6))
            candidate = [*current[:position], shorter, *current[position + 1 :]]
            if not fails(candidate):
                break
            current, action = candidate, shorter
    return current, runs
