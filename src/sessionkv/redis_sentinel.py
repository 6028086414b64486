"""``RedisSentinelSessionKVStore``: :class:`~sessionkv.redis_store.RedisSessionKVStore` on a Sentinel-managed primary.

The store is the single-server store, unchanged (same wire format, same guarantees G01-G16), over a
``redis.asyncio.sentinel.Sentinel(...).master_for(service_name)`` client that this class builds and owns. That client
asks the Sentinels for the primary's address whenever it opens a connection, so the store follows a failover:

* a connection to the old primary that is refused or lost is replaced by one to the address the Sentinels give now;
* a write that reaches a demoted primary (``READONLY``) makes redis-py drop that connection and raise a connection
  error, so the next call asks the Sentinels again.

Reads are retried on those errors (``read_retries`` times, backoff 10 ms doubling, inside ``operation_timeout``); the
default of 8 retries (about 2.5 s of backoff) spans a failover with a ``down-after-milliseconds`` of about a second.
Writes are never replayed: a write that failed may have been applied, and raises
:class:`~sessionkv.errors.StoreUnavailableError`; the next call reaches the new primary.

Replication is asynchronous: a write the old primary acknowledged but had not yet sent to the replica is lost when the
replica is promoted. The store cannot prevent that.

You can also pass your own ``Sentinel(...).master_for(...)`` client to ``RedisSessionKVStore(client=...)``: it works the
same way, but keeps redis-py's default retries (which re-send writes) unless you built it with
``retry=Retry(NoBackoff(), 0)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from sessionkv.redis_store import DEFAULT_KEY_PREFIX, RedisSessionKVStore
from sessionkv.store import check_seconds

__all__ = ["RedisSentinelSessionKVStore"]


class RedisSentinelSessionKVStore(RedisSessionKVStore):
    """A :class:`RedisSessionKVStore` on the primary that the Sentinels at ``sentinels`` name ``service_name``.

    ``sentinels``: ``(host, port)`` of one or more Sentinels. ``sentinel_kwargs``: connection options for the
    Sentinels themselves (e.g. a password); ``client_kwargs``: for the data connections (``username``, ``password``,
    ``ssl``...). ``attempt_timeout``: seconds one command may wait for the server (socket timeouts; default a quarter
    of ``operation_timeout``), so that a read stuck on a frozen primary is retried on the promoted one within the
    deadline. The store owns its client and closes it in :meth:`close`. Other arguments as
    :class:`RedisSessionKVStore`.
    """

    def __init__(
        self,
        *,
        sentinels: Sequence[tuple[str, int]],
        service_name: str,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        indexed: bool = False,
        operation_timeout: float = 5.0,
        attempt_timeout: float | None = None,
        read_retries: int = 8,
        sentinel_kwargs: dict[str, Any] | None = None,
        client_kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> None:
        if isinstance(sentinels, (str, bytes)) or not sentinels:
            raise TypeError(f"sentinels must be a non-empty list of (host, port) pairs, got {sentinels!r}")
        if not isinstance(service_name, str) or not service_name:
            raise TypeError(f"service_name must be a non-empty str, got {service_name!r}")
        timeout = check_seconds("operation_timeout", operation_timeout)
        attempt = check_seconds("attempt_timeout", timeout / 4 if attempt_timeout is None else attempt_timeout)
        connection = {"socket_timeout": attempt, "socket_connect_timeout": attempt}
        self._sentinel = Sentinel(  # type: ignore[no-untyped-call]
            [(str(host), int(port)) for host, port in sentinels],
            sentinel_kwargs={**connection, **(sentinel_kwargs or {})},
            **connection,
        )
        # our own copy: redis-py reorders Sentinel.sentinels in place, and concurrent discoveries can duplicate one
        # entry over another, so closing what that list holds at the end can miss (leak) a Sentinel connection pool
        self._sentinel_clients = list(self._sentinel.sentinels)
        client: aioredis.Redis = self._sentinel.master_for(
            service_name,
            redis_class=aioredis.Redis,
            retry=Retry(NoBackoff(), 0),  # redis-py must never re-send a write: see the module docstring
            **(client_kwargs or {}),
        )
        super().__init__(
            client=client,
            key_prefix=key_prefix,
            indexed=indexed,
            operation_timeout=timeout,
            read_retries=read_retries,
            **options,
        )
        self._owns_client = True  # ours: the base close() closes it and marks the store closed
        self.service_name = service_name
        self.address = "sentinel://" + ",".join(f"{host}:{port}" for host, port in sentinels) + f"/{service_name}"

    async def close(self) -> None:
        """Close the data connections and the Sentinel connections. Idempotent."""
        if self._closed:
            return
        await super().close()
        for sentinel in self._sentinel_clients:
            await sentinel.aclose()
