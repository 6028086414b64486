"""Pass-through without per-frame work: with no fault that needs frames, the proxy forwards chunks as they come and
frames them later. What it records and how faults added later act must be exactly what framing on arrival gives."""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING

import pytest
import redis.asyncio as aioredis

from sessionkv.testing import RedisServer
from sessionkv.testing.faults import ErrorReply, Latency, LoseReply, RedisFaultProxy, ScanEmptyPages, TranscriptEvent
from sessionkv.testing.faults.resp import encode_command

if TYPE_CHECKING:
    from faults_fixtures import ClientFactory, RawClient, RawFactory

pytest_plugins = ["faults_fixtures"]


def _frames(transcript: list[TranscriptEvent]) -> dict[tuple[int, str], list[tuple[tuple[bytes, ...], bytes]]]:
    """Per connection and kind, commands and replies in order (how a reply and the next command interleave depends
    on timing); HELLO's reply (it holds the connection id, which differs between runs) left out."""
    frames: dict[tuple[int, str], list[tuple[tuple[bytes, ...], bytes]]] = {}
    for e in transcript:
        if e.kind in ("command", "reply", "push"):
            reply = b"" if e.command_name == "HELLO" else e.reply
            frames.setdefault((e.connection, e.kind), []).append((e.command, reply))
    return frames


async def _traffic(url: str) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        await client.client_setname("worker")
        await client.set("n", 0)  # the same replies on every run
        async with client.pipeline(transaction=True) as pipe:
            pipe.set("a", b"1")
            pipe.incr("n")
            pipe.get("a")
            await pipe.execute()
        await client.mset({f"k{i}": b"v" * i for i in range(50)})
        assert len(await client.mget([f"k{i}" for i in range(50)])) == 50
        with pytest.raises(aioredis.ResponseError):
            await client.lpush("a", b"x" * 300)  # an error reply (WRONGTYPE), an argument the transcript clips
    finally:
        await client.aclose()


@pytest.mark.asyncio
async def test_the_transcript_of_deferred_traffic_equals_the_one_framed_on_arrival(redis_server: RedisServer) -> None:
    transcripts = []
    for framed_on_arrival in (False, True):
        async with RedisFaultProxy(redis_server.host, redis_server.port) as proxy:
            if framed_on_arrival:  # a command fault that never matches keeps every chunk framed on arrival
                proxy.add(LoseReply(command="NO-SUCH-COMMAND"))
            await _traffic(proxy.url)
            transcripts.append(_frames(list(proxy.transcript)))
            if not framed_on_arrival:
                assert proxy.connections[0].client_name == "worker"  # state such as names is up to date too
    deferred, on_arrival = transcripts
    assert deferred == on_arrival
    assert ((b"CLIENT", b"SETNAME", b"worker"), b"") in deferred[0, "command"]


async def _send_in_slices(conn: RawClient, data: bytes, rng: random.Random, between: object) -> None:
    pos = 0
    while pos < len(data):
        size = rng.randint(1, 40)
        await conn.send(data[pos : pos + size])
        pos += size
        assert callable(between)
        between()
        await asyncio.sleep(0)


@pytest.mark.asyncio
@pytest.mark.parametrize("seed", range(6))
async def test_faults_added_and_removed_between_partial_frames_never_shift_or_corrupt_replies(
    raw: RawFactory, proxy: RedisFaultProxy, seed: int
) -> None:
    # Commands go out in random slices (frames split anywhere) while faults come and go between slices: every chunk
    # switches between framed, deferred and "ahead" handling. Each reply must still be its own command's.
    rng = random.Random(seed)
    payloads = [(b"err-" if i % 3 == 0 else b"ok-") + str(i).encode() * rng.randint(1, 30) for i in range(120)]
    data = b"".join(encode_command([b"ECHO", payload]) for payload in payloads)
    faults = [ErrorReply(command="ECHO", key_pattern="err-*"), Latency(latency_ms=0.0, direction="both")]
    installed: list[object] = []

    def toggle() -> None:
        if rng.random() < 0.3:
            if installed:
                installed.pop().remove()  # type: ignore[attr-defined]
            else:
                installed.append(proxy.add(rng.choice(faults)))
        if rng.random() < 0.1:
            proxy.transcript.events()  # a read frames whatever was deferred

    conn = await raw()
    sender = asyncio.create_task(_send_in_slices(conn, data, rng, toggle))
    replies = [await conn.reply() for _ in payloads]
    await sender
    for payload, reply in zip(payloads, replies, strict=True):
        if isinstance(reply, Exception):
            assert payload.startswith(b"err-"), (payload, reply)
        else:
            assert reply == payload
    commands = [e.command for e in proxy.transcript.events(kind="command")]
    assert commands == [(b"ECHO", payload) for payload in payloads]
    answered_by_proxy = [e.command for e in proxy.transcript.events(kind="fault") if e.fault == "error_reply"]
    for command in answered_by_proxy:
        commands.remove(command)
    assert [e.command for e in proxy.transcript.events(kind="reply")] == commands  # the rest paired with the server


