"""``RedisSessionKVStore``: the shared store, on one Redis server (standalone or a primary; not Redis Cluster).

Wire format (compatible with the vision-agents ``RedisSessionKVStore``): the value of ``key`` is a plain Redis string
at ``key_prefix + key`` (UTF-8), with a millisecond TTL; the default prefix is ``"vision_agents:"``. Both stores can
share one Redis and read each other's keys.

Operations, one round trip each unless stated:

* ``set``: ``SET k v PX ms`` (``XX`` for ``only_if_exists``); TTLs are rounded *up* to whole milliseconds, so a
  positive TTL never becomes 0 (G06). ``mset``: one ``MULTI``/``SET``.../``EXEC`` transaction. ``get``: ``GET``;
  ``mget``: one ``MGET``. ``expire``: one ``MULTI``/``PEXPIRE``.../``EXEC`` (``PEXPIRE`` never creates a key, so a
  missing or expired key stays missing). ``delete``: one ``UNLINK``. Empty batches do no I/O. Every argument is
  validated with the :mod:`sessionkv.store` helpers before any I/O, so an invalid batch writes nothing.
* ``keys(prefix)``, default (SCAN) mode: ``SCAN MATCH <escaped key_prefix + prefix>* COUNT scan_count``. Both the key
  prefix and the prefix are glob-escaped, so ``*?[]\\`` are literal and ``key_prefix="t[1]:"`` never sees the keys of
  ``key_prefix="t1:"``. SCAN may return a key twice (when the table shrinks mid-scan); duplicates are dropped.
  Redis never returns a key whose TTL has run out. ``scan_count`` defaults to 2000: SCAN walks the whole keyspace
  whatever the COUNT, so fewer, larger pages mean fewer round trips (about dbsize / scan_count of them), while one
  page still blocks the server for only about a millisecond; measured on Redis 7.0 at 200k keys, larger pages gain
  nothing more (``benchmarks/bench_redis_store.py`` prints the sweep). The server's own cost of walking every key
  (about 0.5 us per key on Redis 7.0, which copies each visited key before matching it; Redis 7.2 matches during the
  walk, redis/redis#12209, lowering it) is a floor no COUNT removes: against COUNT 100, measured on Redis 7.0.15,
  this mode is about 4x faster at 10k keys but only 2.5-3x at 100k-200k keys. When ``keys()`` must be fast on a
  large database, use the indexed mode (over 1000x at 200k keys, independent of the database size). Not atomic
  against concurrent writers (a SCAN property): a key that lives through the whole call is listed; one written or
  removed meanwhile may or may not be.
* ``keys(prefix)``, indexed mode (``indexed=True``, opt-in): a sorted set per store, all scores 0, holding every key
  this store wrote, read one page at a time: each round trip runs a Lua script that examines at most ``scan_count``
  index entries from a lexicographic cursor (``ZRANGEBYLEX ... LIMIT``) and checks each still exists (so expired or
  deleted keys are never listed, and their index entries are removed on the way). Cost is O(log n + matches) instead
  of O(all keys in the database), in pages of bounded work: one script never holds the server for more than one page
  (about 1-2 ms for 2000 entries), so other clients are served between pages and a large listing cannot run into the
  busy-script limit (an earlier version listed every match in one script: 300k matches held other clients for over a
  second). The cursor is the last member examined, and the next page starts strictly after it, so each key is listed
  at most once, and every key that lives through the whole call is listed exactly once; like SCAN, the listing is not
  atomic against concurrent writes (a key written or removed meanwhile may or may not be listed). Writes maintain the
  index in the same atomic step: ``set``/``mset``/``expire`` run as Lua scripts, ``delete`` as one ``MULTI``. A second
  sorted set scores each indexed key by its deadline (server time, ms) so that every write also reclaims up to
  ``sweep_limit`` index entries of keys that have expired, keeping the index from growing with dead keys.

  **Trade-off, and why it is opt-in**: the index only knows keys written by stores that maintain it. Keys written by
  a vision-agents node or a store with ``indexed=False`` sharing the same Redis and prefix are invisible to an
  indexed ``keys()`` until an indexed store ``set``\\s or ``expire``\\s them (an indexed ``expire`` of a live key adopts
  it). Foreign deletes, overwrites and expiries are harmless: the index is checked against the real keys. Enable it
  only when every writer of the prefix is an indexed ``RedisSessionKVStore``. The index keys are
  ``b"\\xffsessionkv:lex\\xff" + key_prefix`` and ``b"\\xffsessionkv:exp\\xff" + key_prefix``: they start with the byte
  0xFF, which never occurs in UTF-8, so they can never equal ``any_key_prefix + key`` of any store (user keys are
  UTF-8 strings) and are never listed by ``keys()``. Lua scripts touch data keys they do not declare, which rules out
  Redis Cluster (not supported by this store in either mode). Needs Redis >= 5 (scripts replicated by effects).

Errors (G15): connection refused or lost, timeouts, every error reply from the server, and the per-operation deadline
``operation_timeout`` raise :class:`~sessionkv.errors.StoreUnavailableError`, naming the operation and the server
address (never the password), with the redis-py error as ``__cause__`` and advice fitting the error (``LOADING``,
``BUSY``, ``MASTERDOWN``, ``TRYAGAIN``, ``CLUSTERDOWN``, ``READONLY``, ``OOM`` each have their own). Nothing raw from
redis-py or the socket escapes. Error replies are recognised by the exception class redis-py maps them to
(``BusyLoadingError``, ``MasterDownError``, ``ClusterDownError``, ``TryAgainError``, ``ReadOnlyError``,
``OutOfMemoryError``; redis-py strips the code from their message) and otherwise by the error code redis-py keeps
(``BUSY`` stays at the head of a plain ``ResponseError``). After ``close()`` of a store built from ``url``, every call
raises :class:`~sessionkv.errors.StoreClosedError`.

Retries, precisely:

* ``operation_timeout`` (seconds, default 5) bounds each whole call: every attempt, backoff and SCAN page of it (a
  SCAN-mode ``keys()`` on a database of millions of keys needs a larger one, or the indexed mode).
* Read-only operations (``get``, ``mget``, ``keys``, the ``PING`` of ``start``) are retried by the store on connection
  errors, timeouts and the transient replies ``LOADING``, ``BUSY``, ``MASTERDOWN``, ``TRYAGAIN`` and ``CLUSTERDOWN``
  up to ``read_retries`` times (default 2, backoff 10 ms then doubling), never on ``READONLY``, ``OOM`` or a rejected
  command (sending them again would get the same answer),
  always inside the one deadline. Replaying a read cannot change stored state; the index clean-up in an indexed
  ``keys()`` only removes entries of keys that no longer exist, so replaying it is harmless too.
* Writes (``set``, ``mset``, ``expire``, ``delete``) are never retried by the store: a write that failed after it was
  sent may already have been applied, and replaying it is not invisible. A replayed ``SET``/``PEXPIRE`` restarts the
  TTL from the moment of the replay (the key lives up to the replay delay longer than asked) and a replayed ``SET``
  or ``UNLINK`` can undo a write another node made in between. So the write raises ``StoreUnavailableError`` and the
  caller decides (G15: it may or may not have been applied). Heartbeat-style callers simply write again next round.
* The client the store creates from ``url`` is configured with ``Retry(NoBackoff(), retries=0)`` so redis-py itself
  never re-sends anything (its default would re-send a command, or a whole ``MULTI``/``EXEC``, up to 10 times), and
  with ``socket_timeout = socket_connect_timeout = operation_timeout``.
* A ``client`` you pass keeps *its own* retry settings: redis-py's default re-sends writes as described above (still
  cut off by ``operation_timeout``). To get the no-replay behaviour, build it with
  ``retry=redis.asyncio.retry.Retry(redis.backoff.NoBackoff(), 0)``.

Cancellation: cancelling a call (or hitting the deadline) while a reply is outstanding makes redis-py drop that
connection, so the next command runs on a fresh connection and reads its own reply, never the stale one. A cancelled
write may or may not have been applied. A cancellation or deadline always ends the call, at the latest when the
command in flight returns: before Python 3.12, redis-py can lose a cancellation that arrives just as it finishes
sending a command (it sends through ``asyncio.wait_for`` whenever ``socket_timeout`` is set, which redis-py >= 8 does
by default; CPython gh-86296), so the store re-raises a cancellation its client returned from anyway.

hiredis is optional: redis-py uses it when it is installed, and this module does not depend on it.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar, cast
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    BusyLoadingError,
    ClusterDownError,
    MasterDownError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from sessionkv._glob import glob_escape
from sessionkv.errors import CorruptRecordError, StoreClosedError, StoreUnavailableError
from sessionkv.store import (
    SessionKVStore,
    check_expire_keys,
    check_items,
    check_key,
    check_keys,
    check_prefix,
    check_seconds,
    check_ttl_ns,
    check_value,
    ns_to_ms_ceil,
)

__all__ = ["RedisSessionKVStore", "redact_url"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_KEY_PREFIX: Final = "vision_agents:"
DEFAULT_SCAN_COUNT: Final = 2000
_RETRY_BACKOFF_S: Final = 0.01
_DETAIL_MAX: Final = 300
_LEX_INDEX_HEAD: Final = b"\xffsessionkv:lex\xff"
_EXP_INDEX_HEAD: Final = b"\xffsessionkv:exp\xff"
# Error replies are classified by the exception class redis-py maps them to (it strips the error code from the message
# of those: redis/_parsers/base.py, EXCEPTION_CLASSES), and by the error code where it keeps it: in ``status_code``
# (redis-py >= 6) or at the head of the message of a plain ResponseError (codes it does not map, such as BUSY, and
# cluster codes that older redis-py versions map only in their cluster client).
_TRANSIENT_CLASSES: Final = (BusyLoadingError, TryAgainError, ClusterDownError)  # MasterDownError is a ClusterDownError
_TRANSIENT_CODES: Final = frozenset({"BUSY", "LOADING", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN"})
_ADVICE_BY_CODE: Final = {
    "LOADING": "the server is loading its dataset; retry when it has finished",
    "BUSY": "the server is busy running a script or function; retry later, or stop the script (SCRIPT KILL)",
    "MASTERDOWN": "the replica has lost its link to the primary; retry later, or point the store at the primary",
    "TRYAGAIN": "the server asked to try again (keys being migrated); retry later",
    "CLUSTERDOWN": "the cluster is down; retry when it has recovered",
    "READONLY": "the server is a read-only replica; point the store at the primary",
    "OOM": "the server is out of memory (maxmemory reached); free memory or raise maxmemory, then write again",
}
_CODE_AT_HEAD: Final = re.compile(r"([A-Z][A-Z_]+) ")
_CODE_IN_PIPELINE: Final = re.compile(r"of pipeline caused error: \(?['\"]?([A-Z][A-Z_]+) ")
"""redis-py rewrites the message of an error in a pipeline: ``Command # 1 (...) of pipeline caused error: (...)``."""
_CODE_OF_CLASS: Final[tuple[tuple[type[RedisError], str], ...]] = (
    (MasterDownError, "MASTERDOWN"),  # before ClusterDownError, its base class
    (ClusterDownError, "CLUSTERDOWN"),
    (TryAgainError, "TRYAGAIN"),
    (BusyLoadingError, "LOADING"),
    (ReadOnlyError, "READONLY"),
    (OutOfMemoryError, "OOM"),
)

