"""Benchmark ``InMemorySessionKVStore`` against a naive dict-backed store measured in the same run.

The baseline is the straightforward design (one dict of ``key -> (value, deadline)``, ``keys(prefix)`` and the
periodic sweep walking every key), which is how vision-agents' in-memory store works. For each size it prints:

* ``get`` / ``set`` (new key, overwrite) / ``mget`` throughput, in operations per second;
* ``keys(prefix)`` latency for a prefix matching 10 keys (a call's sessions);
* the latency of one sweep when 1% of the keys have expired;
* memory per key (tracemalloc, values shared so only the store's own structures and the keys count).

Every figure comes with the ratio ours / baseline (for latencies: baseline / ours, so bigger is better for us), and
for the single-key operations also against ``naive+checks``: the baseline plus the argument validation every
sessionkv store performs, which separates what validation costs from what sessionkv's data structures cost.

    python benchmarks/bench_memory_store.py            # 10k, 100k and 1M keys (~1 minute)
    python benchmarks/bench_memory_store.py --quick    # 10k and 100k keys, fewer repetitions (a few seconds)
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from sessionkv import InMemorySessionKVStore
from sessionkv.store import check_key, check_keys, check_ttl_ns, check_value
from sessionkv.testing import VirtualClock


class NaiveStore:
    """The baseline: a dict of (value, deadline) with linear scans for keys() and the sweep."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.data: dict[str, tuple[bytes, float]] = {}

    async def set(self, key: str, value: bytes, ttl: float, *, only_if_exists: bool = False) -> None:
        now = self.clock.now()
        if only_if_exists:
            entry = self.data.get(key)
            if entry is None or entry[1] <= now:
                return
        self.data[key] = (value, now + ttl)

    async def mset(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        now = self.clock.now()
        for key, value, ttl in items:
            self.data[key] = (value, now + ttl)

    async def get(self, key: str) -> bytes | None:
        entry = self.data.get(key)
        if entry is None:
            return None
        if entry[1] <= self.clock.now():
            del self.data[key]
            return None
        return entry[0]

    async def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        now = self.clock.now()
        out: list[bytes | None] = []
        for key in keys:
            entry = self.data.get(key)
            out.append(entry[0] if entry is not None and entry[1] > now else None)
        return out

    async def keys(self, prefix: str) -> list[str]:
        now = self.clock.now()
        return [k for k, (_, deadline) in self.data.items() if k.startswith(prefix) and deadline > now]

    async def delete(self, keys: Sequence[str]) -> None:
        for key in keys:
            self.data.pop(key, None)

    def sweep(self) -> int:
        now = self.clock.now()
        expired = [k for k, (_, deadline) in self.data.items() if deadline <= now]
        for key in expired:
            del self.data[key]
        return len(expired)


class CheckedNaiveStore(NaiveStore):
    """The baseline plus the argument validation every sessionkv store performs: separates the cost of validation
    from the cost of sessionkv's data structures."""

    async def set(self, key: str, value: bytes, ttl: float, *, only_if_exists: bool = False) -> None:
        await super().set(check_key(key), check_value(value), check_ttl_ns(ttl) / 1e9, only_if_exists=only_if_exists)

    async def get(self, key: str) -> bytes | None:
        return await super().get(check_key(key))

    async def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        return await super().mget(check_keys(keys))


AnyStore = InMemorySessionKVStore | NaiveStore
VALUE = b'{"session_id": "s", "call_id": "c", "node_id": "n", "metrics": {}}'


def key_of(i: int) -> str:
    """Keys shaped like the registry's: ten sessions per call."""
    return f"sessions/call-{i // 10:07d}/session-{i:08d}"


async def fill(store: AnyStore, size: int) -> int:
    """Write ``size`` keys: 1% under ``expiring/`` with a 1 s TTL, the rest registry-shaped with 1 h. Returns the
    number of registry-shaped keys (``key_of(0)`` .. ``key_of(n - 1)``)."""
    expiring = size // 100
    normal = size - expiring
    chunk = 10_000
    for start in range(0, normal, chunk):
        await store.mset([(key_of(i), VALUE, 3600.0) for i in range(start, min(normal, start + chunk))])
    await store.mset([(f"expiring/{i:08d}", VALUE, 1.0) for i in range(expiring)])
    return normal


def make(kind: str, clock: VirtualClock) -> AnyStore:
    if kind == "sessionkv":
        return InMemorySessionKVStore(clock=clock)
    return CheckedNaiveStore(clock) if kind == "checked" else NaiveStore(clock)


Op = Callable[[int], Awaitable[object]]


async def ops_per_second(op: Op, count: int) -> float:
    gc.collect()
    started = time.perf_counter()
    for i in range(count):
        await op(i)
    return count / (time.perf_counter() - started)


async def median_latency(op: Op, repeats: int) -> float:
    samples = []
    for i in range(repeats):
        started = time.perf_counter()
        await op(i)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


@dataclass
class Row:
    what: str
    unit: str
    ours: float
    baseline: float
    checked: float | None
    higher_is_better: bool

    def ratio(self, other: float) -> float:
        return self.ours / other if self.higher_is_better else other / self.ours

    def render(self) -> str:
        checked = "-" if self.checked is None else f"{self.checked:,.3f}"
        vs_checked = "-" if self.checked is None else f"{self.ratio(self.checked):.2f}x"
        return (
            f"  {self.what:<34} {self.ours:>14,.3f} {self.baseline:>14,.3f} {checked:>14} {self.unit:<6}"
            f" {self.ratio(self.baseline):>8.2f}x {vs_checked:>9}"
        )


def workload(store: AnyStore, keys: list[str], new_keys: list[str], calls: list[str]) -> dict[str, Op]:
    """The measured operations, each taking the iteration number."""
    batches = [keys[i : i + 100] for i in range(0, 10_000, 100)]

    async def get(i: int) -> object:
        return await store.get(keys[i])

    async def set_new(i: int) -> None:
        await store.set(new_keys[i], VALUE, 3600.0)

    async def overwrite(i: int) -> None:
        await store.set(keys[i], VALUE, 3600.0)

    async def heartbeat(i: int) -> None:
        await store.set(keys[i], VALUE, 3600.0, only_if_exists=True)

    async def mget(i: int) -> object:
        return await store.mget(batches[i % len(batches)])

    async def keys_prefix(i: int) -> object:
        return await store.keys(calls[i % len(calls)])

    return {
        "get": get,
        "set (new key)": set_new,
        "set (overwrite)": overwrite,
        "set (heartbeat, only_if_exists)": heartbeat,
        "mget (100 keys)": mget,
        "keys(prefix), 10 matches": keys_prefix,
    }


async def bench_size(size: int, quick: bool, rounds: int) -> list[Row]:
    """Measure both stores at ``size`` keys, alternating between them ``rounds`` times and keeping each one's best
    figure, so that background load on the machine hurts both alike."""
    clocks = {kind: VirtualClock() for kind in ("sessionkv", "baseline", "checked")}
    stores = {kind: make(kind, clocks[kind]) for kind in clocks}
    normal = 0
    for store in stores.values():
        normal = await fill(store, size)
    ops = 20_000 if quick else 100_000
    keys = [key_of((i * 7919) % normal) for i in range(ops)]
    calls = [f"sessions/call-{(i * 104729) % (normal // 10):07d}/" for i in range(1_000)]
    best: dict[str, dict[str, float]] = {kind: {} for kind in stores}
    for round_ in range(rounds):
        new_keys = [f"new/{round_}/{i:08d}" for i in range(ops)]
        for kind, store in stores.items():
            ops_of = workload(store, keys, new_keys, calls)
            for what, op in ops_of.items():
                if kind == "checked" and what.startswith("keys("):
                    continue  # same scan as the baseline: validation is not what it measures
                if what.startswith("keys("):
                    slow = kind == "baseline" and size >= 1_000_000
                    latency = await median_latency(op, 10 if slow or quick else 100)
                    best[kind][what] = min(best[kind].get(what, latency), latency)
                else:
                    count = ops // 100 if what.startswith("mget") else ops
                    rate = await ops_per_second(op, count)
                    best[kind][what] = max(best[kind].get(what, rate), rate)
            await store.delete(new_keys)
    for kind, store in stores.items():
        if kind == "checked":
            continue
        await clocks[kind].advance(2.0)  # the 1% written with ttl=1 s are now expired
        gc.collect()
        started = time.perf_counter()
        removed = store.sweep()
        best[kind]["sweep (1% expired)"] = time.perf_counter() - started
        assert removed == size // 100, (kind, removed)
    rows = []
    for what, value in best["sessionkv"].items():
        latency = what.startswith(("keys(", "sweep"))
        scale = 1e3 if latency else 1.0
        checked = best["checked"].get(what)
        rows.append(
            Row(
                what,
                "ms" if latency else "ops/s",
                value * scale,
                best["baseline"][what] * scale,
                None if checked is None else checked * scale,
                not latency,
            )
        )
    return rows


async def memory_per_key(size: int) -> tuple[float, float]:
    per_key = []
    for kind in ("sessionkv", "baseline"):
        keys = [key_of(i) for i in range(size)]  # created outside the measurement: both stores need the keys
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        store = make(kind, VirtualClock())
        for start in range(0, size, 10_000):
            await store.mset([(k, VALUE, 3600.0) for k in keys[start : start + 10_000]])
        await store.keys("~")  # steady state: new keys merged into the sorted index
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        per_key.append((after - before) / size)
        del store
    return per_key[0], per_key[1]


async def main_async(sizes: list[int], quick: bool) -> None:
    print("sessionkv InMemorySessionKVStore vs a naive dict store (baseline), same run, same machine;")
    print("'naive+checks' is the baseline plus sessionkv's argument validation, to separate the two costs")
    print(
        f"  {'':<34} {'sessionkv':>14} {'baseline':>14} {'naive+checks':>14} {'unit':<6}"
        f" {'vs base':>9} {'vs checks':>9}"
    )
    for size in sizes:
        print(f"{size:,} keys")
        for row in await bench_size(size, quick, rounds=1 if quick else 3):
            print(row.render())
    memory_size = min(max(sizes), 100_000)
    ours, baseline = await memory_per_key(memory_size)
    print(f"memory per key at {memory_size:,} keys (keys and shared value excluded):")
    print(
        f"  {'bytes/key':<34} {ours:>14,.0f} {baseline:>14,.0f} {'':>14} {'bytes':<6}"
        f" {ours / baseline:>8.2f}x (ours/base)"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=None,
        help="comma-separated key counts (default 10000,100000,1000000)",
    )
    parser.add_argument("--quick", action="store_true", help="10k and 100k keys, fewer repetitions")
    args = parser.parse_args(argv)
    sizes = args.sizes or ([10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000])
    asyncio.run(main_async(sizes, args.quick))


if __name__ == "__main__":
    main()
