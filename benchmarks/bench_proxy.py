"""Pass-through overhead of RedisFaultProxy with no fault installed, against the same redis-server directly.

Starts its own redis-server and proxy, then alternates direct and proxied rounds (so both see the same machine load):

- throughput: pipelined SET/GET pairs with redis.asyncio, commands per second (goal: proxied >= 50% of direct);
- latency: sequential GETs, median round trip, and the median added by the proxy (goal: <= 100 µs).

By default the proxy runs in its own process (``sessionkv.testing.faults.cli``), as it would from the CLI; ``--inline``
runs it in the benchmark's own event loop instead, where it competes with the client for one core.

    python benchmarks/bench_proxy.py            # full run, ~30 s
    python benchmarks/bench_proxy.py --quick    # CI smoke, a few seconds
    python benchmarks/bench_proxy.py --raw      # proxy without RESP framing (byte faults only, no transcript)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import redis.asyncio as aioredis

from sessionkv.testing import RedisServer
from sessionkv.testing.faults import RedisFaultProxy


@dataclass
class Settings:
    rounds: int
    pipeline_batches: int
    batch_pairs: int
    sequential_ops: int


FULL = Settings(rounds=5, pipeline_batches=200, batch_pairs=100, sequential_ops=3000)
QUICK = Settings(rounds=2, pipeline_batches=20, batch_pairs=100, sequential_ops=300)


async def pipelined_ops_per_s(client: aioredis.Redis, settings: Settings) -> float:
    value = b"v" * 64
    start = time.perf_counter()
    for batch in range(settings.pipeline_batches):
        async with client.pipeline(transaction=False) as pipe:
            for i in range(settings.batch_pairs):
                key = f"bench:{batch % 10}:{i}"
                pipe.set(key, value)
                pipe.get(key)
            await pipe.execute()
    elapsed = time.perf_counter() - start
    return settings.pipeline_batches * settings.batch_pairs * 2 / elapsed


async def sequential_latencies_us(client: aioredis.Redis, settings: Settings) -> list[float]:
    await client.set("bench:seq", b"x")
    samples = []
    for _ in range(settings.sequential_ops):
        start = time.perf_counter_ns()
        await client.get("bench:seq")
        samples.append((time.perf_counter_ns() - start) / 1000)
    return samples


@contextlib.asynccontextmanager
async def proxy_address(server: RedisServer, *, inline: bool, raw: bool) -> AsyncIterator[tuple[str, int]]:
    if inline:
        async with RedisFaultProxy(server.host, server.port, resp=not raw) as proxy:
            yield proxy.host, proxy.port
        return
    command = [sys.executable, "-m", "sessionkv.testing.faults.cli", "--upstream", f"{server.host}:{server.port}"]
    if raw:
        command.append("--raw")
    process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
    try:
        assert process.stdout is not None
        line = (await process.stdout.readline()).decode()  # "listening redis://HOST:PORT/0 -> ..."
        if not line.startswith("listening "):
            raise RuntimeError(f"proxy did not start: {line!r}")
        address = line.split()[1].removeprefix("redis://").rsplit("/", 1)[0]
        host, port = address.rsplit(":", 1)
        yield host, int(port)
    finally:
        process.terminate()
        await process.wait()


async def run(settings: Settings, *, inline: bool, raw: bool) -> int:
    with RedisServer() as server:
        async with proxy_address(server, inline=inline, raw=raw) as (proxy_host, proxy_port):
            direct = aioredis.Redis(host=server.host, port=server.port)
            proxied = aioredis.Redis(host=proxy_host, port=proxy_port)
            try:
                for client in (direct, proxied):  # warm up: connections made, code paths hot
                    await pipelined_ops_per_s(client, QUICK)
                    await sequential_latencies_us(client, QUICK)
                throughput: dict[str, list[float]] = {"direct": [], "proxy": []}
                latency: dict[str, list[float]] = {"direct": [], "proxy": []}
                for _ in range(settings.rounds):
                    for name, client in (("direct", direct), ("proxy", proxied)):
                        throughput[name].append(await pipelined_ops_per_s(client, settings))
                        latency[name].append(statistics.median(await sequential_latencies_us(client, settings)))
            finally:
                await direct.aclose()
                await proxied.aclose()
    mode = ("inline" if inline else "separate process") + (", raw (no RESP framing)" if raw else ", RESP framing")
    t_direct = statistics.median(throughput["direct"])
    t_proxy = statistics.median(throughput["proxy"])
    l_direct = statistics.median(latency["direct"])
    l_proxy = statistics.median(latency["proxy"])
    ratio = t_proxy / t_direct
    added = l_proxy - l_direct
    print(f"proxy: {mode}; medians of {settings.rounds} alternating rounds")
    print(
        f"pipelined SET/GET ({settings.batch_pairs * 2} commands per pipeline): direct {t_direct:,.0f} cmd/s, "
        f"proxy {t_proxy:,.0f} cmd/s = {ratio:.0%} of direct (goal >= 50%)"
    )
    print(
        f"sequential GET median round trip: direct {l_direct:.0f} µs, proxy {l_proxy:.0f} µs, "
        f"added {added:.0f} µs (goal <= 100 µs)"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few seconds, for CI smoke tests")
    parser.add_argument("--inline", action="store_true", help="run the proxy in the benchmark's own event loop")
    parser.add_argument("--raw", action="store_true", help="proxy without RESP framing")
    args = parser.parse_args(argv)
    return asyncio.run(run(QUICK if args.quick else FULL, inline=args.inline, raw=args.raw))


if __name__ == "__main__":
    sys.exit(main())
