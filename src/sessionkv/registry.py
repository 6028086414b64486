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
import numbers
import sys
import uuid
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Final, NamedTuple, NoReturn, Protocol, Self, TypeAlias

from sessionkv.clock import Clock, current_clock
from sessionkv.errors import CorruptRecordError
from sessionkv.memory import InMemorySessionKVStore
from sessionkv.store import SessionKVStore, check_key, check_ttl_ns

__all__ = [
    "CLOSE_REQUESTS_PREFIX",
    "SESSIONS_PREFIX",
    "MetricValue",
    "SessionInfo",
    "SessionMetrics",
    "SessionRegistry",
    "SupportsToDict",
]

logger = logging.getLogger(__name__)

SESSIONS_PREFIX: Final = "sessions/"
"""Key prefix of session records (shared with vision-agents)."""

CLOSE_REQUESTS_PREFIX: Final = "close_requests/"
"""Key prefix of close flags (shared with vision-agents)."""

MetricValue: TypeAlias = int | float | None
"""A metric value: a JSON number or ``null``, as vision-agents types ``SessionInfo.metrics``."""


class SupportsToDict(Protocol):
    """Metrics as an object, such as vision-agents' ``AgentMetrics``: ``to_dict()`` gives name -> value."""

    def to_dict(self) -> Mapping[str, Any]: ...


_STORE_METHODS: Final = ("start", "close", "set", "mset", "get", "mget", "expire", "keys", "delete")

_REQUIRED_FIELDS: Final = ("session_id", "call_id", "node_id", "started_at", "metrics_updated_at")

_RECORD_FIELDS: Final = (*_REQUIRED_FIELDS, "metrics")
"""A record with exactly these keys in this order (what every writer produces) is rewritten by splicing."""


class SessionMetrics(dict[str, MetricValue]):
    """The ``metrics`` of a :class:`SessionInfo`: a plain ``dict`` of metric name to ``int``, ``float`` or ``None``.

    It adds the one method vision-agents' HTTP layer calls on ``info.metrics`` (there an ``AgentMetrics``):
    :meth:`to_dict`. Everything else is ``dict``'s, and it compares equal to a ``dict`` with the same items.
    """

    __slots__ = ()

    def to_dict(self, fields: Sequence[str] = ()) -> dict[str, MetricValue]:
        """A plain ``dict`` copy of every metric, or of ``fields`` only (in that order), like ``AgentMetrics.to_dict``.

        A name in ``fields`` that this record does not hold raises ``ValueError("Unknown field: <name>")``.
        """
        if not fields:
            return dict(self)
        selected: dict[str, MetricValue] = {}
        for name in fields:
            if name not in self:
                raise ValueError(f"Unknown field: {name}")
            selected[name] = self[name]
        return selected


