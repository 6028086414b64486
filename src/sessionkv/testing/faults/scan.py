"""Hostile but legal SCAN replies (SCAN, SSCAN, HSCAN, ZSCAN).

Redis only promises that a full iteration returns every element present from start to end *at least once*; it may
return an element several times and may return empty pages with a non-zero cursor. Clients that stop on an empty page
or count elements without de-duplicating are wrong, but rarely see it against a small test keyspace. These faults make
it happen on every selected page, without breaking the promise: nothing is dropped and iterations still end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

from sessionkv.testing.faults.base import Command, CommandContext, CommandFault, Verdict
from sessionkv.testing.faults.resp import decode_reply, encode_array, encode_command

__all__ = ["SCAN_COMMANDS", "ScanDuplicates", "ScanEmptyPages"]

SCAN_COMMANDS: Final = frozenset({"SCAN", "SSCAN", "HSCAN", "ZSCAN"})
_MAX_REMEMBERED_PAGES: Final = 1_000


def _cursor_index(command: Command) -> int:
    return 1 if command.name == "SCAN" else 2


def _cursor_of(command: Command) -> bytes | None:
    index = _cursor_index(command)
    return command.args[index] if len(command.args) > index else None


def _page_key(command: Command, cursor: bytes) -> bytes:
    """Names one page of one iteration on one connection: the connection, the command with every argument but the
    cursor (name, key, MATCH, COUNT, TYPE: two iterations differing in any of them are different iterations), and the
    real cursor the page starts at. Length-prefixed, so no two different tuples share a key."""
    index = _cursor_index(command)
    args = command.args
    identity = [b"%d" % command.connection, args[0].upper(), *args[1:index], *args[index + 1 :]]
    return encode_command([*identity, cursor])


@dataclass(frozen=True)
class ScanEmptyPages(CommandFault):
    """Answer the selected SCAN-family command with an empty page and a new non-zero cursor, without asking the
    server. When the client continues with that cursor, the proxy sends the server the cursor the client had asked
    for, so the iteration resumes where it was. Never two empty pages in a row for the same position, so an
    iteration always progresses."""

    name: ClassVar[str] = "scan_empty_pages"
    default_commands: ClassVar[frozenset[str] | None] = SCAN_COMMANDS

    def act(self, command: Command, context: CommandContext) -> Verdict | None:
        cursor = _cursor_of(command)
        if cursor is None or context.is_fake_scan_cursor(cursor):
            return None
        fake = context.fake_scan_cursor(cursor)
        reply = b"*2\r\n$%d\r\n%b\r\n*0\r\n" % (len(fake), fake)
        return Verdict.synthetic(reply, detail=f"empty page, cursor {fake.decode()} stands for {cursor.decode()}")


@dataclass(frozen=True)
class ScanDuplicates(CommandFault):
    """Forward the selected SCAN-family command and return its page with every element twice, followed by the
    elements of the previous page of the same iteration. Pairs (HSCAN field/value, ZSCAN member/score) stay together.

    An iteration is one connection's sequence of calls with the same command, key and options (MATCH, COUNT, TYPE),
    each continuing from the cursor the previous page returned: concurrent iterations, on one connection or on
    several, never see each other's elements."""

    name: ClassVar[str] = "scan_duplicates"
    default_commands: ClassVar[frozenset[str] | None] = SCAN_COMMANDS

    def act(self, command: Command, context: CommandContext) -> Verdict | None:
        cursor = _cursor_of(command)
        if cursor is None:
            return None
        memory = context.memory
        # The page before this one in the same iteration ended with the cursor the client now sends (translated, if
        # scan_empty_pages had replaced it by a fake one). Cursor 0 starts a new iteration: nothing to repeat.
        real_cursor = context.real_scan_cursor(cursor)
        previous = memory.pop(_page_key(command, real_cursor), []) if real_cursor != b"0" else []

        def rewrite(frame: bytes) -> bytes:
            value = decode_reply(frame)
            if not (isinstance(value, list) and len(value) == 2 and isinstance(value[1], list)):
                return frame  # an error or something unexpected: leave it alone
            next_cursor, elements = value
            if not isinstance(next_cursor, bytes) or not all(isinstance(e, bytes) for e in elements):
                return frame
            if next_cursor != b"0":
                if len(memory) >= _MAX_REMEMBERED_PAGES:
                    del memory[next(iter(memory))]
                memory[_page_key(command, next_cursor)] = list(elements)
            page = [*elements, *elements, *previous]
            return b"*2\r\n$%d\r\n%b\r\n%b" % (len(next_cursor), next_cursor, encode_array(page))

        return Verdict.rewrite(rewrite, detail=f"page doubled, plus {len(previous)} elements of the previous page")
