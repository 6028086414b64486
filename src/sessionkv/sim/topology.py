"""The ``redis-cluster`` and ``redis-sentinel`` backends: the plan of a scenario replayed on a real local topology.

Like the ``redis`` backend (:mod:`sessionkv.sim.realredis`) the run is real time, every duration scaled by
``time_scale``, and not reproducible by seed. The backend starts a fresh
:class:`~sessionkv.testing.topologies.RedisClusterTopology` (3 primaries, 3 replicas) or
:class:`~sessionkv.testing.topologies.RedisSentinelTopology` (primary, replica, 3 Sentinels), gives every node its
own :class:`~sessionkv.redis_cluster.RedisClusterSessionKVStore` /
:class:`~sessionkv.redis_sentinel.RedisSentinelSessionKVStore` and the observer one more, and stops everything at the
end (stores closed, the fault threads joined, every server stopped).

Faults of the store's servers (:data:`~sessionkv.sim.model.PRIMARY_VERBS`) run here: ``kill_primary`` picks a
primary, SIGKILLs it, waits for the promotion and (by default) starts the dead server again as a replica;
``partition_primary`` isolates a cluster primary from every other server (the topology's network faults) and heals it
after the action's duration. Each step is a nemesis event of the history (``kill_primary``, ``primary_promoted``,
``primary_rejoined``, ``partition_primary``, ``heal_primary``), so the result says which server died and which took
over. Per-node partitions and restarting the whole store empty are refused before the run (see
:func:`check_backend`).

Durability: ``async`` (Redis's default) acknowledges a write once the primary applied it; ``wait:N`` follows every
write of a node with ``WAIT N`` on the same connection (see :class:`Durability`), and a write that reached fewer than
``N`` replicas in time fails with :class:`~sessionkv.errors.StoreUnavailableError` (outcome unknown to the node).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Final, TypeVar

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import PipelineCommand
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import AskError, RedisError, TryAgainError

from sessionkv.errors import StoreUnavailableError
from sessionkv.redis_cluster import _LUA_PEXPIRE_MANY, _LUA_SET_MANY, RedisClusterSessionKVStore
from sessionkv.redis_sentinel import RedisSentinelSessionKVStore
from sessionkv.registry import SESSIONS_PREFIX
from sessionkv.sim.model import PRIMARY_VERBS, Action, Scenario, ScenarioError
from sessionkv.store import (
    SessionKVStore,
    check_expire_keys,
    check_items,
    check_key,
    check_keys,
    check_ttl_ns,
    check_value,
    ns_to_ms_ceil,
)

if TYPE_CHECKING:
    from sessionkv.sim.engine import Engine
    from sessionkv.testing.servers import RedisServer
    from sessionkv.testing.topologies import RedisClusterTopology, RedisSentinelTopology

__all__ = [
    "PRIMARY_BACKENDS",
    "Durability",
    "DurabilityNotReachedError",
    "TopologyBackend",
    "check_backend",
    "run_on_topology",
]

T = TypeVar("T")

PRIMARY_BACKENDS: Final = ("redis-cluster", "redis-sentinel")
"""Backends whose store has primaries and replicas (the ones the primary faults and ``wait:N`` need)."""
KEY_PREFIX: Final = "sim:"
ATTEMPT_TIMEOUT_S: Final = 0.25
"""How long one command of a node waits for its server (half the topologies' node timeout), so that a read stuck on
an unreachable primary is retried on the promoted replica within the operation deadline."""


# -- durability -------------------------------------------------------------------------------------------------------


class DurabilityNotReachedError(RedisError):
    """A write the primary applied but fewer replicas than ``WAIT`` asked for acknowledged in time (the store turns it
    into :class:`~sessionkv.errors.StoreUnavailableError`: the node cannot know whether the write will survive)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Durability:
    """What a write's acknowledgement means: ``replicas == 0`` is ``async`` (the primary applied it); ``replicas ==
    N`` is ``wait:N`` (the primary applied it and ``WAIT N`` on the same connection saw N replicas acknowledge it
    within half the operation timeout)."""

    replicas: int = 0

    @classmethod
    def parse(cls, text: str) -> Durability:
        """``async`` or ``wait:N`` (N >= 1); raises :class:`ScenarioError` naming both forms otherwise."""
        if text == "async":
            return cls(0)
        found = re.fullmatch(r"wait:([0-9]+)", text)
        if found is None or int(found.group(1)) < 1:
            raise ScenarioError(f"durability must be 'async' or 'wait:N' with N >= 1 (e.g. wait:1), got {text!r}")
        return cls(int(found.group(1)))

    @property
    def label(self) -> str:
        return "async" if self.replicas == 0 else f"wait:{self.replicas}"


def _check_wait(reply: Any, replicas: int, timeout_ms: int) -> None:
    if isinstance(reply, Exception):
        raise reply
    if int(reply) < replicas:
        raise DurabilityNotReachedError(
            f"the primary applied the write but WAIT {replicas} {timeout_ms} saw {int(reply)} replica(s) acknowledge it"
        )


_CLUSTER_WRITES: Final = frozenset({"SET", "EVAL", "PEXPIRE", "UNLINK"})


class WaitingClusterStore(RedisClusterSessionKVStore):
    """The cluster store with ``WAIT replicas timeout_ms`` appended to each primary's pipeline of a write.

    Every write goes through the store's one-pipeline-per-primary path (``set`` included), so the ``WAIT`` shares
    the connection of the writes it waits for, as ``WAIT`` requires. A command a node redirects is not re-sent
    (its ``WAIT`` could not follow it): the write fails, outcome unknown, and the next call re-reads the slot map.
    Used by the simulator only; the library's stores do not wait (see docs/cluster.md)."""

    def __init__(self, *, replicas: int, wait_timeout_ms: int, **options: Any) -> None:
        super().__init__(**options)
        self.wait_replicas = replicas
        self.wait_timeout_ms = wait_timeout_ms

    async def set(self, key: str, value: bytes, ttl: float, *, only_if_exists: bool = False) -> None:
        full = self._full(check_key(key))
        data = check_value(value)
        ttl_ms = ns_to_ms_ceil(check_ttl_ns(ttl))
        command = ("SET", full, data, "PX", ttl_ms, *(("XX",) if only_if_exists else ()))
        await self._run("set", lambda: self._per_primary([(key_slot(full), command)]), retry=False)

    async def _per_primary(self, commands: list[tuple[int, tuple[Any, ...]]]) -> list[Any]:
        if not any(args[0] in _CLUSTER_WRITES for _, args in commands):
            return await super()._per_primary(commands)
        client = self._client
        await client.initialize()
        queued = [PipelineCommand(position, *args) for position, (_, args) in enumerate(commands)]
        by_node: dict[str, tuple[Any, list[PipelineCommand]]] = {}
        for (slot, _), command in zip(commands, queued, strict=True):
            node = client.nodes_manager.get_node_from_slot(slot)
            by_node.setdefault(node.name, (node, []))[1].append(command)
        waits: list[PipelineCommand] = []
        for _, batch in by_node.values():
            wait = PipelineCommand(len(queued) + len(waits), "WAIT", self.wait_replicas, self.wait_timeout_ms)
            batch.append(wait)
            waits.append(wait)
        await asyncio.gather(*(node.execute_pipeline(batch) for node, batch in by_node.values()))
        for command in queued:
            if isinstance(command.result, (AskError, TryAgainError)):
                self._stale_map = True
                raise TryAgainError(f"{command.args[0]} was redirected; with WAIT it is not re-sent")
            if isinstance(command.result, Exception):
                raise command.result
        for wait in waits:
            _check_wait(wait.result, self.wait_replicas, self.wait_timeout_ms)
        return [command.result for command in queued]


class WaitingSentinelStore(RedisSentinelSessionKVStore):
    """The Sentinel store whose writes are one pipeline (one connection) of the write's commands and ``WAIT
    replicas timeout_ms``. A batch is one Lua script (atomic, as the plain store's transaction). Not ``indexed``.
    Used by the simulator only."""

    def __init__(self, *, replicas: int, wait_timeout_ms: int, **options: Any) -> None:
        super().__init__(**options)
        if self.indexed:
            raise ValueError("WaitingSentinelStore does not support indexed=True")
        self.wait_replicas = replicas
        self.wait_timeout_ms = wait_timeout_ms

    async def _waiting(self, operation: str, commands: Sequence[tuple[Any, ...]]) -> None:
        client = self._client

        async def call() -> None:
            async with client.pipeline(transaction=False) as pipe:
                for args in commands:
                    pipe.execute_command(*args)
                pipe.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
                replies = await pipe.execute()
            _check_wait(replies[-1], self.wait_replicas, self.wait_timeout_ms)

        await self._run(operation, call, retry=False)

    def _full(self, key: str) -> bytes:
        return self._prefix_bytes + key.encode()

    async def set(self, key: str, value: bytes, ttl: float, *, only_if_exists: bool = False) -> None:
        full = self._full(check_key(key))
        data = check_value(value)
        ttl_ms = ns_to_ms_ceil(check_ttl_ns(ttl))
        await self._waiting("set", [("SET", full, data, "PX", ttl_ms, *(("XX",) if only_if_exists else ()))])

    async def mset(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        latest = {self._full(key): (data, ns_to_ms_ceil(ttl_ns)) for key, data, ttl_ns in check_items(items)}
        if latest:
            args = [arg for pair in latest.values() for arg in pair]
            await self._waiting("mset", [("EVAL", _LUA_SET_MANY, len(latest), *latest, *args)])

    async def expire(self, *keys: str, ttl: float) -> None:
        wanted = list(dict.fromkeys(self._full(key) for key in check_expire_keys(keys)))
        ttl_ms = ns_to_ms_ceil(check_ttl_ns(ttl))
        if wanted:
            await self._waiting("expire", [("EVAL", _LUA_PEXPIRE_MANY, len(wanted), *wanted, ttl_ms)])

    async def delete(self, keys: Sequence[str]) -> None:
        wanted = list(dict.fromkeys(self._full(key) for key in check_keys(keys)))
        if wanted:
            await self._waiting("delete", [("UNLINK", *wanted)])


# -- plan-time checks -------------------------------------------------------------------------------------------------


def check_backend(scenario: Scenario, backend: str, durability: Durability) -> None:
    """Refuse, before anything starts, a plan the backend cannot carry out (never a silent no-op)."""
    has_primaries = backend in PRIMARY_BACKENDS
    if durability.replicas and not has_primaries:
        raise ScenarioError(
            f"--durability {durability.label} needs replicas to wait for: use --backend redis-cluster or "
            f"redis-sentinel ({backend} has none)"
        )
    for action in scenario.timeline():
        where = f"{action.verb} at t={action.at:g}"
        if action.verb in PRIMARY_VERBS and not has_primaries:
            raise ScenarioError(
                f"{where} needs a store with primaries and replicas: use --backend redis-cluster or redis-sentinel "
                f"({backend} has none)"
            )
        if action.verb == "partition_primary" and backend != "redis-cluster":
            raise ScenarioError(f"{where} needs --backend redis-cluster (it cuts a primary's cluster bus)")
        if not has_primaries:
            continue
        if action.verb == "partition":
            raise ScenarioError(
                f"{where} (node {action.node}): a per-node partition needs a fault proxy in front of the store for "
                f"each node, which {backend} does not have (its clients connect to every server's own address); run "
                "this scenario on --backend redis, memory or fakeredis"
            )
        if action.verb == "store_restart" and not action.arg("keep_data", False):
            raise ScenarioError(
                f"{where}: restarting the whole store empty is not supported on {backend}; use kill_primary (a "
                "primary dies and a replica takes over) or --backend redis, memory or fakeredis"
            )


# -- the backend ------------------------------------------------------------------------------------------------------


def _session_records(server: RedisServer) -> int:
    """How many session records ``server`` holds (SCAN on the server itself, not through the cluster)."""
    pattern = f"{KEY_PREFIX}{SESSIONS_PREFIX}*"
    with contextlib.closing(redis.Redis(host=server.host, port=server.port, socket_timeout=2.0)) as client:
        return sum(1 for _ in client.scan_iter(match=pattern, count=1000))


class MajorityObserver:
    """The observer's listing on a cluster: the keys of the primaries that the majority side names now.

    A cluster client lists keys on the primaries of the slot map it last read, and a primary cut off from the
    cluster still answers ``SCAN`` (it has no key to refuse it by), so a client could keep listing a cut-off or
    replaced primary's data. The observer instead asks a node that is running and not isolated for ``CLUSTER NODES``
    before each listing and scans exactly the primaries holding slots in that view, each directly; when one of them
    is failing (dead, or cut off longer than the node timeout) the listing fails with
    :class:`~sessionkv.errors.StoreUnavailableError`, as a client's would."""

    def __init__(self, topology: RedisClusterTopology) -> None:
        self.topology = topology
        self._clients: dict[int, aioredis.Redis] = {}

    def _primaries(self) -> list[RedisServer]:
        from sessionkv.testing.topologies import server_paused

        topology = self.topology
        isolated = set(topology.isolated())
        for reference in topology.servers:
            if not reference.running or server_paused(reference) or reference in isolated:
                continue
            try:
                nodes = topology.nodes(reference)
            except (RedisError, OSError):
                continue
            owners = [node for node in nodes if node.is_primary and node.slots]
            failing = [node.port for node in owners if node.failing]
            if failing:
                raise StoreUnavailableError(f"the primary on port {failing[0]} is failing", operation="keys")
            return [topology.server_by_id(node.id) for node in owners]
        raise StoreUnavailableError("no running node outside a partition answers", operation="keys")

    async def keys(self, prefix: str) -> list[str]:
        primaries = await asyncio.to_thread(self._primaries)
        pattern = f"{KEY_PREFIX}{prefix}*"
        found: list[str] = []
        try:
            for server in primaries:
                client = self._clients.get(server.port)
                if client is None:
                    client = aioredis.Redis(
                        host=server.host,
                        port=server.port,
                        socket_timeout=2.0,
                        socket_connect_timeout=ATTEMPT_TIMEOUT_S,
                        retry=Retry(NoBackoff(), 0),  # a dead primary fails the listing at once, not after retries
                    )
                    self._clients[server.port] = client
                async for key in client.scan_iter(match=pattern, count=1000):
                    found.append(key.decode()[len(KEY_PREFIX) :])
        except (RedisError, OSError) as exc:
            raise StoreUnavailableError(f"listing failed: {type(exc).__name__}: {exc}", operation="keys") from exc
        return sorted(set(found))

    async def close(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()


class TopologyBackend:
    """A topology, one store per node and the observer's; runs the primary faults (see the module docstring)."""

    server = None  # the engine's whole-store restart is refused on these backends (check_backend)

    def __init__(self, engine: Engine, kind: str, durability: Durability) -> None:
        if kind not in PRIMARY_BACKENDS:
            raise ValueError(f"kind must be one of {PRIMARY_BACKENDS}, got {kind!r}")
        self.engine = engine
        self.kind = kind
        self.durability = durability
        self.stores: dict[str, SessionKVStore] = {}
        self.topology: RedisClusterTopology | RedisSentinelTopology | None = None
        # blocking topology calls (kill, wait for promotion, heal) run here; joined before the servers stop
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sessionkv-sim-topology")

    def cut(self, node: str, cut: bool) -> None:
        raise ScenarioError(f"per-node partitions are not supported on {self.kind}")  # check_backend refuses first

    async def _blocking(self, call: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, call, *args)

    def _store(self, operation_timeout: float, *, node: bool) -> SessionKVStore:
        topology = self.topology
        options: dict[str, Any] = {
            "key_prefix": KEY_PREFIX,
            "operation_timeout": operation_timeout,
            "attempt_timeout": min(ATTEMPT_TIMEOUT_S, operation_timeout),
        }
        waiting = node and self.durability.replicas > 0
        if waiting:
            options |= {"replicas": self.durability.replicas, "wait_timeout_ms": max(1, int(operation_timeout * 500))}
        if self.kind == "redis-cluster":
            from sessionkv.testing.topologies import RedisClusterTopology

            assert isinstance(topology, RedisClusterTopology)
            cluster = WaitingClusterStore if waiting else RedisClusterSessionKVStore
            return cluster(startup_nodes=topology.startup_nodes, **options)
        from sessionkv.testing.topologies import RedisSentinelTopology

        assert isinstance(topology, RedisSentinelTopology)
        sentinel = WaitingSentinelStore if waiting else RedisSentinelSessionKVStore
        return sentinel(sentinels=topology.sentinel_addresses, service_name=topology.service_name, **options)

    async def run(self) -> None:
        from sessionkv.testing.topologies import RedisClusterTopology, RedisSentinelTopology

        engine = self.engine
        scenario = engine.scenario
        opened: list[SessionKVStore] = []
        majority: MajorityObserver | None = None
        try:
            if self.kind == "redis-cluster":
                # proxied (a forwarder per node for the cluster's own links) only when a partition needs it
                proxied = any(a.verb == "partition_primary" for a in scenario.actions)
                self.topology = RedisClusterTopology(proxied=proxied)
            else:
                self.topology = RedisSentinelTopology()
            await self._blocking(self.topology.start)
            observer = self._store(5.0, node=False)
            opened.append(observer)
            await observer.start()
            engine.store = observer
            if isinstance(self.topology, RedisClusterTopology):
                majority = MajorityObserver(self.topology)
                engine.observer_keys = majority.keys
            for name in [*scenario.node_names, "client"]:
                store = self._store(scenario.operation_timeout, node=True)
                opened.append(store)
                await store.start()
                self.stores[name] = store
            await engine.drive()
        finally:
            if majority is not None:
                await majority.close()
            for store in opened:
                with contextlib.suppress(Exception):
                    await store.close()
            self._executor.shutdown(wait=True)  # a fault still waiting for a promotion ends before the servers stop
            if self.topology is not None:
                await asyncio.to_thread(self.topology.stop)

    # -- primary faults ------------------------------------------------------------------------------------------------

    def _primaries(self) -> list[RedisServer]:
        from sessionkv.testing.topologies import RedisClusterTopology

        topology = self.topology
        if isinstance(topology, RedisClusterTopology):
            return sorted(topology.primaries(), key=lambda server: server.port)
        assert topology is not None
        return [topology.primary()]

    def _choose(self, choose: str, window: int) -> tuple[RedisServer, int]:
        """The victim of a primary fault and how many session records it held when chosen."""
        primaries = self._primaries()
        counts = [_session_records(server) for server in primaries]
        if choose == "seeded":
            index = self.engine.params.rng(f"primary/{window}").randrange(len(primaries))
        else:
            index = max(range(len(primaries)), key=lambda i: (counts[i], -primaries[i].port))
        return primaries[index], counts[index]

    async def primary_fault(self, action: Action, window: int) -> None:
        """Carry out a ``kill_primary`` or ``partition_primary`` action; a failure is a ``primary_fault_failed``
        nemesis event and a note, never silent."""
        engine = self.engine
        started = time.monotonic()
        try:
            victim, records = await self._blocking(self._choose, str(action.arg("choose", "most-keys")), window)
            chosen = (
                ("server", victim.port),
                ("choose", action.arg("choose", "most-keys")),
                ("session_records", records),
                ("durability", self.durability.label),
            )
            topology = self.topology
            assert topology is not None
            if action.verb == "kill_primary":
                await self._blocking(topology.kill, victim)
                engine.nemesis("kill_primary", chosen)
                new = await self._blocking(topology.wait_for_promotion, victim)
                engine.nemesis("primary_promoted", self._promoted(victim, new, started))
                if action.arg("rejoin", True):
                    await self._blocking(topology.heal)
                    engine.nemesis("primary_rejoined", (("server", victim.port),))
            else:
                cluster: Any = topology
                await self._blocking(cluster.isolate, victim)
                engine.nemesis("partition_primary", chosen)
                assert action.duration is not None
                # a partition shorter than a failover promotes nobody: the wait then ends soon after the heal
                wait = action.duration + 10 * cluster.node_timeout

                async def promotion() -> None:
                    new = await self._blocking(topology.wait_for_promotion, victim, wait)
                    engine.nemesis("primary_promoted", self._promoted(victim, new, started))

                promoted = asyncio.ensure_future(promotion())
                try:
                    await asyncio.sleep(action.duration)
                    if action.arg("heal_after_promotion", False) and not promoted.done():
                        overdue = time.monotonic()
                        await asyncio.wait({promoted}, timeout=10 * cluster.node_timeout)
                        engine.notes.append(
                            f"partition_primary at t={action.at:g}: the heal waited "
                            f"{time.monotonic() - overdue:.2f} s past the planned cut for the replica's promotion"
                        )
                    engine.nemesis("heal_primary", (("server", victim.port),))
                    await self._blocking(cluster.heal_network)  # reconnects, then waits until the cluster is ready
                    await promoted
                finally:
                    promoted.cancel()
                engine.nemesis("primary_rejoined", (("server", victim.port),))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            engine.nemesis("primary_fault_failed", (("verb", action.verb), ("error", f"{type(exc).__name__}: {exc}")))
            engine.notes.append(f"{action.verb} at t={action.at:g} failed: {type(exc).__name__}: {exc}")

    def _promoted(self, old: RedisServer, new: RedisServer, started: float) -> tuple[tuple[str, Any], ...]:
        return (("old", old.port), ("new", new.port), ("after_s", round(time.monotonic() - started, 3)))


def run_on_topology(engine: Engine, kind: str, durability: Durability) -> None:
    """Run ``engine`` (whose scenario is already scaled) against a fresh topology of ``kind``."""
    backend = TopologyBackend(engine, kind, durability)
    engine.now_ns = lambda: time.monotonic_ns() - engine.origin_ns
    engine.wall_time = time.time
    engine.real = backend
    asyncio.run(backend.run())
