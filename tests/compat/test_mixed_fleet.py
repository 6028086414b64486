"""A mixed fleet on one real redis-server: vision-agents nodes and sessionkv nodes share sessions, both ways.

Four kinds of node share one key prefix on the session's server: each project's registry over its own Redis store, and
each project's registry over the other project's store. For every ordered pair (writer, reader) of different kinds,
what one node writes the other sees: the session, the close request, the heartbeat (metrics, timestamp and a re-armed
TTL) and the removal.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from vision_agents.core.agents.session_registry import RedisSessionKVStore as VARedisStore
from vision_agents.core.agents.session_registry import SessionRegistry as VARegistry
from vision_agents.core.observability.agent import AgentMetrics

from sessionkv import RedisSessionKVStore, SessionRegistry
from sessionkv.testing import RedisServer

WRITER_TTL = 30.0
READER_TTL = 90.0  # a heartbeat by the reader re-arms the record to more than the writer's TTL: visible in PTTL


@dataclass
class Node:
    kind: str
    registry: Any

    @property
    def project(self) -> str:
        return self.kind.split("/")[0]

    async def heartbeat(self, call_id: str, session_id: str, tokens: int) -> None:
        """What each project's launcher passes: vision-agents an ``AgentMetrics``, sessionkv a mapping."""
        if self.project == "vision-agents":
            metrics = AgentMetrics()
            metrics.llm_input_tokens__total.inc(tokens)
            await self.registry.update_metrics(call_id, session_id, metrics)
        else:
            await self.registry.update_metrics(call_id, session_id, {"llm_input_tokens__total": tokens})


def metrics_of(info: Any) -> dict[str, Any]:
    """A ``SessionInfo``'s metrics as a plain dict, whichever project's ``SessionInfo`` it is."""
    metrics = info.metrics
    return dict(metrics.to_dict() if hasattr(metrics, "to_dict") else metrics)


# (kind, registry class, store class): "<registry project>/<store project>"
KINDS: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
    "vision-agents/vision-agents": (VARegistry, VARedisStore),
    "sessionkv/sessionkv": (SessionRegistry, RedisSessionKVStore),
    "vision-agents/sessionkv": (VARegistry, RedisSessionKVStore),
    "sessionkv/vision-agents": (SessionRegistry, VARedisStore),
}
PAIRS = [(writer, reader) for writer in KINDS for reader in KINDS if writer != reader]


@pytest_asyncio.fixture
async def fleet(
    sessionkv_redis_server: RedisServer, sessionkv_namespace: str, sessionkv_redis_client: aioredis.Redis
) -> AsyncIterator[Callable[[str, str, float], Any]]:
    """Builds started nodes of a kind, each with its own store and connection, all under this test's prefix."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(kind: str, node_id: str, ttl: float) -> Node:
            registry_class, store_class = KINDS[kind]
            store = store_class(url=sessionkv_redis_server.url, key_prefix=sessionkv_namespace)
            await store.start()  # a vision-agents registry starts it again (a PING): harmless
            stack.push_async_callback(store.close)  # idempotent for both stores
            registry = registry_class(store, node_id=node_id, ttl=ttl)
            await registry.start()
            stack.push_async_callback(registry.stop)
            return Node(kind, registry)

        yield make
    assert await sessionkv_redis_client.keys(f"{sessionkv_namespace}*") == [], "every record was removed"


@pytest.mark.asyncio
@pytest.mark.parametrize(("writer_kind", "reader_kind"), PAIRS)
async def test_a_node_sees_the_sessions_close_requests_heartbeats_and_removals_of_another_kind(
    fleet: Callable[[str, str, float], Any],
    sessionkv_redis_client: aioredis.Redis,
    sessionkv_namespace: str,
    writer_kind: str,
    reader_kind: str,
) -> None:
    writer: Node = await fleet(writer_kind, "writer-node", WRITER_TTL)
    reader: Node = await fleet(reader_kind, "reader-node", READER_TTL)
    session_key = f"{sessionkv_namespace}sessions/call-1/session-1"

    # the writer starts a session: the reader lists it and reads it, node id and timestamps included
    await writer.registry.register("call-1", "session-1")
    listed = await reader.registry.get_for_call("call-1")
    assert [(info.session_id, info.call_id, info.node_id) for info in listed] == [
        ("session-1", "call-1", "writer-node")
    ]
    registered = await reader.registry.get("call-1", "session-1")
    assert registered is not None
    assert registered.started_at == registered.metrics_updated_at > 0
    assert await reader.registry.get_for_call("call-2") == []

    # the reader asks for a close: the writer (the owning node) sees the request, for that session only
    assert await writer.registry.get_close_requests({"session-1": "call-1"}) == []
    await reader.registry.request_close("call-1", "session-1")
    assert await writer.registry.get_close_requests({"session-1": "call-1", "other": "call-1"}) == ["session-1"]

    # the writer heartbeats: the reader sees the metrics and the new timestamp
    await writer.heartbeat("call-1", "session-1", tokens=100)
    beaten = await reader.registry.get("call-1", "session-1")
    assert beaten is not None
    assert metrics_of(beaten)["llm_input_tokens__total"] == 100
    assert beaten.metrics_updated_at >= registered.metrics_updated_at
    assert beaten.started_at == registered.started_at
    assert 0 < await sessionkv_redis_client.pttl(session_key) <= WRITER_TTL * 1000

    # ... and the other way: the reader's heartbeat re-arms the record with its own, longer TTL, the writer reads it
    await reader.heartbeat("call-1", "session-1", tokens=250)
    assert await sessionkv_redis_client.pttl(session_key) > WRITER_TTL * 1000
    seen_by_writer = await writer.registry.get("call-1", "session-1")
    assert seen_by_writer is not None
    assert metrics_of(seen_by_writer)["llm_input_tokens__total"] == 250
    assert seen_by_writer.node_id == "writer-node"  # a heartbeat never takes the session over

    # the writer removes the session: the record and the close flag are gone for the reader
    await writer.registry.remove("call-1", "session-1")
    assert await reader.registry.get("call-1", "session-1") is None
    assert await reader.registry.get_for_call("call-1") == []
    assert await reader.registry.get_close_requests({"session-1": "call-1"}) == []

    # a heartbeat after removal resurrects nothing, whichever node sends it
    await reader.heartbeat("call-1", "session-1", tokens=1)
    await writer.heartbeat("call-1", "session-1", tokens=1)
    assert await sessionkv_redis_client.exists(session_key) == 0


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", list(KINDS))
async def test_the_stored_record_is_the_same_json_object_whoever_writes_it(
    fleet: Callable[[str, str, float], Any],
    sessionkv_redis_client: aioredis.Redis,
    sessionkv_namespace: str,
    kind: str,
) -> None:
    node: Node = await fleet(kind, "node-a", WRITER_TTL)
    await node.registry.register("call-1", "session-1")
    raw = await sessionkv_redis_client.get(f"{sessionkv_namespace}sessions/call-1/session-1")
    assert raw is not None
    record = json.loads(raw)
    assert list(record)[:5] == ["session_id", "call_id", "node_id", "started_at", "metrics_updated_at"]
    assert (record["session_id"], record["call_id"], record["node_id"]) == ("session-1", "call-1", "node-a")
    assert await sessionkv_redis_client.get(f"{sessionkv_namespace}close_requests/call-1/session-1") is None
    await node.registry.request_close("call-1", "session-1")
    assert await sessionkv_redis_client.get(f"{sessionkv_namespace}close_requests/call-1/session-1") == b""
    await node.registry.remove("call-1", "session-1")
