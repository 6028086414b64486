"""The ``SessionKVStore`` contract, written once.

This module is the single statement of what every backend guarantees, and the single place where arguments are
validated: every backend calls the ``check_*`` helpers below before touching its storage, so every backend accepts and
rejects exactly the same inputs with exactly the same exceptions.

The guarantees carry stable ids. They are used in docstrings, tests, docs and the certification report; an id is never
reused for a different guarantee.

G01 Lifecycle
    ``start()`` and ``close()`` default to no-ops; ``async with store`` calls ``start()`` on entry (returning the store)
    and ``close()`` on exit, also when the body raises. ``close()`` may be called more than once.
G02 Round trip
    After ``set(key, value, ttl)``, ``get(key)`` returns the value as ``bytes``, byte for byte (empty, NUL bytes and
    large values included) until it expires, is overwritten or is deleted. A missing key reads as ``None``.
G03 Value isolation
    The store keeps its own immutable copy of a bytes-like value: mutating a ``bytearray`` or the buffer behind a
    ``memoryview`` after the call does not change what is stored; returned values are ``bytes``.
G04 Upsert
    ``set`` on a live key replaces both its value and its TTL (a shorter TTL shortens the life of the key).
G05 Conditional write
    ``set(..., only_if_exists=True)`` writes (value and TTL) only over a live key. On a missing key, or on a key whose
    TTL has run out, it does nothing: it never resurrects an expired key.
G06 Expiry boundary
    A key set at time ``t`` with ``ttl=d`` is readable while ``now < t + d`` and gone, for every operation, from
    ``now >= t + d``. Exact on a virtual clock (nanoseconds); a backend declares its granularity in
    :attr:`SessionKVStore.expiry_granularity_ns` (Redis: 1 ms, TTLs rounded *up* so a positive TTL never becomes 0).
G07 Batch write
    ``mset(items)`` applies every ``(key, value, ttl)`` item as ``set`` would, each with its own TTL; when a key appears
    twice the last item wins. It is atomic to the other operations on the same store: a concurrent reader sees either
    none or all of the batch.
G08 Batch read
    ``mget(keys)`` returns one entry per requested key, in the same order, ``None`` for a missing or expired key;
    repeated keys are answered at each position.
G09 Refresh
    ``expire(*keys, ttl=d)`` sets the deadline of every live key among ``keys`` to ``now + d`` without changing its
    value; missing or expired keys stay missing (never resurrected).
G10 Prefix listing
    ``keys(prefix)`` returns every live key that starts with ``prefix``, each exactly once, never an expired key. The
    prefix is literal: ``* ? [ ] \\`` match only themselves. ``keys("")`` lists every live key. Order is unspecified.
G11 Delete
    ``delete(keys)`` removes every listed key; missing keys are ignored; repeated keys are fine.
G12 Empty input
    ``mset([])``, ``mget([])`` (returns ``[]``), ``delete([])`` and ``expire(ttl=d)`` with no keys are no-ops.
G13 Key space
    Keys are arbitrary ``str`` that encode to UTF-8 (``/``, spaces, glob characters and non-ASCII included, the empty
    string too); two different strings are two different keys.
G14 Input validation
    ``key``: ``str`` else ``TypeError``; a key that cannot be encoded as UTF-8 (lone surrogates) is a ``ValueError``.
    ``value``: bytes-like (``bytes``, ``bytearray``, ``memoryview``) else ``TypeError`` (``str`` included: encode it).
    ``ttl``: a real number (``int`` of any size, ``float``, ``Fraction``, ``Decimal``, numpy scalars; not ``bool``) else
    ``TypeError``; finite and ``0 < ttl <= MAX_TTL`` seconds else ``ValueError`` (its message starts with
    ``ttl must be > 0``). ``keys`` arguments: a list or tuple of ``str`` (a bare ``str`` is a ``TypeError``, not a list
    of characters). A batch with any invalid item is rejected whole, before anything is written.
G15 Unavailability
    A backend that cannot be reached, or that does not answer within its deadline, raises
    :class:`~sessionkv.errors.StoreUnavailableError` with the original error as ``__cause__``, never a raw driver or
    socket error. A write that raised it may or may not have been applied.
G16 Concurrency
    Each operation is atomic with respect to the other operations on the same store, whatever the number of concurrent
    tasks issuing them.
"""

