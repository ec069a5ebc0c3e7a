"""Redis store of the spend agent: per-tender states, exact totals and the sorted sets readers use, updated together.

One Lua script applies a batch: it checks that every tender state is still the one the agent read (compare and set
on the whole stored value), then writes the new states, adds the deltas to the exact totals (integer cents) and
sets the sorted-set scores from those totals, all or nothing. A redelivered or stale event produces no delta, so
applying a batch twice changes nothing. Whole-key rebuilds go through temporary keys and a guarded RENAME: they
apply only if no batch landed since their snapshot (the `__gen` counter in the totals hash).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.commands.core import AsyncScript

from schema.redis_keys import (
    SPEND_BY_BUYER,
    SPEND_BY_BUYER_WINDOW,
    SPEND_TENDER_STATE,
    SPEND_TOTALS,
    SPEND_WINDOW_TOTALS,
)
from sinks.errors import InvalidInputError
from sinks.mongo import validate_id
from sinks.redis import RedisSink, temporary_key, text

log = logging.getLogger(__name__)

GENERATION_FIELD = "__gen"
_CHUNK = 1000

# KEYS: 1 states, 2 totals, 3 zset, 4 window totals, 5 window zset.
# ARGV: 1 state TTL, 2 read-model TTL, 3 n writes, then (tender id, expected value or '', new value) per write,
# then n deltas, then (scope 'a'|'w', member, cents, tenders, without budget) per delta.
# Everything is read and checked before the first write: a Lua error does not roll back earlier writes.
_APPLY_LUA = """
local i = 4
local conflicts = {}
for k = 1, tonumber(ARGV[3]) do
  local cur = redis.call('HGET', KEYS[1], ARGV[i])
  if ARGV[i + 1] == '' then
    if cur then table.insert(conflicts, ARGV[i]) end
  elseif cur ~= ARGV[i + 1] then
    table.insert(conflicts, ARGV[i])
  end
  i = i + 3
end
if #conflicts > 0 then return conflicts end
local ndeltas = tonumber(ARGV[i])
local first_delta = i + 1
local seen = {}
local j = first_delta
for k = 1, ndeltas do
  local scope, member = ARGV[j], ARGV[j + 1]
  local totals = KEYS[2]
  if scope == 'w' then totals = KEYS[4] end
  local id = scope .. ':' .. member
  local cur = seen[id]
  if not cur then
    local v = redis.call('HMGET', totals, 'c:' .. member, 't:' .. member, 'w:' .. member)
    cur = {tonumber(v[1] or '0'), tonumber(v[2] or '0'), tonumber(v[3] or '0')}
    seen[id] = cur
  end
  cur[1] = cur[1] + tonumber(ARGV[j + 2])
  cur[2] = cur[2] + tonumber(ARGV[j + 3])
  cur[3] = cur[3] + tonumber(ARGV[j + 4])
  if cur[1] < 0 or cur[2] < 0 or cur[3] < 0 then
    return redis.error_reply('TENDERHUB spend of ' .. member .. ' would go negative: states and totals disagree')
  end
  j = j + 5
end
i = 4
for k = 1, tonumber(ARGV[3]) do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2])
  i = i + 3
end
j = first_delta
local touched = {}
for k = 1, ndeltas do
  local scope, member = ARGV[j], ARGV[j + 1]
  local totals, zset = KEYS[2], KEYS[3]
  if scope == 'w' then totals, zset = KEYS[4], KEYS[5] end
  redis.call('HINCRBY', totals, 'c:' .. member, ARGV[j + 2])
  redis.call('HINCRBY', totals, 't:' .. member, ARGV[j + 3])
  redis.call('HINCRBY', totals, 'w:' .. member, ARGV[j + 4])
  touched[scope .. ':' .. member] = {totals, zset, member}
  j = j + 5
end
for _, t in pairs(touched) do
  local totals, zset, member = t[1], t[2], t[3]
  local v = redis.call('HMGET', totals, 'c:' .. member, 't:' .. member, 'w:' .. member)
  local c, n, w = tonumber(v[1]), tonumber(v[2]), tonumber(v[3])
  if c == 0 and n == 0 and w == 0 then
    redis.call('HDEL', totals, 'c:' .. member, 't:' .. member, 'w:' .. member)
    redis.call('ZREM', zset, member)
  else
    redis.call('ZADD', zset, string.format('%.17g', c / 100), member)
  end