@pytest.mark.asyncio
async def test_a_fault_added_mid_frame_spares_that_frame_and_acts_on_the_next(
    raw: RawFactory, proxy: RedisFaultProxy
) -> None:
    conn = await raw()
    first = encode_command([b"GET", b"absent:1"])
    await conn.send(first[:7])  # forwarded unframed: the proxy cannot take it back
    await asyncio.sleep(0.05)
    handle = proxy.add(ErrorReply(command="GET"))
    await conn.send(first[7:] + encode_command([b"GET", b"absent:2"]))
    assert await conn.reply() is None
    faulted = await conn.reply()
    assert isinstance(faulted, Exception)
    assert handle.applied == 1
    assert [e.command for e in proxy.transcript.events(kind="fault")] == [(b"GET", b"absent:2")]


@pytest.mark.asyncio
async def test_traffic_over_the_budget_is_passed_through_raw_and_said_so(redis_server: RedisServer) -> None:
    async with RedisFaultProxy(redis_server.host, redis_server.port, transcript_limit=10) as proxy:
        heavy = aioredis.Redis.from_url(proxy.url)
        light = aioredis.Redis.from_url(proxy.url)
        try:
            await light.ping()
            _ = proxy.transcript.events()  # read: light's frames are framed, its state is known
            await heavy.set("big", b"x" * 10_000)  # unread traffic over 10 events x 512 bytes
            notes = [e for e in proxy.transcript.events(kind="fault") if e.fault == "proxy"]
            assert len(notes) == 1
            assert "passed through raw" in notes[0].detail
            assert await heavy.get("big") == b"x" * 10_000  # still a working connection
            handle = proxy.add(ErrorReply(command="GET"))
            assert await heavy.get("big") == b"x" * 10_000  # raw: no command fault applies to it
            with pytest.raises(aioredis.ResponseError):
                await light.get("big")  # framed: it does
            assert handle.applied == 1
        finally:
            await heavy.aclose()
            await light.aclose()


@pytest.mark.asyncio
async def test_fake_scan_cursors_keep_connections_framed_after_their_fault_is_removed(
    client: aioredis.Redis, proxy: RedisFaultProxy, redis_client: aioredis.Redis
) -> None:
    await redis_client.mset({f"k{i}": b"1" for i in range(30)})
    handle = proxy.add(ScanEmptyPages(times=1))
    cursor, page = await client.scan(0, count=100)
    assert page == []
    handle.remove()
    cursor, page = await client.scan(cursor, count=100)  # translated, though no fault is installed any more
    assert len(page) == 30


@pytest.mark.asyncio
async def test_deferred_traffic_of_clients_that_came_and_went_is_kept_in_order(
    connect: ClientFactory, proxy: RedisFaultProxy
) -> None:
    for i in range(3):
        client = connect()
        await client.echo(f"hello {i}")
        await client.aclose()
    kinds = [(e.connection, e.kind) for e in proxy.transcript if e.kind != "fault"]
    for i in range(3):
        mine = [kind for connection, kind in kinds if connection == i]
        assert mine[0] == "connect"
        assert mine[-1] == "close"
        assert "command" in mine
        assert mine.index("command") < mine.index("reply") < mine.index("close")
