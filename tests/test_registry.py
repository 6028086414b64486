"""Tests of ``SessionRegistry`` and ``SessionInfo`` on the in-memory store, driven by a hand-advanced clock."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from hypothesis import given, settings
from hypothesis import strategies as st

from sessionkv.errors import CorruptRecordError
from sessionkv.memory import InMemorySessionKVStore
from sessionkv.redis_store import RedisSessionKVStore
from sessionkv.registry import MetricValue, SessionInfo, SessionRegistry
from sessionkv.testing import VirtualClock

EPOCH = 1_700_000_000.5
"""Epoch seconds at the start of every fake clock: a float that JSON writes and reads back exactly."""

TTL = 30.0


@pytest.fixture
def clock() -> VirtualClock:
    """Moves only when the test says so: expiry is exact and instant."""
    return VirtualClock(epoch=EPOCH)


@pytest.fixture
def store(clock: VirtualClock) -> InMemorySessionKVStore:
    return InMemorySessionKVStore(clock=clock)


@pytest.fixture
def registry(store: InMemorySessionKVStore, clock: VirtualClock) -> SessionRegistry:
    return SessionRegistry(store, node_id="node-a", ttl=TTL, clock=clock)


def record(**fields: object) -> bytes:
    """A stored session record as a writer other than us would produce it."""
    data: dict[str, object] = {
        "session_id": "s",
        "call_id": "c",
        "node_id": "other-node",
        "started_at": 1.0,
        "metrics_updated_at": 2.0,
        "metrics": {},
    }
    data.update(fields)
    return json.dumps(data).encode()


# -- construction and lifecycle ------------------------------------------------------------------------------------


def test_defaults_create_an_owned_in_memory_store_and_a_fresh_node_id() -> None:
    first, second = SessionRegistry(), SessionRegistry()
    assert isinstance(first.store, InMemorySessionKVStore)
    assert first.store is not second.store
    assert first.owns_store
    assert first.ttl == 30.0
    assert uuid.UUID(first.node_id).version == 4
    assert first.node_id != second.node_id


def test_given_store_and_options_are_kept(store: InMemorySessionKVStore) -> None:
    registry = SessionRegistry(store, node_id="n-1", ttl=5)
    assert registry.store is store
    assert not registry.owns_store
    assert registry.node_id == "n-1"
    assert registry.ttl == 5.0
    assert isinstance(registry.ttl, float)


def test_default_store_runs_on_the_registry_clock(clock: VirtualClock) -> None:
    registry = SessionRegistry(clock=clock)
    assert isinstance(registry.store, InMemorySessionKVStore)
    assert registry.store.clock is clock


class RecordingStore(InMemorySessionKVStore):
    """Counts lifecycle calls."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__(clock=clock)
        self.starts = 0
        self.closes = 0

    async def start(self) -> None:
        self.starts += 1

    async def close(self) -> None:
        self.closes += 1


@pytest.mark.asyncio
async def test_start_and_stop_leave_a_caller_owned_store_alone(clock: VirtualClock) -> None:
    store = RecordingStore(clock)
    registry = SessionRegistry(store, clock=clock)
    await registry.start()
    await registry.stop()
    async with registry as entered:
        assert entered is registry
    assert (store.starts, store.closes) == (0, 0)


@pytest.mark.asyncio
async def test_start_and_stop_drive_the_owned_default_store(
    clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = SessionRegistry(clock=clock)
    calls: list[str] = []

    async def start() -> None:
        calls.append("start")

    async def close() -> None:
        calls.append("close")

    monkeypatch.setattr(registry.store, "start", start)
    monkeypatch.setattr(registry.store, "close", close)
    async with registry as entered:
        assert entered is registry
        assert calls == ["start"]
    assert calls == ["start", "close"]
    await registry.stop()  # a second stop is harmless
    assert calls == ["start", "close", "close"]


@pytest.mark.asyncio
async def test_async_with_stops_the_owned_store_when_the_body_raises() -> None:
    registry = SessionRegistry()
    store = registry.store
    assert isinstance(store, InMemorySessionKVStore)
    sweepers: list[object] = []

    async def fail_inside() -> None:
        async with registry:
            sweepers.append(store._sweeper)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await fail_inside()
    assert sweepers[0] is not None  # entering started the owned store's sweep task...
    assert store._sweeper is None  # the sweep task was cancelled and awaited: nothing leaks


# -- register / get / remove ---------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_register_writes_a_fresh_record_readable_by_get(registry: SessionRegistry, clock: VirtualClock) -> None:
    await clock.advance(2.25)
    written = await registry.register("call-1", "sess-1")
    expected = SessionInfo(
        session_id="sess-1",
        call_id="call-1",
        node_id="node-a",
        started_at=EPOCH + 2.25,
        metrics_updated_at=EPOCH + 2.25,
        metrics={},
    )
    assert written == expected
    assert await registry.get("call-1", "sess-1") == expected


@pytest.mark.asyncio
async def test_get_of_an_unknown_session_is_none(registry: SessionRegistry) -> None:
    await registry.register("call-1", "sess-1")
    assert await registry.get("call-1", "sess-2") is None
    assert await registry.get("call-2", "sess-1") is None


@pytest.mark.asyncio
async def test_record_expires_exactly_ttl_after_register(registry: SessionRegistry, clock: VirtualClock) -> None:
    await registry.register("c", "s")
    await clock.advance(TTL - 1e-9)
    assert await registry.get("c", "s") is not None
    await clock.advance(1e-9)
    assert await registry.get("c", "s") is None
    assert await registry.get_for_call("c") == []


@pytest.mark.asyncio
async def test_remove_deletes_the_record_and_the_close_flag(
    registry: SessionRegistry, store: InMemorySessionKVStore
) -> None:
    await registry.register("c", "s")
    await registry.request_close("c", "s")
    await registry.register("c", "other")
    await registry.remove("c", "s")
    assert await store.mget(["sessions/c/s", "close_requests/c/s"]) == [None, None]
    assert await registry.get("c", "s") is None
    assert await registry.get_close_requests({"s": "c"}) == []
    assert [info.session_id for info in await registry.get_for_call("c")] == ["other"]
    await registry.remove("c", "s")  # removing again is a no-op


# -- the heartbeat -------------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_update_metrics_rewrites_metrics_timestamp_and_ttl(
    registry: SessionRegistry, clock: VirtualClock
) -> None:
    await registry.register("c", "s")
    await clock.advance(20)
    assert await registry.update_metrics("c", "s", {"latency_ms": 42.5, "frames": 7, "gpu": None}) is True
    info = await registry.get("c", "s")
    assert info is not None
    assert info.metrics == {"latency_ms": 42.5, "frames": 7, "gpu": None}
    assert type(info.metrics["frames"]) is int
    assert info.started_at == EPOCH
    assert info.metrics_updated_at == EPOCH + 20
    # The TTL restarted at the heartbeat: alive until 20 + TTL, not TTL.
    await clock.advance(TTL - 1e-9)
    assert await registry.get("c", "s") is not None
    await clock.advance(1e-9)
    assert await registry.get("c", "s") is None


