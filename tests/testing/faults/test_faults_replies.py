"""The fate of a command and its reply: lost after the server ran it, dropped before, delayed, cut mid-frame."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest
import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from sessionkv.testing.faults import CutReply, DelayReply, DropCommand, LoseReply, RedisFaultProxy

if TYPE_CHECKING:
    from faults_fixtures import ClientFactory

pytest_plugins = ["faults_fixtures"]


@pytest.mark.asyncio
async def test_lose_reply_the_write_is_applied_but_the_client_sees_a_connection_error(
    client: aioredis.Redis, proxy: RedisFaultProxy, redis_client: aioredis.Redis
) -> None:
    proxy.add(LoseReply(command="SET"))
    with pytest.raises(redis.exceptions.ConnectionError):
        await client.set("applied", "yes")
    assert await redis_client.get("applied") == b"yes"


@pytest.mark.asyncio
async def test_lose_reply_after_exec_the_whole_transaction_is_committed(
    client: aioredis.Redis, proxy: RedisFaultProxy, redis_client: aioredis.Redis
) -> None:
    proxy.add(LoseReply(command="EXEC"))
    pipe = client.pipeline(transaction=True)
    pipe.set("a", "1")
    pipe.incr("counter")
    with pytest.raises(redis.exceptions.ConnectionError):
        await pipe.execute()
    await pipe.reset()  # type: ignore[no-untyped-call]
    assert await redis_client.get("a") == b"1"
    assert await redis_client.get("counter") == b"1"


@pytest.mark.asyncio
async def test_lose_reply_makes_a_retrying_client_apply_a_non_idempotent_command_twice(
    connect: ClientFactory, proxy: RedisFaultProxy, redis_client: aioredis.Redis
) -> None:
    retrying = connect(retry=Retry(NoBackoff(), 1))
    proxy.add(LoseReply(command="INCRBY", times=1))  # redis-py sends INCR as INCRBY
    assert await retrying.incr("counter") == 2  # the retry saw the first, lost, increment
    assert await redis_client.get("counter") == b"2"


@pytest.mark.asyncio
async def test_drop_command_the_server_never_sees_it(
    client: aioredis.Redis, proxy: RedisFaultProxy, redis_client: aioredis.Redis
) -> None:
    proxy.add(DropCommand(command="SET", key_pattern="dropped"))
    with pytest.raises(redis.exceptions.ConnectionError):
        await client.set("dropped", "1")
    assert await redis_client.get("dropped") is None
    assert await client.set("kept", "1")  # a new connection, unaffected
    assert await redis_client.get("kept") == b"1"


@pytest.mark.asyncio
async def test_drop_command_in_a_pipeline_forwards_what_came_before(
    client: aioredis.Redis, proxy: RedisFaultProxy, redis_client: aioredis.Redis
) -> None:
    proxy.add(DropCommand(command="SET", key_pattern="second"))
    pipe = client.pipeline(transaction=False)
    pipe.set("first", "1")
    pipe.set("second", "2")
    pipe.set("third", "3")
    with pytest.raises(redis.exceptions.ConnectionError):
        await pipe.execute()
    await pipe.reset()  # type: ignore[no-untyped-call]
    assert await redis_client.get("first") == b"1"
    assert await redis_client.exists("second", "third") == 0


@pytest.mark.asyncio
async def test_delay_reply_holds_one_reply_and_keeps_order(client: aioredis.Redis, proxy: RedisFaultProxy) -> None:
    await client.ping()
    proxy.add(DelayReply(200, command="GET", key_pattern="slow"))
    start = time.perf_counter()
    async with client.pipeline(transaction=False) as pipe:
        pipe.set("slow", "s")
        pipe.get("slow")
        pipe.set("fast", "f")
        pipe.get("fast")
        assert await pipe.execute() == [True, b"s", True, b"f"]
    assert time.perf_counter() - start >= 0.195
    applied = [(e.command_name, e.detail) for e in proxy.transcript.events(kind="fault")]
    assert applied == [("GET", "delay_reply: reply held 200 ms")]


@pytest.mark.asyncio
async def test_cut_reply_delivers_part_of_the_reply_then_resets(
    client: aioredis.Redis, proxy: RedisFaultProxy, redis_client: aioredis.Redis
) -> None:
    await redis_client.set("value", b"v" * 1000)
    proxy.add(CutReply(command="GETSET", keep_bytes=10))
    with pytest.raises(redis.exceptions.ConnectionError):
        await client.getset("value", "new")
    assert await redis_client.get("value") == b"new"  # the command ran; only its reply was cut
    assert "reply cut mid-frame" in proxy.transcript.format()
