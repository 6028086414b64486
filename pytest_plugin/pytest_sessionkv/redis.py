"""The plugin's Redis: a server we start, or one the user points at; plus per-test namespace cleanup."""

from __future__ import annotations

import os
from typing import Protocol
from urllib.parse import urlsplit

import pytest
import redis
import redis.asyncio as aioredis

from pytest_sessionkv.options import Settings
from sessionkv._glob import glob_escape
from sessionkv.redis_store import redact_url
from sessionkv.testing import (
    RedisServer,
    RedisServerError,
    RedisServerNotFoundError,
    find_redis_server,
    server_version,
)

__all__ = ["ExternalRedis", "RedisHandle", "clear_namespace", "describe_server", "explicit_server", "start_redis"]


class RedisHandle(Protocol):
    """What every test can rely on, whichever way the server was obtained."""

    @property
    def url(self) -> str: ...

    host: str
    port: int

    def stop(self) -> None: ...


class ExternalRedis:
    """A server given by ``--sessionkv-redis-url``: used as is, never stopped, killed or restarted by us."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        shown = redact_url(url)  # never the raw URL: it may hold a password
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise pytest.UsageError(
                f"--sessionkv-redis-url must be a redis://, rediss:// or unix:// URL, got {shown!r}"
            )
        try:
            port = parts.port
        except ValueError:  # its message quotes the text after ':', which may be part of a password
            raise pytest.UsageError(f"--sessionkv-redis-url {shown!r}: the port must be a number") from None
        self._url = url
        self.host = parts.hostname or "localhost"
        self.port = port or 6379

    @property
    def url(self) -> str:
        return self._url

    @property
    def shown_url(self) -> str:
        """The URL without its credentials."""
        return redact_url(self._url)

    def __repr__(self) -> str:
        return f"ExternalRedis({self.shown_url!r})"

    def stop(self) -> None:
        """Nothing to do: the server is not ours."""

    def check_reachable(self, timeout_s: float = 5.0) -> None:
        """Fail the session's Redis with one short message if the server does not answer ``PING``."""
        client = redis.Redis.from_url(self._url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
        try:
            client.ping()
            return
        except redis.RedisError as exc:
            problem = str(exc)
        finally:
            client.close()
        # raised outside the except block: one line, without the chain of redis-py's internal exceptions
        pytest.fail(
            f"sessionkv: --sessionkv-redis-url {self.shown_url} does not answer PING ({problem}); start that server, "
            "fix the URL, or drop the option to let sessionkv start its own redis-server",
            pytrace=False,
        )


def start_redis(settings: Settings) -> RedisHandle:
    """Start a redis-server (or adopt the external one); skip or fail with the reason when none can be had."""
    if settings.redis_url:
        external = ExternalRedis(settings.redis_url)
        external.check_reachable()
        return external
    try:
        return RedisServer(executable=settings.redis_exec).start()
    except RedisServerNotFoundError as exc:
        message = f"no redis-server for sessionkv fixtures: {exc}"
        if explicit_server(settings):  # a typo in CI configuration must not turn the Redis tests off
            pytest.fail(f"{message} (a server given explicitly must exist)", pytrace=False)
        if settings.require_redis:
            pytest.fail(f"{message} (--sessionkv-require-redis is set)", pytrace=False)
        pytest.skip(f"{message} (pass --sessionkv-require-redis to fail instead)")
    except RedisServerError as exc:  # a binary that exists but does not start is a failure, never a skip
        pytest.fail(f"redis-server for sessionkv fixtures failed to start: {exc}", pytrace=False)


def explicit_server(settings: Settings) -> str | None:
    """The server binary the user named (``--sessionkv-redis-exec``, its ini key, or ``$SESSIONKV_REDIS_EXEC``)."""
    return settings.redis_exec or os.environ.get("SESSIONKV_REDIS_EXEC") or None


def describe_server(settings: Settings) -> str:
    """One line for pytest's header: which server the fixtures use, e.g. ``redis 7.0.15 (/usr/bin/redis-server)``."""
    if settings.redis_url:
        return f"external server {ExternalRedis(settings.redis_url)!r}"
    try:
        executable = find_redis_server(settings.redis_exec)
        return f"{server_version(executable)} ({executable})"
    except RedisServerError as exc:
        return f"none: {exc}"


async def clear_namespace(client: aioredis.Redis, prefix: str) -> int:
    """Delete every key under ``prefix`` (literal), in batches; returns how many were deleted.

    SCAN walks the whole keyspace whatever the pattern, so a large COUNT only saves round trips."""
    deleted = 0
    batch: list[bytes] = []
    async for key in client.scan_iter(match=glob_escape(prefix) + "*", count=10_000):
        batch.append(key)
        if len(batch) >= 1000:
            deleted += await client.unlink(*batch)
            batch.clear()
    if batch:
        deleted += await client.unlink(*batch)
    return deleted
