"""Real multi-server topologies on loopback: a Redis Cluster (3 primaries, 3 replicas) and a Sentinel-managed pair.

Both are built from :class:`~sessionkv.testing.servers.RedisServer` processes, so they inherit its guarantees (never
outlive this process, persistence off, a private directory per server removed on stop) and work with any server
binary :func:`~sessionkv.testing.servers.find_redis_server` finds. The cluster is created with plain commands
(``CLUSTER ADDSLOTSRANGE``, ``CLUSTER MEET``, ``CLUSTER REPLICATE``), never with ``redis-cli``.

Ports: each topology takes a block of consecutive data ports below the kernel's ephemeral range (so no client socket
of this machine can hold one), with the cluster bus ports (data port + 10000) below it too. The first block tried
depends on the xdist worker (``PYTEST_XDIST_WORKER``), so workers do not collide; a block whose ports are taken is
skipped, and a start that loses a race for a port moves to the next block.

Faults are real: :meth:`RedisClusterTopology.kill` / ``pause`` / ``restart_empty`` a primary and
:meth:`~RedisClusterTopology.wait_for_promotion` waits until one of its replicas has taken its slots;
:meth:`~RedisClusterTopology.manual_failover` runs ``CLUSTER FAILOVER`` (``SENTINEL FAILOVER`` for Sentinel).
:meth:`~RedisClusterTopology.heal` brings every server back and waits until the topology is whole again, and
:meth:`~RedisClusterTopology.flush` (heal, then ``FLUSHALL`` on the primaries, replicated) gives the next test a clean
topology. Usable without pytest.

``RedisClusterTopology(proxied=True)`` puts a fault proxy in front of every node (the nodes announce it, so every
client connection, redirections included, goes through it: :meth:`~RedisClusterTopology.proxy`) and can cut a node
off the network (:meth:`~RedisClusterTopology.isolate`, :meth:`~RedisClusterTopology.heal_network`); the machinery is
in :mod:`sessionkv.testing.netsplit`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shlex
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self, TypeVar

import redis
from redis.crc import key_slot

from sessionkv.testing.servers import RedisServer, RedisServerError, find_redis_server

if TYPE_CHECKING:
    from sessionkv.testing.faults import RedisFaultProxy
    from sessionkv.testing.netsplit import ClusterNetwork

__all__ = [
    "CLUSTER_BUS_OFFSET",
    "ClusterNode",
    "RedisClusterTopology",
    "RedisSentinelTopology",
    "TopologyError",
    "port_block",
]

T = TypeVar("T")

CLUSTER_BUS_OFFSET: Final = 10_000
"""A cluster node's bus port is its data port plus this (the server's default)."""
HASH_SLOTS: Final = 16_384
BLOCK_SIZE: Final = 8
"""Data ports per topology block: a cluster uses 6, a Sentinel topology 5."""
_REGION_BLOCKS: Final = 200
_ADMIN_TIMEOUT_S: Final = 2.0
_MANUAL_FAILOVER_S: Final = 5.0  # the server abandons a manual failover that has not completed in 5 s
_POLL_S: Final = 0.02
_DATA_ARGS: Final = ("--repl-diskless-sync-delay", "0", "--repl-diskless-load", "swapdb")
"""Replication straight from socket to memory: a replica writes no dump.rdb that a restart would load."""
_DIR_PREFIX: Final = "sessionkv-redis-"  # the prefix RedisServer's orphan clean-up knows: a dead owner's dir goes


class TopologyError(RedisServerError):
    """A topology could not be started, did not converge, or a fault did not have its effect in time.

    The message says what was awaited and what was seen last."""


# -- ports ------------------------------------------------------------------------------------------------------------


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default; other systems use 49152 and up, which leaves even more room below


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # as redis-server binds: SO_REUSEADDR, so connections in TIME_WAIT from an earlier run do not count as taken
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _worker_index() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    digits = worker.removeprefix("gw")
    return int(digits) if digits.isdigit() else 0


def port_block(host: str = "127.0.0.1", *, bus: bool = False, skip: int = 0) -> int:
    """The first data port of a free block of :data:`BLOCK_SIZE` ports (and their bus ports when ``bus``).

    Blocks lie below the ephemeral port range, bus ports included; the first block tried is this xdist worker's own,
    and ``skip`` moves that many free blocks further (after a start lost a race for a port).
    """
    low = _ephemeral_low()
    top = low - CLUSTER_BUS_OFFSET if bus else low
    first = top - _REGION_BLOCKS * BLOCK_SIZE
    if first < 1024:
        raise TopologyError(
            f"no room for topology ports below the ephemeral range (starts at {low}, "
            "/proc/sys/net/ipv4/ip_local_port_range); raise its lower bound to 32768 or more"
        )
    start = (_worker_index() * 4) % _REGION_BLOCKS
    for step in range(_REGION_BLOCKS):
        base = first + ((start + step) % _REGION_BLOCKS) * BLOCK_SIZE
        ports = range(base, base + BLOCK_SIZE)
        if all(_port_free(host, p) and (not bus or _port_free(host, p + CLUSTER_BUS_OFFSET)) for p in ports):
            if skip == 0:
                return base
            skip -= 1
    raise TopologyError(f"no free block of {BLOCK_SIZE} ports between {first} and {top} on {host}")


# -- polling and admin connections ------------------------------------------------------------------------------------


def _wait(what: str, probe: Callable[[], T | None], timeout: float, *, describe: Callable[[], str] | None = None) -> T:
    """Poll ``probe`` until it returns something other than ``None`` (exceptions count as not yet), or raise."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = probe()
        except (redis.RedisError, OSError) as exc:
            result, last_error = None, exc
        if result is not None:
            return result
        if time.monotonic() > deadline:
            seen = describe() if describe is not None else (f"last error: {last_error!r}" if last_error else "")
            raise TopologyError(f"timed out after {timeout:g} s waiting for {what}; {seen}")
        time.sleep(_POLL_S)


