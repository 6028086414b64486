"""Command faults inside MULTI/EXEC: the proxy keeps the server's transaction state what a real server would make it.

redis 7 semantics, checked here against the real server: a command rejected while queuing flags the transaction and
EXEC answers ``-EXECABORT Transaction discarded because of previous errors.``; a rejected EXEC ends the transaction.
So an error the proxy injects on a queued command, or on EXEC, must leave the server connection out of MULTI with
nothing committed, and the next command on the same connection must get its own reply (not ``+QUEUED``).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import hiredis
import pytest
import redis.asyncio as aioredis
import redis.exceptions

from sessionkv.testing import RedisServer
from sessionkv.testing.faults import DropCommand, ErrorReply, LoseReply, RedisFaultProxy
from sessionkv.testing.faults.resp import encode_command

if TYPE_CHECKING:
    from faults_fixtures import RawClient, RawFactory

pytest_plugins = ["faults_fixtures"]

EXECABORT = "EXECABORT Transaction discarded because of previous errors."


def _plain(reply: object) -> object:
    """hiredis replies with errors as their text, so that two runs can be compared."""
    return f"error: {reply}" if isinstance(reply, hiredis.ReplyError) else reply


async def _clients_in_multi(direct: aioredis.Redis) -> list[str]:
    """Server connections inside MULTI (``x`` in their CLIENT LIST flags)."""
    return [str(c.get("addr")) for c in await direct.client_list() if "x" in str(c.get("flags", ""))]


async def _direct_replies(redis_server: RedisServer, payload: bytes, count: int) -> list[object]:
    """Send ``payload`` straight to the server (no proxy) and read ``count`` replies."""
    reader, writer = await asyncio.open_connection(redis_server.host, redis_server.port)
    parser = hiredis.Reader()
    replies: list[object] = []
    try:
        writer.write(payload)
        await writer.drain()
        while len(replies) < count:
            while (value := parser.gets()) is not False:
                replies.append(_plain(value))
            if len(replies) < count:
                chunk = await reader.read(65536)
                assert chunk, "the server closed the connection"
                parser.feed(chunk)
    finally:
        writer.close()
        await writer.wait_closed()
    return replies


def _transaction(rejected: list[bytes]) -> list[list[bytes]]:
    """MULTI, SET t:1, ``rejected``, SET t:3, EXEC, then GET t:1 and MULTI/DISCARD on the same connection."""
    return [
        [b"MULTI"],
        [b"SET", b"t:1", b"1"],
        rejected,
        [b"SET", b"t:3", b"3"],
        [b"EXEC"],
        [b"GET", b"t:1"],
        [b"MULTI"],
        [b"DISCARD"],
    ]


async def _transaction_with(conn: RawClient, rejected: list[bytes]) -> list[object]:
    """:func:`_transaction` through the proxy, pipelined in one write."""
    commands = _transaction(rejected)
    await conn.send(b"".join(encode_command(command) for command in commands))
    return [_plain(await conn.reply()) for _ in commands]


@pytest.mark.asyncio
async def test_error_reply_on_a_queued_command_aborts_the_transaction_exactly_as_the_real_server_does(
    raw: RawFactory, proxy: RedisFaultProxy, redis_server: RedisServer, redis_client: aioredis.Redis
) -> None:
    # Reference: the real server rejects a queued command (unknown command) by itself.
    reference = _transaction([b"NOSUCH", b"t:2"])
    expected = await _direct_replies(redis_server, b"".join(encode_command(c) for c in reference), len(reference))
    assert expected[4] == f"error: {EXECABORT}"
    assert expected[5] is None  # the transaction was discarded and the connection is out of MULTI
    assert await redis_client.exists("t:1", "t:2", "t:3") == 0

    # The same transaction through the proxy, a plain SET rejected by error_reply with the server's own words.
    rejection = str(expected[2]).removeprefix("error: ")
    handle = proxy.add(ErrorReply(command="SET", key_pattern="t:2", error=rejection))
    assert await _transaction_with(await raw(), [b"SET", b"t:2", b"2"]) == expected
    assert handle.applied == 1
    assert await redis_client.exists("t:1", "t:2", "t:3") == 0
    assert await _clients_in_multi(redis_client) == []
    exec_replies = [e for e in proxy.transcript.events(kind="reply") if e.command_name == "EXEC"]
    assert [(e.reply, "DISCARD" in e.detail) for e in exec_replies] == [(b"-" + EXECABORT.encode() + b"\r\n", True)]
    assert "(EXEC sent upstream as DISCARD" in proxy.transcript.format()


@pytest.mark.asyncio
async def test_error_reply_on_one_set_of_a_pipelined_transaction_commits_none_of_it(
    client: aioredis.Redis, proxy: RedisFaultProxy, redis_client: aioredis.Redis
) -> None:
    await client.ping()
    proxy.add(ErrorReply(command="SET", error="oom", nth=2))
    async with client.pipeline(transaction=True) as pipe:
        for i in (1, 2, 3):
            pipe.set(f"m{i}", i)
        with pytest.raises(redis.exceptions.OutOfMemoryError):  # redis-py raises the queued error over EXECABORT
            await pipe.execute()
    assert await redis_client.mget(["m1", "m2", "m3"]) == [None, None, None]
    assert await _clients_in_multi(redis_client) == []
    assert await client.get("m1") is None  # the same connection, back to normal
    assert await client.set("m1", "x")
    assert await redis_client.get("m1") == b"x"
    assert len(proxy.connections) == 1


@pytest.mark.asyncio
async def test_error_reply_on_exec_ends_the_transaction_on_the_server(
    client: aioredis.Redis, proxy: RedisFaultProxy, redis_client: aioredis.Redis
) -> None:
    await client.ping()
    handle = proxy.add(ErrorReply(command="EXEC", error="oom", times=1))
    async with client.pipeline(transaction=True) as pipe:
        pipe.set("e:1", "1")
        pipe.incr("e:n")
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            await pipe.execute()
    assert handle.applied == 1
    assert await _clients_in_multi(redis_client) == []
    assert await client.get("e:1") is None  # before the fix: b"QUEUED"
    assert await client.incr("e:n") == 1  # the queued INCR was discarded, not committed later
    assert await redis_client.exists("e:1") == 0
    assert len(proxy.connections) == 1


@pytest.mark.asyncio
async def test_error_reply_on_exec_outside_multi_sends_nothing_upstream(
    raw: RawFactory, proxy: RedisFaultProxy
) -> None:
    proxy.add(ErrorReply(command="EXEC", error="err"))
    conn = await raw()
    await conn.send(encode_command([b"EXEC"]) + encode_command([b"PING"]))
    assert [_plain(await conn.reply()), _plain(await conn.reply())] == ["error: ERR injected fault", b"PONG"]
    assert [e.command_name for e in proxy.transcript.events(kind="reply")] == ["PING"]  # no DISCARD was needed


@pytest.mark.asyncio
async def test_lose_reply_on_an_aborted_exec_loses_the_execabort_and_commits_nothing(
    client: aioredis.Redis, proxy: RedisFaultProxy, redis_client: aioredis.Redis
) -> None:
    await client.ping()
    proxy.add(ErrorReply(command="SET", error="readonly", nth=1))
    proxy.add(LoseReply(command="EXEC"))
    async with client.pipeline(transaction=True) as pipe:
        pipe.set("l:1", "1")
        pipe.set("l:2", "2")
        with pytest.raises(redis.exceptions.ConnectionError):
            await pipe.execute()
    assert await redis_client.exists("l:1", "l:2") == 0
    exec_replies = [e.reply for e in proxy.transcript.events(kind="reply") if e.command_name == "EXEC"]
    assert exec_replies == [b"-" + EXECABORT.encode() + b"\r\n"]


@pytest.mark.asyncio
@pytest.mark.parametrize("command", ["MULTI", "EXEC"])
async def test_drop_command_on_multi_or_exec_commits_nothing_and_leaves_no_open_transaction(
    command: str, client: aioredis.Redis, proxy: RedisFaultProxy, redis_client: aioredis.Redis
) -> None:
    await client.ping()
    handle = proxy.add(DropCommand(command=command))
    async with client.pipeline(transaction=True) as pipe:
        pipe.set("d:1", "1")
        pipe.incr("d:n")
        with pytest.raises(redis.exceptions.ConnectionError):
            await pipe.execute()
    assert handle.applied == 1
    for _ in range(500):  # the server sees the RST on its own schedule (up to 5 s)
        if not await _clients_in_multi(redis_client):
            break
        await asyncio.sleep(0.01)
    assert await _clients_in_multi(redis_client) == []
    assert await redis_client.exists("d:1", "d:n") == 0
    handle.remove()
    assert await client.incr("d:n") == 1


@pytest.mark.asyncio
async def test_error_reply_on_multi_runs_the_commands_at_once_as_after_a_refused_multi(
    raw: RawFactory, proxy: RedisFaultProxy, redis_client: aioredis.Redis
) -> None:
    proxy.add(ErrorReply(command="MULTI", error="err"))
    conn = await raw()
    commands = [[b"MULTI"], [b"SET", b"r", b"1"], [b"EXEC"]]
    await conn.send(b"".join(encode_command(command) for command in commands))
    replies = [_plain(await conn.reply()) for _ in commands]
    assert replies == ["error: ERR injected fault", b"OK", "error: ERR EXEC without MULTI"]
    assert await redis_client.get("r") == b"1"


@pytest.mark.asyncio
async def test_error_reply_on_discard_inside_multi_keeps_the_transaction_and_flags_it(
    raw: RawFactory, proxy: RedisFaultProxy, redis_client: aioredis.Redis
) -> None:
    proxy.add(ErrorReply(command="DISCARD", error="loading"))
    conn = await raw()
    commands = [[b"MULTI"], [b"SET", b"q", b"1"], [b"DISCARD"], [b"EXEC"], [b"GET", b"q"]]
    await conn.send(b"".join(encode_command(command) for command in commands))
    replies = [_plain(await conn.reply()) for _ in commands]
    loading = "error: LOADING Redis is loading the dataset in memory"
    assert replies == [b"OK", b"QUEUED", loading, f"error: {EXECABORT}", None]
    assert await redis_client.exists("q") == 0


@pytest.mark.asyncio
async def test_error_reply_on_exec_that_closes_the_connection_still_ends_the_transaction_first(
    raw: RawFactory, proxy: RedisFaultProxy, redis_client: aioredis.Redis
) -> None:
    proxy.add(ErrorReply(command="EXEC", error="maxclients"))
    conn = await raw()
    commands = [[b"MULTI"], [b"SET", b"c", b"1"], [b"EXEC"]]
    await conn.send(b"".join(encode_command(command) for command in commands))
    replies = [_plain(await conn.reply()) for _ in commands]
    assert replies == [b"OK", b"QUEUED", "error: ERR max number of clients reached"]
    with pytest.raises(EOFError):
        await conn.reply()
    assert await redis_client.exists("c") == 0
    exec_replies = [e.detail for e in proxy.transcript.events(kind="reply") if e.command_name == "EXEC"]
    assert len(exec_replies) == 1
    assert "DISCARD" in exec_replies[0]
