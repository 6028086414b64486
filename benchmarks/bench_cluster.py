"""Benchmark ``RedisClusterSessionKVStore`` on a local Redis Cluster against ``RedisSessionKVStore`` on one Redis.

Usage: ``python benchmarks/bench_cluster.py [--keys 10000] [--background 100000] [--repeat 7] [--quick]``

Starts, in the same run, one redis-server (the baseline) and a 3-primary/3-replica cluster on loopback (same binary,
same machine), fills both with the same ``--background`` keys, then times on each, alternating baseline and cluster
rounds after one warm-up: ``mset`` and ``mget`` of ``--keys`` keys, and ``keys(prefix)`` for a prefix matching those
keys. Also the cluster store in the hash-tag layout (every key in one slot). Prints per operation the first call, the
median and the worst of the rounds, and the ratio cluster/baseline of the medians (> 1: the cluster is slower).
On one machine the cluster cannot win on throughput (its three primaries share the same cores); the figures show the
cost of slot grouping and of one round trip per primary, not a scaling claim. ``--quick`` is a smoke run for CI.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sessionkv import RedisSessionKVStore
from sessionkv.redis_cluster import RedisClusterSessionKVStore
from sessionkv.testing import RedisServer
from sessionkv.testing.topologies import RedisClusterTopology

LOAD_CHUNK = 10_000


async def _fill(store: Any, count: int, prefix: str) -> None:
    for start in range(0, count, LOAD_CHUNK):
        await store.mset([(f"{prefix}{i}", b"x" * 64, 3600) for i in range(start, min(count, start + LOAD_CHUNK))])


async def _once(call: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await call()
    return time.perf_counter() - started


async def run(keys: int, background: int, repeat: int) -> None:
    with RedisServer() as server, RedisClusterTopology() as cluster:
        print(f"cluster started in {cluster.startup_seconds:.2f} s (3 primaries, 3 replicas, node timeout 500 ms)")
        stores: dict[str, Any] = {
            "single Redis": RedisSessionKVStore(url=server.url, key_prefix="bench:"),
            "cluster": RedisClusterSessionKVStore(startup_nodes=cluster.startup_nodes, key_prefix="bench:"),
            "cluster, hash tag": RedisClusterSessionKVStore(
                startup_nodes=cluster.startup_nodes, key_prefix="benchtag:", hash_tag="t"
            ),
        }
        for store in stores.values():
            await store.start()
            await _fill(store, background, "background/")
        print(f"each store holds {background} background keys; batches of {keys} keys; {repeat} rounds after warm-up")

        items = [(f"batch/{i:06d}", i.to_bytes(8, "big"), 3600) for i in range(keys)]
        names = [k for k, _, _ in items]
        operations: dict[str, Callable[[Any], Awaitable[object]]] = {
            f"mset {keys}": lambda store: store.mset(items),
            f"mget {keys}": lambda store: store.mget(names),
            f"keys(prefix) -> {keys}": lambda store: store.keys("batch/"),
        }
        samples: dict[tuple[str, str], list[float]] = {(op, name): [] for op in operations for name in stores}
        first: dict[tuple[str, str], float] = {}
        for op, call in operations.items():
            for name, store in stores.items():
                first[(op, name)] = await _once(functools.partial(call, store))  # the warm-up, reported
            for _ in range(repeat):
                for name, store in stores.items():  # alternate the variants round by round
                    samples[(op, name)].append(await _once(functools.partial(call, store)))
        for store in stores.values():
            await store.close()

    print(f"\n{'operation':<26} {'store':<18} {'first':>9} {'median':>9} {'worst':>9} {'vs single':>10}")
    for op in operations:
        baseline = statistics.median(samples[(op, "single Redis")])
        for name in stores:
            rows = samples[(op, name)]
            median = statistics.median(rows)
            print(
                f"{op:<26} {name:<18} {first[(op, name)] * 1e3:7.1f}ms {median * 1e3:7.1f}ms "
                f"{max(rows) * 1e3:7.1f}ms {median / baseline:9.2f}x"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--keys", type=int, default=10_000, help="keys per mset/mget batch (default 10000)")
    parser.add_argument("--background", type=int, default=100_000, help="other keys stored (default 100000)")
    parser.add_argument("--repeat", type=int, default=7, help="timed rounds per operation (default 7)")
    parser.add_argument("--quick", action="store_true", help="a few-second smoke run")
    args = parser.parse_args()
    if args.quick:
        args.keys, args.background, args.repeat = 1000, 1000, 2
    asyncio.run(run(args.keys, args.background, args.repeat))


if __name__ == "__main__":
    main()
