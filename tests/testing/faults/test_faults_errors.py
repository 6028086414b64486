"""error_reply: the error a stressed server would give, seen by redis-py as the exception it would raise."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import redis.asyncio as aioredis
import redis.exceptions

from sessionkv.testing.faults import ErrorReply, RedisFaultProxy

if TYPE_CHECKING:
    from faults_fixtures import ClientFactory

pytest_plugins = ["faults_fixtures"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("error", "exception", "message"),
    [
        ("loading", redis.exceptions.BusyLoadingError, "loading the dataset"),
        ("readonly", redis.exceptions.ReadOnlyError, "read only replica"),
        ("oom", redis.exceptions.OutOfMemoryError, "maxmemory"),
        ("tryagain", redis.exceptions.TryAgainError, "rehashing"),
        ("busy", redis.exceptions.ResponseError, "BUSY Redis is busy"),
        ("masterdown", redis.exceptions.MasterDownError, "Link with MASTER is down"),
        ("err", redis.exceptions.ResponseError, "injected fault"),
        ("NOPERM this user has no permissions", redis.exceptions.NoPermissionError, "no permissions"),
        ("maxclients", redis.exceptions.ConnectionError, "max number of clients reached"),
    ],
)
async def test_error_reply_raises_what_the_real_error_raises_and_the_command_is_not_run(
    client: aioredis.Redis,
    proxy: RedisFaultProxy,
    redis_client: aioredis.Redis,
    error: str,
    exception: type[Exception],
    message: str,
) -> None:
    await client.ping()
    proxy.add(ErrorReply(command="SET", error=error))
    with pytest.raises(exception, match=message) as info:
        await client.set("k", "v")
    if exception is redis.exceptions.ResponseError:
        assert type(info.value) is redis.exceptions.ResponseError
    assert await redis_client.get("k") is None


@pytest.mark.asyncio
async def test_maxclients_closes_the_connection_as_the_server_would(
    client: aioredis.Redis, proxy: RedisFaultProxy
) -> None:
    await client.ping()
    proxy.add(ErrorReply(command="GET", error="maxclients"))
    with pytest.raises(redis.exceptions.ConnectionError):
        await client.get("k")
    closes = [e.detail for e in proxy.transcript.events(kind="close")]
    assert "closed after an injected error" in closes


@pytest.mark.asyncio
async def test_error_reply_selects_by_key_pattern_and_nth(client: aioredis.Redis, proxy: RedisFaultProxy) -> None:
    proxy.add(ErrorReply(command="GET", key_pattern="session:*", nth=2, error="loading"))
    assert await client.get("session:a") is None  # 1st match
    assert await client.get("other") is None  # not a match
    with pytest.raises(redis.exceptions.BusyLoadingError):
        await client.get("session:b")  # 2nd match
    assert await client.get("session:c") is None  # 3rd match


@pytest.mark.asyncio
async def test_error_reply_times_bounds_how_often_it_acts(client: aioredis.Redis, proxy: RedisFaultProxy) -> None:
    handle = proxy.add(ErrorReply(command="GET", times=2))
    for _ in range(2):
        with pytest.raises(redis.exceptions.ResponseError):
            await client.get("k")
    assert await client.get("k") is None
    assert (handle.matched, handle.applied) == (3, 2)


@pytest.mark.asyncio
async def test_error_reply_in_a_pipeline_keeps_every_reply_in_its_place(
    client: aioredis.Redis, proxy: RedisFaultProxy, redis_client: aioredis.Redis
) -> None:
    await client.set("x", "1")
    proxy.add(ErrorReply(command="INCRBY", key_pattern="bad*", error="readonly"))  # redis-py sends INCR as INCRBY
    async with client.pipeline(transaction=False) as pipe:
        pipe.incr("x")
        pipe.incr("bad1")
        pipe.incr("x")
        pipe.incr("bad2")
        pipe.get("x")
        results = await pipe.execute(raise_on_error=False)
    assert results[0] == 2
    assert isinstance(results[1], redis.exceptions.ReadOnlyError)
    assert results[2] == 3
    assert isinstance(results[3], redis.exceptions.ReadOnlyError)
    assert results[4] == b"3"
    assert await redis_client.exists("bad1", "bad2") == 0


@pytest.mark.asyncio
async def test_error_reply_targets_one_connection_by_client_name(
    connect: ClientFactory, proxy: RedisFaultProxy
) -> None:
    victim = connect(client_name="victim")
    bystander = connect(client_name="bystander")
    proxy.add(ErrorReply(command="GET", connection="victim", error="masterdown"))
    assert await bystander.get("k") is None
    with pytest.raises(redis.exceptions.MasterDownError):
        await victim.get("k")
    assert await bystander.get("k") is None