# -- Lua scripts of the indexed mode ----------------------------------------------------------------------------------
# Common to every script: KEYS[1] = lex index (all scores 0), KEYS[2] = deadline index (score = deadline, server ms),
# ARGV[1] = key_prefix, ARGV[2] = sweep limit. Members are keys without the prefix.

_LUA_PRELUDE: Final = """
local lex, exp, prefix, sweep_limit = KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function sweep()
  -- reclaim index entries whose recorded deadline has passed; the data key decides what is really dead
  if sweep_limit <= 0 then return end
  local due = redis.call('ZRANGEBYSCORE', exp, '-inf', now, 'LIMIT', 0, sweep_limit)
  for _, m in ipairs(due) do
    local left = redis.call('PTTL', prefix .. m)
    if left == -2 then
      redis.call('ZREM', lex, m)
      redis.call('ZREM', exp, m)
    elseif left == -1 then
      redis.call('ZREM', exp, m)  -- made persistent by another writer: stays listed while it exists
    else
      redis.call('ZADD', exp, now + left, m)  -- refreshed by another writer
    end
  end
end
"""

# KEYS[3] = data key; ARGV[3] = value, ARGV[4] = ttl ms, ARGV[5] = '1' for only_if_exists, ARGV[6] = member
_LUA_SET: Final = (
    _LUA_PRELUDE
    + """
local written
if ARGV[5] == '1' then
  written = redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4], 'XX')
else
  written = redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4])
end
if written then
  redis.call('ZADD', lex, 0, ARGV[6])
  redis.call('ZADD', exp, now + tonumber(ARGV[4]), ARGV[6])
end
sweep()
return 0
"""
)

