"""The checks of G01-G16, one ``async def`` each, registered in :mod:`sessionkv.testing.certify.catalogue`.

Each check receives a :class:`~sessionkv.testing.certify.harness.Harness` whose ``store`` is a fresh started store
(wrapped so that every call is recorded) and lets time pass only through ``h.advance``. Names are the test names of the
contract classes (``test_`` + name), so a failure in CI and a failure in ``sessionkv certify`` read the same.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from fractions import Fraction
from typing import Any, Final

from sessionkv.errors import StoreUnavailableError
from sessionkv.store import MAX_TTL
from sessionkv.testing.certify.catalogue import (
    CheckSkipped,
    ContractViolation,
    Inconclusive,
    Severity,
    check,
    expect,
    expect_equal,
    expect_raises,
)
from sessionkv.testing.certify.harness import Harness, sleep_until

SEED: Final = "seed"
STRICTNESS: Final[Severity] = "strictness"

# How to repair a store that fails a guarantee, where sessionkv has the answer (shown under each failure).
FIX_LIFECYCLE: Final = (
    "subclass sessionkv.store.SessionKVStore: its __aenter__ awaits start() and returns the store, its __aexit__ "
    "awaits close() also when the body raises; make close() safe to call twice"
)
FIX_BYTES: Final = "return values as bytes: store `bytes(value)` (sessionkv.store.check_value does it) and return it"
FIX_COPY: Final = (
    "store `bytes(value)`, a copy, never the caller's bytearray or memoryview: call "
    "`sessionkv.store.check_value(value)`"
)
FIX_UPSERT: Final = "a set replaces the whole entry: (value, now + ttl), whatever was stored before"
FIX_CONDITIONAL: Final = (
    "only_if_exists writes only over a live key: test `deadline > now`, not whether an entry is still stored"
)
FIX_BOUNDARY: Final = (
    "a key is alive while now < deadline and gone from the deadline on, for get, mget, keys and expire alike; compute "
    "the deadline from `sessionkv.store.check_ttl_ns(ttl)` (integer ns, never 0; Redis: round up to whole ms with "
    "`sessionkv.store.ns_to_ms_ceil`)"
)
FIX_MSET: Final = (
    "validate every item first (`sessionkv.store.check_items(items)`), then apply them in order, last duplicate "
    "winning, with no await between items (Redis: one MULTI/EXEC or Lua script)"
)
FIX_MGET: Final = "answer one entry per requested key, in request order, repeats included, None when missing or expired"
FIX_EXPIRE: Final = "expire sets now + ttl on live keys only; missing and expired keys are ignored and never recreated"
FIX_KEYS: Final = (
    "match the prefix literally (`key.startswith(prefix)`; with Redis SCAN MATCH escape * ? [ ] and \\), skip expired "
    "keys, and list each key once (deduplicate SCAN results)"
)
FIX_DELETE: Final = "validate with `sessionkv.store.check_keys(keys)`, then remove each listed key, ignore missing ones"
FIX_EMPTY: Final = "return at once on an empty batch (Redis rejects MSET/DEL/MGET with no keys)"
FIX_KEY_SPACE: Final = "use the key as given: no folding, stripping, globbing or encoding that can merge two keys"
FIX_TTL: Final = "call `sessionkv.store.check_ttl_ns(ttl)` before writing anything, in set, mset and expire"
FIX_VALUE: Final = "call `sessionkv.store.check_value(value)` before writing, and store the bytes it returns"
FIX_KEY_TYPES: Final = (
    "validate keys with `sessionkv.store.check_key(key)`, key lists with `check_keys(keys)` and expire's keys with "
    "`check_expire_keys(keys)`"
)
FIX_ITEMS: Final = "call `sessionkv.store.check_items(items)` and write only after it returned"
FIX_UNAVAILABLE: Final = (
    "catch the backend's connection and timeout errors and `raise sessionkv.errors.StoreUnavailableError(...) from exc`"
)
FIX_CONCURRENCY: Final = "make each operation one atomic step of the backend; keep no per-call state on the store"

# -- G01 lifecycle ------------------------------------------------------------------------------------------------


@check("G01", SEED, fix=FIX_LIFECYCLE)
async def G01_async_with_starts_returns_and_closes_the_store(h: Harness) -> None:
    """``async with store`` returns the store itself, works inside, and close() may be called twice."""
    recording = await h.new_unstarted()
    raw = recording.inner
    async with raw as entered:
        h.note("async with store as entered")
        expect(entered is raw, f"async with returned {entered!r}, not the store itself")
        await recording.set("k", b"v", h.long)
        expect_equal(await recording.get("k"), b"v", "get inside async with")
    h.note("left async with (close called)")
    await recording.close()  # a second close: must be harmless


@check("G01", fix=FIX_LIFECYCLE)
async def G01_close_runs_when_the_body_raises(h: Harness) -> None:
    """``async with`` calls close() on exit also when its body raises."""
    recording = await h.new_unstarted()
    raw = recording.inner
    closes: list[int] = []
    original = raw.close

    async def counting_close() -> None:
        closes.append(1)
        await original()

    try:
        raw.close = counting_close
    except (AttributeError, TypeError) as exc:
        raise CheckSkipped(f"cannot observe close() on {type(raw).__name__}: {exc}") from None
    h.note("async with store: body raises RuntimeError")
    try:
        async with raw:
            raise RuntimeError("body failed")
    except RuntimeError as exc:
        expect(str(exc) == "body failed", f"async with replaced the body's exception by {exc!r}")
    expect_equal(len(closes), 1, "close() calls after a failing async with body")


# -- G02 round trip / G03 isolation -------------------------------------------------------------------------------

VALUES: Final = {
    "empty": b"",
    "nul": b"\x00",
    "crlf-binary": b"\x00\xff\x00binary\r\n",
    "all-bytes": bytes(range(256)),
    "1MiB": bytes(range(256)) * 4096,
}


@check("G02", SEED, fix=FIX_BYTES)
async def G02_values_round_trip_byte_for_byte(h: Harness) -> None:
    """Every value (empty, NUL bytes, all 256 bytes, 1 MiB) reads back identical and as ``bytes``."""
    for name, value in VALUES.items():
        await h.store.set(f"value/{name}", value, h.long)
    for name, value in VALUES.items():
        got = await h.store.get(f"value/{name}")
        expect(type(got) is bytes, f"get of the {name} value returned {type(got).__name__}, not bytes")
        expect(got == value, f"the {name} value came back different ({len(got or b'')} bytes, {len(value)} written)")
    got_all = await h.store.mget([f"value/{name}" for name in VALUES])
    expect_equal(got_all, list(VALUES.values()), "mget of every value")


@check("G02", SEED, fix=FIX_BYTES)
async def G02_missing_key_reads_as_none(h: Harness) -> None:
    """A key never written reads as ``None``."""
    expect_equal(await h.store.get("never-written"), None, "get of a missing key")


@check("G03", fix=FIX_COPY)
async def G03_mutating_the_written_buffer_does_not_change_the_stored_value(h: Harness) -> None:
    """The store copies a ``bytearray``/``memoryview``: mutating it afterwards changes nothing stored."""
    buffer = bytearray(b"original")
    view_source = bytearray(b"viewed")
    await h.store.set("ba", buffer, h.long)
    await h.store.set("mv", memoryview(view_source), h.long)
    await h.store.mset([("mset-ba", buffer, h.long)])
    h.note("the caller mutates its buffers: buffer[:] = b'changed!', view_source[:] = b'CHANGE'")
    buffer[:] = b"changed!"
    view_source[:] = b"CHANGE"
    expect_equal(await h.store.get("ba"), b"original", "value written from a bytearray, after mutating it")
    expect_equal(await h.store.get("mv"), b"viewed", "value written from a memoryview, after mutating its buffer")
    expect_equal(await h.store.get("mset-ba"), b"original", "value written by mset from a bytearray")
    values = await h.store.mget(["ba", "mv"])
    expect(all(type(v) is bytes for v in values), f"mget returned {[type(v).__name__ for v in values]}, not bytes")


# -- G04 upsert ---------------------------------------------------------------------------------------------------


@check("G04", SEED, fix=FIX_UPSERT)
async def G04_set_replaces_the_value(h: Harness) -> None:
    """set on a live key replaces its value."""
    await h.store.set("k", b"one", h.long)
    await h.store.set("k", b"two", h.long)
    expect_equal(await h.store.get("k"), b"two", "get after overwriting")


@check("G04", SEED, fix=FIX_UPSERT)
async def G04_set_replaces_the_ttl_shorter_shortens(h: Harness) -> None:
    """A shorter TTL on overwrite shortens the key's life."""
    await h.store.set("k", b"one", h.long)
    await h.store.set("k", b"two", h.short)
    await h.advance(h.short)
    expect_equal(await h.store.get("k"), None, "get after the shorter TTL ran out")


