"""``RedisSessionKVStore`` under fire: every store operation against every fault family, through a real proxy.

Each case installs one fault in a :class:`RedisFaultProxy` in front of the session's real redis-server, runs one store
operation and asserts the outcome the store promises (module docstring of ``sessionkv.redis_store``):

* it either succeeds with the correct result or raises ``StoreUnavailableError`` (cause chained) within its
  ``operation_timeout``: it never hangs and never lets a raw redis-py or socket error out;
* a write is never retried (the transcript shows one ``SET``/``EVALSHA``/``EXEC``) and leaves the server with all of
  its effect or none of it (``mset`` never leaves a partial batch). Which one is predicted per fault: a fault that acts
  after the server saw the command (lost, delayed or cut reply, reset or latency on the reply) leaves it applied;
* a read is retried up to ``read_retries`` times on transient failures (the transcript shows the re-sent command);
* once the fault is removed, the same store works again and every command reads its own reply.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Final

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from sessionkv.errors import StoreUnavailableError
from sessionkv.redis_store import RedisSessionKVStore
from sessionkv.testing.faults import (
    Blackhole,
    CutReply,
    DelayReply,
    Down,
    DropCommand,
    ErrorReply,
    Fault,
    Latency,
    LimitData,
    LoseReply,
    RedisFaultProxy,
    ResetPeer,
    ScanDuplicates,
    ScanEmptyPages,
    Slicer,
    Timeout,
)

pytest_plugins = ["faults_fixtures"]

PREFIX: Final = "fire:"
DEADLINE_S: Final = 0.3  # operation_timeout of every store here
DEADLINE_BOUND_S: Final = 5.0  # generous proof that the deadline was honoured (never a speed claim)
HANG_S: Final = 15.0  # a call still running after this is a hang: fail instead of blocking the suite
UNHURRIED_S: Final = DEADLINE_BOUND_S  # the deadline of every call whose verdict is not about the deadline
READ_RETRIES: Final = 2
SEED_TTL_S: Final = 1000.0
EXPIRE_TTL_S: Final = 50.0

StoreFactory = Callable[..., Awaitable[RedisSessionKVStore]]


# -- operations -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Op:
    """One store operation: how to run it, which wire command it hinges on, and how to check its effect."""

    id: str
    indexed: bool
    command: str  # the command a command fault targets (inside MULTI: the queued write)
    commit: str  # the command whose count proves (no) retry: EXEC for a MULTI, else ``command``
    write: bool
    run: Callable[[RedisSessionKVStore], Coroutine[Any, Any, object]]
    expected: object = None  # reads: the correct result
    # writes: given direct access to the server, True if fully applied, False if untouched; AssertionError if partial
    applied: Callable[[aioredis.Redis], Awaitable[bool]] | None = field(default=None)


async def _applied_set(direct: aioredis.Redis) -> bool:
    return await direct.get(PREFIX + "new") == b"v-new"


async def _applied_set_xx(direct: aioredis.Redis) -> bool:
    value = await direct.get(PREFIX + "a")
    assert value in (b"old-a", b"new-a"), value
    return value == b"new-a"


async def _applied_mset(direct: aioredis.Redis) -> bool:
    values = await direct.mget([PREFIX + "m1", PREFIX + "m2", PREFIX + "m3"])
    assert values in ([b"1", b"2", b"3"], [None, None, None]), f"partial mset batch on the server: {values}"
    return values[0] is not None


async def _applied_expire(direct: aioredis.Redis) -> bool:
    ttls = [await direct.pttl(PREFIX + key) for key in ("a", "b")]
    refreshed = [0 < ttl <= EXPIRE_TTL_S * 1000 for ttl in ttls]
    assert all(ttl > 0 for ttl in ttls), f"expire lost a key: {ttls}"
    assert len(set(refreshed)) == 1, f"partial expire on the server: pttl {ttls}"
    return refreshed[0]


async def _applied_delete(direct: aioredis.Redis) -> bool:
    present = await direct.exists(PREFIX + "a"), await direct.exists(PREFIX + "b")
    assert present in ((0, 0), (1, 1)), f"partial delete on the server: {present}"
    return present == (0, 0)


async def _set(store: RedisSessionKVStore) -> object:
    await store.set("new", b"v-new", 100)
    return None


async def _set_xx(store: RedisSessionKVStore) -> object:
    await store.set("a", b"new-a", 100, only_if_exists=True)
    return None


async def _mset(store: RedisSessionKVStore) -> object:
    await store.mset([("m1", b"1", 100), ("m2", b"2", 100), ("m3", b"3", 100)])
    return None


async def _get(store: RedisSessionKVStore) -> object:
    return await store.get("a")


async def _mget(store: RedisSessionKVStore) -> object:
    return await store.mget(["a", "missing", "b"])


async def _expire(store: RedisSessionKVStore) -> object:
    await store.expire("a", "b", ttl=EXPIRE_TTL_S)
    return None


async def _keys(store: RedisSessionKVStore) -> object:
    return sorted(await store.keys("p:"))


async def _delete(store: RedisSessionKVStore) -> object:
    await store.delete(["a", "b"])
    return None


def _ops() -> list[Op]:
    ops = [
        Op("set", False, "SET", "SET", True, _set, applied=_applied_set),
        Op("set_xx", False, "SET", "SET", True, _set_xx, applied=_applied_set_xx),
        Op("mset", False, "SET", "EXEC", True, _mset, applied=_applied_mset),
        Op("get", False, "GET", "GET", False, _get, expected=b"old-a"),
        Op("mget", False, "MGET", "MGET", False, _mget, expected=[b"old-a", None, b"old-b"]),
        Op("expire", False, "PEXPIRE", "EXEC", True, _expire, applied=_applied_expire),
        Op("keys", False, "SCAN", "SCAN", False, _keys, expected=["p:1", "p:2", "p:3"]),
        Op("delete", False, "UNLINK", "UNLINK", True, _delete, applied=_applied_delete),
    ]
    # get and mget run the same code in both modes; the others differ (Lua scripts, MULTI with the index)
    indexed = [
        Op("set_indexed", True, "EVALSHA", "EVALSHA", True, _set, applied=_applied_set),
        Op("set_xx_indexed", True, "EVALSHA", "EVALSHA", True, _set_xx, applied=_applied_set_xx),
        Op("mset_indexed", True, "EVALSHA", "EVALSHA", True, _mset, applied=_applied_mset),
        Op("expire_indexed", True, "EVALSHA", "EVALSHA", True, _expire, applied=_applied_expire),
        Op("keys_indexed", True, "EVALSHA", "EVALSHA", False, _keys, expected=["p:1", "p:2", "p:3"]),
        Op("delete_indexed", True, "UNLINK", "EXEC", True, _delete, applied=_applied_delete),
    ]
    return ops + indexed


OPS: Final = _ops()
OPS_BY_ID: Final = {op.id: op for op in OPS}


# -- fault families -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    """One fault family: the faults to install for an operation, and what must follow."""

    id: str
    make: Callable[[Op], list[Fault]]
    succeeds: bool = False
    # writes: whether the server holds the write afterwards (the fault acted after / before the server saw it)
    applied: bool = False
    # reads: how many times the read command must appear (None: not determined, e.g. cut short by the deadline)
    read_attempts: int | None = None
    operation_timeout: float = DEADLINE_S
    # reads whose retries die in the connection handshake (the fault hits HELLO): retries show as new connections
    read_reconnects: int | None = None


ALL_ATTEMPTS: Final = READ_RETRIES + 1

FAMILIES: Final = [
    Family("latency", lambda op: [Latency(latency_ms=1500)], applied=True),
    Family("blackhole", lambda op: [Blackhole(direction="both")]),
    Family("timeout", lambda op: [Timeout(timeout_ms=100, direction="both")]),
    Family("reset_peer", lambda op: [ResetPeer()], applied=True, read_attempts=1, read_reconnects=READ_RETRIES),
    Family(
        "limit_data", lambda op: [LimitData(limit_bytes=1)], applied=True, read_attempts=1, read_reconnects=READ_RETRIES
    ),
    # tiny slices both ways; the deadline is not what this case is about, correct reassembly is
    Family(
        "slicer",
        lambda op: [Slicer(average_size_bytes=2, size_variation_bytes=1, delay_us=100, direction="both")],
        succeeds=True,
        applied=True,
        read_attempts=1,
        operation_timeout=10.0,
    ),
    Family("down", lambda op: [Down(cut_existing=True)]),
    Family("error_loading", lambda op: [ErrorReply(command=op.command, error="loading")], read_attempts=ALL_ATTEMPTS),
    Family("error_busy", lambda op: [ErrorReply(command=op.command, error="busy")], read_attempts=ALL_ATTEMPTS),
    Family("error_readonly", lambda op: [ErrorReply(command=op.command, error="readonly")], read_attempts=1),
    Family("error_oom", lambda op: [ErrorReply(command=op.command, error="oom")], read_attempts=1),
    Family("error_err", lambda op: [ErrorReply(command=op.command, error="err")], read_attempts=1),
    Family("drop_command", lambda op: [DropCommand(command=op.command)], read_attempts=ALL_ATTEMPTS),
    Family("lose_reply", lambda op: [LoseReply(command=op.commit)], applied=True, read_attempts=ALL_ATTEMPTS),
    Family("delay_reply", lambda op: [DelayReply(delay_ms=1500, command=op.commit)], applied=True, read_attempts=1),
    Family("cut_reply", lambda op: [CutReply(command=op.commit)], applied=True, read_attempts=ALL_ATTEMPTS),
]


# -- fixtures and helpers -------------------------------------------------------------------------------------------


@pytest_asyncio.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Torn down last (autouse, set up first): once the stores and the proxy are closed, no task of ours is left."""
    before = asyncio.all_tasks()
    yield
    await asyncio.sleep(0)
    leaked = [task for task in asyncio.all_tasks() - before if task is not asyncio.current_task() and not task.done()]
    assert not leaked, f"leaked tasks: {leaked}"


