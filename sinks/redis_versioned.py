"""Version-guarded Redis structures built on `RedisSink`: a hash of per-entity values that only newer versions
overwrite, and compare-and-set replacement of small sorted sets (e.g. a team's top tenders).

Versions are `source_seq` values, compared as decimal strings inside Lua: Lua numbers are doubles and lose
precision past 2^53, which source_seq (GTID sequence << 24 | row) reaches.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.commands.core import AsyncScript

from sinks.errors import InvalidInputError
from sinks.redis import RedisSink, text

# KEYS[1] hash. ARGV[1] TTL, then (field, version, value) triples. Stored form: "version|value". Writes a field
# only if its stored version is missing or smaller; returns the fields written.
_HSET_IF_NEWER_LUA = """
local function newer(new, cur)
  if #new ~= #cur then return #new > #cur end
  return new > cur
end
local written = {}
for i = 2, #ARGV, 3 do
  local field, version, value = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local cur = redis.call('HGET', KEYS[1], field)
  local ok = true
  if cur then
    local sep = string.find(cur, '|', 1, true)
    ok = newer(version, string.sub(cur, 1, sep - 1))
  end
  if ok then
    redis.call('HSET', KEYS[1], field, version .. '|' .. value)
    table.insert(written, field)
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return written
"""

# KEYS: the sorted sets. ARGV[1] TTL, then per key: n expected, expected (member, score) pairs exactly as ZRANGE
# WITHSCORES returned them, n new, new (member, score) pairs. A key whose content is not the expected one is left
# alone and returned; the others are replaced (inside the script, so no reader sees a half-built set).
_ZSET_CAS_LUA = """
local conflicts = {}
local writes = {}
local a = 2
for k = 1, #KEYS do
  local n = tonumber(ARGV[a]); a = a + 1
  local cur = redis.call('ZRANGE', KEYS[k], 0, -1, 'WITHSCORES')
  local same = (#cur == 2 * n)
  for i = 1, 2 * n do
    if same and cur[i] ~= ARGV[a + i - 1] then same = false end
  end
  a = a + 2 * n
  local m = tonumber(ARGV[a]); a = a + 1
  if same then
    table.insert(writes, {k, a, m})
  else
    table.insert(conflicts, KEYS[k])
  end
  a = a + 2 * m
end
for _, w in ipairs(writes) do
  local key, start, m = KEYS[w[1]], w[2], w[3]
  redis.call('DEL', key)
  for i = 0, m - 1 do
    redis.call('ZADD', key, ARGV[start + 2 * i + 1], ARGV[start + 2 * i])
  end
  if m > 0 then redis.call('EXPIRE', key, ARGV[1]) end
end
return conflicts
"""


@dataclass(frozen=True)
class Versioned:
    version: int
    value: str


class VersionedHash:
    """A catalogue hash whose fields hold `version|value` and are only ever replaced by newer versions."""

    def __init__(self, redis: RedisSink, key: str, ttl_s: int) -> None:
        self._redis = redis
        self.key = redis.full_key(key, "hash")
        self._ttl_s = ttl_s
        self._script: AsyncScript | None = None

    async def put_if_newer(self, items: Mapping[str, tuple[int, str]]) -> list[str]:
        """Write each field whose version is newer than the stored one; return the fields written."""
        if not items:
            return []
        args: list[str | int] = [self._ttl_s]
        for field, (version, value) in items.items():
            if not isinstance(field, str) or not field or "|" in field:
                raise InvalidInputError(f"field {str(field)[:40]!r} must be a non-empty str without '|'")
            if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version < 2**63:
                raise InvalidInputError(f"version of {field} must be a non-negative 64-bit int, got {version!r}")
            args.extend((field, str(version), value))
        if self._script is None:
            self._script = self._redis.client().register_script(_HSET_IF_NEWER_LUA)
        script = self._script

        async def run() -> list[str]:
            return [text(f) for f in await script(keys=[self.key], args=args)]

        return await self._redis.run(run, f"put_if_newer {self.key} ({len(items)} fields)")

    async def get_all(self) -> dict[str, Versioned]:
        async def run() -> dict[Any, Any]:
            return dict(await self._redis.client().hgetall(self.key))

        return {text(k): _parse(v) for k, v in (await self._redis.run(run, f"hgetall {self.key}")).items()}

    async def get(self, fields: Sequence[str]) -> dict[str, Versioned | None]:
        if not fields:
            return {}

        async def run() -> list[Any]:
            return list(await self._redis.client().hmget(self.key, list(fields)))

        values = await self._redis.run(run, f"hmget {self.key}")
        return {f: None if v is None else _parse(v) for f, v in zip(fields, values, strict=True)}


RawZset = list[tuple[str, str]]  # (member, score) as Redis returned them


class ZsetCas:
    """Read many small sorted sets, then replace each only if it still holds what was read."""

    def __init__(self, redis: RedisSink, ttl_s: int) -> None:
        self._redis = redis
        self._ttl_s = ttl_s
        self._script: AsyncScript | None = None

    def full_key(self, key: str) -> str:
        return self._redis.full_key(key, "zset")

    async def read(self, keys: Sequence[str]) -> dict[str, RawZset]:
        """Current content of each (catalogue) key, raw; a missing key reads as []."""
        full = [self.full_key(k) for k in keys]

        async def run() -> list[Any]:
            async with self._redis.client().pipeline(transaction=False) as pipe:
                for key in full:
                    # Scores kept as Redis formats them: the CAS script compares them with its own ZRANGE output.
                    pipe.zrange(key, 0, -1, withscores=True, score_cast_func=text)
                return list(await pipe.execute())

        replies = await self._redis.run(run, f"zrange x{len(full)}")
        return {key: [(text(m), text(s)) for m, s in reply] for key, reply in zip(keys, replies, strict=True)}

    async def refresh_ttl(self, keys: Sequence[str]) -> None:
        """Set the TTL again on keys the owner has just re-validated (a missing key stays missing)."""
        if not keys:
            return
        full = [self.full_key(k) for k in keys]

        async def run() -> None:
            async with self._redis.client().pipeline(transaction=False) as pipe:
                for key in full:
                    pipe.expire(key, self._ttl_s)
                await pipe.execute()

        await self._redis.run(run, f"expire x{len(full)}")

    async def replace_if_unchanged(self, changes: Mapping[str, tuple[RawZset, Mapping[str, float]]]) -> list[str]:
        """Replace each key with its new members if it still holds `expected`; return the keys that changed since
        (nothing written for them: read again and recompute)."""
        if not changes:
            return []
        keys = list(changes)
        full = [self.full_key(k) for k in keys]
        args: list[str | int] = [self._ttl_s]
        for key in keys:
            expected, new = changes[key]
            args.append(len(expected))
            for member, score in expected:
                args.extend((member, score))
            args.append(len(new))
            for member, value in new.items():
                if not isinstance(member, str) or not member:
                    raise InvalidInputError(f"{key}: members must be non-empty str")
                if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                    raise InvalidInputError(f"{key}: score of {member[:40]!r} must be finite, got {value!r}")
                args.extend((member, repr(float(value))))
        if self._script is None:
            self._script = self._redis.client().register_script(_ZSET_CAS_LUA)
        script = self._script
        by_full = dict(zip(full, keys, strict=True))

        async def run() -> list[str]:
            return [by_full[text(k)] for k in await script(keys=full, args=args)]

        return await self._redis.run(run, f"zset cas x{len(keys)}")


def _parse(raw: Any) -> Versioned:
    stored = text(raw)
    version, sep, value = stored.partition("|")
    if not sep or not version.isdigit():
        raise InvalidInputError(f"stored value {stored[:60]!r} is not 'version|value'")
    return Versioned(int(version), value)