@pytest.mark.asyncio
async def test_update_metrics_replaces_the_previous_metrics(registry: SessionRegistry) -> None:
    await registry.register("c", "s")
    await registry.update_metrics("c", "s", {"a": 1, "b": 2})
    await registry.update_metrics("c", "s", {"b": 3})
    info = await registry.get("c", "s")
    assert info is not None
    assert info.metrics == {"b": 3}


@pytest.mark.asyncio
async def test_update_metrics_never_resurrects_a_removed_session(
    registry: SessionRegistry, store: InMemorySessionKVStore
) -> None:
    await registry.register("c", "s")
    await registry.remove("c", "s")
    assert await registry.update_metrics("c", "s", {"x": 1}) is False
    assert await store.get("sessions/c/s") is None


@pytest.mark.asyncio
async def test_update_metrics_never_resurrects_an_expired_session(
    registry: SessionRegistry, store: InMemorySessionKVStore, clock: VirtualClock
) -> None:
    await registry.register("c", "s")
    await clock.advance(TTL)
    assert await registry.update_metrics("c", "s", {"x": 1}) is False
    assert await store.get("sessions/c/s") is None
    assert await store.keys("") == []


class RemoveAfterReadStore(InMemorySessionKVStore):
    """Deletes each key right after ``get`` has read it: a ``remove`` sneaking between a heartbeat's read and write."""

    async def get(self, key: str) -> bytes | None:
        value = await super().get(key)
        await self.delete([key])
        return value


@pytest.mark.asyncio
async def test_update_metrics_never_resurrects_a_session_removed_between_read_and_write(clock: VirtualClock) -> None:
    store = RemoveAfterReadStore(clock=clock)
    registry = SessionRegistry(store, clock=clock)
    await registry.register("c", "s")
    assert await registry.update_metrics("c", "s", {"x": 1}) is True  # it did read a record...
    assert await store.keys("") == []  # ...but the conditional write did not bring it back


@pytest.mark.asyncio
async def test_update_metrics_keeps_started_at_node_id_and_unknown_fields_of_the_stored_record(
    registry: SessionRegistry, store: InMemorySessionKVStore, clock: VirtualClock
) -> None:
    await store.set("sessions/c/s", record(call_id="c", session_id="s", future_field=[1, "x"]), TTL)
    await clock.advance(3)
    assert await registry.update_metrics("c", "s", {"m": 1.5}) is True
    raw = await store.get("sessions/c/s")
    assert raw is not None
    assert json.loads(raw) == {
        "session_id": "s",
        "call_id": "c",
        "node_id": "other-node",
        "started_at": 1.0,
        "metrics_updated_at": EPOCH + 3,
        "metrics": {"m": 1.5},
        "future_field": [1, "x"],
    }


@pytest.mark.asyncio
async def test_update_metrics_on_a_corrupt_record_raises_and_leaves_it_untouched(
    registry: SessionRegistry, store: InMemorySessionKVStore
) -> None:
    await store.set("sessions/c/s", b"\x00garbage", TTL)
    with pytest.raises(CorruptRecordError) as caught:
        await registry.update_metrics("c", "s", {"x": 1})
    assert caught.value.key == "sessions/c/s"
    assert await store.get("sessions/c/s") == b"\x00garbage"


@pytest.mark.parametrize(
    ("metrics", "error", "message"),
    [
        ({"when": "now"}, TypeError, r"metric 'when' must be an int, float or None.*str 'now'"),
        ({"nested": {"a": 1}}, TypeError, r"metric 'nested' .*dict \{'a': 1\}"),
        ({"flag": True}, TypeError, r"metric 'flag' .*bool True"),
        ({"obj": object()}, TypeError, r"metric 'obj' .*object"),
        ({1: 2}, TypeError, r"metric names must be str, got int 1"),
        ({"bad": math.nan}, ValueError, r"metric 'bad' must be finite, got nan"),
        ({"bad": -math.inf}, ValueError, r"metric 'bad' must be finite, got -inf"),
        ([("a", 1)], TypeError, r"metrics must be a mapping .*got list"),
        (None, TypeError, r"metrics must be a mapping .*got NoneType"),
    ],
)
@pytest.mark.asyncio
async def test_update_metrics_rejects_non_json_metrics_before_writing(
    registry: SessionRegistry,
    store: InMemorySessionKVStore,
    metrics: object,
    error: type[Exception],
    message: str,
) -> None:
    await registry.register("c", "s")
    before = await store.get("sessions/c/s")
    with pytest.raises(error, match=message):
        await registry.update_metrics("c", "s", {"ok": 1, **metrics} if isinstance(metrics, dict) else metrics)  # type: ignore[arg-type]
    assert await store.get("sessions/c/s") == before


@pytest.mark.asyncio
async def test_refresh_extends_live_records_and_never_resurrects(
    registry: SessionRegistry, clock: VirtualClock
) -> None:
    await registry.register("c", "alive")
    await registry.register("c", "dead")
    await registry.remove("c", "dead")
    await clock.advance(TTL - 1)
    await registry.refresh({"alive": "c", "dead": "c"})
    await registry.refresh({})
    await clock.advance(TTL - 1)
    assert [info.session_id for info in await registry.get_for_call("c")] == ["alive"]
    await clock.advance(1)
    assert await registry.get_for_call("c") == []


# -- close requests ------------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_close_request_round_trip(
    registry: SessionRegistry, store: InMemorySessionKVStore, clock: VirtualClock
) -> None:
    await registry.register("c", "s")
    assert await registry.get_close_requests({"s": "c"}) == []
    await registry.request_close("c", "s")
    assert await store.get("close_requests/c/s") == b""
    assert await registry.get_close_requests({"s": "c"}) == ["s"]
    await clock.advance(TTL)  # the flag lives ttl seconds, like the record
    assert await registry.get_close_requests({"s": "c"}) == []