@check("G04", SEED, fix=FIX_UPSERT)
async def G04_set_replaces_the_ttl_longer_extends(h: Harness) -> None:
    """A longer TTL on overwrite extends the key's life."""
    await h.store.set("k", b"one", h.short)
    await h.store.set("k", b"two", h.long)
    await h.advance(h.short)
    expect_equal(await h.store.get("k"), b"two", "get after the first, shorter TTL would have run out")


# -- G05 only_if_exists -------------------------------------------------------------------------------------------


@check("G05", SEED, fix=FIX_CONDITIONAL)
async def G05_only_if_exists_skips_a_missing_key(h: Harness) -> None:
    """only_if_exists on a missing key writes nothing."""
    await h.store.set("k", b"v", h.long, only_if_exists=True)
    expect_equal(await h.store.get("k"), None, "get after a conditional write of a missing key")
    expect_equal(list(await h.store.keys("")), [], "keys('') after a conditional write of a missing key")


@check("G05", SEED, fix=FIX_CONDITIONAL)
async def G05_only_if_exists_overwrites_value_and_ttl_of_a_live_key(h: Harness) -> None:
    """only_if_exists on a live key replaces its value and TTL."""
    await h.store.set("k", b"old", h.short)
    await h.store.set("k", b"new", h.long, only_if_exists=True)
    expect_equal(await h.store.get("k"), b"new", "get after a conditional overwrite")
    await h.advance(h.short)
    expect_equal(await h.store.get("k"), b"new", "get after the old TTL would have run out")