@pytest_asyncio.fixture
async def make_store(proxy: RedisFaultProxy, redis_client: aioredis.Redis) -> AsyncIterator[StoreFactory]:
    """Make stores on ``proxy`` (key prefix ``fire:``), seeded and warmed up with no fault; closed after the test.

    Seed: ``a``, ``b`` (1000 s), ``p:1..3``, ``sentinel``. Warm-up runs every kind of call once, so the connection
    is open and every Lua script is cached: the faulted call then sends exactly its own command (no NOSCRIPT
    round trip). The transcript is cleared afterwards.
    """
    stores: list[RedisSessionKVStore] = []

    async def make(*, indexed: bool, operation_timeout: float = UNHURRIED_S, **options: object) -> RedisSessionKVStore:
        # The warm-up runs under the hang bound, so a loaded machine cannot fail the set-up; the deadline asked for
        # applies from the first call of the test on.
        store = RedisSessionKVStore(
            url=proxy.url,
            key_prefix=PREFIX,
            indexed=indexed,
            operation_timeout=HANG_S,
            **{"read_retries": READ_RETRIES, **options},  # type: ignore[arg-type]
        )
        stores.append(store)
        await store.start()
        await store.mset([(key, f"old-{key}".encode(), SEED_TTL_S) for key in ("a", "b")])
        await store.mset([(key, b"p", SEED_TTL_S) for key in ("p:1", "p:2", "p:3")])
        await store.set("sentinel", b"sentinel", SEED_TTL_S)
        await store.expire("sentinel", ttl=SEED_TTL_S)
        assert await store.keys("sentinel") == ["sentinel"]
        await store.delete(["warm-up"])
        assert await store.mget(["a", "sentinel"]) == [b"old-a", b"sentinel"]
        store.operation_timeout = operation_timeout
        proxy.transcript.clear()
        return store

    yield make
    for store in stores:
        await store.close()


