"""``sessionkv proxy``: run a :class:`RedisFaultProxy` from the command line until interrupted.

``main(argv)`` is the whole subcommand (argv excludes the word ``proxy``); it returns the exit status. Once listening it
prints one line, ``listening redis://HOST:PORT/0 -> UPSTREAM``, on stdout, so scripts can wait for it. SIGINT or
SIGTERM stops it cleanly; ``--transcript FILE`` then writes the transcript there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from sessionkv.testing.faults.proxy import RedisFaultProxy
from sessionkv.testing.faults.registry import FAULTS, fault_parameters, parse_fault_spec

__all__ = ["build_parser", "loop_factory", "main", "parse_host_port", "run_proxy"]


def parse_host_port(text: str, *, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``HOST:PORT``, ``[IPv6]:PORT`` or ``PORT`` → ``(host, port)``; ``ValueError`` saying what is wrong."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = default_host, text
    host = host.strip("[]") or default_host
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"expected HOST:PORT, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be in [0, 65535], got {port} in {text!r}")
    return host, port


def _fault_help() -> str:
    lines = [
        "faults (NAME:param=value,...; targeting: connection, probability, and direction for byte faults,",
        "command, key_pattern, nth, times for command faults):",
    ]
    targeting = {"connection", "probability", "direction", "command", "key_pattern", "nth", "times"}
    for name, cls in sorted(FAULTS.items()):
        own = [p for p in fault_parameters(cls) if p not in targeting]
        lines.append(f"  {name}: {', '.join(own) or '-'}")
    return "\n".join(lines)


def build_parser(prog: str = "sessionkv proxy") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Fault-injecting TCP proxy in front of a Redis server.",
        epilog=_fault_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--upstream", required=True, metavar="HOST:PORT", help="the Redis server to proxy")
    parser.add_argument("--listen", default="127.0.0.1:0", metavar="HOST:PORT", help="default: 127.0.0.1, any port")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help='a fault, e.g. "latency:latency_ms=100,jitter_ms=10,direction=upstream" (repeatable, applied in order)',
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every random decision (default 0)")
    parser.add_argument("--raw", action="store_true", help="no RESP framing: byte faults only, no command transcript")
    parser.add_argument("--transcript", type=Path, metavar="FILE", help="write the transcript here on exit")
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="event loop: uvloop if installed, else asyncio's (auto, the default); uvloop forwards with about a third "
        "less CPU per chunk",
    )
    return parser


async def upstream_problem(host: str, port: int, timeout_s: float = 2.0) -> str | None:
    """Why ``host:port`` cannot be connected to right now (``None`` if it can)."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except (OSError, TimeoutError) as exc:
        return f"{exc!r}" if str(exc) == "" else str(exc)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return None


async def run_proxy(proxy: RedisFaultProxy, stop: asyncio.Event) -> None:
    """Run ``proxy`` until ``stop`` is set, announcing its address on stdout. Warns on stderr when the upstream cannot
    be reached at start (the proxy still runs: the upstream may come up later; until then clients are closed, and
    the log says why)."""
    async with proxy:
        problem = await upstream_problem(proxy.upstream_host, proxy.upstream_port)
        if problem is not None:
            print(
                f"sessionkv proxy: warning: upstream {proxy.upstream_host}:{proxy.upstream_port} is not reachable "
                f"({problem}); client connections will be closed until it is",
                file=sys.stderr,
                flush=True,
            )
        print(f"listening {proxy.url} -> {proxy.upstream_host}:{proxy.upstream_port}", flush=True)
        await stop.wait()


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop factory for ``--loop choice`` (``None``: asyncio's default loop). ``ValueError`` if ``uvloop``
    is asked for and not installed."""
    if choice == "asyncio":
        return None
    try:
        uvloop = importlib.import_module("uvloop")
    except ModuleNotFoundError:
        if choice == "uvloop":
            raise ValueError("--loop uvloop: uvloop is not installed (pip install uvloop)") from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="sessionkv proxy: %(message)s", stream=sys.stderr)
    try:
        upstream_host, upstream_port = parse_host_port(args.upstream)
        listen_host, listen_port = parse_host_port(args.listen)
        faults = [parse_fault_spec(spec) for spec in args.fault]
        factory = loop_factory(args.loop)
    except ValueError as exc:
        parser.error(str(exc))
    proxy = RedisFaultProxy(
        upstream_host,
        upstream_port,
        listen_host=listen_host,
        listen_port=listen_port,
        seed=args.seed,
        resp=not args.raw,
        transcript_limit=100_000,
    )
    for fault in faults:
        try:
            proxy.add(fault)
        except ValueError as exc:
            parser.error(str(exc))

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):  # not on Windows: Ctrl-C still raises KeyboardInterrupt
                loop.add_signal_handler(sig, stop.set)
        await run_proxy(proxy, stop)

    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(serve())
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"sessionkv proxy: {exc}", file=sys.stderr)
        return 1
    if args.transcript is not None:
        args.transcript.write_text(proxy.transcript.format(last=None) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
