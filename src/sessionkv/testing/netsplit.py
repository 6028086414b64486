"""Network partitions between local servers: raw TCP forwarders that route or refuse a connection by its source address,
and an event loop on a thread of its own for them (and for fault proxies) that any thread may call into.

On Linux every address of 127.0.0.0/8 is local, so each server of a topology can be given a source address of its own
(``bind-source-addr``, Redis >= 7.0 and Valkey): its outgoing connections (the cluster bus, replication) then show
which server they come from. A :class:`TcpForwarder` in front of a server port asks :class:`Partition` whether that
source may reach the server; a connection that may not is reset as soon as it is accepted, and :meth:`Partition.cut`
resets those already open. Clients (any address that is not a server's) are never cut.

Nothing here speaks RESP: bytes are forwarded as they come, with flow control both ways; an end that closes cleanly is
half-closed on the other side, an end that is reset resets the other side.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import socket
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final, TypeVar

from sessionkv.testing.faults import ConnectionInfo, Fault, FaultHandle, RedisFaultProxy
from sessionkv.testing.faults.proxy import _abort_with_rst  # one way to reset a connection, shared
from sessionkv.testing.servers import RedisServerError

__all__ = ["ClusterNetwork", "LoopThread", "NodeProxy", "Partition", "TcpForwarder", "loopback_source_addresses_work"]

T = TypeVar("T")

_CALL_TIMEOUT_S: Final = 30.0


def loopback_source_addresses_work(address: str = "127.7.0.1") -> bool:
    """True when a socket can bind ``address`` (any of 127.0.0.0/8 on Linux; only 127.0.0.1 by default on macOS)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((address, 0))
        except OSError:
            return False
    return True


