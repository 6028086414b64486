"""RedisServer.restart(): empty by default whatever data files the server wrote; keep_data=True reloads them."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis

from sessionkv.testing import RedisServer


@pytest.fixture
def make_server() -> Iterator[Callable[..., RedisServer]]:
    servers: list[RedisServer] = []

    def make(*extra_args: str) -> RedisServer:
        server = RedisServer(extra_args=extra_args).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def _client(server: RedisServer) -> redis.Redis:
    return redis.Redis(host=server.host, port=server.port, socket_timeout=10)


@pytest.mark.parametrize("extra_args", [(), ("--dbfilename", "custom.rdb")], ids=["dump.rdb", "dbfilename"])
def test_restart_comes_back_empty_although_the_server_saved_a_snapshot(
    make_server: Callable[..., RedisServer], extra_args: tuple[str, ...]
) -> None:
    server = make_server(*extra_args)
    with _client(server) as client:
        client.set("k", "v")
        client.save()  # what a replica's disk-based full sync also leaves behind: an RDB file in the directory
    [snapshot] = server.data_files()
    assert snapshot.name == (extra_args[1] if extra_args else "dump.rdb")
    server.restart()
    assert server.data_files() == []
    with _client(server) as client:
        assert client.dbsize() == 0


def test_restart_keep_data_reloads_the_last_snapshot_and_nothing_after_it(
    make_server: Callable[..., RedisServer],
) -> None:
    server = make_server()
    with _client(server) as client:
        client.set("saved", "1")
        client.save()
        client.set("unsaved", "2")  # persistence is off: only the explicit SAVE reached the disk
    server.restart(keep_data=True)
    with _client(server) as client:
        assert client.get("saved") == b"1"
        assert client.get("unsaved") is None


def test_restart_with_an_append_only_file_is_empty_unless_kept(make_server: Callable[..., RedisServer]) -> None:
    server = make_server("--appendonly", "yes", "--appendfsync", "always")  # every write on disk before the reply
    with _client(server) as client:
        client.set("k", "v")
    server.restart(keep_data=True)
    with _client(server) as client:
        assert client.get("k") == b"v"
    assert server.data_files() != []
    server.restart()
    with _client(server) as client:
        assert client.dbsize() == 0
