"""RedisFaultProxy: an asyncio TCP proxy in front of one Redis server that injects faults on demand.

One upstream connection per client connection. Each direction of a connection goes through two stages:

1. *frames* (when ``resp=True``): commands and replies are framed (:mod:`.resp`), recorded in the transcript, paired
   (the n-th reply answers the n-th command still waiting) and offered to the :class:`CommandFault` s;
2. *bytes*: what stage 1 lets through is offered, chunk by chunk, to the :class:`ByteFault` s targeting that
   direction, then written to the socket.

With no fault targeting a connection, data is written straight through (no queue, no extra task). With no fault
installed that needs frames at all, stage 1 is deferred: chunks are forwarded on arrival and framed later, in arrival
order, when the transcript or the connections are read or a fault is added (``RedisFaultProxy._replay``), which gives
the same transcript and connection state as framing on arrival, at no per-frame cost while traffic flows. In that
state (and with ``resp=False``), ``_Side.data_received`` writes each chunk itself, without the per-chunk calls of the
general path (docs/fault-injection.md, "When pass-through is fast", says exactly when).

Runs on asyncio's event loop and on uvloop (which ``sessionkv proxy`` uses when installed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import struct
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Self, cast

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
from sessionkv.testing.faults.resp import RespError, encode_command, encode_error, frame_end, parse_command
from sessionkv.testing.faults.transcript import MAX_RECORDED_BYTES, EventKind, Transcript, TranscriptEvent, clip

__all__ = ["ConnectionInfo", "FaultHandle", "RedisFaultProxy"]

_log = logging.getLogger("sessionkv.testing.faults")
_new_tuple: Final = tuple.__new__

_PUSH: Final = ord(">")
_SCAN_CURSOR_INDEX: Final = {b"SCAN": 1, b"SSCAN": 2, b"HSCAN": 2, b"ZSCAN": 2}
# After these, one command no longer yields exactly one reply: stop pairing replies with commands on that connection.
# (UNSUBSCRIBE with n channels answers n times in RESP2; in RESP3 the (un)subscribe confirmations are pushes.)
_UNPAIRED_COMMANDS: Final = frozenset(
    {
        b"SUBSCRIBE",
        b"PSUBSCRIBE",
        b"SSUBSCRIBE",
        b"UNSUBSCRIBE",
        b"PUNSUBSCRIBE",
        b"SUNSUBSCRIBE",
        b"MONITOR",
        b"SYNC",
        b"PSYNC",
    }
)
# Fake SCAN cursors live far above the cursors redis-server hands out for any realistic keyspace, below 2**64.
_FAKE_CURSOR_BASE: Final = 18_000_000_000_000_000_000
_MAX_FAKE_CURSORS: Final = 10_000
_FAKE_CURSOR_FLOOR: Final = str(_FAKE_CURSOR_BASE).encode()
_EXPIRED_CURSOR: Final = b"expired"
_EXPIRED_CURSOR_REPLY: Final = encode_error(
    f"ERR invalid cursor (a fake SCAN cursor of the sessionkv proxy, forgotten after {_MAX_FAKE_CURSORS} newer ones)"
)
_UNREACHABLE_LOG_INTERVAL_S: Final = 10.0
# Pass-through traffic not framed yet is kept up to this many bytes per transcript event the transcript may hold.
_BACKLOG_BYTES_PER_EVENT: Final = 512
_FLUSH_BEFORE_RESET_S: Final = 5.0
_LINGER_ZERO: Final = struct.pack("ii", 1, 0)
# MULTI/EXEC bookkeeping (redis 7 semantics): the commands that open or end a transaction on the server.
_TRANSACTION_COMMANDS: Final = frozenset({b"MULTI", b"EXEC", b"DISCARD", b"RESET"})
_DISCARD: Final = encode_command([b"DISCARD"])
_EXECABORT: Final = encode_error("EXECABORT Transaction discarded because of previous errors.")
_EXEC_SENT_AS_DISCARD: Final = "EXEC sent upstream as DISCARD (transaction ended, the server's +OK swallowed)"


class FaultHandle:
    """An installed fault, usable as a context manager that removes it on exit.

    ``applied``: how many times it acted (command faults: commands it acted on; byte faults: actions it recorded in
    the transcript, e.g. once per connection and direction for ``latency`` and ``slicer``; ``down``: once for closing
    the listener, plus once per open connection it reset with ``cut_existing``). ``matched``: how many commands its
    targeting selected (command faults only)."""

    def __init__(self, proxy: RedisFaultProxy, ident: int, fault: Fault) -> None:
        self.id = ident
        self.fault = fault
        self.applied = 0
        self.matched = 0
        self.memory: dict[bytes, list[bytes]] = {}
        self._proxy = proxy
        self._removed = asyncio.Event()
        self._rngs: dict[int, random.Random] = {}
        self._selected: dict[int, bool] = {}
        self._states: dict[tuple[int, str], dict[str, int]] = {}

    def __repr__(self) -> str:
        return f"FaultHandle(id={self.id}, fault={self.fault!r}, applied={self.applied})"

    @property
    def active(self) -> bool:
        return not self._removed.is_set()

    def remove(self) -> None:
        self._proxy.remove(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.remove()

    def rng(self, connection: int) -> random.Random:
        """This fault's RNG for one connection: a function of (proxy seed, handle id, connection index) only."""
        rng = self._rngs.get(connection)
        if rng is None:
            rng = self._rngs[connection] = random.Random(f"{self._proxy.seed}/{self.id}/{connection}")
        return rng

    def selects(self, connection: int) -> bool:
        """For byte faults: whether this connection is affected (decided once per connection)."""
        chosen = self._selected.get(connection)
        if chosen is None:
            probability = self.fault.probability
            chosen = probability >= 1.0 or self.rng(connection).random() < probability
            self._selected[connection] = chosen
        return chosen

    def state(self, connection: int, direction: str) -> dict[str, int]:
        key = (connection, direction)
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = {}
        return state


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    index: int
    client_name: str | None
    open: bool


@dataclass(slots=True)
class _Item:
    data: bytes
    arrival_ns: int
    not_before_ns: int = 0
    eof: bool = False
    then: Callable[[], None] | None = None


@dataclass(slots=True)
class _Pending:
    """A command waiting for its reply: the verdict that shapes the reply, or a reply the proxy made itself."""

    command: tuple[bytes, ...]
    """The command's arguments as recorded (long ones clipped)."""
    verdict: Verdict | None = None
    synthetic: bytes | None = None
    substitute: bytes | None = None
    """The client's reply in place of the server's (a ``DISCARD`` the proxy sent instead of ``EXEC``)."""


