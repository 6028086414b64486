"""The proxied Redis Cluster: a fault proxy in front of every node that every client connection goes through (the
nodes announce it, so redirections lead there too), and a real network partition of one node.

Real servers and real clients (redis-py's ``RedisCluster``, sync and async, and ``RedisClusterSessionKVStore``). Every
wait is derived from the cluster's ``node_timeout`` and polls; nothing asserts how long something took.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time

import pytest
import redis
import redis.asyncio
from redis.crc import key_slot

from sessionkv.errors import StoreUnavailableError
from sessionkv.redis_cluster import RedisClusterSessionKVStore
from sessionkv.testing.faults import Down, ErrorReply, Latency
from sessionkv.testing.netsplit import Partition, TcpForwarder
from sessionkv.testing.servers import RedisServer
from sessionkv.testing.topologies import RedisClusterTopology, TopologyError

PREFIX = "px:"


def key_on(topology: RedisClusterTopology, primary: RedisServer, stem: str) -> str:
    """A key (without PREFIX) whose slot ``primary`` serves now."""
    for i in range(10_000):
        key = f"{stem}{i}"
        if topology.primary_for_key(PREFIX + key) is primary:
            return key
    raise AssertionError(f"no key of the form {stem}N on {primary}")  # pragma: no cover


def victim_and_keys(topology: RedisClusterTopology, stem: str) -> tuple[RedisServer, str, str]:
    """The first primary, a key it serves and a key another primary serves."""
    victim, other = topology.primaries()[:2]
    return victim, key_on(topology, victim, stem), key_on(topology, other, stem)


def sync_cluster(topology: RedisClusterTopology) -> redis.RedisCluster:
    host, port = topology.startup_nodes[0]
    return redis.RedisCluster(host=host, port=port, socket_timeout=60 * topology.node_timeout)


def test_the_nodes_announce_their_proxies_in_the_slot_map_and_in_redirections(
    sessionkv_redis_cluster_proxied: RedisClusterTopology,
) -> None:
    topology = sessionkv_redis_cluster_proxied
    client_ports = {topology.client_port(s) for s in topology.servers}
    own_ports = {s.port for s in topology.servers}
    assert not client_ports & own_ports
    assert {port for _, port in topology.startup_nodes} == client_ports
    with contextlib.closing(redis.Redis(port=topology.servers[0].port, decode_responses=True)) as admin:
        slots = admin.execute_command("CLUSTER", "SLOTS")  # type: ignore[no-untyped-call]
    assert {int(entry[2][1]) for entry in slots} == {topology.client_port(p) for p in topology.primaries()}

    # a node asked for a key it does not serve redirects the client to the owner's proxy, never to the node itself
    owner = topology.primary_for_key("k")
    other = next(p for p in topology.primaries() if p is not owner)
    with (
        contextlib.closing(redis.Redis(port=topology.client_port(other))) as client,
        pytest.raises(redis.exceptions.MovedError) as moved,
    ):
        client.set("k", b"v")
    assert (moved.value.slot_id, moved.value.host, moved.value.port) == (
        key_slot(b"k"),
        "127.0.0.1",
        topology.client_port(owner),
    )


def test_every_client_connection_to_a_node_goes_through_its_proxy(
    sessionkv_redis_cluster_proxied: RedisClusterTopology,
) -> None:
    topology = sessionkv_redis_cluster_proxied
    before = {s.port: len(topology.proxy(s).connections) for s in topology.servers}
    with contextlib.closing(sync_cluster(topology)) as client:
        for i in range(200):
            client.set(f"{PREFIX}spread/{i}", b"v")
    for primary in topology.primaries():
        assert len(topology.proxy(primary).connections) > before[primary.port], f"{primary} saw no client"


def test_a_fault_on_a_nodes_proxy_hits_the_cluster_clients_commands_for_that_node_only(
    sessionkv_redis_cluster_proxied: RedisClusterTopology,
) -> None:
    topology = sessionkv_redis_cluster_proxied
    victim, on_victim, elsewhere = victim_and_keys(topology, "e/")
    with contextlib.closing(sync_cluster(topology)) as client:
        client.set(PREFIX + on_victim, b"before")
        handle = topology.proxy(victim).add(ErrorReply("NOPERM injected by the test"))
        with pytest.raises(redis.exceptions.NoPermissionError, match="injected by the test"):
            client.get(PREFIX + on_victim)
        client.set(PREFIX + elsewhere, b"unaffected")
        assert client.get(PREFIX + elsewhere) == b"unaffected"
        handle.remove()
        assert client.get(PREFIX + on_victim) == b"before"


def test_replication_does_not_pass_through_the_client_faults(
    sessionkv_redis_cluster_proxied: RedisClusterTopology,
) -> None:
    topology = sessionkv_redis_cluster_proxied
    primary = topology.primaries()[0]
    replica = topology.replicas_of(primary)[0]
    topology.proxy(primary).add(Down(cut_existing=True))
    topology.proxy(replica).add(Down(cut_existing=True))
    key = PREFIX + key_on(topology, primary, "r/")
    with contextlib.closing(redis.Redis(port=primary.port)) as admin:  # the node's own port: past the proxy
        admin.set(key, b"v")
    topology.wait_replicated()
    with contextlib.closing(redis.Redis(port=replica.port)) as admin:
        admin.readonly()
        assert admin.get(key) == b"v"
    with pytest.raises(redis.ConnectionError), contextlib.closing(redis.Redis(port=topology.client_port(primary))) as c:
        c.ping()


@pytest.mark.asyncio
async def test_down_on_a_primarys_proxy_makes_the_store_unavailable_for_its_keys_and_a_fault_added_from_this_loop(
    sessionkv_redis_cluster_proxied: RedisClusterTopology,
) -> None:
    topology = sessionkv_redis_cluster_proxied
    victim, on_victim, elsewhere = victim_and_keys(topology, "d/")
    async with RedisClusterSessionKVStore(
        startup_nodes=topology.startup_nodes,
        key_prefix=PREFIX,
        operation_timeout=4 * topology.node_timeout,
        attempt_timeout=topology.node_timeout,
    ) as store:
        await store.set(on_victim, b"v", 600)
        # added from this test's event loop; the proxy lives on another thread's loop
        handle = topology.proxy(victim).add(Down(cut_existing=True))
        with pytest.raises(StoreUnavailableError):
            await store.set(on_victim, b"w", 600)
        with pytest.raises(StoreUnavailableError):
            await store.get(on_victim)  # retried until the deadline: the node stays unreachable
        await store.set(elsewhere, b"fine", 600)
        assert await store.get(elsewhere) == b"fine"
        handle.remove()
        assert await store.get(on_victim) == b"v"
    assert topology.primaries()[0] is victim, "a client fault must not fail the node over"


@pytest.mark.asyncio
async def test_latency_on_a_nodes_proxy_delays_the_async_cluster_client(
    sessionkv_redis_cluster_proxied: RedisClusterTopology,
) -> None:
    topology = sessionkv_redis_cluster_proxied
    victim = topology.primaries()[0]
    key = PREFIX + key_on(topology, victim, "l/")
    host, port = topology.startup_nodes[0]
    client = redis.asyncio.RedisCluster(host=host, port=port)
    try:
        await client.set(key, b"v")
        loop = asyncio.get_running_loop()
        handle = topology.proxy(victim).add(Latency(latency_ms=200))
        started = loop.time()
        assert await client.get(key) == b"v"
        delayed = loop.time() - started
        handle.remove()
        # a lower bound only (the fault guarantees the delay): one faulted round trip takes at least the latency
        assert delayed >= 0.2
    finally:
        await client.aclose()


def test_proxy_faults_can_be_added_and_removed_from_any_thread(
    sessionkv_redis_cluster_proxied: RedisClusterTopology,
) -> None:
    topology = sessionkv_redis_cluster_proxied
    proxy = topology.proxy(topology.servers[0])
    errors: list[BaseException] = []

    def churn() -> None:
        try:
            for _ in range(20):
                proxy.add(Latency(latency_ms=1)).remove()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=churn) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert proxy.faults == ()
    assert topology.on_proxy_loop(lambda: threading.current_thread().name) == "sessionkv-netsplit"


@pytest.mark.asyncio
async def test_an_isolated_primary_acknowledges_writes_until_the_node_timeout_and_loses_them_after_the_heal(
    sessionkv_redis_cluster_proxied: RedisClusterTopology,
) -> None:
    topology = sessionkv_redis_cluster_proxied
    victim = topology.primaries()[0]
    replica = topology.replicas_of(victim)[0]
    tag = key_on(topology, victim, "i/")
    keys = [f"{{{tag}}}/{n}" for n in range(100_000)]  # one slot (hash tag), served by the victim
    async with RedisClusterSessionKVStore(
        startup_nodes=topology.startup_nodes,
        key_prefix=PREFIX,
        operation_timeout=60 * topology.node_timeout,
        attempt_timeout=2 * topology.node_timeout,
    ) as store:
        await store.set("kept", b"replicated before the cut", 600)
        await store.set(keys[0], b"replicated before the cut", 600)
        await asyncio.to_thread(topology.wait_replicated)

        topology.isolate(victim)
        assert topology.isolated() == [victim]
        # the store keeps writing into the victim's slot: the cut primary acknowledges until it notices it has lost
        # the majority (node timeout), then answers CLUSTERDOWN; the store raises and re-reads the slot map
        acknowledged_during_cut: list[str] = []
        refused = 0
        for key in keys[1:]:
            try:
                await store.set(key, b"acknowledged by the cut primary", 600)
            except StoreUnavailableError:
                refused += 1
                break
            acknowledged_during_cut.append(key)
        new_primary = await asyncio.to_thread(topology.wait_for_promotion, victim)
        assert new_primary is replica
        assert topology.client_port(new_primary) in {port for _, port in topology.startup_nodes}

        await asyncio.to_thread(topology.heal_network)
        assert topology.isolated() == []
        assert victim in topology.replicas_of(new_primary), "the old primary did not rejoin as a replica"
        assert refused == 1
        assert acknowledged_during_cut, "the cut primary acknowledged no write: the cut took effect at once"
        survived = [
            k for k, v in zip(acknowledged_during_cut, await store.mget(acknowledged_during_cut), strict=True) if v
        ]
        assert survived == [], f"{len(survived)} writes acknowledged by the cut primary survived the heal"
        assert await store.get(keys[0]) == b"replicated before the cut"
        assert await store.get("kept") == b"replicated before the cut"
        # and the healed cluster takes writes on that slot again, on the new primary
        await store.set(keys[1], b"after the heal", 600)
        assert await store.get(keys[1]) == b"after the heal"


def test_an_isolated_node_still_serves_clients_and_a_cut_replica_drops_its_link(
    sessionkv_redis_cluster_proxied: RedisClusterTopology,
) -> None:
    topology = sessionkv_redis_cluster_proxied
    primary = topology.primaries()[1]
    replica = topology.replicas_of(primary)[0]
    topology.isolate(replica)

    with contextlib.closing(redis.Redis(port=replica.port, decode_responses=True)) as admin:
        deadline = time.monotonic() + 60 * topology.node_timeout
        while admin.info("replication").get("master_link_status") != "down" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert admin.info("replication").get("master_link_status") == "down", "the cut replica kept its link"
    with contextlib.closing(redis.Redis(port=topology.client_port(replica))) as client:
        assert client.ping()  # clients still reach it, through its proxy
    topology.heal_network()
    assert replica in topology.replicas_of(primary)
    assert topology.primaries()[1] is primary


def test_partition_methods_need_a_proxied_cluster_and_one_of_its_servers(
    sessionkv_redis_cluster_proxied: RedisClusterTopology,
) -> None:
    plain = RedisClusterTopology()
    with pytest.raises(TopologyError, match="proxied=True"):
        plain.isolate(sessionkv_redis_cluster_proxied.servers[0])
    with pytest.raises(TopologyError, match="proxied=True"):
        plain.proxy(sessionkv_redis_cluster_proxied.servers[0])
    stranger = RedisServer()
    with pytest.raises(ValueError, match="is not a server of"):
        sessionkv_redis_cluster_proxied.isolate(stranger)


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_a_proxied_cluster_used_inside_asyncio_run_leaves_no_thread_port_or_process_behind() -> None:
    async def scenario() -> tuple[list[int], list[int], threading.Thread]:
        # started, faulted, partitioned and stopped from inside a running event loop, as a simulation would
        topology = RedisClusterTopology(primaries=3, replicas_per_primary=0, proxied=True).start()
        try:
            pids = [s.pid for s in topology.servers if s.pid is not None]
            ports = [p for _, p in topology.startup_nodes] + [topology.proxy(s).port for s in topology.servers]
            proxy_thread = topology.on_proxy_loop(threading.current_thread)
            assert proxy_thread is not threading.current_thread()
            async with RedisClusterSessionKVStore(startup_nodes=topology.startup_nodes, key_prefix=PREFIX) as store:
                await store.set("k", b"v", 600)
                topology.isolate(topology.servers[2])
                topology.proxy(topology.servers[0]).add(Latency(latency_ms=1))
                assert await store.get("k") == b"v"
        finally:
            topology.stop()
        return pids, ports, proxy_thread

    pids, ports, proxy_thread = asyncio.run(scenario())
    assert not proxy_thread.is_alive()
    assert all(port_free(port) for port in ports)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


# -- the forwarder alone (no server): routing by source, cuts, half-close ------------------------------------------


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()  # after the client's EOF: half-close travels both ways


@pytest.mark.asyncio
async def test_a_forwarder_passes_clients_and_refuses_or_cuts_an_isolated_servers_connections() -> None:
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    echo_port = server.sockets[0].getsockname()[1]
    partition = Partition()
    here, there = "127.7.0.1", "127.7.0.2"
    for address in (here, there):
        partition.add_source(address)
    forwarder = TcpForwarder(
        socket.create_server(("127.0.0.1", 0)),
        lambda source: None if partition.blocked(source, here) else ("127.0.0.1", echo_port),
        destination=here,
    )
    partition.attach(forwarder)
    await forwarder.start()

    async def connect(source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", forwarder.port, local_addr=(source, 0))

    try:
        client = await connect("127.0.0.1")
        peer = await connect(there)
        for reader, writer in (client, peer):
            writer.write(b"ping")
            assert await reader.readexactly(4) == b"ping"

        assert partition.isolate(there) == 1  # the other server's open connection is reset, the client's is not
        with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
            await peer[0].readexactly(1)
        refused = await connect(there)  # accepted by the kernel, then reset by the forwarder
        with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
            await refused[0].readexactly(1)
        client[1].write(b"still")
        assert await client[0].readexactly(5) == b"still"
        client[1].write_eof()  # a clean end is passed on as one
        assert await client[0].read() == b""

        partition.heal()
        healed = await connect(there)
        healed[1].write(b"back")
        assert await healed[0].readexactly(4) == b"back"
        for _, writer in (client, peer, refused, healed):
            writer.close()
    finally:
        await forwarder.stop()
        server.close()
        await server.wait_closed()
    assert forwarder.refused == 1
