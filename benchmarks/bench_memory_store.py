"""Benchmark ``InMemorySessionKVStore`` against a naive dict-backed store measured in the same run.

The baseline is the straightforward design (one dict of ``key -> (value, deadline)``, ``keys(prefix)`` and the
periodic sweep walking every key), which is how vision-agents' in-memory store works. ``naive+checks`` is the baseline
plus the argument validation every sessionkv store performs, inlined (no extra coroutine hop that sessionkv does not
pay), which separates what validation costs from what sessionkv's data structures cost. For each size it prints:

* ``get`` / ``set`` (new key, overwrite, heartbeat) / ``mget`` / ``keys(prefix)`` (10 matches): the typical figure
  (ops/s, best of the alternated rounds) and the **worst single call** (µs, the maximum over every timed call, in
  this thread's CPU time so that another process taking the CPU does not count, while garbage collection does);
* **indexing new keys**: ``keys(prefix)`` latency on the *first* call after a burst of new keys (20% of the store,
  written one ``set`` at a time, spread over the whole key range) and after a bulk load of the whole store (``mset``
  of 10k-key chunks), next to the median of the following five calls (each on another call's prefix): a store that
  defers indexing to ``keys()`` shows a first call far slower than the next ones. The bulk load's own time is printed
  too, since that is where the indexing cost goes instead; a control writes as many overwrites (no new key), so that
  what remains of a first-call premium there is the CPU caches, not the index;
* the latency of one sweep when 1% of the keys have expired: median and worst of several samples, after a warm-up;
* memory per key (tracemalloc, values shared so only the store's own structures and the keys count).

Every figure comes with the ratio ours / baseline (for latencies: baseline / ours, so bigger is better for us).

    python benchmarks/bench_memory_store.py            # 10k, 100k and 1M keys (a few minutes)
    python benchmarks/bench_memory_store.py --quick    # 10k and 100k keys, fewer repetitions (seconds; CI runs it)
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
from sessionkv.store import check_items, check_key, check_keys, check_prefix, check_ttl_ns, check_value
from sessionkv.testing import VirtualClock

NS = 1_000_000_000


class NaiveStore:
    """The baseline: a dict of (value, deadline) with linear scans for keys() and the sweep."""

    def __init__(self, clock: VirtualClock) -> None:
        self.now_ns = clock.now_ns
        self.data: dict[str, tuple[bytes, int]] = {}

    async def set(self, key: str, value: bytes, ttl: float, *, only_if_exists: bool = False) -> None:
        now = self.now_ns()
        if only_if_exists:
            entry = self.data.get(key)
            if entry is None or entry[1] <= now:
                return
        self.data[key] = (value, now + int(ttl * NS))

    async def mset(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        now = self.now_ns()
        for key, value, ttl in items:
            self.data[key] = (value, now + int(ttl * NS))

    async def get(self, key: str) -> bytes | None:
        return self._read(key)

    def _read(self, key: str) -> bytes | None:
        """``get`` without the coroutine: shared by both baselines (a plain call, as cheap as inlining it)."""
        entry = self.data.get(key)
        if entry is None:
            return None
        if entry[1] <= self.now_ns():
            del self.data[key]
            return None
        return entry[0]

    async def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        now = self.now_ns()
        out: list[bytes | None] = []
        for key in keys:
            entry = self.data.get(key)
            out.append(entry[0] if entry is not None and entry[1] > now else None)
        return out

    async def keys(self, prefix: str) -> list[str]:
        now = self.now_ns()
        return [k for k, (_, deadline) in self.data.items() if k.startswith(prefix) and deadline > now]

    async def delete(self, keys: Sequence[str]) -> None:
        for key in keys:
            self.data.pop(key, None)

    def sweep(self) -> int:
        now = self.now_ns()
        expired = [k for k, (_, deadline) in self.data.items() if deadline <= now]
        for key in expired:
            del self.data[key]
        return len(expired)


class CheckedNaiveStore(NaiveStore):
    """The baseline plus sessionkv's argument validation, written inline: each call is one coroutine, as in
    sessionkv, so the difference to ``NaiveStore`` is the validation alone."""

    async def set(self, key: str, value: bytes, ttl: float, *, only_if_exists: bool = False) -> None:
        key, value, ttl_ns = check_key(key), check_value(value), check_ttl_ns(ttl)
        now = self.now_ns()
        if only_if_exists:
            entry = self.data.get(key)
            if entry is None or entry[1] <= now:
                return
        self.data[key] = (value, now + ttl_ns)

    async def mset(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        now = self.now_ns()
        for key, value, ttl_ns in check_items(items):
            self.data[key] = (value, now + ttl_ns)

    async def get(self, key: str) -> bytes | None:
        return self._read(check_key(key))

    async def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        now = self.now_ns()
        out: list[bytes | None] = []
        for key in check_keys(keys):
            entry = self.data.get(key)
            out.append(entry[0] if entry is not None and entry[1] > now else None)
        return out

    async def keys(self, prefix: str) -> list[str]:
        prefix = check_prefix(prefix)
        now = self.now_ns()
        return [k for k, (_, deadline) in self.data.items() if k.startswith(prefix) and deadline > now]


AnyStore = InMemorySessionKVStore | NaiveStore
KINDS = ("sessionkv", "baseline", "checked")
VALUE = b'{"session_id": "s", "call_id": "c", "node_id": "n", "metrics": {}}'


def key_of(i: int) -> str:
    """Keys shaped like the registry's: ten sessions per call."""
    return f"sessions/call-{i // 10:07d}/session-{i:08d}"


