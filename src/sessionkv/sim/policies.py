"""Node policies: the maintenance loop a launcher runs around its :class:`~sessionkv.registry.SessionRegistry`.

The protocol is small. A :class:`Policy` has a ``name``, builds one :class:`NodeLogic` per node incarnation (a restart
is a fresh instance) from a :class:`NodeContext`, and says how a close request is written
(:meth:`Policy.request_close`, used for requests from nodes and from outside clients alike). A :class:`NodeLogic`
starts and stops, opens sessions, learns that a call ended or went idle, and keeps its own state: the engine never
looks inside it. It reports what it does through the context (``session_started``, ``session_stopped``,
``limit_rejected``) and reaches the store only through ``ctx.registry``, whose store records every operation.
Tasks it needs are started with ``ctx.spawn(coro, role)``; a task whose role is ``"maint"`` is the maintenance task
that the ``maint_kill`` fault cancels.

Two policies ship: :class:`FaithfulPolicy` (vision-agents 0.6.9's ``AgentLauncher``) and :class:`HardenedPolicy`
(sessionkv's answer to each of its weaknesses).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Coroutine
from typing import Any, Protocol

from sessionkv.registry import SessionInfo, SessionRegistry

__all__ = ["POLICIES", "FaithfulPolicy", "HardenedPolicy", "NodeContext", "NodeLogic", "Policy", "SimSession"]

logger = logging.getLogger("sessionkv.sim")


class NodeContext(Protocol):
    """What the engine gives a node: its registry and clocks, task spawning and the session reports."""

    node_id: str
    registry: SessionRegistry
    ttl: float
    maintenance_interval: float
    max_sessions_per_call: int | None
    max_session_duration: float | None
    idle_timeout: float

    def monotonic(self) -> float:
        """Seconds on the node's monotonic clock (never skewed, never jumps)."""
        ...

    def wall(self) -> float:
        """The node's wall clock in epoch seconds (skews and jumps apply)."""
        ...

    def launch_delay(self) -> float:
        """Seconds that creating and warming up one agent takes (drawn from the seed)."""
        ...

    def spawn(self, coro: Coroutine[Any, Any, None], role: str) -> asyncio.Task[None]:
        """Run ``coro`` as a task of this node (cancelled when the node crashes); ``role`` names its process."""
        ...

    def session_started(self, call_id: str, session_id: str) -> None: ...

    def session_stopped(self, call_id: str, session_id: str, reason: str) -> None: ...

    def limit_rejected(self, call_id: str, session_id: str) -> None: ...


class NodeLogic(Protocol):
    """One incarnation of a node's launcher."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def open_session(self, call_id: str, session_id: str) -> None: ...

    def end_session(self, session_id: str) -> None: ...

    def leave(self, session_id: str) -> None: ...


class Policy(Protocol):
    """A named factory of node logic, plus the way close requests are written."""

    name: str

    def node(self, ctx: NodeContext) -> NodeLogic: ...

    async def request_close(self, registry: SessionRegistry, call_id: str, session_id: str) -> None: ...


@dataclasses.dataclass(slots=True)
class SimSession:
    """A running session as a launcher holds it: the agent's call, join times on both clocks, idleness."""

    call_id: str
    session_id: str
    joined_wall: float
    joined_mono: float
    idle_since_wall: float | None = None
    idle_since_mono: float | None = None
    info: SessionInfo | None = None