@pytest.mark.asyncio
async def test_get_close_requests_keeps_input_order_and_skips_unflagged(registry: SessionRegistry) -> None:
    for session_id, call_id in [("s3", "c1"), ("s1", "c2"), ("s2", "c1")]:
        await registry.request_close(call_id, session_id)
    asked = {"s2": "c1", "missing": "c1", "s3": "c1", "s1": "c2", "s1-other-call": "c1"}
    assert await registry.get_close_requests(asked) == ["s2", "s3", "s1"]
    assert await registry.get_close_requests({"s1": "c1"}) == []  # a flag belongs to (call, session), not session
    assert await registry.get_close_requests({}) == []


# -- listing -------------------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_get_for_call_lists_the_call_sorted_by_session_id(registry: SessionRegistry, clock: VirtualClock) -> None:
    await registry.register("call", "s2")
    await clock.advance(1)
    await registry.register("call", "s1")
    await registry.register("call", "s3")
    await registry.register("other-call", "s4")
    listed = await registry.get_for_call("call")
    assert [info.session_id for info in listed] == ["s1", "s2", "s3"]
    assert [info.started_at for info in listed] == [EPOCH + 1, EPOCH, EPOCH + 1]
    assert await registry.get_for_call("nobody") == []


class CountingStore(InMemorySessionKVStore):
    """Records the name of every store operation, and can remove a key right after ``keys()`` listed it."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__(clock=clock)
        self.calls: list[str] = []
        self.remove_after_listing: str | None = None

    async def keys(self, prefix: str) -> list[str]:
        self.calls.append("keys")
        found = await super().keys(prefix)
        if self.remove_after_listing is not None:
            await super().delete([self.remove_after_listing])
        return found

    async def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        self.calls.append("mget")
        return await super().mget(keys)


@pytest.mark.asyncio
async def test_get_for_call_is_one_keys_and_one_mget_and_skips_a_session_gone_in_between(clock: VirtualClock) -> None:
    store = CountingStore(clock)
    registry = SessionRegistry(store, clock=clock)
    for session_id in ["s1", "s2", "s3"]:
        await registry.register("c", session_id)
    store.remove_after_listing = "sessions/c/s2"
    listed = await registry.get_for_call("c")
    assert [info.session_id for info in listed] == ["s1", "s3"]
    assert store.calls == ["keys", "mget"]
    store.calls.clear()
    await registry.get_close_requests({"s1": "c", "s3": "c"})
    assert store.calls == ["mget"]


@pytest.mark.asyncio
async def test_two_registries_sharing_a_store_see_each_others_sessions(
    store: InMemorySessionKVStore, clock: VirtualClock
) -> None:
    node_a = SessionRegistry(store, clock=clock)
    node_b = SessionRegistry(store, clock=clock)
    assert node_a.node_id != node_b.node_id
    await node_a.register("call", "from-a")
    await node_b.register("call", "from-b")
    for registry in (node_a, node_b):
        listed = await registry.get_for_call("call")
        assert {(info.session_id, info.node_id) for info in listed} == {
            ("from-a", node_a.node_id),
            ("from-b", node_b.node_id),
        }
    # B asks A to close A's session; A sees the request. B heartbeating A's record keeps A as its owner.
    await node_b.request_close("call", "from-a")
    assert await node_a.get_close_requests({"from-a": "call", "from-b": "call"}) == ["from-a"]
    await node_b.update_metrics("call", "from-a", {"x": 1})
    info = await node_a.get("call", "from-a")
    assert info is not None
    assert info.node_id == node_a.node_id


# -- corrupt records -----------------------------------------------------------------------------------------------

CORRUPT_RECORDS = {
    "not json": b"\x00\xffnot json",
    "truncated json": b'{"session_id": "s"',
    "json list": b'["s", "c"]',
    "missing node_id": json.dumps(
        {"session_id": "s", "call_id": "c", "started_at": 1, "metrics_updated_at": 1}
    ).encode(),
    "id not a string": record(node_id=7),
    "timestamp a string": record(started_at="yesterday"),
    "timestamp a bool": record(metrics_updated_at=True),
    "timestamp NaN": record(started_at=math.nan),
    "metrics a list": record(metrics=[1]),
    "metric a string": record(metrics={"m": "fast"}),
    "metric a bool": record(metrics={"m": True}),
}


@pytest.mark.parametrize("raw", CORRUPT_RECORDS.values(), ids=CORRUPT_RECORDS.keys())
@pytest.mark.asyncio
async def test_get_of_a_corrupt_record_names_the_key(
    registry: SessionRegistry, store: InMemorySessionKVStore, raw: bytes
) -> None:
    await store.set("sessions/c/s", raw, TTL)
    with pytest.raises(CorruptRecordError, match=r"record at key 'sessions/c/s' is corrupt") as caught:
        await registry.get("c", "s")
    assert caught.value.key == "sessions/c/s"


@pytest.mark.parametrize("raw", CORRUPT_RECORDS.values(), ids=CORRUPT_RECORDS.keys())
@pytest.mark.asyncio
async def test_get_for_call_skips_logs_and_reports_a_corrupt_record(
    registry: SessionRegistry, store: InMemorySessionKVStore, raw: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    await registry.register("c", "good-1")
    await store.set("sessions/c/s", raw, TTL)
    await registry.register("c", "good-2")
    caplog.set_level(logging.WARNING, logger="sessionkv.registry")
    errors: list[CorruptRecordError] = []
    listed = await registry.get_for_call("c", errors=errors)
    assert [info.session_id for info in listed] == ["good-1", "good-2"]
    assert [error.key for error in errors] == ["sessions/c/s"]
    assert [rec.levelno for rec in caplog.records] == [logging.WARNING]
    assert "'sessions/c/s'" in caplog.records[0].getMessage()
    # Without errors= the result is the same; the log is still the signal.
    assert await registry.get_for_call("c") == listed


def test_session_info_from_json_names_the_given_key() -> None:
    with pytest.raises(CorruptRecordError, match=r"'my-key' is corrupt: missing field\(s\) call_id, node_id"):
        SessionInfo.from_json(b'{"session_id": "s", "started_at": 1, "metrics_updated_at": 1}', key="my-key")


# -- wire compatibility with vision-agents -------------------------------------------------------------------------

GOLDEN_REGISTERED = (
    b'{"session_id": "sess-1", "call_id": "call-1", "node_id": "node-a", '
    b'"started_at": 1700000000.5, "metrics_updated_at": 1700000000.5, "metrics": {}}'
)
"""What vision-agents' ``SessionRegistry.register`` stores (``json.dumps(asdict(info))``) for the same inputs."""


