"""Switching between the fast pass-through path and the fault-aware path on live connections, under pipelined load.

Real redis-py clients pipeline commands through the proxy to a real redis-server while faults come and go (and the
transcript is read) at random moments, seeded: chunks then take every way through the proxy (fast pass-through,
deferred framing, framing on arrival, held in a byte fault's queue, delayed replies). No byte may be lost, duplicated
or reordered, and every reply must stay paired with its own command, in what the client gets and in the transcript.
"""

from __future__ import annotations

import asyncio
import random

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from sessionkv.testing import RedisServer
from sessionkv.testing.faults import (
    DelayReply,
    ErrorReply,
    Fault,
    FaultHandle,
    Latency,
    LoseReply,
    RedisFaultProxy,
    Slicer,
)
from sessionkv.testing.faults.resp import encode_command

pytest_plugins = ["faults_fixtures"]

CLIENTS = 4
ROUNDS = 25
PIPELINE = 40
RAW_ROUNDS = 10  # every byte sliced small while the slicer is on: fewer rounds


def _payload(client: int, round_: int, i: int, rng: random.Random) -> bytes:
    kind = b"err-" if rng.random() < 0.3 else b"ok-"
    return kind + f"{client}.{round_}.{i}.".encode() + b"x" * rng.randint(0, 300)


async def _worker(url: str, client_no: int, seed: int, done: list[int], rounds: int) -> list[tuple[bytes, object]]:
    """Pipelines of ECHO/SET/GET/INCR; checks every reply against what the command must answer. Returns the ECHOs."""
    rng = random.Random(f"{seed}/{client_no}")
    client = aioredis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), socket_timeout=30.0)
    echoes: list[tuple[bytes, object]] = []
    counter = f"switch:{seed}:{client_no}:n"
    try:
        await client.delete(counter)
        expected_count = 0
        last_set = b""
        for round_ in range(rounds):
            pipe = client.pipeline(transaction=False)
            expected: list[object] = []
            for i in range(PIPELINE):
                payload = _payload(client_no, round_, i, rng)
                step = i % 4
                if step == 0:
                    pipe.echo(payload)
                    expected.append(("echo", payload))
                elif step == 1:
                    pipe.set(f"switch:{seed}:{client_no}:{i}", payload)
                    expected.append(True)
                    last_set = payload
                elif step == 2:
                    pipe.get(f"switch:{seed}:{client_no}:{i - 1}")
                    expected.append(last_set)
                else:
                    expected_count += 1
                    pipe.incr(counter)
                    expected.append(expected_count)
            results = await pipe.execute(raise_on_error=False)
            assert len(results) == len(expected)
            for want, got in zip(expected, results, strict=True):
                if isinstance(want, tuple):
                    payload = want[1]
                    echoes.append((payload, got))
                    if isinstance(got, Exception):
                        assert payload.startswith(b"err-"), (payload, got)  # only the fault answers with errors
                    else:
                        assert got == payload
                else:
                    assert got == want, (want, got)
            await asyncio.sleep(0)
    finally:
        done.append(client_no)
        await client.aclose()
    return echoes


async def _toggle(proxy: RedisFaultProxy, faults: list[Fault], rng: random.Random, done: list[int]) -> int:
    """Add and remove faults, and read the transcript, at random moments until every worker is done."""
    installed: list[FaultHandle] = []
    switches = 0
    while len(done) < CLIENTS:
        await asyncio.sleep(rng.uniform(0, 0.004))
        choice = rng.random()
        if choice < 0.4 and installed:
            installed.pop(rng.randrange(len(installed))).remove()
            switches += 1
        elif choice < 0.8:
            installed.append(proxy.add(rng.choice(faults)))
            switches += 1
        else:
            proxy.transcript.events()  # frames what was deferred
    for handle in installed:
        handle.remove()
    return switches


def _check_transcript(proxy: RedisFaultProxy) -> None:
    """Per connection: every command recorded once, in the order sent, and each server reply paired with its command
    (an ECHO's reply carries its own payload; both are clipped in the transcript, the payload's identity is not)."""
    events = proxy.transcript.events()
    connections = {e.connection for e in events if e.kind == "command"}
    for connection in connections:
        mine = [e for e in events if e.connection == connection]
        commands = [e.command for e in mine if e.kind == "command"]
        assert len(commands) >= ROUNDS * PIPELINE  # the pipelined commands, and those of the connection set-up
        answered_by_proxy = [e.command for e in mine if e.kind == "fault" and e.fault == "error_reply"]
        from_server = list(commands)
        for command in answered_by_proxy:
            from_server.remove(command)
        replies = [e for e in mine if e.kind == "reply"]
        assert [e.command for e in replies] == from_server
        for reply in replies:
            if reply.command[0] == b"ECHO":
                ident = reply.command[1].split(b"x", 1)[0]  # kind, client, round and index: recorded unclipped
                assert reply.reply.split(b"\r\n", 1)[1].startswith(ident), (reply.command, reply.reply)