# KEYS[3..] = data keys; ARGV[3..] = (value, ttl ms, member) per item
_LUA_MSET: Final = (
    _LUA_PRELUDE
    + """
for i = 3, #KEYS do
  local a = 3 + (i - 3) * 3
  redis.call('SET', KEYS[i], ARGV[a], 'PX', ARGV[a + 1])
  redis.call('ZADD', lex, 0, ARGV[a + 2])
  redis.call('ZADD', exp, now + tonumber(ARGV[a + 1]), ARGV[a + 2])
end
sweep()
return 0
"""
)

# KEYS[3..] = data keys; ARGV[3] = ttl ms, ARGV[4..] = members
_LUA_EXPIRE: Final = (
    _LUA_PRELUDE
    + """
local ttl = tonumber(ARGV[3])
for i = 3, #KEYS do
  -- PEXPIRE answers 0 for a missing or expired key: nothing is resurrected, nothing is indexed
  if redis.call('PEXPIRE', KEYS[i], ARGV[3]) == 1 then
    redis.call('ZADD', lex, 0, ARGV[i + 1])
    redis.call('ZADD', exp, now + ttl, ARGV[i + 1])
  end
end
sweep()
return 0
"""
)

# ARGV[3] = lex min, ARGV[4] = lex max, ARGV[5] = page size. Examines at most one page of the range; returns
# {examined, last member examined (or ''), live members...} and drops the dead ones from the index on the way.
_LUA_KEYS_PAGE: Final = (
    _LUA_PRELUDE
    + """
local page = redis.call('ZRANGEBYLEX', lex, ARGV[3], ARGV[4], 'LIMIT', 0, tonumber(ARGV[5]))
local reply = {#page, page[#page] or ''}
for _, m in ipairs(page) do
  if redis.call('EXISTS', prefix .. m) == 1 then
    reply[#reply + 1] = m
  else
    redis.call('ZREM', lex, m)
    redis.call('ZREM', exp, m)
  end
end
return reply
"""
)


