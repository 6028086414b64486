"""Network-quality faults on bytes: latency (with jitter), bandwidth limit, slicer. Toxiproxy parity.

Each acts on every chunk of its direction (``downstream`` by default) of every selected connection.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import ClassVar

from sessionkv.testing.faults.base import ByteFault, Stream, _check_non_negative

__all__ = ["Bandwidth", "Latency", "Slicer"]


@dataclass(frozen=True)
class Latency(ByteFault):
    """Delay every chunk by ``latency_ms`` ± ``jitter_ms`` (uniform, from the seeded RNG), counted from when the
    proxy read it. Chunks keep their order and a later chunk never overtakes an earlier one, so pipelined traffic is
    delayed, not serialised: a request/reply round trip takes at least ``latency_ms - jitter_ms`` more per faulted
    direction."""

    name: ClassVar[str] = "latency"

    latency_ms: float
    jitter_ms: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_non_negative(self, "latency_ms", self.latency_ms)
        _check_non_negative(self, "jitter_ms", self.jitter_ms)

    async def pipe(self, data: bytes, stream: Stream) -> None:
        delay_ms = self.latency_ms
        if self.jitter_ms:
            delay_ms = max(0.0, delay_ms + stream.rng.uniform(-self.jitter_ms, self.jitter_ms))
        stream.note_once(f"delaying chunks by {self.latency_ms} ms ± {self.jitter_ms} ms")
        wait_ns = stream.arrival_ns + int(delay_ms * 1e6) - time.monotonic_ns()
        if wait_ns > 0:
            await asyncio.sleep(wait_ns / 1e9)
        await stream.send(data)


@dataclass(frozen=True)
class Bandwidth(ByteFault):
    """Limit throughput to ``rate_kbps`` kilobytes per second (1 KB = 1000 bytes; Toxiproxy's unit, note: *bytes*).

    Data is sent in slices of at most 100 ms worth, each after the time it takes at that rate, so N bytes arrive
    no sooner than N / (rate_kbps * 1000) seconds after they reached the proxy."""

    name: ClassVar[str] = "bandwidth"

    rate_kbps: float

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_non_negative(self, "rate_kbps", self.rate_kbps)
        if self.rate_kbps <= 0:
            raise ValueError(f"Bandwidth.rate_kbps must be > 0 (kilobytes per second), got {self.rate_kbps!r}")

    async def pipe(self, data: bytes, stream: Stream) -> None:
        if not data:
            await stream.send(data)
            return
        stream.note_once(f"limiting throughput to {self.rate_kbps} KB/s")
        bytes_per_s = self.rate_kbps * 1000.0
        slice_bytes = max(1, int(bytes_per_s / 10))
        for start in range(0, len(data), slice_bytes):
            piece = data[start : start + slice_bytes]
            await asyncio.sleep(len(piece) / bytes_per_s)  # the time the slice takes on the wire, then it arrives
            await stream.send(piece)


@dataclass(frozen=True)
class Slicer(ByteFault):
    """Split every chunk into pieces of ``average_size_bytes`` ± ``size_variation_bytes`` (seeded RNG), written
    separately with ``delay_us`` microseconds between them. Without a delay the kernel may coalesce the pieces again;
    with one, a client's reads see frames split at arbitrary points."""

    name: ClassVar[str] = "slicer"

    average_size_bytes: int = 1
    size_variation_bytes: int = 0
    delay_us: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.average_size_bytes < 1:
            raise ValueError(f"Slicer.average_size_bytes must be >= 1, got {self.average_size_bytes!r}")
        if not 0 <= self.size_variation_bytes < self.average_size_bytes:
            raise ValueError(
                "Slicer.size_variation_bytes must be >= 0 and < average_size_bytes, "
                f"got {self.size_variation_bytes!r} with average_size_bytes={self.average_size_bytes!r}"
            )
        _check_non_negative(self, "delay_us", self.delay_us)

    async def pipe(self, data: bytes, stream: Stream) -> None:
        if not data:
            await stream.send(data)
            return
        variation = f" ± {self.size_variation_bytes}" if self.size_variation_bytes else ""
        stream.note_once(
            f"slicing chunks into {self.average_size_bytes}{variation} byte pieces, {self.delay_us} µs apart"
        )
        start = 0
        while start < len(data):
            size = self.average_size_bytes
            if self.size_variation_bytes:
                size += stream.rng.randint(-self.size_variation_bytes, self.size_variation_bytes)
            await stream.send(data[start : start + size])
            start += size
            if self.delay_us and start < len(data):
                await asyncio.sleep(self.delay_us / 1e6)
