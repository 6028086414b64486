"""vision-agents' own ``AgentLauncher`` runs its sessions on a sessionkv ``SessionRegistry``.

The launcher is the real one (vision_agents.core.agents.agent_launcher, 0.6.9); only the agents are small fakes
handed in through its ``create_agent`` / ``join_call`` hooks: an agent with no LLM/TTS/STT to warm up, real
``AgentMetrics``, and a ``join_call`` that stays "in the call" until cancelled. Another node (a second registry, with
its own connection on Redis) watches the shared store: it sees sessions start and heartbeat, asks for a close, and
sees them removed.

Timing: the maintenance interval is short and every TTL is a multiple of it (the margins); nothing asserts how long
anything took, the tests poll for the expected state with a generous deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest
import pytest_asyncio
from vision_agents.core.agents.agent_launcher import AgentLauncher
from vision_agents.core.agents.exceptions import MaxSessionsPerCallExceeded
from vision_agents.core.edge.types import User
from vision_agents.core.observability.agent import AgentMetrics

from sessionkv import InMemorySessionKVStore, RedisSessionKVStore, SessionKVStore, SessionRegistry
from sessionkv.testing import RedisServer, polling

INTERVAL = 0.05
"""The launcher's maintenance interval (seconds): it checks close requests and heartbeats once per interval."""
TTL = 60 * INTERVAL
"""Registry TTL: 60 maintenance cycles, so a record only expires if heartbeats stop, not because one was late."""
DEADLINE = 600 * INTERVAL
"""How long a poll waits for an expected state before the test fails (generous: the machine may be loaded)."""

T = TypeVar("T")


class FakeAgent:
    """What ``AgentLauncher`` uses of vision-agents' ``Agent``, and nothing else."""

    def __init__(self) -> None:
        self.id = str(uuid.uuid4())
        self.agent_user = User(id=f"agent-{self.id}", name="fake")
        self.metrics = AgentMetrics()
        self.llm = self.tts = self.stt = self.turn_detection = self._multi_speaker_filter = None
        self.processors: list[Any] = []
        self.closed = False
        self.leave = asyncio.Event()  # set it to make the agent leave the call by itself

    def on_call_for(self) -> float:
        return 0.0

    def idle_for(self) -> float:
        return 0.0

    async def close(self) -> None:
        self.closed = True


async def join_call(agent: FakeAgent, call_type: str, call_id: str) -> None:
    await agent.leave.wait()  # in the call until it leaves or the launcher cancels it


async def eventually(probe: Callable[[], Awaitable[T]], what: str) -> T:
    """Poll ``probe`` every maintenance interval until it returns something truthy; fail after ``DEADLINE``."""
    return await polling.eventually(probe, within=DEADLINE, what=what, interval=INTERVAL)


@pytest_asyncio.fixture(params=["memory", "redis"])
async def nodes(
    request: pytest.FixtureRequest, sessionkv_namespace: str
) -> AsyncIterator[tuple[SessionRegistry, SessionRegistry]]:
    """(the launcher's registry, another node's registry) over one shared store: the same in-memory store object,
    or two connections to the session's redis-server under this test's prefix."""
    async with contextlib.AsyncExitStack() as stack:
        if request.param == "memory":
            shared = await stack.enter_async_context(InMemorySessionKVStore(cleanup_interval=INTERVAL))
            stores: list[SessionKVStore] = [shared, shared]
        else:
            server: RedisServer = request.getfixturevalue("sessionkv_redis_server")
            stores = [
                await stack.enter_async_context(RedisSessionKVStore(url=server.url, key_prefix=sessionkv_namespace))
                for _ in range(2)
            ]
        yield (
            SessionRegistry(stores[0], node_id="launcher-node", ttl=TTL),
            SessionRegistry(stores[1], node_id="other-node", ttl=TTL),
        )


def launcher(registry: SessionRegistry, **options: Any) -> AgentLauncher:
    return AgentLauncher(
        create_agent=FakeAgent,
        join_call=join_call,
        agent_idle_timeout=0,  # the fakes are never idle; 0 disables the idle check anyway
        maintenance_interval=INTERVAL,
        registry=registry,
        **options,
    )


