"""Benchmark ``RedisSessionKVStore`` on Redis and on Valkey, each a real server this script starts and stops.

Usage: ``python benchmarks/bench_redis_store.py [--servers redis-server,valkey-server] [--keys 200000] [--quick]
[--parts ops,keys,sweep] [--seed 0]``

For each server (by default the ``redis-server`` on PATH and the ``valkey-server`` bundled with the testing extra; a
server that cannot be found is reported and skipped), in one run:

* **operations** — set/get/mget/mset/expire/delete through our store in SCAN mode and indexed mode, against the
  baseline of plain redis-py issuing the same commands (no validation, no error mapping). The three variants are
  interleaved call by call (a different one first each round), after a warm-up; each row gives the median, the
  first timed call, the p99 and the worst call. Every ``delete`` deletes keys that exist: the batch is written again,
  untimed, before each timed delete.
* **keys(prefix)** for a prefix matching 10 keys at each stored-key count, for three listers: the baseline (SCAN MATCH
  with COUNT 100 and an unescaped pattern, as vision-agents' store does), our SCAN mode and our indexed mode. The
  listers alternate round by round (rotating which goes first), after one warm-up call each; each row gives the median,
  min and max of the rounds and the speed-up over the baseline as the median and the *lowest* of the per-round ratios
  (baseline time / lister time in the same round). Each answer is checked: a fast wrong answer is not a result. Then
  the time the server itself spent inside SCAN for one SCAN-mode call (INFO commandstats): a floor no COUNT removes.
* **scan_count sweep** at the largest key count — ``keys(prefix)`` for COUNT 100…20000, all counts shuffled into a
  random order (``--seed``) and the whole sweep repeated, so drift and caching do not favour one count.

What it shows (2-core machine, 200k keys; the figures are printed by the run, not asserted): SCAN walks the whole
keyspace whatever the COUNT, so the cost of a SCAN-mode listing is round trips (dbsize / COUNT) plus the server's
per-key scan work. Valkey includes redis/redis#12209 (MATCH is checked inside the scan callback, before a reply
object is built), Redis 7.0 does not, so the per-key floor is much lower on Valkey and a large COUNT gains more there.
The indexed mode answers from a sorted-set index in time proportional to the matches, on both servers.

``--quick`` is a smoke run of a few seconds per server (small key counts, few repetitions) for CI.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from sessionkv import RedisSessionKVStore
from sessionkv.testing import RedisServer, RedisServerError, server_version

PREFIX = "vision_agents:"
BATCH = 100
LOAD_CHUNK = 10_000
SCAN_COUNTS = (100, 500, 1000, 2000, 5000, 20000)
BASELINE_COUNT = 100
PARTS = ("ops", "keys", "sweep")

Call = Callable[[], Awaitable[object]]


def _session_key(i: int) -> str:
    return f"sessions/call{i // 10}/s{i % 10}"  # 10 sessions per call


@dataclass
class Variant:
    """One of the compared implementations of an operation: ``call`` is timed, ``prepare`` (untimed) runs before."""

    name: str
    call: Call
    prepare: Call | None = None


async def interleaved(variants: Sequence[Variant], rounds: int, warmup: int) -> dict[str, list[float]]:
    """Latencies in seconds of ``rounds`` calls of each variant, alternating: round ``r`` starts with variant
    ``r % len(variants)``. ``warmup`` untimed rounds first. The first timed call of each variant is ``samples[0]``."""
    samples: dict[str, list[float]] = {variant.name: [] for variant in variants}
    for r in range(warmup + rounds):
        shift = r % len(variants)
        for variant in [*variants[shift:], *variants[:shift]]:
            if variant.prepare is not None:
                await variant.prepare()
            start = time.perf_counter()
            await variant.call()
            elapsed = time.perf_counter() - start
            if r >= warmup:
                samples[variant.name].append(elapsed)
    return samples


def _quantile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:8.3f}"


# -- operations ---------------------------------------------------------------------------------------------------


def _raw_variant(client: aioredis.Redis, op: str) -> Variant:
    """Plain redis-py issuing the commands our store issues for ``op``, on keys of its own prefix."""
    counter = iter(range(10**12))
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

    calls: dict[str, tuple[Call, Call | None]] = {
        "set": (lambda: client.set(f"bench-raw:single/{next(counter) % 1000}", value, px=60_000), None),
        "get": (lambda: client.get(f"bench-raw:single/{next(counter) % 1000}"), None),
        "mset": (mset, None),
        "mget": (lambda: client.mget(batch), None),
        "expire": (expire, None),
        "delete": (lambda: client.unlink(*batch), mset),
    }
    call, prepare = calls[op]
    return Variant("redis-py (baseline)", call, prepare)


def _store_variant(store: RedisSessionKVStore, name: str, op: str) -> Variant:
    counter = iter(range(10**12))
    batch = [f"batch/{i}" for i in range(BATCH)]
    value = b"x" * 200
    items = [(key, value, 60.0) for key in batch]
    calls: dict[str, tuple[Call, Call | None]] = {
        "set": (lambda: store.set(f"single/{next(counter) % 1000}", value, 60), None),
        "get": (lambda: store.get(f"single/{next(counter) % 1000}"), None),
        "mset": (lambda: store.mset(items), None),
        "mget": (lambda: store.mget(batch), None),
        "expire": (lambda: store.expire(*batch, ttl=60), None),
        "delete": (lambda: store.delete(batch), lambda: store.mset(items)),
    }
    call, prepare = calls[op]
    return Variant(name, call, prepare)


async def bench_operations(client: aioredis.Redis, rounds: int, warmup: int) -> None:
    print(
        f"\n  operations: 200-byte values, batches of {BATCH} keys; {rounds} rounds after {warmup} warm-up, interleaved"
    )
    print(f"    {'':<8} {'variant':<22} {'calls/s':>9} {'median ms':>9} {'first ms':>9} {'p99 ms':>9} {'worst ms':>9}")
    scan = RedisSessionKVStore(client=client, key_prefix="bench-ops-scan:")
    indexed = RedisSessionKVStore(client=client, key_prefix="bench-ops-idx:", indexed=True)
    # in this order, each read finds the keys the writes before it left (same key sequence, as many rounds)
    for op in ("set", "get", "mset", "mget", "expire", "delete"):
        variants = [
            _raw_variant(client, op),
            _store_variant(scan, "sessionkv scan mode", op),
            _store_variant(indexed, "sessionkv indexed mode", op),
        ]
        samples = await interleaved(variants, rounds, warmup)
        for name, timed in samples.items():
            print(
                f"    {op:<8} {name:<22} {len(timed) / sum(timed):9.0f} {_ms(statistics.median(timed)):>9} "
                f"{_ms(timed[0]):>9} {_ms(_quantile(timed, 0.99)):>9} {_ms(max(timed)):>9}"
            )
    await client.flushdb()


# -- keys(prefix) -------------------------------------------------------------------------------------------------


async def baseline_keys(client: aioredis.Redis, prefix: str) -> list[str]:
    """What vision-agents' store does: SCAN MATCH <key_prefix><prefix>* COUNT 100, glob characters unescaped."""
    found = []
    async for raw in client.scan_iter(match=f"{PREFIX}{prefix}*", count=BASELINE_COUNT):
        found.append(raw.decode()[len(PREFIX) :])
    return found