end
redis.call('HINCRBY', KEYS[2], '__gen', 1)
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[4], ARGV[1])
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('EXPIRE', KEYS[3], ARGV[2]) end
if redis.call('EXISTS', KEYS[5]) == 1 then redis.call('EXPIRE', KEYS[5], ARGV[2]) end
return {}
"""

# KEYS: 1 totals (holds the generation), then (destination, temporary) pairs. ARGV: 1 expected generation or '',
# 2 n pairs, then a TTL per pair. A missing temporary key means "empty": the destination is deleted.
_REPLACE_LUA = """
local gen = redis.call('HGET', KEYS[1], '__gen') or '0'
local n = tonumber(ARGV[2])
if ARGV[1] ~= '' and gen ~= ARGV[1] then
  for k = 1, n do redis.call('DEL', KEYS[1 + 2 * k]) end
  return 0
end
for k = 1, n do
  local dest, tmp = KEYS[2 * k], KEYS[1 + 2 * k]
  if redis.call('EXISTS', tmp) == 1 then
    redis.call('RENAME', tmp, dest)
    redis.call('EXPIRE', dest, ARGV[2 + k])
  else
    redis.call('DEL', dest)
  end
end
redis.call('HSET', KEYS[1], '__gen', tonumber(gen) + 1)
return 1
"""


@dataclass(frozen=True)
class StateWrite:
    """Set tender `tender_id`'s state to `value` if it is still `expected` (None = no state stored)."""

    tender_id: int
    expected: str | None
    value: str


@dataclass(frozen=True)
class TotalsDelta:
    """Add to one member's totals ('CUR|buyer'): cents summed, tenders counted, tenders without a budget."""

    window: bool
    member: str
    cents: int
    tenders: int
    without_budget: int


@dataclass(frozen=True)
class Totals:
    cents: int
    tenders: int
    without_budget: int


@dataclass(frozen=True)
class Snapshot:
    """Tender states and the generation they were read at (for a guarded rebuild)."""

    generation: int
    states: dict[int, str]


