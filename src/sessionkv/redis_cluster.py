"""``RedisClusterSessionKVStore``: the shared store on a Redis Cluster.

Same wire format as :class:`~sessionkv.redis_store.RedisSessionKVStore` (and vision-agents): the value of ``key`` is a
plain Redis string at ``key_prefix + key`` with a millisecond TTL, so both stores, and vision-agents nodes, read each
other's keys on the same cluster. Operations:

* ``set``/``get``/``expire`` of one key: one command, routed by the client to the primary of the key's hash slot.
* Batches (``mset``, ``mget``, ``expire`` and ``delete`` of several keys) go to each primary as **one command**: a
  small Lua script run with ``EVALSHA`` on the node, over every key of the batch that the node serves, whatever their
  hash slots (the ``allow-cross-slot-keys`` script flag, Redis >= 7.0 and Valkey). Keys a script cannot cover (its
  slot map moved under the call: ``MOVED``/``ASK``, a slot being migrated; or a server that rejects the flag) are
  sent per hash slot instead: one command per slot (``MGET``, ``UNLINK``, or a script that writes the slot's keys in
  one atomic step), pipelined, one round trip per primary, redirections followed. A write script stops at the first
  key it cannot write and reports how many it wrote, so only the others go per slot: no key is written twice (a
  write script whose outcome is unknown is never sent again). A server that rejects the flag is remembered and the
  store keeps to the per-slot path (as it does with ``per_node_batches=False``).
  Within a primary a batch is atomic (one script; within a slot where keys went per slot); **across primaries it
  is not**: a concurrent reader can see part of an ``mset`` (G07's atomicity, declared in :attr:`certify_unsupported`
  so that certification reports it as declared rather than failed). Every item is still applied as ``set`` would,
  the last duplicate wins, and an invalid batch writes nothing (validated before any I/O).
* ``keys(prefix)``: ``SCAN MATCH`` on every primary (concurrently), with the same literal-prefix escaping as the
  single-server store; a key reported twice (SCAN may repeat, and a slot that moves during the call can be seen on
  two nodes) is listed once. Not atomic against concurrent writers, as on one server.

Hash-tag layout (opt-in, ``hash_tag="..."``): keys live at ``key_prefix + "{" + hash_tag + "}" + key``, so every key
of the store is in one slot. Then every batch is one atomic command (G07 holds in full) and ``keys()`` scans one
primary; the price is that the store's whole data set and load sit on one primary (no sharding for this store), and
the wire format differs from vision-agents', whose nodes would not see these keys.

Failover: transient errors (connection lost or refused, timeouts, ``CLUSTERDOWN``, ``MASTERDOWN``, ``TRYAGAIN``,
``LOADING``, a slot map that no node can serve, a ``MOVED`` storm that exhausts redis-py's redirections) make the
store re-read the slot map. Reads (``get``, ``mget``, ``keys``, ``start``'s ``PING``) are then retried until the
deadline ``operation_timeout`` (backoff from 10 ms doubling to 250 ms), which spans a failover (detection takes
``cluster-node-timeout``, the election about as long again). Writes are never replayed: a write that failed after it
was sent may have been applied, so it raises :class:`~sessionkv.errors.StoreUnavailableError` and the next call goes
to the refreshed map. ``MOVED``/``ASK`` redirections are followed by redis-py; they are not replays (the node refused
the command). The client the store creates has redis-py's own retries off (``Retry(NoBackoff(), 0)``); a client you
pass keeps its own settings, and redis-py's default re-sends writes after connection errors.

Asynchronous replication: a write acknowledged by a primary that dies before its replica received it is lost when
the replica is promoted (the Redis Cluster specification's stated window). The store cannot prevent that.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final, TypeVar, cast

from redis.asyncio.cluster import ClusterNode, PipelineCommand, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    AuthenticationError,
    AuthorizationError,
    BusyLoadingError,
    ClusterDownError,
    ClusterError,
    NoPermissionError,
    NoScriptError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from sessionkv._glob import glob_escape
from sessionkv.errors import CorruptRecordError, StoreClosedError, StoreUnavailableError
from sessionkv.redis_store import (
    DEFAULT_KEY_PREFIX,
    DEFAULT_SCAN_COUNT,
    _check_count,
    _check_url,
    _honouring_cancellation,
)
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

__all__ = ["MSET_ACROSS_SLOTS", "RedisClusterSessionKVStore"]

T = TypeVar("T")

_BACKOFF_FIRST_S: Final = 0.01
_BACKOFF_MAX_S: Final = 0.25

MSET_ACROSS_SLOTS: Final = (
    "on Redis Cluster an mset spanning several primaries is applied primary by primary (atomic on each primary, "
    "slot by slot where the slot map is moving), so a concurrent reader may see part of it; use hash_tag= to keep "
    "a store's keys in one slot"
)
"""Why G07's atomicity check does not apply to the default (sharded) layout; shown by certification."""

