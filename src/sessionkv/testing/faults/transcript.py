"""What went through a :class:`~sessionkv.testing.faults.RedisFaultProxy`: every command, reply and fault, in order.

Times are integer nanoseconds since the proxy started (``time.monotonic_ns`` based). Arguments and replies are kept
truncated to :data:`MAX_RECORDED_BYTES` each so that a transcript of large values stays small. When the transcript
holds ``limit`` events, the oldest are dropped and counted in :attr:`Transcript.dropped`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Final, Literal, NamedTuple

from sessionkv.testing.faults.resp import describe_reply

__all__ = ["MAX_RECORDED_BYTES", "EventKind", "Transcript", "TranscriptEvent"]

MAX_RECORDED_BYTES: Final = 256

EventKind = Literal["connect", "command", "reply", "push", "fault", "close"]


class TranscriptEvent(NamedTuple):  # a NamedTuple: one is made per command and per reply, it must be cheap
    """One thing the proxy saw or did on one connection.

    ``command``: arguments of a ``command`` event, and for ``reply`` / ``fault`` events the command concerned (empty
    when unknown). ``reply``: the raw reply frame (truncated) of a ``reply`` or ``push`` event, or the reply a fault
    gave. ``fault``: name of the fault of a ``fault`` event. ``detail``: free text (what the fault did, why a
    connection closed).
    """

    time_ns: int
    connection: int
    kind: EventKind
    command: tuple[bytes, ...] = ()
    reply: bytes = b""
    fault: str = ""
    detail: str = ""

    @property
    def command_name(self) -> str:
        return self.command[0].decode(errors="replace").upper() if self.command else ""

    def format(self) -> str:
        """One line: ``+12.345 ms #3 > SET k v``."""
        head = f"+{self.time_ns / 1e6:10.3f} ms #{self.connection}"
        if self.kind == "command":
            return f"{head} > {_words(self.command)}"
        if self.kind in ("reply", "push"):
            arrow = "<" if self.kind == "reply" else "< push"
            note = f" ({self.detail})" if self.detail else ""
            return f"{head} {arrow} {describe_reply(self.reply)}{note}"
        if self.kind == "fault":
            target = f" on {_words(self.command)}" if self.command else ""
            return f"{head} ! {self.fault}{target}: {self.detail}"
        return f"{head} {self.kind} {self.detail}".rstrip()


def _words(args: tuple[bytes, ...], limit: int = 120) -> str:
    text = " ".join(arg.decode(errors="backslashreplace") for arg in args)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def clip(data: bytes) -> bytes:
    """``data`` cut to :data:`MAX_RECORDED_BYTES` (no copy when it is short enough)."""
    return data if len(data) <= MAX_RECORDED_BYTES else data[:MAX_RECORDED_BYTES]


class Transcript:
    """The ordered events of one proxy. Iterable; filter with :meth:`events`."""

    def __init__(self, limit: int | None = 100_000) -> None:
        if limit is not None and limit < 1:
            raise ValueError(f"transcript limit must be >= 1 or None, got {limit!r}")
        self._events: deque[TranscriptEvent] = deque(maxlen=limit)
        self._recorded = 0
        self._before_read: Callable[[], None] | None = None  # the proxy frames deferred traffic here

    def _sync(self) -> None:
        if self._before_read is not None:
            self._before_read()

    @property
    def dropped(self) -> int:
        """How many of the oldest events were discarded to respect ``limit``."""
        self._sync()
        return self._recorded - len(self._events)

    def record(self, event: TranscriptEvent) -> None:
        self._recorded += 1
        self._events.append(event)

    def __iter__(self) -> Iterator[TranscriptEvent]:
        self._sync()
        return iter(tuple(self._events))

    def __len__(self) -> int:
        self._sync()
        return len(self._events)

    def clear(self) -> None:
        self._sync()
        self._events.clear()
        self._recorded = 0

    def events(self, *, connection: int | None = None, kind: EventKind | None = None) -> list[TranscriptEvent]:
        """Events, optionally only of one connection and/or one kind, in order."""
        self._sync()
        return [
            event
            for event in self._events
            if (connection is None or event.connection == connection) and (kind is None or event.kind == kind)
        ]

    def commands(self, *, connection: int | None = None) -> list[tuple[bytes, ...]]:
        """The argument tuples of every command, in arrival order."""
        return [event.command for event in self.events(connection=connection, kind="command")]

    def fault_decisions(self) -> list[tuple[int, str, str, str]]:
        """``(connection, command name, fault name, detail)`` for every fault that acted, in order.

        With the same seed, faults added in the same order and the same commands on each connection, this list is the
        same from run to run (for byte faults: the same *per-connection* decisions; see the docs).
        """
        self._sync()
        return [(e.connection, e.command_name, e.fault, e.detail) for e in self._events if e.kind == "fault"]

    def format(self, *, last: int | None = 200) -> str:
        """The transcript (or its ``last`` events) as text, one event per line, for failure reports."""
        self._sync()
        events = list(self._events)
        if last is not None:
            events = events[-last:]
        lines = [event.format() for event in events]
        if self.dropped:
            lines.insert(0, f"({self.dropped} older events dropped)")
        return "\n".join(lines)