@pytest.mark.asyncio
async def test_register_writes_vision_agents_json_byte_for_byte(
    registry: SessionRegistry, store: InMemorySessionKVStore
) -> None:
    await registry.register("call-1", "sess-1")
    assert await store.get("sessions/call-1/sess-1") == GOLDEN_REGISTERED


@pytest.mark.asyncio
async def test_update_metrics_writes_vision_agents_json_byte_for_byte(
    registry: SessionRegistry, store: InMemorySessionKVStore, clock: VirtualClock
) -> None:
    await registry.register("call-1", "sess-1")
    await clock.advance(1.25)
    await registry.update_metrics("call-1", "sess-1", {"latency_ms": 42.0, "frames": 3, "gpu": None})
    assert await store.get("sessions/call-1/sess-1") == (
        b'{"session_id": "sess-1", "call_id": "call-1", "node_id": "node-a", '
        b'"started_at": 1700000000.5, "metrics_updated_at": 1700000001.75, '
        b'"metrics": {"latency_ms": 42.0, "frames": 3, "gpu": null}}'
    )


@pytest.mark.asyncio
async def test_reads_a_vision_agents_record_and_ignores_unknown_fields(
    registry: SessionRegistry, store: InMemorySessionKVStore
) -> None:
    written_by_vision_agents = (
        b'{"session_id": "s\\u00e9", "call_id": "c", "node_id": "0b7c5f8e-2d5a-4b8e-9b1c-3f2a1d4e5f60", '
        b'"started_at": 1700000000, "metrics_updated_at": 1700000005.25, "metrics": {"rtt": 12}, '
        b'"added_later": {"x": [1, 2]}}'
    )
    await store.set("sessions/c/s\u00e9", written_by_vision_agents, TTL)
    expected = SessionInfo(
        session_id="s\u00e9",
        call_id="c",
        node_id="0b7c5f8e-2d5a-4b8e-9b1c-3f2a1d4e5f60",
        started_at=1700000000.0,
        metrics_updated_at=1700000005.25,
        metrics={"rtt": 12},
    )
    assert await registry.get("c", "s\u00e9") == expected
    assert await registry.get_for_call("c") == [expected]
    assert type(expected.started_at) is float


def test_missing_metrics_reads_as_empty_like_vision_agents_default() -> None:
    raw = b'{"session_id": "s", "call_id": "c", "node_id": "n", "started_at": 1.0, "metrics_updated_at": 2.0}'
    assert SessionInfo.from_json(raw).metrics == {}


def test_session_info_is_a_frozen_snapshot_with_vision_agents_field_order() -> None:
    info = SessionInfo("s", "c", "n", 1.0, 2.0, {"m": 1})
    assert list(info.to_dict()) == ["session_id", "call_id", "node_id", "started_at", "metrics_updated_at", "metrics"]
    with pytest.raises(AttributeError):
        info.node_id = "other"  # type: ignore[misc]
    assert SessionInfo.from_json(info.to_json()) == info


# -- ids -----------------------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_plain_ids_use_exactly_vision_agents_keys(
    registry: SessionRegistry, store: InMemorySessionKVStore
) -> None:
    await registry.register("default:call-1_x", "0b7c5f8e-2d5a")
    await registry.request_close("default:call-1_x", "0b7c5f8e-2d5a")
    assert sorted(await store.keys("")) == [
        "close_requests/default:call-1_x/0b7c5f8e-2d5a",
        "sessions/default:call-1_x/0b7c5f8e-2d5a",
    ]


@pytest.mark.asyncio
async def test_a_call_never_lists_the_sessions_of_a_call_whose_id_extends_it_with_a_slash(
    registry: SessionRegistry,
) -> None:
    await registry.register("a/b", "s")
    await registry.register("a", "t")
    assert [info.session_id for info in await registry.get_for_call("a")] == ["t"]
    assert [info.session_id for info in await registry.get_for_call("a/b")] == ["s"]
    assert await registry.get_for_call("a/") == []


@pytest.mark.asyncio
async def test_slashes_in_ids_never_make_two_sessions_share_a_key(registry: SessionRegistry) -> None:
    await registry.register("a", "b/s")
    await registry.register("a/b", "s")
    await registry.request_close("a", "b/s")
    first, second = await registry.get("a", "b/s"), await registry.get("a/b", "s")
    assert first is not None
    assert (first.call_id, first.session_id) == ("a", "b/s")
    assert second is not None
    assert (second.call_id, second.session_id) == ("a/b", "s")
    assert await registry.get_close_requests({"b/s": "a", "s": "a/b"}) == ["b/s"]
    await registry.remove("a/b", "s")
    assert await registry.get("a", "b/s") == first


@pytest.mark.asyncio
async def test_percent_encoding_of_call_ids_is_injective(
    registry: SessionRegistry, store: InMemorySessionKVStore
) -> None:
    for call_id in ["a/b", "a%2Fb", "a%b", "%", "/"]:
        await registry.register(call_id, "s")
    assert sorted(await store.keys("sessions/")) == sorted(
        ["sessions/a%2Fb/s", "sessions/a%252Fb/s", "sessions/a%25b/s", "sessions/%25/s", "sessions/%2F/s"]
    )
    for call_id in ["a/b", "a%2Fb", "a%b", "%", "/"]:
        assert [info.call_id for info in await registry.get_for_call(call_id)] == [call_id]


@pytest.mark.parametrize("call_id", ["a*", "a?", "a[b]", "[ab]", "a\\", "*", "?"])
@pytest.mark.asyncio
async def test_glob_characters_in_a_call_id_match_only_themselves(registry: SessionRegistry, call_id: str) -> None:
    for other in ["a", "ab", "abc", "b", "a\\b", "\\"]:
        await registry.register(other, "s-" + other)
    assert await registry.get_for_call(call_id) == []
    await registry.register(call_id, "mine")
    assert [info.session_id for info in await registry.get_for_call(call_id)] == ["mine"]


