"""Pass-through cost of RedisFaultProxy, measured with clients that are not the bottleneck.

Starts its own redis-server and a proxy in its own process (``python -m sessionkv.testing.faults.cli``, as the
``sessionkv proxy`` command runs it), then alternates direct and proxied rounds so both see the same machine load:

- throughput: ``redis-benchmark -t get -P 16 -c 50`` (the C client shipped with redis), requests per second, median
  and spread of the rounds (goal: proxied >= 50% of direct), and the proxy process's CPU time per request (user +
  system, from /proc: unlike the throughput, it hardly depends on what else runs on the machine);
- latency: ``redis-benchmark -t get -P 1 -c 1`` (one GET at a time: its p50, and its mean = 1 / its rate), and one
  connection sending GETs one at a time from a blocking socket, round trip p50 / p99 / worst and the first call on a
  fresh connection (goal: the proxy adds <= 100 µs).

C forwarders, when installed, are measured in the same rounds as ceilings for any proxy on this machine: ``haproxy``
(one process, one thread, event-driven: the same shape as ours, in C) and, with ``--sketches``, ``socat`` (one forked
process per connection; its CPU time counts the connection processes once they have exited; erratic under load, when
its 50 processes wait for the scheduler). The load average is printed before
and after each mode: the ratios depend on it (the clients, redis-server and the proxies share the cores).

Proxy modes (``--mode``, repeatable; default all three):

- ``resp``: RESP framing on, no fault (commands and replies recorded in the transcript);
- ``fault``: RESP framing plus a command fault that matches no command of the benchmark (every frame is parsed, paired
  and offered to the fault: the cost of having command faults installed);
- ``raw``: no RESP framing (byte faults only).

    python benchmarks/bench_proxy.py            # full run, a few minutes (more on a loaded machine)
    python benchmarks/bench_proxy.py --quick    # CI smoke, a few seconds
    python benchmarks/bench_proxy.py --mode resp --baseline-src /tmp/old/src   # also an older proxy, same run
    python benchmarks/bench_proxy.py --loop asyncio --sketches  # asyncio's loop; Python forwarders for comparison

The proxy runs on uvloop when it is installed (``sessionkv proxy --loop auto``), else on asyncio's loop.

``--baseline-src DIR`` also measures the proxy as found in another source tree (e.g. ``git archive <commit> src``
unpacked), in the same alternating rounds, for before/after figures from one run.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
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


# Minimal forwarders in Python (``--sketches``): no faults, no transcript, no flow control to speak of. They show what
# the proxy's design (one process, asyncio) can reach at best, and what the alternatives that were tried reach.
_SKETCH_ACCEPT = """
import socket, sys
listener = socket.create_server(("127.0.0.1", 0))
print("ready", listener.getsockname()[1], flush=True)
def pair():
    client, _ = listener.accept()
    server = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    for sock in (client, server):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return client, server
"""
SKETCHES = {
    # one thread per direction: blocking recv_into a preallocated buffer + sendall (the GIL is released in both)
    "py-threads": _SKETCH_ACCEPT
    + """
import threading
def pump(src, dst):
    buf = bytearray(262144)
    view = memoryview(buf)
    while n := src.recv_into(buf):
        dst.sendall(view[:n])
    dst.shutdown(socket.SHUT_WR)
while True:
    client, server = pair()
    threading.Thread(target=pump, args=(client, server), daemon=True).start()
    threading.Thread(target=pump, args=(server, client), daemon=True).start()
""",
    # one thread, select.epoll, no asyncio: recv_into a shared buffer, then send (blocking if the peer is slow)
    "py-epoll": _SKETCH_ACCEPT
    + """
import select
poller = select.epoll()
poller.register(listener.fileno(), select.EPOLLIN)
peers = {}
buf = bytearray(262144)
view = memoryview(buf)
def send_all(sock, data):
    try:
        sent = sock.send(data)
    except BlockingIOError:
        sent = 0
    if sent < len(data):
        sock.setblocking(True)
        sock.sendall(data[sent:])
        sock.setblocking(False)
