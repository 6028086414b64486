"""The proxy itself: pass-through, pipelining, partial frames, transcript, run-time faults, determinism, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import TYPE_CHECKING

import pytest
import redis.asyncio as aioredis
import redis.exceptions

if TYPE_CHECKING:
    from faults_fixtures import ClientFactory, RawFactory
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from sessionkv.testing import RedisServer
from sessionkv.testing.faults import (
    DelayReply,
    ErrorReply,
    RedisFaultProxy,
    ResetPeer,
    Timeout,
    Transcript,
    TranscriptEvent,
)
from sessionkv.testing.faults.resp import encode_command

# The fixtures live in a module of their own: a second conftest.py would be a duplicate module "conftest" to mypy.
pytest_plugins = ["faults_fixtures"]


@pytest.mark.asyncio
async def test_commands_and_large_values_pass_through_unchanged(
    client: aioredis.Redis, redis_client: aioredis.Redis
) -> None:
    value = bytes(range(256)) * 4000  # 1 MB, every byte value, CRLF included
    await client.set("k", value)
    assert await client.get("k") == value
    assert await redis_client.get("k") == value


@pytest.mark.asyncio
async def test_a_thousand_pipelined_commands_get_their_own_replies(
    client: aioredis.Redis, proxy: RedisFaultProxy
) -> None:
    async with client.pipeline(transaction=False) as pipe:
        for i in range(500):
            pipe.set(f"k{i}", f"v{i}")
            pipe.get(f"k{i}")
        results = await pipe.execute()
    assert results == [item for i in range(500) for item in (True, f"v{i}".encode())]
    replies = [e for e in proxy.transcript.events(kind="reply") if e.command_name in ("SET", "GET")]
    assert len(replies) == 1000
    assert all(e.reply == b"+OK\r\n" for e in replies if e.command_name == "SET")
    assert all(e.reply.endswith(e.command[1].replace(b"k", b"v") + b"\r\n") for e in replies if e.command_name == "GET")


@pytest.mark.asyncio
async def test_commands_split_at_every_byte_are_framed_whole(raw: RawFactory, proxy: RedisFaultProxy) -> None:
    conn = await raw()
    stream = encode_command([b"SET", b"split", b"a\r\nb"]) + encode_command([b"GET", b"split"])
    for i in range(len(stream)):
        await conn.send(stream[i : i + 1])
        await asyncio.sleep(0.001)
    assert await conn.reply() == b"OK"
    assert await conn.reply() == b"a\r\nb"
    assert proxy.transcript.commands(connection=0) == [(b"SET", b"split", b"a\r\nb"), (b"GET", b"split")]


@pytest.mark.asyncio
async def test_inline_commands_are_understood(raw: RawFactory, proxy: RedisFaultProxy) -> None:
    proxy.add(ErrorReply(command="PING", error="busy"))
    conn = await raw()
    await conn.send(b"PING\r\nECHO hi\r\n")
    busy = await conn.reply()
    assert isinstance(busy, Exception)
    assert str(busy).startswith("BUSY")
    assert await conn.reply() == b"hi"


@pytest.mark.asyncio
async def test_faults_added_and_removed_at_run_time_act_only_while_installed(
    client: aioredis.Redis, proxy: RedisFaultProxy
) -> None:
    assert await client.ping()
    with proxy.add(ErrorReply(command="PING", error="err")) as handle:
        with pytest.raises(redis.exceptions.ResponseError, match="injected fault"):
            await client.ping()
        assert proxy.faults == (handle,)
    assert not proxy.faults
    assert await client.ping()
    assert handle.applied == 1
    first = proxy.add(ErrorReply(command="PING"))
    proxy.add(ErrorReply(command="ECHO"))
    proxy.remove(first)
    proxy.remove(first)  # idempotent
    assert await client.ping()
    proxy.clear()
    assert await client.echo("x") == b"x"


@pytest.mark.asyncio
async def test_transcript_records_commands_replies_and_faults_in_order(
    connect: ClientFactory, proxy: RedisFaultProxy
) -> None:
    client = connect(client_name="reporter")
    proxy.add(ErrorReply(command="GET", key_pattern="missing:*", error="loading"))
    await client.set("present", "1")
    with pytest.raises(redis.exceptions.BusyLoadingError):
        await client.get("missing:1")
    ours = [e for e in proxy.transcript.events(connection=0) if e.command_name in ("SET", "GET")]
    assert [(e.kind, e.command) for e in ours] == [
        ("command", (b"SET", b"present", b"1")),
        ("reply", (b"SET", b"present", b"1")),
        ("command", (b"GET", b"missing:1")),
        ("fault", (b"GET", b"missing:1")),
    ]
    assert ours[-1].fault == "error_reply"
    assert [e.time_ns for e in ours] == sorted(e.time_ns for e in ours)
    assert proxy.connections[0].client_name == "reporter"
    report = proxy.transcript.format()
    assert "> SET present 1" in report
    assert "! error_reply on GET missing:1: error: LOADING" in report


async def _decisions_with_seed(redis_server: RedisServer, seed: int) -> list[tuple[int, str, str, str]]:
    async with RedisFaultProxy(redis_server.host, redis_server.port, seed=seed) as proxy:
        proxy.add(ErrorReply(command="GET", error="busy", probability=0.5))
        proxy.add(DelayReply(1, command="SET", probability=0.3))
        client = aioredis.Redis(host=proxy.host, port=proxy.port, retry=Retry(NoBackoff(), 0))
        try:
            for i in range(40):
                await client.set(f"d{i}", i)
                with contextlib.suppress(redis.exceptions.ResponseError):
                    await client.get(f"d{i}")
        finally:
            await client.aclose()
        return proxy.transcript.fault_decisions()


@pytest.mark.asyncio
async def test_same_seed_same_fault_decisions_other_seed_other_decisions(redis_server: RedisServer) -> None:
    first = await _decisions_with_seed(redis_server, seed=7)
    again = await _decisions_with_seed(redis_server, seed=7)
    other = await _decisions_with_seed(redis_server, seed=8)
    assert first == again
    assert first != other
    errors = [d for d in first if d[2] == "error_reply"]
    delays = [d for d in first if d[2] == "delay_reply"]
    assert 0 < len(errors) < 40
    assert 0 < len(delays) < 40


@pytest.mark.asyncio
async def test_upstream_unreachable_reaches_the_client_as_a_connection_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    async with RedisFaultProxy("127.0.0.1", dead_port) as proxy:
        client = aioredis.Redis(host=proxy.host, port=proxy.port, retry=Retry(NoBackoff(), 0))
        try:
            with pytest.raises(redis.exceptions.ConnectionError):
                await client.ping()
        finally:
            await client.aclose()
        assert "unreachable" in proxy.transcript.format()


@pytest.mark.asyncio
async def test_stop_closes_live_connections_and_leaves_no_task_or_listener(redis_server: RedisServer) -> None:
    before = asyncio.all_tasks()
    proxy = RedisFaultProxy(redis_server.host, redis_server.port)
    await proxy.start()
    client = aioredis.Redis(host=proxy.host, port=proxy.port, retry=Retry(NoBackoff(), 0))
    try:
        assert await client.ping()
        proxy.add(Timeout(direction="upstream"))  # a command is held inside the proxy when it stops
        pending = asyncio.ensure_future(client.get("never"))
        await asyncio.sleep(0.05)
        await proxy.stop()
        await proxy.stop()  # idempotent
        with pytest.raises(redis.exceptions.ConnectionError):
            await pending
        assert asyncio.all_tasks() <= before | {asyncio.current_task()}
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(proxy.host, proxy.port)
    finally:
        await client.aclose()


@pytest.mark.asyncio
async def test_pubsub_passes_through_and_later_commands_still_work(
    connect: ClientFactory, proxy: RedisFaultProxy, redis_client: aioredis.Redis
) -> None:
    subscriber = connect()
    pubsub = subscriber.pubsub()
    try:
        await pubsub.subscribe("news")
        assert (await pubsub.get_message(timeout=2.0) or {}).get("type") == "subscribe"
        await redis_client.publish("news", "hello")
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2.0)
        assert message is not None
        assert message["data"] == b"hello"
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
    proxy.add(ErrorReply(command="GET", error="loading"))
    with pytest.raises(redis.exceptions.BusyLoadingError):
        await connect().get("k")


@pytest.mark.asyncio
async def test_faults_target_a_connection_by_accept_index(connect: ClientFactory, proxy: RedisFaultProxy) -> None:
    first, second = connect(), connect()
    await first.ping()
    await second.ping()
    proxy.add(ErrorReply(command="GET", connection=1, error="readonly"))
    assert await first.get("k") is None
    with pytest.raises(redis.exceptions.ReadOnlyError):
        await second.get("k")


def test_transcript_limit_keeps_the_newest_events_and_counts_the_dropped() -> None:
    transcript = Transcript(limit=3)
    for i in range(5):
        transcript.record(TranscriptEvent(i, 0, "command", (b"GET", str(i).encode())))
    assert [e.command[1] for e in transcript] == [b"2", b"3", b"4"]
    assert transcript.dropped == 2
    assert transcript.format().startswith("(2 older events dropped)")
    with pytest.raises(ValueError, match="limit"):
        Transcript(limit=0)


@pytest.mark.asyncio
async def test_stop_does_not_hang_on_a_client_that_stopped_reading(redis_server: RedisServer) -> None:
    proxy = RedisFaultProxy(redis_server.host, redis_server.port)
    await proxy.start()
    _, writer = await asyncio.open_connection(proxy.host, proxy.port)
    try:
        big = encode_command([b"SET", b"big", b"x" * 4_000_000])
        writer.write(big + encode_command([b"GET", b"big"]) * 8)  # 32 MB of replies this client never reads
        await writer.drain()
        await asyncio.sleep(0.5)
        await asyncio.wait_for(proxy.stop(), 10)
        assert not proxy.connections[0].open
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@pytest.mark.asyncio
async def test_raw_mode_forwards_bytes_supports_byte_faults_and_refuses_command_faults(
    redis_server: RedisServer,
) -> None:
    async with RedisFaultProxy(redis_server.host, redis_server.port, resp=False) as proxy:
        with pytest.raises(ValueError, match="resp=True"):
            proxy.add(ErrorReply(command="GET"))
        client = aioredis.Redis(host=proxy.host, port=proxy.port, retry=Retry(NoBackoff(), 0))
        try:
            assert await client.echo("raw") == b"raw"
            proxy.add(ResetPeer())
            with pytest.raises(redis.exceptions.ConnectionError):
                await client.echo("raw")
        finally:
            await client.aclose()
        assert proxy.transcript.commands() == []
        assert [e.fault for e in proxy.transcript.events(kind="fault")] == ["reset_peer"]