class SpendStore:
    def __init__(self, redis: RedisSink, window_days: int) -> None:
        self._redis = redis
        window = f"{window_days}d"
        self.states_key = redis.full_key(SPEND_TENDER_STATE.key(), "hash")
        self.totals_key = redis.full_key(SPEND_TOTALS.key(), "hash")
        self.zset_key = redis.full_key(SPEND_BY_BUYER.key(), "zset")
        self.window_totals_key = redis.full_key(SPEND_WINDOW_TOTALS.key(window=window), "hash")
        self.window_zset_key = redis.full_key(SPEND_BY_BUYER_WINDOW.key(window=window), "zset")
        self._apply: AsyncScript | None = None
        self._replace: AsyncScript | None = None

    def _scripts(self) -> tuple[AsyncScript, AsyncScript]:
        if self._apply is None or self._replace is None:
            client = self._redis.client()
            self._apply = client.register_script(_APPLY_LUA)
            self._replace = client.register_script(_REPLACE_LUA)
        return self._apply, self._replace

    async def read_states(self, tender_ids: Sequence[int]) -> dict[int, str | None]:
        ids = [_tender_id(t) for t in tender_ids]
        if not ids:
            return {}

        async def read() -> list[Any]:
            return list(await self._redis.client().hmget(self.states_key, [str(t) for t in ids]))

        values = await self._redis.run(read, f"hmget {self.states_key}")
        return {t: None if v is None else text(v) for t, v in zip(ids, values, strict=True)}

    async def snapshot(self) -> Snapshot:
        async def read() -> tuple[Any, Any]:
            async with self._redis.client().pipeline(transaction=True) as pipe:
                pipe.hget(self.totals_key, GENERATION_FIELD)
                pipe.hgetall(self.states_key)
                gen, states = await pipe.execute()
            return gen, states

        gen, states = await self._redis.run(read, f"snapshot {self.states_key}")
        return Snapshot(
            generation=int(text(gen)) if gen is not None else 0,
            states={int(text(k)): text(v) for k, v in states.items()},
        )

    async def apply(self, writes: Sequence[StateWrite], deltas: Sequence[TotalsDelta]) -> list[int]:
        """Apply a batch atomically; return the tender ids whose state changed since it was read (nothing written)."""
        if not writes and not deltas:
            return []
        args: list[str | int] = [SPEND_TENDER_STATE.ttl_s, SPEND_BY_BUYER.ttl_s, len(writes)]
        for w in writes:
            args.extend((str(_tender_id(w.tender_id)), "" if w.expected is None else w.expected, w.value))
        args.append(len(deltas))
        for d in deltas:
            args.extend(("w" if d.window else "a", _check_member(d.member), d.cents, d.tenders, d.without_budget))
        keys = [self.states_key, self.totals_key, self.zset_key, self.window_totals_key, self.window_zset_key]
        apply, _ = self._scripts()

        async def run() -> list[int]:
            result = await apply(keys=keys, args=args)
            return [int(text(x)) for x in result]

        return await self._redis.run(run, f"spend apply ({len(writes)} states, {len(deltas)} deltas)")

    async def read_totals(self, *, window: bool) -> dict[str, Totals]:
        key = self.window_totals_key if window else self.totals_key

        async def read() -> dict[Any, Any]:
            return dict(await self._redis.client().hgetall(key))

        raw = {text(k): int(text(v)) for k, v in (await self._redis.run(read, f"hgetall {key}")).items()}
        members = {k[2:] for k in raw if k[:2] in ("c:", "t:", "w:")}
        return {m: Totals(raw.get(f"c:{m}", 0), raw.get(f"t:{m}", 0), raw.get(f"w:{m}", 0)) for m in members}

    async def replace(
        self,
        *,
        generation: int | None,
        states: Mapping[int, str] | None = None,
        totals: Mapping[str, Totals] | None = None,
        zset: Mapping[str, float] | None = None,
        window_totals: Mapping[str, Totals] | None = None,
        window_zset: Mapping[str, float] | None = None,
    ) -> bool:
        """Replace the given keys whole and at once, if the generation is still `generation` (None: always).

        Returns False (nothing replaced) when a batch landed since the caller's snapshot: read again and retry."""
        hashes: list[tuple[str, int, Mapping[str, str | int]]] = [
            (dest, ttl, values)
            for dest, ttl, values in (
                (self.states_key, SPEND_TENDER_STATE.ttl_s, None if states is None else _state_fields(states)),
                (self.totals_key, SPEND_TOTALS.ttl_s, None if totals is None else _totals_fields(totals)),
                (
                    self.window_totals_key,
                    SPEND_WINDOW_TOTALS.ttl_s,
                    None if window_totals is None else _totals_fields(window_totals),
                ),
            )
            if values is not None
        ]
        zsets = [
            (dest, ttl, dict(members))
            for dest, ttl, members in (
                (self.zset_key, SPEND_BY_BUYER.ttl_s, zset),
                (self.window_zset_key, SPEND_BY_BUYER_WINDOW.ttl_s, window_zset),
            )
            if members is not None
        ]
        if not hashes and not zsets:
            return True
        _, replace = self._scripts()

        async def run() -> bool:
            # Built afresh on every attempt: a pipeline is empty after execute(), and a retry that filled no
            # temporary keys would delete the destinations.
            plan: list[tuple[str, str, int]] = []
            async with self._redis.client().pipeline(transaction=False) as pipe:
                for dest, ttl, fields in hashes:
                    tmp = temporary_key(dest)
                    plan.append((dest, tmp, ttl))
                    items = list(fields.items())
                    for start in range(0, len(items), _CHUNK):
                        pipe.hset(tmp, mapping=dict(items[start : start + _CHUNK]))
                    pipe.expire(tmp, 600)
                for dest, ttl, members in zsets:
                    tmp = temporary_key(dest)
                    plan.append((dest, tmp, ttl))
                    items2 = list(members.items())
                    for start in range(0, len(items2), _CHUNK):
                        pipe.zadd(tmp, dict(items2[start : start + _CHUNK]))
                    pipe.expire(tmp, 600)
                await pipe.execute()
            keys = [self.totals_key]
            for dest, tmp, _ttl in plan:
                keys.extend((dest, tmp))
            args: list[str | int] = ["" if generation is None else str(generation), len(plan)]
            args.extend(ttl for _, _, ttl in plan)
            return int(await replace(keys=keys, args=args)) == 1

        done = await self._redis.run(run, f"spend replace ({len(hashes) + len(zsets)} keys)")
        if not done:
            log.info("spend replace skipped: a batch landed since generation %s was read", generation)
        return done

    async def delete_all(self) -> int:
        keys = [self.states_key, self.totals_key, self.zset_key, self.window_totals_key, self.window_zset_key]

        async def run() -> int:
            return int(await self._redis.client().delete(*keys))

        return await self._redis.run(run, "spend delete")


def _state_fields(states: Mapping[int, str]) -> dict[str, str]:
    return {str(_tender_id(t)): v for t, v in states.items()}


def _totals_fields(totals: Mapping[str, Totals]) -> dict[str, int]:
    out: dict[str, int] = {}
    for member, t in totals.items():
        _check_member(member)
        out[f"c:{member}"] = t.cents
        out[f"t:{member}"] = t.tenders
        out[f"w:{member}"] = t.without_budget
    return out


def _check_member(member: str) -> str:
    if not isinstance(member, str) or "|" not in member or len(member) > 1100:
        raise InvalidInputError(f"spend member must be 'CUR|buyer', got {str(member)[:60]!r}")
    return member


def _tender_id(value: object) -> int:
    return validate_id("tender id", value)
