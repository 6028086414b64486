"""vision-agents' own stores as certification targets, from a real vision-agents installation.

From this directory, in the environment of the compatibility tests (see ``conftest.py``)::

    sessionkv certify vision_agents_stores:in_memory
    sessionkv certify vision_agents_stores:redis     # $SESSIONKV_REDIS_URL, else a RedisServer started for the run

Both stores read real time (``time.monotonic()`` / the server's clock), so they are certified in real time.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from typing import Any

from vision_agents.core.agents.session_registry import InMemorySessionKVStore, RedisSessionKVStore

from sessionkv._glob import glob_escape
from sessionkv.testing.certify import backends

__all__ = ["in_memory", "redis"]

_PREFIXES = itertools.count()


class _CleaningRedisStore(RedisSessionKVStore):  # type: ignore[misc]
    """vision-agents' store, unchanged except that ``close`` first deletes the keys under its private prefix, so a
    shared server is left as it was found. Everything certified happens before ``close``."""

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            client = self._redis
            doomed = [key async for key in client.scan_iter(match=glob_escape(self._key_prefix) + "*", count=1000)]
            for start in range(0, len(doomed), 1000):
                await client.unlink(*doomed[start : start + 1000])
        await super().close()


def in_memory() -> Any:
    """vision-agents' ``InMemorySessionKVStore()`` with its default cleanup interval."""
    return InMemorySessionKVStore()


def redis() -> Any:
    """vision-agents' ``RedisSessionKVStore(url=...)`` on a real server, under a fresh key prefix."""
    return _CleaningRedisStore(url=backends._server_url(), key_prefix=f"va:{os.getpid()}:{next(_PREFIXES)}:")


def _unreachable_redis() -> Any:
    return RedisSessionKVStore(url=backends._closed_port_url(), key_prefix="va:")


redis.unavailable = _unreachable_redis  # type: ignore[attr-defined]
