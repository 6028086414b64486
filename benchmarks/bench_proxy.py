"""Pass-through cost of RedisFaultProxy, measured with clients that are not the bottleneck.

Starts its own redis-server and a proxy in its own process (``python -m sessionkv.testing.faults.cli``, as the
``sessionkv proxy`` command runs it), then alternates direct and proxied rounds so both see the same machine load:

- throughput: ``redis-benchmark -t get -P 16 -c 50`` (the C client shipped with redis), requests per second, median
  and spread of the rounds (goal: proxied >= 50% of direct);
- latency: one connection sending GETs one at a time from a blocking socket (a few µs of client work per call), round
  trip p50 / p99 / worst and the first call on a fresh connection (goal: p50 adds <= 100 µs).

Proxy modes (``--mode``, repeatable; default all three):

- ``resp``: RESP framing on, no fault (commands and replies recorded in the transcript);
- ``fault``: RESP framing plus a command fault that matches no command of the benchmark (every frame is parsed, paired
  and offered to the fault: the cost of having command faults installed);
- ``raw``: no RESP framing (byte faults only).

    python benchmarks/bench_proxy.py            # full run, ~1 min
    python benchmarks/bench_proxy.py --quick    # CI smoke, a few seconds
    python benchmarks/bench_proxy.py --mode resp --baseline-src /tmp/old/src   # also an older proxy, same run

``--baseline-src DIR`` also measures the proxy as found in another source tree (e.g. ``git archive <commit> src``
unpacked), in the same alternating rounds, for before/after figures from one run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

from sessionkv.testing import RedisServer

MODES = {
    "resp": [],
    "fault": ["--fault", "lose_reply:command=NO-SUCH-COMMAND"],
    "raw": ["--raw"],
}
GET = b"*2\r\n$3\r\nGET\r\n$10\r\nbench:seq0\r\n"
VALUE = b"x" * 64
REPLY = b"$64\r\n" + VALUE + b"\r\n"


@dataclass(frozen=True)
class Settings:
    rounds: int
    requests: int
    sequential_ops: int


FULL = Settings(rounds=5, requests=400_000, sequential_ops=5_000)
QUICK = Settings(rounds=1, requests=50_000, sequential_ops=500)


def redis_benchmark_rps(port: int, requests: int) -> float:
    """Requests per second of ``redis-benchmark -t get -P 16 -c 50`` against ``127.0.0.1:port``."""
    out = subprocess.run(
        [
            "redis-benchmark",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-t",
            "get",
            "-P",
            "16",
            "-c",
            "50",
            "-n",
            str(requests),
            "--csv",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout
    for line in out.splitlines():
        if line.startswith('"GET"'):
            return float(line.split(",")[1].strip('"'))
    raise RuntimeError(f"unexpected redis-benchmark output: {out!r}")


def _read_reply(sock: socket.socket) -> None:
    got = b""
    while len(got) < len(REPLY):
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("connection closed mid-reply")
        got += chunk
    if got != REPLY:
        raise RuntimeError(f"unexpected reply {got[:40]!r}")


def sequential_round_trips_us(port: int, ops: int) -> tuple[float, list[float]]:
    """(first call on a fresh connection, then ``ops`` further calls), each a GET round trip in µs."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        samples = []
        for _ in range(ops + 1):
            start = time.perf_counter_ns()
            sock.sendall(GET)
            _read_reply(sock)
            samples.append((time.perf_counter_ns() - start) / 1000)
    return samples[0], samples[1:]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@contextlib.contextmanager
