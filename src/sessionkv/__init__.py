"""sessionkv: TTL key-value stores for a multi-node session registry.

The public API is re-exported here; the contract every store honours is stated in :mod:`sessionkv.store`.
"""

from sessionkv.clock import Clock, SystemClock
from sessionkv.errors import CorruptRecordError, SessionKVError, StoreClosedError, StoreUnavailableError
from sessionkv.memory import InMemorySessionKVStore
from sessionkv.redis_cluster import RedisClusterSessionKVStore
from sessionkv.redis_sentinel import RedisSentinelSessionKVStore
from sessionkv.redis_store import RedisSessionKVStore
from sessionkv.registry import SessionInfo, SessionMetrics, SessionRegistry
from sessionkv.store import GUARANTEES, MAX_TTL, SessionKVStore

__all__ = [
    "GUARANTEES",
    "MAX_TTL",
    "Clock",
    "CorruptRecordError",
    "InMemorySessionKVStore",
    "RedisClusterSessionKVStore",
    "RedisSentinelSessionKVStore",
    "RedisSessionKVStore",
    "SessionInfo",
    "SessionKVError",
    "SessionKVStore",
    "SessionMetrics",
    "SessionRegistry",
    "StoreClosedError",
    "StoreUnavailableError",
    "SystemClock",
]

__version__ = "0.1.0"