# KEYS = the slot's keys; ARGV = (value, ttl ms) per key. One atomic step per slot.
_LUA_SET_MANY: Final = """
for i, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[2 * i - 1], 'PX', ARGV[2 * i])
end
return #KEYS
"""
# KEYS = the slot's keys; ARGV[1] = ttl ms. PEXPIRE never creates a key: missing or expired keys stay missing.
_LUA_PEXPIRE_MANY: Final = """
for _, key in ipairs(KEYS) do
  redis.call('PEXPIRE', key, ARGV[1])
end
return #KEYS
"""


class _NodeScript:
    """A script run on one node over keys of several hash slots that the node serves (``EVALSHA`` with no declared
    keys; the ``allow-cross-slot-keys`` flag lets it touch them, Redis >= 7.0 and Valkey)."""

    def __init__(self, body: str) -> None:
        self.body = body
        self.sha = hashlib.sha1(body.encode(), usedforsecurity=False).hexdigest()


# A command on a key of a slot this node does not serve (moved, being migrated away) fails inside a script, after the
# commands before it were applied. So a write script runs each command with pcall and stops at the first that fails
# (a failed command wrote nothing), returning {written} or {written, error}: the client sends the keys it did not
# write per slot, and no key is written twice. Only single-key commands are used: a multi-key command spanning slots
# inside a script is refused, and on Valkey 9.1.2 it leaves the node refusing every later script (until restarted).
# ARGV = keys. Their values in order: nil for a missing key and, as MGET, for a key holding another type.
_GET_ON_NODE = _NodeScript(
    """#!lua flags=no-writes,allow-cross-slot-keys
local values = {}
for i, key in ipairs(ARGV) do
  local value = redis.pcall('GET', key)
  if type(value) == 'table' then
    if string.sub(tostring(value.err), 1, 9) ~= 'WRONGTYPE' then
      return value
    end
    value = false
  end
  values[i] = value
end
return values
"""
)
# ARGV = (key, value, ttl ms) per key.
_SET_ON_NODE = _NodeScript(
    """#!lua flags=allow-cross-slot-keys
for i = 1, #ARGV, 3 do
  local reply = redis.pcall('SET', ARGV[i], ARGV[i + 1], 'PX', ARGV[i + 2])
  if type(reply) == 'table' and reply.err then
    return {(i - 1) / 3, reply.err}
  end
end
return {#ARGV / 3}
"""
)
# ARGV[1] = ttl ms, then the keys. PEXPIRE never creates a key.
_PEXPIRE_ON_NODE = _NodeScript(
    """#!lua flags=allow-cross-slot-keys
for i = 2, #ARGV do
  local reply = redis.pcall('PEXPIRE', ARGV[i], ARGV[1])
  if type(reply) == 'table' then
    return {i - 2, reply.err}
  end
end
return {#ARGV - 1}
"""
)
# ARGV = keys.
_UNLINK_ON_NODE = _NodeScript(
    """#!lua flags=allow-cross-slot-keys
for i, key in ipairs(ARGV) do
  local reply = redis.pcall('UNLINK', key)
  if type(reply) == 'table' then
    return {i - 1, reply.err}
  end
end
return {#ARGV}
"""
)