class _Script:
    """A Lua script run by SHA1, sent in full only when the server does not know it (``NOSCRIPT``, nothing ran)."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def run(self, client: aioredis.Redis, keys: Sequence[bytes], args: Sequence[bytes | int | str]) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            # the script did not run, so sending it again is not a replay
            return await client.eval(self.source, len(keys), *keys, *args)


_SET_SCRIPT: Final = _Script(_LUA_SET)
_MSET_SCRIPT: Final = _Script(_LUA_MSET)
_EXPIRE_SCRIPT: Final = _Script(_LUA_EXPIRE)
_KEYS_PAGE_SCRIPT: Final = _Script(_LUA_KEYS_PAGE)

_SAFE_QUERY_NAMES: Final = frozenset(
    {
        "db",
        "ssl_cert_reqs",
        "ssl_check_hostname",
        "socket_timeout",
        "socket_connect_timeout",
        "socket_keepalive",
        "retry_on_timeout",
        "max_connections",
        "health_check_interval",
        "protocol",
        "client_name",
    }
)
"""Query arguments whose values are shown in messages; every other value (``password=`` among them) is ``***``."""


def _split_url(url: str) -> tuple[str, str | None, str, str | None, str | None] | None:
    """Split ``url`` into ``(scheme, credentials, location, query, fragment)`` by structure alone; ``None`` when the
    structure is ambiguous.

    The credentials are everything between ``://`` and the ``@``. When an ``@`` follows the first ``/``, ``?`` or
    ``#`` after ``://``, it is either a password with one of those unencoded or a query value with an ``@``: no
    reading of it can tell which characters are secret, so it is ambiguous. The location (host, port, path) ends at
    the first ``?`` or ``#``.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return None if ("@" in url or "?" in url or "#" in url) else ("", None, url, None, None)
    delimiters = [i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0]
    at = rest.rfind("@")
    if delimiters and at > min(delimiters):
        return None
    credentials = rest[:at] if at >= 0 else None
    location = rest[at + 1 :]
    location, hashmark, fragment = location.partition("#")
    location, question, query = location.partition("?")
    return scheme, credentials, location, (query if question else None), (fragment if hashmark else None)


def redact_url(url: str) -> str:
    """``url`` fit for a message or a log: user name and password become ``***``, as do the values of query arguments
    other than well-known harmless options (``password=`` included) and any fragment. Built from the URL's structure
    (see :func:`_split_url`), never by searching the password in the text; when the structure is ambiguous (an
    unencoded ``/``, ``?`` or ``#`` in a password) everything after the scheme is ``***``."""
    parts = _split_url(url)
    if parts is None:
        scheme, sep, _ = url.partition("://")
        return f"{scheme}://***" if sep else "***"
    scheme, credentials, location, query, fragment = parts
    if not scheme:
        return url
    shown = f"{scheme}://" + ("***@" if credentials is not None else "") + location
    if query is not None:
        pairs = []
        for pair in query.split("&"):
            name, eq, value = pair.partition("=")
            pairs.append(f"{name}={value}" if name in _SAFE_QUERY_NAMES or not eq else f"{name}=***")
        shown += "?" + "&".join(pairs)
    if fragment is not None:
        shown += "#***"
    return shown