class _Stream(Stream):
    __slots__ = ("_handle", "_handles", "_index", "_item", "_out")

    def __init__(self, out: _Outbound, handles: Sequence[FaultHandle], index: int, item: _Item) -> None:
        link = out.link
        handle = handles[index]
        self._out = out
        self._handles = handles
        self._index = index
        self._item = item
        self._handle = handle
        self.connection = link.index
        self.direction = out.direction
        self.arrival_ns = item.arrival_ns
        self.opened_ns = link.opened_ns
        self.rng = handle.rng(link.index)
        self.state = handle.state(link.index, out.direction)

    async def send(self, data: bytes) -> None:
        await self._out.through(self._handles, self._index + 1, data, self._item)

    def reset(self, reason: str) -> None:
        self.note(reason)
        self._out.link.reset(f"{self._handle.fault.name}: {reason}")

    def close(self, reason: str) -> None:
        self.note(reason)
        self._out.link.close(f"{self._handle.fault.name}: {reason}")

    async def wait_removed(self, timeout_s: float | None) -> bool:
        try:
            await asyncio.wait_for(self._handle._removed.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def note(self, detail: str) -> None:
        handle = self._handle
        handle.applied += 1
        link = self._out.link
        link.proxy._record(link.index, "fault", fault=handle.fault.name, detail=f"{self.direction}: {detail}")


class _Side(asyncio.Protocol):
    """One socket of a link: the client's (accepted) or the server's (connected). Feeds bytes to the link and
    applies flow control: when this socket's write buffer is full, the other socket stops reading."""

    def __init__(self, proxy: RedisFaultProxy, role: str) -> None:
        self.proxy = proxy
        self.role = role
        self.from_client = role == "client"
        self.link: _Link | None = None
        self.out: _Outbound | None = None  # the direction this socket's bytes go (set with ``link``)
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.writable = asyncio.Event()
        self.writable.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (on uvloop it is not an ``asyncio.Transport`` subclass, but has the same methods)
        self.transport = cast(asyncio.Transport, transport)
        if self.role == "client":
            self.proxy._accept(self)

    def data_received(self, data: bytes) -> None:
        link = self.link
        if link is None or link.closed:
            return
        proxy = self.proxy
        out = self.out
        assert out is not None
        transport = out.sink.transport
        if transport is None:
            # The client's bytes before the upstream connection is open (uvloop starts reading an accepted socket
            # although connection_made paused it): kept, in order, until ``_Link.connect`` feeds them back.
            link.early.append(data)
            return
        # Fast pass-through, the hot path of every chunk when no fault acts on this direction: exactly what
        # ``link.arrive`` does in that state (write at once; when framing is deferred, queue the chunk to be framed
        # later), without its calls. ``in_backlog``: earlier chunks of this link await framing, so this one does too
        # (see ``_Link.arrive``); ``out.queue``/``out.busy``: earlier chunks are still held, this one goes after them.
        if (link.raw or link.in_backlog) and not proxy._byte_handles and not out.queue and not out.busy:
            transport.write(data)
            if not link.raw:
                proxy._defer(link, self.from_client, time.monotonic_ns(), data)
            return
        now = time.monotonic_ns()
        try:
            link.arrive(self.from_client, data, now)
        except Exception as exc:  # a fault's bug: never let it stop one direction silently
            link.crashed(f"{'commands' if self.role == 'client' else 'replies'}", exc)

    def eof_received(self) -> bool:
        link = self.link
        if link is not None:
            link.on_eof(self.role)
        return True  # keep the transport: the link decides when (and how) it closes

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        self.writable.set()
        link = self.link
        if link is not None:
            link.on_lost(self.role, exc)

    def pause_writing(self) -> None:
        self.writable.clear()
        peer = self.link.peer(self) if self.link is not None else None
        if peer is not None and peer.transport is not None and not peer.transport.is_closing():
            peer.transport.pause_reading()

    def resume_writing(self) -> None:
        self.writable.set()
        peer = self.link.peer(self) if self.link is not None else None
        if peer is not None and peer.transport is not None and not peer.transport.is_closing():
            peer.transport.resume_reading()


class _Outbound:
    """The sending side of one direction: byte faults, then the socket. Keeps chunks in order."""

    def __init__(self, link: _Link, direction: Direction, sink: _Side) -> None:
        self.link = link
        self.direction: Direction = direction
        self.sink = sink
        self.queue: deque[_Item] = deque()
        self.wakeup = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.busy = False

    def send(
        self,
        data: bytes,
        *,
        arrival_ns: int,
        not_before_ns: int = 0,
        eof: bool = False,
        then: Callable[[], None] | None = None,
    ) -> None:
        link = self.link
        if link.closed or link.proxy._replaying:  # replaying deferred chunks: they were forwarded on arrival
            return
        if (
            not self.queue
            and not self.busy
            and not not_before_ns
            and not link.proxy._byte_handles_for(link, self.direction)
        ):
            if eof:
                link.close(f"end of stream from the {'client' if self.direction == 'upstream' else 'server'}")
                return
            if data:
                transport = self.sink.transport
                assert transport is not None
                transport.write(data)
            if then is not None:
                then()
            return
        self.queue.append(_Item(data, arrival_ns, not_before_ns, eof, then))
        self.wakeup.set()
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        link = self.link
        try:
            while not link.closed:
                if not self.queue:
                    self.busy = False
                    self.wakeup.clear()
                    await self.wakeup.wait()
                    continue
                self.busy = True
                item = self.queue.popleft()
                if item.not_before_ns:
                    wait_ns = item.not_before_ns - time.monotonic_ns()
                    if wait_ns > 0:
                        await asyncio.sleep(wait_ns / 1e9)
                if item.eof or item.data:
                    handles = link.proxy._byte_handles_for(link, self.direction)
                    await self.through(handles, 0, b"" if item.eof else item.data, item)
                if item.then is not None and not link.closed:
                    item.then()
        except (ConnectionError, OSError) as exc:
            link.close(f"{self.direction} write failed: {exc!r}")
        except Exception as exc:  # a byte fault's bug: never let it stop this direction silently
            link.crashed(self.direction, exc)
        finally:
            self.busy = False

    async def through(self, handles: Sequence[FaultHandle], index: int, data: bytes, item: _Item) -> None:
        """Offer ``data`` to ``handles[index]``, or write it when every fault has had its turn."""
        link = self.link
        if link.closed:
            return
        if index < len(handles):
            fault = handles[index].fault
            assert isinstance(fault, ByteFault)
            await fault.pipe(data, _Stream(self, handles, index, item))
            return
        if not data:
            link.close(f"end of stream from the {'client' if self.direction == 'upstream' else 'server'}")
            return
        transport = self.sink.transport
        assert transport is not None
        transport.write(data)
        await self.sink.writable.wait()  # flow control: wait while the socket's write buffer is full


class _Context(CommandContext):
    __slots__ = ("_proxy",)

    def __init__(self, proxy: RedisFaultProxy, handle: FaultHandle, connection: int) -> None:
        self._proxy = proxy
        self.rng = handle.rng(connection)
        self.memory = handle.memory

    def fake_scan_cursor(self, real_cursor: bytes) -> bytes:
        return self._proxy._fake_scan_cursor(real_cursor)

    def real_scan_cursor(self, cursor: bytes) -> bytes:
        return self._proxy._fake_cursors.get(cursor, cursor)

    def is_fake_scan_cursor(self, cursor: bytes) -> bool:
        return cursor in self._proxy._fake_cursors


def _unsent_bytes(transport: asyncio.Transport) -> int:
    """Bytes written but not yet out of this socket: in the transport's buffer, plus (Linux) in the kernel's send queue
    not yet acknowledged by the peer."""
    waiting = transport.get_write_buffer_size()
    sock = transport.get_extra_info("socket")
    if sock is not None and sys.platform.startswith("linux"):
        import fcntl
        import termios

        with contextlib.suppress(OSError, ValueError):
            waiting += struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
    return waiting


async def _rst_once_sent(transport: asyncio.Transport, timeout_s: float) -> None:
    """RST ``transport`` once what was written to it has reached the peer (or after ``timeout_s``: a peer that does
    not read must not hold the reset back for ever)."""
    deadline = time.monotonic() + timeout_s
    while not transport.is_closing() and _unsent_bytes(transport) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.001)  # no event says "the kernel sent it all": poll
    _abort_with_rst(transport)


