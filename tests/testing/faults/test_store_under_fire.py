"""``RedisSessionKVStore`` under fire: every store operation against every fault family, through a real proxy.

Each case installs one fault in a :class:`RedisFaultProxy` in front of the session's real redis-server, runs one store
operation and asserts the outcome the store promises (module docstring of ``sessionkv.redis_store``):

* it either succeeds with the correct result or raises ``StoreUnavailableError`` (cause chained) within its
  ``operation_timeout``: it never hangs and never lets a raw redis-py or socket error out;
* a write is never retried (the transcript shows one ``SET``/``EVALSHA``/``EXEC``) and leaves the server with all of
  its effect or none of it (``mset`` never leaves a partial batch), and which one is predicted per fault: a fault that
  acts after the server saw the command (lost, delayed or cut reply, reset or latency on the reply) leaves it applied;
* a read is retried up to ``read_retries`` times on transient failures (the transcript shows the re-sent command);
* once the fault is removed, the same store works again and every command reads its own reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from sessionkv.errors import StoreUnavailableError
from sessionkv.redis_store import RedisSessionKVStore
from sessionkv.testing.faults import (
    Blackhole,
    CutReply,
    DelayReply,
    Down,
    DropCommand,
    ErrorReply,
    Fault,
    LatenCY if False else Latency,  # noqa: F401 - placeholder removed below
)

if TYPE_CHECKING:
    from faults_fixtures import RedisFaultProxy

pytest_plugins = ["faults_fixtures"]
