"""Every guarantee of :mod:`sessionkv.store` (G01-G16 and the model-based test), checked on every backend we ship.

The checks live once, in :mod:`sessionkv.testing.certify`; this module only says which stores to run them on: the
in-memory store on a virtual clock (exact, instant expiry), the Redis store over fakeredis, and the Redis store against
a real redis-server in SCAN mode and in indexed mode (real time, 1 ms granularity). Test names carry the guarantee id.
"""

from __future__ import annotations

import numbers
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from fractions import Fraction

import pytest
import pytest_asyncio

from sessionkv import MAX_TTL, SessionKVStore, SessionRegistry
from sessionkv.store import check_ttl_ns
from sessionkv.testing import RedisServer, VirtualClock
from sessionkv.testing.certify import backends
from sessionkv.testing.certify.harness import StoreFactory
from sessionkv.testing.certify.suite import SessionKVStoreContract


class TestMemoryContract(SessionKVStoreContract):
    unsupported = backends.memory.unsupported  # type: ignore[attr-defined]

    @pytest.fixture
    def store_factory(self) -> StoreFactory:
        return backends.memory


class TestFakeRedisContract(SessionKVStoreContract):
    @pytest.fixture
    def store_factory(self) -> StoreFactory:
        return backends.fakeredis

    @pytest.fixture
    def unavailable_store_factory(self) -> StoreFactory | None:
        return backends.fakeredis.unavailable  # type: ignore[attr-defined, no-any-return]


class TestRedisContract(SessionKVStoreContract):
    indexed = False

    @pytest.fixture
    def store_factory(self, redis_server: RedisServer) -> StoreFactory:
        return backends.redis_store_factory(redis_server.url, indexed=self.indexed)  # type: ignore[no-any-return]

    @pytest.fixture
    def unavailable_store_factory(self, store_factory: StoreFactory) -> StoreFactory | None:
        return store_factory.unavailable  # type: ignore[attr-defined, no-any-return]


class TestRedisIndexedContract(TestRedisContract):
    indexed = True


@pytest.mark.asyncio
async def test_G01_default_start_and_close_are_no_ops() -> None:
    class Minimal(SessionKVStore):
        async def set(self, key: str, value: bytes, ttl: float, *, only_if_exists: bool = False) -> None: ...
        async def mset(self, items: object) -> None: ...
        async def get(self, key: str) -> bytes | None:
            return None

        async def mget(self, keys: object) -> list[bytes | None]:
            return []

        async def expire(self, *keys: str, ttl: float) -> None: ...
        async def keys(self, prefix: str) -> list[str]:
            return []

        async def delete(self, keys: object) -> None: ...

    store = Minimal()
    async with store as entered:
        assert entered is store
    await store.start()
    await store.close()


# -- TTL values: every numeric type, the same answer on every backend (G14) ------------------------------------------


class Float32Like:
    """A real number that is not a float subclass, as numpy.float32 is: registered with numbers.Real, has __float__."""

    def __init__(self, value: float) -> None:
        self.value = value

    def __float__(self) -> float:
        return self.value

    def __repr__(self) -> str:
        return f"Float32Like({self.value!r})"


