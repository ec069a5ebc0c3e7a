"""Version-guarded Redis structures built on `RedisSink`: a hash of per-entity values that only newer versions
overwrite (with a generation that counts its writes), and compare-and-set replacement of small sorted sets that
carry the versions of the inputs they were built from (e.g. a team's top tenders), so a list built from older
inputs never replaces one built from newer inputs.

Versions are `source_seq` values, compared as decimal strings inside Lua: Lua numbers are doubles and lose
precision past 2^53, which source_seq (GTID sequence << 24 | row) reaches.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from schema.checked import finite, whole
from sinks.errors import InvalidInputError
from sinks.redis import RedisSink, text
from sinks.retry import bounded_all

# The hash field counting the fields ever written to a VersionedHash (its generation). Arrival order, not
# source_seq order: two partitions write in any order, and a reader that saw generation g saw every earlier write.
# (Named like the spend store's concurrency token, which replay comparisons leave out: it counts writes, not data.)
GENERATION_FIELD = "__gen"
# The hash field an owner sets once the hash holds every entity (`mark_whole`): the key and its marker go together,
# so a hash found without it is new or was lost whole (expired, a restart without persistence, a FLUSHALL).
WHOLE_FIELD = "__whole"

# KEYS[1] hash. ARGV[1] TTL, then (field, version, value) triples. Stored form: "version|value". Writes a field
# only if its stored version is missing or smaller, adds the number written to the generation field; returns the
# fields written.
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
if #written > 0 then
  redis.call('HINCRBY', KEYS[1], '__gen', #written)
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return written
"""

# KEYS: per list, the sorted set then its inputs hash. ARGV[1] TTL, then per list: n expected, the expected
# (member, score) pairs exactly as ZRANGE WITHSCORES returned them, k input names, then per input its expected value
# ('' = absent) and its new value, m new, the new (member, score) pairs. A list is replaced (inside the script, so no
# reader sees a half-built set) only if it still holds the expected members AND inputs, and no stored input is
# newer than the new one (a list built from older inputs never replaces one built from newer inputs, even when an
# ABA round brought the members back); otherwise its sorted-set key is returned. An empty list deletes the sorted
# set but keeps its inputs: "nothing eligible as of these inputs" is worth knowing.
_ZSET_CAS_LUA = """
local function newer(a, b)
  if #a ~= #b then return #a > #b end
  return a > b
end
local conflicts = {}
local writes = {}
local a = 2
for k = 1, #KEYS, 2 do
  local n = tonumber(ARGV[a]); a = a + 1
  local cur = redis.call('ZRANGE', KEYS[k], 0, -1, 'WITHSCORES')
  local same = (#cur == 2 * n)
  for i = 1, 2 * n do
    if same and cur[i] ~= ARGV[a + i - 1] then same = false end
  end
  a = a + 2 * n
  local ni = tonumber(ARGV[a]); a = a + 1
  local inputs = {}
  for i = 0, ni - 1 do
    local name, expected, new = ARGV[a + 3 * i], ARGV[a + 3 * i + 1], ARGV[a + 3 * i + 2]
    local stored = redis.call('HGET', KEYS[k + 1], name) or ''
    if stored ~= expected then same = false end
    if stored ~= '' and newer(stored, new) then same = false end
    table.insert(inputs, name)
    table.insert(inputs, new)
  end
  a = a + 3 * ni
  local m = tonumber(ARGV[a]); a = a + 1
  if same then
    table.insert(writes, {k, a, m, inputs})
  else
    table.insert(conflicts, KEYS[k])
  end
  a = a + 2 * m
end
for _, w in ipairs(writes) do
  local key, start, m, inputs = KEYS[w[1]], w[2], w[3], w[4]
  redis.call('DEL', key)
  for i = 0, m - 1 do
    redis.call('ZADD', key, ARGV[start + 2 * i + 1], ARGV[start + 2 * i])
  end
  if m > 0 then redis.call('EXPIRE', key, ARGV[1]) end
  local ikey = KEYS[w[1] + 1]
  redis.call('DEL', ikey)
  if #inputs > 0 then
    redis.call('HSET', ikey, unpack(inputs))
    redis.call('EXPIRE', ikey, ARGV[1])
  end
end
return conflicts
"""


@dataclass(frozen=True)
class Versioned:
    version: int
    value: str


@dataclass(frozen=True)
class HashSnapshot:
    """A whole VersionedHash read in one round trip: its entries, its generation (fields written so far; 0 for a
    hash written before generations existed), and the fields whose stored form is not `version|value` (written
    outside this class: reported, never raised, so one bad field cannot hide the others)."""

    entries: dict[str, Versioned]
    generation: int
    unreadable: dict[str, str]
    whole: bool = False  # the owner's marker is there (see WHOLE_FIELD)