def _checked(call: Callable[[], Awaitable[list[str]]], expected: list[str], name: str) -> Call:
    async def run() -> None:
        listed = await call()
        assert sorted(listed) == expected, (name, listed)  # a fast wrong answer is not a result

    return run


async def bench_keys(client: aioredis.Redis, sizes: list[int], rounds: int) -> dict[int, dict[str, list[float]]]:
    scan_store = RedisSessionKVStore(client=client, key_prefix=PREFIX, operation_timeout=60)
    indexed_store = RedisSessionKVStore(client=client, key_prefix=PREFIX, indexed=True, operation_timeout=60)
    print(f"\n  keys(prefix) matching 10 keys; {rounds} rounds after 1 warm-up, listers alternating")
    print(
        f"    {'keys':>7} {'lister':<26} {'median ms':>9} {'min ms':>9} {'max ms':>9} "
        f"{'speed-up (median, lowest round)':>32}"
    )
    results: dict[int, dict[str, list[float]]] = {}
    loaded = 0
    for size in sizes:
        while loaded < size:  # the indexed store writes both the data keys and its index
            upto = min(size, loaded + LOAD_CHUNK)
            await indexed_store.mset([(_session_key(i), b"{}", 3600) for i in range(loaded, upto)])
            loaded = upto
        prefix = f"sessions/call{size // 20}/"
        expected = sorted(f"{prefix}s{i}" for i in range(10))
        variants = [
            Variant(
                f"baseline SCAN COUNT {BASELINE_COUNT}",
                _checked(functools.partial(baseline_keys, client, prefix), expected, "baseline"),
            ),
            Variant(
                f"SCAN mode (COUNT {scan_store.scan_count})",
                _checked(functools.partial(scan_store.keys, prefix), expected, "scan"),
            ),
            Variant("indexed mode", _checked(functools.partial(indexed_store.keys, prefix), expected, "indexed")),
        ]
        samples = await interleaved(variants, rounds, warmup=1)
        results[size] = samples
        base = samples[variants[0].name]
        for name, timed in samples.items():
            ratios = [b / t for b, t in zip(base, timed, strict=True)]
            speedup = "" if timed is base else f"x{statistics.median(ratios):7.1f}   (lowest x{min(ratios):.1f})"
            print(
                f"    {size:>7} {name:<26} {_ms(statistics.median(timed)):>9} {_ms(min(timed)):>9} "
                f"{_ms(max(timed)):>9}   {speedup}"
            )
        floor = await _server_scan_ms(client, functools.partial(scan_store.keys, prefix))
        print(f"    {size:>7} (server time inside SCAN for one SCAN-mode call: {floor:.3f} ms)")
    return results