class Int64Like:
    """An integer that is not an int subclass, as numpy.int64 is: registered with numbers.Integral."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __int__(self) -> int:
        return self.value

    @property
    def numerator(self) -> int:
        return self.value

    @property
    def denominator(self) -> int:
        return 1

    def __repr__(self) -> str:
        return f"Int64Like({self.value!r})"


numbers.Real.register(Float32Like)
numbers.Integral.register(Int64Like)

ACCEPTED_TTLS: list[tuple[object, int]] = [
    (30, 30 * 10**9),
    (0.3, 300_000_000),
    (1e-12, 1),  # rounds to 1 ns, never to 0
    (int(MAX_TTL), int(MAX_TTL) * 10**9),
    (Fraction(3, 2), 1_500_000_000),
    (Decimal("0.3"), 300_000_000),
    (Decimal("1e-20"), 1),
    (Float32Like(2.5), 2_500_000_000),
    (Int64Like(7), 7 * 10**9),
]
REJECTED_TTLS: list[tuple[object, type[Exception], str]] = [
    (True, TypeError, "^ttl must be a number of seconds"),
    (False, TypeError, "^ttl must be a number of seconds"),
    ("30", TypeError, "^ttl must be a number of seconds"),
    (None, TypeError, "^ttl must be a number of seconds"),
    (b"30", TypeError, "^ttl must be a number of seconds"),
    (0, ValueError, "^ttl must be > 0"),
    (0.0, ValueError, "^ttl must be > 0"),
    (-1, ValueError, "^ttl must be > 0"),
    (-0.5, ValueError, "^ttl must be > 0"),
    (Fraction(-1, 3), ValueError, "^ttl must be > 0"),
    (Decimal("-0"), ValueError, "^ttl must be > 0"),
    (float("nan"), ValueError, "^ttl must be > 0 and finite"),
    (float("inf"), ValueError, "^ttl must be > 0 and finite"),
    (float("-inf"), ValueError, "^ttl must be > 0 and finite"),
    (Decimal("NaN"), ValueError, "^ttl must be > 0 and finite"),
    (Decimal("sNaN"), ValueError, "^ttl must be > 0 and finite"),
    (Decimal("Infinity"), ValueError, "^ttl must be > 0 and finite"),
    (Float32Like(float("nan")), ValueError, "^ttl must be > 0 and finite"),
    (10**400, ValueError, "^ttl must be > 0 and at most"),  # float(10**400) raises OverflowError: never seen
    (-(10**400), ValueError, "^ttl must be > 0"),
    (Decimal("1e400"), ValueError, "^ttl must be > 0 and at most"),
    (MAX_TTL + 1, ValueError, "^ttl must be > 0 and at most"),
    (Int64Like(-3), ValueError, "^ttl must be > 0"),
]


@pytest_asyncio.fixture(params=["memory", "redis-scan", "redis-indexed"])
async def any_store(request: pytest.FixtureRequest) -> AsyncIterator[SessionKVStore]:
    if request.param == "memory":
        store: SessionKVStore = backends.memory(clock=VirtualClock(start=1 << 10))
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        store = backends.redis_store_factory(server.url, indexed=request.param == "redis-indexed")()
    async with store:
        yield store


@pytest.mark.parametrize(("ttl", "ns"), ACCEPTED_TTLS, ids=[repr(t) for t, _ in ACCEPTED_TTLS])
def test_G14_check_ttl_ns_converts_every_real_number_exactly(ttl: object, ns: int) -> None:
    assert check_ttl_ns(ttl) == ns


@pytest.mark.asyncio
@pytest.mark.parametrize("ttl", [t for t, _ in ACCEPTED_TTLS], ids=[repr(t) for t, _ in ACCEPTED_TTLS])
async def test_G14_every_backend_accepts_every_real_number_as_ttl(any_store: SessionKVStore, ttl: float) -> None:
    await any_store.set("k", b"v", 60)
    await any_store.expire("k", ttl=ttl)
    await any_store.mset([("m", b"w", ttl)])
    if check_ttl_ns(ttl) >= 10**9:  # long enough to read back on a real-time backend
        await any_store.set("k", b"v2", ttl)
        assert await any_store.mget(["k", "m"]) == [b"v2", b"w"]


@pytest.mark.asyncio
@pytest.mark.parametrize(("ttl", "error", "message"), REJECTED_TTLS, ids=[repr(t)[:30] for t, _, _ in REJECTED_TTLS])
async def test_G14_every_backend_rejects_the_same_ttls_the_same_way(
    any_store: SessionKVStore, ttl: float, error: type[Exception], message: str
) -> None:
    await any_store.set("k", b"old", 60)
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: any_store.set("k", b"new", ttl),
        lambda: any_store.set("k", b"new", ttl, only_if_exists=True),
        lambda: any_store.mset([("a", b"new", 60), ("k", b"new", ttl)]),
        lambda: any_store.expire("k", ttl=ttl),
    ]
    for call in calls:
        with pytest.raises(error, match=message):
            await call()
    assert await any_store.mget(["k", "a"]) == [b"old", None]  # nothing written


@pytest.mark.parametrize(("ttl", "error", "message"), REJECTED_TTLS, ids=[repr(t)[:30] for t, _, _ in REJECTED_TTLS])
def test_G14_the_registry_ttl_follows_the_same_rule(ttl: float, error: type[Exception], message: str) -> None:
    # vision-agents' tests match "ttl must be > 0" for SessionRegistry(ttl=0) and (ttl=-5.0)
    with pytest.raises(error, match=message):
        SessionRegistry(ttl=ttl)


def test_G14_ttl_messages_stay_readable_for_huge_numbers() -> None:
    with pytest.raises(ValueError) as info:
        check_ttl_ns(10**400)
    assert len(str(info.value)) < 200
