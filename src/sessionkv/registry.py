"""``SessionRegistry`` and ``SessionInfo``: who runs which session, shared through a :class:`SessionKVStore`.

The registry is a stateless facade: it owns the key scheme, the JSON encoding and the TTLs, and keeps no session state
of its own. The node that runs a session drives it (register, heartbeat with :meth:`SessionRegistry.update_metrics`,
poll :meth:`SessionRegistry.get_close_requests`, remove); any node may read sessions and request a close.

Wire format, shared with vision-agents nodes on the same store (``vision_agents.core.agents.session_registry``):

* ``sessions/{call_id}/{session_id}`` holds the UTF-8 JSON of a :class:`SessionInfo`, written with ``json.dumps``
  defaults: ``{"session_id": "s", "call_id": "c", "node_id": "n", "started_at": 1700000000.5,
  "metrics_updated_at": 1700000000.5, "metrics": {}}``. Timestamps are float epoch seconds; ``metrics`` is an object
  of ``str`` to number or ``null``.
* ``close_requests/{call_id}/{session_id}`` holds ``b""``: its presence is the close request.

Both kinds of record expire ``ttl`` seconds after their last write unless rewritten.

Ids: ``call_id`` and ``session_id`` are any non-empty ``str`` (unicode, spaces and glob characters included). Inside a
key, ``%`` and ``/`` of the *call id* are percent-encoded (``%25``, ``%2F``) so that a call id can never swallow part of
another call's key space: without it call ``"a"`` would list the sessions of call ``"a/b"``, and session ``"b/s"`` of
call ``"a"`` would share a key with session ``"s"`` of call ``"a/b"``. Call ids without ``%`` and ``/`` produce exactly
vision-agents' keys; a call id containing either is stored where a vision-agents node (which does not encode, and so
cannot keep such calls apart itself) will not look. Session ids are never encoded: the call segment has no ``/``, so
the key stays unambiguous. Glob characters need no care: ``keys()`` prefixes are literal (G10).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import uuid
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Final, Self, TypeAlias

from sessionkv.clock import Clock, current_clock
from sessionkv.errors import CorruptRecordError
from sessionkv.memory import InMemorySessionKVStore
from sessionkv.store import SessionKVStore, check_key, check_ttl_ns

__all__ = ["CLOSE_REQUESTS_PREFIX", "SESSIONS_PREFIX", "MetricValue", "SessionInfo", "SessionRegistry"]

logger = logging.getLogger(__name__)

SESSIONS_PREFIX: Final = "sessions/"
"""Key prefix of session records (shared with vision-agents)."""

CLOSE_REQUESTS_PREFIX: Final = "close_requests/"
"""Key prefix of close flags (shared with vision-agents)."""

MetricValue: TypeAlias = int | float | None
"""A metric value: a JSON number or ``null``, as vision-agents types ``SessionInfo.metrics``."""

_STORE_METHODS: Final = ("start", "close", "set", "mset", "get", "mget", "expire", "keys", "delete")

_REQUIRED_FIELDS: Final = ("session_id", "call_id", "node_id", "started_at", "metrics_updated_at")


@dataclasses.dataclass(frozen=True, slots=True)
class SessionInfo:
    """A snapshot of one session record, as read from (or about to be written to) the store.

    Frozen because it is a copy, not a handle: assigning to a field would change nothing in the store, so the
    registry's methods are the only way to change a record. ``metrics`` is a fresh ``dict`` owned by the caller.

    Field names, order and JSON types are those of vision-agents' ``SessionInfo``: ``started_at`` and
    ``metrics_updated_at`` are epoch seconds (``float``) from the writing node's clock, so comparing them across
    nodes is only as good as the nodes' clock sync.
    """

    session_id: str
    call_id: str
    node_id: str
    started_at: float
    metrics_updated_at: float
    metrics: dict[str, MetricValue] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of this record: the six fields in declaration order, ``metrics`` copied."""
        return {
            "session_id": self.session_id,
            "call_id": self.call_id,
            "node_id": self.node_id,
            "started_at": self.started_at,
            "metrics_updated_at": self.metrics_updated_at,
            "metrics": dict(self.metrics),
        }

    def to_json(self) -> bytes:
        """The stored bytes: ``json.dumps`` with default separators and ASCII escapes, as vision-agents writes them."""
        return json.dumps(self.to_dict()).encode()

    @classmethod
    def from_json(cls, raw: bytes | str, *, key: str = "<json>") -> SessionInfo:
        """Decode a stored record; unknown fields are ignored (newer writers may add some).

        ``metrics`` may be absent (vision-agents' dataclass defaults it to ``{}``); every other field is required.
        Raises :class:`CorruptRecordError` naming ``key`` when the bytes are not a JSON object or a field is missing
        or has the wrong type (ids: ``str``; timestamps: finite numbers; ``metrics``: object of number or ``null``).
        """
        return cls._from_object(_load_object(raw, key), key)

    @classmethod
    def _from_object(cls, data: dict[str, Any], key: str) -> SessionInfo:
        missing = [name for name in _REQUIRED_FIELDS if name not in data]
        if missing:
            raise CorruptRecordError(key, f"missing field(s) {', '.join(missing)}")
        ids = {name: data[name] for name in ("session_id", "call_id", "node_id")}
        for name, value in ids.items():
            if type(value) is not str:
                raise CorruptRecordError(key, f"field {name} must be a string, got {value!r}")
        stamps = {name: data[name] for name in ("started_at", "metrics_updated_at")}
        for name, value in stamps.items():
            if type(value) not in (int, float) or not math.isfinite(value):
                raise CorruptRecordError(key, f"field {name} must be a finite number of epoch seconds, got {value!r}")
        metrics = data.get("metrics", {})
        if type(metrics) is not dict:
            raise CorruptRecordError(key, f"field metrics must be an object, got {metrics!r}")
        for name, value in metrics.items():
            if not _is_metric_value(value):
                raise CorruptRecordError(key, f"metric {name!r} must be a finite number or null, got {value!r}")
        return cls(
            session_id=ids["session_id"],
            call_id=ids["call_id"],
            node_id=ids["node_id"],
            started_at=float(stamps["started_at"]),
            metrics_updated_at=float(stamps["metrics_updated_at"]),
            metrics=dict(metrics),
        )