while True:
    for fd, _ in poller.poll():
        if fd == listener.fileno():
            client, server = pair()
            for sock, other in ((client, server), (server, client)):
                sock.setblocking(False)
                peers[sock.fileno()] = (sock, other)
                poller.register(sock.fileno(), select.EPOLLIN)
            continue
        sock, other = peers[fd]
        try:
            n = sock.recv_into(buf)
        except BlockingIOError:
            continue
        if n:
            send_all(other, view[:n])
            continue
        for end in (sock, other):
            if peers.pop(end.fileno(), None) is not None:
                poller.unregister(end.fileno())
            end.close()
""",
    # asyncio, a Protocol per socket whose data_received writes to the other transport: the floor of our design
    "py-asyncio": """
import asyncio, sys
class Side(asyncio.Protocol):
    peer = None
    def connection_made(self, transport):
        self.transport = transport
    def data_received(self, data):
        self.peer.transport.write(data)
class Client(Side):
    def connection_made(self, transport):
        self.transport = transport
        transport.pause_reading()
        asyncio.get_running_loop().create_task(self.connect())
    async def connect(self):
        server = Side()
        await asyncio.get_running_loop().create_connection(lambda: server, "127.0.0.1", int(sys.argv[1]))
        server.peer, self.peer = self, server
        self.transport.resume_reading()