def _check_count(name: str, value: object, *, minimum: int) -> int:
    """Validate an integer option (``bool`` excluded, any size): ``value >= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}: {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def _url_problem(url: str) -> str | None:
    """What makes ``url`` unusable, in words of our own that never quote its credentials or query values; else None."""
    split = _split_url(url)
    if split is None:
        return (
            "an '@' follows a '/', '?' or '#': a user name or password with an unencoded '/', '?' or '#', or a query "
            "value with an unencoded '@'; percent-encode them, e.g. urllib.parse.quote(password, safe='')"
        )
    scheme, _, _, _, fragment = split
    if scheme not in ("redis", "rediss", "unix"):
        if not scheme:
            return "not a URL; write it as redis://host:port/db"
        return f"unsupported scheme {scheme!r}; use redis://, rediss:// (TLS) or unix://"
    if fragment is not None:
        return "it has a '#' fragment, which cuts a query value short; percent-encode '#' in values as %23"
    parts = urlsplit(url)
    if scheme == "unix":
        return None if parts.path else "no socket path; write it as unix:///path/to/redis.sock"
    if not parts.hostname:
        return "no host; write it as redis://host:port/db"
    try:
        _ = parts.port
    except ValueError:
        return "the port must be a number from 0 to 65535"
    db = parts.path.strip("/")
    if db and not db.isdigit():
        return f"the path must be a database number such as /0, got {db!r}"
    try:
        parse_url(url)
    except ValueError as exc:  # redis-py's messages name a query argument, never its value
        return str(exc)
    return None


def _check_url(url: object) -> str:
    """Validate a Redis URL up front, so a typo fails at construction with a message naming it (redacted)."""
    if not isinstance(url, str):
        raise TypeError(f"url must be a str such as 'redis://localhost:6379/0', got {type(url).__name__}")
    problem = _url_problem(url)
    if problem is not None:
        raise ValueError(f"unusable Redis URL {redact_url(url)!r}: {problem}")
    return url


def _address_of(client: aioredis.Redis) -> str:
    """The server address of ``client`` for messages and logs: scheme, host, port and db, never credentials."""
    pool = client.connection_pool
    kwargs = pool.connection_kwargs
    if issubclass(pool.connection_class, UnixDomainSocketConnection):
        return f"unix://{kwargs.get('path', '?')}?db={kwargs.get('db', 0)}"
    scheme = "rediss" if issubclass(pool.connection_class, SSLConnection) else "redis"
    host = str(kwargs.get("host", "localhost"))
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


def _error_code(exc: BaseException) -> str | None:
    """The Redis error code of a server error reply (``"BUSY"``, ``"OOM"``...), or ``None`` for any other error."""
    for cls, code in _CODE_OF_CLASS:
        if isinstance(exc, cls):
            return code
    if not isinstance(exc, ResponseError):
        return None
    status = getattr(exc, "status_code", None)  # kept by redis-py >= 6 for the codes it maps
    if isinstance(status, str) and status:
        return status
    match = _CODE_AT_HEAD.match(str(exc)) or _CODE_IN_PIPELINE.search(str(exc))
    return match.group(1) if match else None


def _is_transient(exc: BaseException) -> bool:
    """True for errors after which a read may succeed if sent again (not for bad credentials or bad requests)."""
    if isinstance(exc, (AuthenticationError, AuthorizationError)):
        return False
    if isinstance(exc, (RedisConnectionError, RedisTimeoutError, *_TRANSIENT_CLASSES)):
        return True
    return _error_code(exc) in _TRANSIENT_CODES


async def _honouring_cancellation(call: Callable[[], Awaitable[T]]) -> T:
    """Await ``call()``; if the task was asked to cancel meanwhile and ``call`` returned or failed anyway, raise
    ``CancelledError`` (inside an expired ``asyncio.timeout`` that becomes its ``TimeoutError``).

    redis-py sends each command through ``asyncio.wait_for`` when ``socket_timeout`` is set, and before Python 3.12
    ``wait_for`` returns normally when the cancellation arrives as the send completes (CPython gh-86296). A deadline
    cancels only once, so without this a lost cancellation leaves a retry or paging loop running without its deadline.
    """
    task = asyncio.current_task()
    requested = task.cancelling() if task is not None else 0
    try:
        result = await call()
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        if task is not None and task.cancelling() > requested:
            raise asyncio.CancelledError from exc  # the cancellation wins over the failure it hid
        raise
    if task is not None and task.cancelling() > requested:
        raise asyncio.CancelledError
    return result


class RedisSessionKVStore(SessionKVStore):
    """A TTL key-value store on Redis, shared by every process that uses the same server and ``key_prefix``.

    Pass exactly one of ``client`` (a ``redis.asyncio.Redis``; you own it, :meth:`close` leaves it open) or ``url``
    (``redis://[user:password@]host:port/db``, ``rediss://`` for TLS, ``unix:///path``; the store creates the client
    and closes it in :meth:`close`). Honours G01-G15 of :mod:`sessionkv.store` to 1 ms (G06) and G16 except that
    ``keys()`` is not atomic against concurrent writes, in either mode: it reads in pages (see the module docstring,
    which also states the error, retry and deadline rules and the indexed mode's trade-off).

    ``operation_timeout``: seconds, the deadline of each call. ``scan_count``: keys examined per round trip of
    ``keys()`` (the SCAN ``COUNT``, or index entries per script call in the indexed mode).
    ``read_retries``: extra attempts for read-only calls. ``indexed``: maintain the prefix index (opt-in).
    ``sweep_limit``: index entries of expired keys reclaimed per indexed write at most.
    """

    expiry_granularity_ns = 1_000_000

    def __init__(
        self,
        *,
        client: aioredis.Redis | None = None,
        url: str | None = None,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        indexed: bool = False,
        operation_timeout: float = 5.0,
        scan_count: int = DEFAULT_SCAN_COUNT,
        read_retries: int = 2,
        sweep_limit: int = 64,
    ) -> None:
        if client is not None and url is not None:
            raise ValueError(
                "Provide either a Redis client or a URL, not both: client= (you own it) or url= (the store owns its "
                "client)"
            )
        if client is None and url is None:
            raise ValueError(
                "Provide either a Redis client or a URL: client= (a redis.asyncio.Redis) or url= "
                "(e.g. 'redis://localhost:6379/0')"
            )
        self.key_prefix = check_key(key_prefix, what="key_prefix")
        if not isinstance(indexed, bool):
            raise TypeError(f"indexed must be a bool, got {type(indexed).__name__}: {indexed!r}")
        self.indexed = indexed
        self.operation_timeout = check_seconds("operation_timeout", operation_timeout)
        self.scan_count = _check_count("scan_count", scan_count, minimum=1)
        self.read_retries = _check_count("read_retries", read_retries, minimum=0)
        self.sweep_limit = _check_count("sweep_limit", sweep_limit, minimum=0)

        if client is not None:
            if not isinstance(client, aioredis.Redis):
                raise TypeError(
                    f"client must be a redis.asyncio.Redis, got {type(client).__module__}.{type(client).__name__}; "
                    "the synchronous redis.Redis and RedisCluster are not supported"
                )
            if client.connection_pool.connection_kwargs.get("decode_responses"):
                raise ValueError("client must be created with decode_responses=False: values are bytes")
            self._client = client
            self._owns_client = False
        else:
            checked_url = _check_url(url)
            self._client = aioredis.Redis.from_url(
                checked_url,
                retry=Retry(NoBackoff(), 0),  # redis-py must never replay a write: see the module docstring
                socket_timeout=self.operation_timeout,
                socket_connect_timeout=self.operation_timeout,
            )
            self._owns_client = True
        self.address = _address_of(self._client)
        self._closed = False
        self._prefix_bytes = self.key_prefix.encode()
        self._lex_index = _LEX_INDEX_HEAD + self._prefix_bytes
        self._exp_index = _EXP_INDEX_HEAD + self._prefix_bytes
        self._index_args: tuple[bytes, int] = (self._prefix_bytes, self.sweep_limit)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(address={self.address!r}, key_prefix={self.key_prefix!r}, "
            f"indexed={self.indexed!r}, owns_client={self._owns_client!r}, "
            f"operation_timeout={self.operation_timeout!r})"
        )

    @property
    def client(self) -> aioredis.Redis:
        """The underlying ``redis.asyncio.Redis`` client."""
        return self._client

    # -- lifecycle -------------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Check that the server answers ``PING`` (``StoreUnavailableError`` if not, within the deadline)."""
        await self._run("start", self._client.ping, retry=True)
        logger.info("RedisSessionKVStore connected to %s (key_prefix=%r)", self.address, self.key_prefix)

    async def close(self) -> None:
        """Close the client if the store created it from ``url``; a borrowed client stays open. Idempotent.

        After closing its own client, every operation (``start`` included) raises
        :class:`~sessionkv.errors.StoreClosedError`; over a borrowed client the store keeps working, as the client
        does."""
        if self._owns_client and not self._closed:
            self._closed = True
            await self._client.aclose()

    # -- the contract ----------------------------------------------------------------------------------------------

    async def set(self, key: str, value: bytes, ttl: float, *, only_if_exists: bool = False) -> None:
        key = check_key(key)
        data = check_value(value)
        ttl_ms = ns_to_ms_ceil(check_ttl_ns(ttl))
        member = key.encode()
        full = self._prefix_bytes + member
        client = self._client
        if self.indexed:
            keys = (self._lex_index, self._exp_index, full)
            args = (*self._index_args, data, ttl_ms, "1" if only_if_exists else "0", member)
            await self._run("set", lambda: _SET_SCRIPT.run(client, keys, args), retry=False)
        else:
            await self._run("set", lambda: client.set(full, data, px=ttl_ms, xx=only_if_exists), retry=False)

    async def mset(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        checked = check_items(items)
        if not checked:
            return
        prefix = self._prefix_bytes
        client = self._client
        if self.indexed:
            keys: list[bytes] = [self._lex_index, self._exp_index]
            args: list[bytes | int | str] = [*self._index_args]
            for key, data, ttl_ns in checked:
                member = key.encode()
                keys.append(prefix + member)
                args += (data, ns_to_ms_ceil(ttl_ns), member)
            await self._run("mset", lambda: _MSET_SCRIPT.run(client, keys, args), retry=False)
            return
        writes = [(prefix + key.encode(), data, ns_to_ms_ceil(ttl_ns)) for key, data, ttl_ns in checked]

        async def transaction() -> None:
            async with client.pipeline(transaction=True) as pipe:
                for full, data, ttl_ms in writes:
                    pipe.set(full, data, px=ttl_ms)
                await pipe.execute()

        await self._run("mset", transaction, retry=False)

    async def get(self, key: str) -> bytes | None:
        key = check_key(key)
        full = self._prefix_bytes + key.encode()
        client = self._client

        async def fetch() -> bytes | None:
            return cast("bytes | None", await client.get(full))  # decode_responses=False: bytes, never str

        try:
            value = await self._run("get", fetch, retry=True)
        except StoreUnavailableError as exc:
            if exc.cause is not None and _error_code(exc.cause) == "WRONGTYPE":
                raise CorruptRecordError(key, "it holds a Redis value that is not a string") from exc.cause
            raise
        return value

    async def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        wanted = check_keys(keys)
        if not wanted:
            return []
        prefix = self._prefix_bytes
        full = [prefix + key.encode() for key in wanted]
        client = self._client

        async def fetch() -> list[bytes | None]:
            return cast("list[bytes | None]", await client.mget(full))  # decode_responses=False: bytes, never str

        return await self._run("mget", fetch, retry=True)

    async def expire(self, *keys: str, ttl: float) -> None:
        wanted = check_expire_keys(keys)
        ttl_ms = ns_to_ms_ceil(check_ttl_ns(ttl))
        if not wanted:
            return
        prefix = self._prefix_bytes
        members = [key.encode() for key in wanted]
        client = self._client
        if self.indexed:
            script_keys = [self._lex_index, self._exp_index, *(prefix + m for m in members)]
            args: list[bytes | int | str] = [*self._index_args, ttl_ms, *members]
            await self._run("expire", lambda: _EXPIRE_SCRIPT.run(client, script_keys, args), retry=False)
            return

        async def transaction() -> None:
            async with client.pipeline(transaction=True) as pipe:
                for member in members:
                    pipe.pexpire(prefix + member, ttl_ms)
                await pipe.execute()

        await self._run("expire", transaction, retry=False)

    async def keys(self, prefix: str) -> list[str]:
        prefix = check_prefix(prefix)
        if self.indexed:
            return await self._keys_indexed(prefix)
        return await self._keys_scan(prefix)

    async def delete(self, keys: Sequence[str]) -> None:
        wanted = check_keys(keys)
        if not wanted:
            return
        members = list(dict.fromkeys(key.encode() for key in wanted))
        full = [self._prefix_bytes + m for m in members]
        client = self._client
        if not self.indexed:
            await self._run("delete", lambda: client.unlink(*full), retry=False)
            return
        lex, exp = self._lex_index, self._exp_index

        async def transaction() -> None:
            async with client.pipeline(transaction=True) as pipe:
                pipe.unlink(*full)
                pipe.zrem(lex, *members)
                pipe.zrem(exp, *members)
                await pipe.execute()

        await self._run("delete", transaction, retry=False)

    # -- keys() ----------------------------------------------------------------------------------------------------

    async def _keys_scan(self, prefix: str) -> list[str]:
        pattern = (glob_escape(self.key_prefix) + glob_escape(prefix) + "*").encode()
        strip = len(self._prefix_bytes)
        client = self._client
        count = self.scan_count

        async def scan_page(cursor: int) -> tuple[int, list[bytes]]:
            return cast("tuple[int, list[bytes]]", await client.scan(cursor, match=pattern, count=count))

        async def scan_all() -> list[str]:
            found: dict[str, None] = {}  # SCAN may repeat a key; a dict keeps each once (and in scan order)
            cursor = 0
            while True:
                cursor, page = await self._attempts(functools.partial(scan_page, cursor))
                for raw in page:
                    try:
                        found[raw[strip:].decode()] = None
                    except UnicodeDecodeError:
                        continue  # not UTF-8, so not a key any store of ours wrote
                if cursor == 0:
                    return list(found)

        return await self._run("keys", scan_all, retry=False)  # each SCAN page is retried on its own

    async def _keys_indexed(self, prefix: str) -> list[str]:
        encoded = prefix.encode()
        keys = (self._lex_index, self._exp_index)
        # members are UTF-8 and never contain the byte 0xFF, so [prefix, prefix + 0xFF) holds exactly the matches
        high = b"(" + encoded + b"\xff"
        page = self.scan_count
        client = self._client

        async def read_page(low: bytes) -> list[bytes]:
            args = (*self._index_args, low, high, page)
            return cast("list[bytes]", await _KEYS_PAGE_SCRIPT.run(client, keys, args))

        async def read_all() -> list[str]:
            found: list[str] = []
            low = b"[" + encoded
            while True:
                examined, last, *live = await self._attempts(functools.partial(read_page, low))
                found += [member.decode() for member in live]
                if int(examined) < page:
                    return found
                low = b"(" + last  # strictly after the last member examined: no member is examined twice

        return await self._run("keys", read_all, retry=False)  # each page is retried on its own

    # -- execution, deadline, retries and error translation --------------------------------------------------------

    async def _attempts(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run an idempotent ``call``, retrying transient failures up to ``read_retries`` times."""
        attempt = 0
        while True:
            try:
                return await _honouring_cancellation(call)
            except RedisError as exc:
                if attempt >= self.read_retries or not _is_transient(exc):
                    raise
                await asyncio.sleep(_RETRY_BACKOFF_S * 2**attempt)
                attempt += 1

    async def _run(self, operation: str, call: Callable[[], Awaitable[T]], *, retry: bool) -> T:
        """Run ``call`` within the operation deadline; translate every backend failure to StoreUnavailableError."""
        if self._closed:
            raise StoreClosedError(
                f"{operation}() on a closed RedisSessionKVStore ({self.address}): close() closed the client it "
                "created from url=; create a new store",
                operation=operation,
            )
        try:
            async with asyncio.timeout(self.operation_timeout):
                return await (self._attempts(call) if retry else _honouring_cancellation(call))
        except TimeoutError as exc:  # the deadline (asyncio.timeout raises the built-in TimeoutError)
            raise StoreUnavailableError(
                f"{operation} failed: Redis at {self.address} did not answer within operation_timeout="
                f"{self.operation_timeout} s; check that the server is up and not overloaded, or raise "
                "operation_timeout",
                cause=exc,
                operation=operation,
            ) from exc
        except (RedisError, OSError) as exc:
            raise StoreUnavailableError(self._describe(operation, exc), cause=exc, operation=operation) from exc

    def _describe(self, operation: str, exc: BaseException) -> str:
        where = f"Redis at {self.address}"
        detail = f"{type(exc).__name__}: {exc}"
        if len(detail) > _DETAIL_MAX:  # redis-py quotes a failed pipeline command with its arguments (values too)
            detail = detail[:_DETAIL_MAX] + "..."
        code = _error_code(exc)
        if isinstance(exc, (AuthenticationError, AuthorizationError)):
            advice = "check the username and password given to the store"
        elif code in _ADVICE_BY_CODE:
            advice = _ADVICE_BY_CODE[code]
        elif isinstance(exc, RedisTimeoutError):
            advice = "the server did not answer in time; check that it is up and not overloaded"
        elif isinstance(exc, (RedisConnectionError, OSError)):
            advice = "check that the server is running and reachable from this host"
        else:
            advice = "the server rejected the command"
        return f"{operation} failed: {where}: {detail}; {advice}"
