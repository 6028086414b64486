"""Every guarantee of :mod:`sessionkv.store` (G01-G16), checked on every backend we ship.

Backends: the in-memory store on a hand-driven clock (exact, instant expiry) and the Redis store against a real
redis-server in SCAN mode and in indexed mode (real time, 1 ms granularity). Test names carry the guarantee id.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from fractions import Fraction

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from sessionkv import MAX_TTL, InMemorySessionKVStore, RedisSessionKVStore, SessionKVStore
from sessionkv.testing import RedisServer

pytestmark = pytest.mark.asyncio

BACKENDS = ["memory", "redis", "redis-indexed"]


class ManualClock:
    """A clock that moves only when told to: exact expiry for the in-memory store."""

    def __init__(self) -> None:
        self.ns = 1_000_000_000_000

    def now_ns(self) -> int:
        return self.ns

    def now(self) -> float:
        return self.ns / 1e9

    def time(self) -> float:
        return 1_700_000_000 + self.ns / 1e9


@dataclass
class Backend:
    """A store under test plus the means to let time pass for it."""

    name: str
    store: SessionKVStore
    sleep: Callable[[float], Awaitable[None]]
    exact: bool
    """True when ``sleep`` moves the store's clock by exactly that much and nothing else moves it."""

    async def pass_time(self, seconds: float) -> None:
        await self.sleep(seconds)


@pytest_asyncio.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    name: str = request.param
    if name == "memory":
        clock = ManualClock()

        async def advance(seconds: float) -> None:
            clock.ns += round(seconds * 1e9)

        async with InMemorySessionKVStore(clock=clock) as memory_store:
            yield Backend(name, memory_store, advance, exact=True)
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    client = aioredis.Redis(host=server.host, port=server.port)
    await client.flushdb()

    async def real_sleep(seconds: float) -> None:
        await asyncio.sleep(seconds + 0.003)  # Redis expiry is millisecond-grained: step past the boundary

    try:
        async with RedisSessionKVStore(client=client, key_prefix="contract:", indexed=name == "redis-indexed") as store:
            yield Backend(name, store, real_sleep, exact=False)
    finally:
        await client.aclose()


# TTLs for expiry tests: long enough for a real Redis round trip to finish well inside them, short enough to wait for.
SHORT = 0.15
LONG = 60.0


# -- G01 lifecycle ------------------------------------------------------------------------------------------------


async def test_G01_async_with_starts_returns_and_closes_the_store(backend: Backend) -> None:
    store = backend.store
    await store.set("k", b"v", LONG)
    assert await store.get("k") == b"v"
    await store.close()
    await store.close()  # idempotent


async def test_G01_default_start_and_close_are_no_ops() -> None:
    class Minimal(SessionKVStore):
        async def set(self, key: str, value: bytes, ttl: float, *, only_if_exists: bool = False) -> None: ...
        async def mset(self, items: object) -> None: ...
        async def get(self, key: str) -> bytes | None:
            return None

        async def mget(self, keys: object) -> list[bytes | None]:
            return []

        async def expire(self, *keys: str, ttl: float) -> None: ...
        async def keys(self, prefix: str) -> list[str]:
            return []

        async def delete(self, keys: object) -> None: ...

    store = Minimal()
    async with store as entered:
        assert entered is store
    await store.start()
    await store.close()


async def test_G01_close_runs_when_the_body_raises() -> None:
    store = InMemorySessionKVStore()
    seen_running = []

    async def body() -> None:
        async with store:
            seen_running.append(store._sweeper is not None)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await body()
    assert seen_running == [True]
    assert store._sweeper is None


# -- G02 round trip / G03 isolation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [b"", b"\x00", b"\x00\xff\x00binary\r\n", bytes(range(256)), b"x" * (1 << 20)],
    ids=["empty", "nul", "crlf-binary", "all-bytes", "1MiB"],
)
async def test_G02_values_round_trip_byte_for_byte(backend: Backend, value: bytes) -> None:
    await backend.store.set("k", value, LONG)
    got = await backend.store.get("k")
    assert got == value
    assert type(got) is bytes