@pytest.mark.asyncio
async def test_sessions_start_and_close_on_request_from_another_node_and_are_removed(
    nodes: tuple[SessionRegistry, SessionRegistry],
) -> None:
    registry, other = nodes
    async with launcher(registry) as agents:
        session = await agents.start_session("call-1")
        kept = await agents.start_session("call-1")

        # started: registered under this node, visible to the other node and through the launcher's own lookup
        listed = await other.get_for_call("call-1")
        assert sorted(info.session_id for info in listed) == sorted([session.id, kept.id])
        assert {info.node_id for info in listed} == {"launcher-node"}
        info = await agents.get_session_info("call-1", session.id)
        assert info is not None
        assert info.call_id == "call-1"

        # another node asks for a close: the launcher's maintenance loop closes that session and removes it
        await other.request_close("call-1", session.id)
        await eventually(lambda: _done(session.task), "the launcher closes the session it was asked to close")
        assert agents.get_session(session.id) is None
        await eventually(lambda: _gone(other, "call-1", session.id), "the closed session's record is removed")
        assert await other.get_close_requests({session.id: "call-1"}) == [], "the close flag went with it"
        assert [info.session_id for info in await other.get_for_call("call-1")] == [kept.id]
        assert not kept.finished, "only the requested session was closed"

        # an agent that leaves the call by itself is removed too (the launcher's done-callback)
        kept.agent.leave.set()
        await eventually(lambda: _gone(other, "call-1", kept.id), "a session that ended is removed")
        assert agents.get_session(kept.id) is None

        # a close requested through the launcher (any node can do it) works the same way
        third = await agents.start_session("call-2")
        await agents.request_close_session("call-2", third.id)
        await eventually(lambda: _done(third.task), "a close requested through the launcher is honoured")
        await eventually(lambda: _gone(other, "call-2", third.id), "and its record removed")

        last = await agents.start_session("call-3")
    assert last.finished, "stopping the launcher cancels its sessions"
    assert await other.get_for_call("call-3") == [], "and removes their records"


@pytest.mark.asyncio
async def test_max_sessions_per_call_counts_the_sessions_of_every_node(
    nodes: tuple[SessionRegistry, SessionRegistry],
) -> None:
    registry, other = nodes
    await other.register("busy-call", "session-on-another-node")
    async with launcher(registry, max_sessions_per_call=1) as agents:
        with pytest.raises(MaxSessionsPerCallExceeded):
            await agents.start_session("busy-call")
        assert (await agents.start_session("free-call")).id
    await other.remove("busy-call", "session-on-another-node")


@pytest.mark.asyncio
async def test_heartbeats_carry_the_agents_metrics_and_keep_the_session_alive(
    nodes: tuple[SessionRegistry, SessionRegistry],
) -> None:
    registry, other = nodes
    async with launcher(registry) as agents:
        session = await agents.start_session("call-1")
        registered = await other.get("call-1", session.id)
        assert registered is not None
        session.agent.metrics.llm_input_tokens__total.inc(100)

        # the maintenance loop flushes the agent's AgentMetrics into the record (the heartbeat)
        async def flushed() -> Any:
            info = await other.get("call-1", session.id)
            assert info is not None, "the record expired: heartbeats are not reaching the registry"
            return info if info.metrics.get("llm_input_tokens__total") == 100 else None

        info = await eventually(flushed, "the agent's metrics reach the registry")
        assert info.node_id == "launcher-node"
        assert info.started_at == registered.started_at

        # ... and keeps it alive: a heartbeat written more than one TTL after registration is still readable
        async def outlived_its_ttl() -> Any:
            info = await other.get("call-1", session.id)
            assert info is not None, "the record expired although the launcher heartbeats every interval"
            return info.metrics_updated_at - info.started_at > TTL

        await eventually(outlived_its_ttl, "the record outlives one TTL thanks to the heartbeats")
        assert not session.finished


async def _done(task: asyncio.Task[Any]) -> bool:
    return task.done()


async def _gone(registry: SessionRegistry, call_id: str, session_id: str) -> bool:
    return await registry.get(call_id, session_id) is None
