"""The plugin's async fixtures (loaded by :mod:`pytest_sessionkv.plugin` when pytest-asyncio is installed)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from pytest_sessionkv.plugin import installed
from pytest_sessionkv.redis import RedisHandle, clear_namespace
from sessionkv import InMemorySessionKVStore, RedisSessionKVStore, SessionKVStore, SessionRegistry
from sessionkv.testing.virtual_time import VirtualClock, virtual_fakeredis_store

if TYPE_CHECKING:
    from sessionkv.testing.faults import RedisFaultProxy

__all__ = [
    "sessionkv_custom_store",
    "sessionkv_fakeredis_store",
    "sessionkv_memory_store",
    "sessionkv_proxied_redis_store",
    "sessionkv_redis_client",
    "sessionkv_redis_proxy",
    "sessionkv_redis_store",
    "sessionkv_registry_factory",
    "sessionkv_store",
]

TESTING_EXTRA_HINT = "install the testing extra: pip install 'sessionkv[testing]'"
StoreFactory = Callable[[], Any]
_HAS_FAKEREDIS = installed("fakeredis")
_BACKEND_FIXTURES = {
    "memory": "sessionkv_memory_store",
    "virtual": "sessionkv_virtual_store",
    "fakeredis": "sessionkv_fakeredis_store",
    "redis": "sessionkv_redis_store",
    "custom": "sessionkv_custom_store",
    "redis_cluster": "sessionkv_redis_cluster_store",  # opt-in (seconds to start): pytest_sessionkv.topologies
    "redis_sentinel": "sessionkv_redis_sentinel_store",
}


@pytest_asyncio.fixture
async def sessionkv_redis_client(sessionkv_redis_server: RedisHandle) -> AsyncIterator[aioredis.Redis]:
    """A ``redis.asyncio.Redis`` client connected to ``sessionkv_redis_server``, closed after the test."""
    client = aioredis.Redis.from_url(sessionkv_redis_server.url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest_asyncio.fixture
async def sessionkv_memory_store() -> AsyncIterator[InMemorySessionKVStore]:
    """A started, empty ``InMemorySessionKVStore``, closed after the test. In a ``sessionkv_virtual_time`` test it
    expires on ``sessionkv_clock`` (the clock current at construction), elsewhere on the system clock."""
    async with InMemorySessionKVStore() as store:
        yield store


@pytest_asyncio.fixture
async def sessionkv_redis_store(
    sessionkv_redis_client: aioredis.Redis, sessionkv_namespace: str
) -> AsyncIterator[RedisSessionKVStore]:
    """A started ``RedisSessionKVStore`` on the real server, under a key prefix no other test uses; the keys it
    leaves are deleted after the test."""
    try:
        async with RedisSessionKVStore(client=sessionkv_redis_client, key_prefix=sessionkv_namespace) as store:
            yield store
    finally:
        await clear_namespace(sessionkv_redis_client, sessionkv_namespace)


@pytest_asyncio.fixture
async def sessionkv_fakeredis_store(
    sessionkv_namespace: str, sessionkv_clock: VirtualClock
) -> AsyncIterator[RedisSessionKVStore]:
    """A started ``RedisSessionKVStore`` over a private fakeredis server (nothing shared between tests). In a
    ``sessionkv_virtual_time`` test its keys expire on ``sessionkv_clock``; elsewhere in real time."""
    if not _HAS_FAKEREDIS:
        pytest.skip(f"sessionkv_fakeredis_store needs fakeredis: {TESTING_EXTRA_HINT}")
    import fakeredis

    if sessionkv_clock.wall_clock_patched:
        store = virtual_fakeredis_store(sessionkv_clock, key_prefix=sessionkv_namespace)
    else:
        store = RedisSessionKVStore(
            client=fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer()), key_prefix=sessionkv_namespace
        )
    try:
        async with store:
            yield store
    finally:
        await store.client.aclose()


@pytest_asyncio.fixture
async def sessionkv_custom_store(sessionkv_custom_store_factory: StoreFactory | None) -> AsyncIterator[Any]:
    """A started store from your ``sessionkv_custom_store_factory`` override, closed after the test."""
    if sessionkv_custom_store_factory is None:
        pytest.skip("backend 'custom' selected but the sessionkv_custom_store_factory fixture is not overridden")
    store = sessionkv_custom_store_factory()
    await store.start()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def sessionkv_store(request: pytest.FixtureRequest) -> Any:
    """A started, empty store on each selected backend (test ids ``[memory]``, ``[virtual]``, ``[fakeredis]``,
    ``[redis]``, ``[custom]``), closed after the test. Select backends with ``--sessionkv-backends`` or the
    ``sessionkv_backends`` marker.

    A plain fixture on purpose: it only picks the backend's own async fixture, which pytest-asyncio then runs on the
    test's event loop (an async fixture cannot request another async fixture by name)."""
    return request.getfixturevalue(_BACKEND_FIXTURES[request.param])


@pytest_asyncio.fixture
async def sessionkv_registry_factory(
    sessionkv_store: SessionKVStore,
) -> AsyncIterator[Callable[..., SessionRegistry]]:
    """Builds ``SessionRegistry`` objects over this test's ``sessionkv_store``, each with a distinct node id
    (``node-1``, ``node-2``…). Registries are not started for you; any still running are stopped after the test.
    Their timestamps come from the store's clock, or in a ``sessionkv_virtual_time`` test from ``sessionkv_clock``."""
    made: list[SessionRegistry] = []

    def make(*, node_id: str | None = None, ttl: float = 30.0) -> SessionRegistry:
        registry = SessionRegistry(sessionkv_store, node_id=node_id or f"node-{len(made) + 1}", ttl=ttl)
        made.append(registry)
        return registry

    try:
        yield make
    finally:
        for registry in made:
            await registry.stop()


@pytest_asyncio.fixture
async def sessionkv_redis_proxy(
    request: pytest.FixtureRequest, sessionkv_redis_server: RedisHandle
) -> AsyncIterator[RedisFaultProxy]:
    """A fresh :class:`~sessionkv.testing.faults.RedisFaultProxy` (seed 0, no faults) in front of the session's
    redis-server, stopped after the test; its transcript is attached to the test's report. Add faults with
    ``proxy.add(...)`` or ``proxy.add(parse_fault_spec("latency:latency_ms=50"))``."""
    from sessionkv.testing.faults import RedisFaultProxy

    async with RedisFaultProxy(sessionkv_redis_server.host, sessionkv_redis_server.port, seed=0) as proxy:
        try:
            yield proxy
        finally:
            request.node.add_report_section("teardown", "sessionkv proxy transcript", proxy.transcript.format())


@pytest_asyncio.fixture
async def sessionkv_proxied_redis_store(
    sessionkv_redis_proxy: RedisFaultProxy, sessionkv_redis_client: aioredis.Redis, sessionkv_namespace: str
) -> AsyncIterator[RedisSessionKVStore]:
    """A started ``RedisSessionKVStore`` that talks to the real server through ``sessionkv_redis_proxy`` (it owns its
    client; a 1 s operation deadline so faults surface quickly), under this test's private key prefix."""
    store = RedisSessionKVStore(url=sessionkv_redis_proxy.url, key_prefix=sessionkv_namespace, operation_timeout=1.0)
    try:
        async with store:
            yield store
    finally:
        await clear_namespace(sessionkv_redis_client, sessionkv_namespace)
