"""Faults are addressable by name; specs are parsed into fault objects, nonsense is rejected at once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest

from sessionkv.testing.faults import (
    FAULTS,
    Command,
    CommandContext,
    CommandFault,
    Down,
    ErrorReply,
    Latency,
    LoseReply,
    Verdict,
    fault_class,
    parse_fault_spec,
    register,
)


def test_every_fault_family_is_registered_by_name() -> None:
    assert set(FAULTS) >= {
        "latency",
        "bandwidth",
        "slicer",
        "reset_peer",
        "timeout",
        "blackhole",
        "limit_data",
        "slow_close",
        "down",
        "error_reply",
        "drop_command",
        "lose_reply",
        "delay_reply",
        "cut_reply",
        "scan_empty_pages",
        "scan_duplicates",
    }
    assert all(cls.name == name for name, cls in FAULTS.items())


def test_spec_parameters_are_converted_to_their_types() -> None:
    assert parse_fault_spec("latency:latency_ms=100,jitter_ms=10,direction=upstream") == Latency(
        100, jitter_ms=10, direction="upstream"
    )
    assert parse_fault_spec("error_reply:error=loading,command=GET,connection=worker-1") == ErrorReply(
        error="loading", command="GET", connection="worker-1"
    )
    assert parse_fault_spec("lose_reply: command=EXEC , nth=2, connection=3") == LoseReply(
        command="EXEC", nth=2, connection=3
    )
    assert parse_fault_spec("down") == Down()
    assert parse_fault_spec("down:cut_existing=yes") == Down(cut_existing=True)
    assert parse_fault_spec("error_reply:close_after=none") == ErrorReply(close_after=None)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nosuch", "unknown fault 'nosuch'"),
        ("latency:latency_ms", "expected param=value"),
        ("latency:latency=5", "has no parameter 'latency'"),
        ("latency:latency_ms=fast", "latency_ms='fast'"),
        ("latency:latency_ms=-1", "must be a finite number >= 0"),
        ("latency:latency_ms=5,direction=sideways", "direction='sideways'"),
        ("latency", "missing 1 required positional argument"),
        ("error_reply:probability=2", "probability must be in [0, 1]"),
        ("lose_reply:nth=0", "nth must be an integer >= 1"),
    ],
)
def test_bad_specs_are_rejected_with_the_reason(spec: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_fault_spec(spec)
    assert message in str(info.value)


def test_custom_faults_can_be_registered_and_names_are_unique() -> None:
    @dataclass(frozen=True)
    class Pong(CommandFault):
        name: ClassVar[str] = "test_pong_everything"

        def act(self, command: Command, context: CommandContext) -> Verdict | None:
            return Verdict.synthetic(b"+PONG\r\n")

    try:
        register(Pong)
        assert fault_class("test_pong_everything") is Pong
        assert parse_fault_spec("test_pong_everything:command=GET") == Pong(command="GET")

        @dataclass(frozen=True)
        class Impostor(Pong):
            pass

        with pytest.raises(ValueError, match="already registered"):
            register(Impostor)
    finally:
        del FAULTS["test_pong_everything"]
