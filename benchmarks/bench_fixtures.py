"""What the pytest fixtures cost: redis-server start-up per session, and a fresh isolated namespace per test.

Per test, ``sessionkv_redis_store`` does what a plain test would do (open a client, talk to the server, close it)
plus isolation: a private key prefix, and deleting that prefix's keys afterwards (a SCAN of the keyspace plus UNLINK).
This script measures both in the same run against the same already running server, with the keyspace empty and with
other keys present (SCAN walks the whole keyspace, so its cost grows with it).

    python benchmarks/bench_fixtures.py           # 200 simulated tests per row
    python benchmarks/bench_fixtures.py --quick   # 30
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence

import redis.asyncio as aioredis

from pytest_sessionkv.redis import clear_namespace
from sessionkv import RedisSessionKVStore
from sessionkv.testing import RedisServer

WRITES_PER_TEST = 10


async def plain_test(url: str) -> None:
    """The baseline: a test with its own plain client, ten writes, no isolation."""
    client = aioredis.Redis.from_url(url)
    try:
        await client.ping()
        for i in range(WRITES_PER_TEST):
            await client.set(f"plain:{i}", b"v", px=60_000)
    finally:
        await client.aclose()


async def isolated_test(url: str) -> None:
    """What the ``sessionkv_redis_store`` fixture does around a test making the same ten writes."""
    client = aioredis.Redis.from_url(url)
    prefix = f"sessionkv-test:bench:{uuid.uuid4().hex[:12]}:"
    try:
        async with RedisSessionKVStore(client=client, key_prefix=prefix) as store:
            for i in range(WRITES_PER_TEST):
                await store.set(f"k{i}", b"v", 60.0)
        await clear_namespace(client, prefix)
    finally:
        await client.aclose()


async def median_ms(run: Callable[[str], Awaitable[None]], url: str, count: int) -> float:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        await run(url)
        samples.append((time.perf_counter() - started) * 1e3)
    return statistics.median(samples)


def server_start_ms(count: int) -> tuple[float, float]:
    """Median start-up (spawn until PING answers) and stop times of a RedisServer, in ms."""
    starts, stops = [], []
    for _ in range(count):
        server = RedisServer()
        started = time.perf_counter()
        server.start()
        starts.append((time.perf_counter() - started) * 1e3)
        started = time.perf_counter()
        server.stop()
        stops.append((time.perf_counter() - started) * 1e3)
    return statistics.median(starts), statistics.median(stops)


async def main_async(count: int) -> None:
    start_ms, stop_ms = server_start_ms(max(5, count // 20))
    print("session start-up of the redis-server fixture (spawn, wait for PING):")
    print(f"  start {start_ms:8.2f} ms   stop {stop_ms:8.2f} ms   (paid once per xdist worker)")
    print(f"per-test cost, {WRITES_PER_TEST} writes per test, median of {count} tests:")
    print(f"  {'other keys in db':>16} {'plain client':>14} {'isolated store':>15} {'isolation adds':>15} {'ratio':>7}")
    with RedisServer() as server:
        filler = aioredis.Redis.from_url(server.url)
        try:
            filled = 0
            for background in (0, 10_000, 100_000):
                while filled < background:
                    batch = min(10_000, background - filled)
                    await filler.mset({f"other:{filled + i}": b"x" for i in range(batch)})
                    filled += batch
                plain = await median_ms(plain_test, server.url, count)
                isolated = await median_ms(isolated_test, server.url, count)
                print(
                    f"  {background:>16,} {plain:>11.3f} ms {isolated:>12.3f} ms {isolated - plain:>12.3f} ms "
                    f"{isolated / plain:>6.2f}x"
                )
        finally:
            await filler.aclose()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="30 simulated tests per row instead of 200")
    args = parser.parse_args(argv)
    asyncio.run(main_async(30 if args.quick else 200))


if __name__ == "__main__":
    main()
