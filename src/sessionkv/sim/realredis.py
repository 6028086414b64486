"""The ``redis`` backend: the plan of a scenario replayed on a real ``redis-server``, in real time.

Each node has its own :class:`~sessionkv.redis_store.RedisSessionKVStore` connected through its own
:class:`~sessionkv.testing.faults.RedisFaultProxy`, so a partition cuts one node (the proxy goes ``down`` and resets
its connections) while the others and the observer (connected to the server directly) carry on. "Restart the store
without data" restarts the :class:`~sessionkv.testing.servers.RedisServer` (it comes back empty on the same port).
No latency is added (the network's is real); slow-store windows add theirs on top.

Every duration of the scenario is multiplied by ``time_scale`` (:func:`scale_scenario`) so a run stays short; the
history's times are real seconds since the start. Timing is real, so a run is not reproducible by seed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import TYPE_CHECKING

from sessionkv.sim.model import Action, Latency, Scenario
from sessionkv.store import SessionKVStore

if TYPE_CHECKING:
    from sessionkv.sim.engine import Engine
    from sessionkv.testing.faults import FaultHandle, RedisFaultProxy
    from sessionkv.testing.servers import RedisServer

__all__ = ["run_on_redis", "scale_scenario"]

_SCALED_ARGS = ("low", "high", "offset", "delta")


def scale_scenario(scenario: Scenario, scale: float, *, min_timeout: float = 0.25) -> Scenario:
    """A copy of ``scenario`` with every duration (times, TTL, intervals, latencies, limits, skews) times ``scale``.

    The operation timeout is scaled too but kept at ``min_timeout`` or more (a real round trip must fit in it).
    """
    if not (scale > 0):
        raise ValueError(f"time_scale must be > 0, got {scale!r}")

    def action(a: Action) -> Action:
        args = tuple((name, value * scale if name in _SCALED_ARGS else value) for name, value in a.args)
        return Action(a.at * scale, a.verb, a.node, None if a.duration is None else a.duration * scale, args)

    return dataclasses.replace(
        scenario,
        duration=scenario.duration * scale,
        ttl=scenario.ttl * scale,
        maintenance_interval=scenario.maintenance_interval * scale,
        latency=Latency(0.0, 0.0),
        launch_delay=Latency(scenario.launch_delay.low * scale, scenario.launch_delay.high * scale),
        operation_timeout=max(min_timeout, scenario.operation_timeout * scale),
        observe_interval=scenario.observe_every * scale,
        max_session_duration=None if scenario.max_session_duration is None else scenario.max_session_duration * scale,
        idle_timeout=scenario.idle_timeout * scale,
        actions=[action(a) for a in scenario.actions],
    )


class RealRedisBackend:
    """The server, one proxy and one store per node, the observer's direct store; the engine's store hooks."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.proxies: dict[str, RedisFaultProxy] = {}
        self.stores: dict[str, SessionKVStore] = {}
        self.cuts: dict[str, FaultHandle] = {}
        self.server: RedisServer | None = None

    async def run(self) -> None:
        from sessionkv.redis_store import RedisSessionKVStore
        from sessionkv.testing.faults import RedisFaultProxy
        from sessionkv.testing.servers import RedisServer

        engine = self.engine
        scenario = engine.scenario
        server = await asyncio.to_thread(RedisServer().start)
        try:
            observer = RedisSessionKVStore(url=server.url, key_prefix="sim:", operation_timeout=5.0)
            await observer.start()
            engine.store = observer
            self.server = server
            for index, name in enumerate([*scenario.node_names, "client"]):
                proxy = RedisFaultProxy(server.host, server.port, seed=engine.params.seed + index, resp=False)
                await proxy.start()
                self.proxies[name] = proxy
                node_store = RedisSessionKVStore(
                    url=proxy.url, key_prefix="sim:", operation_timeout=scenario.operation_timeout
                )
                await node_store.start()
                self.stores[name] = node_store
            try:
                await engine.drive()
            finally:
                for store in self.stores.values():
                    await store.close()
                for proxy in self.proxies.values():
                    await proxy.stop()
                await observer.close()
        finally:
            await asyncio.to_thread(server.stop)

    def cut(self, node: str, cut: bool) -> None:
        from sessionkv.testing.faults import Down

        proxy = self.proxies[node]
        if cut and node not in self.cuts:
            self.cuts[node] = proxy.add(Down(cut_existing=True))
        elif not cut and node in self.cuts:
            self.cuts.pop(node).remove()


def run_on_redis(engine: Engine) -> None:
    """Run ``engine`` (whose scenario is already scaled) against a fresh real ``redis-server``."""
    backend = RealRedisBackend(engine)
    engine.now_ns = lambda: time.monotonic_ns() - engine.origin_ns
    engine.wall_time = time.time
    engine.real = backend
    asyncio.run(backend.run())