async def _cancel_and_wait(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait until it has finished unwinding (vision-agents' ``cancel_and_wait``)."""
    task.cancel()
    await asyncio.wait([task])


class _Launcher:
    """State shared by both policies: the local session map and the reports; not a policy on its own."""

    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        self.sessions: dict[str, SimSession] = {}
        self.calls: dict[str, str] = {}  # session_id -> call_id, kept in step with sessions
        self.running = False
        self.start_lock = asyncio.Lock()

    def leave(self, session_id: str) -> None:
        session = self.sessions.get(session_id)
        if session is not None and session.idle_since_wall is None:
            session.idle_since_wall = self.ctx.wall()
            session.idle_since_mono = self.ctx.monotonic()

    def _join(self, call_id: str, session_id: str) -> SimSession:
        session = SimSession(call_id, session_id, self.ctx.wall(), self.ctx.monotonic())
        self.sessions[session_id] = session
        self.calls[session_id] = call_id
        self.ctx.session_started(call_id, session_id)
        return session

    def _pop(self, session_id: str, reason: str) -> SimSession | None:
        session = self.sessions.pop(session_id, None)
        if session is not None:
            del self.calls[session_id]
            self.ctx.session_stopped(session.call_id, session_id, reason)
        return session

    def _limits_reached(self, session: SimSession, on_call_for: float, idle_for: float) -> str | None:
        ctx = self.ctx
        if 0 < ctx.idle_timeout <= idle_for:
            return "idle_timeout"
        if ctx.max_session_duration is not None and on_call_for >= ctx.max_session_duration:
            return "max_duration"
        return None


class FaithfulLauncher(_Launcher):
    """vision-agents 0.6.9's ``AgentLauncher``, step by step, over sessionkv's registry.

    * ``start()`` starts one maintenance task; ``_maintenance_loop`` runs ``_close_expired_sessions`` then
      ``_flush_metrics_to_registry`` and only then sleeps ``maintenance_interval``: the period is the interval plus the
      time the work took, store latency included. Nothing supervises the task: if it dies, maintenance stops.
    * ``_close_expired_sessions`` collects sessions past ``agent_idle_timeout`` (``idle_for``) or
      ``max_session_duration_seconds`` (``on_call_for``), both measured on the node's wall clock (``time.time()``),
      then calls ``get_close_requests`` for every local session inside a ``try`` that logs and ignores any error, and
      closes all collected sessions concurrently; a failed close is logged.
    * ``close_session`` pops the session locally, cancels its task, then ``registry.remove``: a failed remove leaves the
      record until its TTL.
    * ``_flush_metrics_to_registry`` heartbeats each session one after the other with ``update_metrics`` (a ``get``,
      then a ``set`` with ``only_if_exists``); a missing record is silently skipped, never re-registered; errors are
      logged per session.
    * ``start_session`` (under a per-node lock) checks ``max_sessions_per_call`` with ``get_for_call``, launches the
      agent (``launch_delay``), adds the session locally, then registers; a registration failure closes the session.
      The check and the registration are not atomic across nodes.
    * When a session's call ends by itself, the task's done-callback pops it and removes its record in a separate
      task (``_remove_from_registry_safe``), concurrently with the maintenance loop.
    * ``stop()`` cancels the maintenance task, cancels every session and removes their records.
    """

    def __init__(self, ctx: NodeContext) -> None:
        super().__init__(ctx)
        self.maintenance: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.running = True
        self.maintenance = self.ctx.spawn(self._maintenance_loop(), "maint")

    async def stop(self) -> None:
        self.running = False
        if self.maintenance is not None:
            await _cancel_and_wait(self.maintenance)
        for session_id in list(self.sessions):
            session = self._pop(session_id, "node_stop")
            if session is not None:
                await self._remove_safe(session.call_id, session_id)

    async def _maintenance_loop(self) -> None:
        while self.running:
            await self._close_expired_sessions()
            await self._flush_metrics_to_registry()
            await asyncio.sleep(self.ctx.maintenance_interval)

    async def _close_expired_sessions(self) -> None:
        now = self.ctx.wall()
        to_close: list[tuple[str, str]] = []
        for session in self.sessions.values():
            idle_for = 0.0 if session.idle_since_wall is None else now - session.idle_since_wall
            reason = self._limits_reached(session, now - session.joined_wall, idle_for)
            if reason is not None:
                to_close.append((session.session_id, reason))
        try:
            chosen = {session_id for session_id, _ in to_close}
            sessions_map = {sid: s.call_id for sid, s in self.sessions.items()}
            for session_id in await self.ctx.registry.get_close_requests(sessions_map):
                if session_id in self.sessions and session_id not in chosen:
                    to_close.append((session_id, "close_request"))
        except Exception:
            logger.debug("%s: failed to check registry close requests", self.ctx.node_id, exc_info=True)
        if to_close:
            await asyncio.gather(*(self.close_session(sid, reason) for sid, reason in to_close), return_exceptions=True)

    async def close_session(self, session_id: str, reason: str) -> bool:
        session = self._pop(session_id, reason)
        if session is None:
            return False
        await self.ctx.registry.remove(session.call_id, session_id)
        return True

    async def _flush_metrics_to_registry(self) -> None:
        for session_id, session in list(self.sessions.items()):
            try:
                await self.heartbeat(session)
            except Exception:
                logger.debug("%s: failed to flush metrics for %s", self.ctx.node_id, session_id, exc_info=True)

    async def heartbeat(self, session: SimSession) -> None:
        """One session's heartbeat: ``update_metrics`` (read, then conditional write)."""
        await self.ctx.registry.update_metrics(session.call_id, session.session_id, {})

    async def open_session(self, call_id: str, session_id: str) -> None:
        async with self.start_lock:
            limit = self.ctx.max_sessions_per_call
            if limit:
                call_sessions = await self.ctx.registry.get_for_call(call_id)
                if len(call_sessions) >= limit:
                    self.ctx.limit_rejected(call_id, session_id)
                    return
            await asyncio.sleep(self.ctx.launch_delay())
            self._join(call_id, session_id)
            try:
                await self.ctx.registry.register(call_id, session_id)
            except Exception:
                await self.close_session(session_id, "registration_failed")
                raise

    def end_session(self, session_id: str) -> None:
        session = self._pop(session_id, "call_ended")
        if session is not None:
            self.ctx.spawn(self._remove_safe(session.call_id, session_id), f"end:{session_id}")

    async def _remove_safe(self, call_id: str, session_id: str) -> None:
        try:
            await self.ctx.registry.remove(call_id, session_id)
        except Exception:
            logger.debug("%s: failed to remove %s from the registry", self.ctx.node_id, session_id, exc_info=True)


class FaithfulPolicy:
    """vision-agents 0.6.9's launcher (see :class:`FaithfulLauncher`); close flags live for the registry's TTL."""

    name = "faithful"

    def node(self, ctx: NodeContext) -> NodeLogic:
        return FaithfulLauncher(ctx)

    async def request_close(self, registry: SessionRegistry, call_id: str, session_id: str) -> None:
        await registry.request_close(call_id, session_id)


class HardenedLauncher(_Launcher):
    """sessionkv's launcher. Each change answers a weakness of the faithful one (scenario that shows it in brackets):

    * **Re-registration** (``redis-restart-empty``, ``partition-long``, ``slow-store``): the heartbeat writes the whole
      record of every running session (:meth:`SessionRegistry.register_many`), so a record that expired or was lost
      by the store is back within one period.
    * **Batched heartbeats** (``slow-store``): one ``mset`` per cycle for all local sessions instead of two calls per
      session, so a cycle costs a few store round trips whatever the number of sessions.
    * **Supervised fixed-rate loop** (``maint_kill`` in ``node-crash``): cycles start every ``maintenance_interval``
      on the monotonic clock (an overrunning cycle is followed at once by the next); a supervisor restarts the
      maintenance task when it dies.
    * **Durable close requests** (``partition-long``): flags are written with ``close_request_ttl`` (default one hour)
      instead of the session TTL, so a request survives an owner that cannot reach the store for up to that long.
    * **Honest per-call limit** (``per-call-limit-race``): register first, then count the call's records; a node that
      sees more than the limit withdraws its registration and rejects. On a linearizable store two racing nodes
      cannot both keep a session over the limit (the later registration's count sees the earlier one). Bound: the
      count misses a running session whose record has expired (its owner cut from the store for more than the TTL),
      so the limit can then be overshot by the number of such sessions; it may also undershoot (both withdraw).
    * **Limits on the monotonic clock** (``clock-skew``): idle and maximum duration are measured on the node's
      monotonic clock, so a wall-clock jump does not close sessions early.
    * **One writer per node**: a call that ends by itself is removed by the maintenance loop (and a failed remove is
      retried every cycle), so a heartbeat never races the removal of its own session.
    """

    def __init__(self, ctx: NodeContext) -> None:
        super().__init__(ctx)
        self.supervisor: asyncio.Task[None] | None = None
        self.worker: asyncio.Task[None] | None = None
        self.to_remove: dict[str, str] = {}  # session_id -> call_id whose record still has to be deleted

    async def start(self) -> None:
        self.running = True
        self.supervisor = self.ctx.spawn(self._supervise(), "supervisor")

    async def stop(self) -> None:
        self.running = False
        for task in (self.supervisor, self.worker):
            if task is not None:
                await _cancel_and_wait(task)
        for session_id in list(self.sessions):
            session = self._pop(session_id, "node_stop")
            if session is not None:
                self.to_remove[session_id] = session.call_id
        await self._remove_pending()

    async def _supervise(self) -> None:
        while self.running:
            worker = self.worker = self.ctx.spawn(self._maintenance_loop(), "maint")
            await asyncio.wait([worker])
            if worker.cancelled():
                logger.debug("%s: maintenance task died; restarting it", self.ctx.node_id)
            elif worker.exception() is not None:
                logger.debug("%s: maintenance task failed; restarting it", self.ctx.node_id, exc_info=True)

    async def _maintenance_loop(self) -> None:
        interval = self.ctx.maintenance_interval
        next_tick = self.ctx.monotonic()
        while self.running:
            await self.cycle()
            next_tick += interval
            now = self.ctx.monotonic()
            if next_tick < now:  # the cycle overran: start the next one at once
                next_tick = now
            await asyncio.sleep(next_tick - now)

    async def cycle(self) -> None:
        """Close what must close, then heartbeat everything that still runs, in a handful of store calls."""
        ctx = self.ctx
        if ctx.idle_timeout or ctx.max_session_duration is not None:
            now = ctx.monotonic()
            for session in list(self.sessions.values()):
                idle_for = 0.0 if session.idle_since_mono is None else now - session.idle_since_mono
                reason = self._limits_reached(session, now - session.joined_mono, idle_for)
                if reason is not None:
                    self._retire(session.session_id, reason)
        if self.sessions:
            try:
                for session_id in await ctx.registry.get_close_requests(self.calls):
                    self._retire(session_id, "close_request")
            except Exception:
                logger.debug("%s: failed to check close requests", self.ctx.node_id, exc_info=True)
        await self._remove_pending()
        if self.sessions:
            infos = [session.info for session in self.sessions.values() if session.info is not None]
            try:
                await self.ctx.registry.register_many(infos)
            except Exception:
                logger.debug("%s: batched heartbeat failed", self.ctx.node_id, exc_info=True)

    def _retire(self, session_id: str, reason: str) -> None:
        session = self._pop(session_id, reason)
        if session is not None:
            self.to_remove[session_id] = session.call_id

    async def _remove_pending(self) -> None:
        for session_id, call_id in list(self.to_remove.items()):
            try:
                await self.ctx.registry.remove(call_id, session_id)
            except Exception:
                logger.debug("%s: remove of %s failed; retrying next cycle", self.ctx.node_id, session_id)
                continue
            self.to_remove.pop(session_id, None)  # the other remover (open_session, loop) may have been first

    async def open_session(self, call_id: str, session_id: str) -> None:
        async with self.start_lock:
            registry = self.ctx.registry
            info = await registry.register(call_id, session_id)
            limit = self.ctx.max_sessions_per_call
            if limit:
                try:
                    count = len(await registry.get_for_call(call_id))
                except Exception:
                    count = limit + 1  # cannot verify: withdraw rather than risk an overshoot
                if count > limit:
                    self.ctx.limit_rejected(call_id, session_id)
                    self.to_remove[session_id] = call_id
                    await self._remove_pending()
                    return
            await asyncio.sleep(self.ctx.launch_delay())
            self._join(call_id, session_id).info = info

    def end_session(self, session_id: str) -> None:
        self._retire(session_id, "call_ended")


class HardenedPolicy:
    """sessionkv's policy (see :class:`HardenedLauncher`); ``close_request_ttl`` is how long a close flag lives."""

    name = "hardened"

    def __init__(self, close_request_ttl: float = 3600.0) -> None:
        self.close_request_ttl = close_request_ttl

    def node(self, ctx: NodeContext) -> NodeLogic:
        return HardenedLauncher(ctx)

    async def request_close(self, registry: SessionRegistry, call_id: str, session_id: str) -> None:
        await registry.request_close(call_id, session_id, ttl=max(self.close_request_ttl, registry.ttl))


POLICIES: dict[str, type[FaithfulPolicy] | type[HardenedPolicy]] = {
    "faithful": FaithfulPolicy,
    "hardened": HardenedPolicy,
}
"""Built-in policies by their CLI name."""