def _scripts_rejected(exc: ResponseError) -> bool:
    """True when the server refused the per-node script itself, so nothing ran: before Redis 7.0 a shebang line does
    not compile; a flag the server does not know; ``EVALSHA`` renamed away or denied by ACL."""
    text = str(exc)
    return (
        "shebang" in text
        or "Error compiling script" in text
        or "unknown command" in text.lower()
        or (isinstance(exc, NoPermissionError) and "eval" in text.lower())
    )


def _is_transient(exc: BaseException) -> bool:
    """True for errors after which the same read may succeed once the cluster (or the client's map) has moved on."""
    if isinstance(exc, (AuthenticationError, AuthorizationError)):
        return False
    if isinstance(
        exc,
        (
            RedisConnectionError,  # includes BusyLoadingError (LOADING)
            RedisTimeoutError,
            ClusterDownError,  # CLUSTERDOWN, and MASTERDOWN (a subclass)
            TryAgainError,
            ReadOnlyError,
            SlotNotCoveredError,
        ),
    ):
        return True
    if type(exc) is ClusterError:  # redis-py's "TTL exhausted": too many MOVED/ASK/TRYAGAIN in a row
        return True
    if isinstance(exc, RedisClusterException):  # no startup node reachable, or the slots not covered yet
        return str(exc).startswith(("Redis Cluster cannot be connected", "All slots are not covered"))
    return isinstance(exc, ResponseError) and str(exc).startswith(("BUSY", "LOADING", "MASTERDOWN", "TRYAGAIN"))


def _raised_inside_redis_py(exc: BaseException) -> bool:
    """True when ``exc`` was raised by redis-py's code (or asyncio's, called from redis-py), not ours."""
    modules = []
    frame = exc.__traceback__
    while frame is not None:
        modules.append(str(frame.tb_frame.f_globals.get("__name__", "")))
        frame = frame.tb_next
    return (
        bool(modules)
        and modules[-1].startswith(("redis.", "asyncio."))
        and any(m.startswith("redis.") for m in modules)
    )


def _hash_tag_head(key_prefix: str, hash_tag: str | None) -> bytes:
    """The bytes in front of every key: ``key_prefix`` (plus ``{hash_tag}`` in the hash-tag layout)."""
    if hash_tag is None:
        return key_prefix.encode()
    hash_tag = check_key(hash_tag, what="hash_tag")
    if not hash_tag or "}" in hash_tag:
        raise ValueError(f"hash_tag must be a non-empty str without '}}', got {hash_tag!r}")
    head = f"{key_prefix}{{{hash_tag}}}".encode()
    # Redis hashes only what lies between the first '{' and the next '}' (when not empty); that span must end inside
    # the head, or keys would hash on part of themselves and land in different slots
    start = head.index(b"{")
    end = head.find(b"}", start + 1)
    if end == -1 or end == start + 1:
        raise ValueError(
            f"key_prefix {key_prefix!r} contains '{{' so the hash tag would not decide the slot; "
            "remove '{' and '}' from key_prefix when using hash_tag"
        )
    return head