@check("G05", fix=FIX_CONDITIONAL)
async def G05_only_if_exists_never_resurrects_an_expired_key(h: Harness) -> None:
    """only_if_exists on a key whose TTL ran out writes nothing (no resurrection)."""
    await h.store.set("k", b"old", h.short)
    await h.advance(h.short)
    await h.store.set("k", b"new", h.long, only_if_exists=True)
    expect_equal(await h.store.get("k"), None, "get after a conditional write of an expired key")
    expect_equal(await h.store.mget(["k"]), [None], "mget after a conditional write of an expired key")
    expect_equal(list(await h.store.keys("")), [], "keys('') after a conditional write of an expired key")


@check("G05", SEED, fix=FIX_CONDITIONAL)
async def G05_only_if_exists_skips_a_deleted_key(h: Harness) -> None:
    """only_if_exists on a deleted key writes nothing."""
    await h.store.set("k", b"old", h.long)
    await h.store.delete(["k"])
    await h.store.set("k", b"new", h.long, only_if_exists=True)
    expect_equal(await h.store.get("k"), None, "get after a conditional write of a deleted key")


# -- G06 expiry boundary ------------------------------------------------------------------------------------------


async def _all_views(h: Harness, key: str) -> tuple[object, object, list[str]]:
    return await h.store.get(key), await h.store.mget([key]), sorted(await h.store.keys(""))


@check("G06", fix=FIX_BOUNDARY)
async def G06_exact_boundary_alive_one_ns_before_gone_at_deadline(h: Harness) -> None:
    """Alive while now < t+ttl, gone from t+ttl (virtual clock: to the nanosecond; real time: within granularity)."""
    ttl = h.short
    if h.mode.virtual:
        await h.store.set("k", b"v", ttl)
        assert h.clock is not None
        await h.clock.advance(ttl - 1e-9)
        h.note(f"advance({ttl - 1e-9!r}): 1 ns before the deadline")
        expect_equal(await _all_views(h, "k"), (b"v", [b"v"], ["k"]), "get/mget/keys 1 ns before the deadline")
        await h.advance(1e-9)  # plus the declared granularity, if it is coarser than 1 ns
        what = "at the deadline" if not h.mode.tolerance_ns else "one declared granularity after the deadline"
        expect_equal(await _all_views(h, "k"), (None, [None], []), f"get/mget/keys {what}")
        return
    # Real time: "alive" is judged only by reads that finish before (start of the write + ttl), "gone" only by reads
    # that start at or after (end of the write + ttl + granularity). A late read proves nothing: it is retried, and
    # after three late reads the check is inconclusive (the runner then tries a longer TTL), never a pass or a fail.
    # The read is aimed at a margin before the deadline derived from what this machine measures: 4x the slowest of
    # the write and the read so far, at least 20 ms, at most a quarter of the TTL.
    tolerance = h.mode.tolerance_ns / 1e9
    slowest = 0.005
    for attempt in range(3):
        key = f"k{attempt}"
        h.waited()  # each attempt is judged on its own
        t0 = time.monotonic()
        await h.store.set(key, b"v", ttl)
        t1 = time.monotonic()
        slowest = max(slowest, t1 - t0)
        margin = min(ttl / 4, max(0.02, 4 * slowest))
        await sleep_until(t0 + ttl - margin)
        h.note(f"slept until {ttl - margin:g} s after the set began")
        read_start = time.monotonic()
        alive = await h.store.get(key)
        alive_end = time.monotonic()
        slowest = max(slowest, alive_end - read_start)
        if alive_end >= t0 + ttl:
            continue  # the read finished too late to prove anything: try again
        expect_equal(alive, b"v", f"get that finished {(t0 + ttl - alive_end) * 1000:.1f} ms before the deadline")
        await sleep_until(t1 + ttl + tolerance)
        h.waited()  # this check judges its own timing: the reads below are late on purpose
        h.note(f"slept until {ttl:g} s + {tolerance * 1000:g} ms after the set returned")
        expect_equal(await h.store.get(key), None, "get one granularity after the deadline")
        expect_equal(await h.store.mget([key]), [None], "mget one granularity after the deadline")
        expect(key not in await h.store.keys(""), "keys('') lists the key one granularity after its deadline")
        return
    raise Inconclusive(
        f"3 reads aimed {margin * 1000:.0f} ms before the deadline of a {ttl * 1000:.0f} ms TTL finished after it "
        f"(slowest call {slowest * 1000:.0f} ms)"
    )


@check("G06", SEED, fix=FIX_BOUNDARY)
async def G06_get_mget_and_keys_agree_a_key_is_gone_after_its_ttl(h: Harness) -> None:
    """After its TTL a key is gone for get, mget and keys; other keys are unaffected."""
    await h.store.mset([("a", b"1", h.short), ("b", b"2", h.long)])
    await h.advance(h.short)
    expect_equal(await h.store.get("a"), None, "get of the expired key")
    expect_equal(await h.store.mget(["a", "b"]), [None, b"2"], "mget of the expired and the live key")
    expect_equal(sorted(await h.store.keys("")), ["b"], "keys('') after one key expired")


