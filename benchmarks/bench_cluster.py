"""Benchmark ``RedisClusterSessionKVStore`` on a local Redis Cluster against ``RedisSessionKVStore`` on one Redis.

Usage: ``python benchmarks/bench_cluster.py [--keys 10000] [--background 100000] [--warmup 2] [--repeat 15] [--quick]``

Starts, in the same run, one redis-server (the baseline) and a 3-primary/3-replica cluster on loopback (same binary,
same machine; ``SESSIONKV_REDIS_EXEC=valkey-server`` for Valkey), fills every store with the same ``--background``
keys, and times on each: ``mset``, ``mget`` and ``expire`` of ``--keys`` keys, and ``keys(prefix)`` for a prefix
matching those keys. Stores: the single server; the cluster store sending batches per hash slot
(``per_node_batches=False``, the path before per-node scripts) and per primary (the default); the cluster store in the
hash-tag layout (every key in one slot). Per operation: the first call on each store (scripts flushed from the
cluster's nodes after the fill, so it includes loading them), ``--warmup`` untimed rounds, then ``--repeat`` timed
rounds that alternate the stores. Prints the first call, the best, the median, the middle half (25th-75th
percentile), the worst, and the ratios of the medians against the single server and the per-slot path (< 1: faster).
On one machine the cluster cannot win on throughput (its three primaries share the same cores); the figures show the
client's cost of sharding, not a scaling claim. ``--quick`` is a smoke run for CI.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis

from sessionkv import RedisClusterSessionKVStore, RedisSessionKVStore
from sessionkv.testing import RedisServer, find_redis_server, server_version
from sessionkv.testing.topologies import RedisClusterTopology

LOAD_CHUNK = 10_000
SINGLE = "single Redis"
PER_SLOT = "cluster, per slot"
PER_NODE = "cluster, per node"
HASH_TAG = "cluster, hash tag"


async def _fill(store: Any, count: int, prefix: str) -> None:
    for start in range(0, count, LOAD_CHUNK):
        await store.mset([(f"{prefix}{i}", b"x" * 64, 3600) for i in range(start, min(count, start + LOAD_CHUNK))])


async def _once(call: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await call()
    return time.perf_counter() - started


def _flush_scripts(cluster: RedisClusterTopology) -> None:
    """Scripts and command statistics cleared on every node: the first calls below load the scripts."""
    for server in cluster.servers:
        client = redis.Redis(host=server.host, port=server.port)
        try:
            client.script_flush()
            client.config_resetstat()
        finally:
            client.close()


def _script_server_ms(cluster: RedisClusterTopology) -> list[float]:
    """Mean server time of one EVALSHA on each primary (INFO commandstats): how long a per-node script holds it."""
    times = []
    for server in cluster.primaries():
        client = redis.Redis(host=server.host, port=server.port)
        try:
            stats = client.info("commandstats").get("cmdstat_evalsha", {})
        finally:
            client.close()
        times.append(float(stats.get("usec_per_call", 0.0)) / 1000)
    return times


def _quartiles(rows: list[float]) -> tuple[float, float]:
    if len(rows) < 2:
        return rows[0], rows[0]
    cuts = statistics.quantiles(rows, n=4, method="inclusive")
    return cuts[0], cuts[2]


async def run(keys: int, background: int, warmup: int, repeat: int) -> None:
    with RedisServer() as server, RedisClusterTopology() as cluster:
        print(
            f"{server_version(find_redis_server())}; cluster started in {cluster.startup_seconds:.2f} s "
            "(3 primaries, 3 replicas, node timeout 500 ms)"
        )
        nodes = cluster.startup_nodes
        stores: dict[str, Any] = {
            SINGLE: RedisSessionKVStore(url=server.url, key_prefix="bench:"),
            PER_SLOT: RedisClusterSessionKVStore(startup_nodes=nodes, key_prefix="slot:", per_node_batches=False),
            PER_NODE: RedisClusterSessionKVStore(startup_nodes=nodes, key_prefix="node:"),
            HASH_TAG: RedisClusterSessionKVStore(startup_nodes=nodes, key_prefix="tag:", hash_tag="t"),
        }
        for store in stores.values():
            await store.start()
            await _fill(store, background, "background/")
        _flush_scripts(cluster)
        print(
            f"each store holds {background} background keys; batches of {keys} keys; per operation: first call, "
            f"{warmup} warm-up rounds, {repeat} timed rounds alternating the stores"
        )

        items = [(f"batch/{i:06d}", i.to_bytes(8, "big"), 3600) for i in range(keys)]
        names = [k for k, _, _ in items]
        operations: dict[str, Callable[[Any], Awaitable[object]]] = {
            f"mset {keys}": lambda store: store.mset(items),
            f"mget {keys}": lambda store: store.mget(names),
            f"expire {keys}": lambda store: store.expire(*names, ttl=3600),
            f"keys(prefix) -> {keys}": lambda store: store.keys("batch/"),
        }
        samples: dict[tuple[str, str], list[float]] = {(op, name): [] for op in operations for name in stores}
        first: dict[tuple[str, str], float] = {}
        for op, call in operations.items():
            for name, store in stores.items():
                first[(op, name)] = await _once(functools.partial(call, store))
            for _ in range(warmup):
                for store in stores.values():
                    await call(store)
            for _ in range(repeat):
                for name, store in stores.items():  # alternate the variants round by round
                    samples[(op, name)].append(await _once(functools.partial(call, store)))
        held = _script_server_ms(cluster)
        assert await stores[PER_NODE].mget(names) == await stores[PER_SLOT].mget(names) == [v for _, v, _ in items]
        for store in stores.values():
            await store.close()

    print(
        f"\n{'operation':<22} {'store':<18} {'first':>8} {'best':>8} {'median':>8} {'middle half':>15} "
        f"{'worst':>8} {'vs single':>9} {'vs per slot':>11}"
    )
    for op in operations:
        single = statistics.median(samples[(op, SINGLE)])
        per_slot = statistics.median(samples[(op, PER_SLOT)])
        for name in stores:
            rows = samples[(op, name)]
            median = statistics.median(rows)
            low, high = _quartiles(rows)
            versus_slot = f"{median / per_slot:10.2f}x" if name != SINGLE else f"{'':>11}"
            print(
                f"{op:<22} {name:<18} {first[(op, name)] * 1e3:6.1f}ms {min(rows) * 1e3:6.1f}ms "
                f"{median * 1e3:6.1f}ms {low * 1e3:6.1f}-{high * 1e3:6.1f}ms {max(rows) * 1e3:6.1f}ms "
                f"{median / single:8.2f}x {versus_slot}"
            )
    print(
        "\nserver time of one per-node script (mean of the EVALSHAs timed above, INFO commandstats), per primary: "
        + ", ".join(f"{ms:.1f} ms" for ms in held)
        + f" (each primary holds about a third of the {keys} keys and of the {background} background keys)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--keys", type=int, default=10_000, help="keys per batch (default 10000)")
    parser.add_argument("--background", type=int, default=100_000, help="other keys stored (default 100000)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds per operation (default 2)")
    parser.add_argument("--repeat", type=int, default=15, help="timed rounds per operation (default 15)")
    parser.add_argument("--quick", action="store_true", help="a few-second smoke run")
    args = parser.parse_args()
    if args.quick:
        args.keys, args.background, args.warmup, args.repeat = 1000, 1000, 1, 2
    asyncio.run(run(args.keys, args.background, args.warmup, args.repeat))


if __name__ == "__main__":
    main()
