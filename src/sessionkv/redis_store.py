"""Placeholder, replaced by the Redis store implementation."""

from sessionkv.store import SessionKVStore


class RedisSessionKVStore(SessionKVStore):  # type: ignore[misc]
    pass
