"""A gallery of deliberately broken stores: each breaks exactly ONE guarantee, subtly, and certification must say which.

Every class subclasses :class:`InMemorySessionKVStore` (so everything else is correct and virtual time applies) and is
listed in :data:`GALLERY` with the guarantee id that must catch it. Each is also a CLI target, e.g.
``sessionkv certify certify_gallery:OnlyIfExistsResurrects`` (run from ``tests/certify``).

:class:`LenientButCorrect` is the opposite: a user's own straightforward store that keeps data correctly but is lenient
on the finer G14 points. It must certify (exit 0) with strictness warnings, and fail only under ``--strict``.
"""

from __future__ import annotations

import asyncio
import fnmatch
import math
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Final, Self

from sessionkv import InMemorySessionKVStore
from sessionkv.clock import SYSTEM_CLOCK, Clock
from sessionkv.store import check_items, check_key, check_keys, check_prefix, check_ttl_ns, check_value


class OnlyIfExistsResurrects(InMemorySessionKVStore):
    """only_if_exists tests "stored", not "live": an expired but not yet reclaimed key is written again."""

    async def set(self, key: str, value: bytes, ttl: float, *, only_if_exists: bool = False) -> None:
        if only_if_exists and check_key(key) in self._entries:
            await super().set(key, value, ttl)
            return
        await super().set(key, value, ttl, only_if_exists=only_if_exists)


class GlobPrefix(InMemorySessionKVStore):
    """keys() matches ``prefix + '*'`` as a glob, as a naive SCAN MATCH would."""

    async def keys(self, prefix: str) -> list[str]:
        pattern = check_prefix(prefix) + "*"
        return [k for k in await super().keys("") if fnmatch.fnmatchcase(k, pattern)]


class OffByOneBoundary(InMemorySessionKVStore):
    """Deadlines are one nanosecond late: the key is still readable at exactly t + ttl."""

    def _put(self, key: str, data: bytes, deadline: int) -> None:
        super()._put(key, data, deadline + 1)