class VersionedHash:
    """A catalogue hash whose fields hold `version|value` and are only ever replaced by newer versions."""

    def __init__(self, redis: RedisSink, key: str, ttl_s: int) -> None:
        self._redis = redis
        self.key = redis.full_key(key, "hash")
        self._ttl_s = ttl_s

    async def put_if_newer(self, items: Mapping[str, tuple[int, str]]) -> list[str]:
        """Write each field whose version is newer than the stored one; return the fields written."""
        if not items:
            return []
        args: list[str | int] = [self._ttl_s]
        for field, (version, value) in items.items():
            if not isinstance(field, str) or not field or "|" in field or field.startswith("__"):
                raise InvalidInputError(f"field {str(field)[:40]!r} must be a non-empty str without '|' or '__' first")
            if not whole(version, 0, 2**63 - 1):
                raise InvalidInputError(f"version of {field} must be a non-negative 64-bit int, got {version!r}")
            args.extend((field, str(version), value))
        script = self._redis.script(_HSET_IF_NEWER_LUA)

        async def run() -> list[str]:
            return [text(f) for f in await script(keys=[self.key], args=args)]

        return await self._redis.run(run, f"put_if_newer {self.key} ({len(items)} fields)")

    async def snapshot(self) -> HashSnapshot:
        async def run() -> dict[Any, Any]:
            return dict(await self._redis.client().hgetall(self.key))

        entries: dict[str, Versioned] = {}
        unreadable: dict[str, str] = {}
        generation = 0
        marked = False
        for raw_field, raw in (await self._redis.run(run, f"hgetall {self.key}")).items():
            field = text(raw_field)
            if field == WHOLE_FIELD:
                marked = True
                continue
            if field == GENERATION_FIELD:
                count = text(raw)
                if count.isascii() and count.isdigit():
                    generation = int(count)
                else:
                    unreadable[field] = f"generation {count[:40]!r} is not a count"
                continue
            try:
                entries[field] = _parse(raw)
            except InvalidInputError as exc:
                unreadable[field] = str(exc)
        return HashSnapshot(entries, generation, unreadable, marked)

    async def mark_whole(self) -> None:
        """Set the marker that says the hash holds every entity (and the TTL, as a write does)."""

        async def run() -> None:
            async with self._redis.client().pipeline(transaction=True) as pipe:
                pipe.hset(self.key, WHOLE_FIELD, "1")
                pipe.expire(self.key, self._ttl_s)
                await pipe.execute()

        await self._redis.run(run, f"hset {self.key} {WHOLE_FIELD}")

    async def get_all(self) -> dict[str, Versioned]:
        """Every entry; raises InvalidInputError if a field is not `version|value` (see `snapshot`)."""
        snap = await self.snapshot()
        if snap.unreadable:
            field, reason = next(iter(snap.unreadable.items()))
            raise InvalidInputError(f"{self.key} field {field[:40]!r}: {reason}")
        return snap.entries

    async def get(self, fields: Sequence[str]) -> dict[str, Versioned | None]:
        if not fields:
            return {}

        async def run() -> list[Any]:
            return list(await self._redis.client().hmget(self.key, list(fields)))

        values = await self._redis.run(run, f"hmget {self.key}")
        return {f: None if v is None else _parse(v) for f, v in zip(fields, values, strict=True)}

    async def generation(self) -> int:
        """The generation alone (0 for a missing hash): has anything been written since a snapshot?"""

        async def run() -> Any:
            return await self._redis.client().hget(self.key, GENERATION_FIELD)

        raw = await self._redis.run(run, f"hget {self.key} {GENERATION_FIELD}")
        count = "0" if raw is None else text(raw)
        if not (count.isascii() and count.isdigit()):
            raise InvalidInputError(f"{self.key} generation {count[:40]!r} is not a count")
        return int(count)

    async def refresh_ttl(self) -> None:
        """Set the TTL again (a missing hash stays missing)."""

        async def run() -> None:
            await self._redis.client().expire(self.key, self._ttl_s)

        await self._redis.run(run, f"expire {self.key}")


RawZset = list[tuple[str, str]]  # (member, score) as Redis returned them


@dataclass(frozen=True)
class TopList:
    """A sorted set as read (members and scores as Redis formats them) and the inputs stored with it (raw decimal
    strings; {} when none are stored: never written, or expired)."""

    members: RawZset
    inputs: dict[str, str]


EMPTY = TopList([], {})


@dataclass(frozen=True)
class ListChange:
    """Replace `expected` (what was read) with `members`, built from `inputs` (name -> version)."""

    expected: TopList
    members: Mapping[str, float]
    inputs: Mapping[str, int]