async def test_G02_missing_key_reads_as_none(backend: Backend) -> None:
    assert await backend.store.get("never-written") is None


async def test_G03_mutating_the_written_buffer_does_not_change_the_stored_value(backend: Backend) -> None:
    buffer = bytearray(b"original")
    await backend.store.set("ba", buffer, LONG)  # type: ignore[arg-type]  # bytes-like is accepted at run time
    view_source = bytearray(b"viewed")
    await backend.store.set("mv", memoryview(view_source), LONG)  # type: ignore[arg-type]
    await backend.store.mset([("mset-ba", buffer, LONG)])  # type: ignore[list-item]
    buffer[:] = b"changed!"
    view_source[:] = b"CHANGE"
    assert await backend.store.get("ba") == b"original"
    assert await backend.store.get("mv") == b"viewed"
    assert await backend.store.get("mset-ba") == b"original"
    assert all(type(v) is bytes for v in await backend.store.mget(["ba", "mv"]))


# -- G04 upsert ---------------------------------------------------------------------------------------------------


async def test_G04_set_replaces_the_value(backend: Backend) -> None:
    await backend.store.set("k", b"one", LONG)
    await backend.store.set("k", b"two", LONG)
    assert await backend.store.get("k") == b"two"


async def test_G04_set_replaces_the_ttl_shorter_shortens(backend: Backend) -> None:
    await backend.store.set("k", b"one", LONG)
    await backend.store.set("k", b"two", SHORT)
    await backend.pass_time(SHORT)
    assert await backend.store.get("k") is None


async def test_G04_set_replaces_the_ttl_longer_extends(backend: Backend) -> None:
    await backend.store.set("k", b"one", SHORT)
    await backend.store.set("k", b"two", LONG)
    await backend.pass_time(SHORT)
    assert await backend.store.get("k") == b"two"


# -- G05 only_if_exists -------------------------------------------------------------------------------------------


async def test_G05_only_if_exists_skips_a_missing_key(backend: Backend) -> None:
    await backend.store.set("k", b"v", LONG, only_if_exists=True)
    assert await backend.store.get("k") is None
    assert await backend.store.keys("") == []


async def test_G05_only_if_exists_overwrites_value_and_ttl_of_a_live_key(backend: Backend) -> None:
    await backend.store.set("k", b"old", SHORT)
    await backend.store.set("k", b"new", LONG, only_if_exists=True)
    await backend.pass_time(SHORT)
    assert await backend.store.get("k") == b"new"


async def test_G05_only_if_exists_never_resurrects_an_expired_key(backend: Backend) -> None:
    await backend.store.set("k", b"old", SHORT)
    await backend.pass_time(SHORT)
    await backend.store.set("k", b"new", LONG, only_if_exists=True)
    assert await backend.store.get("k") is None
    assert await backend.store.mget(["k"]) == [None]
    assert await backend.store.keys("") == []


async def test_G05_only_if_exists_skips_a_deleted_key(backend: Backend) -> None:
    await backend.store.set("k", b"old", LONG)
    await backend.store.delete(["k"])
    await backend.store.set("k", b"new", LONG, only_if_exists=True)
    assert await backend.store.get("k") is None


# -- G06 expiry boundary ------------------------------------------------------------------------------------------


async def test_G06_exact_boundary_alive_one_ns_before_gone_at_deadline(backend: Backend) -> None:
    if not backend.exact:
        pytest.skip("exact to the nanosecond only on a hand-driven clock; real Redis is checked with 1 ms slack below")
    store = backend.store
    await store.set("k", b"v", 2.5)
    await backend.pass_time(2.5 - 1e-9)
    assert await store.get("k") == b"v"
    assert await store.mget(["k"]) == [b"v"]
    assert await store.keys("") == ["k"]
    await backend.pass_time(1e-9)
    assert await store.get("k") is None
    assert await store.mget(["k"]) == [None]
    assert await store.keys("") == []


