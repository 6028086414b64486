"""Defects a review found in the proxy, each with the test that would have caught it: SCAN memory shared between
iterations, forgotten fake cursors reaching the server, reply pairing after a line the server never answers, commands
lost by a reset, and faults whose exceptions silently stopped a connection."""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import pytest
import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from sessionkv.redis_store import RedisSessionKVStore
from sessionkv.testing import RedisServer
from sessionkv.testing.faults import (
    ByteFault,
    Command,
    CommandContext,
    CommandFault,
    CutReply,
    DropCommand,
    LoseReply,
    RedisFaultProxy,
    ScanDuplicates,
    ScanEmptyPages,
    Stream,
    Verdict,
)
from sessionkv.testing.faults import proxy as proxy_module
from sessionkv.testing.faults.resp import encode_command

if TYPE_CHECKING:
    from faults_fixtures import ClientFactory, RawClient, RawFactory

pytest_plugins = ["faults_fixtures"]


# -- SCAN faults --------------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_scan_duplicates_keeps_concurrent_iterations_apart(
    connect: ClientFactory, proxy: RedisFaultProxy, redis_client: aioredis.Redis
) -> None:
    a_keys = {f"a/{i}".encode() for i in range(400)}
    b_keys = {f"b/{i}".encode() for i in range(400)}
    await redis_client.mset(dict.fromkeys(a_keys | b_keys, b"1"))
    proxy.add(ScanDuplicates())
    # Two connections, two iterations stepping in lock-step: with one shared memory keyed by cursor, each page's
    # cursor (the same on both, the keyspace being shared) fetched the other iteration's previous page.
    clients = [connect(), connect()]
    found: list[list[bytes]] = [[], []]
    cursors = [0, 0]
    patterns = ["a/*", "b/*"]
    done = [False, False]
    while not all(done):
        for i in (0, 1):
            if not done[i]:
                cursors[i], page = await clients[i].scan(cursor=cursors[i], match=patterns[i], count=60)
                found[i].extend(key for key in page if isinstance(key, bytes))
                done[i] = cursors[i] == 0
    assert set(found[0]) == a_keys
    assert set(found[1]) == b_keys
    assert len(found[0]) > len(a_keys)  # the fault did act


@pytest.mark.asyncio
async def test_scan_duplicates_keeps_two_iterations_on_one_connection_apart(
    raw: RawFactory, proxy: RedisFaultProxy, redis_client: aioredis.Redis
) -> None:
    await redis_client.mset(dict.fromkeys([f"a/{i}" for i in range(300)] + [f"b/{i}" for i in range(300)], b"1"))
    proxy.add(ScanDuplicates())
    conn = await raw()
    cursors = {b"a/*": b"0", b"b/*": b"0"}
    seen: dict[bytes, set[bytes]] = {b"a/*": set(), b"b/*": set()}
    done: set[bytes] = set()
    while len(done) < 2:
        for pattern in (b"a/*", b"b/*"):
            if pattern in done:
                continue
            await conn.send(encode_command([b"SCAN", cursors[pattern], b"MATCH", pattern, b"COUNT", b"50"]))
            reply = await conn.reply()
            assert isinstance(reply, list)
            cursors[pattern], page = reply
            seen[pattern].update(page)
            if cursors[pattern] == b"0":
                done.add(pattern)
    assert all(key.startswith(b"a/") for key in seen[b"a/*"])
    assert all(key.startswith(b"b/") for key in seen[b"b/*"])
    assert len(seen[b"a/*"]) == len(seen[b"b/*"]) == 300


