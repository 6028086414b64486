"""The two one-method fault interfaces and what the proxy hands them.

A fault is a small frozen dataclass: its parameters are plain fields with units in their names, and its behaviour is
one method.

- :class:`ByteFault` acts on the bytes of one direction of a connection: ``async pipe(data, stream)`` receives each
  chunk (``b""`` means end of stream) and decides what reaches :meth:`Stream.send`, when, and whether the connection
  is closed or reset instead.
- :class:`CommandFault` acts on RESP frames: ``act(command, context)`` receives each complete client command that the
  fault's targeting selected and returns a :class:`Verdict` saying what happens to the command and to its reply, or
  ``None`` to let it pass untouched.

Targeting is shared: ``connection`` (accept index from 0, or the name a client gave with ``CLIENT SETNAME`` /
``HELLO ... SETNAME``) and ``probability`` (drawn from the proxy's seeded RNG) for every fault; ``direction`` for byte
faults; ``command``, ``key_pattern``, ``nth`` and ``times`` for command faults.
"""

from __future__ import annotations

import abc
import fnmatch
import math
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Literal

__all__ = [
    "ByteFault",
    "Command",
    "CommandContext",
    "CommandFault",
    "Direction",
    "Fault",
    "ProxyFault",
    "Stream",
    "Verdict",
]

Direction = Literal["upstream", "downstream"]
"""``upstream``: client → server (commands). ``downstream``: server → client (replies)."""