class RedisClusterSessionKVStore(SessionKVStore):
    """A TTL key-value store on a Redis Cluster, sharing the wire format of :class:`RedisSessionKVStore`.

    Pass exactly one of ``client`` (a ``redis.asyncio.cluster.RedisCluster`` created with ``decode_responses=False``;
    you own it), ``url`` (``redis://host:port`` of any node) or ``startup_nodes`` (``(host, port)`` pairs); with
    ``url``/``startup_nodes`` the store owns its client and closes it in :meth:`close`. Honours G01-G16 of
    :mod:`sessionkv.store` (to 1 ms, G06) except G07's atomicity across hash slots in the default layout, and
    ``keys()`` is not atomic against concurrent writes; ``hash_tag`` restores G07 in full (see the module docstring,
    which also states the retry and failover rules).

    ``operation_timeout``: seconds, the deadline of each call, retries included. ``attempt_timeout``: seconds one
    command may wait for its node (the socket timeouts of a client the store creates; default a quarter of
    ``operation_timeout``), so that a read stuck on a frozen or partitioned primary is retried on the promoted replica
    within the deadline. ``scan_count``: keys examined per SCAN round trip on each primary. ``per_node_batches``:
    send a batch as one script per primary (the default; Redis >= 7.0 or Valkey, detected) rather than one command
    per hash slot; the results are the same, the per-node path costs the client far less for large batches.
    """

    expiry_granularity_ns = 1_000_000
    certify_unsupported: Mapping[str, str] = MappingProxyType(
        {"G07_mset_is_atomic_to_concurrent_readers": MSET_ACROSS_SLOTS}
    )
    """Declared for certification (check name -> reason); empty on an instance using the hash-tag layout."""

    def __init__(
        self,
        *,
        client: RedisCluster | None = None,
        url: str | None = None,
        startup_nodes: Sequence[tuple[str, int]] | None = None,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        hash_tag: str | None = None,
        operation_timeout: float = 5.0,
        attempt_timeout: float | None = None,
        scan_count: int = DEFAULT_SCAN_COUNT,
        per_node_batches: bool = True,
    ) -> None:
        given = [name for name, value in (("client", client), ("url", url), ("startup_nodes", startup_nodes)) if value]
        if len(given) != 1:
            raise ValueError(
                "pass exactly one of client= (a redis.asyncio.cluster.RedisCluster, you own it), url= "
                f"('redis://host:port' of any node) or startup_nodes= ([(host, port), ...]); got {given or 'none'}"
            )
        self.key_prefix = check_key(key_prefix, what="key_prefix")
        self.hash_tag = hash_tag
        self._head = _hash_tag_head(self.key_prefix, hash_tag)
        self.operation_timeout = check_seconds("operation_timeout", operation_timeout)
        if attempt_timeout is None:
            attempt_timeout = self.operation_timeout / 4
        self.attempt_timeout = check_seconds("attempt_timeout", attempt_timeout)
        self.scan_count = _check_count("scan_count", scan_count, minimum=1)
        if not isinstance(per_node_batches, bool):
            raise TypeError(f"per_node_batches must be True or False, got {per_node_batches!r}")
        self.per_node_batches = per_node_batches
        """Whether batches go as one script per primary; turns False for good when the server rejects the script."""
        if hash_tag is not None:
            self.certify_unsupported = MappingProxyType({})  # one slot: every batch is one atomic command
        timeouts = {"socket_timeout": self.attempt_timeout, "socket_connect_timeout": self.attempt_timeout}
        no_replay = Retry(NoBackoff(), 0)  # redis-py must never re-send a write: see the module docstring
        if client is not None:
            if not isinstance(client, RedisCluster):
                raise TypeError(
                    f"client must be a redis.asyncio.cluster.RedisCluster, got {type(client).__module__}."
                    f"{type(client).__name__}; for one server or a Sentinel-managed primary use RedisSessionKVStore"
                )
            if client.get_connection_kwargs().get("decode_responses"):
                raise ValueError("client must be created with decode_responses=False: values are bytes")
            self._client = client
            self._owns_client = False
        elif url is not None:
            self._client = RedisCluster.from_url(_check_url(url), retry=no_replay, **timeouts)
            self._owns_client = True
        else:
            nodes = _check_startup_nodes(startup_nodes)
            self._client = RedisCluster(
                startup_nodes=[ClusterNode(host, port) for host, port in nodes],
                retry=no_replay,
                socket_timeout=self.attempt_timeout,
                socket_connect_timeout=self.attempt_timeout,
            )
            self._owns_client = True
        self.address = "redis-cluster://" + ",".join(
            f"{node.host}:{node.port}" for node in self._client.nodes_manager.startup_nodes.values()
        )
        self._closed = False
        self._stale_map = False

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(address={self.address!r}, key_prefix={self.key_prefix!r}, "
            f"hash_tag={self.hash_tag!r}, per_node_batches={self.per_node_batches!r}, "
            f"owns_client={self._owns_client!r})"
        )

    @property
    def client(self) -> RedisCluster:
        """The underlying ``redis.asyncio.cluster.RedisCluster`` client."""
        return self._client

    # -- lifecycle -------------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Discover the cluster and check that every primary answers ``PING`` (within the deadline)."""

        async def ping() -> None:
            await self._client.initialize()
            await asyncio.gather(*(node.execute_command("PING") for node in self._client.get_primaries()))

        await self._run("start", ping, retry=True)

    async def close(self) -> None:
        """Close the client if the store created it; a borrowed client stays open. Idempotent."""
        if self._owns_client and not self._closed:
            self._closed = True
            await self._client.aclose()

    # -- the contract ----------------------------------------------------------------------------------------------

    def _full(self, key: str) -> bytes:
        return self._head + key.encode()

    async def set(self, key: str, value: bytes, ttl: float, *, only_if_exists: bool = False) -> None:
        full = self._full(check_key(key))
        data = check_value(value)
        ttl_ms = ns_to_ms_ceil(check_ttl_ns(ttl))
        await self._run("set", lambda: self._client.set(full, data, px=ttl_ms, xx=only_if_exists), retry=False)

    async def get(self, key: str) -> bytes | None:
        key = check_key(key)
        full = self._full(key)

        async def fetch() -> bytes | None:
            return cast("bytes | None", await self._client.get(full))

        try:
            return await self._run("get", fetch, retry=True)
        except StoreUnavailableError as exc:
            if isinstance(exc.cause, ResponseError) and "WRONGTYPE" in str(exc.cause):
                raise CorruptRecordError(key, "it holds a Redis value that is not a string") from exc.cause
            raise

    async def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        wanted = check_keys(keys)
        if not wanted:
            return []
        full = [self._full(key) for key in wanted]
        distinct = list(dict.fromkeys(full))

        async def fetch() -> list[bytes | None]:
            found: dict[bytes, bytes | None] = {}
            for group, values in await self._batch(distinct, _GET_ON_NODE, list, _mget_slot, write=False):
                found.update(zip(group, values, strict=True))
            return [found[k] for k in full]

        return await self._run("mget", fetch, retry=True)

    async def mset(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        checked = check_items(items)
        if not checked:
            return
        latest = {self._full(key): (data, ns_to_ms_ceil(ttl_ns)) for key, data, ttl_ns in checked}  # last one wins

        def on_node(group: list[bytes]) -> list[Any]:
            return [arg for k in group for arg in (k, *latest[k])]

        def per_slot(group: list[bytes]) -> tuple[Any, ...]:
            if len(group) == 1:
                data, ttl_ms = latest[group[0]]
                return ("SET", group[0], data, "PX", ttl_ms)
            return ("EVAL", _LUA_SET_MANY, len(group), *group, *(arg for k in group for arg in latest[k]))

        async def write() -> None:
            await self._batch(list(latest), _SET_ON_NODE, on_node, per_slot, write=True)

        await self._run("mset", write, retry=False)

    async def expire(self, *keys: str, ttl: float) -> None:
        wanted = check_expire_keys(keys)
        ttl_ms = ns_to_ms_ceil(check_ttl_ns(ttl))
        if not wanted:
            return
        distinct = list(dict.fromkeys(self._full(key) for key in wanted))

        def per_slot(group: list[bytes]) -> tuple[Any, ...]:
            if len(group) == 1:
                return ("PEXPIRE", group[0], ttl_ms)
            return ("EVAL", _LUA_PEXPIRE_MANY, len(group), *group, ttl_ms)

        async def write() -> None:
            await self._batch(distinct, _PEXPIRE_ON_NODE, lambda group: [ttl_ms, *group], per_slot, write=True)

        await self._run("expire", write, retry=False)

    async def delete(self, keys: Sequence[str]) -> None:
        wanted = check_keys(keys)
        if not wanted:
            return
        distinct = list(dict.fromkeys(self._full(key) for key in wanted))

        async def write() -> None:
            await self._batch(distinct, _UNLINK_ON_NODE, list, _unlink_slot, write=True)

        await self._run("delete", write, retry=False)

    async def keys(self, prefix: str) -> list[str]:
        prefix = check_prefix(prefix)
        pattern = glob_escape(self._head.decode()).encode() + glob_escape(prefix).encode() + b"*"
        strip = len(self._head)

        async def scan_node(node: ClusterNode) -> list[bytes]:
            found: list[bytes] = []
            cursor = 0
            while True:
                cursor, page = await node.execute_command("SCAN", cursor, "MATCH", pattern, "COUNT", self.scan_count)
                found += page
                if cursor == 0:
                    return found

        async def scan_all() -> list[str]:
            client = self._client
            await client.initialize()
            if self.hash_tag is not None:
                owner = client.nodes_manager.get_node_from_slot(key_slot(self._head))
                nodes = [owner]
            else:
                nodes = client.get_primaries()
            listed: dict[str, None] = {}  # a key seen twice (SCAN repeats, a slot seen on two nodes) is listed once
            for page in await asyncio.gather(*(scan_node(node) for node in nodes)):
                for raw in page:
                    try:
                        listed[raw[strip:].decode()] = None
                    except UnicodeDecodeError:
                        continue  # not UTF-8, so not a key any store of ours wrote
            return list(listed)

        return await self._run("keys", scan_all, retry=True)

    # -- execution, deadline, retries and error translation --------------------------------------------------------

    async def _batch(
        self,
        keys: list[bytes],
        script: _NodeScript,
        script_args: Callable[[list[bytes]], list[Any]],
        slot_command: Callable[[list[bytes]], tuple[Any, ...]],
        *,
        write: bool,
    ) -> list[tuple[list[bytes], Any]]:
        """Apply one batch over ``keys`` (distinct) and return ``(keys, reply)`` for every command that covered them.

        A primary that serves two or more of the batch's hash slots gets one ``script`` over its keys (arguments
        from ``script_args``); every other slot gets its ``slot_command``, pipelined per primary (:meth:`_per_primary`).
        A write script that stopped at a key it could not write (its slot moved) reports how many it wrote; the
        others go per slot. A primary whose script failed is covered per slot when that cannot write anything twice:
        after any error reply to a read, and after a write script refused before it ran (``READONLY``, a server that
        rejects the script). Every other failure is raised after all commands have finished."""
        client = self._client
        await client.initialize()  # a no-op unless the client must (re)discover the cluster
        groups = _by_slot(keys)
        per_slot: list[tuple[int, list[bytes]]] = []
        per_node: list[tuple[ClusterNode, list[tuple[int, list[bytes]]], list[bytes]]] = []
        if self.per_node_batches and len(groups) > 1:
            by_node: dict[str, tuple[ClusterNode, list[tuple[int, list[bytes]]]]] = {}
            for slot, group in groups:
                node = client.nodes_manager.get_node_from_slot(slot)
                by_node.setdefault(node.name, (node, []))[1].append((slot, group))
            for node, node_groups in by_node.values():
                if len(node_groups) == 1:
                    per_slot += node_groups  # one slot: its own command is already one command
                else:
                    per_node.append((node, node_groups, [k for _, group in node_groups for k in group]))
        else:
            per_slot = groups

        async def slots(chosen: list[tuple[int, list[bytes]]]) -> list[tuple[list[bytes], Any]]:
            if not chosen:
                return []
            replies = await self._per_primary([(slot, slot_command(group)) for slot, group in chosen])
            return [(group, reply) for (_, group), reply in zip(chosen, replies, strict=True)]

        outcomes = await asyncio.gather(
            slots(per_slot),
            *(self._run_script(node, script, script_args(node_keys)) for node, _, node_keys in per_node),
            return_exceptions=True,
        )
        failure: BaseException | None = None
        done: list[tuple[list[bytes], Any]] = []
        fallback: list[tuple[int, list[bytes]]] = []
        if isinstance(outcomes[0], BaseException):
            failure = outcomes[0]
        else:
            done += outcomes[0]
        for (_, node_groups, node_keys), outcome in zip(per_node, outcomes[1:], strict=True):
            if isinstance(outcome, BaseException):
                if isinstance(outcome, ResponseError) and self._nothing_ran(outcome, write=write):
                    fallback += node_groups
                elif failure is None:
                    failure = outcome
            elif write and len(outcome) > 1:  # stopped at a key it could not write: the rest go per slot
                written = int(outcome[0])
                done.append((node_keys[:written], None))
                fallback += _by_slot(node_keys[written:])
            else:
                done.append((node_keys, outcome))
        if failure is not None:
            raise failure
        return done + await slots(fallback)

    def _nothing_ran(self, exc: ResponseError, *, write: bool) -> bool:
        """Whether a per-node script's error reply allows covering its keys per slot: always for a read; for a write
        only when the script was refused before it ran. A server that rejects the script turns
        :attr:`per_node_batches` off."""
        if _scripts_rejected(exc):
            self.per_node_batches = False
            return True
        return not write or isinstance(exc, ReadOnlyError)

    @staticmethod
    async def _run_script(node: ClusterNode, script: _NodeScript, args: list[Any]) -> Any:
        """``script`` on ``node`` by its SHA; sent in full when the node does not have it cached (``NOSCRIPT``: it
        did not run, so this is not a replay)."""
        try:
            return await node.execute_command("EVALSHA", script.sha, 0, *args)
        except NoScriptError:
            return await node.execute_command("EVAL", script.body, 0, *args)

    async def _per_primary(self, commands: list[tuple[int, tuple[Any, ...]]]) -> list[Any]:
        """Send ``(slot, command)`` pairs, one pipelined round trip per primary (the slot map decides which), and
        return the replies in order. A command a node redirects (``MOVED``/``ASK``) or defers (``TRYAGAIN``) was not
        executed; it is sent again alone through the client, which follows the redirection. The first other error is
        raised. (redis-py's ClusterPipeline does the same but resolves a routing policy per command, which costs
        more than the round trips for thousands of single-slot commands.)"""
        client = self._client
        queued = [PipelineCommand(position, *args) for position, (_, args) in enumerate(commands)]
        by_node: dict[str, tuple[ClusterNode, list[PipelineCommand]]] = {}
        for (slot, _), command in zip(commands, queued, strict=True):
            node = client.nodes_manager.get_node_from_slot(slot)
            by_node.setdefault(node.name, (node, []))[1].append(command)
        await asyncio.gather(*(node.execute_pipeline(batch) for node, batch in by_node.values()))
        for command in queued:
            if isinstance(command.result, (AskError, TryAgainError)):  # MovedError is an AskError
                command.result = await client.execute_command(*command.args)
        for command in queued:
            if isinstance(command.result, Exception):
                raise command.result
        return [command.result for command in queued]

    async def _refresh_map(self) -> None:
        """Re-read the slot map (after a failover the old primary's slots belong to a promoted replica).

        The map counts as fresh only once the read completed: a refresh that fails, or that a deadline or a
        cancellation cuts short (redis-py's map may then be half rebuilt), is tried again before the next call."""
        try:
            await self._client.nodes_manager.initialize()
        except (RedisError, RedisClusterException, OSError):
            return  # no node answered: still stale
        self._stale_map = False

    async def _run(self, operation: str, call: Callable[[], Awaitable[T]], *, retry: bool) -> T:
        """Run ``call`` within the operation deadline; reads are retried on transient errors until the deadline,
        writes never. Every backend failure becomes StoreUnavailableError."""
        if self._closed:
            raise StoreClosedError(
                f"{operation}() on a closed {type(self).__name__} ({self.address}); create a new store",
                operation=operation,
            )
        last: BaseException | None = None
        try:
            async with asyncio.timeout(self.operation_timeout):
                backoff = _BACKOFF_FIRST_S
                while True:
                    if self._stale_map:
                        await self._refresh_map()
                    try:
                        return await _honouring_cancellation(call)  # else a lost cancellation retries forever
                    except (AttributeError, TypeError) as exc:
                        if not _raised_inside_redis_py(exc):
                            raise  # our own bug: never disguised as unavailability
                        # a connection closed under the command: redis-py closes every connection of the client on
                        # CLUSTERDOWN, including those other tasks are using (AttributeError, nothing was sent), and a
                        # write on a connection the peer reset can surface as TypeError/AttributeError from asyncio's
                        # transport on some Python versions (redis/redis-py#4287)
                        last = RedisConnectionError(f"connection closed under the command by redis-py: {exc}")
                        last.__cause__ = exc
                        self._stale_map = True
                        if not retry:
                            raise last from exc
                    except (RedisError, RedisClusterException, OSError) as exc:
                        last = exc
                        if not _is_transient(exc):
                            raise
                        self._stale_map = True
                        if not retry:
                            raise
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, _BACKOFF_MAX_S)
        except TimeoutError as exc:  # the deadline
            detail = f"; last error: {type(last).__name__}: {last}" if last is not None else ""
            raise StoreUnavailableError(
                f"{operation} failed: Redis Cluster at {self.address} did not answer within operation_timeout="
                f"{self.operation_timeout} s{detail}; check that the cluster is up (a failover takes about two "
                "cluster-node-timeouts) or raise operation_timeout",
                cause=last if last is not None else exc,
                operation=operation,
            ) from (last if last is not None else exc)
        except (RedisError, RedisClusterException, OSError) as exc:
            raise StoreUnavailableError(self._describe(operation, exc), cause=exc, operation=operation) from exc

    def _describe(self, operation: str, exc: BaseException) -> str:
        if isinstance(exc, (AuthenticationError, AuthorizationError)):
            advice = "check the username and password given to the client"
        elif isinstance(exc, BusyLoadingError):
            advice = "a node is loading its dataset; retry when it has finished"
        elif _is_transient(exc):
            advice = (
                "the cluster cannot serve this right now (a node is down or a failover is under way); a write may "
                "or may not have been applied, and is not retried"
            )
        else:
            advice = "the cluster rejected the command"
        return f"{operation} failed: Redis Cluster at {self.address}: {type(exc).__name__}: {exc}; {advice}"


