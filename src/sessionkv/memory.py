"""``InMemorySessionKVStore``: the single-node store, fast at a million keys.

Data structures, and what each operation costs with ``n`` live keys:

* ``_entries``: ``dict`` key -> ``(value, deadline_ns)``. ``get``/``set`` are one dict operation plus bookkeeping.
* ``_index``: a ``SortedList`` of the keys, so ``keys(prefix)`` bisects to the first candidate and walks only the
  matches: O(log n + matches). A new key enters the index in the write that creates it (``SortedList.add``:
  O(log n) amortised; its worst case, splitting a full sublist, moves about 1000 + n/1000 pointers, a few
  microseconds at 1M keys); an overwrite, a heartbeat or a ``get`` never touches the index.

  Why not defer it: an earlier version kept new keys in a side set and sorted them into the index on the next
  ``keys()``. That made ``set`` of a new key ~1 us cheaper but made one ``keys()`` pay for every earlier write: 400 ms
  after 200k new keys in a 1M-key store, ~2 s after a 1M bulk load, all of it blocking the event loop. The rule here
  is that no call pays for work an earlier call deferred, so every operation's worst case is bounded by its own input:
  ``set``/``mset``/``expire``/``delete`` O(log n) per key written, ``keys()`` O(log n + matches).
  ``benchmarks/bench_memory_store.py`` prints the first ``keys()`` after a burst next to the following ones, the
  worst call of every operation, and ``set (new key)`` next to the overwrite.
* ``_buckets``: the keys grouped by deadline into buckets of 2**30 ns (about 1.07 s), plus a min-heap of bucket ids.
  A sweep pops only buckets that lie wholly in the past (the bounded background sweep stops there: O(limit) per call)
  and, when unbounded, scans the current bucket, so it costs in proportion to the keys that expired (plus those due
  within the same ~1 s), never to all keys. A key lives in exactly one bucket,
  so rewriting a key (a heartbeat) moves it instead of leaving stale entries behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
from collections.abc import Sequence
from typing import Final

from sortedcontainers import SortedList

from sessionkv.clock import Clock, current_clock
from sessionkv.store import (
    SessionKVStore,
    check_expire_keys,
    check_items,
    check_key,
    check_keys,
    check_prefix,
    check_seconds,
    check_ttl_ns,
    check_value,
)

__all__ = ["InMemorySessionKVStore"]

_BUCKET_SHIFT: Final = 30
"""Deadlines are grouped in buckets of 2**30 ns (~1.07 s)."""

_SWEEP_YIELD_EVERY: Final = 10_000
"""The background sweep yields to the event loop after this many removals, so a mass expiry never blocks it long."""


class InMemorySessionKVStore(SessionKVStore):
    """A TTL key-value store in this process's memory (single node only; not shared across processes).

    Honours every guarantee of :mod:`sessionkv.store` exactly, to the nanosecond of ``clock`` (G06). Expired keys are
    invisible at once and their memory is reclaimed lazily when they are touched and by a background sweep every
    ``cleanup_interval`` seconds, started by :meth:`start` and cancelled by :meth:`close`. Without :meth:`start` the
    store works too; only the periodic reclamation is missing.

    ``clock`` defaults to :func:`sessionkv.clock.current_clock` at construction: the system clock, or the virtual
    clock inside a virtual-time run; pass one to drive expiry explicitly.
    """

    expiry_granularity_ns = 1

    def __init__(self, *, cleanup_interval: float = 60.0, clock: Clock | None = None) -> None:
        self.cleanup_interval = check_seconds("cleanup_interval", cleanup_interval)
        self.clock: Clock = current_clock() if clock is None else clock
        self._now_ns = self.clock.now_ns
        self._entries: dict[str, tuple[bytes, int]] = {}
        self._index: SortedList[str] = SortedList()
        self._buckets: dict[int, set[str]] = {}
        self._bucket_heap: list[int] = []
        self._sweeper: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(cleanup_interval={self.cleanup_interval!r}, clock={self.clock!r}, "
            f"stored_keys={len(self._entries)})"
        )

    # -- lifecycle -------------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the periodic sweep (idempotent)."""
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(
                self._sweep_forever(), name=f"sessionkv-sweeper-{id(self):x}"
            )

    async def close(self) -> None:
        """Stop the periodic sweep and wait for it to finish (idempotent). Stored keys stay readable."""
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper

    async def _sweep_forever(self) -> None:
        while True:
            await self._pause(self.cleanup_interval)
            while self.sweep(limit=_SWEEP_YIELD_EVERY) == _SWEEP_YIELD_EVERY:
                await self._pause(0)  # a mass expiry must not block the loop for long

    async def _pause(self, seconds: float) -> None:
        """How the background sweep waits (``0``: just yield to the loop); a virtual-clock store overrides it."""
        await asyncio.sleep(seconds)

    # -- the contract ----------------------------------------------------------------------------------------------

    async def set(self, key: str, value: bytes, ttl: float, *, only_if_exists: bool = False) -> None:
        key = check_key(key)
        data = check_value(value)
        ttl_ns = check_ttl_ns(ttl)
        now = self._now_ns()
        if only_if_exists and not self._live(key, now):
            return
        self._put(key, data, now + ttl_ns)

    async def mset(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        checked = check_items(items)
        now = self._now_ns()
        for key, data, ttl_ns in checked:
            self._put(key, data, now + ttl_ns)

    async def get(self, key: str) -> bytes | None:
        key = check_key(key)
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] <= self._now_ns():
            self._remove(key)
            return None
        return entry[0]

    async def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        wanted = check_keys(keys)
        now = self._now_ns()
        entries = self._entries
        result: list[bytes | None] = []
        for key in wanted:
            entry = entries.get(key)
            result.append(entry[0] if entry is not None and entry[1] > now else None)
        return result

    async def expire(self, *keys: str, ttl: float) -> None:
        wanted = check_expire_keys(keys)
        ttl_ns = check_ttl_ns(ttl)
        now = self._now_ns()
        deadline = now + ttl_ns
        for key in wanted:
            entry = self._entries.get(key)
            if entry is not None and entry[1] > now:
                self._put(key, entry[0], deadline)

    async def keys(self, prefix: str) -> list[str]:
        prefix = check_prefix(prefix)
        now = self._now_ns()
        entries = self._entries
        found: list[str] = []
        for key in self._index.irange(minimum=prefix):
            if not key.startswith(prefix):
                break
            if entries[key][1] > now:
                found.append(key)
        return found

    async def delete(self, keys: Sequence[str]) -> None:
        for key in check_keys(keys):
            if key in self._entries:
                self._remove(key)

    # -- reclamation -----------------------------------------------------------------------------------------------

    def sweep(self, *, limit: int | None = None) -> int:
        """Reclaim the memory of expired keys now and return how many were removed (at most ``limit``).

        With a ``limit`` (the background sweep uses 10 000), only buckets that lie wholly in the past are swept: a call
        costs O(limit) whatever the store holds, and expired keys of the current ~1 s bucket wait for a later sweep.
        Without one, it also checks every key of the current bucket, reclaiming exactly the expired keys at a cost of
        O(removed + keys due within the current ~1 s). It never walks live keys of later buckets. Expired keys are
        invisible whether or not they have been swept: this only frees memory.
        """
        now = self._now_ns()
        current = now >> _BUCKET_SHIFT
        heap, buckets, entries = self._bucket_heap, self._buckets, self._entries
        removed = 0
        while heap and heap[0] <= current and (limit is None or removed < limit):
            bucket_id = heap[0]
            bucket = buckets[bucket_id]
            if bucket_id < current:
                # every deadline in a past bucket is < now: all of them have expired
                while bucket and (limit is None or removed < limit):
                    self._forget(bucket.pop())
                    removed += 1
            elif limit is not None:
                break  # finding the due keys of the current bucket means checking all of it: not in a bounded call
            else:
                due = [key for key in bucket if entries[key][1] <= now]
                for key in due:
                    bucket.discard(key)
                    self._forget(key)
                removed += len(due)
                if bucket:
                    break  # the rest of the current bucket is still alive
            if not bucket:
                heapq.heappop(heap)
                del buckets[bucket_id]
        return removed

    # -- internals -------------------------------------------------------------------------------------------------

    def _live(self, key: str, now: int) -> bool:
        entry = self._entries.get(key)
        return entry is not None and entry[1] > now

    def _put(self, key: str, data: bytes, deadline: int) -> None:
        """Store ``key`` in every structure; a new key enters the index now, never later."""
        old = self._entries.get(key)
        self._entries[key] = (data, deadline)
        bucket_id = deadline >> _BUCKET_SHIFT
        if old is None:
            self._index.add(key)
        else:
            old_bucket_id = old[1] >> _BUCKET_SHIFT
            if old_bucket_id == bucket_id:
                return
            self._buckets[old_bucket_id].discard(key)
        bucket = self._buckets.get(bucket_id)
        if bucket is None:
            bucket = self._buckets[bucket_id] = set()
            heapq.heappush(self._bucket_heap, bucket_id)
        bucket.add(key)

    def _remove(self, key: str) -> None:
        """Remove a stored key from every structure."""
        self._buckets[self._entries[key][1] >> _BUCKET_SHIFT].discard(key)
        self._forget(key)

    def _forget(self, key: str) -> None:
        """Remove a key from the entries and the index (its bucket is handled by the caller)."""
        del self._entries[key]
        self._index.remove(key)