def _abort_with_rst(transport: asyncio.Transport | None) -> None:
    if transport is None or transport.is_closing():
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            # SO_LINGER with a zero timeout makes close() send RST instead of FIN: "connection reset by peer".
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
    transport.abort()


class _Link:
    """One client connection and its upstream connection."""

    def __init__(self, proxy: RedisFaultProxy, index: int, client: _Side) -> None:
        self.proxy = proxy
        self.index = index
        self.name: str | None = None
        self.client = client
        self.server = _Side(proxy, "server")
        self.server.link = self
        client.link = self
        self.to_server = _Outbound(self, "upstream", self.server)
        self.to_client = _Outbound(self, "downstream", client)
        client.out = self.to_server
        self.server.out = self.to_client
        self.pending: deque[_Pending] = deque()
        self.shaped_pending = 0  # entries of ``pending`` whose reply a fault shapes (or the proxy makes)
        self.raw = not proxy.resp
        self.stop_pairing = False  # set by a command after which replies no longer pair one-to-one with commands
        self.unpaired = False  # replies are passed through unpaired (no reply faults) from now on
        self.in_multi = False  # the server connection is inside MULTI (as far as the forwarded commands tell)
        self.multi_dirty = False  # the proxy rejected a command of the open transaction: EXEC must abort it
        self.closed = False
        self.opened_ns = time.monotonic_ns()
        self.connect_task: asyncio.Task[None] | None = None
        self.early: list[bytes] = []  # the client's chunks read before the upstream connection opened
        self.flush_task: asyncio.Task[None] | None = None  # a reset waiting for the client's data to leave
        self._client_rest = b""  # an incomplete frame waiting for more bytes
        self._server_rest = b""
        self._client_ahead = False  # ``_client_rest`` was already forwarded (by the deferred way)
        self._server_ahead = False
        self.in_backlog = False  # chunks of this connection wait in the proxy's backlog: later ones must follow them
        self.backlog_bytes = 0  # how many

    # -- lifecycle -------------------------------------------------------------------------------------------------

    def peer(self, side: _Side) -> _Side:
        return self.server if side is self.client else self.client

    async def connect(self) -> None:
        """Open the upstream connection, then let the client's bytes flow."""
        proxy = self.proxy
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(
                loop.create_connection(lambda: self.server, proxy.upstream_host, proxy.upstream_port),
                proxy.connect_timeout_s,
            )
        except (OSError, TimeoutError) as exc:
            reason = f"upstream {proxy.upstream_host}:{proxy.upstream_port} unreachable: {exc!r}"
            proxy._warn_unreachable(reason)
            self.close(reason)
            return
        except Exception as exc:  # never leave the client paused and unanswered
            self.crashed("the upstream connection", exc)
            return
        if self.closed:  # closed (proxy stopped, proxy down) while connecting
            assert self.server.transport is not None
            self.server.transport.close()
            return
        assert self.client.transport is not None
        early, self.early = self.early, []
        for chunk in early:
            if chunk:
                self.client.data_received(chunk)
            else:
                self.on_eof("client")
        self.client.transport.resume_reading()

    async def wait_closed(self) -> None:
        if self.connect_task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.connect_task
        for out in (self.to_server, self.to_client):
            if out.task is not None:
                out.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await out.task
        if self.flush_task is not None:
            await self.flush_task
        await self.client.lost
        if self.server.transport is not None:
            await self.server.lost

    def _finish(self, reason: str) -> bool:
        if self.closed:
            return False
        self.closed = True
        self.proxy._record(self.index, "close", detail=reason)
        current = asyncio.current_task()
        for out in (self.to_server, self.to_client):
            if out.task is not None and out.task is not current:
                out.task.cancel()
        return True

    def close(self, reason: str) -> None:
        """Close both sides (FIN after pending writes). Idempotent."""
        if self._finish(reason):
            for side in (self.client, self.server):
                if side.transport is not None:
                    side.transport.close()

    def reset(self, reason: str, *, flush_upstream: bool = False) -> None:
        """Reset both sides (RST). Idempotent. What was already written to the client (the kept part of a cut reply,
        the bytes a byte fault let through) reaches it first, within a bound; nothing read after this is forwarded.

        ``flush_upstream``: the server side is closed gracefully instead (what was written to it is delivered, then
        FIN), so that commands forwarded before the reset are run by the server; the client still sees a reset."""
        if self._finish(f"reset: {reason}"):
            client = self.client.transport
            if client is not None and not client.is_closing() and _unsent_bytes(client):
                client.pause_reading()
                self.flush_task = asyncio.get_running_loop().create_task(_rst_once_sent(client, _FLUSH_BEFORE_RESET_S))
            else:
                _abort_with_rst(client)
            if flush_upstream:
                if self.server.transport is not None:
                    self.server.transport.close()
            else:
                _abort_with_rst(self.server.transport)

    def crashed(self, where: str, exc: Exception) -> None:
        """A fault (or the proxy) raised ``exc`` while handling ``where``: log it, record it, close both sides."""
        reason = f"proxy error handling {where}: {exc!r}"
        _log.error("sessionkv fault proxy: connection #%d closed: %s", self.index, reason, exc_info=exc)
        self.close(reason)

    def abort(self) -> None:
        """Close both sockets at once, discarding unsent data (used when a graceful close does not finish)."""
        self._finish("aborted")
        for side in (self.client, self.server):
            if side.transport is not None:
                side.transport.abort()

    def on_eof(self, role: str) -> None:
        if role == "client" and self.server.transport is None:
            self.early.append(b"")  # end of stream, after the early chunks (see ``_Side.data_received``)
            return
        out = self.to_server if role == "client" else self.to_client
        out.send(b"", arrival_ns=time.monotonic_ns(), eof=True)

    def on_lost(self, role: str, exc: Exception | None) -> None:
        if exc is not None:
            self.reset(f"{role} connection failed: {exc!r}")
        else:
            self.close(f"{role} connection closed")
        if self.client.lost.done() and (self.server.transport is None or self.server.lost.done()):
            self.proxy._forget(self)

    # -- reading ---------------------------------------------------------------------------------------------------

    # Three ways a chunk goes through (see RedisFaultProxy's "pass-through" notes):
    # - framed: split into frames, each recorded, paired and offered to the faults, then forwarded;
    # - deferred: forwarded as it came, and queued in the proxy's backlog to be framed later (no fault can act on it);
    # - ahead: forwarded as it came, then framed at once without faults (the partial frame it continues was already
    #   forwarded by the deferred way, so the chunk is past the point where a fault could still act on it).

    def _start_deferring(self) -> bool:
        """Whether chunks may now be forwarded before they are framed (nothing a fault shapes is under way); if so,
        first forward what framing held back (partial frames: no fault is left to act on them)."""
        if self.shaped_pending or self.multi_dirty:
            return False
        now = time.monotonic_ns()
        if self._client_rest and not self._client_ahead:
            self.to_server.send(self._client_rest, arrival_ns=now)
            self._client_ahead = True
        if self._server_rest and not self._server_ahead:
            self.to_client.send(self._server_rest, arrival_ns=now)
            self._server_ahead = True
        return True

    def arrive(self, from_client: bool, chunk: bytes, now: int) -> None:
        """A chunk read from the client (``from_client``) or from the server."""
        out = self.to_server if from_client else self.to_client
        if self.raw:
            out.send(chunk, arrival_ns=now)
            return
        proxy = self.proxy
        if self.in_backlog or (proxy._deferring and self._start_deferring()):
            out.send(chunk, arrival_ns=now)
            proxy._defer(self, from_client, now, chunk)
        elif self._client_ahead if from_client else self._server_ahead:
            self._finish_ahead(from_client, chunk, now)
        elif from_client:
            self._on_client_bytes(chunk, now)
        else:
            self._on_server_bytes(chunk, now)

    def _finish_ahead(self, from_client: bool, chunk: bytes, now: int) -> None:
        """The frame in progress was partly forwarded unframed: forward its remainder as is (framed without faults),
        then handle what follows it in ``chunk`` the ordinary way."""
        rest = self._client_rest if from_client else self._server_rest
        data = rest + chunk
        try:
            if from_client:
                parsed = parse_command(data, 0)
                end = -1 if parsed is None else parsed[1]
            else:
                end = frame_end(data, 0)
        except RespError:
            end = -1  # framing the whole chunk below finds the error again and goes raw
        cut = len(chunk) if end < 0 else end - len(rest)
        head, tail = chunk[:cut], chunk[cut:]
        (self.to_server if from_client else self.to_client).send(head, arrival_ns=now)
        self.proxy._frame_forwarded(self, from_client, now, head)
        if tail:
            self.arrive(from_client, tail, now)

    def stop_framing(self, reason: str, *, flush: bool = True) -> None:
        """Pass this connection through raw from now on (its frame boundaries are no longer known). ``flush``: send
        on the partial frames held back, unless they were already forwarded."""
        if flush:
            if self._client_rest and not self._client_ahead:
                self.to_server.send(self._client_rest, arrival_ns=time.monotonic_ns())
            if self._server_rest and not self._server_ahead:
                self.to_client.send(self._server_rest, arrival_ns=time.monotonic_ns())
        self.raw = True
        self.unpaired = True
        self.pending.clear()
        self.shaped_pending = 0
        self._client_rest = self._server_rest = b""
        self._client_ahead = self._server_ahead = False
        if not self.closed:
            self.proxy._record(self.index, "fault", fault="proxy", detail=reason)

    def _go_raw(self, exc: RespError, rest: bytes, out: _Outbound, now: int) -> None:
        """Unframeable bytes: pass everything through from now on, without pairing or frame faults."""
        self.stop_framing(f"RESP framing stopped, raw pass-through: {exc}")
        if rest:
            out.send(rest, arrival_ns=now)

    def _on_client_bytes(self, chunk: bytes, now: int) -> None:
        proxy = self.proxy
        to_server = self.to_server
        data = self._client_rest + chunk if self._client_rest else chunk
        n = len(data)
        pos = 0
        run = 0  # start of the not-yet-queued run of frames forwarded unchanged
        out: list[bytes] = []
        record = proxy._record_commands
        try:
            while pos < n:
                parsed = parse_command(data, pos)
                if parsed is None:
                    break
                args, end = parsed
                if not args:
                    # An empty inline line (or an empty array): redis-server ignores it and sends no reply, so it
                    # is forwarded but neither recorded, offered to faults, nor waits for a reply.
                    pos = end
                    continue
                # Keep what the transcript records small: only a frame longer than the limit can hold a long argument.
                recorded = tuple(args) if end - pos <= MAX_RECORDED_BYTES else tuple(clip(arg) for arg in args)
                if record:
                    proxy._record(self.index, "command", command=recorded, now=now)
                verdict = (
                    proxy._decide(self, args, recorded) if proxy._command_handles and not proxy._replaying else None
                )
                upper = args[0].upper() if args else b""
                if upper == b"CLIENT" or upper == b"HELLO":
                    self._observe_name(args)
                replacement = (
                    self._translate_scan_cursor(upper, args)
                    if proxy._next_fake_cursor and not proxy._replaying
                    else None
                )
                if replacement == _EXPIRED_CURSOR:
                    verdict = Verdict.error(_EXPIRED_CURSOR_REPLY, detail="forgotten fake SCAN cursor: not sent")
                    proxy._record(self.index, "fault", command=recorded, fault="proxy", detail=verdict.detail)
                    replacement = None
                if (self.in_multi or upper in _TRANSACTION_COMMANDS) and self._exec_as_discard(
                    upper, recorded, verdict
                ):
                    if run < pos:
                        out.append(data[run:pos])
                    out.append(_DISCARD)
                    pos = run = end
                    continue
                if verdict is None or verdict.forward:
                    if replacement is not None:
                        if run < pos:
                            out.append(data[run:pos])
                        out.append(replacement)
                        run = end
                    if upper in _UNPAIRED_COMMANDS or (upper == b"CLIENT" and _is_client_reply(args)):
                        self.stop_pairing = True
                    elif not self.stop_pairing:
                        self._push_pending(_Pending(recorded, verdict))
                else:
                    if run < pos:
                        out.append(data[run:pos])
                    run = end
                    if verdict.reset:  # dropped before the server: what came before still goes out, then RST
                        if out:
                            to_server.send(b"".join(out), arrival_ns=now)
                        self._client_rest = b""
                        to_server.send(b"", arrival_ns=now, then=self._reset_command_dropped)
                        return
                    if verdict.reply is not None:
                        self._reply_from_proxy(recorded, verdict, now)
                pos = end
        except RespError as exc:
            if run < pos:
                out.append(data[run:pos])
            if out:
                to_server.send(b"".join(out), arrival_ns=now)
            self._client_rest = b""
            self._go_raw(exc, data[pos:], to_server, now)
            return
        if run < pos:
            out.append(data[run:pos])
        if out:
            to_server.send(out[0] if len(out) == 1 else b"".join(out), arrival_ns=now)
        self._client_rest = data[pos:] if pos < n else b""

    def _exec_as_discard(self, upper: bytes, recorded: tuple[bytes, ...], verdict: Verdict | None) -> bool:
        """Follow the server connection's MULTI state through one client command, before it is forwarded or answered.

        Mirrors redis 7: a command rejected inside MULTI (here: answered with an error by a fault) flags the
        transaction, and EXEC then answers ``-EXECABORT Transaction discarded because of previous errors.``; a
        rejected EXEC ends the transaction. True when the command is an EXEC that must go upstream as ``DISCARD``
        (ending the transaction there); its pending entry then carries the reply the client gets instead of the
        server's ``+OK``."""
        paired = not self.stop_pairing and not self.unpaired
        if verdict is not None and not verdict.forward:
            if verdict.reset or not self.in_multi:
                return False  # a reset connection ends the transaction on the server by itself
            if upper == b"EXEC" and paired:
                self.in_multi = self.multi_dirty = False
                self._push_pending(_Pending(recorded, verdict, substitute=verdict.reply or b""))
                return True
            if verdict.reply is not None and verdict.reply.startswith(b"-"):
                self.multi_dirty = True
            return False
        if upper == b"MULTI":
            if not self.in_multi:  # a nested MULTI is an error that leaves the transaction as it is
                self.in_multi = True
                self.multi_dirty = False
        elif upper == b"EXEC":
            dirty = self.in_multi and self.multi_dirty
            self.in_multi = self.multi_dirty = False
            if dirty and paired:
                self._push_pending(_Pending(recorded, verdict, substitute=_EXECABORT))
                return True
        elif upper == b"DISCARD" or upper == b"RESET":
            self.in_multi = self.multi_dirty = False
        return False

    def _push_pending(self, entry: _Pending) -> None:
        self.pending.append(entry)
        if entry.verdict is not None or entry.synthetic is not None or entry.substitute is not None:
            self.shaped_pending += 1

    def _pop_pending(self) -> _Pending:
        entry = self.pending.popleft()
        if entry.verdict is not None or entry.synthetic is not None or entry.substitute is not None:
            self.shaped_pending -= 1
        return entry

    def _reset_command_dropped(self) -> None:
        self.reset("command dropped before server", flush_upstream=True)

    def _reset_reply_lost(self) -> None:
        self.reset("reply lost after the server ran the command")

    def _reply_from_proxy(self, recorded: tuple[bytes, ...], verdict: Verdict, now: int) -> None:
        assert verdict.reply is not None
        if self.pending and not self.unpaired:
            # Replies to earlier forwarded commands are still due: this one must come after them.
            self._push_pending(_Pending(recorded, verdict, verdict.reply))
            return
        self.to_client.send(verdict.reply, arrival_ns=now)
        if verdict.close_after_reply:
            self.to_client.send(b"", arrival_ns=now, then=lambda: self.close("closed after an injected error"))

    def _observe_name(self, args: list[bytes]) -> None:
        if len(args) >= 3 and args[0].upper() == b"CLIENT" and args[1].upper() == b"SETNAME":
            self.name = args[2].decode(errors="replace")
        elif args[0].upper() == b"HELLO":
            for i, arg in enumerate(args[:-1]):
                if arg.upper() == b"SETNAME":
                    self.name = args[i + 1].decode(errors="replace")

    def _translate_scan_cursor(self, upper: bytes, args: list[bytes]) -> bytes | None:
        index = _SCAN_CURSOR_INDEX.get(upper)
        if index is None or len(args) <= index:
            return None
        cursor = args[index]
        real = self.proxy._real_cursor(cursor)
        if real is None:
            # A cursor in the fake range that the proxy no longer remembers must not reach the server as a real one
            # (it would resume the iteration at a random place, or end it): the client gets an error instead.
            return _EXPIRED_CURSOR if _looks_fake(cursor) else None
        return encode_command([*args[:index], real, *args[index + 1 :]])

    def _on_server_bytes(self, chunk: bytes, now: int) -> None:
        proxy = self.proxy
        to_client = self.to_client
        data = self._server_rest + chunk if self._server_rest else chunk
        n = len(data)
        pos = 0
        run = 0
        out: list[bytes] = []
        record = proxy._record_commands

        def flush() -> None:
            nonlocal out, run
            if run < pos:
                out.append(data[run:pos])
            if out:
                to_client.send(b"".join(out), arrival_ns=now)
            out = []
            run = pos

        try:
            while pos < n:
                end = frame_end(data, pos)
                if end < 0:
                    break
                if self.unpaired or data[pos] == _PUSH:
                    if record:
                        kind: EventKind = "push" if data[pos] == _PUSH else "reply"
                        proxy._record(self.index, kind, reply=data[pos : min(end, pos + MAX_RECORDED_BYTES)], now=now)
                    pos = end
                    continue
                if not self.pending:
                    # More replies than commands: pub/sub, CLIENT REPLY, or a server talking on its own.
                    self.unpaired = True
                    continue
                entry = self._pop_pending()
                substitute = entry.substitute
                if record:
                    if substitute is None:
                        reply = data[pos : min(end, pos + MAX_RECORDED_BYTES)]
                        proxy._record(self.index, "reply", command=entry.command, reply=reply, now=now)
                    else:
                        reply = substitute[:MAX_RECORDED_BYTES]
                        detail = _EXEC_SENT_AS_DISCARD
                        proxy._record(self.index, "reply", command=entry.command, reply=reply, detail=detail, now=now)
                verdict = entry.verdict
                if substitute is not None and (verdict is None or not verdict.forward):
                    # The server answered the DISCARD sent in place of EXEC: the client gets the substitute.
                    if run < pos:
                        out.append(data[run:pos])
                    out.append(substitute)
                    pos = run = end
                    if verdict is not None and verdict.close_after_reply:
                        flush()
                        to_client.send(b"", arrival_ns=now, then=lambda: self.close("closed after an injected error"))
                        self._server_rest = b""
                        return
                elif verdict is not None:
                    frame = data[pos:end] if substitute is None else substitute
                    if verdict.rewrite_reply is not None:
                        if run < pos:
                            out.append(data[run:pos])
                        out.append(verdict.rewrite_reply(frame))
                        pos = run = end
                    elif verdict.reply_delay_ms > 0:
                        flush()
                        delay_ns = int(verdict.reply_delay_ms * 1e6)
                        to_client.send(frame, arrival_ns=now, not_before_ns=time.monotonic_ns() + delay_ns)
                        pos = run = end
                    elif verdict.cut_reply_at_bytes is not None or verdict.action == "cut_reply":
                        flush()
                        cut = verdict.cut_reply_at_bytes
                        cut = len(frame) // 2 if cut is None else cut
                        cut = max(1, min(cut, len(frame) - 1))
                        to_client.send(frame[:cut], arrival_ns=now, then=lambda: self.reset("reply cut mid-frame"))
                        self._server_rest = b""
                        return
                    elif verdict.reset:
                        flush()
                        to_client.send(b"", arrival_ns=now, then=self._reset_reply_lost)
                        self._server_rest = b""
                        return
                    elif substitute is not None:
                        if run < pos:
                            out.append(data[run:pos])
                        out.append(substitute)
                        pos = run = end
                    else:
                        pos = end
                else:
                    pos = end
                while self.pending and self.pending[0].synthetic is not None:
                    proxy_reply = self._pop_pending()
                    assert proxy_reply.synthetic is not None
                    assert proxy_reply.verdict is not None
                    if run < pos:
                        out.append(data[run:pos])
                    out.append(proxy_reply.synthetic)
                    run = pos
                    if proxy_reply.verdict.close_after_reply:
                        flush()
                        to_client.send(b"", arrival_ns=now, then=lambda: self.close("closed after an injected error"))
                        self._server_rest = b""
                        return
        except RespError as exc:
            flush()
            self._server_rest = b""
            self._go_raw(exc, data[pos:], to_client, now)
            return
        if run < pos:
            out.append(data[run:pos])
        if out:
            to_client.send(out[0] if len(out) == 1 else b"".join(out), arrival_ns=now)
        self._server_rest = data[pos:] if pos < n else b""


