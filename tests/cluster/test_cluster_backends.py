"""``sessionkv_store`` on the opt-in topology backends, selected by the marker (they are not in the default set)."""

from __future__ import annotations

from typing import Any

import pytest

from sessionkv.redis_cluster import RedisClusterSessionKVStore
from sessionkv.redis_sentinel import RedisSentinelSessionKVStore


@pytest.mark.asyncio
@pytest.mark.sessionkv_backends("redis_cluster", "redis_sentinel")
async def test_the_marker_opts_into_the_topology_backends(sessionkv_store: Any, request: pytest.FixtureRequest) -> None:
    expected = {"redis_cluster": RedisClusterSessionKVStore, "redis_sentinel": RedisSentinelSessionKVStore}
    assert isinstance(sessionkv_store, expected[request.node.callspec.params["sessionkv_store"]])
    await sessionkv_store.mset([("a", b"1", 30), ("b", b"2", 30)])
    assert sorted(await sessionkv_store.keys("")) == ["a", "b"]


def test_the_default_backends_leave_the_topologies_out(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile("def test_x(sessionkv_store):\n    pass\n")
    ids = pytester.runpytest("--collect-only", "-q", "-p", "no:cacheprovider").stdout.str()
    assert "test_x[memory]" in ids
    assert "redis_cluster" not in ids
    assert "redis_sentinel" not in ids