@dataclasses.dataclass(frozen=True, slots=True, init=False)
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
    metrics: SessionMetrics = dataclasses.field(default_factory=SessionMetrics)

    def __init__(
        self,
        session_id: str,
        call_id: str,
        node_id: str,
        started_at: float,
        metrics_updated_at: float,
        metrics: Mapping[str, MetricValue] | SupportsToDict | None = None,
    ) -> None:
        # Written out (init=False) so that metrics may be given as any mapping or AgentMetrics-like object, checked
        # like update_metrics' argument; the fields are stored as given, as vision-agents' dataclass does.
        set_field = object.__setattr__
        set_field(self, "session_id", session_id)
        set_field(self, "call_id", call_id)
        set_field(self, "node_id", node_id)
        set_field(self, "started_at", started_at)
        set_field(self, "metrics_updated_at", metrics_updated_at)
        if type(metrics) is not SessionMetrics:
            metrics = SessionMetrics(() if metrics is None else _check_metrics(metrics))
        set_field(self, "metrics", metrics)

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
        session_id, call_id, node_id = self.session_id, self.call_id, self.node_id
        started_at, updated_at, metrics = self.started_at, self.metrics_updated_at, self.metrics
        if not (
            type(session_id) is str
            and type(call_id) is str
            and type(node_id) is str
            and _is_stamp(started_at)
            and _is_stamp(updated_at)
            and _plain_metrics(metrics)
        ):
            return json.dumps(self.to_dict()).encode()  # what was asked for, even if no reader will accept it
        fields = (session_id, call_id, node_id, float(started_at), float(updated_at), dict(metrics))
        head = _record_head(session_id, call_id, node_id, started_at)
        raw = _record_bytes(head, updated_at, _dumps(fields[5]))
        _RECORDS.put(raw, fields, head)
        return raw

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SessionInfo:
        """Build a record from a mapping such as :meth:`to_dict` returns, like vision-agents' ``from_dict``.

        Unknown keys are ignored. A missing required field raises ``TypeError`` exactly as the dataclass constructor
        does (``__init__() missing 1 required positional argument: 'node_id'``). ``metrics`` may be absent or
        ``None`` (no metrics), a mapping, or an object with ``to_dict()`` such as vision-agents' ``AgentMetrics``
        (checked like :meth:`SessionRegistry.update_metrics`' argument). Ids must be ``str`` and timestamps finite
        numbers (``TypeError`` / ``ValueError`` naming the field); timestamps are stored as ``float``.
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"SessionInfo.from_dict needs a mapping of field name to value, got {type(data).__name__}")
        known = {name: data[name] for name in _RECORD_FIELDS if name in data}
        if known.get("metrics") is None:
            known.pop("metrics", None)
        else:
            known["metrics"] = SessionMetrics(_check_metrics(known["metrics"]))
        if any(name not in known for name in _REQUIRED_FIELDS):
            return cls(**known)  # raises the dataclass constructor's own TypeError naming what is missing
        problem = _field_problem(known)
        if problem is not None:
            error, message = problem
            raise error(f"SessionInfo.from_dict: {message}")
        known["started_at"] = float(known["started_at"])
        known["metrics_updated_at"] = float(known["metrics_updated_at"])
        return cls(**known)

    @classmethod
    def from_json(cls, raw: bytes | str, *, key: str = "<json>") -> SessionInfo:
        """Decode a stored record; unknown fields are ignored (newer writers may add some).

        ``metrics`` may be absent (vision-agents' dataclass defaults it to ``{}``); every other field is required.
        Raises :class:`CorruptRecordError` naming ``key`` when the bytes are not a JSON object or a field is missing
        or has the wrong type (ids: ``str``; timestamps: finite numbers; ``metrics``: object of number or ``null``).
        """
        return _info(_RECORDS.decode(raw, key)[0])


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
        call_id, session_id = _check_pair(call_id, session_id)
        now = float(self.clock.time())
        node_id = self.node_id
        head = _record_head(session_id, call_id, node_id, now)
        raw = _record_bytes(head, now, "{}")
        _RECORDS.put(raw, (session_id, call_id, node_id, now, now, {}), head)
        await self.store.set(_session_key(call_id, session_id), raw, self.ttl)
        return SessionInfo(session_id, call_id, node_id, now, now)

    async def remove(self, call_id: str, session_id: str) -> None:
        """Delete the session record and its close flag (one ``delete``); missing keys are fine."""
        call_id, session_id = _check_pair(call_id, session_id)
        await self.store.delete([_session_key(call_id, session_id), _close_key(call_id, session_id)])

    async def update_metrics(
        self, call_id: str, session_id: str, metrics: Mapping[str, MetricValue] | SupportsToDict
    ) -> bool:
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

        ``metrics`` is either a mapping or an object with a ``to_dict()`` method returning one (vision-agents'
        ``AgentMetrics``, as its launcher passes it). Names are ``str``; values are stored as JSON numbers or
        ``null``: ``None``, ``int`` and any integral number (numpy integers included) as an integer, ``float`` and
        any other real number (``Fraction``, numpy floats) as a float. ``bool``, strings, containers and other
        objects raise ``TypeError`` naming the entry. A non-finite float (NaN, infinity: not JSON) raises
        ``ValueError`` when it comes from a mapping you built, and is stored as ``null`` when it comes from
        ``to_dict()``: an aggregate such as an average over no or overflowing samples has no value, and a heartbeat
        must not fail for it (the launcher would only log the error, and the record would expire while the session
        runs). Every check happens before anything is read or written.
        """
        call_id, session_id = _check_pair(call_id, session_id)
        checked = _check_metrics(metrics)
        metrics_json = _dumps(checked)
        key = _session_key(call_id, session_id)
        raw = await self.store.get(key)
        if raw is None:
            return False
        decoded, head = _RECORDS.decode(raw, key)
        if not _names(decoded, call_id, session_id, key):
            return False
        now = float(self.clock.time())
        if head is not None:
            new_raw = _record_bytes(head, now, metrics_json)
            _RECORDS.put(new_raw, (decoded[0], decoded[1], decoded[2], decoded[3], now, checked), head)
        else:
            # Rewrite the stored object rather than our own SessionInfo so that fields added by newer writers survive.
            data = _load_object(raw, key)
            data["metrics"] = checked
            data["metrics_updated_at"] = now
            new_raw = _dumps(data).encode()
        await self.store.set(key, new_raw, self.ttl, only_if_exists=True)
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
        Every record is validated before anything is written (ids as in :meth:`register`, ``started_at`` a finite
        real number, metrics as in :meth:`update_metrics`); an empty sequence writes nothing. Encodings of unchanged
        records are reused from the previous call, so a heartbeat of many sessions costs little more than the ``mset``
        itself, and the records written are remembered as :meth:`register`'s are, so reading them back decodes nothing.
        """
        cache: dict[int, _Batched] = getattr(self, "_batch_cache", {})
        fresh: dict[int, _Batched] = {}
        now = float(self.clock.time())
        stamp = _number_json(now)
        ttl = self.ttl
        items: list[tuple[str, bytes, float]] = []
        for info in infos:
            entry = cache.get(id(info))
            if entry is None or entry.info is not info or entry.metrics != info.metrics:
                entry = _batched(info)
            fresh[id(info)] = entry
            raw = f"{entry.head}{stamp}{entry.tail}".encode()  # _record_bytes, with the stamp encoded once
            # remembered like register's records: reads of this heartbeat's records need no decode
            _RECORDS.put(raw, (*entry.ids, entry.started_at, now, entry.metrics), entry.head)
            items.append((entry.key, raw, ttl))
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
        keys = [
            # _close_key inlined for ids that need no encoding: this runs once per session per maintenance cycle
            f"{CLOSE_REQUESTS_PREFIX}{call_id}/{session_id}"
            if "%" not in call_id and "/" not in call_id
            else _close_key(call_id, session_id)
            for session_id, call_id in pairs
        ]
        flags = await self.store.mget(keys)
        return [session_id for (session_id, _), flag in zip(pairs, flags, strict=True) if flag is not None]

    async def get(self, call_id: str, session_id: str) -> SessionInfo | None:
        """Return the live record of a session, or ``None``.

        Raises :class:`CorruptRecordError` naming the key if the stored bytes are not a valid record. A valid record
        whose ``call_id``/``session_id`` differ from the ones asked for is not this session and reads as ``None``
        (logged at DEBUG): it happens when a vision-agents node, which does not encode ``/``, writes call ``"a/b"``
        session ``"s"`` at the key of call ``"a"`` session ``"b/s"``.
        """
        call_id, session_id = _check_pair(call_id, session_id)
        key = _session_key(call_id, session_id)
        raw = await self.store.get(key)
        if raw is None:
            return None
        decoded, _ = _RECORDS.decode(raw, key)
        return _info(decoded) if _names(decoded, call_id, session_id, key) else None

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
        start = len(prefix)
        for key, raw in zip(keys, await self.store.mget(keys), strict=True):
            if raw is None:
                continue  # expired or removed between keys() and mget()
            try:
                decoded, _ = _RECORDS.decode(raw, key)
            except CorruptRecordError as error:
                logger.warning("skipping corrupt session record: %s", error)
                if errors is not None:
                    errors.append(error)
                continue
            if _names(decoded, call_id, key[start:], key):
                found.append(_info(decoded))
        return found


# -- helpers -------------------------------------------------------------------------------------------------------


def _check_id(value: object, what: str) -> str:
    """A call, session or node id: a non-empty ``str`` that encodes to UTF-8."""
    checked = check_key(value, what=what)
    if not checked:
        raise ValueError(f"{what} must be a non-empty string, got ''")
    return checked


def _check_pair(call_id: object, session_id: object) -> tuple[str, str]:
    """``_check_id`` of both ids; plain non-empty ASCII ``str`` (every id in practice) pass without a call."""
    if (
        type(call_id) is str
        and type(session_id) is str
        and call_id
        and session_id
        and call_id.isascii()
        and session_id.isascii()
    ):
        return call_id, session_id
    return _check_id(call_id, "call_id"), _check_id(session_id, "session_id")


def _encode_call_id(call_id: str) -> str:
    # "%" first, so that the encoding is injective: "a%2Fb" and "a/b" stay two different calls.
    if "%" in call_id or "/" in call_id:
        return call_id.replace("%", "%25").replace("/", "%2F")
    return call_id


def _session_key(call_id: str, session_id: str) -> str:
    return f"{SESSIONS_PREFIX}{_encode_call_id(call_id)}/{session_id}"


def _close_key(call_id: str, session_id: str) -> str:
    return f"{CLOSE_REQUESTS_PREFIX}{_encode_call_id(call_id)}/{session_id}"


def _check_sessions(sessions: object) -> list[tuple[str, str]]:
    """Validate a ``{session_id: call_id}`` mapping and return its ``(session_id, call_id)`` pairs in order."""
    if not isinstance(sessions, Mapping):
        raise TypeError(
            f"sessions must be a mapping of session_id to call_id, got {type(sessions).__name__}: {sessions!r}"
        )
    pairs: list[tuple[str, str]] = list(sessions.items())
    for session_id, call_id in pairs:
        if not (
            type(session_id) is str
            and type(call_id) is str
            and session_id
            and call_id
            and session_id.isascii()
            and call_id.isascii()
        ):
            return [
                (_check_id(session_id, "session_id"), _check_id(call_id, f"call_id of session {session_id!r}"))
                for session_id, call_id in pairs
            ]
    return pairs


# -- metrics -------------------------------------------------------------------------------------------------------


def _check_metrics(metrics: object) -> dict[str, MetricValue]:
    """Heartbeat metrics as a new plain ``dict`` of JSON values, whole argument checked first (see update_metrics)."""
    if type(metrics) is dict or type(metrics) is SessionMetrics:
        # the common case, checked inline: str names, int / finite float / None values
        for name, value in metrics.items():
            kind = type(value)
            if type(name) is not str or not (value is None or kind is int or (kind is float and value - value == 0.0)):
                return _checked_items(metrics, from_aggregate=False)
        return dict(metrics)
    if isinstance(metrics, Mapping):
        return _checked_items(metrics, from_aggregate=False)
    to_dict = getattr(metrics, "to_dict", None)
    if callable(to_dict):
        values = to_dict()
        if not isinstance(values, Mapping):
            raise TypeError(
                f"metrics.to_dict() must return a mapping of str to number or None, got {type(values).__name__} "
                f"from {type(metrics).__name__}"
            )
        return _checked_items(values, from_aggregate=True)
    raise TypeError(
        f"metrics must be a mapping of str to int, float or None, or an object whose to_dict() returns one "
        f"(vision-agents' AgentMetrics), got {type(metrics).__name__}"
    )


def _plain_metrics(metrics: Mapping[Any, Any]) -> bool:
    """Whether every name is a ``str`` and every value ``None``, an ``int`` or a finite ``float`` (exact types)."""
    for name, value in metrics.items():
        kind = type(value)
        if type(name) is not str or not (value is None or kind is int or (kind is float and value - value == 0.0)):
            return False
    return True


def _is_stamp(value: object) -> bool:
    """Whether ``value`` is a valid timestamp: an ``int`` or a finite ``float`` (exact types)."""
    return type(value) is int or (type(value) is float and value - value == 0.0)


def _checked_items(metrics: Mapping[Any, Any], *, from_aggregate: bool) -> dict[str, MetricValue]:
    checked: dict[str, MetricValue] = {}
    for name, value in metrics.items():
        if not isinstance(name, str):
            raise TypeError(f"metric names must be str, got {type(name).__name__} {name!r}; use str(name)")
        checked[str(name)] = _metric_value(name, value, from_aggregate=from_aggregate)
    return checked


def _metric_value(name: str, value: object, *, from_aggregate: bool) -> MetricValue:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"metric {name!r} must be an int, float or None (a JSON number or null), got "
            f"{type(value).__name__} {value!r}"
        )
    if isinstance(value, numbers.Integral):
        return int(value)
    number = float(value)
    if math.isfinite(number):
        return number
    if from_aggregate:
        return None  # see update_metrics: an aggregate without a value is stored as null
    raise ValueError(f"metric {name!r} must be finite, got {value!r}: NaN and infinity are not JSON; use None")


# -- records: encoding, decoding, and the cache of known bytes -----------------------------------------------------

_json_string = json.encoder.encode_basestring_ascii
"""The exact string encoding of ``json.dumps`` (``ensure_ascii=True``)."""


def _not_json(value: object) -> NoReturn:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _make_dumps() -> Any:
    """``json.dumps`` with default options, through the C encoder without per-call setup when it gives equal text."""
    make: Any = getattr(json.encoder, "c_make_encoder", None)
    try:
        # the arguments json.JSONEncoder.iterencode passes for json.dumps' defaults, minus the circular check
        # (records come from json.loads or from our own flat dicts, so they have no cycles)
        encode = make(None, _not_json, _json_string, None, ": ", ", ", False, False, True)
    except TypeError:  # pragma: no cover - not CPython, or another signature: the probe below would fail anyway
        return json.dumps

    def dumps(value: object) -> str:
        return "".join(encode(value, 0))

    probe = {"s": '\u00e9"\n', "n": [1, -2.5, 1e300, None, True], "o": {}, "f": 1700000000.123456}
    return dumps if dumps(probe) == json.dumps(probe) else json.dumps


_dumps: Any = _make_dumps()


def _number_json(value: float) -> str:
    # float.__repr__ is what json writes for a finite float; anything else goes through the encoder itself
    return repr(value) if type(value) is float and value - value == 0.0 else str(_dumps(value))


def _record_head(session_id: str, call_id: str, node_id: str, started_at: float) -> str:
    """The JSON text of a record up to the value of ``metrics_updated_at``."""
    return (
        f'{{"session_id": {_json_string(session_id)}, "call_id": {_json_string(call_id)}, '
        f'"node_id": {_json_string(node_id)}, "started_at": {_number_json(started_at)}, "metrics_updated_at": '
    )


def _record_bytes(head: str, metrics_updated_at: float, metrics_json: str) -> bytes:
    """``json.dumps(record).encode()``, byte for byte, from its head and the two fields a heartbeat rewrites."""
    return f'{head}{_number_json(metrics_updated_at)}, "metrics": {metrics_json}}}'.encode()


class _Batched(NamedTuple):
    """One record of :meth:`SessionRegistry.register_many`, validated and encoded but for ``metrics_updated_at``."""

    info: SessionInfo
    metrics: dict[str, MetricValue]  # our checked copy: compared with info.metrics to notice a change
    key: str
    ids: tuple[str, str, str]  # session_id, call_id, node_id
    started_at: float
    head: str  # the record's JSON up to the value of metrics_updated_at (see _record_head)
    tail: str  # the JSON after it


def _batched(info: SessionInfo) -> _Batched:
    """Validate ``info`` as :meth:`SessionRegistry.register_many` requires and encode it."""
    if not isinstance(info, SessionInfo):
        raise TypeError(f"infos must be SessionInfo records, got {type(info).__name__} {info!r}")
    call_id = _check_id(info.call_id, "call_id")
    session_id = _check_id(info.session_id, "session_id")
    node_id = _check_id(info.node_id, "node_id")
    started_at = info.started_at
    if not isinstance(started_at, numbers.Real) or isinstance(started_at, bool):
        raise TypeError(f"started_at must be epoch seconds (a real number), got {started_at!r} in {info!r}")
    if not math.isfinite(started_at):
        raise ValueError(f"started_at must be finite epoch seconds, got {started_at!r} in {info!r}")
    checked = _check_metrics(info.metrics)
    return _Batched(
        info,
        checked,
        _session_key(call_id, session_id),
        (session_id, call_id, node_id),
        float(started_at),
        _record_head(session_id, call_id, node_id, float(started_at)),
        f', "metrics": {_dumps(checked) if checked else "{}"}}}',
    )


def _load_object(raw: bytes | str, key: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptRecordError(key, f"not a JSON document ({exc}); it starts with {raw[:40]!r}") from exc
    if type(data) is not dict:
        raise CorruptRecordError(key, f"expected a JSON object, got {type(data).__name__}")
    return data


def _field_problem(data: Mapping[str, Any]) -> tuple[type[Exception], str] | None:
    """What is wrong with the fields of a record (all required ones present), or ``None`` if they are valid."""
    for name in ("session_id", "call_id", "node_id"):
        if type(data[name]) is not str:
            return TypeError, f"field {name} must be a string, got {data[name]!r}"
    for name in ("started_at", "metrics_updated_at"):
        value = data[name]
        if type(value) not in (int, float):
            return TypeError, f"field {name} must be a finite number of epoch seconds, got {value!r}"
        # an int is compared, not converted: math.isfinite(10**400) raises OverflowError
        if not (abs(value) <= sys.float_info.max if type(value) is int else math.isfinite(value)):
            return ValueError, f"field {name} must be a finite number of epoch seconds, got {value!r:.60}"
    metrics = data.get("metrics", {})
    if not isinstance(metrics, dict):
        return TypeError, f"field metrics must be an object, got {metrics!r}"
    for name, value in metrics.items():
        kind = type(value)
        if not (value is None or kind is int or (kind is float and math.isfinite(value))):
            return TypeError, f"metric {name!r} must be a finite number or null, got {value!r}"
    return None


_Fields: TypeAlias = tuple[str, str, str, float, float, dict[str, MetricValue]]
"""A valid record's fields in declaration order, timestamps as ``float``: what the record cache keeps."""


def _info(fields: _Fields) -> SessionInfo:
    """A :class:`SessionInfo` of remembered fields, with its own ``metrics``: the cache's copy is never handed out."""
    return SessionInfo(fields[0], fields[1], fields[2], fields[3], fields[4], SessionMetrics(fields[5]))


def _names(fields: _Fields, call_id: str, session_id: str, key: str) -> bool:
    """Whether a decoded record describes the session its key was computed from."""
    if fields[1] == call_id and fields[0] == session_id:
        return True
    logger.debug(
        "record at %r names call %r session %r, not call %r session %r; ignoring it",
        key,
        fields[1],
        fields[0],
        call_id,
        session_id,
    )
    return False


_CACHE_GENERATION: Final = 4096
"""Records per cache generation; the cache holds at most two generations (about 2.5 MB for heartbeat-sized records)."""


class _RecordCache:
    """Decoded records by their exact bytes, with the head to splice a heartbeat into when the layout allows.

    Pure: equal bytes always decode to equal fields, so sharing it between registries, stores and event loops is
    safe. Bounded: two generations; when the young one is full it becomes the old one and the previous old one is
    dropped, so a miss costs one decode and memory never grows past two generations. Errors are never cached.
    """

    __slots__ = ("_old", "_young")

    def __init__(self) -> None:
        self._young: dict[bytes | str, tuple[_Fields, str | None]] = {}
        self._old: dict[bytes | str, tuple[_Fields, str | None]] = {}

    def put(self, raw: bytes | str, fields: _Fields, head: str | None) -> None:
        young = self._young
        if len(young) >= _CACHE_GENERATION:
            self._old, self._young = young, {}
            young = self._young
        young[raw] = (fields, head)

    def decode(self, raw: bytes | str, key: str) -> tuple[_Fields, str | None]:
        """The fields of ``raw`` (validated now or when these bytes were first seen) and its rewrite head, if any.

        Raises :class:`CorruptRecordError` naming ``key`` when ``raw`` is not a valid record.
        """
        cacheable = type(raw) is bytes or type(raw) is str
        if cacheable:
            found = self._young.get(raw)
            if found is not None:
                return found
            found = self._old.get(raw)
            if found is not None:
                self._young[raw] = found
                return found
        data = _load_object(raw, key)
        missing = [name for name in _REQUIRED_FIELDS if name not in data]
        if missing:
            raise CorruptRecordError(key, f"missing field(s) {', '.join(missing)}")
        problem = _field_problem(data)
        if problem is not None:
            raise CorruptRecordError(key, problem[1])
        decoded: _Fields = (
            data["session_id"],
            data["call_id"],
            data["node_id"],
            float(data["started_at"]),
            float(data["metrics_updated_at"]),
            data.get("metrics", {}),
        )
        head = (
            _record_head(data["session_id"], data["call_id"], data["node_id"], data["started_at"])
            if tuple(data) == _RECORD_FIELDS
            else None
        )
        if cacheable:
            self.put(raw, decoded, head)
        return decoded, head


_RECORDS: Final = _RecordCache()
