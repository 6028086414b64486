"""The recorded history of a run, Jepsen-style, kept compact while the run goes and serialised only on export.

An event is a tuple ``(time_ns, node, process, type, f, key, value, error)`` in recording order; :meth:`History.event`
turns one into the JSON object of SIM_SPEC (``index``, ``time`` in seconds rounded to the microsecond, ...).
``value`` is ``None``, a ``str``/number, a tuple of keys, or a tuple of ``(name, value)`` pairs (exported as an
object). :meth:`History.trace_hash` is a blake2b over the canonical form of every event, so two runs have the same hash
exactly when they recorded the same events.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from typing import IO, Any, Final

__all__ = ["FAIL", "INFO", "INVOKE", "OK", "Event", "History"]

INVOKE: Final = "invoke"
OK: Final = "ok"
FAIL: Final = "fail"
INFO: Final = "info"

Event = tuple[int, str, str, str, str, str | None, Any, str | None]

_FIELDS: Final = ("time", "node", "process", "type", "f", "key", "value", "error")


def _plain(value: Any) -> Any:
    """A recorded value as JSON: pair tuples become objects, other tuples lists."""
    if isinstance(value, tuple):
        if value and all(isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str) for item in value):
            return {name: _plain(item) for name, item in value}
        return [_plain(item) for item in value]
    return value


class History:
    """An append-only list of events. ``add`` is the hot path: one tuple append, nothing else."""

    __slots__ = ("events",)

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __len__(self) -> int:
        return len(self.events)

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    def add(
        self,
        time_ns: int,
        node: str,
        process: str,
        type_: str,
        f: str,
        key: str | None = None,
        value: Any = None,
        error: str | None = None,
    ) -> None:
        self.events.append((time_ns, node, process, type_, f, key, value, error))

    @staticmethod
    def event(index: int, event: Event) -> dict[str, Any]:
        """The JSON object of one event (SIM_SPEC's shape)."""
        time_ns, node, process, type_, f, key, value, error = event
        return {
            "index": index,
            "time": round(time_ns / 1e9, 6),
            "node": node,
            "process": process,
            "type": type_,
            "f": f,
            "key": key,
            "value": _plain(value),
            "error": error,
        }

    def events_json(self, indices: list[int]) -> list[dict[str, Any]]:
        return [self.event(index, self.events[index]) for index in indices]

    def write_jsonl(self, stream: IO[str]) -> None:
        """Write every event as one JSON object per line."""
        dumps = json.dumps
        for index, event in enumerate(self.events):
            stream.write(dumps(self.event(index, event), separators=(",", ":")))
            stream.write("\n")

    def export(self, path: str | os.PathLike[str]) -> None:
        with open(path, "w", encoding="utf-8") as stream:
            self.write_jsonl(stream)

    @staticmethod
    def canonical(event: Event) -> str:
        """The canonical text of one event (what the trace hash covers): its fields joined by a control character,
        key lists joined too (``repr`` of every key would dominate the cost of hashing a long run)."""
        value = event[6]
        try:
            if type(value) is not tuple or not value:
                text = repr(value)
            elif type(value[0]) is str:
                text = "\x1f".join(value)
            else:
                text = "\x1e".join(
                    f"{name}={chr(31).join(item) if type(item) is tuple else repr(item)}" for name, item in value
                )
        except (TypeError, ValueError):  # a value of another shape (a user's f): its repr is canonical enough
            text = repr(value)
        head = "\x1d".join(map(str, event[:6]))
        return f"{head}\x1d{text}\x1d{event[7]}"

    def trace_hash(self) -> str:
        """blake2b (128-bit) of the canonical history: equal exactly when the recorded events are equal."""
        digest = hashlib.blake2b(digest_size=16)
        events = self.events
        canonical = self.canonical
        for start in range(0, len(events), 4096):
            digest.update("\n".join(map(canonical, events[start : start + 4096])).encode())
            digest.update(b"\n")
        return digest.hexdigest()

    def first_divergence(self, other: History) -> int | None:
        """Index of the first event that differs from ``other`` (or where one history ends), ``None`` if equal."""
        for index, (mine, theirs) in enumerate(zip(self.events, other.events, strict=False)):
            if mine != theirs:
                return index
        if len(self.events) != len(other.events):
            return min(len(self.events), len(other.events))
        return None
