"""Faults that end or stall connections, observed with redis-py and bare sockets: reset_peer (a real RST),
timeout, blackhole, limit_data, slow_close, down."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import pytest
import redis.asyncio as aioredis
import redis.exceptions

from sessionkv.testing.faults import Blackhole, Down, LimitData, RedisFaultProxy, ResetPeer, SlowClose, Timeout
from sessionkv.testing.faults.resp import encode_command

if TYPE_CHECKING:
    from faults_fixtures import ClientFactory, RawFactory

pytest_plugins = ["faults_fixtures"]


def _causes(exc: BaseException) -> list[BaseException]:
    chain = []
    current: BaseException | None = exc
    while current is not None:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


@pytest.mark.asyncio
async def test_reset_peer_sends_a_real_rst(raw: RawFactory, proxy: RedisFaultProxy) -> None:
    conn = await raw()
    await conn.send(encode_command([b"PING"]))
    assert await conn.reply() == b"PONG"
    proxy.add(ResetPeer())
    await conn.send(encode_command([b"PING"]))
    with pytest.raises(ConnectionResetError):  # RST, not an orderly end of stream (which would be EOFError)
        await conn.reply()


@pytest.mark.asyncio
async def test_reset_peer_reaches_redis_py_as_connection_error(client: aioredis.Redis, proxy: RedisFaultProxy) -> None:
    await client.ping()
    proxy.add(ResetPeer(direction="upstream"))
    with pytest.raises(redis.exceptions.ConnectionError) as info:
        await client.get("k")
    assert any(isinstance(e, ConnectionResetError) for e in _causes(info.value)) or "reset" in str(info.value).lower()


@pytest.mark.asyncio
async def test_reset_peer_timeout_lets_early_data_through(connect: ClientFactory, proxy: RedisFaultProxy) -> None:
    proxy.add(ResetPeer(timeout_ms=300, direction="upstream"))
    client = connect()
    assert await client.ping()  # within 300 ms of connecting
    await asyncio.sleep(0.3)
    with pytest.raises(redis.exceptions.ConnectionError):
        await client.ping()


@pytest.mark.asyncio
async def test_timeout_holds_data_then_closes_after_timeout_ms(
    client: aioredis.Redis, proxy: RedisFaultProxy, redis_client: aioredis.Redis
) -> None:
    await client.ping()
    proxy.add(Timeout(timeout_ms=300, direction="upstream"))
    start = time.perf_counter()
    with pytest.raises(redis.exceptions.ConnectionError):
        await client.set("held", "1")
    assert time.perf_counter() - start >= 0.29
    assert await redis_client.get("held") is None  # never reached the server


@pytest.mark.asyncio
async def test_timeout_removed_releases_held_commands_late_and_in_order(
    client: aioredis.Redis, proxy: RedisFaultProxy, redis_client: aioredis.Redis
) -> None:
    await client.ping()
    handle = proxy.add(Timeout(direction="upstream"))
    write = asyncio.ensure_future(client.set("late", "1"))
    await asyncio.sleep(0.2)
    assert await redis_client.get("late") is None
    assert not write.done()
    handle.remove()
    assert await write is True
    assert await redis_client.get("late") == b"1"


@pytest.mark.asyncio
async def test_blackhole_swallows_commands_and_the_client_times_out(
    connect: ClientFactory, proxy: RedisFaultProxy, redis_client: aioredis.Redis
) -> None:
    client = connect(socket_timeout=0.3)
    await client.ping()
    proxy.add(Blackhole(direction="upstream"))
    with pytest.raises(redis.exceptions.TimeoutError):
        await client.set("void", "1")
    assert await redis_client.get("void") is None


@pytest.mark.asyncio
async def test_limit_data_closes_the_connection_after_limit_bytes(
    client: aioredis.Redis, proxy: RedisFaultProxy, redis_client: aioredis.Redis
) -> None:
    await redis_client.set("big", b"x" * 1000)
    await client.ping()
    proxy.add(LimitData(limit_bytes=100))
    with pytest.raises(redis.exceptions.ConnectionError):
        await client.get("big")
    assert "limit of 100 bytes reached" in proxy.transcript.format()


@pytest.mark.asyncio
async def test_slow_close_delays_the_end_of_stream(
    raw: RawFactory, proxy: RedisFaultProxy, redis_client: aioredis.Redis
) -> None:
    conn = await raw()
    await conn.send(encode_command([b"CLIENT", b"ID"]))
    client_id = await conn.reply()
    assert isinstance(client_id, int)
    proxy.add(SlowClose(delay_ms=300))
    start = time.perf_counter()
    await redis_client.client_kill_filter(_id=str(client_id))  # the server closes the proxied connection
    assert await conn.reader.read(1) == b""
    assert time.perf_counter() - start >= 0.29


@pytest.mark.asyncio
async def test_down_refuses_new_connections_until_removed(client: aioredis.Redis, proxy: RedisFaultProxy) -> None:
    await client.ping()
    port = proxy.port
    handle = proxy.add(Down())
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(proxy.host, port)
    assert await client.ping()  # an existing connection is not cut unless asked
    handle.remove()
    await asyncio.sleep(0)  # let the proxy resume serving
    reader, writer = await asyncio.open_connection(proxy.host, port)
    writer.write(encode_command([b"PING"]))
    assert await reader.readuntil(b"\r\n") == b"+PONG\r\n"
    writer.close()
    await writer.wait_closed()


@pytest.mark.asyncio
async def test_down_with_cut_existing_resets_open_connections(client: aioredis.Redis, proxy: RedisFaultProxy) -> None:
    await client.ping()
    proxy.add(Down(cut_existing=True))
    with pytest.raises(redis.exceptions.ConnectionError):
        await client.ping()


@pytest.mark.asyncio
@pytest.mark.parametrize(("cut_existing", "applied"), [(False, 1), (True, 3)])
async def test_down_counts_closing_the_listener_and_each_connection_it_cuts(
    connect: ClientFactory, proxy: RedisFaultProxy, cut_existing: bool, applied: int
) -> None:
    clients = [connect(), connect()]
    for client in clients:
        await client.ping()
    handle = proxy.add(Down(cut_existing=cut_existing))
    assert handle.applied == applied
    events = [(e.connection, e.detail) for e in proxy.transcript.events(kind="fault") if e.fault == "down"]
    cut = [(0, "existing connection reset"), (1, "existing connection reset")] if cut_existing else []
    assert events == [(-1, "listener closed: new connections refused"), *cut]
    handle.remove()
    assert handle.applied == applied  # listening again is not the fault acting
