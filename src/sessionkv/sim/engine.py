"""The engine: N nodes over one store, a timeline, an observer and a nemesis, all recorded in one history.

On the in-process backends (``memory``, ``fakeredis``) a run happens inside :func:`sessionkv.testing.virtual_time.run`:
virtual time, every store call of a node delayed by a latency drawn from a per-node stream of the seed, so a run is a
pure function of (scenario, policy, parameters, seed). Each node reaches the store through its own :class:`StoreView`,
which records every call (``invoke`` then ``ok`` / ``fail`` / ``info``), applies the node's latency and slow-store
windows, and implements partitions: a call to an unreachable store fails with
:class:`~sessionkv.errors.StoreUnavailableError` after ``operation_timeout``; a write cut while in flight is ``info``
(outcome unknown to the node; in this model it never reached the store). A call is applied at the end of its flight,
so a crash during the flight cancels it.

The observer reads the store directly (no view, no partition, no latency) every ``observe_every`` seconds and
records the session keys it saw; invariants use those reads for visibility.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Final

from sessionkv.errors import StoreUnavailableError
from sessionkv.registry import CLOSE_REQUESTS_PREFIX, SESSIONS_PREFIX, SessionRegistry, _session_key
from sessionkv.sim.history import FAIL, INFO, INVOKE, OK, History
from sessionkv.sim.model import Action, Latency, Parameters, Scenario, ScenarioError
from sessionkv.sim.policies import NodeLogic, Policy
from sessionkv.store import SessionKVStore
from sessionkv.testing.virtual_time import VirtualTimeLoop

if TYPE_CHECKING:
    from sessionkv.sim.realredis import RealRedisBackend
    from sessionkv.sim.topology import Durability, TopologyBackend

__all__ = ["BACKENDS", "REAL_BACKENDS", "Engine", "StoreView"]

BACKENDS: Final = ("memory", "fakeredis", "redis", "redis-cluster", "redis-sentinel")
REAL_BACKENDS: Final = ("redis", "redis-cluster", "redis-sentinel")
"""Backends on real servers: real time, the scenario scaled by ``time_scale``, not reproducible by seed."""

_PROCESS: contextvars.ContextVar[str] = contextvars.ContextVar("sessionkv_sim_process", default="?")


class NodeState:
    """What the engine keeps per node name across incarnations: faults, clock skew, streams, the live logic."""

    __slots__ = (
        "alive",
        "cuts",
        "generation",
        "latency",
        "latency_rng",
        "launch_rng",
        "logic",
        "name",
        "partitioned",
        "running",
        "skew",
        "slow",
        "slow_windows",
        "tasks",
        "view",
    )

    def __init__(self, name: str, latency: Latency, params: Parameters) -> None:
        self.name = name
        self.alive = False
        self.partitioned = False
        self.cuts: set[int] = set()  # partition windows in force
        self.slow_windows: dict[int, Latency] = {}
        self.skew = 0.0
        self.latency = latency
        self.slow: Latency | None = None
        self.latency_rng = params.rng(f"latency/{name}")
        self.launch_rng = params.rng(f"launch/{name}")
        self.logic: NodeLogic | None = None
        self.tasks: dict[asyncio.Task[None], str] = {}
        self.running: dict[str, str] = {}  # session_id -> call_id, from the node's own reports
        self.view: StoreView | None = None
        self.generation = 0  # incarnation number, bumped by every start

    def draw_latency(self) -> float:
        latency = self.slow or self.latency
        if latency.high == 0.0:
            return 0.0
        return latency.draw(self.latency_rng)


class StoreView(SessionKVStore):
    """One node's path to the shared store: records, delays, partitions. Argument checks are the store's own."""

    def __init__(self, engine: Engine, state: NodeState, store: SessionKVStore) -> None:
        self._engine = engine
        self._state = state
        self._store = store
        self._timeout = engine.scenario.operation_timeout
        self._simulated = engine.real is None  # on real Redis the node's fault proxy cuts it, not this view

    async def _op(self, f: str, key: str | None, value: Any, write: bool, call: Callable[[], Any]) -> Any:
        engine = self._engine
        state = self._state
        add = engine.history.events.append
        now = engine.now_ns
        process = _PROCESS.get()
        node = state.name
        add((now(), node, process, INVOKE, f, key, value, None))
        simulated = self._simulated
        unreachable = cut = False
        try:
            if state.partitioned and simulated:  # no connection: fails after the timeout, certainly not applied
                unreachable = True
                await engine.sleep(self._timeout)
            else:
                latency = state.draw_latency()
                if latency:
                    await engine.sleep(latency)
                if state.partitioned and simulated:  # cut while in flight: the node waits for its timeout
                    cut = True
                    if latency < self._timeout:
                        await engine.sleep(self._timeout - latency)
                else:
                    result = await call()
        except asyncio.CancelledError:
            if not engine.ended:
                add((now(), node, process, INFO, f, key, None, "cancelled"))
            raise
        except StoreUnavailableError as exc:
            if not engine.ended:
                add((now(), node, process, INFO if write else FAIL, f, key, None, type(exc).__name__))
            raise
        if unreachable:
            add((now(), node, process, FAIL, f, key, None, "unreachable"))
            raise StoreUnavailableError(f"{node} is cut from the store", operation=f)
        if cut:  # the request never arrived, but the node cannot know: a write's outcome is unknown to it
            add((now(), node, process, INFO if write else FAIL, f, key, None, "cut in flight"))
            raise StoreUnavailableError(f"{node} was cut from the store during {f}", operation=f)
        add((now(), node, process, OK, f, key, _summary(f, result), None))
        return result

    async def set(self, key: str, value: bytes, ttl: float, *, only_if_exists: bool = False) -> None:
        await self._op(
            "set",
            key,
            (("ttl", ttl), ("xx", only_if_exists)),
            True,
            lambda: self._store.set(key, value, ttl, only_if_exists=only_if_exists),
        )

    async def mset(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        items = list(items)
        keys = tuple(item[0] for item in items)
        ttl = max((item[2] for item in items), default=0.0)
        await self._op("mset", None, (("keys", keys), ("ttl", ttl)), True, lambda: self._store.mset(items))

    async def get(self, key: str) -> bytes | None:
        result: bytes | None = await self._op("get", key, None, False, lambda: self._store.get(key))
        return result

    async def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        keys = list(keys)
        result: list[bytes | None] = await self._op("mget", None, tuple(keys), False, lambda: self._store.mget(keys))
        return result

    async def expire(self, *keys: str, ttl: float) -> None:
        await self._op("expire", None, (("keys", keys), ("ttl", ttl)), True, lambda: self._store.expire(*keys, ttl=ttl))

    async def keys(self, prefix: str) -> list[str]:
        result: list[str] = await self._op("keys", prefix, None, False, lambda: self._store.keys(prefix))
        return result

    async def delete(self, keys: Sequence[str]) -> None:
        keys = list(keys)
        await self._op("delete", None, tuple(keys), True, lambda: self._store.delete(keys))


def _summary(f: str, result: Any) -> Any:
    """What an ``ok`` event records of a result: found or not, counts, sorted key lists; never the bytes."""
    if f == "get":
        return result is not None
    if f == "mget":
        return sum(1 for item in result if item is not None)
    if f == "keys":
        return tuple(sorted(result))
    return None


class NodeClock:
    """A node's clock for its registry: the engine's monotonic time, and a wall clock with the node's skew."""

    __slots__ = ("_engine", "_state")

    def __init__(self, engine: Engine, state: NodeState) -> None:
        self._engine = engine
        self._state = state

    def now_ns(self) -> int:
        return self._engine.now_ns()

    def now(self) -> float:
        return self._engine.now_ns() / 1e9

    def time(self) -> float:
        return self._engine.wall_time() + self._state.skew