@pytest.mark.parametrize(
    ("call_id", "session_id"),
    [("appel-é", "séance-ü"), ("通话", "会话/一"), ("📞 call", "🎥"), (" ", "tab\tand\nnewline"), ("a:b", "c:d")],
)
@pytest.mark.asyncio
async def test_unicode_and_odd_ids_round_trip(registry: SessionRegistry, call_id: str, session_id: str) -> None:
    await registry.register(call_id, session_id)
    await registry.update_metrics(call_id, session_id, {"m": 1})
    await registry.request_close(call_id, session_id)
    info = await registry.get(call_id, session_id)
    assert info is not None
    assert (info.call_id, info.session_id, info.metrics) == (call_id, session_id, {"m": 1})
    assert await registry.get_for_call(call_id) == [info]
    assert await registry.get_close_requests({session_id: call_id}) == [session_id]
    await registry.remove(call_id, session_id)
    assert await registry.get_for_call(call_id) == []


@pytest.mark.asyncio
async def test_a_record_naming_another_session_is_not_that_session(
    registry: SessionRegistry, store: InMemorySessionKVStore
) -> None:
    # A vision-agents node does not encode "/": call "a/b" session "s" lands where our call "a" session "b/s" lives.
    await store.set("sessions/a/b/s", record(call_id="a/b", session_id="s"), TTL)
    assert await registry.get("a", "b/s") is None
    assert await registry.get_for_call("a") == []
    assert await registry.update_metrics("a", "b/s", {"x": 1}) is False
    assert await store.get("sessions/a/b/s") == record(call_id="a/b", session_id="s")


# -- invalid arguments ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ttl", "error", "message"),
    [
        (0, ValueError, r"ttl must be > 0 seconds, got 0"),
        (-5.0, ValueError, r"ttl must be > 0 seconds, got -5.0"),
        (math.nan, ValueError, r"finite"),
        (math.inf, ValueError, r"finite"),
        (2e9, ValueError, r"at most"),
        ("30", TypeError, r"ttl must be a number of seconds .*str: '30'"),
        (True, TypeError, r"ttl must be a number of seconds .*bool: True"),
        (None, TypeError, r"NoneType"),
    ],
)
def test_invalid_ttl_is_rejected(ttl: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        SessionRegistry(ttl=ttl)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"node_id": ""}, ValueError, r"node_id must be a non-empty string"),
        ({"node_id": 7}, TypeError, r"node_id must be str, got int: 7"),
        ({"store": {}}, TypeError, r"store must have the SessionKVStore API, but dict lacks start, close"),
    ],
)
def test_invalid_constructor_arguments_are_rejected(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        SessionRegistry(**kwargs)  # type: ignore[arg-type]


BAD_IDS: Sequence[tuple[object, type[Exception], str]] = [
    ("", ValueError, r"must be a non-empty string"),
    (None, TypeError, r"must be str, got NoneType"),
    (b"c", TypeError, r"must be str, got bytes: b'c'"),
    (5, TypeError, r"must be str, got int: 5"),
    ("\ud800", ValueError, r"cannot be encoded as UTF-8"),
]


@pytest.mark.parametrize(("bad", "error", "message"), BAD_IDS)
@pytest.mark.asyncio
async def test_invalid_ids_are_rejected_by_every_method_before_touching_the_store(
    registry: SessionRegistry, store: InMemorySessionKVStore, bad: object, error: type[Exception], message: str
) -> None:
    await registry.register("c", "s")
    before = await store.mget(["sessions/c/s"])
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: registry.register(bad, "s"),  # type: ignore[arg-type]
        lambda: registry.register("c", bad),  # type: ignore[arg-type]
        lambda: registry.remove(bad, "s"),  # type: ignore[arg-type]
        lambda: registry.remove("c", bad),  # type: ignore[arg-type]
        lambda: registry.update_metrics(bad, "s", {}),  # type: ignore[arg-type]
        lambda: registry.update_metrics("c", bad, {}),  # type: ignore[arg-type]
        lambda: registry.request_close(bad, "s"),  # type: ignore[arg-type]
        lambda: registry.request_close("c", bad),  # type: ignore[arg-type]
        lambda: registry.get(bad, "s"),  # type: ignore[arg-type]
        lambda: registry.get("c", bad),  # type: ignore[arg-type]
        lambda: registry.get_for_call(bad),  # type: ignore[arg-type]
        lambda: registry.get_close_requests({bad: "c"}),  # type: ignore[dict-item]
        lambda: registry.get_close_requests({"s": bad}),  # type: ignore[dict-item]
        lambda: registry.refresh({"s": bad}),  # type: ignore[dict-item]
    ]
    for call in calls:
        with pytest.raises(error, match=message):
            await call()
    assert await store.keys("") == ["sessions/c/s"]
    assert await store.mget(["sessions/c/s"]) == before


@pytest.mark.parametrize("sessions", [["s"], "s", [("s", "c")], None])
@pytest.mark.asyncio
async def test_session_mappings_must_be_mappings(registry: SessionRegistry, sessions: object) -> None:
    with pytest.raises(TypeError, match=r"sessions must be a mapping of session_id to call_id"):
        await registry.get_close_requests(sessions)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"sessions must be a mapping of session_id to call_id"):
        await registry.refresh(sessions)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_get_for_call_errors_must_be_a_list(registry: SessionRegistry) -> None:
    with pytest.raises(TypeError, match=r"errors must be a list .*got \(\)"):
        await registry.get_for_call("c", errors=())  # type: ignore[arg-type]


# -- on a real Redis -----------------------------------------------------------------------------------------------
# Real time only here (no expiry tests: those run above, exactly, on the fake clock). These check what only Redis
# can show: vision-agents' full key layout ("vision_agents:" prefix) and literal prefixes through SCAN MATCH.


@pytest_asyncio.fixture
async def redis_registry(redis_client: aioredis.Redis) -> AsyncIterator[SessionRegistry]:
    store = RedisSessionKVStore(client=redis_client, key_prefix="test_reg:")
    async with store:
        yield SessionRegistry(store, node_id="node-r", ttl=TTL)


@pytest.mark.asyncio
async def test_redis_registry_writes_vision_agents_keys_and_json(
    redis_registry: SessionRegistry, redis_client: aioredis.Redis
) -> None:
    # Timestamps from the fake clock (epoch EPOCH), expiry by the real Redis.
    registry = SessionRegistry(redis_registry.store, node_id="node-a", ttl=TTL, clock=VirtualClock(epoch=EPOCH))
    await registry.register("call-1", "sess-1")
    await registry.request_close("call-1", "sess-1")
    assert sorted(await redis_client.keys("*")) == [
        b"test_reg:close_requests/call-1/sess-1",
        b"test_reg:sessions/call-1/sess-1",
    ]
    assert await redis_client.get("test_reg:sessions/call-1/sess-1") == GOLDEN_REGISTERED
    assert await redis_client.get("test_reg:close_requests/call-1/sess-1") == b""
    for key in ["test_reg:sessions/call-1/sess-1", "test_reg:close_requests/call-1/sess-1"]:
        assert 0 < await redis_client.pttl(key) <= TTL * 1000