async def test_G06_every_operation_agrees_a_key_is_gone_after_its_ttl(backend: Backend) -> None:
    store = backend.store
    await store.mset([("a", b"1", SHORT), ("b", b"2", LONG)])
    await backend.pass_time(SHORT)
    assert await store.get("a") is None
    assert await store.mget(["a", "b"]) == [None, b"2"]
    assert await store.keys("") == ["b"]
    await store.expire("a", ttl=LONG)
    assert await store.get("a") is None


async def test_G06_a_key_is_alive_well_before_its_ttl(backend: Backend) -> None:
    await backend.store.set("k", b"v", 1.0)
    await backend.pass_time(0.5)
    assert await backend.store.get("k") == b"v"


async def test_G06_tiny_ttls_are_positive_not_zero(backend: Backend) -> None:
    await backend.store.set("k", b"v", 0.0004)  # Redis stores ceil(0.4 ms) = 1 ms, never 0 (which would be an error)
    await backend.store.mset([("m", b"v", 1e-9)])
    await backend.pass_time(0.002)
    assert await backend.store.mget(["k", "m"]) == [None, None]


# -- G07 mset -----------------------------------------------------------------------------------------------------


async def test_G07_mset_gives_each_item_its_own_ttl(backend: Backend) -> None:
    await backend.store.mset([("short", b"s", SHORT), ("long", b"l", LONG)])
    assert await backend.store.mget(["short", "long"]) == [b"s", b"l"]
    await backend.pass_time(SHORT)
    assert await backend.store.mget(["short", "long"]) == [None, b"l"]


async def test_G07_mset_last_duplicate_wins(backend: Backend) -> None:
    await backend.store.mset([("k", b"first", LONG), ("k", b"last", LONG)])
    assert await backend.store.get("k") == b"last"


async def test_G07_mset_overwrites_existing_values_and_ttls(backend: Backend) -> None:
    await backend.store.set("k", b"old", LONG)
    await backend.store.mset([("k", b"new", SHORT)])
    assert await backend.store.get("k") == b"new"
    await backend.pass_time(SHORT)
    assert await backend.store.get("k") is None


async def test_G07_mset_is_atomic_to_concurrent_readers(backend: Backend) -> None:
    keys = [f"batch/{i}" for i in range(200)]
    await backend.store.mset([(k, b"old", LONG) for k in keys])
    snapshots: list[set[bytes | None]] = []
    writing = True

    async def reader() -> None:
        while writing:
            snapshots.append(set(await backend.store.mget(keys)))
            await asyncio.sleep(0)

    readers = [asyncio.create_task(reader()) for _ in range(4)]
    for round_ in range(10):
        await backend.store.mset([(k, f"new{round_}".encode(), LONG) for k in keys])
        await asyncio.sleep(0)
    writing = False
    await asyncio.gather(*readers)
    assert snapshots
    mixed = [s for s in snapshots if len(s) != 1]
    assert mixed == [], f"a reader saw a partial mset: {mixed[:1]}"


async def test_G07_mset_of_ten_thousand_keys(backend: Backend) -> None:
    items = [(f"bulk/{i:05d}", i.to_bytes(4, "big"), LONG) for i in range(10_000)]
    await backend.store.mset(items)
    values = await backend.store.mget([k for k, _, _ in items])
    assert values == [v for _, v, _ in items]
    assert len(await backend.store.keys("bulk/")) == 10_000
    await backend.store.delete([k for k, _, _ in items])
    assert await backend.store.keys("bulk/") == []


# -- G08 mget -----------------------------------------------------------------------------------------------------


