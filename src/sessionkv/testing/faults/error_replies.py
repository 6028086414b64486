"""Error replies instead of the server's: ``error_reply`` answers selected commands with a Redis error, unsent.

The command never reaches the server. Presets name the errors a real server gives under stress, with its own
wording, so that client libraries map them to the same exception classes they would in production (redis-py:
``loading`` → ``BusyLoadingError``, ``readonly`` → ``ReadOnlyError``, ``oom`` → ``OutOfMemoryError``, ``tryagain`` →
``TryAgainError``, ``masterdown`` → ``MasterDownError``, ``maxclients`` → ``ConnectionError``, ``busy`` and ``err`` →
``ResponseError``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

from sessionkv.testing.faults.base import Command, CommandContext, CommandFault, Verdict
from sessionkv.testing.faults.resp import encode_error

__all__ = ["ERROR_PRESETS", "ErrorReply"]

ERROR_PRESETS: Final[dict[str, str]] = {
    "err": "ERR injected fault",
    "loading": "LOADING Redis is loading the dataset in memory",
    "readonly": "READONLY You can't write against a read only replica.",
    "busy": "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
    "oom": "OOM command not allowed when used memory > 'maxmemory'.",
    "masterdown": "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
    "tryagain": "TRYAGAIN Multiple keys request during rehashing of slot",
    "maxclients": "ERR max number of clients reached",
}


@dataclass(frozen=True)
class ErrorReply(CommandFault):
    """Answer each selected command with ``error`` and do not forward it.

    ``error``: a preset name (``err``, ``loading``, ``readonly``, ``busy``, ``oom``, ``masterdown``, ``tryagain``,
    ``maxclients``) or a full error line such as ``"NOPERM this user has no permissions"`` (its first word is the
    error code). ``close_after``: close the connection after the reply; ``None`` means "as the real server does",
    i.e. only for ``maxclients``.
    """

    name: ClassVar[str] = "error_reply"

    error: str = "err"
    close_after: bool | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.error.strip():
            raise ValueError(f"ErrorReply.error must be a preset ({', '.join(ERROR_PRESETS)}) or an error line")

    @property
    def message(self) -> str:
        return ERROR_PRESETS.get(self.error.lower(), self.error)

    def act(self, command: Command, context: CommandContext) -> Verdict | None:
        close_after = self.close_after if self.close_after is not None else self.error.lower() == "maxclients"
        return Verdict.error(encode_error(self.message), close_after=close_after, detail=self.message)
