"""Shared fixtures of sessionkv's own test suite, on top of the sessionkv pytest plugin (loaded by its entry point)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from sessionkv.testing import RedisServer


@pytest.fixture(scope="session")
def redis_server(sessionkv_redis_server: RedisServer) -> RedisServer:
    """The plugin's real redis-server for this session (one per xdist worker). Our suite always starts its own server,
    so the handle is a full :class:`RedisServer` (kill/restart/pause available)."""
    assert isinstance(sessionkv_redis_server, RedisServer), "sessionkv's own tests need a server they control"
    return sessionkv_redis_server


@pytest_asyncio.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A redis.asyncio client on a database flushed before the test."""
    client = aioredis.Redis(host=redis_server.host, port=redis_server.port)
    await client.flushdb()
    yield client
    await client.aclose()