def _count(proxy: RedisFaultProxy, command: str) -> int:
    return sum(1 for args in proxy.transcript.commands() if args and args[0].upper() == command.encode())


async def _call(op: Op, store: RedisSessionKVStore) -> tuple[object | StoreUnavailableError, float]:
    """Run ``op``; return its result or the StoreUnavailableError it raised, and the elapsed seconds."""
    start = time.monotonic()
    try:
        result: object | StoreUnavailableError = await asyncio.wait_for(op.run(store), HANG_S)
    except StoreUnavailableError as exc:
        result = exc
    except TimeoutError:
        pytest.fail(f"{op.id} hung: no answer after {HANG_S} s despite operation_timeout={store.operation_timeout}")
    return result, time.monotonic() - start


def _recover(proxy: RedisFaultProxy) -> None:
    proxy.clear()  # a proxy that was down listens again at once (new clients wait in the backlog)


async def _assert_works(op: Op, store: RedisSessionKVStore, direct: aioredis.Redis) -> None:
    """The same store, faults removed: the operation succeeds and each command reads its own reply."""
    result, _ = await _call(op, store)
    assert not isinstance(result, StoreUnavailableError), f"{op.id} still failing after the fault was removed"
    if op.write:
        assert op.applied is not None
        assert await op.applied(direct)
    else:
        assert result == op.expected
    assert await store.get("sentinel") == b"sentinel"
    assert await store.mget(["sentinel", "missing"]) == [b"sentinel", None]