def proxy_port(server: RedisServer, mode: str, src: str | None = None) -> Iterator[int]:
    command = [sys.executable, "-m", "sessionkv.testing.faults.cli", "--upstream", f"{server.host}:{server.port}"]
    env = os.environ if src is None else {**os.environ, "PYTHONPATH": src}
    process = subprocess.Popen([*command, *MODES[mode]], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # "listening redis://HOST:PORT/0 -> ..."
        if not line.startswith("listening "):
            raise RuntimeError(f"proxy did not start: {line!r}")
        yield int(line.split()[1].rsplit("/", 1)[0].rsplit(":", 1)[1])
    finally:
        process.terminate()
        process.wait(timeout=30)


def spread(values: list[float]) -> str:
    return f"{min(values):,.0f}..{max(values):,.0f}"


def run(settings: Settings, modes: list[str], baseline_src: str | None) -> int:
    if shutil.which("redis-benchmark") is None:
        print("redis-benchmark not found (Debian/Ubuntu: apt-get install redis-tools)", file=sys.stderr)
        return 1
    with RedisServer() as server:
        with socket.create_connection((server.host, server.port)) as sock:
            sock.sendall(b"*3\r\n$3\r\nSET\r\n$10\r\nbench:seq0\r\n$64\r\n" + VALUE + b"\r\n")
            sock.recv(64)
        for mode in modes:
            with contextlib.ExitStack() as stack:
                targets = {"direct": server.port, "proxy": stack.enter_context(proxy_port(server, mode))}
                if baseline_src is not None:
                    targets["baseline"] = stack.enter_context(proxy_port(server, mode, baseline_src))
                firsts = {name: sequential_round_trips_us(p, 1)[0] for name, p in targets.items()}
                for p in targets.values():  # warm up every path
                    redis_benchmark_rps(p, settings.requests // 10)
                rps: dict[str, list[float]] = {name: [] for name in targets}
                trips: dict[str, list[float]] = {name: [] for name in targets}
                for _ in range(settings.rounds):
                    for name, p in targets.items():
                        rps[name].append(redis_benchmark_rps(p, settings.requests))
                        trips[name].extend(sequential_round_trips_us(p, settings.sequential_ops)[1])
            report(mode, settings, rps, trips, firsts)
    return 0


def report(
    mode: str, settings: Settings, rps: dict[str, list[float]], trips: dict[str, list[float]], firsts: dict[str, float]
) -> None:
    direct = statistics.median(rps["direct"])
    print(f"== proxy mode {mode!r} ({' '.join(MODES[mode]) or 'no fault'}); {settings.rounds} alternating rounds")
    print(
        f"redis-benchmark -t get -P 16 -c 50 -n {settings.requests}: direct {direct:,.0f} req/s "
        f"(rounds {spread(rps['direct'])})"
    )
    for name in [n for n in rps if n != "direct"]:
        proxied = statistics.median(rps[name])
        print(
            f"  {name:>8}: {proxied:,.0f} req/s (rounds {spread(rps[name])}) = {proxied / direct:.0%} of direct "
            "(goal >= 50%)"
        )
    row = {name: (percentile(v, 0.5), percentile(v, 0.99), max(v)) for name, v in trips.items()}
    for name in rps:
        p50, p99, worst = row[name]
        print(
            f"sequential GET round trip, {name:>8}: p50 {p50:6.0f} µs  p99 {p99:6.0f} µs  worst {worst:7.0f} µs  "
            f"first call {firsts[name]:6.0f} µs  ({len(trips[name])} calls)"
        )
    for name in [n for n in rps if n != "direct"]:
        added = row[name][0] - row["direct"][0]
        print(f"added by {name}: p50 {added:.0f} µs (goal <= 100 µs), p99 {row[name][1] - row['direct'][1]:.0f} µs")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few seconds, for CI smoke tests")
    parser.add_argument("--mode", action="append", choices=sorted(MODES), help="proxy mode(s) to measure")
    parser.add_argument("--baseline-src", metavar="DIR", help="also measure the proxy of this source tree")
    args = parser.parse_args(argv)
    return run(QUICK if args.quick else FULL, args.mode or list(MODES), args.baseline_src)


if __name__ == "__main__":
    sys.exit(main())