@pytest.mark.asyncio
async def test_a_forgotten_fake_cursor_is_refused_not_sent_to_the_server(
    raw: RawFactory, proxy: RedisFaultProxy, redis_client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(proxy_module, "_MAX_FAKE_CURSORS", 2)
    await redis_client.mset({f"k{i}": b"1" for i in range(50)})
    handle = proxy.add(ScanEmptyPages())
    conn = await raw()
    fakes = []
    for _ in range(3):  # the third fake cursor evicts the first
        await conn.send(encode_command([b"SCAN", b"0", b"COUNT", b"10"]))
        reply = await conn.reply()
        assert isinstance(reply, list)
        assert reply[1] == []
        fakes.append(reply[0])
    handle.remove()
    await conn.send(encode_command([b"SCAN", fakes[0], b"COUNT", b"10"]))
    refused = await conn.reply()
    assert isinstance(refused, Exception)
    assert "invalid cursor" in str(refused)
    sent = [e.command for e in proxy.transcript.events(kind="fault") if "forgotten" in e.detail]
    assert sent == [(b"SCAN", fakes[0], b"COUNT", b"10")]
    await conn.send(encode_command([b"SCAN", fakes[2], b"COUNT", b"100"]))  # a remembered one still works
    resumed = await conn.reply()
    assert isinstance(resumed, list)
    assert len(resumed[1]) == 50
    await conn.send(b"PING\r\n")
    assert await conn.reply() == b"PONG"  # replies still pair with their commands


# -- reply pairing ------------------------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("nothing", [b"\r\n", b"   \r\n", b"*0\r\n"], ids=["empty-line", "blank-line", "empty-array"])
async def test_a_line_the_server_never_answers_does_not_shift_replies(
    raw: RawFactory, proxy: RedisFaultProxy, nothing: bytes
) -> None:
    proxy.add(LoseReply(command="GET"))
    conn = await raw()
    await conn.send(nothing + encode_command([b"PING"]) + encode_command([b"ECHO", b"x"]))
    assert await conn.reply() == b"PONG"
    assert await conn.reply() == b"x"
    await conn.send(encode_command([b"GET", b"k"]))
    with pytest.raises((EOFError, ConnectionError)):
        await conn.reply()  # the GET's reply is the one lost
    replies = [(e.command, e.reply) for e in proxy.transcript.events(kind="reply")]
    assert replies[:2] == [((b"PING",), b"+PONG\r\n"), ((b"ECHO", b"x"), b"$1\r\nx\r\n")]
    assert all(e.command for e in proxy.transcript.events(kind="command"))  # nothing recorded for the empty line


# -- resets and fault errors --------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_dropped_command_still_lets_the_earlier_pipelined_ones_reach_the_server(
    client: aioredis.Redis, proxy: RedisFaultProxy, redis_client: aioredis.Redis
) -> None:
    proxy.add(DropCommand(command="GET"))
    big = b"v" * 1_000_000  # large enough to still be in flight when the reset comes
    async with client.pipeline(transaction=False) as pipe:
        pipe.set("first", big)
        pipe.set("second", b"2")
        pipe.get("first")
        with pytest.raises(redis.exceptions.ConnectionError):
            await pipe.execute()
    for _ in range(500):  # the server runs them once it has read them: bounded wait for its last command
        if await redis_client.exists("second"):
            break
        await asyncio.sleep(0.01)
    assert await redis_client.get("second") == b"2"
    assert await redis_client.strlen("first") == len(big)


@dataclass(frozen=True)
class _BrokenCommandFault(CommandFault):
    name: ClassVar[str] = "broken_command_fault"

    def act(self, command: Command, context: CommandContext) -> Verdict | None:
        raise RuntimeError("bug in a command fault")


@dataclass(frozen=True)
class _BrokenByteFault(ByteFault):
    name: ClassVar[str] = "broken_byte_fault"

    async def pipe(self, data: bytes, stream: Stream) -> None:
        raise RuntimeError("bug in a byte fault")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "fault",
    [_BrokenCommandFault(command="GET"), _BrokenByteFault(direction="downstream")],
    ids=["command-fault", "byte-fault"],
)
async def test_a_fault_that_raises_closes_its_connection_and_says_why(
    connect: ClientFactory, proxy: RedisFaultProxy, fault: CommandFault | ByteFault, caplog: pytest.LogCaptureFixture
) -> None:
    client = connect()
    await client.ping()  # connected before the fault: its replies must not stall silently either
    handle = proxy.add(fault)
    with (
        caplog.at_level(logging.ERROR, logger="sessionkv.testing.faults"),
        pytest.raises(redis.exceptions.ConnectionError),  # closed at once, not a socket timeout
    ):
        await client.get("k")
    assert any("bug in a" in record.getMessage() or record.exc_info for record in caplog.records)
    closes = [e.detail for e in proxy.transcript.events(kind="close")]
    assert any("RuntimeError('bug in a" in detail for detail in closes)
    handle.remove()
    assert await connect().ping()  # the proxy itself keeps serving


