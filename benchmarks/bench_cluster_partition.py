"""Measure the proxied Redis Cluster topology: its start-up against the plain one, the cost of the per-node fault proxy
on a command, and what a network partition of a primary does (``isolate`` → promotion → ``heal_network``).

Usage: ``python benchmarks/bench_cluster_partition.py [--rounds 3] [--commands 2000]``
(``SESSIONKV_REDIS_EXEC=valkey-server`` for the bundled Valkey).

Per round, alternating: a plain and a proxied cluster are started (``startup_seconds``), then on the proxied one a
primary is isolated while one client keeps writing to it through its proxy, as a client with a stale slot map would,
until it answers ``CLUSTERDOWN``. Printed per round: how long the cut primary kept acknowledging writes and how many
it acknowledged, the time from ``isolate`` until ``wait_for_promotion`` returned, the time ``heal_network`` took (the
old primary rejoins as a replica and resynchronises), and how many of the acknowledged writes were lost. The proxy's
cost: the median round trip of ``--commands`` sequential ``PING`` straight to a node and through its proxy, in the same
run.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import redis

from sessionkv.testing.servers import find_redis_server, server_version
from sessionkv.testing.topologies import RedisClusterTopology


def round_trips(port: int, commands: int) -> float:
    """Median seconds of one ``PING`` on a fresh connection to ``port`` (after a warm-up)."""
    with contextlib.closing(redis.Redis(port=port)) as client:
        client.ping()
        times = []
        for _ in range(commands):
            started = time.perf_counter()
            client.ping()
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def partition_round(cluster: RedisClusterTopology) -> dict[str, float]:
    victim = cluster.primaries()[0]
    with contextlib.closing(redis.Redis(port=cluster.client_port(victim))) as client:
        key = next(f"p{i}" for i in range(10_000) if cluster.primary_for_key(f"p{i}") is victim)
        tag = "{" + key + "}"
        client.set(tag + "before", b"v")
        cluster.wait_replicated()
        cut = time.monotonic()
        cluster.isolate(victim)
        acknowledged: list[str] = []
        while True:
            name = f"{tag}/{len(acknowledged)}"
            try:
                client.set(name, b"v")
            except redis.exceptions.ClusterDownError:
                refused_after = time.monotonic() - cut
                break
            acknowledged.append(name)
    cluster.wait_for_promotion(victim)
    promoted_after = time.monotonic() - cut
    healing = time.monotonic()
    cluster.heal_network()
    healed_in = time.monotonic() - healing
    host, port = cluster.startup_nodes[0]
    with contextlib.closing(redis.RedisCluster(host=host, port=port)) as reader:
        lost = sum(1 for name in acknowledged if reader.get(name) is None)
        kept_before = reader.get(tag + "before") == b"v"
    cluster.flush()
    return {
        "acknowledged": len(acknowledged),
        "refused_after": refused_after,
        "promoted_after": promoted_after,
        "healed_in": healed_in,
        "lost": lost,
        "kept_before": float(kept_before),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--commands", type=int, default=2000)
    args = parser.parse_args()
    print(server_version(find_redis_server()))
    plain_starts, proxied_starts, partitions, direct, proxied = [], [], [], [], []
    for number in range(1, args.rounds + 1):
        with RedisClusterTopology() as plain:
            assert plain.startup_seconds is not None
            plain_starts.append(plain.startup_seconds)
        with RedisClusterTopology(proxied=True) as cluster:
            assert cluster.startup_seconds is not None
            proxied_starts.append(cluster.startup_seconds)
            node = cluster.servers[0]
            direct.append(round_trips(node.port, args.commands))
            proxied.append(round_trips(cluster.client_port(node), args.commands))
            result = partition_round(cluster)
        partitions.append(result)
        print(
            f"round {number}: start-up plain {plain_starts[-1]:.2f} s, proxied {proxied_starts[-1]:.2f} s; "
            f"PING direct {direct[-1] * 1e6:.0f} µs, through the proxy {proxied[-1] * 1e6:.0f} µs; "
            f"cut primary acknowledged {result['acknowledged']:.0f} writes for {result['refused_after']:.2f} s, "
            f"promotion {result['promoted_after']:.2f} s after isolate, heal_network {result['healed_in']:.2f} s, "
            f"lost {result['lost']:.0f} of {result['acknowledged']:.0f} acknowledged during the cut, "
            f"write before the cut kept: {bool(result['kept_before'])}"
        )
    plain_median, proxied_median = statistics.median(plain_starts), statistics.median(proxied_starts)
    print(
        f"start-up medians: plain {plain_median:.2f} s, proxied {proxied_median:.2f} s "
        f"(ratio {proxied_median / plain_median:.2f})"
    )
    direct_median, proxied_median_rt = statistics.median(direct), statistics.median(proxied)
    print(
        f"PING round trip medians: direct {direct_median * 1e6:.0f} µs, through the proxy "
        f"{proxied_median_rt * 1e6:.0f} µs (ratio {proxied_median_rt / direct_median:.1f})"
    )
    print(
        "isolate -> CLUSTERDOWN on the cut primary: "
        + ", ".join(f"{p['refused_after']:.2f}" for p in partitions)
        + " s; isolate -> promoted: "
        + ", ".join(f"{p['promoted_after']:.2f}" for p in partitions)
        + " s; acknowledged and lost: "
        + ", ".join(f"{p['lost']:.0f}/{p['acknowledged']:.0f}" for p in partitions)
    )


if __name__ == "__main__":
    main()
