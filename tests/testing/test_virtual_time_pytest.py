"""The pytest glue of virtual time: marker and fixtures, in pytest-asyncio strict and auto mode (run with pytester)."""

from __future__ import annotations

import pytest

import pytest_sessionkv.plugin

# The sessionkv plugin may already include the virtual-time glue; load it ourselves only when it does not.
_ALREADY_WIRED = hasattr(pytest_sessionkv.plugin, "sessionkv_clock")
CONFTEST = "" if _ALREADY_WIRED else 'pytest_plugins = ["pytest_sessionkv.virtual_time"]\n'

TESTS = """
import asyncio
import datetime
import time

import freezegun.api
import pytest

from sessionkv.testing.virtual_time import VirtualClock, VirtualClockSessionKVStore, VirtualTimeLoop


@pytest.mark.asyncio
@pytest.mark.sessionkv_virtual_time
async def test_an_hour_passes_at_once(sessionkv_clock: VirtualClock) -> None:
    assert isinstance(asyncio.get_running_loop(), VirtualTimeLoop)
    assert asyncio.get_running_loop().clock is sessionkv_clock
    wall_before = time.time()
    await asyncio.sleep(3600)
    assert sessionkv_clock.now() == 3600.0
    assert time.time() - wall_before == 3600.0
    assert datetime.datetime.now() == datetime.datetime(2026, 1, 1, 1, 0, 0)


@pytest.mark.asyncio
@pytest.mark.sessionkv_virtual_time(start=100, epoch=1_000_000, end=200)
async def test_marker_options_and_store_fixture(
    sessionkv_clock: VirtualClock, sessionkv_virtual_store: VirtualClockSessionKVStore
) -> None:
    assert sessionkv_virtual_store.clock is sessionkv_clock
    assert (sessionkv_clock.now(), time.time()) == (100.0, 1_000_000.0)
    await sessionkv_virtual_store.set("k", b"v", ttl=30)
    await asyncio.sleep(29.999)
    assert await sessionkv_virtual_store.get("k") == b"v"
    await asyncio.sleep(0.001)
    assert await sessionkv_virtual_store.get("k") is None


@pytest.mark.asyncio
@pytest.mark.sessionkv_virtual_time(end=10)
async def test_end_of_time_fails_the_test() -> None:
    await asyncio.sleep(11)


@pytest.mark.asyncio
@pytest.mark.sessionkv_virtual_time
async def test_failing_virtual_test() -> None:
    assert time.time() == 0, "fails on purpose"


@pytest.mark.asyncio
@pytest.mark.sessionkv_virtual_time
async def test_stuck_behind_a_periodic_sweep_ends_after_a_virtual_day(
    sessionkv_virtual_store: VirtualClockSessionKVStore,
) -> None:
    await asyncio.Event().wait()


@pytest.mark.asyncio
async def test_unmarked_test_keeps_a_real_loop_and_real_time(sessionkv_clock: VirtualClock) -> None:
    assert not isinstance(asyncio.get_running_loop(), VirtualTimeLoop)
    assert time.time is freezegun.api.real_time
    assert sessionkv_clock.now() == 0.0


def test_wall_clock_was_restored() -> None:
    assert time.time is freezegun.api.real_time
    assert datetime.datetime is freezegun.api.real_datetime
"""


def _run(pytester: pytest.Pytester, mode: str) -> pytest.RunResult:
    pytester.makeconftest(CONFTEST)
    pytester.makeini(
        f"""
        [pytest]
        asyncio_mode = {mode}
        asyncio_default_fixture_loop_scope = function
        asyncio_default_test_loop_scope = function
        filterwarnings = error
        addopts = --strict-markers -p no:cacheprovider
        """
    )
    pytester.makepyfile(test_virtual=TESTS)
    return pytester.runpytest_subprocess("-v")


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_marker_runs_async_tests_on_virtual_time(pytester: pytest.Pytester, mode: str) -> None:
    result = _run(pytester, mode)
    result.assert_outcomes(passed=4, failed=3)
    result.stdout.fnmatch_lines(
        [
            "*test_an_hour_passes_at_once PASSED*",
            "*test_marker_options_and_store_fixture PASSED*",
            "*test_end_of_time_fails_the_test FAILED*",
            "*test_failing_virtual_test FAILED*",
            "*test_stuck_behind_a_periodic_sweep_ends_after_a_virtual_day FAILED*",
            "*test_unmarked_test_keeps_a_real_loop_and_real_time PASSED*",
            "*test_wall_clock_was_restored PASSED*",
            "*EndOfTimeError: virtual end of time reached at t=10.0 s: the next timer is due at t=11.0 s*",
            "*EndOfTimeError: virtual end of time reached at t=86400.0 s*",
        ]
    )


def test_marker_rejects_a_shared_event_loop(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makeini("[pytest]\nasyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        """
        import asyncio
        import pytest

        @pytest.mark.asyncio(loop_scope="module")
        @pytest.mark.sessionkv_virtual_time
        async def test_shared() -> None:
            await asyncio.sleep(0)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*sessionkv_virtual_time needs a function-scoped event loop*'module'*"])
    assert result.ret != 0


def test_marker_rejects_unknown_keywords(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makeini("[pytest]\nasyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        """
        import asyncio
        import pytest

        @pytest.mark.asyncio
        @pytest.mark.sessionkv_virtual_time(stat=1)
        async def test_typo() -> None:
            await asyncio.sleep(0)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*sessionkv_virtual_time takes only the keywords*unknown keywords*stat*"])
