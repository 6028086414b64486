"""Everything a test or a simulation needs, usable without pytest.

Nothing in :mod:`sessionkv` imports this package: stores never depend on testing code. Real servers and virtual time
load with the core install; the fault proxy (which parses RESP with hiredis) and certification (which uses hypothesis)
are imported on first use and need the ``testing`` extra.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sessionkv.testing.servers import (
    RedisServer,
    RedisServerError,
    RedisServerNotFoundError,
    bundled_valkey_server,
    find_redis_server,
    server_version,
)
from sessionkv.testing.virtual_time import (
    DEFAULT_EPOCH,
    DeadlockError,
    EndOfTimeError,
    RealIOError,
    VirtualClock,
    VirtualClockSessionKVStore,
    VirtualTimeError,
    VirtualTimeLoop,
    run,
    virtual_fakeredis_store,
)

if TYPE_CHECKING:
    from sessionkv.testing.certify import Report, TargetError, certify
    from sessionkv.testing.certify.suite import SessionKVStoreContract
    from sessionkv.testing.faults import FAULTS, FaultHandle, RedisFaultProxy, Transcript, parse_fault_spec

_LAZY = {
    "RedisFaultProxy": "sessionkv.testing.faults",
    "FaultHandle": "sessionkv.testing.faults",
    "FAULTS": "sessionkv.testing.faults",
    "Transcript": "sessionkv.testing.faults",
    "parse_fault_spec": "sessionkv.testing.faults",
    "certify": "sessionkv.testing.certify",
    "Report": "sessionkv.testing.certify",
    "TargetError": "sessionkv.testing.certify",
    "SessionKVStoreContract": "sessionkv.testing.certify.suite",
}

__all__ = [
    "DEFAULT_EPOCH",
    "FAULTS",
    "DeadlockError",
    "EndOfTimeError",
    "FaultHandle",
    "RealIOError",
    "RedisFaultProxy",
    "RedisServer",
    "RedisServerError",
    "RedisServerNotFoundError",
    "Report",
    "SessionKVStoreContract",
    "TargetError",
    "Transcript",
    "VirtualClock",
    "VirtualClockSessionKVStore",
    "VirtualTimeError",
    "VirtualTimeLoop",
    "bundled_valkey_server",
    "certify",
    "find_redis_server",
    "parse_fault_spec",
    "run",
    "server_version",
    "virtual_fakeredis_store",
]


TESTING_EXTRA_HINT = "install the testing extra: pip install 'sessionkv[testing]'"
"""What to do when a package of the ``testing`` extra is missing (the same words as the ``sessionkv`` CLI)."""


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sessionkv.testing' has no attribute {name!r}")
    try:
        loaded = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] == "sessionkv":
            raise
        raise ModuleNotFoundError(
            f"sessionkv.testing.{name} needs {exc.name!r}, which is not installed: {TESTING_EXTRA_HINT}", name=exc.name
        ) from exc
    return getattr(loaded, name)