def _admin(server: RedisServer) -> redis.Redis:
    return redis.Redis(
        host=server.host,
        port=server.port,
        socket_timeout=_ADMIN_TIMEOUT_S,
        socket_connect_timeout=_ADMIN_TIMEOUT_S,
        decode_responses=True,
    )


def _command(server: RedisServer, *args: Any) -> Any:
    """Run one command on ``server`` over a fresh connection (admin traffic: rare, and never pooled across faults)."""
    with contextlib.closing(_admin(server)) as client:
        return client.execute_command(*args)  # type: ignore[no-untyped-call]


def _info(server: RedisServer, section: str) -> dict[str, Any]:
    with contextlib.closing(_admin(server)) as client:
        info: dict[str, Any] = client.info(section)
        return info


def _cluster_state(server: RedisServer) -> str:
    """``cluster_state`` of ``CLUSTER INFO`` on ``server`` (``ok`` or ``fail``)."""
    info = _command(server, "CLUSTER", "INFO")
    if isinstance(info, dict):
        return str(info.get("cluster_state"))
    fields = dict(line.split(":", 1) for line in str(info).splitlines() if ":" in line)
    return fields.get("cluster_state", "").strip()


def _reachable(server: RedisServer) -> bool:
    return server.running and not server_paused(server)


def _flush_replicated(primary: RedisServer, replicas: int) -> None:
    """FLUSHALL on ``primary``, then WAIT (on the same connection) until ``replicas`` replicas applied it."""
    with contextlib.closing(_admin(primary)) as client:
        client.flushall()
        acknowledged = client.execute_command("WAIT", replicas, int(_ADMIN_TIMEOUT_S * 1000))  # type: ignore[no-untyped-call]
    if int(acknowledged) < replicas:
        raise TopologyError(f"FLUSHALL on {primary.port} reached {acknowledged} of {replicas} replicas in time")


def _fields(reply: Any) -> dict[str, str]:
    """A Sentinel state reply (a flat list, or redis-py's parsed dict) as ``{field: str(value)}``."""
    if isinstance(reply, dict):
        return {str(k): str(v) for k, v in reply.items()}
    return {str(k): str(v) for k, v in zip(reply[::2], reply[1::2], strict=True)}


_SENTINEL_PERIODS: Final = ("info-period", "250", "publish-period", "250", "ask-period", "250", "tilt-period", "3000")


def _quicken(sentinel: RedisServer) -> None:
    """Shorten a Sentinel's own periods (``SENTINEL DEBUG``, Redis >= 7.0): it refreshes a replica's INFO every 10 s
    and greets its peers every 2 s by default, so after a failover it would take 10-20 s to see the demoted primary
    as a healthy replica. Older servers lack the command and keep their defaults (the topology is then slower)."""
    with contextlib.suppress(redis.ResponseError):
        _command(sentinel, "SENTINEL", "DEBUG", *_SENTINEL_PERIODS)


def _caught_up(primary: RedisServer, replicas: list[RedisServer]) -> bool | None:
    """True when every replica follows the primary's current replication history (same replication id: a restarted
    primary starts a new one) and has applied all of it so far, else None."""
    state = _info(primary, "replication")
    for replica in replicas:
        seen = _info(replica, "replication")
        if seen.get("master_link_status") != "up" or seen.get("master_replid") != state.get("master_replid"):
            return None
        if int(seen.get("slave_repl_offset", -1)) < int(state.get("master_repl_offset", 0)):
            return None
    return True


def _start_empty(server: RedisServer) -> None:
    """Start a stopped server with no data: a dump.rdb left in its directory (a replica's full sync writes one unless
    loading diskless) would otherwise be loaded at start-up, persistence settings notwithstanding."""
    if server.directory is not None:
        (server.directory / "dump.rdb").unlink(missing_ok=True)
    server.start()


def _replica_args(primary: RedisServer) -> tuple[str, ...]:
    return (*_DATA_ARGS, "--replicaof", primary.host, str(primary.port))