async def _server_scan_ms(client: aioredis.Redis, call: Call) -> float:
    """Milliseconds the server spent executing SCAN during ``call`` (INFO commandstats)."""
    await client.config_resetstat()
    await call()
    stats = await client.info("commandstats")
    return float(stats["cmdstat_scan"]["usec"]) / 1e3


async def bench_scan_count(client: aioredis.Redis, repeats: int, seed: int) -> None:
    size = await client.dbsize()
    rng = random.Random(seed)
    samples: dict[int, list[float]] = {count: [] for count in SCAN_COUNTS}
    stores = {
        count: RedisSessionKVStore(client=client, key_prefix=PREFIX, scan_count=count, operation_timeout=60)
        for count in SCAN_COUNTS
    }
    for count in SCAN_COUNTS:  # warm-up, untimed
        await stores[count].keys("sessions/call1/")
    for _ in range(repeats):
        order = list(SCAN_COUNTS)
        rng.shuffle(order)
        for count in order:
            start = time.perf_counter()
            await stores[count].keys("sessions/call1/")
            samples[count].append(time.perf_counter() - start)
    print(f"\n  SCAN page size at {size} keys: keys(prefix), {repeats} sweeps in random order (seed {seed})")
    base = statistics.median(samples[BASELINE_COUNT])
    for count in SCAN_COUNTS:
        timed = samples[count]
        print(
            f"    scan_count={count:<6} median {_ms(statistics.median(timed))} ms   min {_ms(min(timed))} ms"
            f"   max {_ms(max(timed))} ms   x{base / statistics.median(timed):5.1f} vs COUNT {BASELINE_COUNT}"
        )


# -- main ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    sizes: list[int]
    op_rounds: int
    op_warmup: int
    key_rounds: int
    sweep_repeats: int
    parts: tuple[str, ...] = PARTS


async def bench_server(executable: str, plan: Plan, seed: int) -> None:
    with RedisServer(executable=executable) as server:
        print(f"\n== {server_version(server.executable)} ({server.executable}) on {server.url}")
        client = aioredis.Redis(host=server.host, port=server.port)
        try:
            if "ops" in plan.parts:
                await bench_operations(client, plan.op_rounds, plan.op_warmup)
            if "keys" in plan.parts:
                await bench_keys(client, plan.sizes, plan.key_rounds)
            if "sweep" in plan.parts:
                await bench_scan_count(client, plan.sweep_repeats, seed)
        finally:
            await client.aclose()


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--servers", default="redis-server,valkey-server", help="comma-separated server binaries")
    parser.add_argument("--keys", type=int, default=200_000, help="largest number of stored keys (default 200000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the scan_count sweep order")
    parser.add_argument("--quick", action="store_true", help="a few-second smoke run per server")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {','.join(PARTS)} (default all)")
    args = parser.parse_args(argv)
    parts = tuple(part.strip() for part in args.parts.split(",") if part.strip())
    if not parts or set(parts) - set(PARTS):
        parser.error(f"--parts: choose from {','.join(PARTS)}, got {args.parts!r}")
    if args.quick:
        plan = Plan(sizes=[1_000, 5_000], op_rounds=30, op_warmup=5, key_rounds=3, sweep_repeats=2, parts=parts)
    else:
        sizes = sorted({min(n, args.keys) for n in (10_000, 100_000, 200_000)} | {args.keys})
        plan = Plan(sizes=sizes, op_rounds=500, op_warmup=50, key_rounds=9, sweep_repeats=5, parts=parts)
    print(f"python {sys.version.split()[0]}; {plan}")
    ran = 0
    for executable in [name.strip() for name in args.servers.split(",") if name.strip()]:
        try:
            await bench_server(executable, plan, args.seed)
            ran += 1
        except RedisServerError as exc:
            print(f"\n== {executable}: skipped ({exc})")
    if not ran:
        raise SystemExit("no server could be started")


if __name__ == "__main__":
    asyncio.run(main())