class Context:
    """The :class:`~sessionkv.sim.policies.NodeContext` of one node incarnation."""

    def __init__(self, engine: Engine, state: NodeState, registry: SessionRegistry) -> None:
        scenario = engine.scenario
        self._engine = engine
        self._state = state
        self.node_id = state.name
        self.registry = registry
        self.ttl = scenario.ttl
        self.maintenance_interval = scenario.maintenance_interval
        self.max_sessions_per_call = scenario.max_sessions_per_call
        self.max_session_duration = scenario.max_session_duration
        self.idle_timeout = scenario.idle_timeout
        self.clock = registry.clock
        self._generation = state.generation

    def monotonic(self) -> float:
        return self._engine.now_ns() / 1e9

    def wall(self) -> float:
        return self.clock.time()

    def launch_delay(self) -> float:
        return self._engine.scenario.launch_delay.draw(self._state.launch_rng)

    def _live(self) -> bool:
        """Whether this context's incarnation is the node's current one (a crash or stop ends it)."""
        state = self._state
        return state.alive and state.generation == self._generation and not self._engine.ended

    def spawn(self, coro: Coroutine[Any, Any, None], role: str) -> asyncio.Task[None]:
        if not self._live():
            coro.close()
            raise RuntimeError(f"node {self.node_id} is not running")
        return self._engine.spawn(self._state, coro, f"{self.node_id}/{role}")

    def _event(self, f: str, call_id: str, session_id: str, value: Any) -> None:
        engine = self._engine
        if not self._live():
            return
        engine.history.events.append(
            (engine.now_ns(), self.node_id, _PROCESS.get(), OK, f, _session_key(call_id, session_id), value, None)
        )

    def session_started(self, call_id: str, session_id: str) -> None:
        if self._live():
            self._state.running[session_id] = call_id
            self._event("session_start", call_id, session_id, call_id)

    def session_stopped(self, call_id: str, session_id: str, reason: str) -> None:
        if self._live() and self._state.running.pop(session_id, None) is not None:
            self._event("session_stop", call_id, session_id, reason)

    def limit_rejected(self, call_id: str, session_id: str) -> None:
        self._event("limit_reject", call_id, session_id, call_id)