async def test_G08_mget_keeps_order_repeats_and_reports_missing(backend: Backend) -> None:
    await backend.store.mset([("a", b"1", LONG), ("b", b"2", LONG)])
    assert await backend.store.mget(["b", "missing", "a", "b", "a"]) == [b"2", None, b"1", b"2", b"1"]


async def test_G08_mget_reports_expired_keys_as_none(backend: Backend) -> None:
    await backend.store.mset([("a", b"1", SHORT), ("b", b"2", LONG)])
    await backend.pass_time(SHORT)
    assert await backend.store.mget(["a", "b", "a"]) == [None, b"2", None]


# -- G09 expire ---------------------------------------------------------------------------------------------------


async def test_G09_expire_extends_a_live_key_without_changing_its_value(backend: Backend) -> None:
    await backend.store.set("k", b"v", SHORT)
    await backend.store.expire("k", ttl=LONG)
    await backend.pass_time(SHORT)
    assert await backend.store.get("k") == b"v"


async def test_G09_expire_can_shorten_a_ttl(backend: Backend) -> None:
    await backend.store.set("k", b"v", LONG)
    await backend.store.expire("k", ttl=SHORT)
    await backend.pass_time(SHORT)
    assert await backend.store.get("k") is None


async def test_G09_expire_ignores_missing_keys_and_creates_nothing(backend: Backend) -> None:
    await backend.store.set("live", b"v", LONG)
    await backend.store.expire("missing", "live", "also-missing", ttl=LONG)
    assert await backend.store.keys("") == ["live"]
    assert await backend.store.mget(["missing", "also-missing"]) == [None, None]


async def test_G09_expire_never_resurrects_an_expired_key(backend: Backend) -> None:
    await backend.store.set("k", b"v", SHORT)
    await backend.pass_time(SHORT)
    await backend.store.expire("k", ttl=LONG)
    assert await backend.store.get("k") is None
    assert await backend.store.keys("") == []


async def test_G09_expire_many_keys_at_once(backend: Backend) -> None:
    keys = [f"e/{i}" for i in range(2_000)]
    await backend.store.mset([(k, b"v", SHORT) for k in keys])
    await backend.store.expire(*keys[:1_000], ttl=LONG)
    await backend.pass_time(SHORT)
    assert sorted(await backend.store.keys("e/")) == sorted(keys[:1_000])


# -- G10 keys(prefix) ---------------------------------------------------------------------------------------------


async def test_G10_keys_lists_live_matches_each_once(backend: Backend) -> None:
    await backend.store.mset([(f"calls/a/{i}", b"", LONG) for i in range(50)] + [("calls/b/1", b"", LONG)])
    found = await backend.store.keys("calls/a/")
    assert sorted(found) == sorted(f"calls/a/{i}" for i in range(50))
    assert len(found) == len(set(found))


@pytest.mark.parametrize("glob", ["*", "?", "[b]", "[!b]", "\\", "[", "]", "a*b", "[a-z]"])
async def test_G10_keys_prefix_is_literal_not_a_glob(backend: Backend, glob: str) -> None:
    literal = f"calls/{glob}"
    await backend.store.mset(
        [(literal + "/1", b"", LONG), ("calls/b/1", b"", LONG), ("calls/ab/1", b"", LONG), ("calls/x/1", b"", LONG)]
    )
    assert await backend.store.keys(literal) == [literal + "/1"]


async def test_G10_empty_prefix_lists_every_live_key(backend: Backend) -> None:
    await backend.store.mset([("x", b"", LONG), ("y/z", b"", LONG), ("gone", b"", SHORT)])
    await backend.pass_time(SHORT)
    assert sorted(await backend.store.keys("")) == ["x", "y/z"]


async def test_G10_keys_never_lists_expired_or_deleted_keys(backend: Backend) -> None:
    await backend.store.mset([("p/expired", b"", SHORT), ("p/deleted", b"", LONG), ("p/live", b"", LONG)])
    await backend.store.delete(["p/deleted"])
    await backend.pass_time(SHORT)
    assert await backend.store.keys("p/") == ["p/live"]


