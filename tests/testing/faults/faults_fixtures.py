"""Fixtures and helpers of the fault-proxy tests, imported by each test module (a second conftest.py would clash
with tests/conftest.py as module "conftest" under mypy)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import hiredis
import pytest_asyncio
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from sessionkv.testing import RedisServer
from sessionkv.testing.faults import RedisFaultProxy

ClientFactory = Callable[..., aioredis.Redis]


@pytest_asyncio.fixture
async def proxy(redis_server: RedisServer) -> AsyncIterator[RedisFaultProxy]:
    """A fault proxy (seed 0, no faults) in front of the session's redis-server; stopped after the test."""
    async with RedisFaultProxy(redis_server.host, redis_server.port, seed=0) as running:
        yield running


@pytest_asyncio.fixture
async def connect(proxy: RedisFaultProxy) -> AsyncIterator[ClientFactory]:
    """Make redis.asyncio clients through ``proxy`` with retries off (so a fault shows as the error it causes)."""
    clients: list[aioredis.Redis] = []

    def make(**kwargs: object) -> aioredis.Redis:
        options: dict[str, object] = {"retry": Retry(NoBackoff(), 0), "socket_timeout": 5.0}
        options.update(kwargs)
        client = aioredis.Redis(host=proxy.host, port=proxy.port, **options)  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest_asyncio.fixture
async def client(connect: ClientFactory) -> aioredis.Redis:
    """One client through the proxy, retries off."""
    return connect()


class RawClient:
    """A bare socket speaking RESP, for what redis-py hides: byte-level splits, RST, end of stream."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._parser = hiredis.Reader()

    @classmethod
    async def open(cls, host: str, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def reply(self) -> object:
        """The next reply (hiredis-decoded); ``EOFError`` if the stream ends first."""
        while (value := self._parser.gets()) is False:
            chunk = await self.reader.read(65536)
            if not chunk:
                raise EOFError("connection closed before a complete reply")
            self._parser.feed(chunk)
        return value

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


@pytest_asyncio.fixture
async def raw(proxy: RedisFaultProxy) -> AsyncIterator[RawFactory]:
    """Open bare RESP sockets to the proxy; closed after the test."""
    opened: list[RawClient] = []

    async def open_raw() -> RawClient:
        client = await RawClient.open(proxy.host, proxy.port)
        opened.append(client)
        return client

    yield open_raw
    for client in opened:
        await client.close()


RawFactory = Callable[[], Awaitable[RawClient]]