async def fill(store: AnyStore, size: int) -> None:
    """Write ``size`` registry-shaped keys with a 1 h TTL, in ``mset`` chunks of 10k."""
    chunk = 10_000
    for start in range(0, size, chunk):
        await store.mset([(key_of(i), VALUE, 3600.0) for i in range(start, min(size, start + chunk))])


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


async def cpu_latencies(op: Op, count: int) -> list[float]:
    """The CPU time in seconds this thread spent in each of ``count`` sequential calls: the work a call pays for
    itself (its share of garbage collection included), not the time other processes on the machine took the CPU."""
    gc.collect()
    samples = []
    clock = time.thread_time
    for i in range(count):
        started = clock()
        await op(i)
        samples.append(clock() - started)
    return samples


@dataclass
class Row:
    what: str
    unit: str
    figures: dict[str, float]
    higher_is_better: bool

    def ratio(self, other: str) -> str:
        if other not in self.figures:
            return "-"
        ours, theirs = self.figures["sessionkv"], self.figures[other]
        return f"{(ours / theirs if self.higher_is_better else theirs / ours):.2f}x"

    def render(self) -> str:
        cells = [f"{self.figures[k]:>14,.3f}" if k in self.figures else f"{'-':>14}" for k in KINDS]
        return (
            f"  {self.what:<56} {' '.join(cells)} {self.unit:<6} {self.ratio('baseline'):>9} {self.ratio('checked'):>9}"
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


async def bench_operations(size: int, quick: bool, rounds: int) -> list[Row]:
    """Typical and worst-call figures of each operation at ``size`` keys, the stores alternated ``rounds`` times (each
    keeps its best typical figure and its worst call), so that background load on the machine hurts all alike."""
    clock = VirtualClock()
    stores = {kind: make(kind, clock) for kind in KINDS}
    for store in stores.values():
        await fill(store, size)
    ops = 10_000 if quick else 100_000
    keys = [key_of((i * 7919) % size) for i in range(ops)]
    calls = [f"sessions/call-{(i * 104729) % (size // 10):07d}/" for i in range(1_000)]
    typical: dict[str, dict[str, float]] = {kind: {} for kind in stores}
    worst: dict[str, dict[str, float]] = {kind: {} for kind in stores}
    for round_ in range(rounds):
        for kind, store in stores.items():
            for phase in ("rate", "latency"):
                new_keys = [f"new/{round_}/{phase}/{i:08d}" for i in range(ops)]
                for what, op in workload(store, keys, new_keys, calls).items():
                    count = ops // 100 if "mget" in what else ops
                    if what.startswith("keys("):  # the baselines scan every key: fewer calls
                        scans = 20 if quick else 10 if size >= 1_000_000 else 100
                        count = min(count, 1_000) if kind == "sessionkv" else scans
                    if phase == "rate":
                        rate = await ops_per_second(op, count)
                        typical[kind][what] = max(typical[kind].get(what, 0.0), rate)
                    else:
                        slowest = max(await cpu_latencies(op, count))
                        worst[kind][what] = max(worst[kind].get(what, 0.0), slowest)
                await store.delete(new_keys)
    rows = []
    for what in typical["sessionkv"]:
        rows.append(Row(what, "ops/s", {k: typical[k][what] for k in KINDS}, True))
        rows.append(Row("  worst call (CPU time)", "us", {k: worst[k][what] * 1e6 for k in KINDS}, False))
    return rows


async def bench_indexing(size: int) -> list[Row]:
    """First and next ``keys(prefix)`` after a burst of new keys and after a bulk load; the bulk load's own time."""
    figures: dict[str, dict[str, float]] = {kind: {} for kind in ("sessionkv", "baseline")}  # checks: same scan
    burst = size // 5
    calls = size // 10
    for kind in figures:
        clock = VirtualClock()
        store = make(kind, clock)
        gc.collect()
        started = time.perf_counter()
        await fill(store, size)
        figures[kind]["bulk load (mset, 10k per call)"] = time.perf_counter() - started
        for label in ("after bulk load", "after 20% new keys", "after overwrites (control)"):
            for i in range(burst if label != "after bulk load" else 0):
                if label.endswith("(control)"):  # the same amount of work without new keys: any first-call premium
                    await store.set(key_of((i * 7919) % size), VALUE, 3600.0)  # left here is cold caches, not indexing
                else:  # spread over the whole key range, as new sessions of existing calls
                    await store.set(f"sessions/call-{(i * 7919) % calls:07d}/burst-{i:08d}", VALUE, 3600.0)
            samples = []
            for probe in range(6):  # a different call each time: the first call gets no cache advantage either way
                prefix = f"sessions/call-{(probe * 7919 + len(label)) % calls:07d}/session-"
                started = time.perf_counter()
                found = await store.keys(prefix)
                samples.append(time.perf_counter() - started)
                assert len(found) == 10, (kind, found)
            figures[kind][f"keys() {label}: first call"] = samples[0]
            figures[kind][f"keys() {label}: next calls (median)"] = statistics.median(samples[1:])
        del store
    rows = []
    for what in figures["sessionkv"]:
        rows.append(Row(what, "ms", {k: figures[k][what] * 1e3 for k in figures}, False))
    return rows


async def bench_sweep(size: int, samples: int) -> list[Row]:
    """One sweep with 1% of the keys expired: median and worst of ``samples`` sweeps after one warm-up sweep."""
    figures: dict[str, dict[str, float]] = {kind: {} for kind in KINDS if kind != "checked"}
    for kind in figures:
        clock = VirtualClock()
        store = make(kind, clock)
        await fill(store, size)
        times = []
        for sample in range(samples + 1):
            expiring = [(f"expiring/{sample}/{i:08d}", VALUE, 1.0) for i in range(size // 100)]
            await store.mset(expiring)
            await clock.advance(2.0)
            gc.collect()
            started = time.perf_counter()
            removed = store.sweep()
            elapsed = time.perf_counter() - started
            assert removed == len(expiring), (kind, removed)
            if sample:  # the first sweep is the warm-up
                times.append(elapsed)
        figures[kind]["sweep (1% expired): median"] = statistics.median(times)
        figures[kind]["sweep (1% expired): worst"] = max(times)
    return [Row(what, "ms", {k: figures[k][what] * 1e3 for k in figures}, False) for what in figures["sessionkv"]]


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
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        per_key.append((after - before) / size)
        del store
    return per_key[0], per_key[1]


async def main_async(sizes: list[int], quick: bool) -> None:
    print("sessionkv InMemorySessionKVStore vs a naive dict store (baseline), same run, same machine;")
    print("'naive+checks' is the baseline plus sessionkv's argument validation, to separate the two costs")
    header = "".join(f" {name:>14}" for name in ("sessionkv", "baseline", "naive+checks"))
    print(f"  {'':<56}{header} {'unit':<6} {'vs base':>9} {'vs checks':>9}")
    for size in sizes:
        print(f"{size:,} keys")
        rows = await bench_operations(size, quick, rounds=1 if quick else 3)
        rows += await bench_indexing(size)
        rows += await bench_sweep(size, samples=3 if quick else 7)
        for row in rows:
            print(row.render())
    memory_size = min(max(sizes), 100_000)
    ours, baseline = await memory_per_key(memory_size)
    print(f"memory per key at {memory_size:,} keys (keys and shared value excluded):")
    cells = f"{ours:>14,.0f} {baseline:>14,.0f} {'':>14}"
    print(f"  {'bytes/key':<56} {cells} {'bytes':<6} {ours / baseline:>8.2f}x (ours/base)")


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