async def test_G10_keys_with_non_ascii_prefix(backend: Backend) -> None:
    await backend.store.mset([("ключ/1", b"", LONG), ("ключ/2", b"", LONG), ("κλειδί", b"", LONG)])
    assert sorted(await backend.store.keys("ключ/")) == ["ключ/1", "ключ/2"]


async def test_G10_prefix_that_is_a_whole_key_matches_it(backend: Backend) -> None:
    await backend.store.mset([("abc", b"", LONG), ("abcd", b"", LONG), ("ab", b"", LONG)])
    assert sorted(await backend.store.keys("abc")) == ["abc", "abcd"]


# -- G11 delete ---------------------------------------------------------------------------------------------------


async def test_G11_delete_removes_listed_keys_and_ignores_missing(backend: Backend) -> None:
    await backend.store.mset([("a", b"1", LONG), ("b", b"2", LONG), ("c", b"3", LONG)])
    await backend.store.delete(["a", "missing", "c", "a"])
    assert await backend.store.mget(["a", "b", "c"]) == [None, b"2", None]
    assert await backend.store.keys("") == ["b"]


async def test_G11_delete_accepts_a_tuple(backend: Backend) -> None:
    await backend.store.set("a", b"1", LONG)
    await backend.store.delete(("a",))
    assert await backend.store.get("a") is None


# -- G12 empty input ----------------------------------------------------------------------------------------------


async def test_G12_empty_batches_are_no_ops(backend: Backend) -> None:
    await backend.store.set("k", b"v", LONG)
    await backend.store.mset([])
    assert await backend.store.mget([]) == []
    await backend.store.delete([])
    await backend.store.expire(ttl=LONG)
    assert await backend.store.keys("") == ["k"]


# -- G13 key space ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["", " ", "a b", "sessions/call/session", "*", "[x]", "\\", "emoji-🎉", "日本語", "nul\x00inside", "x" * 1000],
    ids=repr,
)
async def test_G13_arbitrary_string_keys_are_distinct_keys(backend: Backend, key: str) -> None:
    await backend.store.set(key, b"value", LONG)
    await backend.store.set(key + "-other", b"other", LONG)
    assert await backend.store.get(key) == b"value"
    assert key in await backend.store.keys(key)
    await backend.store.delete([key])
    assert await backend.store.get(key) is None
    assert await backend.store.get(key + "-other") == b"other"


# -- G14 validation -----------------------------------------------------------------------------------------------

BAD_TTLS: list[tuple[object, type[Exception]]] = [
    (0, ValueError),
    (0.0, ValueError),
    (-1, ValueError),
    (-0.001, ValueError),
    (math.nan, ValueError),
    (math.inf, ValueError),
    (-math.inf, ValueError),
    (MAX_TTL * 2, ValueError),
    ("5", TypeError),
    (None, TypeError),
    (True, TypeError),
    (b"5", TypeError),
]


@pytest.mark.parametrize(("ttl", "error"), BAD_TTLS, ids=repr)
async def test_G14_invalid_ttl_is_rejected_and_nothing_is_written(
    backend: Backend, ttl: object, error: type[Exception]
) -> None:
    store = backend.store
    await store.set("existing", b"old", LONG)
    with pytest.raises(error, match="ttl"):
        await store.set("k", b"v", ttl)  # type: ignore[arg-type]
    with pytest.raises(error, match="ttl"):
        await store.set("existing", b"new", ttl, only_if_exists=True)  # type: ignore[arg-type]
    with pytest.raises(error, match="ttl"):
        await store.mset([("m1", b"v", LONG), ("m2", b"v", ttl)])  # type: ignore[list-item]
    with pytest.raises(error, match="ttl"):
        await store.expire("existing", ttl=ttl)  # type: ignore[arg-type]
    assert await store.mget(["k", "m1", "m2", "existing"]) == [None, None, None, b"old"]


