"""The ``sessionkv`` pytest plugin: fixtures that hand a test a started store on every backend.

Thin by design: each fixture wraps an object from :mod:`sessionkv.testing` that works without pytest. Expensive
resources (a ``redis-server`` process) are synchronous and session-scoped, hence one per xdist worker; clients and
stores are per test, each in a private namespace. The plugin never sets the asyncio mode: it works in pytest-asyncio
strict and auto mode. Without the ``testing`` extra (pytest-asyncio, fakeredis) it still loads; fixtures that need a
missing package skip and name the extra to install.
"""

from __future__ import annotations

import importlib.util
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pytest_sessionkv.options import Options, Settings
from pytest_sessionkv.redis import RedisHandle, describe_server, start_redis

__all__ = ["sessionkv_custom_store_factory", "sessionkv_namespace", "sessionkv_redis_server"]

TESTING_EXTRA_HINT = "install the testing extra: pip install 'sessionkv[testing]'"
ALL_BACKENDS = ("memory", "virtual", "fakeredis", "redis", "custom", "redis_cluster", "redis_sentinel")
OPT_IN_BACKENDS = ("redis_cluster", "redis_sentinel")  # never in the default set: each topology costs seconds
StoreFactory = Callable[[], Any]
"""Returns a fresh, not yet started object with the SessionKVStore API (sync callable)."""


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it (a broken or blocked import counts as missing)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


_HAS_PYTEST_ASYNCIO = installed("pytest_asyncio")
_HAS_FAKEREDIS = installed("fakeredis")

# The async fixtures need pytest-asyncio; without it the same fixture names skip and name the extra to install.
pytest_plugins = (
    ["pytest_sessionkv.fixtures", "pytest_sessionkv.virtual_time"]
    if _HAS_PYTEST_ASYNCIO
    else ["pytest_sessionkv.fallback"]
)
pytest_plugins = [*pytest_plugins, "pytest_sessionkv.topologies"]  # Redis Cluster / Sentinel; guards its own async part


# -- options and markers -------------------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    Options.register(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "sessionkv_backends(*names): run this test's sessionkv_store only on these backends "
        f"(of {', '.join(ALL_BACKENDS)})",
    )
    config.stash[Settings.key] = Options.read(config)


def pytest_report_header(config: pytest.Config) -> str:
    return f"sessionkv: {describe_server(config.stash[Settings.key])}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "sessionkv_store" not in metafunc.fixturenames:
        return
    settings = metafunc.config.stash[Settings.key]
    backends = list(settings.backends) if settings.backends is not None else _default_backends(metafunc)
    marker = metafunc.definition.get_closest_marker("sessionkv_backends")
    if marker is not None:
        unknown = sorted(set(marker.args) - set(ALL_BACKENDS))
        if unknown:
            raise pytest.UsageError(
                f"{metafunc.definition.nodeid}: unknown sessionkv backend(s) {unknown}; choose from {ALL_BACKENDS}"
            )
        backends = [name for name in backends if name in marker.args]
        if settings.backends is None:  # the opt-in backends (seconds to start) run where a marker names them
            backends += [name for name in OPT_IN_BACKENDS if name in marker.args]
    if not backends:
        metafunc.parametrize(
            "sessionkv_store",
            [
                pytest.param(
                    None,
                    marks=pytest.mark.skip(
                        reason="no sessionkv backend selected for this test "
                        "(see --sessionkv-backends and the sessionkv_backends marker)"
                    ),
                )
            ],
            ids=["no-backend"],
            indirect=True,
        )
        return
    metafunc.parametrize("sessionkv_store", backends, ids=backends, indirect=True)


def _default_backends(metafunc: pytest.Metafunc) -> list[str]:
    """Every backend that can run here: memory and virtual (in-process) always, fakeredis only when installed,
    ``custom`` only when a conftest overrides ``sessionkv_custom_store_factory``. ``redis`` is always listed: it skips
    (or fails) at setup when no server can be had, so the reason shows in the report."""
    names = ["memory", "virtual"]
    if _HAS_FAKEREDIS:
        names.append("fakeredis")
    names.append("redis")
    if _custom_factory_overridden(metafunc):
        names.append("custom")
    return names


def _custom_factory_overridden(metafunc: pytest.Metafunc) -> bool:
    manager = metafunc.config.pluginmanager.get_plugin("funcmanage")
    try:
        definitions = manager.getfixturedefs("sessionkv_custom_store_factory", metafunc.definition)  # type: ignore[union-attr]
    except Exception:  # private pytest API: if it changes, fall back to the explicit --sessionkv-backends route
        return False
    return bool(definitions) and getattr(definitions[-1].func, "__module__", __name__) != __name__


# -- the redis-server -----------------------------------------------------------------------------------------------


_REDIS_FAILURE = pytest.StashKey[str]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Once the session's Redis has failed (and the test that first needed it reported the error), every later test
    that needs it skips with a one-line pointer instead of repeating the error: one clear error per session."""
    failure = item.config.stash.get(_REDIS_FAILURE, None)
    if failure is not None and _needs_redis(item):
        pytest.skip(f"sessionkv Redis unavailable (error reported by the first test that needed it): {failure}")


def _needs_redis(item: pytest.Item) -> bool:
    """Whether ``item`` uses the session's Redis: directly, or as the ``redis`` backend of ``sessionkv_store``."""
    if "sessionkv_redis_server" in getattr(item, "fixturenames", ()):
        return True
    callspec = getattr(item, "callspec", None)
    return callspec is not None and callspec.params.get("sessionkv_store") == "redis"


@pytest.fixture(scope="session")
def sessionkv_redis_server(request: pytest.FixtureRequest) -> Iterator[RedisHandle]:
    """A real redis-server for this session (one per xdist worker), or the server of ``--sessionkv-redis-url``.

    Exposes ``url``, ``host`` and ``port``; a server we started also has ``kill()``, ``restart()``, ``pause()``,
    ``resume()``. Skips when no redis-server binary can be found, unless ``--sessionkv-require-redis`` is set, in which
    case it fails. Stopped at the end of the session, also after Ctrl-C; never outlives the worker.
    """
    settings: Settings = request.config.stash[Settings.key]
    try:
        handle = start_redis(settings)
    except pytest.fail.Exception as exc:
        request.config.stash[_REDIS_FAILURE] = str(exc)  # the other tests that need it skip, pointing here
        raise
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def sessionkv_namespace(request: pytest.FixtureRequest) -> str:
    """A key prefix private to this test (and xdist worker): ``sessionkv-test:<worker>:<random>:``."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    return f"sessionkv-test:{worker}:{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def sessionkv_custom_store_factory() -> StoreFactory | None:
    """Override this fixture in your conftest to plug your own backend into ``sessionkv_store`` (backend ``custom``).

    Return a zero-argument callable that builds a fresh, not yet started store (any object with the SessionKVStore
    API, e.g. ``lambda: MyStore(dsn=...)``). The default returns ``None``: no custom backend.
    """
    return None