# -- the matrix -----------------------------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("family", FAMILIES, ids=[f.id for f in FAMILIES])
@pytest.mark.parametrize("op", OPS, ids=[op.id for op in OPS])
async def test_operation_under_fault(
    op: Op, family: Family, make_store: StoreFactory, proxy: RedisFaultProxy, redis_client: aioredis.Redis
) -> None:
    # Only the faulted call of a case decided by the deadline runs under DEADLINE_S: where the verdict counts attempts
    # (or reconnects) the deadline must not cut them short on a loaded machine, and the recovery is never timed.
    counts_attempts = family.read_attempts == ALL_ATTEMPTS or family.read_reconnects is not None
    store = await make_store(
        indexed=op.indexed, operation_timeout=UNHURRIED_S if counts_attempts else family.operation_timeout
    )
    handles = [proxy.add(fault) for fault in family.make(op)]

    result, elapsed = await _call(op, store)

    transcript = proxy.transcript.format()
    if family.succeeds:
        assert not isinstance(result, StoreUnavailableError), f"{op.id} failed under {family.id}: {result}"
        if not op.write:
            assert result == op.expected
    else:
        assert isinstance(result, StoreUnavailableError), f"{op.id} under {family.id} returned {result!r}"
        assert result.operation == op.id.removesuffix("_indexed").removesuffix("_xx")
        assert result.__cause__ is result.cause
        assert isinstance(result.cause, RedisError | OSError | TimeoutError), repr(result.cause)
        bound = max(DEADLINE_BOUND_S, 2 * store.operation_timeout)
        assert elapsed < bound, f"took {elapsed:.2f} s with operation_timeout={store.operation_timeout}"
    acted = {event.fault for event in proxy.transcript.events(kind="fault")}  # every fault leaves a trace
    assert acted == {handle.fault.name for handle in handles}, f"the fault never acted:\n{transcript}"

    if op.write:
        assert op.applied is not None
        assert await op.applied(redis_client) is family.applied, transcript
        assert _count(proxy, op.commit) <= 1, f"a write was re-sent:\n{transcript}"
        if family.id == "lose_reply":  # sent once, applied, reply lost: the store must not have replayed it
            assert _count(proxy, op.commit) == 1, transcript
    else:
        if family.read_attempts is not None:
            assert _count(proxy, op.commit) == family.read_attempts, transcript
        if family.read_reconnects is not None:
            assert len(proxy.transcript.events(kind="connect")) == family.read_reconnects, transcript

    _recover(proxy)
    store.operation_timeout = UNHURRIED_S
    await _assert_works(op, store, redis_client)


# -- reads: a fault on the first attempt only is absorbed by the retry ---------------------------------------------

FIRST_ATTEMPT_FAULTS: Final[dict[str, Callable[[str], Fault]]] = {
    "lose_reply": lambda command: LoseReply(command=command, nth=1),
    "drop_command": lambda command: DropCommand(command=command, nth=1),
    "cut_reply": lambda command: CutReply(command=command, nth=1),
    "error_loading": lambda command: ErrorReply(command=command, error="loading", nth=1),
    "error_busy": lambda command: ErrorReply(command=command, error="busy", nth=1),
}
READ_OPS: Final = [op for op in OPS if not op.write]


@pytest.mark.asyncio
@pytest.mark.parametrize("fault_id", list(FIRST_ATTEMPT_FAULTS))
@pytest.mark.parametrize("op", READ_OPS, ids=[op.id for op in READ_OPS])
async def test_read_retried_when_only_the_first_attempt_fails(
    op: Op, fault_id: str, make_store: StoreFactory, proxy: RedisFaultProxy
) -> None:
    store = await make_store(indexed=op.indexed)
    handle = proxy.add(FIRST_ATTEMPT_FAULTS[fault_id](op.command))
    result, _ = await _call(op, store)
    assert result == op.expected, proxy.transcript.format()
    assert handle.applied == 1
    assert _count(proxy, op.command) == 2, f"the read was not re-sent exactly once:\n{proxy.transcript.format()}"


@pytest.mark.asyncio
async def test_read_retries_zero_means_one_attempt(make_store: StoreFactory, proxy: RedisFaultProxy) -> None:
    store = await make_store(indexed=False, read_retries=0)
    proxy.add(LoseReply(command="GET", nth=1))
    with pytest.raises(StoreUnavailableError):
        await store.get("a")
    assert _count(proxy, "GET") == 1
    assert await store.get("a") == b"old-a"