@dataclasses.dataclass(slots=True)
class RunOutput:
    """What one engine run produced, before analysis."""

    history: History
    simulated_s: float
    wall_s: float
    notes: list[str]


class Engine:
    """Runs one scenario under one policy on one backend and records the history (see the module docstring)."""

    def __init__(
        self,
        scenario: Scenario,
        policy: Policy,
        params: Parameters,
        *,
        backend: str = "memory",
        durability: Durability | None = None,
    ) -> None:
        from sessionkv.sim.topology import PRIMARY_BACKENDS, Durability, check_backend

        if backend not in BACKENDS:
            raise ScenarioError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        self.durability = durability or Durability()
        check_backend(scenario, backend, self.durability)
        # where acknowledged writes can be lost to a failover, the observer also lists the close flags
        self.observe_flags = backend in PRIMARY_BACKENDS
        self.scenario = scenario
        self.policy = policy
        self.params = params
        self.backend = backend
        self.history = History()
        self.ended = False
        # nanoseconds since the run began, and the epoch seconds that all nodes' wall clocks start from
        self.now_ns: Callable[[], int] = time.monotonic_ns
        self.wall_time: Callable[[], float] = time.time
        self.states = {name: NodeState(name, scenario.latency, params) for name in scenario.node_names}
        self.client = NodeState("client", scenario.latency, params)
        self.client.alive = True
        self.store: SessionKVStore | None = None
        # how the observer lists keys: the store's keys() unless a backend knows better (the cluster's majority side)
        self.observer_keys: Callable[[str], Awaitable[list[str]]] | None = None
        self.real: RealRedisBackend | TopologyBackend | None = None
        self.origin_ns = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._timers: list[asyncio.TimerHandle] = []
        self.progress: Callable[[float], None] | None = None
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self.notes: list[str] = []

    # -- running -----------------------------------------------------------------------------------------------------

    def run(self) -> RunOutput:
        """Run to the scenario's end and return the history (blocking; builds its own event loop)."""
        started = time.perf_counter()
        if self.backend == "redis":
            from sessionkv.sim.realredis import run_on_redis

            run_on_redis(self)
        elif self.backend in REAL_BACKENDS:
            from sessionkv.sim.topology import run_on_topology

            run_on_topology(self, self.backend, self.durability)
        else:
            from sessionkv.testing.virtual_time import VirtualClock, run

            clock = VirtualClock()
            self.now_ns = clock.now_ns
            self.wall_time = clock.time
            # only fakeredis reads time.time(); everything else here reads the virtual clock itself (and freezegun,
            # the wall-clock patch, is then not needed at all)
            run(self._main(), clock=clock, patch_wall_clock=self.backend == "fakeredis")
        return RunOutput(self.history, self.scenario.duration, time.perf_counter() - started, self.notes)

    async def open_store(self) -> SessionKVStore:
        from sessionkv.testing.virtual_time import VirtualClock, VirtualClockSessionKVStore, virtual_fakeredis_store

        loop = asyncio.get_running_loop()
        clock = getattr(loop, "clock", None)
        assert isinstance(clock, VirtualClock)
        if self.backend == "memory":
            return VirtualClockSessionKVStore(clock=clock, cleanup_interval=self.scenario.ttl * 4)
        return virtual_fakeredis_store(clock, key_prefix="sim:")

    def node_store(self, name: str) -> SessionKVStore:
        """The store a node's view wraps (the shared one here; real Redis gives each node its own client)."""
        if self.real is not None:
            return self.real.stores[name]
        assert self.store is not None
        return self.store

    async def wipe_store(self, keep_data: bool) -> None:
        """Restart the store; without ``keep_data`` everything is lost."""
        assert self.store is not None
        if keep_data:
            return
        if self.real is not None:
            server = self.real.server
            assert server is not None, "check_backend refuses a whole-store restart on this backend"
            await asyncio.to_thread(server.restart)
        elif self.backend == "memory":
            await self.store.delete(await self.store.keys(""))
        else:
            client = self.store.client  # type: ignore[attr-defined]
            await client.flushall()
        # Look at once: the periodic observer may only read after a node has re-registered, and then the loss of the
        # acknowledged records would go uncounted (on real Redis that depends on timing).
        await self.observe_once("observer/after-restart")

    async def _main(self) -> None:
        self.store = await self.open_store()
        await self.store.start()
        loop = asyncio.get_running_loop()
        if isinstance(loop, VirtualTimeLoop):  # integer-nanosecond timers, without asyncio.sleep's float detour
            sleep_until_ns, now_ns = loop.sleep_until_ns, self.now_ns

            def sleep(seconds: float) -> Awaitable[None]:
                return sleep_until_ns(now_ns() + round(seconds * 1e9))

            self.sleep = sleep
        try:
            await self.drive()
        finally:
            await self.store.close()

    async def drive(self) -> None:
        """Schedule the timeline, run the observer, wait until the end, then cancel everything."""
        loop = asyncio.get_running_loop()
        origin = loop.time()
        if self.real is not None:
            self.origin_ns = time.monotonic_ns()
        scenario = self.scenario
        self.client.view = StoreView(self, self.client, self.node_store("client"))
        if scenario.autostart:
            for name in scenario.node_names:
                self._start_node(self.states[name], "node_start")
        for window, action in enumerate(scenario.timeline()):
            if action.verb in ("kill_primary", "partition_primary"):  # the backend ends its own fault window
                action = dataclasses.replace(action, args=(*action.args, ("window", window)))
            if action.verb in ("partition", "slow_store"):
                # windows may overlap: each start and its end carry the same window number
                action = dataclasses.replace(action, args=(*action.args, ("window", window)))
                if action.duration is not None:
                    end_verb = "heal" if action.verb == "partition" else "unslow"
                    end = Action(action.at + action.duration, end_verb, action.node, None, (("window", window),))
                    self._timers.append(loop.call_at(origin + end.at, self._fire, end))
            self._timers.append(loop.call_at(origin + action.at, self._fire, action))
        observer = asyncio.create_task(self._observe())
        try:
            await asyncio.sleep(scenario.duration)
        finally:
            self.ended = True
            for timer in self._timers:
                timer.cancel()
            tasks = [observer, *self._tasks]
            pending = set(tasks)
            while pending:
                # cancel again until done: on Python 3.11 a cancel that arrives as a store call's asyncio.timeout
                # expires is swallowed (the call fails with a timeout), and the task would go on to its next sleep
                for task in pending:
                    task.cancel()
                _, pending = await asyncio.wait(pending, timeout=0.05)
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _observe(self) -> None:
        every = self.scenario.observe_every
        while True:
            await self.observe_once("observer")
            if self.progress is not None:
                self.progress(self.now_ns() / 1e9)
            await asyncio.sleep(every)

    async def observe_once(self, process: str) -> None:
        """One observer read of every session key (and, where ``observe_flags``, then of every close flag), straight
        from the store, recorded in the history."""
        assert self.store is not None
        listing = self.observer_keys or self.store.keys
        add = self.history.events.append
        for prefix in (SESSIONS_PREFIX, CLOSE_REQUESTS_PREFIX) if self.observe_flags else (SESSIONS_PREFIX,):
            add((self.now_ns(), "observer", process, INVOKE, "keys", prefix, None, None))
            try:
                keys = await listing(prefix)
            except StoreUnavailableError as exc:
                add((self.now_ns(), "observer", process, FAIL, "keys", prefix, None, type(exc).__name__))
            else:
                add((self.now_ns(), "observer", process, OK, "keys", prefix, tuple(sorted(keys)), None))

    def spawn(self, state: NodeState, coro: Coroutine[Any, Any, None], process: str) -> asyncio.Task[None]:
        async def body() -> None:
            _PROCESS.set(process)
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a policy's task failed: record it, the node goes on
                if not self.ended and state.logic is not None:
                    self._nemesis_like(state.name, process, "task_failed", type(exc).__name__)

        task = asyncio.get_running_loop().create_task(body())
        state.tasks[task] = process
        self._tasks.add(task)

        def forget(done: asyncio.Task[None]) -> None:
            state.tasks.pop(done, None)
            self._tasks.discard(done)

        task.add_done_callback(forget)
        return task

    def _nemesis_like(self, node: str, process: str, f: str, value: Any) -> None:
        self.history.events.append((self.now_ns(), node, process, OK, f, None, value, None))

    def _nemesis(self, f: str, value: Any) -> None:
        self.history.events.append((self.now_ns(), "nemesis", "nemesis", INFO, f, None, value, None))

    def nemesis(self, f: str, value: Any) -> None:
        """Record a nemesis event now (what a backend's fault records as it happens)."""
        if not self.ended:
            self._nemesis(f, value)

    # -- node lifecycle ------------------------------------------------------------------------------------------------

    def _start_node(self, state: NodeState, event: str) -> None:
        if state.alive:
            return
        view = StoreView(self, state, self.node_store(state.name))
        state.view = view
        registry = SessionRegistry(view, node_id=state.name, ttl=self.scenario.ttl, clock=NodeClock(self, state))
        state.alive = True
        state.generation += 1
        state.running = {}
        state.logic = self.policy.node(Context(self, state, registry))
        self._nemesis_like(state.name, f"{state.name}/node", event, None)
        self.spawn(state, state.logic.start(), f"{state.name}/node")

    def _crash_node(self, state: NodeState) -> None:
        if not state.alive:
            return
        self._nemesis_like(state.name, f"{state.name}/node", "node_crash", None)
        self._drop_sessions(state, "node_crash")
        state.alive = False
        state.logic = None
        for task in list(state.tasks):
            task.cancel()

    def _drop_sessions(self, state: NodeState, reason: str) -> None:
        for session_id, call_id in list(state.running.items()):
            self.history.events.append(
                (
                    self.now_ns(),
                    state.name,
                    f"{state.name}/node",
                    OK,
                    "session_stop",
                    _session_key(call_id, session_id),
                    reason,
                    None,
                )
            )
        state.running = {}

    async def _stop_node(self, state: NodeState) -> None:
        logic = state.logic
        if not state.alive or logic is None:
            return
        try:
            await logic.stop()
        finally:
            self._nemesis_like(state.name, f"{state.name}/node", "node_stop", None)
            self._drop_sessions(state, "node_stop")
            state.alive = False
            state.logic = None
            for task in list(state.tasks):
                if task is not asyncio.current_task():
                    task.cancel()

    def _owner(self, session_id: str) -> NodeState | None:
        for state in self.states.values():
            if session_id in state.running:
                return state
        return None

    # -- the timeline ------------------------------------------------------------------------------------------------

    def _fire(self, action: Action) -> None:
        verb = action.verb
        state = self.states.get(action.node or "")
        if verb in ("start", "restart"):
            assert state is not None
            if verb == "restart":
                self._nemesis("restart", (("node", state.name),))
            self._start_node(state, "node_start")
        elif verb == "crash":
            assert state is not None
            self._nemesis("crash", (("node", state.name),))
            self._crash_node(state)
        elif verb == "stop":
            assert state is not None
            self._nemesis("stop", (("node", state.name),))
            self.spawn(self.client, self._stop_node(state), f"{state.name}/node")
        elif verb in ("partition", "heal"):
            assert state is not None
            window = action.arg("window")
            self._nemesis(verb, (("node", state.name), ("window", window)))
            if verb == "partition":
                state.cuts.add(window)
            else:
                state.cuts.discard(window)
            state.partitioned = bool(state.cuts)
            if self.real is not None:
                self.real.cut(state.name, state.partitioned)
        elif verb in ("slow_store", "unslow"):
            window = action.arg("window")
            targets = [state] if state is not None else [*self.states.values(), self.client]
            if verb == "slow_store":
                latency = Latency(action.arg("low"), action.arg("high"))
                value = (("node", action.node), ("low", latency.low), ("high", latency.high), ("window", window))
                self._nemesis("slow", value)
                for target in targets:
                    target.slow_windows[window] = latency
            else:
                self._nemesis("unslow", (("node", action.node), ("window", window)))
                for target in targets:
                    target.slow_windows.pop(window, None)
            for target in targets:  # overlapping windows: the slowest applies
                target.slow = max(target.slow_windows.values(), key=lambda lat: lat.high, default=None)
        elif verb == "store_restart":
            keep = bool(action.arg("keep_data", False))
            self._nemesis("store_restart" if keep else "store_wipe", None)
            self.spawn(self.client, self.wipe_store(keep), "nemesis")
        elif verb in ("kill_primary", "partition_primary"):
            from sessionkv.sim.topology import TopologyBackend

            assert isinstance(self.real, TopologyBackend), "check_backend refuses primary faults elsewhere"
            self.spawn(self.client, self.real.primary_fault(action, action.arg("window")), "nemesis")
        elif verb in ("clock_skew", "clock_jump"):
            assert state is not None
            if verb == "clock_skew":
                state.skew = float(action.arg("offset", 0.0))
                self._nemesis(verb, (("node", state.name), ("offset", state.skew)))
            else:
                state.skew += float(action.arg("delta", 0.0))
                self._nemesis(verb, (("node", state.name), ("delta", float(action.arg("delta", 0.0)))))
        elif verb == "maint_kill":
            assert state is not None
            self._nemesis("maint_kill", (("node", state.name),))
            for task, process in list(state.tasks.items()):
                if process.endswith("/maint") and not task.done():
                    task.cancel()
                    self._nemesis_like(state.name, process, "maint_crash", None)
        elif verb == "open":
            assert state is not None
            call, session = action.arg("call"), action.arg("session")
            if state.alive and state.logic is not None:
                self.spawn(state, state.logic.open_session(call, session), f"{state.name}/start:{call}/{session}")
        elif verb == "request_close":
            call, session = action.arg("call"), action.arg("session")
            if state is None:
                registry = SessionRegistry(self.client.view, node_id="client", ttl=self.scenario.ttl)
                self.spawn(self.client, self.policy.request_close(registry, call, session), f"client/close:{session}")
            elif state.alive and state.logic is not None and state.view is not None:
                registry = SessionRegistry(state.view, node_id=state.name, ttl=self.scenario.ttl)
                self.spawn(state, self.policy.request_close(registry, call, session), f"{state.name}/close:{session}")
        elif verb in ("end_session", "leave"):
            call, session = action.arg("call"), action.arg("session")
            self.history.events.append(
                (self.now_ns(), "client", "client/workload", OK, verb, _session_key(call, session), None, None)
            )
            owner = self._owner(session)
            if owner is not None and owner.logic is not None:
                if verb == "end_session":
                    owner.logic.end_session(action.arg("session"))
                else:
                    owner.logic.leave(action.arg("session"))
        else:  # pragma: no cover - Action.from_json and the Scenario verbs only make known verbs
            raise ScenarioError(f"unknown verb {verb!r}")


def make_policy(name: str) -> Policy:
    from sessionkv.sim.policies import POLICIES

    if name not in POLICIES:
        raise ScenarioError(f"unknown policy {name!r}; choose one of {', '.join(POLICIES)}")
    return POLICIES[name]()