@check("G06", fix=FIX_BOUNDARY)
async def G06_every_operation_agrees_a_key_is_gone_after_its_ttl(h: Harness) -> None:
    """An expired key stays gone for expire too (expire never brings it back)."""
    await h.store.set("a", b"1", h.short)
    await h.advance(h.short)
    await h.store.expire("a", ttl=h.long)
    expect_equal(await h.store.get("a"), None, "get of an expired key after expire()")


@check("G06", SEED, fix=FIX_BOUNDARY)
async def G06_a_key_is_alive_well_before_its_ttl(h: Harness) -> None:
    """Half-way through its TTL a key is readable."""
    await h.store.set("k", b"v", 2 * h.short)
    await h.advance(h.short / 2)
    expect_equal(await h.store.get("k"), b"v", "get half-way through the TTL")


@check("G06", fix=FIX_BOUNDARY)
async def G06_tiny_ttls_are_positive_not_zero(h: Harness) -> None:
    """Sub-millisecond TTLs are accepted (never rounded to 0) and expire."""
    await h.store.set("k", b"v", 0.0004)
    await h.store.mset([("m", b"v", 1e-9)])
    await h.advance(0.002)
    expect_equal(await h.store.mget(["k", "m"]), [None, None], "mget 2 ms after writing with TTLs of 0.4 ms and 1 ns")


# -- G07 mset -----------------------------------------------------------------------------------------------------


@check("G07", SEED, fix=FIX_MSET)
async def G07_mset_gives_each_item_its_own_ttl(h: Harness) -> None:
    """Each mset item keeps its own TTL."""
    await h.store.mset([("short", b"s", h.short), ("long", b"l", h.long)])
    expect_equal(await h.store.mget(["short", "long"]), [b"s", b"l"], "mget right after mset")
    await h.advance(h.short)
    expect_equal(await h.store.mget(["short", "long"]), [None, b"l"], "mget after the short TTL ran out")


@check("G07", fix=FIX_MSET)
async def G07_mset_last_duplicate_wins(h: Harness) -> None:
    """A key repeated in one mset ends with the last item's value."""
    await h.store.mset([("k", b"first", h.long), ("k", b"last", h.long)])
    expect_equal(await h.store.get("k"), b"last", "get after mset with a repeated key")


@check("G07", SEED, fix=FIX_MSET)
async def G07_mset_overwrites_existing_values_and_ttls(h: Harness) -> None:
    """mset over a live key replaces its value and TTL."""
    await h.store.set("k", b"old", h.long)
    await h.store.mset([("k", b"new", h.short)])
    expect_equal(await h.store.get("k"), b"new", "get after mset over a live key")
    await h.advance(h.short)
    expect_equal(await h.store.get("k"), None, "get after mset's shorter TTL ran out")


@check("G07", fix=FIX_MSET)
async def G07_mset_is_atomic_to_concurrent_readers(h: Harness) -> None:
    """Concurrent readers see all or none of an mset, never part of it."""
    keys = [f"batch/{i}" for i in range(200)]
    await h.store.mset([(k, b"old", h.long) for k in keys])
    inner: Any = h.store.inner  # readers bypass the recorder: the report keeps the writes and the one torn read
    snapshots: list[list[bytes | None]] = []
    writing = True

    async def reader() -> None:
        while writing:
            snapshots.append(await inner.mget(keys))
            await asyncio.sleep(0)

    h.note("4 concurrent tasks loop on mget(all 200 keys) while the writes below run")
    readers = [asyncio.create_task(reader()) for _ in range(4)]
    try:
        for round_ in range(10):
            await h.store.mset([(k, f"new{round_}".encode(), h.long) for k in keys])
            await asyncio.sleep(0)
    finally:
        writing = False
        await asyncio.gather(*readers)
    expect(bool(snapshots), "no concurrent read completed")
    torn = [s for s in snapshots if len(set(s)) != 1]
    if torn:
        values = sorted({repr(v) for v in torn[0]})
        raise ContractViolation(f"a concurrent mget saw a partial mset: values {', '.join(values)} in one read")


@check("G07", fix=FIX_MSET)
async def G07_mset_of_ten_thousand_keys(h: Harness) -> None:
    """A 10 000-item mset, mget, keys and delete round trip."""
    items = [(f"bulk/{i:05d}", i.to_bytes(4, "big"), h.long) for i in range(10_000)]
    await h.store.mset(items)
    expect_equal(await h.store.mget([k for k, _, _ in items]) == [v for _, v, _ in items], True, "mget of 10 000 keys")
    expect_equal(len(await h.store.keys("bulk/")), 10_000, "number of keys listed after a 10 000-item mset")
    await h.store.delete([k for k, _, _ in items])
    expect_equal(list(await h.store.keys("bulk/")), [], "keys after deleting all 10 000")


# -- G08 mget -----------------------------------------------------------------------------------------------------