from __future__ import annotations

import abc
import math
import numbers
from collections.abc import Iterable, Sequence
from decimal import Decimal
from fractions import Fraction
from types import TracebackType
from typing import ClassVar, Final, Self

from sessionkv.clock import NS_PER_SECOND

__all__ = [
    "GUARANTEES",
    "MAX_TTL",
    "SessionKVStore",
    "check_expire_keys",
    "check_items",
    "check_key",
    "check_keys",
    "check_prefix",
    "check_seconds",
    "check_ttl_ns",
    "check_value",
    "exact_seconds",
    "ns_to_ms_ceil",
]

MAX_TTL: Final = 1_000_000_000.0
"""The largest accepted TTL in seconds (about 31.7 years): beyond it Redis and integer clocks disagree or overflow."""

_MAX_TTL_NS: Final = int(MAX_TTL) * NS_PER_SECOND

GUARANTEES: Final[dict[str, str]] = {
    "G01": "start/close are no-ops by default; async with calls start on entry and close on exit",
    "G02": "set then get returns the same bytes; a missing key reads as None",
    "G03": "the store keeps an immutable copy of a bytes-like value and returns bytes",
    "G04": "set on a live key replaces both value and TTL",
    "G05": "only_if_exists=True writes only over a live key and never resurrects an expired one",
    "G06": "a key set at t with ttl d is alive while now < t+d and gone from t+d",
    "G07": "mset applies each item as set, last duplicate wins, atomically",
    "G08": "mget keeps order, answers repeated keys, None for missing or expired",
    "G09": "expire sets now+ttl on live keys only, values unchanged, never resurrects",
    "G10": "keys(prefix) lists live keys with a literal prefix, each exactly once",
    "G11": "delete removes listed keys and ignores missing ones",
    "G12": "empty batches are no-ops",
    "G13": "keys are arbitrary UTF-8-encodable strings",
    "G14": "invalid arguments raise TypeError/ValueError and write nothing",
    "G15": "an unreachable backend raises StoreUnavailableError with the cause",
    "G16": "each operation is atomic under concurrent tasks",
}
"""One line per guarantee id; the full statements are in this module's docstring."""

_BYTES_LIKE = (bytes, bytearray, memoryview)


def check_key(key: object, *, what: str = "key") -> str:
    """Return ``key`` if it is a valid key (G13, G14), else raise ``TypeError``/``ValueError``."""
    if type(key) is not str:
        if isinstance(key, str):  # a str subclass: store it as a plain str so every backend sees the same key
            return check_key(str(key), what=what)
        raise TypeError(f"{what} must be str, got {type(key).__name__}: {key!r}")
    if not key.isascii():
        try:
            key.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"{what} {key!r} cannot be encoded as UTF-8 ({exc.reason}); use valid Unicode") from None
    return key


def check_prefix(prefix: object) -> str:
    """Return ``prefix`` if it is a valid ``keys()`` prefix: the same rules as a key (G10, G14)."""
    return check_key(prefix, what="prefix")


def check_value(value: object) -> bytes:
    """Return an immutable ``bytes`` copy of a bytes-like ``value`` (G03), else raise ``TypeError`` (G14)."""
    if type(value) is bytes:
        return value
    if isinstance(value, _BYTES_LIKE):
        return bytes(value)
    if isinstance(value, str):
        raise TypeError(f"value must be bytes-like, got str {value!r}; encode it first, e.g. value.encode()")
    raise TypeError(f"value must be bytes-like (bytes, bytearray or memoryview), got {type(value).__name__}")


