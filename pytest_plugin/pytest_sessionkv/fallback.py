"""Stand-ins for the async fixtures when pytest-asyncio is missing: each skips and names the extra to install."""

from __future__ import annotations

from collections.abc import Callable

import pytest

STAND_INS = (
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
)
"""Every fixture of ``pytest_sessionkv.fixtures`` and ``pytest_sessionkv.virtual_time`` (a test keeps them equal)."""

__all__ = ["STAND_INS", *STAND_INS]


def _needs_testing_extra(name: str) -> Callable[..., None]:
    def fixture() -> None:
        pytest.skip(f"{name} needs pytest-asyncio: install the testing extra: pip install 'sessionkv[testing]'")

    return pytest.fixture(name=name)(fixture)


globals().update({name: _needs_testing_extra(name) for name in STAND_INS})
