"""Everything a test or a simulation needs, usable without pytest.

Nothing in :mod:`sessionkv` imports this package: stores never depend on testing code.
"""

from sessionkv.testing.servers import RedisServer, RedisServerError, RedisServerNotFoundError, find_redis_server

__all__ = ["RedisServer", "RedisServerError", "RedisServerNotFoundError", "find_redis_server"]