class SessionRegistry:
    """Register, heartbeat, list and close sessions in a store shared by every node.

    ``store`` defaults to a new :class:`InMemorySessionKVStore` (single process only) driven by ``clock``.
    Ownership: the registry starts and closes the store only if it created it (:attr:`owns_store`); a store passed
    in belongs to the caller, who starts and closes it, and :meth:`start`/:meth:`stop` leave it alone, so several
    registries can share one store.

    ``node_id`` names this node in the records it writes; default: a fresh ``str(uuid4())``. ``ttl`` (seconds,
    validated like every store TTL: finite, ``> 0``) is the lifetime of records and close flags after each write: a
    node must heartbeat more often than that. ``clock`` supplies the epoch timestamps (``clock.time()``) and, for the
    default store, expiry; default: the store's own ``clock`` when it has one, else
    :func:`sessionkv.clock.current_clock` (the system clock, or the virtual clock inside a virtual-time run).

    Every method validates its arguments before touching the store. Store failures propagate unchanged
    (:class:`~sessionkv.errors.StoreUnavailableError`).
    """

    def __init__(
        self,
        store: SessionKVStore | None = None,
        *,
        node_id: str | None = None,
        ttl: float = 30.0,
        clock: Clock | None = None,
    ) -> None:
        if store is not None and not isinstance(store, SessionKVStore):
            # duck typing on purpose: any object with the store API works (vision-agents' own stores included)
            missing = [name for name in _STORE_METHODS if not callable(getattr(store, name, None))]
            if missing:
                raise TypeError(
                    f"store must have the SessionKVStore API, but {type(store).__name__} lacks {', '.join(missing)}"
                )
        if node_id is not None:
            node_id = _check_id(node_id, "node_id")
        check_ttl_ns(ttl)
        if clock is None:
            # a store that keeps time (the in-memory stores) lends its clock, so timestamps and expiry agree
            store_clock = getattr(store, "clock", None)
            clock = store_clock if isinstance(store_clock, Clock) else current_clock()
        self.clock: Clock = clock
        self.owns_store: bool = store is None
        self.store: SessionKVStore = InMemorySessionKVStore(clock=self.clock) if store is None else store
        self.node_id: str = str(uuid.uuid4()) if node_id is None else node_id
        self.ttl: float = float(ttl)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(store={self.store!r}, node_id={self.node_id!r}, ttl={self.ttl!r}, "
            f"owns_store={self.owns_store!r})"
        )

    # -- lifecycle -------------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the store if this registry created it; otherwise do nothing (the caller owns it)."""
        if self.owns_store:
            await self.store.start()

    async def stop(self) -> None:
        """Close the store if this registry created it; otherwise do nothing. Safe to call more than once."""
        if self.owns_store:
            await self.store.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- writes ----------------------------------------------------------------------------------------------------

    async def register(self, call_id: str, session_id: str) -> SessionInfo:
        """Write the record of a new session run by this node and return it.

        ``started_at`` and ``metrics_updated_at`` are both ``clock.time()``, ``metrics`` is ``{}``. Overwrites any
        record already under the key (the caller guarantees the session id is new). Lives ``ttl`` seconds unless
        refreshed by :meth:`update_metrics` or :meth:`refresh`.
        """
        key = _session_key(_check_id(call_id, "call_id"), _check_id(session_id, "session_id"))
        now = float(self.clock.time())
        info = SessionInfo(
            session_id=session_id,
            call_id=call_id,
            node_id=self.node_id,
            started_at=now,
            metrics_updated_at=now,
        )
        await self.store.set(key, info.to_json(), self.ttl)
        return info

    async def remove(self, call_id: str, session_id: str) -> None:
        """Delete the session record and its close flag (one ``delete``); missing keys are fine."""
        call_id = _check_id(call_id, "call_id")
        session_id = _check_id(session_id, "session_id")
        await self.store.delete([_session_key(call_id, session_id), _close_key(call_id, session_id)])

    async def update_metrics(self, call_id: str, session_id: str, metrics: Mapping[str, MetricValue]) -> bool:
        """The heartbeat: rewrite the record with ``metrics``, ``metrics_updated_at = clock.time()`` and a fresh TTL.

        Reads the record first (one ``get``) to keep its ``started_at``, ``node_id`` and any fields unknown to us,
        then writes with ``only_if_exists=True`` (one ``set``). So a session that was removed or has expired is never
        resurrected, neither when it is gone at the read nor when it goes between the read and the write.

        Returns ``False`` when there was no record to update (the session is gone: stop heartbeating it), ``True``
        when the record was read and the conditional write issued; the write may still have been skipped if the
        record vanished in between. Races of the read-then-write: a record removed and re-registered in between is
        overwritten with the old ``started_at``/``node_id``; two concurrent heartbeats of one session: the last
        write wins. A record that names another session (see :meth:`get`) counts as no record. Raises
        :class:`CorruptRecordError` if the stored record cannot be decoded (it is left untouched).

        ``metrics`` maps ``str`` to ``int``, ``float`` (finite) or ``None``; anything else raises ``TypeError`` or
        ``ValueError`` naming the offending entry, before anything is read or written.
        """
        call_id = _check_id(call_id, "call_id")
        session_id = _check_id(session_id, "session_id")
        checked = _check_metrics(metrics)
        key = _session_key(call_id, session_id)
        raw = await self.store.get(key)
        if raw is None:
            return False
        data = _load_object(raw, key)
        info = SessionInfo._from_object(data, key)
        if not _names(info, call_id, session_id, key):
            return False
        # Rewrite the stored object rather than our own SessionInfo so that fields added by newer writers survive.
        data["metrics"] = checked
        data["metrics_updated_at"] = float(self.clock.time())
        await self.store.set(key, json.dumps(data).encode(), self.ttl, only_if_exists=True)
        return True

    async def refresh(self, sessions: Mapping[str, str]) -> None:
        """Extend the life of the records of ``sessions`` (``{session_id: call_id}``) by ``ttl``, one ``expire``.

        Values are unchanged (``metrics_updated_at`` too); records already gone stay gone (G09).
        """
        pairs = _check_sessions(sessions)
        if pairs:
            await self.store.expire(*(_session_key(call_id, session_id) for session_id, call_id in pairs), ttl=self.ttl)

    async def request_close(self, call_id: str, session_id: str, *, ttl: float | None = None) -> None:
        """Ask the node running the session to close it: write the close flag (``b""``), alive for ``ttl``.

        Any node may call this; it does not check that the session exists. The flag is removed by :meth:`remove`.
        ``ttl`` (seconds, validated like every store TTL) overrides the registry's ``ttl`` for this flag: a longer
        one keeps the request alive while the owner cannot reach the store (a flag that expires first is lost).
        """
        call_id = _check_id(call_id, "call_id")
        session_id = _check_id(session_id, "session_id")
        if ttl is not None:
            check_ttl_ns(ttl)
        await self.store.set(_close_key(call_id, session_id), b"", self.ttl if ttl is None else float(ttl))

    async def register_many(self, infos: Sequence[SessionInfo]) -> None:
        """The batched heartbeat: write the whole record of each of ``infos`` with a fresh ``ttl``, in one ``mset``.

        Each record is written as given except ``metrics_updated_at``, which is ``clock.time()`` (the heartbeat's
        time). Unlike :meth:`update_metrics` it does not read first and writes unconditionally, so a record that
        vanished (expired, or lost by the store) is registered again. Only the node that runs the sessions may call it,
        and only for sessions it still runs: it would resurrect a removed record. ``mset`` is atomic on every backend.
        Every record is validated before anything is written (ids as in :meth:`register`, metrics as in
        :meth:`update_metrics`); an empty sequence writes nothing. Encodings of unchanged records are reused from the
        previous call, so a heartbeat of many sessions costs little more than the ``mset`` itself.
        """
        cache: dict[int, tuple[SessionInfo, dict[str, MetricValue], str, str, str]] = getattr(self, "_batch_cache", {})
        fresh: dict[int, tuple[SessionInfo, dict[str, MetricValue], str, str, str]] = {}
        stamp = repr(float(self.clock.time()))
        ttl = self.ttl
        items: list[tuple[str, bytes, float]] = []
        for info in infos:
            entry = cache.get(id(info))
            if entry is None or entry[0] is not info or entry[1] != info.metrics:
                if not isinstance(info, SessionInfo):
                    raise TypeError(f"infos must be SessionInfo records, got {type(info).__name__} {info!r}")
                key = _session_key(_check_id(info.call_id, "call_id"), _check_id(info.session_id, "session_id"))
                _check_id(info.node_id, "node_id")
                checked = _check_metrics(info.metrics)
                metrics = json.dumps(checked) if checked else "{}"
                # exactly SessionInfo.to_json() with metrics_updated_at left open
                head = json.dumps(
                    {
                        "session_id": info.session_id,
                        "call_id": info.call_id,
                        "node_id": info.node_id,
                        "started_at": float(info.started_at),
                    }
                )[:-1]
                entry = (info, checked, key, f'{head}, "metrics_updated_at": ', f', "metrics": {metrics}}}')
            fresh[id(info)] = entry
            items.append((entry[2], f"{entry[3]}{stamp}{entry[4]}".encode(), ttl))
        self._batch_cache = fresh
        if items:
            await self.store.mset(items)

    # -- reads -----------------------------------------------------------------------------------------------------

    async def get_close_requests(self, sessions: Mapping[str, str]) -> list[str]:
        """Return the session ids among ``sessions`` (``{session_id: call_id}``) that have a close flag.

        One ``mget``; the result keeps the iteration order of ``sessions``. Missing sessions are simply not flagged.
        """
        pairs = _check_sessions(sessions)
        if not pairs:
            return []
        flags = await self.store.mget([_close_key(call_id, session_id) for session_id, call_id in pairs])
        return [session_id for (session_id, _), flag in zip(pairs, flags, strict=True) if flag is not None]

    async def get(self, call_id: str, session_id: str) -> SessionInfo | None:
        """Return the live record of a session, or ``None``.

        Raises :class:`CorruptRecordError` naming the key if the stored bytes are not a valid record. A valid record
        whose ``call_id``/``session_id`` differ from the ones asked for is not this session and reads as ``None``
        (logged at DEBUG): it happens when a vision-agents node, which does not encode ``/``, writes call ``"a/b"``
        session ``"s"`` at the key of call ``"a"`` session ``"b/s"``.
        """
        call_id = _check_id(call_id, "call_id")
        session_id = _check_id(session_id, "session_id")
        key = _session_key(call_id, session_id)
        raw = await self.store.get(key)
        if raw is None:
            return None
        info = SessionInfo.from_json(raw, key=key)
        return info if _names(info, call_id, session_id, key) else None

    async def get_for_call(self, call_id: str, *, errors: list[CorruptRecordError] | None = None) -> list[SessionInfo]:
        """Return every live session of ``call_id``, whichever node runs it, sorted by session id.

        One ``keys`` and one ``mget``. Never lists another call's sessions, whatever the ids contain. A corrupt record
        does not hide the others: it is left out, logged at WARNING on the ``sessionkv.registry`` logger with its
        key, and, if ``errors`` is a list, its :class:`CorruptRecordError` is appended there so the caller can act
        (inspect or delete ``error.key``). Records naming another session (see :meth:`get`) are left out, logged at
        DEBUG.
        """
        call_id = _check_id(call_id, "call_id")
        if errors is not None and not isinstance(errors, list):
            raise TypeError(f"errors must be a list to collect CorruptRecordError into, or None; got {errors!r}")
        prefix = _session_key(call_id, "")
        keys = sorted(await self.store.keys(prefix))
        if not keys:
            return []
        found: list[SessionInfo] = []
        for key, raw in zip(keys, await self.store.mget(keys), strict=True):
            if raw is None:
                continue  # expired or removed between keys() and mget()
            try:
                info = SessionInfo.from_json(raw, key=key)
            except CorruptRecordError as error:
                logger.warning("skipping corrupt session record: %s", error)
                if errors is not None:
                    errors.append(error)
                continue
            if _names(info, call_id, key[len(prefix) :], key):
                found.append(info)
        return found


