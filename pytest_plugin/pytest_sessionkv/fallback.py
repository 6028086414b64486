"""Stand-ins for the async fixtures when pytest-asyncio is missing: each skips and names the extra to install."""

from __future__ import annotations

from collections.abc import Callable

import pytest

__all__ = [
    "sessionkv_clock",
    "sessionkv_custom_store",
    "sessionkv_fakeredis_store",
    "sessionkv_memory_store",
    "sessionkv_proxied_redis_store",
    "sessionkv_redis_client",
    "sessionkv_redis_proxy",
    "sessionkv_redis_store",
    "sessionkv_registry_factory",
    "sessionkv_store",
    "sessionkv_virtual_store",
]


def _needs_testing_extra(name: str) -> Callable[..., None]:
    def fixture() -> None:
        pytest.skip(f"{name} needs pytest-asyncio: install the testing extra: pip install 'sessionkv[testing]'")

    return pytest.fixture(name=name)(fixture)


sessionkv_redis_client = _needs_testing_extra("sessionkv_redis_client")
sessionkv_memory_store = _needs_testing_extra("sessionkv_memory_store")
sessionkv_redis_store = _needs_testing_extra("sessionkv_redis_store")
sessionkv_fakeredis_store = _needs_testing_extra("sessionkv_fakeredis_store")
sessionkv_store = _needs_testing_extra("sessionkv_store")
sessionkv_custom_store = _needs_testing_extra("sessionkv_custom_store")
sessionkv_clock = _needs_testing_extra("sessionkv_clock")
sessionkv_redis_proxy = _needs_testing_extra("sessionkv_redis_proxy")
sessionkv_proxied_redis_store = _needs_testing_extra("sessionkv_proxied_redis_store")
sessionkv_virtual_store = _needs_testing_extra("sessionkv_virtual_store")
sessionkv_registry_factory = _needs_testing_extra("sessionkv_registry_factory")