def _looks_fake(cursor: bytes) -> bool:
    """Whether ``cursor`` lies in the range of the proxy's fake SCAN cursors (20 digits, from the base up)."""
    return len(cursor) == len(_FAKE_CURSOR_FLOOR) and cursor.isdigit() and cursor > _FAKE_CURSOR_FLOOR


def _is_client_reply(args: list[bytes]) -> bool:
    return len(args) >= 2 and args[1].upper() == b"REPLY"


class RedisFaultProxy:
    """A fault-injecting TCP proxy in front of ``upstream_host:upstream_port``; point clients at :attr:`url`.

    Use as an async context manager (or :meth:`start` / :meth:`stop`). ``listen_port=0`` picks a free port.
    ``seed`` is the only source of randomness: every probabilistic decision and every jitter draw comes from an RNG
    derived from (seed, fault handle id, connection index), so the same seed, the same faults added in the same
    order and the same commands on each connection give the same decisions.

    ``resp=True`` frames commands and replies (needed by command faults and by the command/reply transcript);
    ``resp=False`` forwards raw bytes and supports byte faults only. ``transcript_limit`` bounds the transcript
    (``None``: unbounded); traffic forwarded but not framed yet is kept up to 512 bytes per ``transcript_limit``
    event, past which its connections are passed through raw (see docs/fault-injection.md). ``connect_timeout_s``
    bounds each upstream connection attempt.

    :meth:`stop` closes every connection and returns only when no task or socket of the proxy remains.
    """

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        seed: int = 0,
        resp: bool = True,
        transcript_limit: int | None = 100_000,
        connect_timeout_s: float = 5.0,
    ) -> None:
        if not 0 <= listen_port <= 65535:
            raise ValueError(f"listen_port must be in [0, 65535], got {listen_port!r}")
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.listen_host = listen_host
        self.seed = seed
        self.resp = resp
        self.connect_timeout_s = connect_timeout_s
        self.transcript = Transcript(transcript_limit)
        self._record_commands = resp
        self._requested_port = listen_port
        self._port = 0
        self._server: asyncio.Server | None = None
        self._relisten: set[asyncio.Task[None]] = set()
        self._started = False
        self._stopping = False
        self._start_ns = time.monotonic_ns()
        self._links: dict[int, _Link] = {}
        self._names: dict[int, str | None] = {}
        self._next_connection = 0
        self._next_handle = 1
        self._handles: list[FaultHandle] = []
        self._byte_handles: list[FaultHandle] = []
        self._command_handles: list[FaultHandle] = []
        self._fake_cursors: dict[bytes, bytes] = {}
        self._next_fake_cursor = 0
        self._unreachable_count = 0
        # Pass-through (no fault that needs frames): chunks are forwarded at once and framed later, in order, when
        # the transcript or the connections are read or a fault is added. Bounded: see _drop_backlog.
        self._deferring = resp
        self._replaying = False
        # (connection index or -1 for an event, from the client, arrival ns, chunk or event): only ints and bytes, so
        # that the garbage collector soon stops tracking the entries (a long backlog then costs it nothing)
        self._backlog: list[tuple[int, bool, int, bytes | TranscriptEvent]] = []
        self._backlog_bytes = 0
        self._backlog_links: list[_Link] = []  # the connections with chunks in the backlog
        self._backlog_events: list[TranscriptEvent] = []  # the other events in the backlog, in order
        self._backlog_limit = None if transcript_limit is None else transcript_limit * _BACKLOG_BYTES_PER_EVENT
        self.transcript._before_read = self._replay
        self._unreachable_logged_at = float("-inf")

    def __repr__(self) -> str:
        upstream = f"{self.upstream_host}:{self.upstream_port}"
        return f"RedisFaultProxy({self.url!r} -> {upstream}, faults={len(self._handles)})"

    # -- addresses -------------------------------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return self.listen_host

    @property
    def port(self) -> int:
        """The port the proxy listens on (known once started)."""
        return self._port

    @property
    def url(self) -> str:
        """``redis://host:port/0`` for clients."""
        host = f"[{self.listen_host}]" if ":" in self.listen_host else self.listen_host
        return f"redis://{host}:{self._port}/0"

    @property
    def connections(self) -> list[ConnectionInfo]:
        """Every connection accepted so far, by accept index."""
        self._replay()
        return [
            ConnectionInfo(index, self._links[index].name if index in self._links else name, index in self._links)
            for index, name in sorted(self._names.items())
        ]

    # -- lifecycle -------------------------------------------------------------------------------------------------

    async def start(self) -> Self:
        """Start listening. Idempotent."""
        if self._started:
            return self
        self._start_ns = time.monotonic_ns()
        sock = self._bind(self._requested_port)
        self._port = sock.getsockname()[1]
        self._server = await self._serve(sock)
        self._started = True
        return self

    async def _serve(self, sock: socket.socket) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        return await loop.create_server(lambda: _Side(self, "client"), sock=sock)

    def _bind(self, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.listen_host else socket.AF_INET
        return socket.create_server((self.listen_host, port), family=family, backlog=128)

    async def stop(self) -> None:
        """Stop listening, close every connection, wait for every task. Idempotent."""
        if self._stopping or not self._started:
            return
        self._stopping = True
        if self._relisten:
            await asyncio.gather(*self._relisten, return_exceptions=True)
        server, self._server = self._server, None
        if server is not None:
            server.close()
        links = list(self._links.values())
        for link in links:
            link.close("proxy stopped")
            if link.connect_task is not None:
                link.connect_task.cancel()
        if links:
            loop = asyncio.get_running_loop()
            waits = [loop.create_task(link.wait_closed()) for link in links]
            _, unfinished = await asyncio.wait(waits, timeout=1.0)
            if unfinished:
                # A peer that stopped reading keeps close() from ever flushing: drop what it did not read.
                for link in links:
                    link.abort()
                await asyncio.wait(unfinished)
        if server is not None:
            await server.wait_closed()
        for handle in self._handles:
            handle._removed.set()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def _accept(self, client: _Side) -> None:
        """A client connected (called by its protocol): make its link and start connecting upstream."""
        index = self._next_connection
        self._next_connection += 1
        link = _Link(self, index, client)
        self._names[index] = None
        self._links[index] = link
        self._record(
            index, "connect", detail=f"from {client.transport.get_extra_info('peername') if client.transport else None}"
        )
        if self._stopping or self._server is None:
            link.close("proxy stopping or down")
            return
        assert client.transport is not None
        client.transport.pause_reading()  # until the upstream connection is open
        link.connect_task = asyncio.get_running_loop().create_task(link.connect())

    def _forget(self, link: _Link) -> None:
        """Both sockets of ``link`` are closed."""
        self._names[link.index] = link.name
        self._links.pop(link.index, None)

    # -- faults ----------------------------------------------------------------------------------------------------

    @property
    def faults(self) -> tuple[FaultHandle, ...]:
        """Installed faults, in the order they act."""
        return tuple(self._handles)

    def add(self, fault: Fault) -> FaultHandle:
        """Install ``fault`` after those already installed; it acts from the next chunk or command on."""
        if not isinstance(fault, ByteFault | CommandFault | ProxyFault):
            raise TypeError(f"expected a ByteFault, CommandFault or ProxyFault instance, got {fault!r}")
        if isinstance(fault, CommandFault) and not self.resp:
            raise ValueError(f"{fault.name} acts on RESP frames: create the proxy with resp=True to use it")
        self._replay()  # every connection's state up to date before the fault starts acting
        handle = FaultHandle(self, self._next_handle, fault)
        self._next_handle += 1
        self._handles.append(handle)
        self._sort_handles()
        if isinstance(fault, ProxyFault):
            self._go_down(handle)
        return handle

    def remove(self, handle: FaultHandle) -> None:
        """Uninstall a fault. Idempotent. Data a fault was holding (``timeout``) flows on."""
        if handle not in self._handles:
            return
        self._handles.remove(handle)
        self._sort_handles()
        handle._removed.set()
        if isinstance(handle.fault, ProxyFault) and not any(isinstance(h.fault, ProxyFault) for h in self._handles):
            self._go_up()

    def clear(self) -> None:
        """Uninstall every fault."""
        for handle in list(self._handles):
            self.remove(handle)

    def _sort_handles(self) -> None:
        self._byte_handles = [h for h in self._handles if isinstance(h.fault, ByteFault)]
        self._command_handles = [h for h in self._handles if isinstance(h.fault, CommandFault)]
        self._update_deferring()

    def _update_deferring(self) -> None:
        self._deferring = (
            self.resp and not self._byte_handles and not self._command_handles and not self._next_fake_cursor
        )

    # -- pass-through: forward first, frame later ------------------------------------------------------------------

    def _defer(self, link: _Link, from_client: bool, now: int, chunk: bytes) -> None:
        """``chunk`` was forwarded unframed: queue it to be framed later, in arrival order."""
        self._backlog.append((link.index, from_client, now, chunk))
        if not link.in_backlog:
            link.in_backlog = True
            self._backlog_links.append(link)
        link.backlog_bytes += len(chunk)
        self._backlog_bytes += len(chunk)
        if self._backlog_limit is not None and self._backlog_bytes > self._backlog_limit:
            self._drop_backlog()

    def _replay(self) -> None:
        """Frame every deferred chunk now, in arrival order, as if it had been framed on arrival (but no fault acts on
        it and nothing is forwarded: it already was). Afterwards the transcript and every connection's state are
        exactly what framing on arrival would have made them."""
        if not self._backlog or self._replaying:
            return
        backlog, self._backlog = self._backlog, []
        links = self._backlog_links
        by_index = {link.index: link for link in links}
        self._forget_backlog()
        self._replaying = True
        try:
            for index, from_client, now, item in backlog:
                if index < 0:
                    assert isinstance(item, TranscriptEvent)
                    self.transcript.record(item)
                    continue
                assert isinstance(item, bytes)
                link = by_index[index]
                if link.raw:
                    continue
                if from_client:
                    link._on_client_bytes(item, now)
                else:
                    link._on_server_bytes(item, now)
        finally:
            self._replaying = False
            for link in links:
                link._client_ahead = bool(link._client_rest)
                link._server_ahead = bool(link._server_rest)
                if link.index not in self._links:  # closed before its name was known
                    self._names[link.index] = link.name

    def _frame_forwarded(self, link: _Link, from_client: bool, now: int, chunk: bytes) -> None:
        """Frame one chunk that was already forwarded (the "ahead" way): recorded and paired, offered to no fault."""
        self._replaying = True
        try:
            if from_client:
                link._on_client_bytes(chunk, now)
            else:
                link._on_server_bytes(chunk, now)
        finally:
            self._replaying = False
        link._client_ahead = link._client_ahead and bool(link._client_rest)
        link._server_ahead = link._server_ahead and bool(link._server_rest)

    def _drop_backlog(self) -> None:
        """The backlog outgrew its budget: forget its chunks rather than frame them all now (which would stall every
        connection). Each connection they belong to is passed through raw from now on (its frame boundaries are
        lost); the transcript says so. Events other than frames (connects, closes) are kept."""
        self._backlog = []
        events, links = self._backlog_events, self._backlog_links
        sizes = [link.backlog_bytes for link in links]
        self._forget_backlog()
        for event in events:
            self.transcript.record(event)
        for link, size in zip(links, sizes, strict=True):
            if not link.raw:
                link.stop_framing(
                    f"{size} bytes of pass-through traffic not framed (over the budget of {self._backlog_limit} bytes "
                    "for traffic no one has read yet): passed through raw from now on, no command fault applies",
                    flush=False,
                )

    def _forget_backlog(self) -> None:
        """The backlog was taken (to replay) or dropped: reset its bookkeeping."""
        for link in self._backlog_links:
            link.in_backlog = False
            link.backlog_bytes = 0
        self._backlog_links = []
        self._backlog_events = []
        self._backlog_bytes = 0

    def _byte_handles_for(self, link: _Link, direction: Direction) -> list[FaultHandle]:
        if not self._byte_handles:
            return []
        chosen = []
        for handle in self._byte_handles:
            fault = handle.fault
            assert isinstance(fault, ByteFault)
            if (
                (fault.direction == "both" or fault.direction == direction)
                and fault.targets_connection(link.index, link.name)
                and handle.selects(link.index)
            ):
                chosen.append(handle)
        return chosen

    def _decide(self, link: _Link, args: list[bytes], recorded: tuple[bytes, ...]) -> Verdict | None:
        command = Command(args, link.index, link.name)
        for handle in self._command_handles:
            fault = handle.fault
            assert isinstance(fault, CommandFault)
            if not (fault.targets_connection(link.index, link.name) and fault.matches(command)):
                continue
            handle.matched += 1
            if fault.nth is not None and handle.matched != fault.nth:
                continue
            if fault.times is not None and handle.applied >= fault.times:
                continue
            if fault.probability < 1.0 and handle.rng(link.index).random() >= fault.probability:
                continue
            verdict = fault.act(command, _Context(self, handle, link.index))
            if verdict is None:
                continue
            handle.applied += 1
            detail = verdict.action + (f": {verdict.detail}" if verdict.detail else "")
            self._record(link.index, "fault", command=recorded, fault=fault.name, detail=detail)
            return verdict
        return None

    def _go_down(self, handle: FaultHandle) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()  # the listening socket closes now: new connections are refused
        handle.applied += 1
        self._record(-1, "fault", fault=handle.fault.name, detail="listener closed: new connections refused")
        if getattr(handle.fault, "cut_existing", False):
            for link in list(self._links.values()):
                if link.closed:
                    continue
                handle.applied += 1
                self._record(link.index, "fault", fault=handle.fault.name, detail="existing connection reset")
                link.reset(f"{handle.fault.name}: existing connections cut")

    def _go_up(self) -> None:
        if self._stopping or not self._started:
            return
        sock = self._bind(self._port)  # listening from now on: clients queue in the backlog until served
        self._record(-1, "fault", fault="down", detail="removed: listening again")

        async def serve() -> None:
            server = await self._serve(sock)
            if self._stopping or any(isinstance(h.fault, ProxyFault) for h in self._handles):
                server.close()
                await server.wait_closed()
            else:
                self._server = server

        task = asyncio.get_running_loop().create_task(serve())
        self._relisten.add(task)
        task.add_done_callback(self._relisten.discard)

    def _warn_unreachable(self, reason: str) -> None:
        """Log why a client's connection is being closed: once, then at most once per interval with a count."""
        now = time.monotonic()
        self._unreachable_count += 1
        if now - self._unreachable_logged_at < _UNREACHABLE_LOG_INTERVAL_S:
            return
        count, self._unreachable_count = self._unreachable_count, 0
        self._unreachable_logged_at = now
        also = f" ({count} client connections closed for this since the last message)" if count > 1 else ""
        _log.warning("sessionkv fault proxy %s: closing a client connection: %s%s", self.url, reason, also)

    def _fake_scan_cursor(self, real_cursor: bytes) -> bytes:
        self._next_fake_cursor += 1
        self._deferring = False
        fake = str(_FAKE_CURSOR_BASE + self._next_fake_cursor).encode()
        if len(self._fake_cursors) >= _MAX_FAKE_CURSORS:
            del self._fake_cursors[next(iter(self._fake_cursors))]  # the least recently used
        self._fake_cursors[fake] = real_cursor
        return fake

    def _real_cursor(self, fake: bytes) -> bytes | None:
        """The real cursor ``fake`` stands for (``None`` if it is not a remembered fake); marks it recently used."""
        real = self._fake_cursors.pop(fake, None)
        if real is not None:
            self._fake_cursors[fake] = real
        return real

    # -- transcript ------------------------------------------------------------------------------------------------

    def _record(
        self,
        connection: int,
        kind: EventKind,
        *,
        command: tuple[bytes, ...] = (),
        reply: bytes = b"",
        fault: str = "",
        detail: str = "",
        now: int = 0,
    ) -> None:
        """Add an event to the transcript; ``now`` (``time.monotonic_ns()``) is when its bytes arrived, if known."""
        at = (now or time.monotonic_ns()) - self._start_ns
        # tuple.__new__ skips the NamedTuple's Python-level __new__: one event per framed command and reply
        event = _new_tuple(TranscriptEvent, (at, connection, kind, command, reply, fault, detail))
        if self._backlog and not self._replaying:
            self._backlog.append((-1, False, now, event))  # after the chunks that came before it
            self._backlog_events.append(event)
        else:
            self.transcript.record(event)