@check("G08", SEED, fix=FIX_MGET)
async def G08_mget_keeps_order_and_reports_missing(h: Harness) -> None:
    """mget answers in request order, ``None`` for a missing key."""
    await h.store.mset([("a", b"1", h.long), ("b", b"2", h.long)])
    expect_equal(await h.store.mget(["b", "missing", "a"]), [b"2", None, b"1"], "mget")


@check("G08", fix=FIX_MGET)
async def G08_mget_keeps_order_repeats_and_reports_missing(h: Harness) -> None:
    """mget answers a repeated key at each of its positions."""
    await h.store.mset([("a", b"1", h.long), ("b", b"2", h.long)])
    expect_equal(
        await h.store.mget(["b", "missing", "a", "b", "a"]), [b"2", None, b"1", b"2", b"1"], "mget with repeated keys"
    )


@check("G08", SEED, fix=FIX_MGET)
async def G08_mget_reports_expired_keys_as_none(h: Harness) -> None:
    """mget answers ``None`` for an expired key."""
    await h.store.mset([("a", b"1", h.short), ("b", b"2", h.long)])
    await h.advance(h.short)
    expect_equal(await h.store.mget(["a", "b"]), [None, b"2"], "mget after one key expired")


# -- G09 expire ---------------------------------------------------------------------------------------------------


@check("G09", SEED, fix=FIX_EXPIRE)
async def G09_expire_extends_a_live_key_without_changing_its_value(h: Harness) -> None:
    """expire lengthens a live key's life; the value is unchanged."""
    await h.store.set("k", b"v", h.short)
    await h.store.expire("k", ttl=h.long)
    await h.advance(h.short)
    expect_equal(await h.store.get("k"), b"v", "get after the original TTL would have run out")


@check("G09", SEED, fix=FIX_EXPIRE)
async def G09_expire_can_shorten_a_ttl(h: Harness) -> None:
    """expire with a shorter TTL shortens the key's life."""
    await h.store.set("k", b"v", h.long)
    await h.store.expire("k", ttl=h.short)
    await h.advance(h.short)
    expect_equal(await h.store.get("k"), None, "get after the shortened TTL ran out")


@check("G09", SEED, fix=FIX_EXPIRE)
async def G09_expire_ignores_missing_keys_and_creates_nothing(h: Harness) -> None:
    """expire of missing keys is ignored and creates no key."""
    await h.store.set("live", b"v", h.long)
    await h.store.expire("missing", "live", "also-missing", ttl=h.long)
    expect_equal(sorted(await h.store.keys("")), ["live"], "keys('') after expire of missing keys")
    expect_equal(await h.store.mget(["missing", "also-missing", "live"]), [None, None, b"v"], "mget after expire")


@check("G09", fix=FIX_EXPIRE)
async def G09_expire_never_resurrects_an_expired_key(h: Harness) -> None:
    """expire of a key whose TTL ran out does not bring it back."""
    await h.store.set("k", b"v", h.short)
    await h.advance(h.short)
    await h.store.expire("k", ttl=h.long)
    expect_equal(await h.store.get("k"), None, "get after expire of an expired key")
    expect_equal(list(await h.store.keys("")), [], "keys('') after expire of an expired key")


@check("G09", SEED, fix=FIX_EXPIRE)
async def G09_expire_many_keys_at_once(h: Harness) -> None:
    """expire(*1000 keys) refreshes all of them and only them."""
    keys = [f"e/{i}" for i in range(2_000)]
    await h.store.mset([(k, b"v", h.short) for k in keys])
    await h.store.expire(*keys[:1_000], ttl=h.long)
    await h.advance(h.short)
    expect_equal(sorted(await h.store.keys("e/")), sorted(keys[:1_000]), "keys('e/') after refreshing half")


# -- G10 keys(prefix) ---------------------------------------------------------------------------------------------


@check("G10", SEED, fix=FIX_KEYS)
async def G10_keys_lists_every_live_match(h: Harness) -> None:
    """keys(prefix) lists every live key with that prefix and no other."""
    await h.store.mset([(f"calls/a/{i}", b"", h.long) for i in range(50)] + [("calls/b/1", b"", h.long)])
    found = await h.store.keys("calls/a/")
    expect_equal(sorted(set(found)), sorted(f"calls/a/{i}" for i in range(50)), "keys('calls/a/')")


@check("G10", fix=FIX_KEYS)
async def G10_keys_lists_live_matches_each_once(h: Harness) -> None:
    """keys(prefix) lists each key exactly once."""
    await h.store.mset([(f"calls/a/{i}", b"", h.long) for i in range(50)] + [("calls/b/1", b"", h.long)])
    found = list(await h.store.keys("calls/a/"))
    expect(len(found) == len(set(found)), f"keys('calls/a/') listed {len(found) - len(set(found))} keys twice")
    expect_equal(sorted(found), sorted(f"calls/a/{i}" for i in range(50)), "keys('calls/a/')")


GLOBS: Final = ("*", "?", "[b]", "[!b]", "\\", "[", "]", "a*b", "[a-z]")


