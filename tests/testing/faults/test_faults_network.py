"""Network-quality faults, observed by a real redis-py client through the proxy: latency, bandwidth, slicer."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest
import redis.asyncio as aioredis

from sessionkv.testing import RedisServer
from sessionkv.testing.faults import Bandwidth, Latency, RedisFaultProxy, Slicer

if TYPE_CHECKING:
    from faults_fixtures import ClientFactory

pytest_plugins = ["faults_fixtures"]


async def _round_trip_s(client: aioredis.Redis) -> float:
    start = time.perf_counter()
    await client.get("absent")
    return time.perf_counter() - start


@pytest.mark.asyncio
async def test_latency_delays_every_round_trip_by_at_least_latency_ms(
    client: aioredis.Redis, proxy: RedisFaultProxy
) -> None:
    await client.ping()  # connection established before the fault, so only the command's round trip is measured
    with proxy.add(Latency(200)):
        assert await _round_trip_s(client) >= 0.195
    with proxy.add(Latency(100, direction="both")):
        assert await _round_trip_s(client) >= 0.195  # 100 ms each way


@pytest.mark.asyncio
async def test_latency_with_jitter_never_delays_less_than_latency_minus_jitter(
    client: aioredis.Redis, proxy: RedisFaultProxy
) -> None:
    await client.ping()
    proxy.add(Latency(100, jitter_ms=50))
    for _ in range(3):
        assert await _round_trip_s(client) >= 0.045
    assert [e.fault for e in proxy.transcript.events(kind="fault")] == ["latency"]  # noted once per connection


@pytest.mark.asyncio
async def test_latency_targets_one_connection_by_client_name(connect: ClientFactory, proxy: RedisFaultProxy) -> None:
    slow = connect(client_name="slow")
    fast = connect(client_name="fast")
    await slow.ping()
    await fast.ping()
    proxy.add(Latency(300, connection="slow"))
    assert await _round_trip_s(slow) >= 0.295
    await fast.get("x")
    assert {e.connection for e in proxy.transcript.events(kind="fault")} == {
        c.index for c in proxy.connections if c.client_name == "slow"
    }


@pytest.mark.asyncio
async def test_bandwidth_limits_throughput_to_rate_kbps(
    client: aioredis.Redis, proxy: RedisFaultProxy, redis_client: aioredis.Redis
) -> None:
    await redis_client.set("big", b"x" * 100_000)
    await client.ping()
    proxy.add(Bandwidth(400))  # 400 KB/s: the 100 KB reply takes at least 0.25 s
    start = time.perf_counter()
    assert await client.get("big") == b"x" * 100_000
    assert time.perf_counter() - start >= 0.24


@pytest.mark.asyncio
async def test_slicer_splits_replies_into_small_delayed_pieces_that_still_parse(
    client: aioredis.Redis, proxy: RedisFaultProxy, redis_client: aioredis.Redis
) -> None:
    value = b"0123456789" * 10
    await redis_client.set("sliced", value)
    await client.ping()
    proxy.add(Slicer(average_size_bytes=10, size_variation_bytes=5, delay_us=10_000))
    start = time.perf_counter()
    assert await client.get("sliced") == value
    # The 107-byte reply went out in at least 107 / 15 = 8 pieces with 10 ms between them.
    assert time.perf_counter() - start >= 0.07


async def _connections_slowed(redis_server: RedisServer, seed: int) -> list[int]:
    async with RedisFaultProxy(redis_server.host, redis_server.port, seed=seed) as proxy:
        proxy.add(Latency(1, probability=0.5))
        for _ in range(12):
            client = aioredis.Redis(host=proxy.host, port=proxy.port, protocol=2)
            try:
                await client.ping()
            finally:
                await client.aclose()
        return sorted({e.connection for e in proxy.transcript.events(kind="fault")})


@pytest.mark.asyncio
async def test_byte_fault_probability_picks_the_same_connections_for_the_same_seed(redis_server: RedisServer) -> None:
    first = await _connections_slowed(redis_server, seed=5)
    assert first == await _connections_slowed(redis_server, seed=5)
    assert first != await _connections_slowed(redis_server, seed=6)
    assert 0 < len(first) < 12


@pytest.mark.asyncio
async def test_slicer_and_bandwidth_count_and_record_once_per_connection_and_direction(
    connect: ClientFactory, proxy: RedisFaultProxy
) -> None:
    first, second = connect(), connect()
    await first.ping()
    await second.ping()
    slicer = proxy.add(Slicer(average_size_bytes=3, size_variation_bytes=1, direction="both", connection=0))
    bandwidth = proxy.add(Bandwidth(1000, connection=1))
    for _ in range(3):
        assert await first.echo("sliced") == b"sliced"
        assert await second.echo("slow") == b"slow"
    assert (slicer.applied, bandwidth.applied) == (2, 1)  # slicer: both directions of #0; bandwidth: replies of #1
    events = [(e.fault, e.connection, e.detail) for e in proxy.transcript.events(kind="fault")]
    assert sorted(events) == [
        ("bandwidth", 1, "downstream: limiting throughput to 1000 KB/s"),
        ("slicer", 0, "downstream: slicing chunks into 3 ± 1 byte pieces, 0.0 µs apart"),
        ("slicer", 0, "upstream: slicing chunks into 3 ± 1 byte pieces, 0.0 µs apart"),
    ]
