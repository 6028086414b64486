"""``sessionkv proxy`` as a process: faults from specs, a readiness line, a clean stop on SIGTERM, a transcript file."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from sessionkv.testing import RedisServer
from sessionkv.testing.faults.cli import loop_factory, main, parse_host_port


def test_parse_host_port_accepts_host_port_ipv6_and_bare_port() -> None:
    assert parse_host_port("redis.local:6380") == ("redis.local", 6380)
    assert parse_host_port("[::1]:7000") == ("::1", 7000)
    assert parse_host_port("7001") == ("127.0.0.1", 7001)
    with pytest.raises(ValueError, match="expected HOST:PORT"):
        parse_host_port("localhost:http")


def test_the_event_loop_is_uvloop_when_installed_unless_asyncio_is_asked_for() -> None:
    assert loop_factory("asyncio") is None
    try:
        import uvloop
    except ModuleNotFoundError:
        assert loop_factory("auto") is None
        with pytest.raises(ValueError, match="uvloop is not installed"):
            loop_factory("uvloop")
    else:
        assert loop_factory("auto") is uvloop.new_event_loop
        assert loop_factory("uvloop") is uvloop.new_event_loop


@pytest.mark.parametrize(
    "argv",
    [
        ["--upstream", "127.0.0.1:6379", "--fault", "nosuch"],
        ["--upstream", "127.0.0.1:6379", "--fault", "latency:latency_ms=-5"],
        ["--upstream", "127.0.0.1:6379", "--raw", "--fault", "lose_reply"],
        ["--upstream", "nowhere"],
        ["--upstream", "127.0.0.1:6379", "--loop", "trio"],
    ],
)
def test_bad_arguments_exit_with_status_2_before_listening(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "listening" not in capsys.readouterr().out


@pytest.mark.asyncio
async def test_proxy_process_injects_spec_faults_and_writes_its_transcript_on_sigterm(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    transcript = tmp_path / "transcript.txt"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sessionkv.testing.faults.cli",
        "--upstream",
        f"{redis_server.host}:{redis_server.port}",
        "--fault",
        "error_reply:command=GET,key_pattern=cold:*,error=loading",
        "--seed",
        "3",
        "--transcript",
        str(transcript),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 10)).decode()
        assert line.startswith("listening redis://127.0.0.1:")
        client = aioredis.Redis.from_url(line.split()[1], retry=Retry(NoBackoff(), 0))
        try:
            assert await client.get("warm") is None
            with pytest.raises(redis.exceptions.BusyLoadingError):
                await client.get("cold:1")
        finally:
            await client.aclose()
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        status = await asyncio.wait_for(process.wait(), 10)
    assert status == 0
    text = transcript.read_text()
    assert "> GET cold:1" in text
    assert "! error_reply on GET cold:1: error: LOADING" in text
