"""Faults on the fate of a command and its reply: dropped before the server, reply lost after the server ran the
command, reply delayed, reply cut mid-frame.

The two "unknown outcome" faults differ in exactly the way that matters to a client: with ``drop_command`` the server
never saw the command; with ``lose_reply`` it ran it (a SET is stored, an INCR counted, an EXEC committed) and only the
reply is lost. Both look identical to the client: the connection is reset with the reply outstanding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from sessionkv.testing.faults.base import Command, CommandContext, CommandFault, Verdict, _check_non_negative

__all__ = ["CutReply", "DelayReply", "DropCommand", "LoseReply"]


@dataclass(frozen=True)
class DropCommand(CommandFault):
    """Reset the connection instead of forwarding the selected command: the server never sees it. Commands the
    client pipelined before it are forwarded; their replies are lost with the connection."""

    name: ClassVar[str] = "drop_command"

    def act(self, command: Command, context: CommandContext) -> Verdict | None:
        return Verdict.drop(detail="reset before the server saw it")


@dataclass(frozen=True)
class LoseReply(CommandFault):
    """Forward the selected command; when the server's reply comes, reset the client connection instead of
    delivering it. The server has applied the command (for ``EXEC``: the whole transaction)."""

    name: ClassVar[str] = "lose_reply"

    def act(self, command: Command, context: CommandContext) -> Verdict | None:
        return Verdict.lose_reply(detail="forwarded; reply will be replaced by a reset")


@dataclass(frozen=True)
class DelayReply(CommandFault):
    """Hold the reply to the selected command for ``delay_ms`` (counted from when the reply reached the proxy).
    Replies to later commands on the connection wait behind it, as they would behind a slow server."""

    name: ClassVar[str] = "delay_reply"

    delay_ms: float

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_non_negative(self, "delay_ms", self.delay_ms)

    def act(self, command: Command, context: CommandContext) -> Verdict | None:
        return Verdict.delay_reply(self.delay_ms, detail=f"reply held {self.delay_ms} ms")


@dataclass(frozen=True)
class CutReply(CommandFault):
    """Deliver only the first ``keep_bytes`` of the server's reply to the selected command (``None``: half of it,
    at least 1 byte, never all of it), then reset the connection. The server has applied the command."""

    name: ClassVar[str] = "cut_reply"

    keep_bytes: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.keep_bytes is not None and self.keep_bytes < 1:
            raise ValueError(f"CutReply.keep_bytes must be >= 1 or None, got {self.keep_bytes!r}")

    def act(self, command: Command, context: CommandContext) -> Verdict | None:
        kept = "half" if self.keep_bytes is None else f"{self.keep_bytes} bytes"
        return Verdict.cut_reply(self.keep_bytes, detail=f"{kept} of the reply, then reset")
