"""Factories of sessionkv's own stores, ready for ``sessionkv certify`` and for the contract classes.

``sessionkv certify sessionkv.testing.certify.backends:memory`` (virtual clock), ``...:fakeredis`` (virtual clock too:
fakeredis in process, reading the wall clock that the check's clock patches; real time with ``--real-time``),
``...:redis`` and ``...:redis_indexed`` (real time, a real redis-server: ``$SESSIONKV_REDIS_URL`` if set,
else one :class:`~sessionkv.testing.servers.RedisServer` started on first use and stopped at exit). Every call returns
a new store with its own key prefix, so stores never see each other's keys. Each factory declares what the suite needs
to know: ``unavailable`` (a factory of a store whose backend cannot be reached, for G15) or ``unsupported``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import threading
from typing import Any, Final

from sessionkv.clock import Clock
from sessionkv.memory import InMemorySessionKVStore
from sessionkv.redis_store import RedisSessionKVStore, redact_url

__all__ = ["fakeredis", "memory", "redis", "redis_indexed", "redis_store_factory"]

_PREFIXES = itertools.count()
_SERVER_LOCK = threading.Lock()
_SERVER: Any = None
UNREACHABLE_TIMEOUT: Final = 1.0
IN_PROCESS_TIMEOUT: Final = 3600.0
"""``operation_timeout`` of the fakeredis stores: fakeredis runs a command to its end inside the send, before any
deadline can fire, so the deadline could not cut a hang short; it would only measure how loaded the machine is (a
10 000-key ``mset`` takes about 1 s unloaded, and more than the default 5 s under a parallel test run)."""


def _prefix() -> str:
    return f"certify:{os.getpid()}:{next(_PREFIXES)}:"


def memory(*, clock: Clock | None = None) -> InMemorySessionKVStore:
    """A new in-memory store on ``clock`` (virtual time when the suite passes one)."""
    return InMemorySessionKVStore(clock=clock)


memory.unsupported = {"G15": "an in-process store has no backend that could become unreachable"}  # type: ignore[attr-defined]


class _CleaningRedisStore(RedisSessionKVStore):
    """A ``RedisSessionKVStore`` that, on its first close, unlinks the keys under its private prefix (leaves a shared
    server clean) and closes a client it was lent. The store's behaviour before close is the real store's."""

    _lent_client: Any = None
    _cleaned = False

    async def close(self) -> None:
        if not self._cleaned:
            self._cleaned = True
            with contextlib.suppress(Exception):
                client = self.client
                pattern = self.key_prefix.replace("[", "\\[").replace("*", "\\*").replace("?", "\\?") + "*"
                batch = [key async for key in client.scan_iter(match=pattern, count=1000)]
                for start in range(0, len(batch), 1000):
                    await client.unlink(*batch[start : start + 1000])
                await client.unlink(b"\xffsessionkv:lex\xff" + self.key_prefix.encode())
                await client.unlink(b"\xffsessionkv:exp\xff" + self.key_prefix.encode())
        await super().close()
        if self._lent_client is not None:
            lent, self._lent_client = self._lent_client, None
            await lent.aclose()


def fakeredis(*, clock: Clock | None = None) -> RedisSessionKVStore:
    """A ``RedisSessionKVStore`` over a private fakeredis server.

    With ``clock`` (a :class:`~sessionkv.testing.virtual_time.VirtualClock` that patches the wall clock, as the
    certification runner does for a factory marked ``follows_wall_clock``) it is
    :func:`~sessionkv.testing.virtual_time.virtual_fakeredis_store`: keys expire on that clock, so no check depends on
    the speed of the machine. Without, fakeredis expires keys on the real ``time.time()``.
    """
    import fakeredis as fake

    if clock is not None:
        from sessionkv.testing.virtual_time import VirtualClock, virtual_fakeredis_store

        if not isinstance(clock, VirtualClock):
            raise TypeError(f"fakeredis follows the wall clock: clock must be a VirtualClock, got {clock!r}")
        return virtual_fakeredis_store(clock, key_prefix=_prefix(), operation_timeout=IN_PROCESS_TIMEOUT)
    client = fake.FakeAsyncRedis(server=fake.FakeServer())
    store = _CleaningRedisStore(client=client, key_prefix=_prefix(), operation_timeout=IN_PROCESS_TIMEOUT)
    store._lent_client = client
    return store


fakeredis.follows_wall_clock = True  # type: ignore[attr-defined]


def _unreachable_fakeredis() -> RedisSessionKVStore:
    import fakeredis as fake

    server = fake.FakeServer()
    server.connected = False  # fakeredis then fails every command with a ConnectionError
    client = fake.FakeAsyncRedis(server=server)
    store = _CleaningRedisStore(client=client, key_prefix=_prefix(), operation_timeout=UNREACHABLE_TIMEOUT)
    store._cleaned = True
    store._lent_client = client
    return store


fakeredis.unavailable = _unreachable_fakeredis  # type: ignore[attr-defined]


def _server_url() -> str:
    url = os.environ.get("SESSIONKV_REDIS_URL")
    if url:
        return url
    global _SERVER
    with _SERVER_LOCK:
        if _SERVER is None:
            from sessionkv.testing.servers import RedisServer

            _SERVER = RedisServer().start()  # stopped by RedisServer's own atexit hook
        return str(_SERVER.url)


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"  # nothing listens there once the socket is closed


def redis_store_factory(url: str, *, indexed: bool = False) -> Any:
    """A factory of ``RedisSessionKVStore(url=url, indexed=indexed)`` with a fresh key prefix per store."""

    def make() -> RedisSessionKVStore:
        return _CleaningRedisStore(url=url, key_prefix=_prefix(), indexed=indexed)

    def unreachable() -> RedisSessionKVStore:
        store = _CleaningRedisStore(
            url=_closed_port_url(), key_prefix=_prefix(), indexed=indexed, operation_timeout=UNREACHABLE_TIMEOUT
        )
        store._cleaned = True
        return store

    make.unavailable = unreachable  # type: ignore[attr-defined]
    make.__qualname__ = f"redis_store_factory({redact_url(url)!r}, indexed={indexed})"  # shown in every report
    return make


def redis() -> RedisSessionKVStore:
    """A SCAN-mode ``RedisSessionKVStore`` on a real redis-server."""
    store: RedisSessionKVStore = redis_store_factory(_server_url())()
    return store


def redis_indexed() -> RedisSessionKVStore:
    """An indexed-mode ``RedisSessionKVStore`` on a real redis-server."""
    store: RedisSessionKVStore = redis_store_factory(_server_url(), indexed=True)()
    return store


redis.unavailable = redis_store_factory("redis://127.0.0.1:1/0").unavailable  # type: ignore[attr-defined]
redis_indexed.unavailable = redis_store_factory("redis://127.0.0.1:1/0", indexed=True).unavailable  # type: ignore[attr-defined]


# -- Redis Cluster and Sentinel (real topologies, started on first use, stopped at exit) -------------------------------

_TOPOLOGIES: dict[str, Any] = {}


def _topology(kind: str) -> Any:
    """The process's one cluster or Sentinel topology, started on first use and stopped at exit."""
    with _SERVER_LOCK:
        if kind not in _TOPOLOGIES:
            import atexit

            from sessionkv.testing.topologies import RedisClusterTopology, RedisSentinelTopology

            topology = (RedisClusterTopology if kind == "cluster" else RedisSentinelTopology)().start()
            atexit.register(topology.stop)
            _TOPOLOGIES[kind] = topology
        return _TOPOLOGIES[kind]


