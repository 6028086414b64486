"""RESP framing: frames are found whole, whatever the split, in RESP2 and RESP3; garbage is rejected."""

from __future__ import annotations

import hiredis
import pytest

from sessionkv.testing.faults.resp import (
    RespError,
    decode_reply,
    describe_reply,
    encode_array,
    encode_command,
    encode_error,
    frame_end,
    parse_command,
)

REPLIES = [
    b"+OK\r\n",
    b"-ERR wrong\r\n",
    b":42\r\n",
    b"$5\r\nhello\r\n",
    b"$0\r\n\r\n",
    b"$-1\r\n",
    b"*-1\r\n",
    b"*0\r\n",
    b"*2\r\n$1\r\na\r\n*2\r\n:1\r\n$3\r\na\r\n\r\n",  # nested, with CRLF inside a bulk string
    b"_\r\n",
    b"#t\r\n",
    b",1.5\r\n",
    b"(12345678901234567890\r\n",
    b"!3\r\nbad\r\n",
    b"=7\r\ntxt:abc\r\n",
    b"%2\r\n+a\r\n:1\r\n+b\r\n*1\r\n:2\r\n",
    b"~2\r\n+x\r\n+y\r\n",
    b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nm\r\n",
    b"|1\r\n+ttl\r\n:3\r\n$1\r\nv\r\n",  # an attribute, then the value it annotates
]


@pytest.mark.parametrize("frame", REPLIES)
def test_frame_end_finds_each_reply_whole_and_never_early(frame: bytes) -> None:
    stream = frame + b"+NEXT\r\n"
    assert frame_end(stream, 0) == len(frame)
    assert frame_end(stream, len(frame)) == len(stream)
    for cut in range(len(frame)):
        assert frame_end(frame[:cut], 0) == -1, f"frame reported complete after {cut} of {len(frame)} bytes"


def test_frame_end_agrees_with_hiredis_on_a_pipelined_stream() -> None:
    stream = b"".join(REPLIES[:9])
    reader = hiredis.Reader()
    reader.feed(stream)
    pos = 0
    while pos < len(stream):
        end = frame_end(stream, pos)
        assert decode_reply(stream[pos:end]) == reader.gets() or stream[pos] == ord("-")
        pos = end
    assert reader.gets() is False


@pytest.mark.parametrize("garbage", [b"?what\r\n", b"$abc\r\nxx\r\n", b"$2\r\nabcd\r\n", b"*?\r\n"])
def test_frame_end_rejects_what_is_not_resp(garbage: bytes) -> None:
    with pytest.raises(RespError):
        frame_end(garbage, 0)


def test_parse_command_reads_arrays_and_inline_commands_and_waits_for_the_rest() -> None:
    frame = encode_command([b"SET", b"k", b"a\r\nb"])
    assert parse_command(frame + b"*1", 0) == ([b"SET", b"k", b"a\r\nb"], len(frame))
    for cut in range(1, len(frame)):
        assert parse_command(frame[:cut], 0) is None
    assert parse_command(b"PING  hello\r\n", 0) == ([b"PING", b"hello"], 13)
    assert parse_command(b"PING", 0) is None
    assert parse_command(b"\r\n", 0) == ([], 2)


def test_parse_command_rejects_non_bulk_arguments() -> None:
    with pytest.raises(RespError):
        parse_command(b"*1\r\n:1\r\n", 0)


def test_encoders_produce_what_hiredis_reads_back() -> None:
    assert decode_reply(encode_array([b"a", b"", b"\r\n"])) == [b"a", b"", b"\r\n"]
    error = decode_reply(encode_error("BUSY line\r\nbreak"))
    assert isinstance(error, hiredis.ReplyError)
    assert str(error) == "BUSY line  break"
    assert describe_reply(b"$3\r\nabc\r\n") == "b'abc'"
