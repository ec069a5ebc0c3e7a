"""Atomic Redis writes for the key catalogue: whole-key replacement (RENAME) and version-guarded hashes, with TTLs.

Keys must come from `schema.redis_keys` (`KeyFamily.key(...)`); anything else is refused.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.crc import key_slot
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    BusyLoadingError,
    ClusterDownError,
    DataError,
    NoPermissionError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT

from schema.checked import finite, whole
from schema.redis_keys import CATALOGUE, FamilyIndex, InvalidKeyError, KeyFamily, RedisType, escape_glob, hash_tag
from schema.settings import Settings
from sinks.errors import InvalidInputError, PermanentSinkError, SinkError, TransientSinkError
from sinks.retry import RetryPolicy, StoreSensor, retry, sensed

log = logging.getLogger(__name__)

T = TypeVar("T")
HashValue = str | int | float | bytes

_PREFIX = re.compile(r"[A-Za-z0-9_.:-]{0,64}")
# A single Redis or a Redis Cluster (settings.redis_cluster): the same commands, scripts and same-slot transactions.
AsyncClient = aioredis.Redis | aioredis.RedisCluster
SyncClient = redis.Redis | redis.RedisCluster
_INT64_MAX = 2**63 - 1

# KEYS[1] hash; ARGV[1] version field; ARGV[2] new version (canonical decimal); ARGV[3] TTL s; ARGV[4..] field, value.
# Versions are compared as decimal strings: Lua numbers are doubles and lose precision past 2^53, and source_seq
# (GTID sequence << 24 | row) gets there. Byte-wise comparison avoids Lua's locale-dependent string ordering.
# The hash is replaced, not merged, so fields dropped by the newer version do not linger; the DEL runs inside the
# script, so no reader ever sees the key empty.
# KEYS[1] hash; ARGV[1] version field; ARGV[2] version. Deletes unless the stored version is >= ARGV[2].
_CAS_DELETE_LUA = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  local new = ARGV[2]
  if #current > #new or (#current == #new and current >= new) then
    return 0
  end
end
return redis.call('DEL', KEYS[1])
"""
# KEYS[1] lock; ARGV[1] token.
_UNLOCK_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
_CAS_HASH_LUA = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  if not string.match(current, '^%d+$') then
    return redis.error_reply('TENDERHUB stored ' .. ARGV[1] .. ' is not a non-negative integer')
  end
  current = string.gsub(current, '^0+(%d)', '%1')
  local new = ARGV[2]
  local older = #current < #new
  if #current == #new then
    older = false
    for i = 1, #new do
      local a, b = string.byte(current, i), string.byte(new, i)
      if a ~= b then
        older = a < b
        break
      end
    end
  end
  if not older then
    return 0
  end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], unpack(ARGV, 4))
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""


def classify_redis_error(exc: Exception) -> SinkError | None:
    """The sink policy for a redis-py exception (see sinks.errors); None = not ours, let it propagate."""
    if isinstance(exc, SinkError):
        return exc
    # Wrong credentials or ACLs are configuration, not an outage: retrying only hides them.
    if isinstance(exc, AuthenticationError | AuthorizationError | NoPermissionError):
        return None
    transient = (
        RedisConnectionError,  # includes BusyLoadingError (replica still loading its dataset)
        RedisTimeoutError,
        BusyLoadingError,
        TryAgainError,
        ClusterDownError,
        ReadOnlyError,  # talking to a replica during a failover
        OutOfMemoryError,
        builtins.ConnectionError,
        builtins.TimeoutError,
    )
    if isinstance(exc, transient):
        return TransientSinkError(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, ResponseError):
        if str(exc).startswith("BUSY"):
            return TransientSinkError(f"{type(exc).__name__}: {exc}")
        return PermanentSinkError(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, DataError):
        return PermanentSinkError(f"{type(exc).__name__}: {exc}")
    return None


def sync_client(settings: Settings, **options: Any) -> SyncClient:
    """A blocking client of the deployment's Redis (a cluster client when settings.redis_cluster) for commands, checks
    and tests; `options` are redis-py's (socket_timeout, decode_responses, ...)."""
    url = settings.redis_url.get_secret_value()
    if settings.redis_cluster:
        pairs = settings.redis_startup_nodes
        nodes = [redis.cluster.ClusterNode(host, port) for host, port in pairs]  # type: ignore[no-untyped-call]
        return redis.RedisCluster.from_url(url, startup_nodes=nodes, **options)
    return redis.Redis.from_url(url, **options)