class _CleanOnClose:
    """Mixin: on its first close, the store deletes every key under its private prefix (through its own API)."""

    _cleaned = False

    async def close(self) -> None:
        if not self._cleaned:
            self._cleaned = True
            with contextlib.suppress(Exception):
                store: Any = self
                await store.delete(await store.keys(""))
        await super().close()  # type: ignore[misc]


def _closed_port() -> int:
    from urllib.parse import urlsplit

    return int(urlsplit(_closed_port_url()).port or 1)


def _cluster_class() -> Any:
    from sessionkv.redis_cluster import RedisClusterSessionKVStore

    return type("_CleaningClusterStore", (_CleanOnClose, RedisClusterSessionKVStore), {})


def _sentinel_class() -> Any:
    from sessionkv.redis_sentinel import RedisSentinelSessionKVStore

    return type("_CleaningSentinelStore", (_CleanOnClose, RedisSentinelSessionKVStore), {})


def redis_cluster_store_factory(startup_nodes: list[tuple[str, int]], *, hash_tag: str | None = None) -> Any:
    """A factory of ``RedisClusterSessionKVStore(startup_nodes=..., hash_tag=...)`` with a fresh key prefix per store
    (``unavailable``: the same store pointed at a closed port)."""
    store_class = _cluster_class()

    def make() -> Any:
        return store_class(startup_nodes=startup_nodes, key_prefix=_prefix(), hash_tag=hash_tag)

    def unreachable() -> Any:
        store = store_class(
            startup_nodes=[("127.0.0.1", _closed_port())], key_prefix=_prefix(), operation_timeout=UNREACHABLE_TIMEOUT
        )
        store._cleaned = True
        return store

    make.unavailable = unreachable  # type: ignore[attr-defined]
    make.__qualname__ = f"redis_cluster_store_factory({startup_nodes[:1]!r}..., hash_tag={hash_tag!r})"
    return make