def _shown(value: object) -> str:
    """``repr(value)`` cut to a readable length (``10**400`` has 401 digits)."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}...{text[-8:]} ({len(text)} characters)"


def exact_seconds(name: str, value: object) -> Fraction:
    """``value`` as an exact number of seconds; ``TypeError`` unless it is a real number (``Decimal`` included, ``bool``
    excluded); ``ValueError``, worded as every ``> 0`` check here is, when it is nan or infinite."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, Decimal)):
        raise TypeError(
            f"{name} must be a number of seconds (int, float, Fraction or Decimal), got "
            f"{type(value).__name__}: {_shown(value)}"
        )
    if isinstance(value, numbers.Rational):  # int and its subclasses, Fraction, numpy integers
        return Fraction(int(value.numerator), int(value.denominator))
    if isinstance(value, Decimal):
        if value.is_finite():
            return Fraction(value)
    else:
        as_float = float(value)  # a numbers.Real (float, numpy floats, ...) converts to float by definition
        if math.isfinite(as_float):
            return Fraction(as_float)
    raise ValueError(f"{name} must be > 0 and finite (seconds), got {_shown(value)}")


def check_seconds(name: str, value: object) -> float:
    """Validate a duration option such as ``cleanup_interval`` (``> 0``, finite, any real number) and return it as a
    ``float``; the exceptions and messages are those of a TTL (G14), with ``name`` in place of ``ttl``."""
    exact = exact_seconds(name, value)
    if exact <= 0:
        raise ValueError(f"{name} must be > 0 (seconds), got {_shown(value)}")
    if exact > MAX_TTL:
        raise ValueError(f"{name} must be > 0 and at most {MAX_TTL:.0f} seconds, got {_shown(value)}")
    return float(exact)


def check_ttl_ns(ttl: object) -> int:
    """Validate a TTL in seconds (G14) and return it in integer nanoseconds, never less than 1.

    Accepts every real number but ``bool``: ``int`` (huge ones too), ``float``, ``Fraction``, ``Decimal`` and numpy
    scalars; anything else is a ``TypeError``. Out of range (``<= 0``, ``> MAX_TTL``, nan, infinite) is a ``ValueError``
    whose message starts ``ttl must be > 0``, never an ``OverflowError``. Converted exactly, then rounded to the nearest
    nanosecond, so that decimal TTLs such as ``0.3`` are exactly 300 ms, not one float ulp more.
    """
    if type(ttl) is float and 0.0 < ttl <= MAX_TTL:  # the common case, kept cheap: set() is a hot path
        return round(ttl * NS_PER_SECOND) or 1
    if type(ttl) is int and 0 < ttl <= MAX_TTL:
        return ttl * NS_PER_SECOND
    exact = exact_seconds("ttl", ttl)
    if exact <= 0:
        raise ValueError(f"ttl must be > 0 seconds, got {_shown(ttl)}; to remove a key use delete()")
    if exact > MAX_TTL:
        raise ValueError(f"ttl must be > 0 and at most {MAX_TTL:.0f} seconds (about 31.7 years), got {_shown(ttl)}")
    return round(exact * NS_PER_SECOND) or 1