@check("G10", fix=FIX_KEYS)
async def G10_keys_prefix_is_literal_not_a_glob(h: Harness) -> None:
    """Glob characters ``* ? [ ] \\`` in a prefix match only themselves."""
    for glob in GLOBS:
        literal = f"calls/{glob}"
        others = [("calls/b/1", b"", h.long), ("calls/ab/1", b"", h.long), ("calls/x/1", b"", h.long)]
        await h.store.mset([(literal + "/1", b"", h.long), *others])
        expect_equal(sorted(await h.store.keys(literal)), [literal + "/1"], f"keys({literal!r})")
        await h.store.delete([literal + "/1"])


@check("G10", fix=FIX_KEYS)
async def G10_empty_prefix_lists_every_live_key(h: Harness) -> None:
    """keys('') lists every live key."""
    await h.store.mset([("x", b"", h.long), ("y/z", b"", h.long), ("gone", b"", h.short)])
    await h.advance(h.short)
    expect_equal(sorted(await h.store.keys("")), ["x", "y/z"], "keys('')")


@check("G10", SEED, fix=FIX_KEYS)
async def G10_keys_never_lists_expired_or_deleted_keys(h: Harness) -> None:
    """keys never lists an expired or deleted key."""
    await h.store.mset([("p/expired", b"", h.short), ("p/deleted", b"", h.long), ("p/live", b"", h.long)])
    await h.store.delete(["p/deleted"])
    await h.advance(h.short)
    expect_equal(sorted(await h.store.keys("p/")), ["p/live"], "keys('p/')")


@check("G10", fix=FIX_KEYS)
async def G10_keys_with_non_ascii_prefix(h: Harness) -> None:
    """A non-ASCII prefix matches by characters."""
    await h.store.mset([("ключ/1", b"", h.long), ("ключ/2", b"", h.long), ("κλειδί", b"", h.long)])
    expect_equal(sorted(await h.store.keys("ключ/")), ["ключ/1", "ключ/2"], "keys('ключ/')")


@check("G10", SEED, fix=FIX_KEYS)
async def G10_prefix_that_is_a_whole_key_matches_it(h: Harness) -> None:
    """A prefix equal to a whole key lists that key and its extensions."""
    await h.store.mset([("abc", b"", h.long), ("abcd", b"", h.long), ("ab", b"", h.long)])
    expect_equal(sorted(await h.store.keys("abc")), ["abc", "abcd"], "keys('abc')")


# -- G11 delete ---------------------------------------------------------------------------------------------------


@check("G11", SEED, fix=FIX_DELETE)
async def G11_delete_removes_listed_keys_and_ignores_missing(h: Harness) -> None:
    """delete removes the listed keys, ignores missing ones, tolerates repeats."""
    await h.store.mset([("a", b"1", h.long), ("b", b"2", h.long), ("c", b"3", h.long)])
    await h.store.delete(["a", "missing", "c", "a"])
    expect_equal(await h.store.mget(["a", "b", "c"]), [None, b"2", None], "mget after delete")
    expect_equal(sorted(await h.store.keys("")), ["b"], "keys('') after delete")


@check("G11", fix=FIX_DELETE)
async def G11_delete_accepts_a_tuple(h: Harness) -> None:
    """delete accepts a tuple of keys."""
    await h.store.set("a", b"1", h.long)
    await h.store.delete(("a",))
    expect_equal(await h.store.get("a"), None, "get after delete(('a',))")


# -- G12 empty input ----------------------------------------------------------------------------------------------


@check("G12", fix=FIX_EMPTY)
async def G12_empty_batches_are_no_ops(h: Harness) -> None:
    """mset([]), mget([]), delete([]) and expire(ttl=...) with no keys do nothing."""
    await h.store.set("k", b"v", h.long)
    await h.store.mset([])
    expect_equal(await h.store.mget([]), [], "mget([])")
    await h.store.delete([])
    await h.store.expire(ttl=h.long)
    expect_equal(sorted(await h.store.keys("")), ["k"], "keys('') after empty batches")


# -- G13 key space ------------------------------------------------------------------------------------------------

KEYS: Final = (
    "",
    " ",
    "a b",
    "sessions/call/session",
    "*",
    "[x]",
    "\\",
    "emoji-🎉",
    "日本語",
    "nul\x00inside",
    "x" * 1000,
)


@check("G13", fix=FIX_KEY_SPACE)
async def G13_arbitrary_string_keys_are_distinct_keys(h: Harness) -> None:
    """Empty, space, glob, non-ASCII, NUL-containing and 1000-character keys are ordinary, distinct keys."""
    for key in KEYS:
        await h.store.set(key, b"value", h.long)
        await h.store.set(key + "-other", b"other", h.long)
        expect_equal(await h.store.get(key), b"value", f"get({key!r})")
        expect(key in await h.store.keys(key), f"keys({key!r}) does not list {key!r}")
        await h.store.delete([key])
        expect_equal(await h.store.get(key), None, f"get({key!r}) after delete")
        expect_equal(await h.store.get(key + "-other"), b"other", f"get({key + '-other'!r}) after deleting {key!r}")
        await h.store.delete([key + "-other"])


# -- G14 validation -----------------------------------------------------------------------------------------------

