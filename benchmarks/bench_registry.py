"""Benchmark ``SessionRegistry``'s hot path against baselines measured in the same run.

Operations (what a node does every maintenance cycle, and what the per-call limit check reads):

* ``register``; ``update_metrics`` (the heartbeat: a ``get`` and a conditional ``set``), both on records whose bytes
  this process has seen (the steady state) and on records it has never seen (``cold``: written by another process,
  e.g. after a restart or by a vision-agents node); ``get_close_requests`` for 100 sessions; ``get_for_call`` of a
  call with 10 sessions.

Implementations, all over an in-memory store on the system clock, interleaved round by round so that background
load hurts each alike:

* ``sessionkv``: our registry over our ``InMemorySessionKVStore``;
* ``store calls``: only the store calls that operation makes, with arguments prepared in advance: what any registry
  over this store must pay; the difference is the registry's own cost (validation, keys, JSON);
* ``vision-agents``: vision-agents' own ``SessionRegistry`` over its ``InMemorySessionKVStore``, heartbeating the
  real ``AgentMetrics``, when it can be imported: installed (run this script with the Python of an environment that
  has ``vision-agents``), or from a source tree given with ``--vision-agents-src`` if that tree's modules import
  without the package's heavy dependencies. Otherwise the line says why it is missing. With it comes
  ``sessionkv, AgentMetrics``: ours heartbeating that same object (the plain ``sessionkv`` rows heartbeat a ``dict``
  of the same values), so that the heartbeat rows compare like with like.

Every figure is per call, in microseconds: median, p99, the worst call, and the first call (the first call of the
operation in this process: cold caches, first-time code paths).

    python benchmarks/bench_registry.py            # ~20k calls per operation and implementation
    python benchmarks/bench_registry.py --quick    # a few seconds (CI smoke)
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import json
import statistics
import sys
import time
import types
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sessionkv import InMemorySessionKVStore, SessionRegistry

Op = Callable[[int], Awaitable[object]]
"""One measured call; takes the iteration number."""

CALLS = 10
"""Sessions per call in the fixture: ``get_for_call`` returns this many."""

SESSIONS = 1_000
"""Sessions registered before measuring (a node's worth, or ten)."""

BATCH = 100
"""Sessions per ``get_close_requests`` call."""

METRICS = {"llm_input_tokens__total": 1200, "llm_latency_ms__avg": 412.5, "tts_latency_ms__avg": None}


def session(i: int) -> tuple[str, str]:
    """(call_id, session_id) of the ``i``-th session: ten sessions per call."""
    return f"call-{i // CALLS:05d}", f"0b7c5f8e-2d5a-4b8e-9b1c-{i:012d}"


@dataclass
class Samples:
    first_ns: int = 0
    calls_ns: list[int] = field(default_factory=list)

    def median_ns(self) -> float:
        return statistics.median(self.calls_ns)

    def line(self, what: str, reference: Samples | None) -> str:
        ordered = sorted(self.calls_ns)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        ratio = "" if reference is None else f"{self.median_ns() / reference.median_ns():.2f}x"
        return (
            f"  {what:<24} {self.median_ns() / 1e3:>10.2f} {p99 / 1e3:>10.2f} {ordered[-1] / 1e3:>10.1f} "
            f"{self.first_ns / 1e3:>10.1f} {ratio:>9}"
        )


@dataclass
class Implementation:
    """The measured operations of one implementation, plus untimed preparations some of them need per call."""

    setup: Callable[[], Awaitable[None]]
    ops: dict[str, Op]
    before: dict[str, Op] = field(default_factory=dict)


async def measure(impl: Implementation, name: str, samples: Samples, start: int, count: int) -> None:
    """Time ``count`` calls of one operation, each on its own (in-memory calls never really suspend); the first
    call of the run is reported apart from the others."""
    op, before = impl.ops[name], impl.before.get(name)
    clock = time.perf_counter_ns
    for i in range(start, start + count):
        if before is not None:
            await before(i)
        began = clock()
        await op(i)
        elapsed = clock() - began
        if i == 0:
            samples.first_ns = elapsed
        else:
            samples.calls_ns.append(elapsed)


# -- the implementations -------------------------------------------------------------------------------------------


def operations(register: Op, heartbeat: Op, close_requests: Op, for_call: Op) -> dict[str, Op]:
    """The measured operations by name; the cold heartbeat is the heartbeat after an untimed foreign write."""
    return {
        "register": register,
        "update_metrics": heartbeat,
        "update_metrics (cold)": heartbeat,
        "get_close_requests (100)": close_requests,
        "get_for_call (10)": for_call,
    }


def foreign_record(i: int) -> tuple[str, bytes]:
    """The key and bytes of session ``i``'s record as another process wrote it, different for every ``i`` (so this
    process has never seen these bytes): what a heartbeat reads after a restart or from a vision-agents node."""
    call_id, session_id = session(i % SESSIONS)
    data = {
        "session_id": session_id,
        "call_id": call_id,
        "node_id": "node-b",
        "started_at": 1_700_000_000.25 + i,
        "metrics_updated_at": 1_700_000_000.25 + i,
        "metrics": METRICS,
    }
    return f"sessions/{call_id}/{session_id}", json.dumps(data).encode()


def registry_operations(registry: Any, store: Any, metrics: object) -> Implementation:
    """The operations over a registry with vision-agents' API (ours or theirs) and its in-memory store."""

    async def setup() -> None:
        for i in range(SESSIONS):
            await registry.register(*session(i))

    async def register(i: int) -> object:
        return await registry.register(*session(i % SESSIONS))

    async def heartbeat(i: int) -> object:
        return await registry.update_metrics(*session(i % SESSIONS), metrics)

    async def write_foreign(i: int) -> None:
        await store.set(*foreign_record(i), 3600.0)

    batches = [dict(session(j)[::-1] for j in range(k, k + BATCH)) for k in range(0, SESSIONS, BATCH)]

    async def close_requests(i: int) -> object:
        return await registry.get_close_requests(batches[i % len(batches)])

    async def for_call(i: int) -> object:
        return await registry.get_for_call(session((i * CALLS) % SESSIONS)[0])

    return Implementation(
        setup, operations(register, heartbeat, close_requests, for_call), {"update_metrics (cold)": write_foreign}
    )


def ours(metrics: object = METRICS) -> Implementation:
    store = InMemorySessionKVStore()
    return registry_operations(SessionRegistry(store, node_id="node-a", ttl=3600.0), store, metrics)


def store_calls() -> Implementation:
    """The store calls each operation makes, arguments prepared in advance."""
    store = InMemorySessionKVStore()
    keys = [f"sessions/{c}/{s}" for c, s in map(session, range(SESSIONS))]
    record = foreign_record(0)[1]
    close_batches = [
        [f"close_requests/{c}/{s}" for c, s in map(session, range(k, k + BATCH))] for k in range(0, SESSIONS, BATCH)
    ]
    prefixes = [f"sessions/{session(k)[0]}/" for k in range(0, SESSIONS, CALLS)]

    async def setup() -> None:
        await store.mset([(key, record, 3600.0) for key in keys])

    async def register(i: int) -> None:
        await store.set(keys[i % SESSIONS], record, 3600.0)

    async def heartbeat(i: int) -> None:
        await store.get(keys[i % SESSIONS])
        await store.set(keys[i % SESSIONS], record, 3600.0, only_if_exists=True)

    async def close_requests(i: int) -> object:
        return await store.mget(close_batches[i % len(close_batches)])

    async def for_call(i: int) -> object:
        return await store.mget(sorted(await store.keys(prefixes[i % len(prefixes)])))

    return Implementation(setup, operations(register, heartbeat, close_requests, for_call))


def load_vision_agents(source: Path | None) -> tuple[types.ModuleType | None, str]:
    """vision-agents' ``session_registry`` package, or ``None`` and why not."""
    try:
        registry = importlib.import_module("vision_agents.core.agents.session_registry")
        return registry, f"installed {getattr(registry, '__file__', '?')}"
    except ImportError as exc:
        installed_error = f"not installed ({exc})"
    if source is None:
        return None, installed_error + "; --vision-agents-src not given"
    # Import only the modules the registry needs, skipping the package __init__ files that pull in the whole
    # framework (aiortc, ...): each parent package becomes an empty namespace over its real directory.
    for name in ("vision_agents", "vision_agents.core", "vision_agents.core.agents", "vision_agents.core.utils"):
        module = types.ModuleType(name)
        module.__path__ = [str(source / name.replace(".", "/"))]
        sys.modules[name] = module
    try:
        registry = importlib.import_module("vision_agents.core.agents.session_registry")
    except ImportError as exc:
        return None, f"{installed_error}; from {source}: {exc}"
    return registry, f"source tree {source}"


def agent_metrics() -> object:
    """vision-agents' real ``AgentMetrics`` holding ``METRICS`` (vision-agents must be importable)."""
    metrics_class: Any = importlib.import_module("vision_agents.core.observability.agent").AgentMetrics
    return metrics_class.from_dict(METRICS)


def vision_agents(package: types.ModuleType) -> Implementation:
    """Their registry over their in-memory store, heartbeating their real ``AgentMetrics``."""
    store = package.InMemorySessionKVStore()
    registry = package.SessionRegistry(store, node_id="node-a", ttl=3600.0)
    return registry_operations(registry, store, agent_metrics())


# -- the run -------------------------------------------------------------------------------------------------------


async def main_async(calls: int, rounds: int, source: Path | None) -> None:
    package, origin = load_vision_agents(source)
    implementations = {"sessionkv": ours(), "store calls": store_calls()}
    if package is not None:
        # the same AgentMetrics object through ours, so that the heartbeat rows compare like with like
        implementations["sessionkv, AgentMetrics"] = ours(agent_metrics())
        implementations["vision-agents"] = vision_agents(package)
    for implementation in implementations.values():
        await implementation.setup()
    operations = list(implementations["sessionkv"].ops)
    results = {(impl, name): Samples() for impl in implementations for name in operations}
    per_round = calls // rounds
    for round_ in range(rounds):
        for name in operations:
            for impl, implementation in implementations.items():
                heavy = name.startswith(("get_close", "get_for"))
                count = per_round // 10 if heavy else per_round
                gc.collect()
                await measure(implementation, name, results[impl, name], round_ * count, count)

    print(f"SessionRegistry per-call latency in microseconds, {calls:,} calls per operation, {rounds} rounds;")
    print(f"{SESSIONS} sessions registered, {CALLS} per call; Python {sys.version.split()[0]}")
    print(f"vision-agents: {origin if package is not None else 'not measured: ' + origin}")
    print("'vs' = the implementation's median / sessionkv's median (above 1: sessionkv is faster)")
    print(f"  {'':<24} {'median':>10} {'p99':>10} {'worst':>10} {'first':>10} {'vs':>9}")
    for name in operations:
        print(name)
        reference = results["sessionkv", name]
        for impl in implementations:
            own = results[impl, name]
            print(own.line(impl, None if impl == "sessionkv" else reference))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2,000 calls per operation in 2 rounds")
    parser.add_argument("--calls", type=int, default=None, help="calls per single-session operation (default 20000)")
    parser.add_argument(
        "--vision-agents-src",
        type=Path,
        default=None,
        help="a vision-agents source tree (the directory holding vision_agents/) to load the registry from when "
        "vision-agents is not installed",
    )
    args = parser.parse_args(argv)
    calls = args.calls or (2_000 if args.quick else 20_000)
    asyncio.run(main_async(calls, 2 if args.quick else 5, args.vision_agents_src))


if __name__ == "__main__":
    main()