# -- writes: never replayed, even when a retry would have succeeded -------------------------------------------------

WRITE_OPS: Final = [op for op in OPS if op.write]


@pytest.mark.asyncio
@pytest.mark.parametrize("op", WRITE_OPS, ids=[op.id for op in WRITE_OPS])
async def test_write_with_lost_reply_is_applied_once_and_reported(
    op: Op, make_store: StoreFactory, proxy: RedisFaultProxy, redis_client: aioredis.Redis
) -> None:
    """The outcome a caller must treat as unknown: the server committed the write, the store raised, and it did not
    send the write again (only the first attempt is faulted, so a replay would have gone through and shown here)."""
    store = await make_store(indexed=op.indexed)
    proxy.add(LoseReply(command=op.commit, nth=1))
    with pytest.raises(StoreUnavailableError) as raised:
        await op.run(store)
    assert isinstance(raised.value.__cause__, RedisError)
    assert op.applied is not None
    assert await op.applied(redis_client)
    assert _count(proxy, op.commit) == 1, proxy.transcript.format()


# -- keys() under hostile SCAN pages ----------------------------------------------------------------------------------

SCAN_FAULTS: Final[dict[str, Callable[[], list[Fault]]]] = {
    "scan_empty_pages": lambda: [ScanEmptyPages()],
    "scan_duplicates": lambda: [ScanDuplicates()],
    "scan_empty_pages_and_duplicates": lambda: [ScanEmptyPages(probability=0.5), ScanDuplicates()],
}


@pytest.mark.asyncio
@pytest.mark.parametrize("fault_id", list(SCAN_FAULTS))
async def test_keys_exact_under_hostile_scan_pages(
    fault_id: str, make_store: StoreFactory, proxy: RedisFaultProxy
) -> None:
    store = await make_store(indexed=False, scan_count=3)
    wanted = [f"p:{i}" for i in range(1, 31)]
    await store.mset([(key, b"v", 100) for key in wanted])
    await store.mset([(f"other:{i}", b"v", 100) for i in range(20)])
    handles = [proxy.add(fault) for fault in SCAN_FAULTS[fault_id]()]
    found = await store.keys("p:")
    assert sorted(found) == sorted(wanted)
    assert len(found) == len(wanted), "a key was listed twice"
    assert all(handle.applied > 0 for handle in handles)
    assert _count(proxy, "SCAN") > 2  # several pages, so the faults had something to break


# -- cancellation -----------------------------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("op_id", ["get", "set", "mset", "keys_indexed"])
async def test_cancel_while_the_reply_is_held_leaves_the_store_usable(
    op_id: str, make_store: StoreFactory, proxy: RedisFaultProxy, redis_client: aioredis.Redis
) -> None:
    op = OPS_BY_ID[op_id]
    store = await make_store(indexed=op.indexed, operation_timeout=10.0)
    handle = proxy.add(DelayReply(delay_ms=3000, command=op.commit))
    task = asyncio.create_task(op.run(store))
    for _ in range(500):
        if handle.applied:
            break
        await asyncio.sleep(0.01)
    assert handle.applied == 1, "the reply was never held"
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    proxy.clear()
    # the held reply is still on its way; the next commands must read their own replies, not that one
    assert await store.get("sentinel") == b"sentinel"
    assert await store.mget(["b", "sentinel"]) == [b"old-b", b"sentinel"]
    await _assert_works(op, store, redis_client)


# -- transactions: an injected error ends the server-side transaction, as a real server does -----------------------


@pytest.mark.asyncio
async def test_error_reply_on_exec_leaves_the_store_usable(make_store: StoreFactory, proxy: RedisFaultProxy) -> None:
    store = await make_store(indexed=False)
    proxy.add(ErrorReply(command="EXEC", error="oom", times=1))
    with pytest.raises(StoreUnavailableError):
        await _mset(store)
    assert await store.get("sentinel") == b"sentinel"  # not b"QUEUED": the connection left MULTI


@pytest.mark.asyncio
async def test_error_reply_on_one_queued_set_leaves_no_partial_mset(
    make_store: StoreFactory, proxy: RedisFaultProxy, redis_client: aioredis.Redis
) -> None:
    store = await make_store(indexed=False)
    proxy.add(ErrorReply(command="SET", error="oom", nth=2))
    with pytest.raises(StoreUnavailableError):
        await _mset(store)
    assert not await _applied_mset(redis_client)  # EXEC was aborted: none of m1, m2, m3
