"""Faults that end or stall connections: reset_peer, timeout, blackhole, limit_data, slow_close, down.

Toxiproxy parity, with two deliberate differences: ``timeout`` and ``reset_peer`` start counting when their first
chunk arrives (a fault here only runs when data flows), and ``blackhole`` (drop silently, never close) is separate
from ``timeout`` (hold, then close; release if removed first).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import ClassVar

from sessionkv.testing.faults.base import ByteFault, ProxyFault, Stream, _check_non_negative

__all__ = ["Blackhole", "Down", "LimitData", "ResetPeer", "SlowClose", "Timeout"]


@dataclass(frozen=True)
class ResetPeer(ByteFault):
    """Reset the connection (TCP RST on both sides: ``ConnectionResetError`` / "connection reset by peer") at the
    first chunk that arrives ``timeout_ms`` or more after the connection was accepted; that chunk is not forwarded.
    Earlier chunks pass. ``timeout_ms=0`` resets at the first chunk."""

    name: ClassVar[str] = "reset_peer"

    timeout_ms: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_non_negative(self, "timeout_ms", self.timeout_ms)

    async def pipe(self, data: bytes, stream: Stream) -> None:
        if data and stream.arrival_ns - stream.opened_ns >= self.timeout_ms * 1e6:
            stream.reset(f"RST after {(stream.arrival_ns - stream.opened_ns) / 1e6:.1f} ms")
            return
        await stream.send(data)


@dataclass(frozen=True)
class Timeout(ByteFault):
    """Hold every chunk (nothing gets through). If ``timeout_ms > 0``, close the connection ``timeout_ms`` after the
    first held chunk; with 0 it stays open. If the fault is removed before, the held data flows on, late and in
    order (a command held this way still runs on the server when released)."""

    name: ClassVar[str] = "timeout"

    timeout_ms: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_non_negative(self, "timeout_ms", self.timeout_ms)

    async def pipe(self, data: bytes, stream: Stream) -> None:
        if "deadline_ns" not in stream.state:
            stream.state["deadline_ns"] = time.monotonic_ns() + int(self.timeout_ms * 1e6)
            stream.note("holding data" + (f", closing in {self.timeout_ms} ms" if self.timeout_ms else ""))
        if self.timeout_ms:
            remaining_s = max(0.0, (stream.state["deadline_ns"] - time.monotonic_ns()) / 1e9)
            if not await stream.wait_removed(remaining_s):
                stream.close(f"timed out after {self.timeout_ms} ms")
                return
        else:
            await stream.wait_removed(None)
        await stream.send(data)


@dataclass(frozen=True)
class Blackhole(ByteFault):
    """Silently discard every chunk, forever: the connection stays open and nothing arrives."""

    name: ClassVar[str] = "blackhole"

    async def pipe(self, data: bytes, stream: Stream) -> None:
        stream.note_once("discarding data")


@dataclass(frozen=True)
class LimitData(ByteFault):
    """Forward at most ``limit_bytes`` in this direction of the connection, then close it (FIN on both sides)."""

    name: ClassVar[str] = "limit_data"

    limit_bytes: int

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.limit_bytes < 0:
            raise ValueError(f"LimitData.limit_bytes must be >= 0, got {self.limit_bytes!r}")

    async def pipe(self, data: bytes, stream: Stream) -> None:
        seen = stream.state.get("bytes", 0)
        allowed = self.limit_bytes - seen
        if len(data) < allowed or not data:
            stream.state["bytes"] = seen + len(data)
            await stream.send(data)
            return
        if allowed > 0:
            stream.state["bytes"] = self.limit_bytes
            await stream.send(data[:allowed])
        stream.close(f"limit of {self.limit_bytes} bytes reached")


@dataclass(frozen=True)
class SlowClose(ByteFault):
    """Delay the end of stream by ``delay_ms``: when one side closes, the other sees it that much later."""

    name: ClassVar[str] = "slow_close"

    delay_ms: float

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_non_negative(self, "delay_ms", self.delay_ms)

    async def pipe(self, data: bytes, stream: Stream) -> None:
        if not data:
            stream.note(f"delaying close by {self.delay_ms} ms")
            await asyncio.sleep(self.delay_ms / 1e3)
        await stream.send(data)


@dataclass(frozen=True)
class Down(ProxyFault):
    """The proxy is down while this fault is installed: its listening socket is closed, so new connections are
    refused (``ECONNREFUSED``). With ``cut_existing=True`` open connections are reset too. Removing it listens
    again on the same port. ``connection`` and ``probability`` do not apply."""

    name: ClassVar[str] = "down"

    cut_existing: bool = False