@pytest.mark.asyncio
async def test_redis_registry_round_trip(redis_registry: SessionRegistry) -> None:
    await redis_registry.register("c", "s1")
    await redis_registry.register("c", "s2")
    assert await redis_registry.update_metrics("c", "s1", {"rtt_ms": 12.5}) is True
    await redis_registry.request_close("c", "s2")
    listed = await redis_registry.get_for_call("c")
    assert [(info.session_id, info.metrics) for info in listed] == [("s1", {"rtt_ms": 12.5}), ("s2", {})]
    assert await redis_registry.get_close_requests({"s1": "c", "s2": "c"}) == ["s2"]
    await redis_registry.remove("c", "s2")
    assert await redis_registry.get_close_requests({"s2": "c"}) == []
    assert [info.session_id for info in await redis_registry.get_for_call("c")] == ["s1"]


@pytest.mark.asyncio
async def test_redis_heartbeat_never_resurrects_a_removed_session(
    redis_registry: SessionRegistry, redis_client: aioredis.Redis
) -> None:
    await redis_registry.register("c", "s")
    await redis_registry.remove("c", "s")
    assert await redis_registry.update_metrics("c", "s", {"x": 1}) is False
    assert await redis_client.keys("*") == []


@pytest.mark.asyncio
async def test_redis_ids_with_glob_characters_and_slashes_stay_apart(redis_registry: SessionRegistry) -> None:
    for call_id in ["a", "ab", "a/b", "a*", "a?", "a[b]", "a\\"]:
        await redis_registry.register(call_id, "s-" + call_id)
    for call_id in ["a", "ab", "a/b", "a*", "a?", "a[b]", "a\\"]:
        assert [info.session_id for info in await redis_registry.get_for_call(call_id)] == ["s-" + call_id]
    assert await redis_registry.get_for_call("[ab]") == []
    assert await redis_registry.get_for_call("*") == []


@pytest.mark.asyncio
async def test_redis_get_for_call_survives_a_corrupt_record(
    redis_registry: SessionRegistry, redis_client: aioredis.Redis
) -> None:
    await redis_registry.register("c", "good")
    await redis_client.set("test_reg:sessions/c/bad", b"\xff\x00", px=60_000)
    errors: list[CorruptRecordError] = []
    assert [info.session_id for info in await redis_registry.get_for_call("c", errors=errors)] == ["good"]
    assert [error.key for error in errors] == ["sessions/c/bad"]
    with pytest.raises(CorruptRecordError, match="'sessions/c/bad'"):
        await redis_registry.get("c", "bad")


@pytest.mark.asyncio
async def test_a_store_with_the_api_but_not_our_base_class_is_accepted() -> None:
    class DuckStore:
        """Has the store API without subclassing SessionKVStore, like vision-agents' own stores."""

        def __init__(self) -> None:
            self.inner = InMemorySessionKVStore()

        def __getattr__(self, name: str) -> object:
            return getattr(self.inner, name)

    async with SessionRegistry(DuckStore(), node_id="n") as registry:  # type: ignore[arg-type]
        await registry.register("c", "s")
        assert [info.node_id for info in await registry.get_for_call("c")] == ["n"]


# -- drop-in for vision-agents: what its launcher and HTTP layer call -----------------------------------------------


class Average:
    """Like vision-agents' ``Average``: ``None`` until updated; NaN or infinity if a sample was."""

    def __init__(self, *samples: float) -> None:
        self.samples = samples

    def value(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None


class FakeAgentMetrics:
    """The shape of vision-agents' ``AgentMetrics``: metric objects read through ``to_dict()``."""

    def __init__(self, **metrics: object) -> None:
        self.metrics = metrics

    def to_dict(self) -> dict[str, object]:
        return {name: m.value() if isinstance(m, Average) else m for name, m in self.metrics.items()}


VISION_AGENTS_DICT = {
    "session_id": "s1",
    "call_id": "c1",
    "node_id": "n1",
    "started_at": 1,
    "metrics_updated_at": 2.5,
    "metrics": {"llm_input_tokens__total": 10, "llm_latency_ms__avg": None},
}


def test_from_dict_reads_to_dict_output_and_ignores_unknown_keys() -> None:
    info = SessionInfo.from_dict({**VISION_AGENTS_DICT, "unknown": "value", "another_unknown": [1, 2, 3]})
    assert info == SessionInfo("s1", "c1", "n1", 1.0, 2.5, {"llm_input_tokens__total": 10, "llm_latency_ms__avg": None})
    assert type(info.started_at) is float
    assert SessionInfo.from_dict(info.to_dict()) == info


@pytest.mark.parametrize("metrics", [None, "absent"])
def test_from_dict_without_metrics_has_none(metrics: object) -> None:
    data = {**VISION_AGENTS_DICT, "metrics": metrics}
    if metrics == "absent":
        del data["metrics"]
    assert SessionInfo.from_dict(data).metrics == {}


def test_from_dict_takes_metrics_from_an_object_with_to_dict() -> None:
    data = {**VISION_AGENTS_DICT, "metrics": FakeAgentMetrics(tokens=3, latency=Average(40.0, 44.0), idle=Average())}
    assert SessionInfo.from_dict(data).metrics == {"tokens": 3, "latency": 42.0, "idle": None}


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        (["call_id", "node_id", "started_at", "metrics_updated_at"], r"missing 4 required positional arguments"),
        (["node_id"], r"^SessionInfo.__init__\(\) missing 1 required positional argument: 'node_id'$"),
    ],
)
def test_from_dict_missing_required_field_raises_the_constructors_type_error(missing: list[str], message: str) -> None:
    data = {name: value for name, value in VISION_AGENTS_DICT.items() if name not in missing}
    with pytest.raises(TypeError, match=message):
        SessionInfo.from_dict(data)


