"""Server faults (``RedisServer.kill`` / ``restart`` / ``pause`` / ``resume``) as real clients and the store see them.

Each test runs its own redis-server (never the session one: these tests break it) and stops it afterwards.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Final

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from sessionkv.errors import StoreUnavailableError
from sessionkv.redis_store import RedisSessionKVStore
from sessionkv.testing import RedisServer

DEADLINE_S: Final = 0.3
DEADLINE_BOUND_S: Final = 5.0  # generous proof that operation_timeout was honoured (not a speed claim)


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """A redis-server of this test alone, stopped (and resumed first if paused) at the end."""
    with RedisServer() as running:
        yield running


@pytest_asyncio.fixture
async def store(server: RedisServer) -> AsyncIterator[RedisSessionKVStore]:
    store = RedisSessionKVStore(url=server.url, key_prefix="srv:", operation_timeout=DEADLINE_S)
    await store.start()
    yield store
    await store.close()


@pytest_asyncio.fixture
async def raw_client(server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A plain redis-py client, retries off so each fault shows as the error it causes."""
    client = aioredis.Redis(host=server.host, port=server.port, retry=Retry(NoBackoff(), 0), socket_timeout=DEADLINE_S)
    yield client
    await client.aclose()


@pytest.mark.asyncio
async def test_kill_9_store_raises_unavailable_and_a_raw_client_connection_error(
    server: RedisServer, store: RedisSessionKVStore, raw_client: aioredis.Redis
) -> None:
    await store.set("k", b"v", 100)
    assert await raw_client.get("srv:k") == b"v"
    server.kill()
    assert not server.running

    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: store.get("k"),
        lambda: store.set("k", b"w", 100),
        lambda: store.keys(""),
        lambda: store.mget(["k"]),
    ]
    for call in calls:
        start = time.monotonic()
        with pytest.raises(StoreUnavailableError) as raised:
            await call()
        assert time.monotonic() - start < DEADLINE_BOUND_S
        assert isinstance(raised.value.__cause__, redis.exceptions.ConnectionError | OSError), raised.value.cause
        assert server.url.removeprefix("redis://") in str(raised.value)  # it names the address
    with pytest.raises(redis.exceptions.ConnectionError):
        await raw_client.get("srv:k")


@pytest.mark.asyncio
async def test_restart_comes_back_empty_and_the_same_store_works_again(
    server: RedisServer, store: RedisSessionKVStore
) -> None:
    url = server.url
    await store.mset([("a", b"1", 100), ("b", b"2", 100)])
    server.kill()
    with pytest.raises(StoreUnavailableError):
        await store.get("a")
    server.restart()
    assert server.url == url  # same port: the store is not recreated

    assert await store.get("a") is None  # the data died with the server (persistence is off)
    assert await store.keys("") == []
    await store.set("a", b"after", 100)
    assert await store.get("a") == b"after"
    assert await store.mget(["a", "b"]) == [b"after", None]


@pytest.mark.asyncio
async def test_restart_of_a_live_server_drops_open_connections_and_data(
    server: RedisServer, store: RedisSessionKVStore
) -> None:
    await store.set("a", b"1", 100)
    server.restart()
    # the pooled connection is dead; a read is retried on a fresh one (read_retries), so it succeeds
    assert await store.get("a") is None
    await store.set("a", b"2", 100)
    assert await store.get("a") == b"2"


@pytest.mark.asyncio
async def test_restart_a_write_on_the_dead_pooled_connection_is_not_retried(
    server: RedisServer, store: RedisSessionKVStore
) -> None:
    await store.set("a", b"1", 100)
    server.restart()
    # writes are never replayed: the first write after the restart runs into the dead pooled connection
    with pytest.raises(StoreUnavailableError) as raised:
        await store.set("a", b"2", 100)
    assert isinstance(raised.value.__cause__, redis.exceptions.ConnectionError)
    await store.set("a", b"3", 100)  # the next one gets a fresh connection
    assert await store.get("a") == b"3"


@pytest.mark.asyncio
async def test_pause_store_raises_within_operation_timeout_and_resume_recovers(
    server: RedisServer, store: RedisSessionKVStore, raw_client: aioredis.Redis
) -> None:
    await store.set("kept", b"v", 100)
    server.pause()
    try:
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: store.set("late", b"v", 100),  # first: it goes out on the open pooled connection
            lambda: store.get("kept"),  # these wait for the handshake of a fresh connection, never answered
            lambda: store.keys(""),
        ]
        for call in calls:
            start = time.monotonic()
            with pytest.raises(StoreUnavailableError) as raised:
                await call()
            assert time.monotonic() - start < DEADLINE_BOUND_S, "operation_timeout was not honoured"
            assert raised.value.__cause__ is not None
        with pytest.raises(redis.exceptions.TimeoutError):
            await raw_client.get("srv:kept")
    finally:
        server.resume()

    assert await store.get("kept") == b"v"  # a pause keeps the data
    await store.set("after", b"w", 100)
    assert await store.mget(["kept", "after"]) == [b"v", b"w"]
    # The write that timed out during the pause had been sent on the open connection and sat in the server's socket
    # buffer: the server ran it on resume, after the store had reported it failed. That is why a write that raised
    # StoreUnavailableError must be treated as "may have been applied".
    assert await raw_client.get("srv:late") == b"v"
