"""pytest glue for virtual time: the ``sessionkv_virtual_time`` marker and the ``sessionkv_clock`` and
``sessionkv_virtual_store`` fixtures, thin wrappers over :mod:`sessionkv.testing.virtual_time`.

``@pytest.mark.sessionkv_virtual_time`` together with ``@pytest.mark.asyncio`` (strict or auto mode) runs the test, its
async fixtures included, on a :class:`~sessionkv.testing.virtual_time.VirtualTimeLoop` whose clock is
``sessionkv_clock``, and makes the wall clock follow that clock from the start of the test's setup to the end of its
teardown (undone even when the test fails). The loop is chosen through pytest-asyncio's public
``pytest_asyncio_loop_factories`` hook, so nothing of pytest-asyncio is patched. Marker keywords (all optional)::

    @pytest.mark.sessionkv_virtual_time(start=0.0, epoch=DEFAULT_EPOCH, end=start + 86400, real_io="wait",
                                        patch_wall_clock=True)

While the test runs (setup, call, teardown) its clock is :func:`sessionkv.clock.current_clock`, so stores and
registries built there without ``clock=`` (the ``[memory]`` backend, ``sessionkv_memory_store``,
``sessionkv_registry_factory``, ``SessionRegistry()``) follow it; fixtures of a wider scope set up meanwhile keep the
system clock, since they outlive the test.

``end`` bounds the test's virtual time (:class:`~sessionkv.testing.virtual_time.EndOfTimeError` past it): by default
one virtual day, so that a test stuck behind a periodic timer fails instead of jumping forever; ``end=None`` for none.

Wiring, either of:

* ``from pytest_sessionkv.virtual_time import *`` in a plugin module, plus a call of
  :func:`register_virtual_time_marker` from that module's ``pytest_configure``;
* or ``"pytest_sessionkv.virtual_time"`` in that module's ``pytest_plugins`` list (its own ``pytest_configure``
  registers the marker). Not both: the hooks would run twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable, Generator, Mapping

import pytest
import pytest_asyncio

from sessionkv.clock import SYSTEM_CLOCK, use_clock
from sessionkv.testing.virtual_time import (
    DEFAULT_EPOCH,
    RealIOPolicy,
    VirtualClock,
    VirtualClockSessionKVStore,
    VirtualTimeLoop,
)

__all__ = [
    "DEFAULT_TEST_END",
    "VIRTUAL_TIME_MARKER",
    "pytest_asyncio_loop_factories",
    "pytest_fixture_setup",
    "pytest_runtest_protocol",
    "register_virtual_time_marker",
    "sessionkv_clock",
    "sessionkv_virtual_store",
]

VIRTUAL_TIME_MARKER = "sessionkv_virtual_time"
DEFAULT_TEST_END = 86_400.0
"""Virtual seconds a marked test may run by default (one day after ``start``); ``end=None`` removes the bound."""
_LOOP_FACTORY_NAME = "sessionkv_virtual_time"
_MARKER_HELP = (
    f"{VIRTUAL_TIME_MARKER}(start=0.0, epoch={DEFAULT_EPOCH}, end=start+86400, real_io='wait', "
    "patch_wall_clock=True): "
    "run this asyncio test on sessionkv's virtual-time event loop (clock: the sessionkv_clock fixture); "
    "use together with @pytest.mark.asyncio"
)


@dataclasses.dataclass(frozen=True)
class _MarkerOptions:
    start: float = 0.0
    epoch: float = DEFAULT_EPOCH
    end: float | None = None
    real_io: RealIOPolicy = "wait"
    patch_wall_clock: bool = True


_CLOCK_KEY = pytest.StashKey[VirtualClock]()
_ERROR_KEY = pytest.StashKey[Exception]()
_active: tuple[VirtualClock, _MarkerOptions] | None = None
"""The clock and options of the marked test now running (tests of one process run one at a time)."""
_active_error: Exception | None = None
"""The marker's invalid arguments of the test now running, re-raised by the loop factory."""


def register_virtual_time_marker(config: pytest.Config) -> None:
    """Declare the ``sessionkv_virtual_time`` marker (call from ``pytest_configure``; required by --strict-markers)."""
    config.addinivalue_line("markers", _MARKER_HELP)


def pytest_configure(config: pytest.Config) -> None:
    """Used when this module is loaded as a plugin of its own (``pytest_plugins``); star imports do not export it."""
    register_virtual_time_marker(config)