@pytest.mark.parametrize("ttl", [1, 0.5, Fraction(1, 2), 1e-9, MAX_TTL], ids=repr)
async def test_G14_valid_ttl_kinds_are_accepted(backend: Backend, ttl: float) -> None:
    await backend.store.set("k", b"v", ttl)
    await backend.store.expire("k", ttl=ttl)


@pytest.mark.parametrize("value", ["text", 5, None, [1, 2], object()], ids=lambda v: type(v).__name__)
async def test_G14_non_bytes_values_are_a_type_error(backend: Backend, value: object) -> None:
    with pytest.raises(TypeError, match="bytes-like"):
        await backend.store.set("k", value, LONG)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bytes-like"):
        await backend.store.mset([("ok", b"v", LONG), ("k", value, LONG)])  # type: ignore[list-item]
    assert await backend.store.mget(["k", "ok"]) == [None, None]


@pytest.mark.parametrize("key", [5, None, b"bytes", ("tuple",)], ids=repr)
async def test_G14_non_str_keys_are_a_type_error(backend: Backend, key: object) -> None:
    store = backend.store
    with pytest.raises(TypeError, match="must be str"):
        await store.set(key, b"v", LONG)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be str"):
        await store.get(key)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be str"):
        await store.mget(["ok", key])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        await store.expire("ok", key, ttl=LONG)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be str"):
        await store.keys(key)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be str"):
        await store.delete(["ok", key])  # type: ignore[list-item]


async def test_G14_a_bare_string_is_not_a_list_of_keys(backend: Backend) -> None:
    await backend.store.mset([("a", b"", LONG), ("abc", b"", LONG)])
    with pytest.raises(TypeError, match="wrap it"):
        await backend.store.delete("abc")  # a str is a Sequence[str] to the type checker: only run time catches it
    with pytest.raises(TypeError, match="wrap it"):
        await backend.store.mget("abc")
    with pytest.raises(TypeError, match="separate arguments"):
        await backend.store.expire(["a", "abc"], ttl=LONG)  # type: ignore[arg-type]
    assert sorted(await backend.store.keys("")) == ["a", "abc"]


async def test_G14_unencodable_keys_are_a_value_error(backend: Backend) -> None:
    with pytest.raises(ValueError, match="UTF-8"):
        await backend.store.set("lone-\udc80-surrogate", b"v", LONG)
    with pytest.raises(ValueError, match="UTF-8"):
        await backend.store.mset([("ok", b"v", LONG), ("\ud800", b"v", LONG)])
    assert await backend.store.get("ok") is None


@pytest.mark.parametrize("items", [[("k", b"v")], [("k", b"v", 1.0, "extra")], ["kv1"], "kv1", None], ids=repr)
async def test_G14_malformed_mset_items_are_a_type_error(backend: Backend, items: object) -> None:
    with pytest.raises(TypeError, match="items"):
        await backend.store.mset(items)  # type: ignore[arg-type]
    assert await backend.store.keys("") == []


# -- G16 concurrency ----------------------------------------------------------------------------------------------


async def test_G16_a_hundred_concurrent_tasks_each_see_their_own_writes(backend: Backend) -> None:
    store = backend.store

    async def worker(n: int) -> None:
        for round_ in range(5):
            value = f"{n}:{round_}".encode()
            await store.set(f"w/{n}", value, LONG)
            assert await store.get(f"w/{n}") == value
            await store.mset([(f"w/{n}/a", value, LONG), (f"w/{n}/b", value, LONG)])
            assert await store.mget([f"w/{n}/a", f"w/{n}/b"]) == [value, value]

    await asyncio.gather(*(worker(n) for n in range(100)))
    assert len(await store.keys("w/")) == 300