class LoopThread:
    """An asyncio event loop running on a daemon thread of its own until :meth:`stop`.

    Objects living on it (fault proxies, forwarders) keep working whatever loop, if any, their caller runs: a
    synchronous test, one pytest-asyncio loop per test, or ``asyncio.run``. :meth:`call` and :meth:`run` are safe from
    any thread; from the loop's own thread, :meth:`call` runs the function directly.
    """

    def __init__(self, name: str = "sessionkv-netsplit") -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("the loop thread is not running: call start() first")
        return self._loop

    def start(self) -> LoopThread:
        """Start the thread and return once its loop runs. Idempotent."""
        if self._thread is not None:
            return self
        ready = threading.Event()
        loop = asyncio.new_event_loop()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=serve, name=self._name, daemon=True)
        self._thread.start()
        ready.wait()
        return self

    @property
    def running(self) -> bool:
        return self._thread is not None

    def in_loop_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = _CALL_TIMEOUT_S) -> T:
        """Run ``coroutine`` on the loop and return its result (blocking the caller; not from the loop's thread)."""
        if self.in_loop_thread():
            coroutine.close()
            raise RuntimeError("LoopThread.run() called from its own loop: await the coroutine instead")
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"{coroutine!r} did not finish within {timeout:g} s on {self._name}") from None

    def call(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` on the loop's thread, its result or exception returned to the caller."""
        if self.in_loop_thread():
            return function(*args)

        async def on_loop() -> T:
            return function(*args)

        return self.run(on_loop())

    def stop(self) -> None:
        """Cancel what still runs on the loop, stop it and join the thread. Idempotent."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return

        async def cancel_rest() -> None:
            current = asyncio.current_task()
            rest = [t for t in asyncio.all_tasks() if t is not current]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        with contextlib.suppress(RuntimeError):
            asyncio.run_coroutine_threadsafe(cancel_rest(), loop).result(_CALL_TIMEOUT_S)
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        self._thread, self._loop = None, None


class Partition:
    """Which servers are cut from the others: servers are known by their source address, and a server that is
    :meth:`isolate`\\ d can neither reach nor be reached by any other server (clients are not affected).

    Lives on one event loop (that of the forwarders it controls): call its methods there.
    """

    def __init__(self) -> None:
        self._isolated: set[str] = set()
        self._sources: set[str] = set()
        self._forwarders: list[TcpForwarder] = []

    def add_source(self, address: str) -> None:
        self._sources.add(address)

    def is_server(self, address: str) -> bool:
        return address in self._sources

    def blocked(self, source: str, destination: str) -> bool:
        """True when a connection from the server at ``source`` to the server at ``destination`` is cut."""
        if source == destination or source not in self._sources:
            return False
        return source in self._isolated or destination in self._isolated

    @property
    def isolated(self) -> frozenset[str]:
        return frozenset(self._isolated)

    def isolate(self, address: str) -> int:
        """Cut the server at ``address`` from every other one; returns how many open connections were reset."""
        if address not in self._sources:
            raise ValueError(f"{address!r} is not the source address of a server of this partition")
        self._isolated.add(address)
        return self.cut()

    def heal(self) -> None:
        """Let every server reach every other one again (connections are then accepted; none is reset)."""
        self._isolated.clear()

    def attach(self, forwarder: TcpForwarder) -> None:
        self._forwarders.append(forwarder)

    def cut(self) -> int:
        """Reset every open connection that the partition now forbids."""
        return sum(forwarder.cut(self) for forwarder in self._forwarders)


class _End(asyncio.Protocol):
    """One socket of a forwarded connection; bytes it receives go to the other end."""

    def __init__(self, link: _Link) -> None:
        self.link = link
        self.transport: asyncio.Transport | None = None
        self.other: _End | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.write(data)

    def eof_received(self) -> bool:
        other = self.other.transport if self.other is not None else None
        if other is not None and other.can_write_eof() and not other.is_closing():
            other.write_eof()
            return True  # half-closed: the other direction may still carry data
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.link.lost(self, reset=exc is not None)

    def pause_writing(self) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.resume_reading()


class _Link:
    """An accepted connection and the one it opened to the destination."""

    def __init__(self, forwarder: TcpForwarder, source: str) -> None:
        self.forwarder = forwarder
        self.source = source
        self.client = _End(self)
        self.upstream: _End | None = None
        self.connect_task: asyncio.Task[None] | None = None
        self.closed = asyncio.get_running_loop().create_future()

    async def connect(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        upstream = _End(self)
        try:
            await loop.create_connection(lambda: upstream, host, port)
        except OSError:
            _abort_with_rst(self.client.transport)  # the destination refused: so does the forwarder
            return
        self.upstream = upstream
        if self.client.transport is None:  # the client left while we connected
            _abort_with_rst(upstream.transport)
            return
        upstream.other, self.client.other = self.client, upstream
        self.client.transport.resume_reading()

    def lost(self, end: _End, *, reset: bool) -> None:
        """``end``'s socket closed: close the other end the same way (reset for reset)."""
        other = end.other
        if other is None:
            if end is self.client and self.connect_task is not None:
                self.connect_task.cancel()  # no-op once connected
        elif other.transport is not None:
            if reset:
                _abort_with_rst(other.transport)
            else:
                other.transport.close()
        self.maybe_finished()

    def reset(self) -> None:
        _abort_with_rst(self.client.transport)
        if self.upstream is not None:
            _abort_with_rst(self.upstream.transport)
        if self.connect_task is not None:
            self.connect_task.cancel()
        self.maybe_finished()

    def maybe_finished(self) -> None:
        if self.client.transport is not None or (self.upstream is not None and self.upstream.transport is not None):
            return
        if self.connect_task is not None and not self.connect_task.done():
            return  # its done-callback calls again
        self.forwarder._links.discard(self)
        if not self.closed.done():
            self.closed.set_result(None)


class _Accepted(_End):
    """The accepted end: asks the route where to go, then connects there (or resets at once)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        link, forwarder = self.link, self.link.forwarder
        peer = self.transport.get_extra_info("peername")
        link.source = str(peer[0]) if peer else ""
        destination = forwarder._route(link.source)
        if destination is None:
            forwarder.refused += 1
            _abort_with_rst(self.transport)
            return
        forwarder._links.add(link)
        self.transport.pause_reading()  # until the destination accepted
        link.connect_task = asyncio.get_running_loop().create_task(link.connect(*destination))
        link.connect_task.add_done_callback(lambda _: link.maybe_finished())


class TcpForwarder:
    """Forwards every connection accepted on ``sock`` to where ``route(source_address)`` says, byte for byte.

    ``route`` returns ``(host, port)``, or ``None`` to refuse: the connection is then reset at once (the listening
    socket stays open for everyone else). :meth:`cut` resets the open connections a partition now forbids.
    ``destination`` is the source address of the server behind this forwarder (for :class:`Partition`).
    """

    def __init__(
        self, sock: socket.socket, route: Callable[[str], tuple[str, int] | None], *, destination: str = ""
    ) -> None:
        self._sock = sock
        self._route = route
        self.destination = destination
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self.refused = 0

    @property
    def port(self) -> int:
        port: int = self._sock.getsockname()[1]
        return port

    async def start(self) -> TcpForwarder:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._accepted, sock=self._sock)
        return self

    def _accepted(self) -> asyncio.Protocol:
        link = _Link(self, "")
        link.client = _Accepted(link)
        return link.client

    def cut(self, partition: Partition) -> int:
        """Reset the open connections from a source ``partition`` now cuts from :attr:`destination`."""
        doomed = [link for link in self._links if partition.blocked(link.source, self.destination)]
        for link in doomed:
            link.reset()
        return len(doomed)

    async def stop(self) -> None:
        """Stop listening, reset every connection, and return once all are closed. Idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        links = list(self._links)
        for link in links:
            link.reset()
        waits: list[Awaitable[Any]] = [link.closed for link in links]
        if links:
            await asyncio.wait([asyncio.ensure_future(w) for w in waits], timeout=_CALL_TIMEOUT_S)
        if server is not None:
            await server.wait_closed()
        self._sock.close()


class NodeProxy(RedisFaultProxy):
    """A :class:`~sessionkv.testing.faults.RedisFaultProxy` living on a :class:`LoopThread`: :meth:`add`,
    :meth:`remove`, :meth:`clear` and :attr:`connections` may be called from any thread (they run on the proxy's loop
    and return its result), so faults can be added from synchronous code or from another event loop."""

    def __init__(self, loop_thread: LoopThread, upstream_host: str, upstream_port: int, **kwargs: Any) -> None:
        super().__init__(upstream_host, upstream_port, **kwargs)
        self.loop_thread = loop_thread

    def add(self, fault: Fault) -> FaultHandle:
        return self.loop_thread.call(super().add, fault)

    def remove(self, handle: FaultHandle) -> None:
        self.loop_thread.call(super().remove, handle)

    def clear(self) -> None:
        self.loop_thread.call(super().clear)

    @property
    def connections(self) -> list[ConnectionInfo]:
        def read() -> list[ConnectionInfo]:
            return super(NodeProxy, self).connections

        return self.loop_thread.call(read)


def _listening(host: str, port: int) -> socket.socket:
    return socket.create_server((host, port), family=socket.AF_INET, backlog=128)


class ClusterNetwork:
    """The network of a proxied cluster: for each node, a client-facing forwarder (the node's announced data port), a
    fault proxy behind it, and a cluster-bus forwarder (the node's announced bus port), all on one :class:`LoopThread`.

    Node ``i`` connects out from :meth:`source` ``(i)``. The client-facing forwarder sends a client's connection
    through the node's fault proxy, and another node's connection (replication) straight to the node, so client
    faults never touch the cluster's own traffic; :meth:`isolate` cuts a node's bus and replication links both ways.

    ``block(bus, skip)`` returns the first port of a free block of ports (and bus ports when ``bus``); ports are bound
    at once, moving on to the next block when one was taken meanwhile.
    """

    SOURCE_PREFIX: Final = "127.7.0."

    def __init__(self, host: str, count: int, block: Callable[[bool, int], int], *, seed: int = 0) -> None:
        if not loopback_source_addresses_work(self.source(count - 1)):
            raise RedisServerError(
                f"cannot bind {self.source(count - 1)}: a proxied cluster needs every 127.0.0.0/8 address to be local "
                "(Linux), to tell its nodes apart by source address"
            )
        self.host = host
        self.count = count
        self.seed = seed
        self.loop_thread = LoopThread()
        self.partition = Partition()
        self.proxies: list[NodeProxy] = []
        self._block = block
        self._client_socks: list[socket.socket] = []
        self._bus_socks: list[socket.socket] = []
        self._forwarders: list[TcpForwarder] = []

    @classmethod
    def source(cls, index: int) -> str:
        """The source address node ``index`` connects from (``bind-source-addr``)."""
        return f"{cls.SOURCE_PREFIX}{index + 1}"

    @property
    def client_ports(self) -> list[int]:
        """The ports clients reach node ``i`` on (announced as its data port)."""
        return [sock.getsockname()[1] for sock in self._client_socks]

    @property
    def bus_ports(self) -> list[int]:
        """The ports the other nodes reach node ``i``'s cluster bus on (announced as its bus port)."""
        return [sock.getsockname()[1] for sock in self._bus_socks]

    def reserve(self, bus_offset: int) -> None:
        """Start the loop thread and bind the forwarders' listening sockets (they queue connections until
        :meth:`attach`)."""
        self.loop_thread.start()
        for attempt in range(5):
            base = self._block(True, attempt)
            try:
                for i in range(self.count):
                    self._client_socks.append(_listening(self.host, base + i))
                    self._bus_socks.append(_listening(self.host, base + i + bus_offset))
                return
            except OSError:
                self._close_socks()
                if attempt == 4:
                    raise

    def _close_socks(self) -> None:
        for sock in [*self._client_socks, *self._bus_socks]:
            sock.close()
        self._client_socks, self._bus_socks = [], []

    def attach(self, data_ports: list[int], bus_ports: list[int]) -> None:
        """Put the fault proxies in front of the nodes' real ports and start forwarding."""
        self.loop_thread.run(self._attach(data_ports, bus_ports))

    async def _attach(self, data_ports: list[int], bus_ports: list[int]) -> None:
        for attempt in range(5):
            base = self._block(False, attempt)
            proxies = [
                NodeProxy(
                    self.loop_thread, self.host, port, listen_host=self.host, listen_port=base + i, seed=self.seed + i
                )
                for i, port in enumerate(data_ports)
            ]
            try:
                for proxy in proxies:
                    await proxy.start()
                self.proxies = proxies
                break
            except OSError:
                for proxy in proxies:
                    await proxy.stop()
                if attempt == 4:
                    raise
        for i in range(self.count):
            self.partition.add_source(self.source(i))
        for i in range(self.count):
            here = self.source(i)
            client = TcpForwarder(
                self._client_socks[i], functools.partial(self._client_route, i, data_ports[i]), destination=here
            )
            bus = TcpForwarder(
                self._bus_socks[i], functools.partial(self._bus_route, i, bus_ports[i]), destination=here
            )
            for forwarder in (client, bus):
                self.partition.attach(forwarder)
                self._forwarders.append(forwarder)
                await forwarder.start()

    def _client_route(self, index: int, data_port: int, source: str) -> tuple[str, int] | None:
        if self.partition.blocked(source, self.source(index)):
            return None
        if self.partition.is_server(source):
            return self.host, data_port  # replication: straight to the node, past client faults
        return self.host, self.proxies[index].port

    def _bus_route(self, index: int, bus_port: int, source: str) -> tuple[str, int] | None:
        if self.partition.blocked(source, self.source(index)):
            return None
        return self.host, bus_port

    def isolate(self, index: int) -> int:
        """Cut node ``index`` from every other node (bus both ways, replication); returns the connections reset."""
        return self.loop_thread.call(self.partition.isolate, self.source(index))

    def isolated(self) -> frozenset[int]:
        sources = self.loop_thread.call(lambda: self.partition.isolated)
        return frozenset(i for i in range(self.count) if self.source(i) in sources)

    def heal(self) -> None:
        """Undo every :meth:`isolate`."""
        self.loop_thread.call(self.partition.heal)

    def clear_faults(self) -> None:
        for proxy in self.proxies:
            proxy.clear()

    def stop(self) -> None:
        """Stop the forwarders and proxies, close every socket, stop the loop thread. Idempotent."""
        if self.loop_thread.running:
            self.loop_thread.run(self._stop())
        self._close_socks()
        self.loop_thread.stop()

    async def _stop(self) -> None:
        forwarders, self._forwarders = self._forwarders, []
        for forwarder in forwarders:
            await forwarder.stop()
        proxies, self.proxies = self.proxies, []
        for proxy in proxies:
            await proxy.stop()