@pytest.mark.parametrize(
    ("field", "value", "error", "message"),
    [
        ("call_id", 7, TypeError, r"SessionInfo.from_dict: field call_id must be a string, got 7"),
        ("started_at", "1", TypeError, r"field started_at must be a finite number of epoch seconds, got '1'"),
        ("metrics_updated_at", math.inf, ValueError, r"field metrics_updated_at must be a finite number .* inf"),
        ("metrics", {"x": "y"}, TypeError, r"metric 'x' must be an int, float or None .*str 'y'"),
        ("metrics", [1], TypeError, r"metrics must be a mapping .*got list"),
    ],
)
def test_from_dict_rejects_wrong_types_naming_the_field(
    field: str, value: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        SessionInfo.from_dict({**VISION_AGENTS_DICT, field: value})


def test_from_dict_needs_a_mapping() -> None:
    with pytest.raises(TypeError, match=r"from_dict needs a mapping of field name to value, got list"):
        SessionInfo.from_dict([("session_id", "s")])  # type: ignore[arg-type]


def test_metrics_offer_to_dict_like_agent_metrics() -> None:
    info = SessionInfo("s", "c", "n", 1.0, 2.0, {"a": 1, "b": None, "c": 2.5})
    assert type(info.metrics).__name__ == "SessionMetrics"
    assert info.metrics.to_dict() == {"a": 1, "b": None, "c": 2.5}
    assert type(info.metrics.to_dict()) is dict
    assert info.metrics.to_dict(["c", "a"]) == {"c": 2.5, "a": 1}
    with pytest.raises(ValueError, match=r"^Unknown field: z$"):
        info.metrics.to_dict(["a", "z"])
    copy = info.metrics.to_dict()
    copy["a"] = 99
    assert info.metrics["a"] == 1


def test_session_info_checks_and_converts_the_metrics_it_is_given() -> None:
    assert SessionInfo("s", "c", "n", 1.0, 2.0, FakeAgentMetrics(t=1)).metrics == {"t": 1}
    with pytest.raises(TypeError, match=r"metric 't' must be an int, float or None"):
        SessionInfo("s", "c", "n", 1.0, 2.0, {"t": "x"})  # type: ignore[dict-item]


@pytest.mark.asyncio
async def test_http_layer_reads_session_info_and_metrics_as_vision_agents_does(
    registry: SessionRegistry, clock: VirtualClock
) -> None:
    """vision-agents' ``runner/http/api.py``: ``get_session_info`` then ``fromtimestamp`` and ``metrics.to_dict()``."""
    import datetime

    await registry.register("call", "sess")
    await registry.update_metrics("call", "sess", FakeAgentMetrics(tokens=100, latency=Average(42.0)))
    info = await registry.get("call", "sess")
    assert info is not None
    assert (info.session_id, info.call_id) == ("sess", "call")
    assert datetime.datetime.fromtimestamp(info.started_at, tz=datetime.UTC).timestamp() == EPOCH
    assert datetime.datetime.fromtimestamp(info.metrics_updated_at, tz=datetime.UTC).timestamp() == EPOCH
    assert info.metrics.to_dict() == {"tokens": 100, "latency": 42.0}


@pytest.mark.asyncio
async def test_launcher_calls_work_with_their_shapes(registry: SessionRegistry) -> None:
    """What ``AgentLauncher`` does with the registry: ``registry or SessionRegistry()``, ``len(get_for_call())``,
    ``get_close_requests`` over a dict, ``update_metrics`` with the agent's metrics object, ``request_close``, ``get``,
    ``remove`` and ``node_id``."""
    assert (registry or SessionRegistry()) is registry
    await registry.register("call", "a")
    await registry.register("call", "b")
    assert len(await registry.get_for_call("call")) == 2
    await registry.request_close("call", "b")
    assert await registry.get_close_requests({"a": "call", "b": "call"}) == ["b"]
    assert await registry.update_metrics("call", "a", FakeAgentMetrics(tokens=1)) is True
    info = await registry.get("call", "a")
    assert info is not None
    assert info.node_id == registry.node_id
    await registry.remove("call", "b")
    assert [i.session_id for i in await registry.get_for_call("call")] == ["a"]


@pytest.mark.asyncio
async def test_update_metrics_accepts_agent_metrics_and_stores_an_aggregate_without_value_as_null(
    registry: SessionRegistry, store: InMemorySessionKVStore
) -> None:
    await registry.register("c", "s")
    metrics = FakeAgentMetrics(tokens=7, latency=Average(1.0, 2.0), empty=Average(), broken=Average(math.inf))
    assert await registry.update_metrics("c", "s", metrics)
    raw = await store.get("sessions/c/s")
    assert raw is not None
    assert raw.endswith(b'"metrics": {"tokens": 7, "latency": 1.5, "empty": null, "broken": null}}')
    json.loads(raw, parse_constant=lambda token: pytest.fail(f"{token} is not JSON"))


@pytest.mark.asyncio
async def test_update_metrics_stores_other_real_numbers_as_json_numbers(
    registry: SessionRegistry, store: InMemorySessionKVStore
) -> None:
    import fractions

    numpy = pytest.importorskip("numpy", reason="numpy (installed with the sim extra's matplotlib) provides the types")
    await registry.register("c", "s")
    metrics = {
        "frac": fractions.Fraction(1, 4),
        "i64": numpy.int64(3),
        "f32": numpy.float32(0.5),
        "f64": numpy.float64(2),
    }
    await registry.update_metrics("c", "s", metrics)
    info = await registry.get("c", "s")
    assert info is not None
    assert info.metrics == {"frac": 0.25, "i64": 3, "f32": 0.5, "f64": 2.0}
    assert [type(v) for v in info.metrics.values()] == [float, int, float, float]


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        (FakeAgentMetrics(name="x"), r"metric 'name' must be an int, float or None .*str 'x'"),
        (FakeAgentMetrics(flag=True), r"metric 'flag' .*bool True"),
        (object(), r"metrics must be a mapping .*or an object whose to_dict\(\) returns one .*got object"),
    ],
)
@pytest.mark.asyncio
async def test_update_metrics_rejects_what_is_not_a_metric_before_reading(
    registry: SessionRegistry, store: InMemorySessionKVStore, metrics: object, message: str
) -> None:
    await registry.register("c", "s")
    before = await store.get("sessions/c/s")
    with pytest.raises(TypeError, match=message):
        await registry.update_metrics("c", "s", metrics)  # type: ignore[arg-type]
    assert await store.get("sessions/c/s") == before


@pytest.mark.asyncio
async def test_update_metrics_names_a_to_dict_that_returns_no_mapping(registry: SessionRegistry) -> None:
    class Odd:
        def to_dict(self) -> list[int]:
            return [1]

    with pytest.raises(TypeError, match=r"metrics.to_dict\(\) must return a mapping .*got list from Odd"):
        await registry.update_metrics("c", "s", Odd())  # type: ignore[arg-type]