# -- unreachable upstream -----------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_unreachable_upstream_is_logged_once_per_interval_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with RedisServer() as server:
        port = server.port
    async with RedisFaultProxy("127.0.0.1", port) as proxy:  # nothing listens there any more
        with caplog.at_level(logging.WARNING, logger="sessionkv.testing.faults"):
            for _ in range(3):
                client = aioredis.Redis(host=proxy.host, port=proxy.port, retry=Retry(NoBackoff(), 0))
                with pytest.raises(redis.exceptions.ConnectionError):
                    await client.ping()
                await client.aclose()
    messages = [r.getMessage() for r in caplog.records if r.name == "sessionkv.testing.faults"]
    assert len(messages) == 1  # rate-limited...
    assert f"127.0.0.1:{port} unreachable" in messages[0]
    assert "ConnectionRefusedError" in messages[0]
    assert len([e for e in proxy.transcript.events(kind="close") if "unreachable" in e.detail]) >= 3


@pytest.mark.asyncio
async def test_the_proxy_command_warns_at_start_when_the_upstream_refuses() -> None:
    with RedisServer() as server:
        port = server.port
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sessionkv.testing.faults.cli",
        "--upstream",
        f"127.0.0.1:{port}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        assert process.stderr is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        assert line.startswith("listening ")
        warning = (await asyncio.wait_for(process.stderr.readline(), 30)).decode()
        assert f"upstream 127.0.0.1:{port} is not reachable" in warning
        client = aioredis.Redis.from_url(line.split()[1], retry=Retry(NoBackoff(), 0))
        with pytest.raises(redis.exceptions.ConnectionError):
            await client.ping()
        await client.aclose()
        why = (await asyncio.wait_for(process.stderr.readline(), 30)).decode()
        assert "closing a client connection" in why
        assert "unreachable" in why
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 30)


@pytest.mark.asyncio
async def test_concurrent_store_listings_through_scan_duplicates_get_only_their_own_keys(
    proxy: RedisFaultProxy, redis_client: aioredis.Redis
) -> None:
    # The reported case: two concurrent keys() through one proxy, each got the other's keys.
    await redis_client.mset({f"dup:{p}/{i}": b"1" for p in "ab" for i in range(300)})
    proxy.add(ScanDuplicates())
    async with RedisSessionKVStore(url=proxy.url, key_prefix="dup:", scan_count=50) as store:
        for _ in range(3):
            a_keys, b_keys = await asyncio.gather(store.keys("a/"), store.keys("b/"))
            assert sorted(a_keys) == sorted(f"a/{i}" for i in range(300))
            assert sorted(b_keys) == sorted(f"b/{i}" for i in range(300))


async def _read_until_closed(conn: RawClient) -> tuple[bytes, ConnectionError | None]:
    """Everything the connection delivers, and the error that ended it (``None`` for an orderly end)."""
    received = b""
    try:
        while chunk := await conn.reader.read(1 << 20):
            received += chunk
    except ConnectionError as exc:
        return received, exc
    return received, None


@pytest.mark.asyncio
async def test_a_cut_reply_delivers_every_kept_byte_to_a_slow_reader_before_the_reset(
    raw: RawFactory, proxy: RedisFaultProxy, redis_client: aioredis.Redis
) -> None:
    # The kept part is far larger than the socket buffers, and the client reads only later: a reset sent at once
    # (SO_LINGER 0) discarded what was still queued, and the client got less than it was promised.
    value = b"v" * 8_000_000
    await redis_client.set("big", value)
    keep = 6_000_000
    proxy.add(CutReply(command="GET", keep_bytes=keep))
    conn = await raw()
    await conn.send(encode_command([b"GET", b"big"]))
    await asyncio.sleep(0.3)  # not reading: the proxy's buffers fill up behind us
    received, error = await _read_until_closed(conn)
    assert isinstance(error, ConnectionResetError)
    assert len(received) == keep
    assert received == (b"$%d\r\n" % len(value) + value)[:keep]