@dataclass(frozen=True)
class _Connection:
    client: AsyncClient
    # Lua scripts registered on this client, by source: a call runs EVALSHA and reloads the script only if the server
    # lost it (one SHA-1 per script and connection, not per call).
    scripts: dict[str, AsyncScript] = field(default_factory=dict)


class RedisSink:
    """Writes catalogue keys atomically with their TTL; the client is created on first use, in the running loop."""

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = "",
        retry_policy: RetryPolicy | None = None,
        timeout_s: float = 5.0,
        families: Sequence[KeyFamily] = CATALOGUE,
        pool_size: int | None = None,
        sensor: StoreSensor | None = None,
        cluster: bool = False,
        cluster_nodes: Sequence[tuple[str, int]] = (),
    ) -> None:
        """`pool_size`: at most this many connections, and a caller waits (up to `timeout_s`) for a free one; None:
        redis-py's pool, which refuses a call past 100 connections at once (plenty for a worker's agents, not for a
        read service with hundreds of requests in flight). `cluster`: `url` names one node of a Redis Cluster (the
        client finds the others, routes each key to its slot's master and follows failovers; redis-py's cluster client
        refuses a command past a node's connection limit instead of waiting, so with `pool_size` at most that many
        calls of this sink run at once, the others waiting up to `timeout_s` as on a single Redis). `cluster_nodes`:
        more (host, port) nodes to start from when the URL's node is down."""
        if not _PREFIX.fullmatch(key_prefix):
            raise ValueError(f"key_prefix {key_prefix[:40]!r} may hold only [A-Za-z0-9_.:-] (64 at most)")
        self._url = url
        self._prefix = key_prefix
        self._policy = retry_policy or RetryPolicy()
        self._timeout_s = timeout_s
        # The key families this sink writes: the catalogue, plus those of installed agents (their specs).
        self._families = FamilyIndex(families)
        self._pool_size = pool_size
        self._sensor = sensor
        self._cluster = cluster
        self._cluster_nodes = tuple(cluster_nodes)
        self._gate = asyncio.Semaphore(pool_size) if cluster and pool_size is not None else None
        self._connection: _Connection | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> RedisSink:
        return cls(
            settings.redis_url.get_secret_value(),
            cluster=settings.redis_cluster,
            cluster_nodes=settings.redis_startup_nodes,
            **options,
        )

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.client.aclose()

    async def replace_hash(self, key: str, mapping: Mapping[str, HashValue], ttl_s: int) -> None:
        """Make `key` hold exactly `mapping` with a TTL of `ttl_s`, atomically; an empty mapping deletes the key."""
        full = self._resolve(key, "hash")
        values = _hash_values(mapping)
        _check_ttl(ttl_s)

        async def write() -> None:
            client = self._redis().client
            if not values:
                await client.delete(full)
                return
            tmp = temporary_key(full)
            fields: dict[EncodableT, EncodableT] = {name: value for name, value in values.items()}
            async with client.pipeline(transaction=True) as pipe:
                pipe.delete(tmp)
                pipe.hset(tmp, mapping=fields)
                pipe.expire(tmp, ttl_s)
                pipe.rename(tmp, full)
                await pipe.execute()

        await self._retry(write, f"replace_hash {full}")

    async def replace_zset(self, key: str, members: Mapping[str, float], ttl_s: int) -> None:
        """Make `key` hold exactly `members` (member -> score) with a TTL, atomically; empty deletes the key."""
        full = self._resolve(key, "zset")
        scores = _zset_scores(members)
        _check_ttl(ttl_s)

        async def write() -> None:
            client = self._redis().client
            if not scores:
                await client.delete(full)
                return
            tmp = temporary_key(full)
            async with client.pipeline(transaction=True) as pipe:
                pipe.delete(tmp)
                pipe.zadd(tmp, scores)
                pipe.expire(tmp, ttl_s)
                pipe.rename(tmp, full)
                await pipe.execute()

        await self._retry(write, f"replace_zset {full}")

    async def cas_hash(
        self, key: str, mapping: Mapping[str, HashValue], version_field: str, version: int, ttl_s: int
    ) -> bool:
        """Replace the hash with `mapping` + {version_field: version} and set its TTL, only if the stored version is
        missing or older. Returns whether it wrote; an equal version is a replay and writes nothing."""
        full = self._resolve(key, "hash")
        values = _hash_values(mapping)
        if not isinstance(version_field, str) or not version_field or version_field in values:
            raise InvalidInputError(f"version field {str(version_field)[:40]!r} must be a str not in the mapping")
        if not whole(version, 0, _INT64_MAX):
            raise InvalidInputError(f"version must be a non-negative 64-bit int, got {str(version)[:40]!r}")
        _check_ttl(ttl_s)
        args: list[HashValue] = [version_field, str(version), ttl_s]
        for name, value in values.items():
            args.extend((name, value))

        async def write() -> bool:
            return int(await self.script(_CAS_HASH_LUA)(keys=[full], args=args)) == 1

        wrote = await self._retry(write, f"cas_hash {full}")
        if not wrote:
            log.debug(
                "cas_hash %s: %s=%d is not newer than the stored one; nothing written", full, version_field, version
            )
        return wrote

    async def cas_delete_hash(self, key: str, version_field: str, version: int) -> bool:
        """Delete the hash unless it holds a version >= `version` (a delete for an older event must not remove a
        newer entry). Returns whether the key is gone because of this call."""
        full = self._resolve(key, "hash")
        if not whole(version, 0, _INT64_MAX):
            raise InvalidInputError(f"version must be a non-negative 64-bit int, got {str(version)[:40]!r}")

        async def run() -> bool:
            return int(await self.script(_CAS_DELETE_LUA)(keys=[full], args=[version_field, str(version)])) == 1

        return await self._retry(run, f"cas_delete_hash {full}")

    async def lock(self, key: str, token: str, ttl_s: int) -> bool:
        """SET NX EX: take a lock key (string family) for `ttl_s` seconds; False when someone else holds it."""
        full = self._resolve(key, "string")
        _check_ttl(ttl_s)

        async def run() -> bool:
            return bool(await self._redis().client.set(full, token, nx=True, ex=ttl_s))

        return await self._retry(run, f"lock {full}")

    async def unlock(self, key: str, token: str) -> bool:
        """Release a lock only if it is still ours (it may have expired and been taken by another worker)."""
        full = self._resolve(key, "string")

        async def run() -> bool:
            return int(await self.script(_UNLOCK_LUA)(keys=[full], args=[token])) == 1

        return await self._retry(run, f"unlock {full}")

    # -- for stores built on this sink (sinks.spend_store) ------------------------------------------------------

    def script(self, source: str) -> AsyncScript:
        """The Lua script `source`, registered once per connection (every store's scripts go through here)."""
        connection = self._redis()
        found = connection.scripts.get(source)
        if found is None:
            found = connection.scripts[source] = connection.client.register_script(source)
        return found

    def client(self) -> AsyncClient:
        """The shared client (created on first use, in the running loop)."""
        return self._redis().client

    @property
    def cluster(self) -> bool:
        """Whether the client is a Redis Cluster client."""
        return self._cluster

    def by_slot(self, keys: Sequence[str]) -> list[list[int]]:
        """The positions of `keys` grouped so that one script or transaction may take each group: all of them on a
        single Redis; on a Redis Cluster, one group per hash slot (keys of two slots in one call fail with CROSSSLOT),
        in the order each slot first appears."""
        if not self._cluster:
            return [list(range(len(keys)))] if keys else []
        groups: dict[int, list[int]] = {}
        for n, key in enumerate(keys):
            groups.setdefault(key_slot(key.encode()), []).append(n)
        return list(groups.values())

    def full_key(self, key: str, expected: RedisType) -> str:
        """A key of this sink's families with its prefix; refuses other keys, and keys of the wrong type."""
        return self._resolve(key, expected)

    async def run(self, op: Callable[[], Awaitable[T]], what: str) -> T:
        """Run `op` with this sink's retry policy and error classification."""
        return await self._retry(op, what)

    # -- internals --------------------------------------------------------------------------------------------

    def _redis(self) -> _Connection:
        if self._connection is None:
            # redis-py's own retries are off: RetryPolicy is the one place that decides, counts and logs retries.
            options: dict[str, Any] = {
                "socket_timeout": self._timeout_s,
                "socket_connect_timeout": self._timeout_s,
                "retry": Retry(NoBackoff(), 0),
            }
            client: AsyncClient
            if self._cluster:
                if self._pool_size is not None:
                    options["max_connections"] = self._pool_size
                nodes = [aioredis.cluster.ClusterNode(host, port) for host, port in self._cluster_nodes]
                client = aioredis.RedisCluster.from_url(self._url, startup_nodes=nodes, **options)
            elif self._pool_size is None:
                client = aioredis.Redis.from_url(self._url, **options)
            else:
                pool = aioredis.BlockingConnectionPool.from_url(
                    self._url, max_connections=self._pool_size, timeout=self._timeout_s, **options
                )
                client = aioredis.Redis(connection_pool=pool)
            self._connection = _Connection(client)
        return self._connection

    def _resolve(self, key: str, expected: RedisType) -> str:
        try:
            family = self._families.family(key)
        except InvalidKeyError as exc:
            raise InvalidInputError(str(exc)) from None
        if family.type != expected:
            raise InvalidInputError(f"{key} is a {family.type} ({family.pattern}), not a {expected}")
        return self._prefix + key

    async def _retry(self, op: Callable[[], Awaitable[T]], what: str) -> T:
        policy = self._policy
        gate = self._gate
        if gate is not None:
            inner = op

            async def gated() -> T:
                async with asyncio.timeout(self._timeout_s):
                    await gate.acquire()
                try:
                    return await inner()
                finally:
                    gate.release()

            op = gated
        with sensed(self._sensor, "redis", what):
            return await retry(
                op,
                attempts=policy.attempts,
                base_delay_s=policy.base_delay_s,
                max_delay_s=policy.max_delay_s,
                classify=classify_redis_error,
                what=what,
            )