BAD_TTLS: Final[tuple[tuple[object, type[Exception]], ...]] = (
    (0, ValueError),
    (0.0, ValueError),
    (-1, ValueError),
    (-0.001, ValueError),
    (math.nan, ValueError),
    (math.inf, ValueError),
    (-math.inf, ValueError),
    ("5", TypeError),
    (None, TypeError),
    (b"5", TypeError),
)
"""TTLs every store must refuse, writing nothing (correctness: accepting one loses or keeps data wrongly)."""
STRICT_BAD_TTLS: Final[tuple[tuple[object, type[Exception]], ...]] = (
    (MAX_TTL * 2, ValueError),
    (True, TypeError),
)
"""TTLs the contract refuses on finer points (strictness): above MAX_TTL, and a bool (which is an int)."""


async def _refused_ttl(h: Harness, ttl: object, error: type[Exception], strictness_input: bool) -> None:
    store = h.store
    await store.set("existing", b"old", h.long)
    calls: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        (f"set with ttl={ttl!r}", lambda: store.set("k", b"v", ttl)),
        (f"set(only_if_exists) ttl={ttl!r}", lambda: store.set("existing", b"new", ttl, only_if_exists=True)),
        (f"mset with ttl={ttl!r}", lambda: store.mset([("m1", b"v", h.long), ("m2", b"v", ttl)])),
        (f"expire with ttl={ttl!r}", lambda: store.expire("existing", ttl=ttl)),
    ]
    refused = [await h.expect_rejected(error, call(), what, strictness_input=strictness_input) for what, call in calls]
    if all(refused):
        expect_equal(
            await store.mget(["k", "m1", "m2", "existing"]),
            [None, None, None, b"old"],
            f"mget after refusing ttl={ttl!r}: a refused call must write nothing",
        )
        if h.mode.virtual:  # catches an expire that stored a deadline from a NaN/negative ttl; free on a virtual clock
            await h.advance(1.0)
            expect_equal(await store.get("existing"), b"old", f"get after the refused expire(ttl={ttl!r})")
    await store.delete(["k", "m1", "m2", "existing"])


@check("G14", fix=FIX_TTL)
async def G14_invalid_ttl_is_rejected_and_nothing_is_written(h: Harness) -> None:
    """A ttl that is 0, negative, NaN, infinite or not a number is refused by every write; nothing changes."""
    for ttl, error in BAD_TTLS:
        await _refused_ttl(h, ttl, error, strictness_input=False)


@check("G14", fix=FIX_TTL, severity=STRICTNESS)
async def G14_ttl_above_max_or_bool_is_rejected(h: Harness) -> None:
    """Strictness: a ttl above MAX_TTL is a ValueError and a bool ttl a TypeError (warnings unless --strict)."""
    for ttl, error in STRICT_BAD_TTLS:
        await _refused_ttl(h, ttl, error, strictness_input=True)


@check("G14", fix=FIX_TTL)
async def G14_valid_ttl_kinds_are_accepted(h: Harness) -> None:
    """int, float and 1 ns are valid TTLs; so are a Fraction and MAX_TTL (strictness points)."""
    for ttl in (1, 0.5, 1e-9):
        await h.store.set("k", b"v", ttl)
        await h.store.expire("k", ttl=ttl)
    for fine in (Fraction(1, 2), MAX_TTL):
        try:
            await h.store.set("k", b"v", fine)
            await h.store.expire("k", ttl=fine)
        except Exception as exc:
            h.warn(f"a valid ttl={fine!r} was refused: {type(exc).__name__}: {exc}")


@check("G14", fix=FIX_VALUE)
async def G14_non_bytes_values_are_a_type_error(h: Harness) -> None:
    """str, int, None, list and other objects are not values: TypeError, nothing written."""
    for value in ("text", 5, None, [1, 2], object()):
        name = type(value).__name__
        await h.expect_rejected(TypeError, h.store.set("k", value, h.long), f"set with a {name} value")
        await h.expect_rejected(
            TypeError, h.store.mset([("ok", b"v", h.long), ("k", value, h.long)]), f"mset with a {name} value"
        )
        expect_equal(await h.store.mget(["k", "ok"]), [None, None], f"mget after refusing a {name} value")


@check("G14", fix=FIX_KEY_TYPES, severity=STRICTNESS)
async def G14_non_str_keys_are_a_type_error(h: Harness) -> None:
    """Strictness: a key that is not a str is a TypeError for every operation (warnings unless --strict)."""
    store = h.store
    for key in (5, None, b"bytes", ("tuple",)):
        await h.expect_rejected(TypeError, store.set(key, b"v", h.long), f"set with key {key!r}", strictness_input=True)
        await h.expect_rejected(TypeError, store.get(key), f"get({key!r})", strictness_input=True)
        await h.expect_rejected(TypeError, store.mget(["ok", key]), f"mget with key {key!r}", strictness_input=True)
        await h.expect_rejected(
            TypeError, store.expire("ok", key, ttl=h.long), f"expire with key {key!r}", strictness_input=True
        )
        await h.expect_rejected(TypeError, store.keys(key), f"keys({key!r})", strictness_input=True)
        await h.expect_rejected(TypeError, store.delete(["ok", key]), f"delete with key {key!r}", strictness_input=True)