def redis_sentinel_store_factory(sentinels: list[tuple[str, int]], service_name: str) -> Any:
    """A factory of ``RedisSentinelSessionKVStore`` on the given Sentinels, a fresh key prefix per store
    (``unavailable``: the same store told of a Sentinel on a closed port)."""
    store_class = _sentinel_class()

    def make() -> Any:
        return store_class(sentinels=sentinels, service_name=service_name, key_prefix=_prefix())

    def unreachable() -> Any:
        store = store_class(
            sentinels=[("127.0.0.1", _closed_port())],
            service_name=service_name,
            key_prefix=_prefix(),
            operation_timeout=UNREACHABLE_TIMEOUT,
        )
        store._cleaned = True
        return store

    make.unavailable = unreachable  # type: ignore[attr-defined]
    make.__qualname__ = f"redis_sentinel_store_factory({sentinels[:1]!r}..., {service_name!r})"
    return make


def redis_cluster() -> Any:
    """A ``RedisClusterSessionKVStore`` (default, sharded layout) on a real local Redis Cluster (3 primaries, 3
    replicas), started on first use. Declares G07's atomicity across slots unsupported (see the store)."""
    return redis_cluster_store_factory(_topology("cluster").startup_nodes)()


def redis_cluster_hash_tag() -> Any:
    """A ``RedisClusterSessionKVStore`` in the hash-tag layout (every key in one slot) on the local Redis Cluster."""
    return redis_cluster_store_factory(_topology("cluster").startup_nodes, hash_tag="certify")()


def redis_sentinel() -> Any:
    """A ``RedisSentinelSessionKVStore`` on a real local Sentinel topology (1 primary, 1 replica, 3 Sentinels)."""
    topology = _topology("sentinel")
    return redis_sentinel_store_factory(topology.sentinel_addresses, topology.service_name)()


def _unreachable_cluster() -> Any:
    return redis_cluster_store_factory([("127.0.0.1", 1)]).unavailable()


def _unreachable_sentinel() -> Any:
    return redis_sentinel_store_factory([("127.0.0.1", 1)], "sessionkv").unavailable()


redis_cluster.unavailable = _unreachable_cluster  # type: ignore[attr-defined]
redis_cluster_hash_tag.unavailable = _unreachable_cluster  # type: ignore[attr-defined]
redis_sentinel.unavailable = _unreachable_sentinel  # type: ignore[attr-defined]

__all__ += [
    "redis_cluster",
    "redis_cluster_hash_tag",
    "redis_cluster_store_factory",
    "redis_sentinel",
    "redis_sentinel_store_factory",
]
