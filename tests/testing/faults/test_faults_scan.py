"""Hostile but legal SCAN replies: every key is still found, but with duplicates and empty pages."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import redis.asyncio as aioredis

from sessionkv.testing.faults import RedisFaultProxy, ScanDuplicates, ScanEmptyPages
from sessionkv.testing.faults.resp import encode_command

if TYPE_CHECKING:
    from faults_fixtures import RawFactory

pytest_plugins = ["faults_fixtures"]

KEYS = {f"key:{i}".encode() for i in range(300)}


@pytest.mark.asyncio
async def test_empty_pages_with_a_non_zero_cursor_and_the_iteration_still_finds_every_key(
    client: aioredis.Redis, proxy: RedisFaultProxy, redis_client: aioredis.Redis
) -> None:
    await redis_client.mset(dict.fromkeys(KEYS, b"1"))
    proxy.add(ScanEmptyPages())
    cursor, page = await client.scan(cursor=0, count=50)
    assert cursor != 0
    assert page == []  # a client that stops at an empty page would find nothing
    found = [key async for key in client.scan_iter(count=50)]
    assert set(found) == KEYS
    empty_pages = [e for e in proxy.transcript.events(kind="fault") if e.fault == "scan_empty_pages"]
    assert len(empty_pages) >= 2


@pytest.mark.asyncio
async def test_duplicates_within_and_across_pages_and_every_key_still_found(
    client: aioredis.Redis, proxy: RedisFaultProxy, redis_client: aioredis.Redis
) -> None:
    await redis_client.mset(dict.fromkeys(KEYS, b"1"))
    proxy.add(ScanDuplicates(key_pattern=None))
    found = [key async for key in client.scan_iter(match="key:*", count=50)]
    assert set(found) == KEYS
    assert len(found) > 2 * len(KEYS)  # each page twice, plus the previous page again


@pytest.mark.asyncio
async def test_both_hostile_behaviours_together_on_hscan_keep_field_value_pairs(
    raw: RawFactory, proxy: RedisFaultProxy, redis_client: aioredis.Redis
) -> None:
    fields = {f"f{i}".encode(): f"v{i}".encode() for i in range(1000)}  # > 512: a real hash table, many pages
    await redis_client.hset("h", mapping=fields)  # type: ignore[arg-type]
    proxy.add(ScanEmptyPages(probability=0.5))
    proxy.add(ScanDuplicates())
    conn = await raw()  # redis-py folds HSCAN pages into dicts, which would hide the duplicates
    cursor = b"0"
    flat: list[bytes] = []
    pages = 0
    while True:
        await conn.send(encode_command([b"HSCAN", b"h", cursor, b"COUNT", b"40"]))
        reply = await conn.reply()
        assert isinstance(reply, list)
        cursor, page = reply
        flat += page
        pages += 1
        if cursor == b"0":
            break
    pairs = list(zip(flat[::2], flat[1::2], strict=True))
    assert all(fields[field] == value for field, value in pairs)  # no pair was split
    assert set(pairs) == set(fields.items())
    assert len(pairs) > 2 * len(fields), f"only {pages} pages"
    assert any(e.fault == "scan_empty_pages" for e in proxy.transcript.events(kind="fault"))