async def main():
    listener = await asyncio.get_running_loop().create_server(Client, "127.0.0.1", 0)
    print("ready", listener.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
""",
}


@dataclass(frozen=True)
class Settings:
    rounds: int
    requests: int
    serial_requests: int
    sequential_ops: int


FULL = Settings(rounds=5, requests=400_000, serial_requests=20_000, sequential_ops=5_000)
QUICK = Settings(rounds=1, requests=50_000, serial_requests=2_000, sequential_ops=500)


@dataclass(frozen=True)
class Target:
    port: int
    pid: int | None = None  # the process whose CPU time is measured (a proxy's)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and of its children it reaped (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return sum(int(field) for field in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def redis_benchmark(port: int, requests: int, pipeline: int = 16, clients: int = 50) -> tuple[float, float]:
    """``redis-benchmark -t get -P pipeline -c clients`` against ``127.0.0.1:port``: (requests per second, median
    latency in µs)."""
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
            str(pipeline),
            "-c",
            str(clients),
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
            fields = [float(field.strip('"')) for field in line.split(",")[1:]]
            return fields[0], fields[3] * 1000  # rps, avg_latency_ms, min_latency_ms, p50_latency_ms, ...
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def socat_target(server: RedisServer) -> Iterator[Target]:
    """A ``socat`` forwarder to ``server`` (one forked process per connection, TCP_NODELAY both ways)."""
    port = free_port()
    command = ["socat", f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr,nodelay"]
    process = subprocess.Popen([*command, f"TCP:{server.host}:{server.port},nodelay"])
    try:
        wait_listening(port, process, "socat")
        yield Target(port, process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextlib.contextmanager
def haproxy_target(server: RedisServer) -> Iterator[Target]:
    """An ``haproxy`` TCP forwarder to ``server``: one process, one thread, event-driven (as our proxy is), in C."""
    port = free_port()
    config = f"""global
    nbthread 1
defaults
    mode tcp
    timeout connect 5s
    timeout client 300s
    timeout server 300s
listen redis
    bind 127.0.0.1:{port}
    server upstream {server.host}:{server.port}
"""
    with tempfile.NamedTemporaryFile("w", suffix=".cfg", prefix="bench-haproxy-") as file:
        file.write(config)
        file.flush()
        process = subprocess.Popen(["haproxy", "-f", file.name, "-db"], stdout=subprocess.DEVNULL)
        try:
            wait_listening(port, process, "haproxy")
            yield Target(port, process.pid)
        finally:
            process.terminate()
            process.wait(timeout=30)


def wait_listening(port: int, process: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
            return
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError(f"{name} did not start listening on port {port}")
        time.sleep(0.01)


@contextlib.contextmanager
def sketch_target(server: RedisServer, name: str) -> Iterator[Target]:
    """One of :data:`SKETCHES`, forwarding to ``server``."""
    process = subprocess.Popen(
        [sys.executable, "-c", SKETCHES[name], str(server.port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # "ready PORT"
        if not line.startswith("ready "):
            raise RuntimeError(f"{name} did not start: {line!r}")
        yield Target(int(line.split()[1]), process.pid)
    finally:
        process.kill()
        process.wait(timeout=30)


@contextlib.contextmanager
def proxy_port(server: RedisServer, mode: str, src: str | None = None, loop: str = "auto") -> Iterator[Target]:
    command = [sys.executable, "-m", "sessionkv.testing.faults.cli", "--upstream", f"{server.host}:{server.port}"]
    if src is None:  # an older tree's proxy may not know --loop
        command += ["--loop", loop]
    env = os.environ if src is None else {**os.environ, "PYTHONPATH": src}
    process = subprocess.Popen([*command, *MODES[mode]], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # "listening redis://HOST:PORT/0 -> ..."
        if not line.startswith("listening "):
            raise RuntimeError(f"proxy did not start: {line!r}")
        yield Target(int(line.split()[1].rsplit("/", 1)[0].rsplit(":", 1)[1]), process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)


def spread(values: list[float]) -> str:
    return f"{min(values):,.0f}..{max(values):,.0f}"


def run(settings: Settings, modes: list[str], baseline_src: str | None, sketches: bool, loop: str) -> int:
    if shutil.which("redis-benchmark") is None:
        print("redis-benchmark not found (Debian/Ubuntu: apt-get install redis-tools)", file=sys.stderr)
        return 1
    with RedisServer() as server:
        with socket.create_connection((server.host, server.port)) as sock:
            sock.sendall(b"*3\r\n$3\r\nSET\r\n$10\r\nbench:seq0\r\n$64\r\n" + VALUE + b"\r\n")
            sock.recv(64)
        for mode in modes:
            load_before = os.getloadavg()[0]
            with contextlib.ExitStack() as stack:
                proxy = stack.enter_context(proxy_port(server, mode, loop=loop))
                targets = {"direct": Target(server.port), "proxy": proxy}
                if baseline_src is not None:
                    targets["baseline"] = stack.enter_context(proxy_port(server, mode, baseline_src))
                for sketch in SKETCHES if sketches else ():
                    targets[sketch] = stack.enter_context(sketch_target(server, sketch))
                if shutil.which("haproxy") is not None:
                    targets["haproxy"] = stack.enter_context(haproxy_target(server))
                if sketches and shutil.which("socat") is not None:
                    targets["socat"] = stack.enter_context(socat_target(server))
                firsts = {name: sequential_round_trips_us(t.port, 1)[0] for name, t in targets.items()}
                for t in targets.values():  # warm up every path
                    redis_benchmark(t.port, settings.requests // 10)
                m = Measures(targets)
                for _ in range(settings.rounds):
                    for name, t in targets.items():
                        before = cpu_s(t.pid) if t.pid is not None else 0.0
                        m.rps[name].append(redis_benchmark(t.port, settings.requests)[0])
                        if t.pid is not None:
                            m.cpu_us[name].append((cpu_s(t.pid) - before) * 1e6 / settings.requests)
                        rate, p50 = redis_benchmark(t.port, settings.serial_requests, 1, 1)
                        m.serial_us[name].append(p50)
                        m.serial_mean_us[name].append(1e6 / rate)
                        m.trips[name].extend(sequential_round_trips_us(t.port, settings.sequential_ops)[1])
            report(mode, settings, m, firsts, (load_before, os.getloadavg()[0]))
    return 0


class Measures:
    """Per target: -P 16 rates, proxy CPU µs per request, -P 1 round trips (p50 and mean per round), socket round
    trips."""

    def __init__(self, targets: dict[str, Target]) -> None:
        self.rps: dict[str, list[float]] = {name: [] for name in targets}
        self.cpu_us: dict[str, list[float]] = {name: [] for name in targets}
        self.serial_us: dict[str, list[float]] = {name: [] for name in targets}
        self.serial_mean_us: dict[str, list[float]] = {name: [] for name in targets}
        self.trips: dict[str, list[float]] = {name: [] for name in targets}


def report(mode: str, settings: Settings, m: Measures, firsts: dict[str, float], load: tuple[float, float]) -> None:
    direct = statistics.median(m.rps["direct"])
    print(
        f"== proxy mode {mode!r} ({' '.join(MODES[mode]) or 'no fault'}); {settings.rounds} alternating rounds; "
        f"load average {load[0]:.1f} before, {load[1]:.1f} after"
    )
    print(
        f"redis-benchmark -t get -P 16 -c 50 -n {settings.requests}: direct {direct:,.0f} req/s "
        f"(rounds {spread(m.rps['direct'])})"
    )
    for name in [n for n in m.rps if n != "direct"]:
        proxied = statistics.median(m.rps[name])
        # each round's ratio compares runs seconds apart: steadier than a ratio of medians when the load moves
        ratios = [p / d for p, d in zip(m.rps[name], m.rps["direct"], strict=True)]
        cpu = f"; its CPU {statistics.median(m.cpu_us[name]):.2f} µs/request" if m.cpu_us[name] else ""
        print(
            f"  {name:>10}: {proxied:,.0f} req/s (rounds {spread(m.rps[name])}); per round "
            f"{statistics.median(ratios):.0%} of direct (median; rounds {min(ratios):.0%}..{max(ratios):.0%}; "
            f"goal >= 50%){cpu}"
        )
    serial = {name: statistics.median(v) for name, v in m.serial_us.items()}
    mean = {name: statistics.median(v) for name, v in m.serial_mean_us.items()}
    print(f"redis-benchmark -t get -P 1 -c 1 -n {settings.serial_requests}, round trip (medians of the rounds):")
    for name, v in m.serial_us.items():
        more = "" if name == "direct" else f"  added: p50 {serial[name] - serial['direct']:+.0f} µs (goal <= 100 µs)"
        more += "" if name == "direct" else f", mean {mean[name] - mean['direct']:+.0f} µs"
        rounds = f"rounds {min(v):.0f}..{max(v):.0f}"
        print(f"  {name:>10}: p50 {serial[name]:6.0f} µs ({rounds}), mean {mean[name]:6.0f} µs{more}")
    row = {name: (percentile(v, 0.5), percentile(v, 0.99), max(v)) for name, v in m.trips.items()}
    for name in m.rps:
        p50, p99, worst = row[name]
        print(
            f"sequential GET round trip (Python socket), {name:>10}: p50 {p50:6.0f} µs  p99 {p99:6.0f} µs  "
            f"worst {worst:7.0f} µs  first call {firsts[name]:6.0f} µs  ({len(m.trips[name])} calls)"
        )
    for name in [n for n in m.rps if n != "direct"]:
        added = row[name][0] - row["direct"][0]
        print(f"added by {name}: p50 {added:.0f} µs (goal <= 100 µs), p99 {row[name][1] - row['direct'][1]:.0f} µs")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few seconds, for CI smoke tests")
    parser.add_argument("--mode", action="append", choices=sorted(MODES), help="proxy mode(s) to measure")
    parser.add_argument("--baseline-src", metavar="DIR", help="also measure the proxy of this source tree")
    parser.add_argument("--sketches", action="store_true", help=f"also measure {', '.join(SKETCHES)}")
    parser.add_argument(
        "--loop", choices=("auto", "asyncio", "uvloop"), default="auto", help="the proxy's event loop (its --loop)"
    )
    args = parser.parse_args(argv)
    loop = args.loop
    if loop == "auto":
        loop = "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
    print(f"proxy event loop: {loop}; baseline (if any): its own default")
    return run(QUICK if args.quick else FULL, args.mode or list(MODES), args.baseline_src, args.sketches, loop)


if __name__ == "__main__":
    sys.exit(main())
