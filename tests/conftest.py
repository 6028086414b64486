"""Shared fixtures of sessionkv's own test suite."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from sessionkv.testing import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server for this test session (one per xdist worker), stopped at the end."""
    with RedisServer() as server:
        yield server


@pytest_asyncio.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A redis.asyncio client on a database flushed before the test."""
    client = aioredis.Redis(host=redis_server.host, port=redis_server.port)
    await client.flushdb()
    yield client
    await client.aclose()
