"""RESP framing for the fault proxy: where frames end, commands as argument lists, and the few encoders faults need.

Frame boundaries are found here, in Python, rather than with ``hiredis.Reader``: the proxy must forward (or cut, or
hold back) the *original bytes* of each frame, and ``hiredis.Reader`` does not say how many bytes a parsed reply used
(its ``len()`` is the size of its internal buffer, consumed bytes included, until it compacts). Scanning only reads
headers and skips bulk payloads by length, so it costs a few operations per element whatever the payload size.
Decoding a complete reply into Python values (for SCAN pages and transcript descriptions) is done by hiredis.

Both RESP2 and RESP3 are understood, including attributes (``|``) and pushes (``>``). Streamed aggregates
(``*?``, ``$?``) are not: they raise :class:`RespError`, and the proxy then falls back to raw pass-through for that
connection.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import hiredis

__all__ = [
    "RespError",
    "decode_reply",
    "describe_reply",
    "encode_array",
    "encode_command",
    "encode_error",
    "frame_end",
    "parse_command",
]

_SIMPLE: Final = frozenset(b"+-:_#,(")
_BULK: Final = frozenset(b"$!=")
_AGGREGATE: Final = frozenset(b"*~>")
_MAP: Final = ord("%")
_ATTRIBUTE: Final = ord("|")
_ARRAY: Final = ord("*")
_DOLLAR: Final = ord("$")
_MAX_HEADER_BYTES: Final = 64 * 1024  # a header line longer than this is garbage, not a partial frame
_MAX_INLINE_BYTES: Final = 64 * 1024  # redis-server's own limit for inline commands


class RespError(ValueError):
    """The bytes are not valid RESP (or use a form this module does not frame, such as streamed aggregates)."""


def frame_end(buf: bytes, pos: int = 0) -> int:
    """Return the offset just past the complete RESP frame starting at ``pos``, or -1 if the frame is incomplete.

    Raises :class:`RespError` if the bytes cannot be a RESP frame. Never reads past ``len(buf)``.
    """
    # Hot path (every reply of every connection): helpers are inlined on purpose.
    n = len(buf)
    find = buf.find
    remaining = 1  # values still to skip before the frame is complete
    try:
        while remaining:
            if pos >= n:
                return -1
            kind = buf[pos]
            nl = find(b"\r\n", pos + 1)
            if nl < 0:
                _check_header_length(buf, pos)
                return -1
            if kind in _SIMPLE:
                pos = nl + 2
                remaining -= 1
            elif kind in _BULK:
                size = int(buf[pos + 1 : nl])
                if size < 0:  # RESP2 null bulk string
                    pos = nl + 2
                else:
                    end = nl + 4 + size
                    if end > n:
                        return -1
                    if buf[end - 2 : end] != b"\r\n":
                        raise RespError(f"bulk string of {size} bytes at offset {pos} is not followed by CRLF")
                    pos = end
                remaining -= 1
            elif kind in _AGGREGATE:
                count = int(buf[pos + 1 : nl])
                pos = nl + 2
                remaining += max(count, 0) - 1  # a null (-1) or empty aggregate is one complete value
            elif kind == _MAP:
                count = int(buf[pos + 1 : nl])
                pos = nl + 2
                remaining += 2 * max(count, 0) - 1
            elif kind == _ATTRIBUTE:
                count = int(buf[pos + 1 : nl])
                pos = nl + 2
                remaining += 2 * max(count, 0)  # the attribute's pairs, then the value it annotates
            else:
                raise RespError(f"unexpected RESP type byte {bytes([kind])!r} at offset {pos}")
    except ValueError as exc:
        if isinstance(exc, RespError):
            raise
        raise RespError(f"invalid RESP length at offset {pos}: {exc}") from None
    return pos


def _check_header_length(buf: bytes, pos: int) -> None:
    if len(buf) - pos > _MAX_HEADER_BYTES:
        raise RespError(f"no CRLF within {_MAX_HEADER_BYTES} bytes at offset {pos}")


def parse_command(buf: bytes, pos: int = 0) -> tuple[list[bytes], int] | None:
    """Parse one client command starting at ``pos``: ``(arguments, end offset)``, or ``None`` if incomplete.

    Commands are arrays of bulk strings (what every client library sends) or inline commands (a line of words, as
    typed in telnet). An empty inline line yields an empty argument list, which redis-server ignores.
    """
    n = len(buf)
    find = buf.find
    if buf[pos] != _ARRAY:
        nl = find(b"\n", pos)
        if nl < 0:
            if n - pos > _MAX_INLINE_BYTES:
                raise RespError(f"inline command longer than {_MAX_INLINE_BYTES} bytes at offset {pos}")
            return None
        return buf[pos:nl].split(), nl + 1
    # Hot path (every command of every connection): helpers are inlined on purpose.
    try:
        nl = find(b"\r\n", pos + 1)
        if nl < 0:
            _check_header_length(buf, pos)
            return None
        count = int(buf[pos + 1 : nl])
        p = nl + 2
        args: list[bytes] = []
        append = args.append
        for _ in range(count):
            if p >= n:
                return None
            if buf[p] != _DOLLAR:
                raise RespError(f"command argument at offset {p} is not a bulk string")
            nl = find(b"\r\n", p + 1)
            if nl < 0:
                _check_header_length(buf, p)
                return None
            start = nl + 2
            end = start + int(buf[p + 1 : nl])
            if end + 2 > n:
                return None
            append(buf[start:end])
            p = end + 2
    except ValueError as exc:
        if isinstance(exc, RespError):
            raise
        raise RespError(f"invalid RESP length in the command at offset {pos}: {exc}") from None
    return args, p


def encode_command(args: Iterable[bytes]) -> bytes:
    """A command as a RESP array of bulk strings."""
    return encode_array(args)


def encode_array(items: Iterable[bytes]) -> bytes:
    """A RESP array of bulk strings."""
    parts = [b"$%d\r\n%b\r\n" % (len(item), item) for item in items]
    return b"*%d\r\n%b" % (len(parts), b"".join(parts))


def encode_error(message: str) -> bytes:
    """A RESP simple error; CR and LF in ``message`` become spaces (they cannot appear in a simple error)."""
    clean = message.replace("\r", " ").replace("\n", " ")
    return b"-" + clean.encode() + b"\r\n"


def decode_reply(frame: bytes) -> object:
    """Decode one complete reply frame with hiredis. Error replies come back as ``hiredis.ReplyError`` instances."""
    reader = hiredis.Reader()
    reader.feed(frame)
    value: object = reader.gets()
    if value is False:
        raise RespError(f"incomplete reply frame {frame[:40]!r}")
    return value


def describe_reply(frame: bytes, limit: int = 120) -> str:
    """A short human-readable rendering of a (possibly truncated) reply frame, for transcripts and reports."""
    try:
        text = repr(decode_reply(frame))
    except (RespError, hiredis.ProtocolError):
        text = repr(frame)
    return text if len(text) <= limit else text[: limit - 3] + "..."