def _marker_options(item: pytest.Item, marker: pytest.Mark) -> _MarkerOptions:
    fields = {field.name for field in dataclasses.fields(_MarkerOptions)}
    unknown = sorted(set(marker.kwargs) - fields)
    if marker.args or unknown:
        raise TypeError(
            f"{item.nodeid}: {VIRTUAL_TIME_MARKER} takes only the keywords {sorted(fields)}; got positional "
            f"{marker.args!r} and unknown keywords {unknown}"
        )
    options = _MarkerOptions(**marker.kwargs)
    if "end" not in marker.kwargs and isinstance(options.start, (int, float)):
        # a periodic timer (a heartbeat, a store sweep) would otherwise hide a deadlock behind endless jumps
        options = dataclasses.replace(options, end=options.start + DEFAULT_TEST_END)
    return options


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
    """For a marked test: create its clock and patch the wall clock around setup, call and teardown."""
    marker = item.get_closest_marker(VIRTUAL_TIME_MARKER)
    if marker is None:
        return (yield)
    global _active, _active_error
    try:
        options = _marker_options(item, marker)
        clock = VirtualClock(options.start, epoch=options.epoch)
    except (TypeError, ValueError) as exc:
        # raising here would abort the whole session; the loop factory and the fixtures re-raise it inside the test
        item.stash[_ERROR_KEY] = exc
        _active_error = exc
        try:
            return (yield)
        finally:
            _active_error = None
    item.stash[_CLOCK_KEY] = clock
    _active = (clock, options)
    try:
        with use_clock(clock), clock.patch_wall_clock() if options.patch_wall_clock else contextlib.nullcontext():
            return (yield)
    finally:
        _active = None


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[object], request: pytest.FixtureRequest
) -> Generator[None, object, object]:
    """A fixture wider than the test (class, module, session scope) set up during a marked test is built on the
    system clock: a store it makes must not keep one test's virtual clock for the tests after it."""
    if _active is None or fixturedef.scope == "function":
        return (yield)
    with use_clock(SYSTEM_CLOCK):
        return (yield)


def _virtual_loop_factory() -> asyncio.AbstractEventLoop:
    if _active_error is not None:
        raise _active_error
    if _active is None:
        raise RuntimeError(
            f"the {_LOOP_FACTORY_NAME!r} loop factory only works inside a test marked "
            f"@pytest.mark.{VIRTUAL_TIME_MARKER}"
        )
    clock, options = _active
    return VirtualTimeLoop(clock, end=options.end, real_io=options.real_io)


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]] | None:
    """Marked tests get the virtual-time loop; other tests keep the loop they would have had.

    Once any implementation of this hook exists, pytest-asyncio asks it for every asyncio test and rejects ``None``.
    So for unmarked tests this defers to other implementations when there are some, and otherwise returns the default
    policy's ``asyncio.new_event_loop`` (what pytest-asyncio calls without a factory, so the ``event_loop_policy``
    fixture still applies).
    """
    if item.get_closest_marker(VIRTUAL_TIME_MARKER) is not None:
        asyncio_marker = item.get_closest_marker("asyncio")
        loop_scope = None
        if asyncio_marker is not None:
            loop_scope = asyncio_marker.kwargs.get("loop_scope") or asyncio_marker.kwargs.get("scope")
        loop_scope = loop_scope or config.getini("asyncio_default_test_loop_scope") or "function"
        if loop_scope != "function":
            pytest.fail(
                f"{item.nodeid}: {VIRTUAL_TIME_MARKER} needs a function-scoped event loop (each test has its own "
                f"virtual clock), but the loop scope is {loop_scope!r}; "
                "use @pytest.mark.asyncio(loop_scope='function')",
                pytrace=False,
            )
        return {_LOOP_FACTORY_NAME: _virtual_loop_factory}
    others = [
        impl
        for impl in config.hook.pytest_asyncio_loop_factories.get_hookimpls()
        if impl.function is not pytest_asyncio_loop_factories
    ]
    if others:
        return None
    return {"asyncio": asyncio.new_event_loop}


@pytest.fixture
def sessionkv_clock(request: pytest.FixtureRequest) -> VirtualClock:
    """The test's :class:`VirtualClock`: the one driving the event loop in a ``sessionkv_virtual_time`` test, a fresh
    one (start 0, default epoch) in any other test."""
    error = request.node.stash.get(_ERROR_KEY, None)
    if error is not None:
        raise error
    clock = request.node.stash.get(_CLOCK_KEY, None)
    return clock if clock is not None else VirtualClock()


@pytest_asyncio.fixture(loop_scope="function")
async def sessionkv_virtual_store(sessionkv_clock: VirtualClock) -> AsyncIterator[VirtualClockSessionKVStore]:
    """A started :class:`VirtualClockSessionKVStore` on ``sessionkv_clock`` (cleanup sweep every 60 virtual s),
    closed after the test."""
    store = VirtualClockSessionKVStore(clock=sessionkv_clock)
    async with store:
        yield store