@pytest.mark.asyncio
@pytest.mark.parametrize("seed", range(3))
async def test_faults_switched_on_live_pipelined_connections_lose_duplicate_or_misorder_nothing(
    redis_server: RedisServer, seed: int
) -> None:
    faults: list[Fault] = [
        ErrorReply(command="ECHO", key_pattern="err-*"),  # acts: replies from the proxy interleaved with the server's
        LoseReply(command="NO-SUCH-COMMAND"),  # frames everything on arrival, acts on nothing
        DelayReply(command="GET", delay_ms=1.0),  # replies held in the outbound queue when it is removed
        Latency(latency_ms=1.0, direction="both"),  # chunks held in both queues when it is removed
        Slicer(average_size_bytes=7, size_variation_bytes=5, direction="upstream"),  # frames split anywhere
    ]
    async with RedisFaultProxy(redis_server.host, redis_server.port, seed=seed) as proxy:
        done: list[int] = []
        workers = [asyncio.create_task(_worker(proxy.url, n, seed, done, ROUNDS)) for n in range(CLIENTS)]
        switches = await _toggle(proxy, faults, random.Random(seed), done)
        echoes = [echo for worker in workers for echo in await worker]
        assert switches > 0
        assert any(isinstance(got, Exception) for _, got in echoes)  # the error fault did act now and then
        _check_transcript(proxy)


@pytest.mark.asyncio
@pytest.mark.parametrize("seed", range(2))
async def test_byte_faults_switched_on_live_raw_connections_keep_the_byte_streams_intact(
    redis_server: RedisServer, seed: int
) -> None:
    faults: list[Fault] = [
        Latency(latency_ms=1.0, direction="both"),
        Slicer(average_size_bytes=9, size_variation_bytes=8, direction="both"),
    ]
    async with RedisFaultProxy(redis_server.host, redis_server.port, seed=seed, resp=False) as proxy:
        done: list[int] = []
        workers = [asyncio.create_task(_worker(proxy.url, n, seed, done, RAW_ROUNDS)) for n in range(CLIENTS)]
        switches = await _toggle(proxy, faults, random.Random(seed), done)
        echoes = [echo for worker in workers for echo in await worker]
        assert switches > 0
        assert all(got == payload for payload, got in echoes)  # no command fault: the server answers everything


@pytest.mark.asyncio
@pytest.mark.parametrize("resp", [True, False])
async def test_chunks_after_a_removed_fault_wait_for_the_ones_it_still_holds(
    redis_server: RedisServer, resp: bool
) -> None:
    # A chunk held by a byte fault that is removed meanwhile (Latency keeps sleeping on what it holds) is still in
    # that direction's way out: later chunks, though no fault is installed any more, must not overtake it.
    from faults_fixtures import RawClient  # loaded (and assertion-rewritten) as a plugin by now

    async with RedisFaultProxy(redis_server.host, redis_server.port, resp=resp) as proxy:
        conn = await RawClient.open(proxy.host, proxy.port)
        try:
            for word in (b"warm-1", b"warm-2"):  # on the fast path
                await conn.send(encode_command([b"ECHO", word]))
                assert await conn.reply() == word
            handle = proxy.add(Latency(latency_ms=500.0, direction="upstream"))
            await conn.send(encode_command([b"ECHO", b"held"]))
            while not handle.applied:  # noqa: ASYNC110 - the proxy read it: Latency holds it now
                await asyncio.sleep(0.001)
            handle.remove()
            later = [b"after-1", b"after-2", b"after-3"]
            for word in later:
                await conn.send(encode_command([b"ECHO", word]))
                await asyncio.sleep(0.005)  # separate chunks: the first after removal, then the fast path's
            assert [await conn.reply() for _ in range(4)] == [b"held", *later]
        finally:
            await conn.close()


def test_the_proxy_keeps_every_byte_in_order_on_uvloop(redis_server: RedisServer) -> None:
    # `sessionkv proxy` runs on uvloop when it is installed: its transports are not asyncio's (they start reading an
    # accepted socket before the upstream connection is open, for one), so the switching scenario runs there too.
    uvloop = pytest.importorskip("uvloop", reason="uvloop is not installed (the proxy then runs on asyncio only)")

    async def scenario() -> None:
        faults: list[Fault] = [
            ErrorReply(command="ECHO", key_pattern="err-*"),
            DelayReply(command="GET", delay_ms=1.0),
            Latency(latency_ms=1.0, direction="both"),
        ]
        async with RedisFaultProxy(redis_server.host, redis_server.port, seed=7) as proxy:
            done: list[int] = []
            workers = [asyncio.create_task(_worker(proxy.url, n, 7, done, ROUNDS)) for n in range(CLIENTS)]
            assert await _toggle(proxy, faults, random.Random(7), done) > 0
            for worker in workers:
                await worker
            _check_transcript(proxy)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(scenario())