# -- the fast path: decoded records remembered by their bytes -------------------------------------------------------


@pytest.mark.asyncio
async def test_a_returned_record_is_a_copy_the_next_read_does_not_share(registry: SessionRegistry) -> None:
    await registry.register("c", "s")
    await registry.update_metrics("c", "s", {"x": 1})
    first = await registry.get("c", "s")
    assert first is not None
    first.metrics["x"] = 2
    first.metrics["y"] = 3
    again = await registry.get("c", "s")
    assert again is not None
    assert again.metrics == {"x": 1}
    assert (await registry.get_for_call("c"))[0].metrics == {"x": 1}


@pytest.mark.asyncio
async def test_bytes_that_failed_to_decode_fail_every_time(
    registry: SessionRegistry, store: InMemorySessionKVStore
) -> None:
    bad = record(session_id="s", call_id="c", started_at=math.nan)  # json.dumps writes NaN, which is not JSON
    await store.set("sessions/c/s", bad, TTL)
    for _ in range(2):
        with pytest.raises(CorruptRecordError, match=r"field started_at must be a finite number"):
            await registry.get("c", "s")
        with pytest.raises(CorruptRecordError):
            await registry.update_metrics("c", "s", {})
    assert await store.get("sessions/c/s") == bad


def test_an_invalid_session_info_is_encoded_as_asked_but_never_read_back() -> None:
    info = SessionInfo("s", "c", "n", math.nan, 1.0)
    raw = info.to_json()
    assert raw == json.dumps(info.to_dict()).encode()
    with pytest.raises(CorruptRecordError, match=r"started_at"):
        SessionInfo.from_json(raw)


@pytest.mark.asyncio
async def test_a_record_in_another_field_order_is_rewritten_with_json_dumps(
    registry: SessionRegistry, store: InMemorySessionKVStore, clock: VirtualClock
) -> None:
    shuffled = {
        "call_id": "c",
        "session_id": "s",
        "metrics": {},
        "node_id": "x",
        "started_at": 1,
        "metrics_updated_at": 2,
    }
    await store.set("sessions/c/s", json.dumps(shuffled).encode(), TTL)
    await registry.update_metrics("c", "s", {"m": 1.5})
    assert (
        await store.get("sessions/c/s")
        == json.dumps({**shuffled, "metrics": {"m": 1.5}, "metrics_updated_at": EPOCH}).encode()
    )


def test_remembered_records_stay_bounded() -> None:
    from sessionkv import registry as module

    cache = module._RecordCache()
    for number in range(3 * module._CACHE_GENERATION + 5):
        cache.decode(record(session_id=f"s{number}"), key="k")
    assert len(cache._young) + len(cache._old) <= 2 * module._CACHE_GENERATION


ids = st.text(min_size=1, max_size=12)  # any text but lone surrogates (not UTF-8), which ids may not be
metric_values = st.one_of(st.none(), st.integers(), st.floats(allow_nan=False, allow_infinity=False))


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    session_id=ids,
    call_id=ids,
    node_id=ids,
    stamps=st.tuples(st.floats(0, 4e9), st.floats(0, 4e9)),
    metrics=st.dictionaries(st.text(max_size=8), metric_values, max_size=6),
)
def test_records_are_json_dumps_byte_for_byte(
    session_id: str, call_id: str, node_id: str, stamps: tuple[float, float], metrics: dict[str, MetricValue]
) -> None:
    info = SessionInfo(session_id, call_id, node_id, stamps[0], stamps[1], metrics)
    raw = info.to_json()
    assert raw == json.dumps(info.to_dict()).encode()
    assert SessionInfo.from_json(raw) == info
    assert SessionInfo.from_json(bytes(raw)) == info  # equal bytes, another object: from the cache


@settings(max_examples=100, deadline=None, derandomize=True)
@given(
    session_id=ids,
    call_id=ids.filter(lambda text: "/" not in text and "%" not in text),
    node_id=ids,
    started_at=st.one_of(st.integers(0, 2**40), st.floats(0, 4e9)),
    beats=st.lists(st.dictionaries(st.text(max_size=8), metric_values, max_size=4), min_size=1, max_size=3),
)
def test_heartbeats_of_a_record_written_elsewhere_are_json_dumps_byte_for_byte(
    session_id: str, call_id: str, node_id: str, started_at: float, beats: list[dict[str, MetricValue]]
) -> None:
    """The first heartbeat rewrites bytes never seen before (decoded), the next ones bytes it wrote (remembered)."""
    clock = VirtualClock(epoch=EPOCH)
    store = InMemorySessionKVStore(clock=clock)
    registry = SessionRegistry(store, node_id="node-a", ttl=TTL, clock=clock)
    data: dict[str, object] = {
        "session_id": session_id,
        "call_id": call_id,
        "node_id": node_id,
        "started_at": started_at,
        "metrics_updated_at": 1.5,
        "metrics": {},
    }
    key = f"sessions/{call_id}/{session_id}"

    async def scenario() -> None:
        await store.set(key, json.dumps(data).encode(), TTL)
        for number, metrics in enumerate(beats):
            await clock.advance(0.125)
            assert await registry.update_metrics(call_id, session_id, metrics)
            expected = {**data, "metrics_updated_at": EPOCH + 0.125 * (number + 1), "metrics": metrics}
            assert await store.get(key) == json.dumps(expected).encode()

    asyncio.run(scenario())


def test_dataclasses_replace_makes_a_changed_copy() -> None:
    import dataclasses

    info = SessionInfo("s", "c", "n", 1.0, 2.0, {"a": 1})
    changed = dataclasses.replace(info, node_id="m", started_at=1.5)
    assert changed == SessionInfo("s", "c", "m", 1.5, 2.0, {"a": 1})
    assert info.node_id == "n"


@pytest.mark.parametrize("stamp", [10**400, -(10**400)])
def test_a_timestamp_too_large_for_a_float_is_a_corrupt_record_not_an_overflow(stamp: int) -> None:
    raw = json.dumps(
        {"session_id": "s", "call_id": "c", "node_id": "n", "started_at": stamp, "metrics_updated_at": 1.0}
    )
    with pytest.raises(CorruptRecordError, match="started_at must be a finite number of epoch seconds"):
        SessionInfo.from_json(raw, key="sessions/c/s")