class ZsetCas:
    """Read many small sorted sets with the versions of the inputs they were built from, then replace each only if
    it still holds what was read and the new inputs are not older than the stored ones. The inputs live in a hash
    next to each set: catalogue key `<set key><inputs_suffix>`, in the set's Redis Cluster slot (a shared hash tag).
    On a cluster the sets of one call are replaced one slot at a time (a script per slot, slots concurrently, each
    retried on its own); a single Redis takes them all in one script."""

    def __init__(self, redis: RedisSink, ttl_s: int, inputs_suffix: str = ":inputs") -> None:
        self._redis = redis
        self._ttl_s = ttl_s
        self._suffix = inputs_suffix

    def full_key(self, key: str) -> str:
        return self._redis.full_key(key, "zset")

    def inputs_key(self, key: str) -> str:
        return self._redis.full_key(key + self._suffix, "hash")

    async def read(self, keys: Sequence[str]) -> dict[str, TopList]:
        """Current content and inputs of each (catalogue) key, raw; a missing key reads as EMPTY. One transaction on a
        single Redis; on a cluster one pipeline (a round trip per master), not a transaction per slot (1,000 teams:
        ~1.5 s against ~50 ms). A list and its inputs read at different moments cannot pass the compare-and-set:
        it compares both with what the script finds, so a torn read is a conflict and is read again."""
        full = [(self.full_key(k), self.inputs_key(k)) for k in keys]

        async def run() -> list[Any]:
            async with self._redis.client().pipeline(transaction=not self._redis.cluster) as pipe:
                for key, inputs in full:
                    # Scores kept as Redis formats them: the CAS script compares them with its own ZRANGE output.
                    pipe.zrange(key, 0, -1, withscores=True, score_cast_func=text)
                    pipe.hgetall(inputs)
                return list(await pipe.execute())

        replies = await self._redis.run(run, f"zrange x{len(full)}")
        out = {}
        for n, key in enumerate(keys):
            members, inputs = replies[2 * n], replies[2 * n + 1]
            out[key] = TopList(
                [(text(m), text(s)) for m, s in members], {text(f): text(v) for f, v in dict(inputs).items()}
            )
        return out

    async def refresh_ttl(self, keys: Sequence[str]) -> None:
        """Set the TTL again on keys (and their inputs) the owner has just re-validated (missing keys stay missing)."""
        if not keys:
            return
        full = [(self.full_key(k), self.inputs_key(k)) for k in keys]

        async def run() -> None:
            async with self._redis.client().pipeline(transaction=False) as pipe:
                for key, inputs in full:
                    pipe.expire(key, self._ttl_s)
                    pipe.expire(inputs, self._ttl_s)
                await pipe.execute()

        await self._redis.run(run, f"expire x{len(full)}")

    async def replace_if_unchanged(self, changes: Mapping[str, ListChange]) -> list[str]:
        """Replace each key with its new members and inputs if it still holds what was read and no stored input is
        newer than the new one; return the keys that changed since or hold newer inputs (nothing written for them:
        read again and recompute)."""
        if not changes:
            return []
        keys = list(changes)
        groups = self._redis.by_slot([self.full_key(key) for key in keys])
        # Every call built (and so every input checked) before the first is sent.
        calls = [self._cas_call([keys[n] for n in group], changes) for group in groups]
        script = self._redis.script(_ZSET_CAS_LUA)

        async def replace_slot(slot_keys: list[str], full: list[str], args: list[str | int]) -> list[str]:
            by_full = {full[2 * n]: key for n, key in enumerate(slot_keys)}

            async def run() -> list[str]:
                return [by_full[text(k)] for k in await script(keys=full, args=args)]

            return await self._redis.run(run, f"zset cas x{len(slot_keys)}")

        conflicts = await bounded_all([functools.partial(replace_slot, *call) for call in calls], SLOTS_IN_FLIGHT)
        return [key for group in conflicts for key in group]

    def _cas_call(
        self, keys: list[str], changes: Mapping[str, ListChange]
    ) -> tuple[list[str], list[str], list[str | int]]:
        """The CAS script's keys and arguments for `keys` (of one slot)."""
        full: list[str] = []
        args: list[str | int] = [self._ttl_s]
        for key in keys:
            change = changes[key]
            full.extend((self.full_key(key), self.inputs_key(key)))
            args.append(len(change.expected.members))
            for member, score in change.expected.members:
                args.extend((member, score))
            names = sorted(change.inputs)
            args.append(len(names))
            for name in names:
                version = change.inputs[name]
                if not isinstance(name, str) or not name:
                    raise InvalidInputError(f"{key}: input names must be non-empty str")
                if not whole(version, 0, 2**63 - 1):
                    raise InvalidInputError(f"{key}: input {name} must be a non-negative 64-bit int, got {version!r}")
                args.extend((name, change.expected.inputs.get(name, ""), str(version)))
            args.append(len(change.members))
            for member, value in change.members.items():
                if not isinstance(member, str) or not member:
                    raise InvalidInputError(f"{key}: members must be non-empty str")
                if not finite(value):
                    raise InvalidInputError(f"{key}: score of {member[:40]!r} must be finite, got {value!r}")
                args.extend((member, repr(float(value))))
        return keys, full, args


# Slots of one call in flight at once on a cluster: a call for 1,000 teams is up to 1,000 scripts, and redis-py's
# cluster client refuses a command past a node's connection limit (100) instead of waiting for a free one.
SLOTS_IN_FLIGHT = 16


def _parse(raw: Any) -> Versioned:
    stored = text(raw)
    version, sep, value = stored.partition("|")
    if not sep or not (version.isascii() and version.isdigit()):
        raise InvalidInputError(f"stored value {stored[:60]!r} is not 'version|value'")
    return Versioned(int(version), value)
