"""The certify backends never show a Redis password: not in a factory's name, its repr, nor a report or error."""

from __future__ import annotations

import socket

import pytest

from sessionkv.testing.certify import TargetError, backends, prepare_backend


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_a_redis_factory_is_named_without_its_password() -> None:
    factory = backends.redis_store_factory("redis://agent:s3cret@127.0.0.1:6390/0?password=hunter2", indexed=True)
    for shown in (factory.__qualname__, repr(factory)):
        assert "s3cret" not in shown
        assert "hunter2" not in shown
        assert "redis://***@127.0.0.1:6390/0?password=***" in shown


@pytest.mark.asyncio
async def test_an_unreachable_redis_target_is_reported_without_its_password() -> None:
    factory = backends.redis_store_factory(f"redis://agent:s3cret@127.0.0.1:{_closed_port()}/0")
    with pytest.raises(TargetError) as info:
        await prepare_backend(factory)
    assert "redis_store_factory('redis://***@127.0.0.1:" in str(info.value)
    assert "s3cret" not in str(info.value)
