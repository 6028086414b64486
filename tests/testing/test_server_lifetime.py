"""How long a ``RedisServer`` lives: as long as the process that started it, whichever thread started it, and in a
process group of its own so that a terminal's Ctrl-C does not reach it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

from sessionkv.testing import RedisServer


def _wait_exited(pid: int) -> bool:
    """Whether process ``pid`` exits within a bounded wait (the kernel delivers PDEATHSIG asynchronously)."""
    for _ in range(200):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        stat = Path(f"/proc/{pid}/stat")
        if stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z":
            return True  # a zombie: dead, waiting for us to reap it
        time.sleep(0.05)
    return False


def _wait_thread_gone(native_id: int) -> None:
    """Wait (bounded) until the OS thread has fully exited: PDEATHSIG is sent on that exit."""
    task = Path(f"/proc/self/task/{native_id}")
    for _ in range(200):
        if not task.exists():
            return
        time.sleep(0.05)
    raise AssertionError(f"thread {native_id} did not exit")


@pytest.mark.asyncio
async def test_a_server_started_with_to_thread_outlives_the_worker_thread() -> None:
    server = RedisServer()
    workers: list[int] = []

    def start() -> None:
        workers.append(threading.get_native_id())
        server.start()

    try:
        await asyncio.to_thread(start)
        await asyncio.get_running_loop().shutdown_default_executor()  # the worker thread exits
        assert workers[0] != threading.get_native_id()
        _wait_thread_gone(workers[0])
        await asyncio.sleep(0.1)  # a SIGKILL sent on that exit would have been acted on by now
        assert server.running
        assert redis.Redis(host=server.host, port=server.port).ping()
    finally:
        server.stop()


def test_a_server_started_from_a_thread_still_dies_with_the_process(tmp_path: Path) -> None:
    # A child process starts a server from a worker thread, reports the pid, and is SIGKILLed: no atexit runs, so only
    # PDEATHSIG (held by the process-lifetime spawner thread) can stop the server.
    script = (
        "import threading, sys, time\n"
        "from sessionkv.testing import RedisServer\n"
        "server = RedisServer()\n"
        "t = threading.Thread(target=server.start); t.start(); t.join()\n"
        "print(server.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env) as child:
        try:
            assert child.stdout is not None
            pid = int(child.stdout.readline())
            os.kill(pid, 0)  # running
        finally:
            child.kill()
            child.wait()
    assert _wait_exited(pid)


def test_a_server_runs_in_its_own_session_and_process_group() -> None:
    with RedisServer() as server:
        assert server.pid is not None
        assert os.getsid(server.pid) == server.pid
        assert os.getpgid(server.pid) != os.getpgid(0)
