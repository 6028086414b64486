"""vision-agents' own stores as certification targets (``sessionkv certify vision_agents_stores:in_memory``).

Installing vision-agents pulls in a large media stack, so by default only its ``session_registry`` modules are loaded,
straight from the wheel, without running the package's ``__init__`` files::

    pip download --no-deps vision-agents==0.6.9 -d /tmp/va
    VISION_AGENTS_WHEEL=/tmp/va/vision_agents-0.6.9-py3-none-any.whl \\
        sessionkv certify vision_agents_stores:in_memory         # run from tests/certify

The one import those modules need from elsewhere in vision-agents, ``core.utils.utils.cancel_and_wait``, is replaced by
an equivalent (cancel the tasks, wait for them, swallow their cancellation). If vision-agents is installed for real,
it is used as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import itertools
import os
import sys
import types
from typing import Any

from sessionkv.testing.certify import backends

__all__ = ["in_memory", "redis"]

_PACKAGES = ("", "core", "core/utils", "core/agents", "core/agents/session_registry")
_PREFIXES = itertools.count()


async def _cancel_and_wait(*futures: asyncio.Future[Any]) -> None:
    for future in futures:
        if not future.done():
            future.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(*futures, return_exceptions=True)


def _session_registry(module: str) -> Any:
    full = f"vision_agents.core.agents.session_registry.{module}"
    with contextlib.suppress(ImportError):
        return importlib.import_module(full)  # a real installation
    wheel = os.environ.get("VISION_AGENTS_WHEEL")
    if not wheel or not os.path.exists(wheel):
        raise RuntimeError(
            "set VISION_AGENTS_WHEEL to a vision-agents wheel (pip download --no-deps vision-agents -d DIR) "
            "or its unpacked directory"
        )
    for sub in _PACKAGES:
        name = "vision_agents" + ("." + sub.replace("/", ".") if sub else "")
        if name not in sys.modules:
            package = types.ModuleType(name)
            package.__path__ = [
                os.path.join(wheel, "vision_agents", sub) if sub else os.path.join(wheel, "vision_agents")
            ]
            sys.modules[name] = package
    if "vision_agents.core.utils.utils" not in sys.modules:
        utils = types.ModuleType("vision_agents.core.utils.utils")
        utils.cancel_and_wait = _cancel_and_wait  # type: ignore[attr-defined]
        sys.modules["vision_agents.core.utils.utils"] = utils
    if wheel not in sys.path:
        sys.path.append(wheel)
    return importlib.import_module(full)


def in_memory() -> Any:
    """vision-agents' ``InMemorySessionKVStore()`` (reads ``time.monotonic()``: certified in real time)."""
    return _session_registry("in_memory_store").InMemorySessionKVStore()


def redis() -> Any:
    """vision-agents' ``RedisSessionKVStore(url=...)`` on a real redis-server, with a fresh key prefix."""
    url = backends._server_url()
    return _session_registry("redis_store").RedisSessionKVStore(
        url=url, key_prefix=f"va:{os.getpid()}:{next(_PREFIXES)}:"
    )


def _unreachable_redis() -> Any:
    return _session_registry("redis_store").RedisSessionKVStore(url=backends._closed_port_url(), key_prefix="va:")


redis.unavailable = _unreachable_redis  # type: ignore[attr-defined]