class NonAtomicMset(InMemorySessionKVStore):
    """mset yields to the event loop between items, so a concurrent reader sees half a batch."""

    async def mset(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        checked = check_items(items)
        for key, data, ttl_ns in checked:
            self._put(key, data, self._now_ns() + ttl_ns)
            await asyncio.sleep(0)


class MgetDropsRepeatedKeys(InMemorySessionKVStore):
    """mget answers each distinct key once, so a repeated key shortens the answer."""

    async def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        return await super().mget(list(dict.fromkeys(check_keys(keys))))


class ReturnsBytearray(InMemorySessionKVStore):
    """get returns a mutable bytearray instead of bytes."""

    async def get(self, key: str) -> bytes | None:
        value = await super().get(key)
        return None if value is None else bytearray(value)  # type: ignore[return-value]


class KeepsCallersBuffer(InMemorySessionKVStore):
    """set keeps a reference to the caller's bytearray instead of a copy (reads copy it out, so types look right)."""

    async def set(self, key: str, value: bytes, ttl: float, *, only_if_exists: bool = False) -> None:
        check_value(value)
        await super().set(key, b"", ttl, only_if_exists=only_if_exists)
        if key in self._entries:
            self._entries[key] = (value, self._entries[key][1])  # the caller's object itself

    async def get(self, key: str) -> bytes | None:
        value = await super().get(key)
        return None if value is None else bytes(value)

    async def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        return [None if v is None else bytes(v) for v in await super().mget(keys)]


class ExpireResurrects(InMemorySessionKVStore):
    """expire refreshes any stored key, also one whose TTL has already run out."""

    async def expire(self, *keys: str, ttl: float) -> None:
        ttl_ns = check_ttl_ns(ttl)
        for key in keys:
            entry = self._entries.get(check_key(key))
            if entry is not None:
                self._put(key, entry[0], self._now_ns() + ttl_ns)


class DeleteIteratesCharacters(InMemorySessionKVStore):
    """delete("abc") deletes "a", "b" and "c" instead of refusing a bare string."""

    async def delete(self, keys: Sequence[str]) -> None:
        await super().delete(list(keys))


class AcceptsZeroTtl(InMemorySessionKVStore):
    """ttl=0 is accepted (as "expire at once") instead of being a ValueError."""

    async def set(self, key: str, value: bytes, ttl: float, *, only_if_exists: bool = False) -> None:
        await super().set(
            key, value, 1e-9 if ttl == 0 and not isinstance(ttl, bool) else ttl, only_if_exists=only_if_exists
        )


class AcceptsNan(InMemorySessionKVStore):
    """ttl=nan is accepted and the key never expires."""

    async def set(self, key: str, value: bytes, ttl: float, *, only_if_exists: bool = False) -> None:
        nan = isinstance(ttl, float) and math.isnan(ttl)
        await super().set(key, value, 1e6 if nan else ttl, only_if_exists=only_if_exists)


class SetKeepsOldTtl(InMemorySessionKVStore):
    """set over a live key replaces the value but keeps the old deadline."""

    async def set(self, key: str, value: bytes, ttl: float, *, only_if_exists: bool = False) -> None:
        key = check_key(key)
        data, ttl_ns = check_value(value), check_ttl_ns(ttl)
        now = self._now_ns()
        if self._live(key, now):
            self._put(key, data, self._entries[key][1])
        elif not only_if_exists:
            self._put(key, data, now + ttl_ns)


class KeysListsExpired(InMemorySessionKVStore):
    """keys() lists expired keys that have not been swept yet."""

    async def keys(self, prefix: str) -> list[str]:
        prefix = check_prefix(prefix)
        return sorted(k for k in self._entries if k.startswith(prefix))


class KeysRepeats(InMemorySessionKVStore):
    """keys() lists a key twice when more than three match (as a SCAN during a rehash can)."""

    async def keys(self, prefix: str) -> list[str]:
        found = await super().keys(prefix)
        return [*found, found[0]] if len(found) > 3 else found


class MsetFirstDuplicateWins(InMemorySessionKVStore):
    """When mset names a key twice, the first item wins."""

    async def mset(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        checked = check_items(items)
        now = self._now_ns()
        seen: set[str] = set()
        for key, data, ttl_ns in checked:
            if key not in seen:
                seen.add(key)
                self._put(key, data, now + ttl_ns)


class EmptyDeleteRaises(InMemorySessionKVStore):
    """delete([]) raises instead of doing nothing."""

    async def delete(self, keys: Sequence[str]) -> None:
        if not check_keys(keys):
            raise ValueError("nothing to delete")
        await super().delete(keys)


class UnicodeKeysCollide(InMemorySessionKVStore):
    """Keys are stored ASCII-folded, so 'é/1' and '?/1' are one key."""

    async def set(self, key: str, value: bytes, ttl: float, *, only_if_exists: bool = False) -> None:
        await super().set(_fold(check_key(key)), value, ttl, only_if_exists=only_if_exists)

    async def get(self, key: str) -> bytes | None:
        return await super().get(_fold(check_key(key)))


def _fold(key: str) -> str:
    return key.encode("ascii", "replace").decode()


GALLERY: Final[dict[str, tuple[type[InMemorySessionKVStore], str]]] = {
    cls.__name__: (cls, guarantee)
    for cls, guarantee in [
        (OnlyIfExistsResurrects, "G05"),
        (GlobPrefix, "G10"),
        (OffByOneBoundary, "G06"),
        (NonAtomicMset, "G07"),
        (MgetDropsRepeatedKeys, "G08"),
        (ReturnsBytearray, "G02"),
        (KeepsCallersBuffer, "G03"),
        (ExpireResurrects, "G09"),
        (DeleteIteratesCharacters, "G14"),
        (AcceptsZeroTtl, "G14"),
        (AcceptsNan, "G14"),
        (SetKeepsOldTtl, "G04"),
        (KeysListsExpired, "G10"),
        (KeysRepeats, "G10"),
        (MsetFirstDuplicateWins, "G07"),
        (EmptyDeleteRaises, "G12"),
        (UnicodeKeysCollide, "G13"),
    ]
}
"""Broken store class name -> (class, the guarantee id whose checks must fail)."""


class LenientButCorrect:
    """A store written from scratch, as a user would: correct data, exact expiry on its clock, ``ttl`` checked to be
    a finite number > 0 and values to be bytes-like (stored as a ``bytes`` copy), everything validated before anything
    is written. Lenient on the finer points only: a TTL above ``MAX_TTL`` or a ``bool`` TTL is accepted, a ``Fraction``
    TTL refused, keys are not checked (non-``str`` and lone-surrogate keys are accepted), a bare ``str`` given to
    ``delete``/``mget`` is read as one key, and a 2-tuple ``mset`` item raises ``ValueError`` (from unpacking)."""

    expiry_granularity_ns = 1

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock = SYSTEM_CLOCK if clock is None else clock
        self._data: dict[Any, tuple[bytes, int]] = {}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _deadline(self, ttl: object) -> int:
        if not isinstance(ttl, (int, float)):
            raise TypeError(f"ttl must be int or float, got {type(ttl).__name__}")
        if not math.isfinite(ttl) or ttl <= 0:
            raise ValueError(f"ttl must be finite and > 0, got {ttl!r}")
        return self._clock.now_ns() + max(1, round(ttl * 1e9))

    @staticmethod
    def _bytes(value: object) -> bytes:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(f"value must be bytes, got {type(value).__name__}")
        return bytes(value)

    def _live(self, key: Any) -> bytes | None:
        entry = self._data.get(key)
        return entry[0] if entry is not None and entry[1] > self._clock.now_ns() else None

    async def set(self, key: Any, value: Any, ttl: Any, *, only_if_exists: bool = False) -> None:
        data, deadline = self._bytes(value), self._deadline(ttl)
        if only_if_exists and self._live(key) is None:
            return
        self._data[key] = (data, deadline)

    async def mset(self, items: Any) -> None:
        checked = [(key, self._bytes(value), self._deadline(ttl)) for key, value, ttl in items]
        for key, data, deadline in checked:
            self._data[key] = (data, deadline)

    async def get(self, key: Any) -> bytes | None:
        return self._live(key)

    async def mget(self, keys: Any) -> list[bytes | None]:
        return [self._live(key) for key in ([keys] if isinstance(keys, str) else keys)]

    async def expire(self, *keys: Any, ttl: Any) -> None:
        deadline = self._deadline(ttl)
        for key in keys:
            data = self._live(key)
            if data is not None:
                self._data[key] = (data, deadline)

    async def keys(self, prefix: Any) -> list[Any]:
        now = self._clock.now_ns()
        return [k for k, (_, deadline) in self._data.items() if deadline > now and k.startswith(prefix)]

    async def delete(self, keys: Any) -> None:
        for key in [keys] if isinstance(keys, str) else keys:
            self._data.pop(key, None)