def text(value: Any) -> str:
    """A Redis reply value (bytes from the client) as str."""
    return value.decode() if isinstance(value, bytes) else str(value)


def temporary_key(full: str) -> str:
    """A unique name (concurrent rebuilds never share one) in the Redis Cluster slot of `full`, which RENAME and the
    scripts that rename need: `full`'s own hash tag when it has one, else `full` made the tag."""
    suffix = f":tmp:{secrets.token_hex(8)}"
    return full + suffix if hash_tag(full) is not None else f"{{{full}}}{suffix}"


def _check_ttl(ttl_s: int) -> None:
    if not whole(ttl_s, 1):
        raise InvalidInputError(f"ttl_s must be a positive int (every key expires), got {ttl_s!r}")


def _hash_values(mapping: Mapping[str, HashValue]) -> dict[str, HashValue]:
    values: dict[str, HashValue] = {}
    for name, value in mapping.items():
        if not isinstance(name, str) or not name:
            raise InvalidInputError(f"hash field names must be non-empty str, got {str(name)[:40]!r}")
        # bool would be stored as "True"; None has no Redis form: both are caller bugs worth hearing about.
        if isinstance(value, bool) or not isinstance(value, str | int | float | bytes):
            raise InvalidInputError(f"hash field {name!r}: unsupported value type {type(value).__name__}")
        values[name] = value
    return values


def _zset_scores(members: Mapping[str, float]) -> dict[str, float]:
    scores: dict[str, float] = {}
    for member, score in members.items():
        if not isinstance(member, str) or not member:
            raise InvalidInputError(f"sorted set members must be non-empty str, got {str(member)[:40]!r}")
        if not finite(score):
            raise InvalidInputError(f"member {member[:40]!r}: score must be a finite number, got {score!r}")
        scores[member] = float(score)
    return scores


def delete_namespace(r: SyncClient, prefix: str, chunk: int = 500) -> int:
    """Delete every key of a throwaway namespace (a test's, a fault run's, a benchmark's): `prefix*`, and the
    `{prefix...` temporary keys of atomic replacements. Returns how many were deleted."""
    if not prefix:
        raise ValueError("delete_namespace needs a prefix: an empty one would match every key")
    deleted = 0
    for pattern in (f"{escape_glob(prefix)}*", f"{{{escape_glob(prefix)}*"):
        keys = list(r.scan_iter(match=pattern, count=1000))
        for start in range(0, len(keys), chunk):
            deleted += int(r.delete(*keys[start : start + chunk]))
    return deleted
