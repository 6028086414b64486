"""Inside a ``sessionkv_virtual_time`` test every store and registry the plugin hands out follows the test's clock,
with nothing passed; outside one they keep the system clock. Run directly by this suite (the plugin is loaded by its
entry point), on every backend of ``sessionkv_store``, ``[custom]`` included through the override below."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from sessionkv import InMemorySessionKVStore, SessionKVStore, SessionRegistry
from sessionkv.clock import SYSTEM_CLOCK, current_clock
from sessionkv.testing.virtual_time import DEFAULT_EPOCH, VirtualClock

START = 1000.0
EPOCH = 1_800_000_000


@pytest.fixture
def sessionkv_custom_store_factory(
    request: pytest.FixtureRequest, sessionkv_clock: VirtualClock
) -> Callable[[], InMemorySessionKVStore]:
    """The documented pattern: a custom in-process store takes ``sessionkv_clock`` under the marker."""
    virtual = request.node.get_closest_marker("sessionkv_virtual_time") is not None
    return lambda: InMemorySessionKVStore(clock=sessionkv_clock if virtual else None)


@pytest.fixture(scope="module")
def store_shared_by_the_module() -> InMemorySessionKVStore:
    return InMemorySessionKVStore()


@pytest.mark.asyncio
@pytest.mark.sessionkv_virtual_time(start=START, epoch=EPOCH)
async def test_registry_timestamps_follow_virtual_time_on_every_backend(
    sessionkv_clock: VirtualClock,
    sessionkv_store: SessionKVStore,
    sessionkv_registry_factory: Callable[..., SessionRegistry],
) -> None:
    made = sessionkv_registry_factory(ttl=30)
    direct = SessionRegistry(sessionkv_store, node_id="direct", ttl=30)
    assert made.clock is sessionkv_clock
    assert direct.clock is sessionkv_clock
    info = await made.register("call", "s1")
    assert (info.started_at, info.metrics_updated_at) == (EPOCH, EPOCH)
    # a short step: the [redis] backend keeps a real connection open, so virtual time there waits in real time
    await asyncio.sleep(0.25)
    assert await direct.update_metrics("call", "s1", {"fps": 25})
    stored = await made.get("call", "s1")
    assert stored is not None
    assert (stored.started_at, stored.metrics_updated_at) == (EPOCH, EPOCH + 0.25)


STORE_FIXTURES = [
    "sessionkv_memory_store",
    "sessionkv_virtual_store",
    "sessionkv_fakeredis_store",
    "sessionkv_redis_store",
    "sessionkv_proxied_redis_store",
    "sessionkv_custom_store",
]


@pytest.fixture(params=STORE_FIXTURES)
def any_store_fixture(request: pytest.FixtureRequest) -> Any:
    """Each store fixture of the plugin by name (a plain fixture: pytest-asyncio runs the async one on the test's
    loop, as ``sessionkv_store`` does)."""
    return request.getfixturevalue(request.param)


@pytest.mark.asyncio
@pytest.mark.sessionkv_virtual_time(epoch=EPOCH)
async def test_a_registry_over_any_store_fixture_stamps_virtual_time(any_store_fixture: SessionKVStore) -> None:
    registry = SessionRegistry(any_store_fixture, node_id="n1", ttl=30)
    await asyncio.sleep(0.125)  # short: real connections make virtual time wait in real time
    info = await registry.register("call", "s1")
    assert (info.started_at, time.time()) == (EPOCH + 0.125, EPOCH + 0.125)
    assert await registry.get("call", "s1") == info


@pytest.mark.asyncio
@pytest.mark.sessionkv_virtual_time(patch_wall_clock=False)
async def test_without_the_wall_clock_patch_the_clock_is_still_current(sessionkv_clock: VirtualClock) -> None:
    registry = SessionRegistry(node_id="n1", ttl=30)
    assert registry.clock is sessionkv_clock
    assert time.time() != DEFAULT_EPOCH  # the wall clock is real
    assert (await registry.register("call", "s1")).started_at == DEFAULT_EPOCH  # the registry is not


@pytest.mark.asyncio
@pytest.mark.sessionkv_virtual_time(start=START)
@pytest.mark.sessionkv_backends("memory", "custom")
async def test_in_process_backends_expire_on_virtual_time(
    sessionkv_clock: VirtualClock, sessionkv_store: SessionKVStore
) -> None:
    await sessionkv_store.set("k", b"v", ttl=3600)
    await asyncio.sleep(3600 - 1e-9)
    assert await sessionkv_store.get("k") == b"v"
    await asyncio.sleep(1e-9)
    assert await sessionkv_store.get("k") is None
    assert sessionkv_clock.now() == START + 3600


@pytest.mark.asyncio
@pytest.mark.sessionkv_virtual_time
async def test_memory_store_fixture_expires_on_virtual_time(
    sessionkv_clock: VirtualClock, sessionkv_memory_store: InMemorySessionKVStore
) -> None:
    assert sessionkv_memory_store.clock is sessionkv_clock
    await sessionkv_memory_store.set("k", b"v", ttl=0.5)
    await asyncio.sleep(0.5 - 1e-9)
    assert await sessionkv_memory_store.get("k") == b"v"
    await asyncio.sleep(1e-9)
    assert await sessionkv_memory_store.get("k") is None


@pytest.mark.asyncio
@pytest.mark.sessionkv_virtual_time
async def test_default_registry_store_expires_on_virtual_time(sessionkv_clock: VirtualClock) -> None:
    async with SessionRegistry(node_id="n1", ttl=30) as registry:
        assert registry.clock is sessionkv_clock
        info = await registry.register("call", "s1")
        assert info.started_at == DEFAULT_EPOCH
        await asyncio.sleep(30 - 1e-9)
        assert await registry.get("call", "s1") == info
        await asyncio.sleep(1e-9)
        assert await registry.get("call", "s1") is None


@pytest.mark.asyncio
@pytest.mark.sessionkv_virtual_time
async def test_a_wider_fixture_set_up_in_a_marked_test_keeps_the_system_clock(
    sessionkv_clock: VirtualClock, store_shared_by_the_module: InMemorySessionKVStore
) -> None:
    assert current_clock() is sessionkv_clock
    assert store_shared_by_the_module.clock is SYSTEM_CLOCK


@pytest.mark.asyncio
@pytest.mark.sessionkv_backends("memory", "custom")
async def test_unmarked_tests_keep_the_system_clock(
    sessionkv_store: InMemorySessionKVStore,
    sessionkv_memory_store: InMemorySessionKVStore,
    sessionkv_registry_factory: Callable[..., SessionRegistry],
) -> None:
    assert current_clock() is SYSTEM_CLOCK
    assert sessionkv_store.clock is SYSTEM_CLOCK
    assert sessionkv_memory_store.clock is SYSTEM_CLOCK
    assert sessionkv_registry_factory().clock is SYSTEM_CLOCK