def ns_to_ms_ceil(ns: int) -> int:
    """Nanoseconds to whole milliseconds, rounded up: a positive TTL never becomes 0 ms (G06)."""
    return -(-ns // 1_000_000)


def check_keys(keys: object, *, what: str = "keys") -> list[str]:
    """Validate a list or tuple of keys (G14). A bare ``str`` is rejected rather than read as characters."""
    if isinstance(keys, (str, bytes, bytearray)):
        raise TypeError(f"{what} must be a list of str, got a single {type(keys).__name__} {keys!r}; wrap it: [key]")
    if not isinstance(keys, (list, tuple)):
        if isinstance(keys, Iterable):
            keys = list(keys)
        else:
            raise TypeError(f"{what} must be a list of str, got {type(keys).__name__}")
    for key in keys:
        if type(key) is not str or not key.isascii():
            # the slow path names the offending position; the fast path above costs one check per key
            return [check_key(key, what=f"{what}[{index}]") for index, key in enumerate(keys)]
    return keys if type(keys) is list else list(keys)


def check_expire_keys(keys: tuple[object, ...]) -> list[str]:
    """Validate the positional keys of ``expire(*keys, ttl=...)`` (G14), catching ``expire([a, b], ttl=...)``."""
    for index, key in enumerate(keys):
        if isinstance(key, (list, tuple, set)):
            raise TypeError(
                f"expire() takes keys as separate arguments, got a {type(key).__name__} at position {index}; "
                "call expire(*keys, ttl=...)"
            )
    return [check_key(key, what=f"keys[{index}]") for index, key in enumerate(keys)]


def check_items(items: object) -> list[tuple[str, bytes, int]]:
    """Validate ``mset`` items (G14) and return ``(key, value_bytes, ttl_ns)`` triples.

    Every item is checked before anything is returned, so a backend that writes only after this call never writes
    part of an invalid batch.
    """
    if isinstance(items, (str, bytes, bytearray)) or not isinstance(items, Iterable):
        raise TypeError(f"items must be a list of (key, value, ttl) tuples, got {type(items).__name__}")
    checked: list[tuple[str, bytes, int]] = []
    for index, item in enumerate(items):
        if not isinstance(item, (tuple, list)) or len(item) != 3:
            raise TypeError(f"items[{index}] must be a (key, value, ttl) tuple, got {item!r}")
        key, value, ttl = item
        checked.append((check_key(key, what=f"items[{index}] key"), check_value(value), check_ttl_ns(ttl)))
    return checked


class SessionKVStore(abc.ABC):
    """Abstract TTL key-value store: bytes values under string keys, each with its own expiry.

    Values are annotated ``bytes`` as in the vision-agents reference, so existing subclasses type-check unchanged;
    at run time every backend also accepts ``bytearray`` and ``memoryview`` and stores an immutable copy (G03).

    The guarantees G01 to G16 in this module's docstring hold for every implementation. Subclasses implement the seven
    abstract methods and validate their arguments with the ``check_*`` helpers of this module.
    """

    expiry_granularity_ns: ClassVar[int] = 1_000_000
    """The resolution of this backend's expiry (G06) in nanoseconds; certification allows exactly this much."""

    async def start(self) -> None:  # noqa: B027 - a deliberate no-op default (G01)
        """Initialise the backend (open connections, start background tasks). No-op by default."""

    async def close(self) -> None:  # noqa: B027 - a deliberate no-op default (G01)
        """Release what :meth:`start` acquired. No-op by default; safe to call more than once."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @abc.abstractmethod
    async def set(self, key: str, value: bytes, ttl: float, *, only_if_exists: bool = False) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds, replacing value and TTL (G02-G06, G14)."""

    @abc.abstractmethod
    async def mset(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        """Store several ``(key, value, ttl)`` items atomically, each as :meth:`set` would (G07, G12, G14)."""

    @abc.abstractmethod
    async def get(self, key: str) -> bytes | None:
        """Return the live value under ``key``, or ``None`` (G02, G06)."""

    @abc.abstractmethod
    async def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        """Return the live values under ``keys`` in order, ``None`` where missing or expired (G08, G12)."""

    @abc.abstractmethod
    async def expire(self, *keys: str, ttl: float) -> None:
        """Set the TTL of every live key among ``keys`` to ``ttl`` seconds from now (G09, G12)."""

    @abc.abstractmethod
    async def keys(self, prefix: str) -> list[str]:
        """Return every live key starting with the literal ``prefix``, each once (G10)."""

    @abc.abstractmethod
    async def delete(self, keys: Sequence[str]) -> None:
        """Remove every key in ``keys``; missing keys are ignored (G11, G12)."""
