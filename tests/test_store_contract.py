"""Every guarantee of :mod:`sessionkv.store` (G01-G16 and the model-based test), checked on every backend we ship.

The checks live once, in :mod:`sessionkv.testing.certify`; this module only says which stores to run them on: the
in-memory store on a virtual clock (exact, instant expiry), the Redis store over fakeredis, and the Redis store against
a real redis-server in SCAN mode and in indexed mode (real time, 1 ms granularity). Test names carry the guarantee id.
"""

from __future__ import annotations

import pytest

from sessionkv import SessionKVStore
from sessionkv.testing import RedisServer
from sessionkv.testing.certify import backends
from sessionkv.testing.certify.harness import StoreFactory
from sessionkv.testing.certify.suite import SessionKVStoreContract


class TestMemoryContract(SessionKVStoreContract):
    unsupported = backends.memory.unsupported  # type: ignore[attr-defined]

    @pytest.fixture
    def store_factory(self) -> StoreFactory:
        return backends.memory


class TestFakeRedisContract(SessionKVStoreContract):
    @pytest.fixture
    def store_factory(self) -> StoreFactory:
        return backends.fakeredis

    @pytest.fixture
    def unavailable_store_factory(self) -> StoreFactory | None:
        return backends.fakeredis.unavailable  # type: ignore[attr-defined, no-any-return]


class TestRedisContract(SessionKVStoreContract):
    indexed = False

    @pytest.fixture
    def store_factory(self, redis_server: RedisServer) -> StoreFactory:
        return backends.redis_store_factory(redis_server.url, indexed=self.indexed)  # type: ignore[no-any-return]

    @pytest.fixture
    def unavailable_store_factory(self, store_factory: StoreFactory) -> StoreFactory | None:
        return store_factory.unavailable  # type: ignore[attr-defined, no-any-return]


class TestRedisIndexedContract(TestRedisContract):
    indexed = True


@pytest.mark.asyncio
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
