"""Fixtures of real multi-server topologies: a Redis Cluster (3 primaries, 3 replicas) and a Sentinel-managed pair.

Each topology is started once per session (per xdist worker) on first use, costs a few seconds, and is stopped at the
end of the session; every test that asks for it gets it flushed and whole again (a fault a previous test left, such as
a killed or paused server, is healed first). Like ``sessionkv_redis_server`` they skip when no ``redis-server`` can be
found, or fail under ``--sessionkv-require-redis``. The store fixtures need pytest-asyncio; without it they skip and
name the extra to install.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import pytest

from pytest_sessionkv.options import Settings
from sessionkv.testing import RedisServerError, RedisServerNotFoundError
from sessionkv.testing.topologies import RedisClusterTopology, RedisSentinelTopology

STORE_FIXTURES = ("sessionkv_redis_cluster_store", "sessionkv_redis_sentinel_store")
"""Async fixtures defined at import (stand-ins that skip when pytest-asyncio is missing)."""

__all__ = [
    "STORE_FIXTURES",
    "sessionkv_redis_cluster",
    "sessionkv_redis_cluster_proxied",
    "sessionkv_redis_sentinel",
    *STORE_FIXTURES,
]

Topology = TypeVar("Topology", RedisClusterTopology, RedisSentinelTopology)


def _start(request: pytest.FixtureRequest, make: Callable[..., Topology], what: str) -> Topology:
    settings: Settings = request.config.stash[Settings.key]
    try:
        return make(executable=settings.redis_exec).start()
    except RedisServerNotFoundError as exc:
        message = f"no redis-server for the sessionkv {what}: {exc}"
        if settings.require_redis:
            pytest.fail(f"{message} (--sessionkv-require-redis is set)", pytrace=False)
        pytest.skip(f"{message} (pass --sessionkv-require-redis to fail instead)")
    except RedisServerError as exc:
        pytest.fail(f"the sessionkv {what} failed to start: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def _sessionkv_cluster_topology(request: pytest.FixtureRequest) -> Iterator[RedisClusterTopology]:
    topology = _start(request, RedisClusterTopology, "Redis Cluster")
    try:
        yield topology
    finally:
        topology.stop()


@pytest.fixture(scope="session")
def _sessionkv_cluster_proxied_topology(request: pytest.FixtureRequest) -> Iterator[RedisClusterTopology]:
    topology = _start(request, functools.partial(RedisClusterTopology, proxied=True), "proxied Redis Cluster")
    try:
        yield topology
    finally:
        topology.stop()


@pytest.fixture(scope="session")
def _sessionkv_sentinel_topology(request: pytest.FixtureRequest) -> Iterator[RedisSentinelTopology]:
    topology = _start(request, RedisSentinelTopology, "Sentinel topology")
    try:
        yield topology
    finally:
        topology.stop()


@pytest.fixture
def sessionkv_redis_cluster(_sessionkv_cluster_topology: RedisClusterTopology) -> RedisClusterTopology:
    """A real Redis Cluster of 3 primaries and 3 replicas on loopback (one per session and xdist worker), healed and
    flushed for this test: ``startup_nodes``, ``primaries()``, ``primary_for_key()``, and the faults ``kill``,
    ``pause``/``resume``, ``restart_empty``, ``wait_for_promotion``, ``manual_failover``."""
    _sessionkv_cluster_topology.flush()
    return _sessionkv_cluster_topology


@pytest.fixture
def sessionkv_redis_cluster_proxied(_sessionkv_cluster_proxied_topology: RedisClusterTopology) -> RedisClusterTopology:
    """The same cluster with a fault proxy in front of every node (``RedisClusterTopology(proxied=True)``), one per
    session and xdist worker: clients reach node ``s`` only through ``proxy(s)``, whose faults hit every client
    connection to it, and ``isolate(s)`` / ``heal_network()`` partition a node from the others. Before this test:
    every proxy fault removed, every node reconnected, healed and flushed. Proxies run on a thread of their own, so
    the fixture serves synchronous and asynchronous tests alike."""
    _sessionkv_cluster_proxied_topology.flush()
    return _sessionkv_cluster_proxied_topology


@pytest.fixture
def sessionkv_redis_sentinel(_sessionkv_sentinel_topology: RedisSentinelTopology) -> RedisSentinelTopology:
    """A real primary, replica and 3 Sentinels on loopback (one per session and xdist worker), healed and flushed for
    this test: ``sentinel_addresses``, ``service_name``, ``primary()``, ``replica()`` and the same faults as the
    cluster (``manual_failover`` runs ``SENTINEL FAILOVER``)."""
    _sessionkv_sentinel_topology.flush()
    return _sessionkv_sentinel_topology


def _define_store_fixtures() -> dict[str, Any]:
    from pytest_sessionkv.plugin import TESTING_EXTRA_HINT, installed

    if not installed("pytest_asyncio"):

        def stand_in(name: str) -> Any:
            def fixture() -> None:
                pytest.skip(f"{name} needs pytest-asyncio: {TESTING_EXTRA_HINT}")

            return pytest.fixture(name=name)(fixture)

        return {name: stand_in(name) for name in STORE_FIXTURES}

    import pytest_asyncio

    from sessionkv.redis_cluster import RedisClusterSessionKVStore
    from sessionkv.redis_sentinel import RedisSentinelSessionKVStore

    @pytest_asyncio.fixture
    async def sessionkv_redis_cluster_store(
        sessionkv_redis_cluster: RedisClusterTopology, sessionkv_namespace: str
    ) -> AsyncIterator[RedisClusterSessionKVStore]:
        """A started ``RedisClusterSessionKVStore`` on ``sessionkv_redis_cluster`` (flushed), under this test's key
        prefix; closed after the test."""
        async with RedisClusterSessionKVStore(
            startup_nodes=sessionkv_redis_cluster.startup_nodes, key_prefix=sessionkv_namespace
        ) as store:
            yield store

    @pytest_asyncio.fixture
    async def sessionkv_redis_sentinel_store(
        sessionkv_redis_sentinel: RedisSentinelTopology, sessionkv_namespace: str
    ) -> AsyncIterator[RedisSentinelSessionKVStore]:
        """A started ``RedisSentinelSessionKVStore`` on ``sessionkv_redis_sentinel`` (flushed), under this test's key
        prefix; closed after the test."""
        async with RedisSentinelSessionKVStore(
            sentinels=sessionkv_redis_sentinel.sentinel_addresses,
            service_name=sessionkv_redis_sentinel.service_name,
            key_prefix=sessionkv_namespace,
        ) as store:
            yield store

    return {
        "sessionkv_redis_cluster_store": sessionkv_redis_cluster_store,
        "sessionkv_redis_sentinel_store": sessionkv_redis_sentinel_store,
    }


globals().update(_define_store_fixtures())