def _mget_slot(group: list[bytes]) -> tuple[Any, ...]:
    return ("MGET", *group)


def _unlink_slot(group: list[bytes]) -> tuple[Any, ...]:
    return ("UNLINK", *group)


def _by_slot(keys: list[bytes]) -> list[tuple[int, list[bytes]]]:
    """``keys`` (distinct, in order) grouped by hash slot: ``(slot, keys)`` per slot, in first-seen order."""
    groups: dict[int, list[bytes]] = {}
    for key in keys:
        groups.setdefault(key_slot(key), []).append(key)
    return list(groups.items())


def _check_startup_nodes(nodes: object) -> list[tuple[str, int]]:
    if isinstance(nodes, (str, bytes)) or not isinstance(nodes, Sequence) or not nodes:
        raise TypeError(f"startup_nodes must be a non-empty list of (host, port) pairs, got {nodes!r}")
    checked = []
    for index, node in enumerate(nodes):
        if not (
            isinstance(node, (tuple, list))
            and len(node) == 2
            and isinstance(node[0], str)
            and isinstance(node[1], int)
            and not isinstance(node[1], bool)
        ):
            raise TypeError(f"startup_nodes[{index}] must be a (host: str, port: int) pair, got {node!r}")
        if not 0 < node[1] < 65536:
            raise ValueError(f"startup_nodes[{index}] has port {node[1]}, outside 1-65535")
        checked.append((node[0], node[1]))
    return checked