def _problem(check: Callable[[], str | None]) -> str | None:
    """``check()``, with an error talking to a server reported as the problem rather than raised."""
    try:
        return check()
    except (redis.RedisError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"


def server_paused(server: RedisServer) -> bool:
    """True while ``server`` is stopped by :meth:`RedisServer.pause`."""
    return bool(getattr(server, "_paused", False))


def _start_servers(make: Callable[[int], list[RedisServer]], host: str, *, bus: bool) -> list[RedisServer]:
    """Start the servers ``make(base_port)`` describes, moving to the next free port block if a port was taken."""
    for attempt in range(5):
        servers = make(port_block(host, bus=bus, skip=attempt))
        started: list[RedisServer] = []
        try:
            for server in servers:
                started.append(server.start())
            return started
        except RedisServerError as exc:
            for server in started:
                server.stop()
            if "Address already in use" not in str(exc) or attempt == 4:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


# -- Redis Cluster ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterNode:
    """One line of ``CLUSTER NODES`` as a node sees it (``port``: the announced one, a proxy's when proxied)."""

    id: str
    port: int
    flags: frozenset[str]
    primary_id: str | None
    slots: tuple[tuple[int, int], ...]

    @property
    def is_primary(self) -> bool:
        return "master" in self.flags

    @property
    def failing(self) -> bool:
        return bool(self.flags & {"fail", "fail?", "handshake", "noaddr"})


def _parse_nodes(text: str) -> list[ClusterNode]:
    nodes = []
    for line in text.strip().splitlines():
        fields = line.split()
        address = fields[1].split("@", 1)[0]
        slots: list[tuple[int, int]] = []
        for item in fields[8:]:
            if item.startswith("["):
                continue  # a slot being migrated or imported
            low, _, high = item.partition("-")
            slots.append((int(low), int(high or low)))
        nodes.append(
            ClusterNode(
                id=fields[0],
                port=int(address.rsplit(":", 1)[1]) if ":" in address else 0,
                flags=frozenset(fields[2].replace("myself,", "").split(",")),
                primary_id=None if fields[3] == "-" else fields[3],
                slots=tuple(slots),
            )
        )
    return nodes


class RedisClusterTopology:
    """A Redis Cluster of ``primaries`` primaries with ``replicas_per_primary`` replicas each, on loopback.

    Every server runs with ``--cluster-enabled yes``, no persistence, ``--repl-diskless-sync-delay 0`` and
    ``cluster-node-timeout`` ``node_timeout_ms`` (500 ms by default, so a dead primary is replaced within seconds).
    :meth:`start` returns once every node reports ``cluster_state:ok``, every node sees the same slot map, and every
    replica reports ``master_link_status:up``; :attr:`startup_seconds` says how long that took. The servers are
    :attr:`servers`; which of them are primaries changes with failovers, so ask :meth:`primaries` /
    :meth:`primary_for_key`.

    ``proxied=True``: clients reach every node only through its own fault proxy (:meth:`proxy`, :meth:`client_port`;
    ``startup_nodes`` and ``url`` name proxies), and :meth:`isolate` / :meth:`heal_network` partition a node from the
    others. Needs Linux (127.0.0.0/8 all local), host 127.0.0.1 and a server with ``bind-source-addr`` (Redis >= 7.0,
    Valkey); ``seed`` seeds the proxies (node ``i`` gets ``seed + i``). Admin traffic of the topology itself always
    goes to the nodes' own ports, past every fault.
    """

    def __init__(
        self,
        *,
        primaries: int = 3,
        replicas_per_primary: int = 1,
        host: str = "127.0.0.1",
        executable: str | os.PathLike[str] | None = None,
        node_timeout_ms: int = 500,
        startup_timeout: float = 60.0,
        proxied: bool = False,
        seed: int = 0,
    ) -> None:
        if primaries < 1 or replicas_per_primary < 0 or primaries * (1 + replicas_per_primary) > BLOCK_SIZE:
            raise ValueError(
                f"a topology holds at most {BLOCK_SIZE} servers, at least one primary: got {primaries} primaries "
                f"with {replicas_per_primary} replicas each"
            )
        if proxied and host != "127.0.0.1":
            raise ValueError(
                f"a proxied cluster runs on host 127.0.0.1 (it tells its nodes apart by their 127/8 source addresses), "
                f"got host={host!r}"
            )
        self.primary_count = primaries
        self.replicas_per_primary = replicas_per_primary
        self.host = host
        self.executable = find_redis_server(executable)
        self.node_timeout_ms = node_timeout_ms
        self.startup_timeout = startup_timeout
        self.proxied = proxied
        self.seed = seed
        self.servers: list[RedisServer] = []
        self.startup_seconds: float | None = None
        self._ids: dict[int, str] = {}  # port -> node id
        self._network: ClusterNetwork | None = None

    def __repr__(self) -> str:
        ports = ",".join(str(s.port) for s in self.servers) or "not started"
        return f"RedisClusterTopology(host={self.host!r}, ports={ports})"

    @property
    def node_timeout(self) -> float:
        """``cluster-node-timeout`` in seconds: the unit every failover wait is derived from."""
        return self.node_timeout_ms / 1000

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every node as clients reach it (its proxy when proxied), for ``startup_nodes``."""
        return [(self.host, self.client_port(s)) for s in self.servers]

    @property
    def url(self) -> str:
        """``redis://host:port`` of the first node as clients reach it (any node lets a cluster client discover the
        others)."""
        return f"redis://{self.host}:{self.client_port(self.servers[0])}"

    def client_port(self, server: RedisServer) -> int:
        """The port clients reach ``server`` on: the one it announces (its proxy's when proxied, else its own)."""
        if self._network is None:
            return server.port
        return self._network.client_ports[self.servers.index(server)]

    # -- lifecycle ---------------------------------------------------------------------------------------------------

    def start(self) -> Self:
        """Start every server, assign the slots, join the nodes, attach the replicas, and wait until all is ready."""
        if self.servers:
            return self
        started = time.monotonic()
        count = self.primary_count * (1 + self.replicas_per_primary)
        try:
            if self.proxied:
                from sessionkv.testing.netsplit import ClusterNetwork

                self._network = ClusterNetwork(
                    self.host, count, lambda bus, skip: port_block(self.host, bus=bus, skip=skip), seed=self.seed
                )
                self._network.reserve(CLUSTER_BUS_OFFSET)
            self.servers = _start_servers(
                lambda base: [self._server(base + i, i) for i in range(count)], self.host, bus=True
            )
            if self._network is not None:
                self._network.attach(
                    [s.port for s in self.servers], [s.port + CLUSTER_BUS_OFFSET for s in self.servers]
                )
            self._create()
            self.wait_ready(self.startup_timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def _server(self, port: int, index: int) -> RedisServer:
        network: tuple[str, ...] = ()
        if self._network is not None:
            # announce the forwarders (clients, MOVED/ASK, CLUSTER SLOTS and replicas use these) and connect out from
            # an address of its own, so the forwarders can tell which node a connection comes from
            network = (
                "--cluster-announce-ip",
                self.host,
                "--cluster-announce-port",
                str(self._network.client_ports[index]),
                "--cluster-announce-bus-port",
                str(self._network.bus_ports[index]),
                "--bind-source-addr",
                self._network.source(index),
            )
        return RedisServer(
            executable=self.executable,
            host=self.host,
            port=port,
            extra_args=(
                "--cluster-enabled",
                "yes",
                "--cluster-node-timeout",
                str(self.node_timeout_ms),
                *_DATA_ARGS,
                *network,
            ),
        )

    def _create(self) -> None:
        primaries = self.servers[: self.primary_count]
        for server in self.servers:
            self._ids[server.port] = str(_command(server, "CLUSTER", "MYID"))
        bounds = [round(i * HASH_SLOTS / self.primary_count) for i in range(self.primary_count + 1)]
        for index, server in enumerate(primaries):
            _command(server, "CLUSTER", "ADDSLOTSRANGE", bounds[index], bounds[index + 1] - 1)
            # distinct epochs up front, as redis-cli does, so the nodes need not resolve collisions first
            _command(server, "CLUSTER", "SET-CONFIG-EPOCH", index + 1)
        for index, server in enumerate(self.servers[1:], start=1):
            if self._network is None:
                _command(self.servers[0], "CLUSTER", "MEET", self.host, server.port)
            else:  # through the forwarders, so the nodes learn the announced ports
                port, bus = self._network.client_ports[index], self._network.bus_ports[index]
                _command(self.servers[0], "CLUSTER", "MEET", self.host, port, bus)
        everyone = set(self._ids.values())
        for server in self.servers:

            def knows_everyone(server: RedisServer = server) -> bool | None:
                return True if {n.id for n in self.nodes(server) if not n.failing} == everyone else None

            _wait(f"node {server.port} to know every node", knows_everyone, self.startup_timeout)
        replicas = self.servers[self.primary_count :]
        for index, server in enumerate(replicas):
            primary = primaries[index % self.primary_count]
            _command(server, "CLUSTER", "REPLICATE", self._ids[primary.port])

    def stop(self) -> None:
        """Stop the proxies and forwarders (if proxied), then every server, and remove every directory (nodes.conf
        included). Idempotent."""
        network, self._network = self._network, None
        if network is not None:
            network.stop()  # first: a client connecting meanwhile is refused, not sent to a stopping node
        servers, self.servers = self.servers, []
        for server in servers:
            server.stop()
        self._ids.clear()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- state -------------------------------------------------------------------------------------------------------

    def nodes(self, server: RedisServer) -> list[ClusterNode]:
        """``CLUSTER NODES`` as ``server`` sees it."""
        return _parse_nodes(str(_command(server, "CLUSTER", "NODES")))

    def node_id(self, server: RedisServer) -> str:
        return self._ids[server.port]

    def server_by_id(self, node_id: str) -> RedisServer:
        return next(s for s in self.servers if self._ids[s.port] == node_id)

    def _observer(self) -> RedisServer:
        for server in self.servers:
            if _reachable(server):
                return server
        raise TopologyError("no node of the cluster is running")

    def primaries(self) -> list[RedisServer]:
        """The servers that hold slots as primaries now, in slot order (as a reachable node sees it)."""
        holders = sorted((n.slots[0][0], n.id) for n in self.nodes(self._observer()) if n.is_primary and n.slots)
        return [self.server_by_id(node_id) for _, node_id in holders]

    def replicas(self) -> list[RedisServer]:
        """The running servers that are not primaries now."""
        primaries = set(self.primaries())
        return [s for s in self.servers if s not in primaries]

    def replicas_of(self, primary: RedisServer) -> list[RedisServer]:
        primary_id = self.node_id(primary)
        return [self.server_by_id(n.id) for n in self.nodes(self._observer()) if n.primary_id == primary_id]

    def primary_for_key(self, key: str | bytes) -> RedisServer:
        """The primary serving ``key``'s hash slot now."""
        slot = key_slot(key.encode() if isinstance(key, str) else key)
        for node in self.nodes(self._observer()):
            if node.is_primary and any(low <= slot <= high for low, high in node.slots):
                return self.server_by_id(node.id)
        raise TopologyError(f"no primary serves slot {slot} now")

    def _ready_problem(self) -> str | None:
        """What keeps the cluster from being ready, or None when it is."""
        maps: set[tuple[tuple[int, str], ...]] = set()
        for server in self.servers:
            if not _reachable(server):
                return f"node {server.port} is not running"
            state = _cluster_state(server)
            if state != "ok":
                return f"node {server.port} reports cluster_state:{state}"
            nodes = self.nodes(server)
            if len(nodes) != len(self.servers) or any(n.failing for n in nodes):
                return f"node {server.port} sees {[(n.port, sorted(n.flags)) for n in nodes]}"
            maps.add(tuple(sorted((r[0], n.id) for n in nodes if n.is_primary for r in n.slots)))
            if self._ids[server.port] not in {n.id for n in nodes if n.is_primary}:
                replication = _info(server, "replication")
                if replication.get("master_link_status") != "up":
                    return f"replica {server.port} reports master_link_status:{replication.get('master_link_status')}"
        if len(maps) != 1:
            return f"the nodes disagree on the slot map: {maps}"
        primaries = [n for n in self.nodes(self.servers[0]) if n.is_primary and n.slots]
        if len(primaries) != self.primary_count:
            return f"{len(primaries)} primaries hold slots, expected {self.primary_count}"
        for primary in primaries:
            if len(self.replicas_of(self.server_by_id(primary.id))) != self.replicas_per_primary:
                return f"primary {primary.port} does not have {self.replicas_per_primary} replica(s)"
        return None

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until every node is up and agrees on the slot map with ``cluster_state:ok``, every replica synced."""
        last: list[str | None] = [None]

        def probe() -> bool | None:
            last[0] = _problem(self._ready_problem)
            return True if last[0] is None else None

        _wait("the cluster to be ready", probe, timeout or self.startup_timeout, describe=lambda: f"last: {last[0]}")

    def wait_replicated(self, timeout: float | None = None) -> None:
        """Wait until every replica has applied everything its primary has written so far (so a failover now loses
        nothing written before the call)."""
        for primary in self.primaries():
            replicas = self.replicas_of(primary)
            probe = functools.partial(_caught_up, primary, replicas)
            _wait(f"the replicas of {primary.port} to catch up", probe, timeout or 30)

    # -- faults ------------------------------------------------------------------------------------------------------

    def kill(self, server: RedisServer) -> None:
        """SIGKILL ``server`` (a crash); its replica is promoted once the others mark it failed (node timeout)."""
        server.kill()

    def pause(self, server: RedisServer) -> None:
        """SIGSTOP ``server``: it keeps its sockets but answers nothing, so the others fail it over after the node
        timeout; :meth:`resume` lets it rejoin (a primary that was replaced comes back as a replica)."""
        server.pause()

    def resume(self, server: RedisServer) -> None:
        server.resume()

    def restart_empty(self, server: RedisServer, *, after_failover: bool = True) -> None:
        """Kill ``server`` and start it again with no data (persistence is off; nodes.conf keeps its identity).

        ``after_failover=True``: the restart waits until a replica has been promoted in its place, so it rejoins as a
        replica of the new primary and nothing is lost beyond what replication lag loses. ``False``: it comes back at
        once, still a primary of its slots but empty, and its replicas resynchronise from it: their copy is lost too
        (the failure mode the Redis documentation warns about for primaries restarted without persistence).
        """
        was_primary = server in self.primaries()
        server.kill()
        if after_failover and was_primary:
            self.wait_for_promotion(server)
        _start_empty(server)

    def wait_for_promotion(self, old_primary: RedisServer, timeout: float | None = None) -> RedisServer:
        """Wait until another node serves ``old_primary``'s slots as a primary and the live nodes report
        ``cluster_state:ok``; return the new primary. The default timeout is 60 node timeouts (generous: failure
        detection takes a node timeout plus gossip, the election about one more)."""
        old_id = self.node_id(old_primary)
        slots = next((n.slots for n in self.nodes(self._other_than(old_primary)) if n.id == old_id), ())
        if not slots and _reachable(old_primary):  # replaced already (isolated): it still claims its slots itself
            slots = next((n.slots for n in self.nodes(old_primary) if n.id == old_id), ())
        if not slots:
            raise TopologyError(f"node {old_primary.port} holds no slots: it is not a primary")
        first_slot = slots[0][0]

        def promoted() -> RedisServer | None:
            live = [s for s in self.servers if _reachable(s) and s is not old_primary]
            for server in live:
                if _cluster_state(server) != "ok":
                    return None
            owners = {
                n.id
                for n in self.nodes(live[0])
                if n.is_primary and any(low <= first_slot <= high for low, high in n.slots)
            }
            if len(owners) != 1 or old_id in owners:
                return None
            return self.server_by_id(owners.pop())

        return _wait(
            f"a replica of {old_primary.port} to be promoted",
            promoted,
            timeout if timeout is not None else 60 * self.node_timeout,
        )

    def _other_than(self, server: RedisServer) -> RedisServer:
        for other in self.servers:
            if other is not server and _reachable(other):
                return other
        raise TopologyError("no other node of the cluster is running")

    def manual_failover(self, replica: RedisServer, timeout: float | None = None) -> None:
        """``CLUSTER FAILOVER`` on ``replica``: a coordinated switch (its primary stops writes until the replica has
        caught up, so no acknowledged write is lost); returns once ``replica`` is a primary and the cluster is ready.

        A manual failover the server gives up on (it allows itself 5 s) is requested again, within ``timeout``."""
        deadline = time.monotonic() + (timeout if timeout is not None else 60 * self.node_timeout + _MANUAL_FAILOVER_S)
        while True:
            _command(replica, "CLUSTER", "FAILOVER")
            try:
                _wait(
                    f"replica {replica.port} to become a primary",
                    lambda: True if _info(replica, "replication").get("role") == "master" else None,
                    min(_MANUAL_FAILOVER_S + 1, max(0.0, deadline - time.monotonic())),
                    describe=lambda: f"its log:\n{replica.log_tail(12)}",
                )
                break
            except TopologyError:
                if time.monotonic() >= deadline:
                    raise
        self.wait_ready(max(1.0, deadline - time.monotonic()))

    # -- faults per node and partitions (proxied=True) ---------------------------------------------------------------

    def _proxied_network(self, what: str) -> ClusterNetwork:
        if self._network is None:
            state = "not started" if not self.servers else "started without proxied=True"
            raise TopologyError(f"{what} needs a proxied cluster: this topology is {state}; use proxied=True")
        return self._network

    def _index(self, server: RedisServer) -> int:
        try:
            return self.servers.index(server)
        except ValueError:
            raise ValueError(f"{server!r} is not a server of {self!r}") from None

    def proxy(self, server: RedisServer) -> RedisFaultProxy:
        """The fault proxy every client connection to ``server`` goes through (``proxied=True`` only).

        A fault added to it acts on every client connection to that node (those a cluster client opens after a
        ``MOVED`` too), never on the cluster's own traffic (bus, replication). Its ``add``, ``remove``, ``clear`` and
        ``connections`` may be called from any thread or event loop: they run on the proxies' own loop thread. For
        anything else on it (reading its ``transcript``), use :meth:`on_proxy_loop`."""
        network = self._proxied_network("proxy()")
        return network.proxies[self._index(server)]

    def on_proxy_loop(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` run on the thread whose event loop the proxies live on; returns its result."""
        return self._proxied_network("on_proxy_loop()").loop_thread.call(function, *args)

    def isolate(self, server: RedisServer) -> None:
        """Cut ``server`` from every other node, clients still reaching it: its cluster bus links both ways and its
        replication links are reset, and new ones refused, until :meth:`heal_network`.

        A primary cut this way keeps acknowledging writes until it has missed the majority for ``cluster-node-timeout``
        (then it answers ``CLUSTERDOWN``); meanwhile the majority fails it over to its replica (see
        :meth:`wait_for_promotion`). After :meth:`heal_network` it rejoins as a replica of the new primary and what it
        acknowledged during the cut is gone."""
        self._proxied_network("isolate()").isolate(self._index(server))

    def isolated(self) -> list[RedisServer]:
        """The servers :meth:`isolate` cut off and no :meth:`heal_network` reconnected yet."""
        if self._network is None:
            return []
        indexes = self._network.isolated()
        return [s for i, s in enumerate(self.servers) if i in indexes]

    def heal_network(self, timeout: float | None = None) -> None:
        """Reconnect every isolated node, then wait until the cluster is ready (a primary replaced meanwhile is then a
        synchronised replica of the new one)."""
        self._proxied_network("heal_network()").heal()
        self.wait_ready(timeout)

    def clear_faults(self) -> None:
        """Remove every fault from every node's proxy (nothing when not proxied)."""
        if self._network is not None:
            self._network.clear_faults()

    def heal(self, timeout: float | None = None) -> None:
        """Reconnect isolated nodes, resume paused servers, start killed ones (they rejoin with their identity), and
        wait until ready. Proxy faults stay: :meth:`clear_faults` removes them."""
        if self._network is not None:
            self._network.heal()
        for server in self.servers:
            if server_paused(server):
                server.resume()
            elif not server.running:
                _start_empty(server)
        self.wait_ready(timeout)

    def flush(self) -> None:
        """Remove proxy faults, heal the topology if a fault left it broken, then empty every primary and wait until
        the replicas have applied the FLUSHALL too (``WAIT``), so the next user starts from empty data everywhere."""
        self.clear_faults()
        if self.isolated() or _problem(self._ready_problem) is not None:
            self.heal()
        for primary in self.primaries():
            _flush_replicated(primary, self.replicas_per_primary)


# -- Sentinel ---------------------------------------------------------------------------------------------------------


class RedisSentinelTopology:
    """One primary, one replica and ``sentinels`` Sentinels (``redis-server --sentinel``) watching them as
    :attr:`service_name`, quorum ``quorum``, ``down-after-milliseconds`` ``down_after_ms`` (500 ms).

    Started in that order: the replica once the primary answers, the Sentinels once the replica is synchronised;
    :meth:`start` returns when every Sentinel knows the primary, the replica and every other Sentinel.
    """

    def __init__(
        self,
        *,
        service_name: str = "sessionkv",
        sentinels: int = 3,
        quorum: int = 2,
        host: str = "127.0.0.1",
        executable: str | os.PathLike[str] | None = None,
        down_after_ms: int = 500,
        failover_timeout_ms: int = 2000,
        startup_timeout: float = 60.0,
    ) -> None:
        if not 1 <= quorum <= sentinels or sentinels + 2 > BLOCK_SIZE:
            raise ValueError(f"need 1 <= quorum <= sentinels <= {BLOCK_SIZE - 2}, got quorum={quorum}, {sentinels}")
        if not re.fullmatch(r"[A-Za-z0-9._-]+", service_name):
            raise ValueError(f"service_name must be letters, digits, '.', '_' or '-', got {service_name!r}")
        self.service_name = service_name
        self.sentinel_count = sentinels
        self.quorum = quorum
        self.host = host
        self.executable = find_redis_server(executable)
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.startup_timeout = startup_timeout
        self.data_servers: list[RedisServer] = []
        self.sentinels: list[RedisServer] = []
        self.startup_seconds: float | None = None
        self._directory: Path | None = None

    def __repr__(self) -> str:
        return f"RedisSentinelTopology(service_name={self.service_name!r}, sentinels={self.sentinel_addresses})"

    @property
    def down_after(self) -> float:
        """``down-after-milliseconds`` in seconds: the unit every failover wait is derived from."""
        return self.down_after_ms / 1000

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every Sentinel, for ``redis.asyncio.sentinel.Sentinel``."""
        return [(s.host, s.port) for s in self.sentinels]

    @property
    def servers(self) -> list[RedisServer]:
        """Every process: the two data servers, then the Sentinels."""
        return [*self.data_servers, *self.sentinels]

    # -- lifecycle ---------------------------------------------------------------------------------------------------

    def start(self) -> Self:
        if self.servers:
            return self
        started = time.monotonic()
        try:
            self._directory = Path(tempfile.mkdtemp(prefix=f"{_DIR_PREFIX}{os.getpid()}-sentinel-"))
            self.data_servers = _start_servers(self._data_pair, self.host, bus=False)
            primary, replica = self.data_servers
            self._wait_link_up(replica)
            base = primary.port
            self.sentinels = []
            for index in range(self.sentinel_count):
                sentinel = self._sentinel(base + 2 + index, primary).start()
                self.sentinels.append(sentinel)
                _quicken(sentinel)
            self.wait_ready(self.startup_timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def _data_pair(self, base: int) -> list[RedisServer]:
        primary = RedisServer(executable=self.executable, host=self.host, port=base, extra_args=_DATA_ARGS)
        replica = RedisServer(
            executable=self.executable, host=self.host, port=base + 1, extra_args=_replica_args(primary)
        )
        return [primary, replica]

    def _sentinel(self, port: int, primary: RedisServer) -> RedisServer:
        """A Sentinel on ``port``: a config file it may rewrite, and a launcher that passes it first (Sentinel reads
        its config file only from the first argument, which RedisServer reserves for its own options)."""
        assert self._directory is not None
        config = self._directory / f"sentinel-{port}.conf"
        name = self.service_name
        config.write_text(
            f"sentinel monitor {name} {primary.host} {primary.port} {self.quorum}\n"
            f"sentinel down-after-milliseconds {name} {self.down_after_ms}\n"
            f"sentinel failover-timeout {name} {self.failover_timeout_ms}\n"
            f"sentinel parallel-syncs {name} 1\n"
        )
        launcher = self._directory / f"sentinel-{port}.sh"
        launcher.write_text(
            f'#!/bin/sh\nexec {shlex.quote(self.executable)} {shlex.quote(str(config))} --sentinel "$@"\n'
        )
        launcher.chmod(launcher.stat().st_mode | stat.S_IXUSR)
        return RedisServer(executable=launcher, host=self.host, port=port)

    def stop(self) -> None:
        """Stop the Sentinels, then the data servers, and remove every directory. Idempotent."""
        for server in [*self.sentinels, *self.data_servers]:
            server.stop()
        self.sentinels, self.data_servers = [], []
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- state -------------------------------------------------------------------------------------------------------

    def _wait_link_up(self, replica: RedisServer, timeout: float | None = None) -> None:
        _wait(
            f"replica {replica.port} to synchronise",
            lambda: True if _info(replica, "replication").get("master_link_status") == "up" else None,
            timeout or self.startup_timeout,
        )

    def primary(self) -> RedisServer:
        """The data server that is the primary now (the one reporting ``role:master`` that the Sentinels name)."""
        port = int(self._sentinel_view()[1])
        return next(s for s in self.data_servers if s.port == port)

    def replica(self) -> RedisServer:
        primary = self.primary()
        return next(s for s in self.data_servers if s is not primary)

    def _sentinel_view(self) -> tuple[str, str]:
        for sentinel in self.sentinels:
            if _reachable(sentinel):
                with contextlib.suppress(redis.RedisError, OSError):
                    host, port = _command(sentinel, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service_name)
                    return str(host), str(port)
        raise TopologyError("no Sentinel answers")

    def _ready_problem(self) -> str | None:
        if any(not _reachable(s) for s in self.servers):
            return "a server is not running"
        addresses = set()
        for sentinel in self.sentinels:
            addresses.add(int(_command(sentinel, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service_name)[1]))
            master = _command(sentinel, "SENTINEL", "MASTER", self.service_name)
            fields = _fields(master)
            if fields.get("flags") != "master":
                return f"Sentinel {sentinel.port} flags the primary {fields.get('flags')}"
            if int(fields.get("num-other-sentinels", 0)) != self.sentinel_count - 1:
                return f"Sentinel {sentinel.port} knows {fields.get('num-other-sentinels')} other Sentinels"
            replicas = _command(sentinel, "SENTINEL", "REPLICAS", self.service_name)
            healthy = [
                r
                for r in (_fields(item) for item in replicas)
                if r.get("flags") == "slave" and r.get("master-link-status") == "ok"
            ]
            if len(healthy) != len(self.data_servers) - 1:
                return f"Sentinel {sentinel.port} sees {len(healthy)} healthy replica(s)"
        if len(addresses) != 1:
            return f"the Sentinels disagree on the primary: {sorted(addresses)}"
        port = addresses.pop()
        primary = next(s for s in self.data_servers if s.port == port)
        if _info(primary, "replication").get("role") != "master":
            return f"the Sentinels' primary {primary.port} does not report role:master"
        for server in self.data_servers:
            if server is not primary and _info(server, "replication").get("master_link_status") != "up":
                return f"replica {server.port} is not synchronised"
        return None

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until every process runs, the Sentinels agree on the primary, see each other and the synchronised
        replica (Sentinels learn of peers every 2 s and of replicas from the primary's INFO, so this takes seconds)."""
        last: list[str | None] = [None]

        def probe() -> bool | None:
            last[0] = _problem(self._ready_problem)
            return True if last[0] is None else None

        _wait(
            "the Sentinel topology to be ready", probe, timeout or self.startup_timeout, describe=lambda: str(last[0])
        )

    def wait_replicated(self, timeout: float | None = None) -> None:
        """Wait until the replica has applied everything the primary has written so far."""
        primary = self.primary()
        replicas = [self.replica()]
        _wait("the replica to catch up", lambda: _caught_up(primary, replicas), timeout or 30)

    # -- faults ------------------------------------------------------------------------------------------------------

    def kill(self, server: RedisServer) -> None:
        """SIGKILL ``server`` (a crash); for the primary, the Sentinels promote the replica after down-after."""
        server.kill()

    def pause(self, server: RedisServer) -> None:
        server.pause()

    def resume(self, server: RedisServer) -> None:
        server.resume()

    def wait_for_promotion(self, old_primary: RedisServer, timeout: float | None = None) -> RedisServer:
        """Wait until every running Sentinel names another data server as the primary and that server reports
        ``role:master``; return it. Default timeout: 60 down-after periods (detection, agreement, election,
        promotion)."""

        def promoted() -> RedisServer | None:
            ports = set()
            for sentinel in self.sentinels:
                if _reachable(sentinel):
                    ports.add(int(_command(sentinel, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service_name)[1]))
            if len(ports) != 1 or old_primary.port in ports:
                return None
            new = next(s for s in self.data_servers if s.port in ports)
            return new if _info(new, "replication").get("role") == "master" else None

        return _wait(
            f"Sentinels to promote a replica of {old_primary.port}",
            promoted,
            timeout if timeout is not None else 60 * self.down_after,
        )

    def restart_empty(self, server: RedisServer, *, after_failover: bool = True) -> None:
        """Kill ``server`` and start it empty. For the primary with ``after_failover`` (default), wait until the
        Sentinels promoted the replica, then start it as a replica of the new primary; without, it comes back at once
        as an empty primary and the replica resynchronises from it (its copy is lost too)."""
        was_primary = server is self.primary()
        server.kill()
        if was_primary and after_failover:
            new = self.wait_for_promotion(server)
            self._rejoin_as_replica(server, new)
        else:
            _start_empty(server)

    def _rejoin_as_replica(self, server: RedisServer, primary: RedisServer) -> None:
        # started as a replica at once: Sentinel itself demotes a returning old primary only after about 8 s
        server.extra_args = _replica_args(primary)
        _start_empty(server)

    def manual_failover(self, timeout: float | None = None) -> RedisServer:
        """``SENTINEL FAILOVER`` (no agreement needed): promote the replica, demote the primary; returns the new
        primary once the topology is ready again."""
        old = self.primary()
        _command(self.sentinels[0], "SENTINEL", "FAILOVER", self.service_name)
        new = self.wait_for_promotion(old, timeout)
        self.wait_ready(timeout)
        return new

    def heal(self, timeout: float | None = None) -> None:
        """Resume paused processes, start killed ones (a data server that is not the primary the Sentinels name
        rejoins as its replica), and wait until ready."""
        for server in self.servers:
            if server_paused(server):
                server.resume()
        for sentinel in self.sentinels:
            if not sentinel.running:
                _quicken(sentinel.start())
        dead = [s for s in self.data_servers if not s.running]
        if dead:
            named = next(s for s in self.data_servers if s.port == int(self._sentinel_view()[1]))
            if not named.running:
                if len(dead) == len(self.data_servers):
                    _start_empty(named)  # everything was lost: the named primary comes back, empty
                else:
                    named = self.wait_for_promotion(named, timeout)
            for server in self.data_servers:
                if not server.running:
                    self._rejoin_as_replica(server, named)
        self.wait_ready(timeout)

    def flush(self) -> None:
        """Heal the topology if a fault left it broken, then ``FLUSHALL`` the primary and wait for the replica."""
        if _problem(self._ready_problem) is not None:
            self.heal()
        _flush_replicated(self.primary(), len(self.data_servers) - 1)
