"""Every contract check (G01-G16 and the model-based test) on a real Redis Cluster and a real Sentinel topology.

The checks are the certification suite's own (:mod:`sessionkv.testing.certify`); the topologies are the plugin's
session-scoped ones (one per xdist worker), flushed before each test. The sharded cluster layout declares one check
unsupported (G07's atomicity across hash slots, shown as a skip with the store's reason); the hash-tag layout keeps
every key in one slot and must pass the batch and listing checks, atomicity included.
"""

from __future__ import annotations

import pytest

from sessionkv.redis_cluster import MSET_ACROSS_SLOTS, RedisClusterSessionKVStore
from sessionkv.testing.certify import backends
from sessionkv.testing.certify.catalogue import Check, checks_for
from sessionkv.testing.certify.harness import StoreFactory
from sessionkv.testing.certify.suite import SessionKVStoreContract
from sessionkv.testing.topologies import RedisClusterTopology, RedisSentinelTopology


class TestRedisClusterContract(SessionKVStoreContract):
    @pytest.fixture
    def store_factory(self, sessionkv_redis_cluster: RedisClusterTopology) -> StoreFactory:
        return backends.redis_cluster_store_factory(sessionkv_redis_cluster.startup_nodes)  # type: ignore[no-any-return]

    @pytest.fixture
    def unavailable_store_factory(self, store_factory: StoreFactory) -> StoreFactory | None:
        return store_factory.unavailable  # type: ignore[attr-defined, no-any-return]


class TestRedisSentinelContract(SessionKVStoreContract):
    @pytest.fixture
    def store_factory(self, sessionkv_redis_sentinel: RedisSentinelTopology) -> StoreFactory:
        topology = sessionkv_redis_sentinel
        return backends.redis_sentinel_store_factory(topology.sentinel_addresses, topology.service_name)  # type: ignore[no-any-return]

    @pytest.fixture
    def unavailable_store_factory(self, store_factory: StoreFactory) -> StoreFactory | None:
        return store_factory.unavailable  # type: ignore[attr-defined, no-any-return]


HASH_TAG_CHECKS = [c for c in checks_for("full") if c.guarantee in ("G07", "G08", "G09", "G10", "G11", "G16")]


class _HashTagContract(SessionKVStoreContract):
    """The contract class on the hash-tag layout; only the multi-key checks are collected (see below)."""


@pytest.mark.parametrize("check", HASH_TAG_CHECKS, ids=[c.name for c in HASH_TAG_CHECKS])
def test_hash_tag_layout_passes_the_multi_key_checks_atomicity_included(
    check: Check, sessionkv_redis_cluster: RedisClusterTopology
) -> None:
    factory = backends.redis_cluster_store_factory(sessionkv_redis_cluster.startup_nodes, hash_tag="contract")
    result = _HashTagContract().run_contract_check(check, factory, None)
    assert result.status == "PASS", result.message


def test_the_sharded_layout_declares_cross_slot_mset_atomicity_and_the_hash_tag_layout_does_not() -> None:
    sharded = RedisClusterSessionKVStore(startup_nodes=[("127.0.0.1", 7000)])
    tagged = RedisClusterSessionKVStore(startup_nodes=[("127.0.0.1", 7000)], hash_tag="t")
    assert dict(sharded.certify_unsupported) == {"G07_mset_is_atomic_to_concurrent_readers": MSET_ACROSS_SLOTS}
    assert dict(tagged.certify_unsupported) == {}