@check("G14", fix=FIX_KEY_TYPES)
async def G14_a_bare_string_is_not_a_list_of_keys(h: Harness) -> None:
    """delete('abc') must never delete 'a', 'b' and 'c'; refusing it (and mget('abc'), expire([...])) with a TypeError
    is a strictness point."""
    await h.store.mset([("a", b"", h.long), ("b", b"", h.long), ("c", b"", h.long), ("abc", b"", h.long)])
    await h.expect_rejected(TypeError, h.store.delete("abc"), "delete('abc')", strictness_input=True)
    left = sorted(await h.store.keys(""))
    lost = [k for k in ("a", "b", "c") if k not in left]
    expect(
        not lost,
        f"delete('abc') deleted the keys {lost!r}: it iterated the characters of a bare str and lost data the caller "
        "never named",
    )
    await h.expect_rejected(TypeError, h.store.mget("abc"), "mget('abc')", strictness_input=True)
    await h.expect_rejected(
        TypeError, h.store.expire(["a", "abc"], ttl=h.long), "expire(['a', 'abc'], ttl=...)", strictness_input=True
    )
    expect_equal(
        sorted(k for k in await h.store.keys("") if k != "abc"), ["a", "b", "c"], "keys('') after the bare-str calls"
    )


@check("G14", fix=FIX_KEY_TYPES, severity=STRICTNESS)
async def G14_unencodable_keys_are_a_value_error(h: Harness) -> None:
    """Strictness: a key with a lone surrogate is a ValueError; a batch refused for holding one writes nothing."""
    lone = "lone-\udc80-surrogate"
    await h.expect_rejected(ValueError, h.store.set(lone, b"v", h.long), "set(lone surrogate)", strictness_input=True)
    refused = await h.expect_rejected(
        ValueError,
        h.store.mset([("ok", b"v", h.long), ("\ud800", b"v", h.long)]),
        "mset with a lone surrogate",
        strictness_input=True,
    )
    if refused:
        expect_equal(await h.store.get("ok"), None, "get('ok') after the refused mset: a refused batch writes nothing")


@check("G14", fix=FIX_ITEMS)
async def G14_malformed_mset_items_are_a_type_error(h: Harness) -> None:
    """mset items must be (key, value, ttl) triples in a list: refused, nothing written (TypeError: strictness)."""
    for items in ([("k", b"v")], [("k", b"v", 1.0, "extra")], ["kv1"], "kv1", None):
        await h.expect_rejected(TypeError, h.store.mset(items), f"mset({items!r})")
    expect_equal(list(await h.store.keys("")), [], "keys('') after malformed msets")


# -- G15 unavailability -------------------------------------------------------------------------------------------


@check("G15", needs=frozenset({"unavailable"}), fix=FIX_UNAVAILABLE)
async def G15_unreachable_backend_raises_store_unavailable_with_cause(h: Harness) -> None:
    """Every operation on an unreachable backend raises StoreUnavailableError with the cause attached."""
    store = await h.open_unavailable()
    operations: dict[str, Callable[[], Awaitable[object]]] = {
        "set": lambda: store.set("k", b"v", h.long),
        "mset": lambda: store.mset([("k", b"v", h.long)]),
        "get": lambda: store.get("k"),
        "mget": lambda: store.mget(["k"]),
        "expire": lambda: store.expire("k", ttl=h.long),
        "keys": lambda: store.keys(""),
        "delete": lambda: store.delete(["k"]),
    }
    for name, call in operations.items():
        error = await expect_raises(StoreUnavailableError, call(), f"{name} on an unreachable backend")
        expect(error.__cause__ is not None, f"{name}: StoreUnavailableError without __cause__")


# -- G16 concurrency ----------------------------------------------------------------------------------------------


@check("G16", fix=FIX_CONCURRENCY)
async def G16_a_hundred_concurrent_tasks_each_see_their_own_writes(h: Harness) -> None:
    """100 concurrent tasks writing and reading their own keys each see their own writes."""
    inner: Any = h.store.inner
    failures: list[str] = []

    async def worker(n: int) -> None:
        for round_ in range(5):
            value = f"{n}:{round_}".encode()
            await inner.set(f"w/{n}", value, h.long)
            got = await inner.get(f"w/{n}")
            if got != value:
                failures.append(f"task {n}: set(w/{n}, {value!r}) then get -> {got!r}")
            await inner.mset([(f"w/{n}/a", value, h.long), (f"w/{n}/b", value, h.long)])
            both = await inner.mget([f"w/{n}/a", f"w/{n}/b"])
            if both != [value, value]:
                failures.append(f"task {n}: mset then mget -> {both!r}")

    h.note("100 concurrent tasks: each sets w/<n>, reads it back, msets w/<n>/a and w/<n>/b, reads them, 5 rounds")
    await asyncio.gather(*(worker(n) for n in range(100)))
    expect(not failures, f"{len(failures)} reads saw another task's write, first: {failures[:1]}")
    expect_equal(len(await h.store.keys("w/")), 300, "number of keys listed after 100 tasks")
