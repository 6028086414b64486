"""Errors raised by sessionkv.

Every error sessionkv raises on purpose derives from :class:`SessionKVError`. Argument errors are the built-in
``TypeError`` and ``ValueError`` so that they read as what they are; everything about a backend being unusable is one
class, :class:`StoreUnavailableError`, whatever the backend.
"""

from __future__ import annotations

__all__ = ["CorruptRecordError", "SessionKVError", "StoreClosedError", "StoreUnavailableError"]


class SessionKVError(Exception):
    """Base class of every error that sessionkv raises on its own account."""


class StoreUnavailableError(SessionKVError):
    """The backend could not be reached, or did not answer within the operation's deadline.

    Raised by every backend for the same situations (connection refused or lost, timeout, server busy or loading).
    The original exception is kept as ``__cause__`` and as :attr:`cause`. When it is raised by a write, the write may or
    may not have been applied: the caller cannot tell, and must treat the state of the written keys as unknown.
    """

    def __init__(self, message: str, *, cause: BaseException | None = None, operation: str | None = None) -> None:
        super().__init__(message)
        self.cause = cause
        self.operation = operation


class CorruptRecordError(SessionKVError):
    """A stored record could not be decoded (for instance bytes that are not a ``SessionInfo`` JSON document).

    ``key`` names the offending key so that an operator can inspect or delete it.
    """

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"record at key {key!r} is corrupt: {reason}")
        self.key = key
        self.reason = reason


class StoreClosedError(SessionKVError):
    """An operation was called on a store after :meth:`~sessionkv.store.SessionKVStore.close` released what it needs.

    A programming error, not an outage, so it is not a :class:`StoreUnavailableError`: retrying cannot help; create a
    new store. Raised by ``RedisSessionKVStore`` built from a ``url`` (its ``close()`` closes the client it created)
    and by ``RedisClusterSessionKVStore`` likewise.
    Stores whose ``close()`` releases nothing the operations need (the in-memory store, a ``RedisSessionKVStore`` over
    a client you own) keep working after ``close()``. ``operation`` names the call that was refused.
    """

    def __init__(self, message: str, *, operation: str | None = None) -> None:
        super().__init__(message)
        self.operation = operation
