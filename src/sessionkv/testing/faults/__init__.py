"""Fault injection for Redis clients: a TCP proxy that breaks the connection or the protocol on demand.

``RedisFaultProxy`` sits between a client and a real redis-server; faults are small objects added and removed at run
time, each acting on bytes (:class:`ByteFault`) or on RESP commands and replies (:class:`CommandFault`). Every fault
is addressable by name (:data:`FAULTS`, :func:`parse_fault_spec`). See docs/fault-injection.md.
"""

try:
    import hiredis  # noqa: F401 - the RESP framing needs it: say which extra provides it
except ModuleNotFoundError as _missing:
    from sessionkv.testing import TESTING_EXTRA_HINT

    raise ModuleNotFoundError(
        f"sessionkv.testing.faults needs {_missing.name!r}, which is not installed: {TESTING_EXTRA_HINT}",
        name=_missing.name,
    ) from _missing

from sessionkv.testing.faults.base import (
    ByteFault,
    Command,
    CommandContext,
    CommandFault,
    Direction,
    Fault,
    ProxyFault,
    Stream,
    Verdict,
)
from sessionkv.testing.faults.disconnect import Blackhole, Down, LimitData, ResetPeer, SlowClose, Timeout
from sessionkv.testing.faults.error_replies import ERROR_PRESETS, ErrorReply
from sessionkv.testing.faults.network import Bandwidth, Latency, Slicer
from sessionkv.testing.faults.proxy import ConnectionInfo, FaultHandle, RedisFaultProxy
from sessionkv.testing.faults.registry import FAULTS, fault_class, fault_parameters, parse_fault_spec, register
from sessionkv.testing.faults.replies import CutReply, DelayReply, DropCommand, LoseReply
from sessionkv.testing.faults.scan import ScanDuplicates, ScanEmptyPages
from sessionkv.testing.faults.transcript import Transcript, TranscriptEvent

__all__ = [
    "ERROR_PRESETS",
    "FAULTS",
    "Bandwidth",
    "Blackhole",
    "ByteFault",
    "Command",
    "CommandContext",
    "CommandFault",
    "ConnectionInfo",
    "CutReply",
    "DelayReply",
    "Direction",
    "Down",
    "DropCommand",
    "ErrorReply",
    "Fault",
    "FaultHandle",
    "Latency",
    "LimitData",
    "LoseReply",
    "ProxyFault",
    "RedisFaultProxy",
    "ResetPeer",
    "ScanDuplicates",
    "ScanEmptyPages",
    "Slicer",
    "SlowClose",
    "Stream",
    "Timeout",
    "Transcript",
    "TranscriptEvent",
    "Verdict",
    "fault_class",
    "fault_parameters",
    "parse_fault_spec",
    "register",
]