# -- helpers -------------------------------------------------------------------------------------------------------


def _check_id(value: object, what: str) -> str:
    """A call, session or node id: a non-empty ``str`` that encodes to UTF-8."""
    checked = check_key(value, what=what)
    if not checked:
        raise ValueError(f"{what} must be a non-empty string, got ''")
    return checked


def _encode_call_id(call_id: str) -> str:
    # "%" first, so that the encoding is injective: "a%2Fb" and "a/b" stay two different calls.
    return call_id.replace("%", "%25").replace("/", "%2F")


def _session_key(call_id: str, session_id: str) -> str:
    return f"{SESSIONS_PREFIX}{_encode_call_id(call_id)}/{session_id}"


def _close_key(call_id: str, session_id: str) -> str:
    return f"{CLOSE_REQUESTS_PREFIX}{_encode_call_id(call_id)}/{session_id}"


def _names(info: SessionInfo, call_id: str, session_id: str, key: str) -> bool:
    """Whether a decoded record describes the session its key was computed from."""
    if info.call_id == call_id and info.session_id == session_id:
        return True
    logger.debug(
        "record at %r names call %r session %r, not call %r session %r; ignoring it",
        key,
        info.call_id,
        info.session_id,
        call_id,
        session_id,
    )
    return False


def _load_object(raw: bytes | str, key: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptRecordError(key, f"not a JSON document ({exc}); it starts with {raw[:40]!r}") from exc
    if type(data) is not dict:
        raise CorruptRecordError(key, f"expected a JSON object, got {type(data).__name__}")
    return data


def _is_metric_value(value: object) -> bool:
    # type() rather than isinstance(): JSON true/false decode to bool, which is not a metric number
    if type(value) is float:
        return math.isfinite(value)
    return value is None or type(value) is int


def _check_metrics(metrics: object) -> dict[str, MetricValue]:
    """Validate heartbeat metrics (whole mapping first) and return a plain ``dict`` copy."""
    if not isinstance(metrics, Mapping):
        raise TypeError(f"metrics must be a mapping of str to int, float or None, got {type(metrics).__name__}")
    checked: dict[str, MetricValue] = {}
    for name, value in metrics.items():
        if not isinstance(name, str):
            raise TypeError(f"metric names must be str, got {type(name).__name__} {name!r}; use str(name)")
        if isinstance(value, bool) or not (value is None or isinstance(value, (int, float))):
            raise TypeError(
                f"metric {name!r} must be an int, float or None (a JSON number or null), got "
                f"{type(value).__name__} {value!r}"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"metric {name!r} must be finite, got {value!r}: NaN and infinity are not JSON; use None")
        checked[str(name)] = value if value is None else (int(value) if isinstance(value, int) else float(value))
    return checked


def _check_sessions(sessions: object) -> list[tuple[str, str]]:
    """Validate a ``{session_id: call_id}`` mapping and return its ``(session_id, call_id)`` pairs in order."""
    if not isinstance(sessions, Mapping):
        raise TypeError(
            f"sessions must be a mapping of session_id to call_id, got {type(sessions).__name__}: {sessions!r}"
        )
    return [
        (_check_id(session_id, "session_id"), _check_id(call_id, f"call_id of session {session_id!r}"))
        for session_id, call_id in sessions.items()
    ]
