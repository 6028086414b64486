"""Benchmark ``RedisSessionKVStore`` against a real redis-server that this script starts and stops.

Usage: ``python benchmarks/bench_redis_store.py [--keys 200000] [--quick]``

Prints ops/s and median/p99 latency of set/get/mget/mset/expire/delete, then ``keys(prefix)`` for a prefix matching
10 keys at 10k/100k/200k stored keys for three listers, each measured in the same run: the baseline (SCAN MATCH with
COUNT 100 and an unescaped pattern, as the vision-agents store does), our default SCAN mode and our indexed mode, with
their speed-up over the baseline. Finally the SCAN page size (``scan_count``) sweep that justifies the default.
``--quick`` runs a few-second smoke version (small key counts, few repetitions) for CI.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from sessionkv import RedisSessionKVStore
from sessionkv.testing import RedisServer

PREFIX = "vision_agents:"
BATCH = 100
LOAD_CHUNK = 10_000


def _session_key(i: int) -> str:
    return f"sessions/call{i // 10}/s{i % 10}"  # 10 sessions per call


async def _timed(call: Callable[[], Awaitable[object]], repeat: int) -> list[float]:
    """Latencies in seconds of ``repeat`` sequential calls."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - start)
    return samples


def _p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def _row(name: str, samples: list[float], unit: str = "op") -> None:
    ops = len(samples) / sum(samples)
    print(
        f"  {name:<28} {ops:>10.0f} {unit}/s   median {statistics.median(samples) * 1e3:8.3f} ms"
        f"   p99 {_p99(samples) * 1e3:8.3f} ms"
    )


async def bench_operations(client: aioredis.Redis, repeat: int) -> None:
    print("\noperations, baseline: plain redis-py issuing the same commands (no validation, no error mapping)")
    await _bench_raw(client, repeat)
    await client.flushdb()
    for indexed in (False, True):
        mode = "indexed" if indexed else "scan"
        print(f"\noperations ({mode} mode; 200-byte values; batches of {BATCH} keys)")
        await _bench_mode(RedisSessionKVStore(client=client, key_prefix="bench-ops:", indexed=indexed), repeat)
        await client.flushdb()


async def _bench_mode(store: RedisSessionKVStore, repeat: int) -> None:
    counter = iter(range(10**9))
    batch = [f"batch/{i}" for i in range(BATCH)]
    value = b"x" * 200
    _row("set", await _timed(lambda: store.set(f"single/{next(counter) % 1000}", value, 60), repeat))
    _row("get", await _timed(lambda: store.get(f"single/{next(counter) % 1000}"), repeat))
    _row("mset", await _timed(lambda: store.mset([(k, value, 60) for k in batch]), repeat), "batch")
    _row("mget", await _timed(lambda: store.mget(batch), repeat), "batch")
    _row("expire", await _timed(lambda: store.expire(*batch, ttl=60), repeat), "batch")
    _row("delete", await _timed(lambda: store.delete(batch), repeat), "batch")


async def _bench_raw(client: aioredis.Redis, repeat: int) -> None:
    counter = iter(range(10**9))
    batch = [f"bench-raw:batch/{i}" for i in range(BATCH)]
    value = b"x" * 200

    async def mset() -> None:
        async with client.pipeline(transaction=True) as pipe:
            for key in batch:
                pipe.set(key, value, px=60_000)
            await pipe.execute()

    async def expire() -> None:
        async with client.pipeline(transaction=True) as pipe:
            for key in batch:
                pipe.pexpire(key, 60_000)
            await pipe.execute()

    _row("set", await _timed(lambda: client.set(f"bench-raw:single/{next(counter) % 1000}", value, px=60_000), repeat))
    _row("get", await _timed(lambda: client.get(f"bench-raw:single/{next(counter) % 1000}"), repeat))
    _row("mset", await _timed(mset, repeat), "batch")
    _row("mget", await _timed(lambda: client.mget(batch), repeat), "batch")
    _row("expire", await _timed(expire, repeat), "batch")
    _row("delete", await _timed(lambda: client.unlink(*batch), repeat), "batch")