def _check_non_negative(owner: object, name: str, value: float) -> None:
    # an int is compared, not converted: math.isfinite(10**400) raises OverflowError
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        bad = True
    else:
        bad = value > sys.float_info.max if isinstance(value, int) else not math.isfinite(value)
    if bad:
        raise ValueError(f"{type(owner).__name__}.{name} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class Fault:
    """Base of every fault: a name for the registry and the targeting common to all faults.

    ``connection``: only the connection with this accept index (0 for the first client connection the proxy accepted)
    or with this client name; ``None`` targets every connection. ``probability``: chance in [0, 1] that a selected
    occurrence is faulted, drawn from the proxy's seeded RNG.
    """

    name: ClassVar[str] = ""

    connection: int | str | None = None
    probability: float = 1.0

    def __post_init__(self) -> None:
        if not (isinstance(self.probability, int | float) and 0.0 <= self.probability <= 1.0):
            raise ValueError(f"{type(self).__name__}.probability must be in [0, 1], got {self.probability!r}")
        if isinstance(self.connection, bool) or (isinstance(self.connection, int) and self.connection < 0):
            raise ValueError(
                f"{type(self).__name__}.connection must be an accept index >= 0 or a client name, "
                f"got {self.connection!r}"
            )

    def targets_connection(self, index: int, client_name: str | None) -> bool:
        """Whether this fault may act on the connection with this accept index and client name."""
        target = self.connection
        if target is None:
            return True
        if isinstance(target, int):
            return target == index
        return target == client_name


class Stream(abc.ABC):
    """What a :class:`ByteFault` sees of one direction of one connection while it handles a chunk."""

    connection: int
    """Accept index of the connection (0 for the first)."""
    direction: Direction
    arrival_ns: int
    """``time.monotonic_ns()`` when the proxy read the chunk being handled."""
    opened_ns: int
    """``time.monotonic_ns()`` when the proxy accepted the connection."""
    rng: random.Random
    """This fault's RNG for this connection, derived from the proxy's seed: the only randomness a fault may use."""
    state: dict[str, int]
    """Scratch counters of this fault for this direction of this connection (e.g. bytes seen), initially empty."""

    @abc.abstractmethod
    async def send(self, data: bytes) -> None:
        """Pass ``data`` on (to the next fault, then the socket). ``b""`` passes the end of the stream on."""

    @abc.abstractmethod
    def reset(self, reason: str) -> None:
        """Reset both sides of the connection now (TCP RST, ``SO_LINGER`` 0); later data is discarded."""

    @abc.abstractmethod
    def close(self, reason: str) -> None:
        """Close both sides of the connection now (FIN, after what was already written)."""

    @abc.abstractmethod
    async def wait_removed(self, timeout_s: float | None) -> bool:
        """Wait until this fault is removed from the proxy (True) or ``timeout_s`` passed (False)."""

    @abc.abstractmethod
    def note(self, detail: str) -> None:
        """Record in the transcript that this fault acted, and how."""

    def note_once(self, detail: str) -> None:
        """:meth:`note`, but only the first time on this direction of this connection (for faults acting on every
        chunk, whose transcript would otherwise repeat itself)."""
        if not self.state.get("noted"):
            self.state["noted"] = 1
            self.note(detail)


@dataclass(frozen=True, kw_only=True)
class ByteFault(Fault):
    """A fault on the bytes of one direction. ``probability`` is decided once per connection (like Toxiproxy's
    toxicity): a connection is either affected for its whole life or not at all.

    ``direction``: ``"downstream"`` (server → client, Toxiproxy's default), ``"upstream"`` or ``"both"``.
    """

    direction: Direction | Literal["both"] = "downstream"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.direction not in ("upstream", "downstream", "both"):
            raise ValueError(
                f"{type(self).__name__}.direction must be 'upstream', 'downstream' or 'both', got {self.direction!r}"
            )

    @abc.abstractmethod
    async def pipe(self, data: bytes, stream: Stream) -> None:
        """Handle one chunk (``b""``: end of stream): call ``stream.send`` zero or more times, or close/reset."""


@dataclass(frozen=True, kw_only=True)
class ProxyFault(Fault):
    """A fault on the proxy itself rather than on a connection's data (see ``down``)."""


@dataclass(slots=True)
class Command:
    """One complete client command as the proxy saw it."""

    args: list[bytes]
    """The command name and its arguments, as sent."""
    connection: int
    client_name: str | None

    @property
    def name(self) -> str:
        """The command name, upper case (``""`` for an empty inline line)."""
        return self.args[0].decode(errors="replace").upper() if self.args else ""

    @property
    def key(self) -> bytes | None:
        """The first argument after the command name (the key of most commands), or ``None``."""
        return self.args[1] if len(self.args) > 1 else None


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a :class:`CommandFault` does to one command and its reply. Build one with the class methods."""

    action: str
    """Short name for the transcript: ``error``, ``drop``, ``lose_reply``, ``delay_reply``, ``cut_reply``, ..."""
    forward: bool = True
    """Send the command to the server."""
    reply: bytes | None = None
    """A reply the proxy gives instead of the server's (only when ``forward`` is False)."""
    close_after_reply: bool = False
    """Close the client connection after writing ``reply``."""
    reset: bool = False
    """Reset the client connection: instead of forwarding (``forward`` False) or instead of the reply (True)."""
    reply_delay_ms: float = 0.0
    """Hold the server's reply this long before passing it on."""
    cut_reply_at_bytes: int | None = None
    """Deliver only this many bytes of the server's reply, then reset the connection."""
    rewrite_reply: Callable[[bytes], bytes] | None = field(default=None, compare=False)
    """Replace the server's reply frame by ``rewrite_reply(frame)`` (must return one complete frame)."""
    detail: str = ""

    @classmethod
    def error(cls, reply: bytes, *, close_after: bool = False, detail: str = "") -> Verdict:
        return cls("error", forward=False, reply=reply, close_after_reply=close_after, detail=detail)

    @classmethod
    def synthetic(cls, reply: bytes, *, detail: str = "") -> Verdict:
        return cls("synthetic_reply", forward=False, reply=reply, detail=detail)

    @classmethod
    def drop(cls, *, detail: str = "") -> Verdict:
        return cls("drop", forward=False, reset=True, detail=detail)

    @classmethod
    def lose_reply(cls, *, detail: str = "") -> Verdict:
        return cls("lose_reply", forward=True, reset=True, detail=detail)

    @classmethod
    def delay_reply(cls, delay_ms: float, *, detail: str = "") -> Verdict:
        return cls("delay_reply", reply_delay_ms=delay_ms, detail=detail)

    @classmethod
    def cut_reply(cls, at_bytes: int | None, *, detail: str = "") -> Verdict:
        return cls("cut_reply", cut_reply_at_bytes=at_bytes, detail=detail)

    @classmethod
    def rewrite(cls, rewrite_reply: Callable[[bytes], bytes], *, detail: str = "") -> Verdict:
        return cls("rewrite_reply", rewrite_reply=rewrite_reply, detail=detail)


class CommandContext(abc.ABC):
    """Proxy services a :class:`CommandFault` may use while deciding."""

    rng: random.Random
    """This fault's RNG for this connection, derived from the proxy's seed."""
    memory: dict[bytes, list[bytes]]
    """Scratch memory of this fault, shared by all connections (e.g. the previous SCAN page of an iteration)."""

    @abc.abstractmethod
    def fake_scan_cursor(self, real_cursor: bytes) -> bytes:
        """A new cursor the proxy will translate back to ``real_cursor`` when a client sends it in a SCAN command."""

    @abc.abstractmethod
    def real_scan_cursor(self, cursor: bytes) -> bytes:
        """The cursor the server will see for ``cursor`` as the client sent it (itself unless it is fake)."""

    @abc.abstractmethod
    def is_fake_scan_cursor(self, cursor: bytes) -> bool:
        """Whether ``cursor`` (as the client sent it) was made by :meth:`fake_scan_cursor`."""


@dataclass(frozen=True, kw_only=True)
class CommandFault(Fault):
    """A fault on client commands and their replies.

    ``command``: only this command name (case-insensitive; the first word, so ``CLIENT`` for ``CLIENT SETNAME``).
    ``key_pattern``: only commands whose first argument matches this glob (``fnmatch``; ``*`` ``?`` ``[...]``).
    ``nth``: only the nth matching command (1-based, counted over all targeted connections in arrival order).
    ``times``: act at most this many times. ``probability`` is drawn for each matching command.
    """

    command: str | None = None
    key_pattern: str | None = None
    nth: int | None = None
    times: int | None = None

    default_commands: ClassVar[frozenset[str] | None] = None
    """Commands this fault can act on at all (``None``: any); ``command`` narrows them further."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("nth", "times"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{type(self).__name__}.{name} must be an integer >= 1 or None, got {value!r}")

    def matches(self, command: Command) -> bool:
        """Whether ``command`` is selected by ``command`` / ``key_pattern`` (not by nth, times or probability)."""
        name = command.name
        if self.default_commands is not None and name not in self.default_commands:
            return False
        if self.command is not None and name != self.command.upper():
            return False
        if self.key_pattern is not None:
            key = command.key
            if key is None or not fnmatch.fnmatchcase(key.decode(errors="replace"), self.key_pattern):
                return False
        return True

    @abc.abstractmethod
    def act(self, command: Command, context: CommandContext) -> Verdict | None:
        """Decide the fate of one selected command; ``None`` lets it pass (and does not count as applied)."""