async def baseline_keys(client: aioredis.Redis, prefix: str) -> list[str]:
    """What the vision-agents store does: SCAN MATCH <key_prefix><prefix>* COUNT 100, glob characters unescaped."""
    found = []
    async for raw in client.scan_iter(match=f"{PREFIX}{prefix}*", count=100):
        found.append(raw.decode()[len(PREFIX) :])
    return found


async def bench_keys(client: aioredis.Redis, sizes: list[int], repeat_scan: int, repeat_index: int) -> None:
    scan_store = RedisSessionKVStore(client=client, key_prefix=PREFIX, operation_timeout=60)
    indexed_store = RedisSessionKVStore(client=client, key_prefix=PREFIX, indexed=True, operation_timeout=60)
    print("\nkeys(prefix) matching 10 keys (median of repeated calls; speed-up = baseline median / median)")
    loaded = 0
    for size in sizes:
        while loaded < size:  # the indexed store writes both the data keys and its index
            upto = min(size, loaded + LOAD_CHUNK)
            await indexed_store.mset([(_session_key(i), b"{}", 3600) for i in range(loaded, upto)])
            loaded = upto
        prefix = f"sessions/call{size // 20}/"
        expected = sorted(f"{prefix}s{i}" for i in range(10))
        results: dict[str, list[float]] = {}
        listers: list[tuple[str, Callable[[], Awaitable[list[str]]], int]] = [
            ("baseline SCAN COUNT 100", functools.partial(baseline_keys, client, prefix), repeat_scan),
            (f"SCAN mode (COUNT {scan_store.scan_count})", functools.partial(scan_store.keys, prefix), repeat_scan),
            ("indexed mode", functools.partial(indexed_store.keys, prefix), repeat_index),
        ]
        for name, call, repeat in listers:
            listed = await call()
            assert sorted(listed) == expected, (name, listed)  # a fast wrong answer is not a result
            results[name] = await _timed(call, repeat)
        base = statistics.median(results["baseline SCAN COUNT 100"])
        print(f"  {size:>7} keys stored")
        for name, samples in results.items():
            median = statistics.median(samples)
            p99 = _p99(samples)
            print(f"    {name:<28} median {median * 1e3:9.3f} ms   p99 {p99 * 1e3:9.3f} ms   x{base / median:8.1f}")
        floor = await _server_scan_ms(client, functools.partial(scan_store.keys, prefix))
        print(f"    (server time inside SCAN for one SCAN-mode call: {floor:.3f} ms, a floor no COUNT removes)")


async def _server_scan_ms(client: aioredis.Redis, call: Callable[[], Awaitable[object]]) -> float:
    """Milliseconds the server spent executing SCAN during ``call`` (INFO commandstats)."""
    await client.config_resetstat()
    await call()
    stats = await client.info("commandstats")
    return float(stats["cmdstat_scan"]["usec"]) / 1e3


async def bench_scan_count(client: aioredis.Redis, repeat: int) -> None:
    size = await client.dbsize()
    print(f"\nSCAN page size at {size} keys (keys(prefix) median; COUNT also bounds one page's server time)")
    for count in (100, 500, 1000, 2000, 5000, 20000):
        store = RedisSessionKVStore(client=client, key_prefix=PREFIX, scan_count=count, operation_timeout=60)
        samples = await _timed(functools.partial(store.keys, "sessions/call1/"), repeat)
        print(f"    scan_count={count:<6} median {statistics.median(samples) * 1e3:9.3f} ms")


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--keys", type=int, default=200_000, help="largest number of stored keys (default 200000)")
    parser.add_argument("--quick", action="store_true", help="a few-second smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        sizes, repeat_ops, repeat_scan, repeat_index = [1_000, 5_000], 200, 3, 50
    else:
        sizes = sorted({min(n, args.keys) for n in (10_000, 100_000, 200_000)} | {args.keys})
        repeat_ops, repeat_scan, repeat_index = 2_000, 7, 500
    with RedisServer() as server:
        print(f"redis-server on {server.url}; python {sys.version.split()[0]}")
        client = aioredis.Redis(host=server.host, port=server.port)
        try:
            await bench_operations(client, repeat_ops)
            await bench_keys(client, sizes, repeat_scan, repeat_index)
            await bench_scan_count(client, repeat_scan)
        finally:
            await client.aclose()


if __name__ == "__main__":
    asyncio.run(main())
