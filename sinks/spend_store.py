"""Redis store of the spend agent: per-tender states, exact totals and the sorted sets readers use, updated together.

One Lua script applies a batch: it checks that the store is whole, that every tender state is still the one the agent
read (compare and set on the whole stored value) and that every total stays in range, and only then writes the new
states, adds the deltas to the exact totals (integer cents) and sets the sorted-set scores from those totals: all or
nothing. A redelivered or stale event produces no delta, so applying a batch twice changes nothing. Whole-key
rebuilds go through temporary keys and a guarded RENAME: they apply only if no batch landed since their snapshot
(the `__gen` counter in the totals hash).

Whole: the states, the totals and the window totals carry the same `__epoch` marker (2: built from MySQL; 1: started by
the stream on an empty store, which versions before 2026-12-07 did and the nightly job replaces; numbers, like every
other totals field), are written together and expire together. A hash that lost its marker (expired, evicted, restarted
without persistence, a lost AOF tail) means the three no longer describe the same tenders: the script refuses the batch
('lost') and the agent rebuilds them from MySQL. So does an entirely empty store: a first start cannot be told from a
store lost whole (every key expired, a restart without persistence, a FLUSHALL), and a batch holds at most its own
tenders' history, never the others' that were folded before the loss. The window totals also record the as-of date they
were computed for (`__as_of`, YYYYMMDD): deltas for another date are refused ('as_of') until the window is recomputed,
so a window total never goes negative. The sorted sets are read models with a shorter TTL: a missing one is rebuilt
whole from the exact totals, never from one batch's buyers.

Ranges: Lua numbers are doubles, exact up to 2^53; a total that would leave [0, 2^53) is refused before any write
('overflow' past the top; 'lost' below zero, which only a store out of step with its states can produce).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from redis.commands.core import AsyncScript

from schema.checked import whole
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
EPOCH_FIELD = "__epoch"
AS_OF_FIELD = "__as_of"
# The largest total the apply script can check exactly (Lua numbers are doubles).
MAX_EXACT = 2**53 - 1
EPOCH_MYSQL = "2"
_CHUNK = 1000

# Rebuilds the sorted set KEYS[zset] from the exact totals KEYS[totals] when it is missing (expired, evicted).
_ENSURE_ZSET = """
local function ensure_zset(totals, zset)
  if redis.call('EXISTS', zset) == 1 then return end
  local all = redis.call('HGETALL', totals)
  for k = 1, #all, 2 do
    if string.sub(all[k], 1, 2) == 'c:' then
      redis.call('ZADD', zset, string.format('%.17g', tonumber(all[k + 1]) / 100), string.sub(all[k], 3))
    end
  end
end
"""

# KEYS: 1 states, 2 totals, 3 zset, 4 window totals, 5 window zset.
# ARGV: 1 state TTL, 2 read-model TTL, 3 as-of date, 4 n writes, then
# (tender id, expected value or '', new value) per write, then n deltas, then (scope 'a'|'w', member, cents, tenders,
# without budget) per delta. Returns {'ok'}, {'conflict', tender ids...}, {'lost', why}, {'as_of', stored date} or
# {'overflow', member}. Everything is read and checked before the first write: a Lua error does not roll back earlier
# writes, and none can happen after the checks (HINCRBY stays in range).
_APPLY_LUA = (
    _ENSURE_ZSET
    + """
local MAX = 9007199254740991
local e1 = redis.call('HGET', KEYS[1], '__epoch')
local e2 = redis.call('HGET', KEYS[2], '__epoch')
local e3 = redis.call('HGET', KEYS[4], '__epoch')
if not (e1 and e1 == e2 and e2 == e3) then
  if e1 or e2 or e3 or redis.call('EXISTS', KEYS[1], KEYS[2], KEYS[4]) > 0 then
    return {'lost', 'markers: states ' .. tostring(e1) .. ', totals ' .. tostring(e2) .. ', window ' .. tostring(e3)}
  end
  return {'lost', 'the store is empty (a first start, or every key lost)'}
end
local as_of = redis.call('HGET', KEYS[4], '__as_of')
if as_of ~= ARGV[3] then return {'as_of', tostring(as_of)} end
local i = 5
local conflicts = {'conflict'}
for k = 1, tonumber(ARGV[4]) do
  local cur = redis.call('HGET', KEYS[1], ARGV[i])
  if ARGV[i + 1] == '' then
    if cur then table.insert(conflicts, ARGV[i]) end
  elseif cur ~= ARGV[i + 1] then
    table.insert(conflicts, ARGV[i])
  end
  i = i + 3
end
if #conflicts > 1 then return conflicts end
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
    if not (cur[1] and cur[2] and cur[3]) then return {'lost', 'totals of ' .. member .. ' are not numbers'} end
    seen[id] = cur
  end
  for n = 1, 3 do
    cur[n] = cur[n] + tonumber(ARGV[j + 1 + n])
    if cur[n] < 0 then return {'lost', scope .. ' spend of ' .. member .. ' would go negative'} end
    if cur[n] > MAX then return {'overflow', member} end
  end
  j = j + 5
end
i = 5
for k = 1, tonumber(ARGV[4]) do
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
ensure_zset(KEYS[2], KEYS[3])
ensure_zset(KEYS[4], KEYS[5])
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
return {'ok'}
"""
)

# KEYS: 1 states, 2 totals (holds the generation), then (destination, temporary) pairs. ARGV: 1 expected generation
# or '', 2 the epoch of a whole rebuild ('' = keep the stored one, which must be whole in states and totals), 3 n
# pairs, then a TTL per pair. Every replaced hash gets the epoch. A missing temporary key means "empty": the
# destination is deleted (hashes always carry a marker, so only an empty sorted set is missing). Returns 1 (done),
# 0 (a batch landed since the generation was read) or -1 (the stored epoch is not whole: rebuild everything).
_REPLACE_LUA = """
local gen = redis.call('HGET', KEYS[2], '__gen') or '0'
local n = tonumber(ARGV[3])
local epoch = ARGV[2]
local refused = nil
if ARGV[1] ~= '' and gen ~= ARGV[1] then refused = 0 end
if not refused and epoch == '' then
  local e1 = redis.call('HGET', KEYS[1], '__epoch')
  if e1 and e1 == redis.call('HGET', KEYS[2], '__epoch') then epoch = e1 else refused = -1 end
end
if refused then
  for k = 1, n do redis.call('DEL', KEYS[2 + 2 * k]) end
  return refused
end
for k = 1, n do
  local dest, tmp = KEYS[1 + 2 * k], KEYS[2 + 2 * k]
  if redis.call('EXISTS', tmp) == 1 then
    if redis.call('TYPE', tmp)['ok'] == 'hash' then redis.call('HSET', tmp, '__epoch', epoch) end
    redis.call('RENAME', tmp, dest)
    redis.call('EXPIRE', dest, ARGV[3 + k])
  else
    redis.call('DEL', dest)
  end
end
redis.call('HSET', KEYS[2], '__gen', tonumber(gen) + 1)
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
    """The store read at one instant: the generation (for a guarded rebuild), tender states, exact all-time totals,
    the markers of the three hashes (states, totals, window totals) and the window's as-of date."""

    generation: int
    states: dict[int, str]
    totals: dict[str, Totals] = field(default_factory=dict)
    epochs: tuple[str | None, str | None, str | None] = (None, None, None)
    window_as_of: str | None = None

    @property
    def whole(self) -> bool:
        """The three hashes carry the same marker: they describe the same tenders."""
        return self.epochs[0] is not None and len(set(self.epochs)) == 1

    @property
    def epoch(self) -> str | None:
        return self.epochs[0] if self.whole else None


ApplyStatus = Literal["ok", "conflict", "lost", "as_of", "overflow"]


@dataclass(frozen=True)
class ApplyResult:
    """What `apply` did: 'ok' (applied), or nothing written and why: 'conflict' (states changed since read: read
    again), 'lost' (the store is not whole: rebuild it from MySQL), 'as_of' (the window totals are for another date:
    recompute the window), 'overflow' (a total would pass 2^53 cents: the batch's fault)."""

    status: ApplyStatus
    conflicts: list[int] = field(default_factory=list)
    detail: str = ""


ReplaceStatus = Literal["done", "moved", "lost"]


class SpendStore:
    def __init__(self, redis: RedisSink, window_days: int) -> None:
        self._redis = redis
        window = f"{window_days}d"
        self.states_key = redis.full_key(SPEND_TENDER_STATE.key(), "hash")
        self.totals_key = redis.full_key(SPEND_TOTALS.key(), "hash")
        self.zset_key = redis.full_key(SPEND_BY_BUYER.key(), "zset")
        self.window_totals_key = redis.full_key(SPEND_WINDOW_TOTALS.key(window=window), "hash")
        self.window_zset_key = redis.full_key(SPEND_BY_BUYER_WINDOW.key(window=window), "zset")

    def _scripts(self) -> tuple[AsyncScript, AsyncScript]:
        return self._redis.script(_APPLY_LUA), self._redis.script(_REPLACE_LUA)

    async def read_states(self, tender_ids: Sequence[int]) -> dict[int, str | None]:
        ids = [_tender_id(t) for t in tender_ids]
        if not ids:
            return {}

        async def read() -> list[Any]:
            return list(await self._redis.client().hmget(self.states_key, [str(t) for t in ids]))

        values = await self._redis.run(read, f"hmget {self.states_key}")
        return {t: None if v is None else text(v) for t, v in zip(ids, values, strict=True)}

    async def snapshot(self) -> Snapshot:
        async def read() -> list[Any]:
            async with self._redis.client().pipeline(transaction=True) as pipe:
                pipe.hget(self.totals_key, GENERATION_FIELD)
                pipe.hgetall(self.states_key)
                pipe.hgetall(self.totals_key)
                pipe.hmget(self.window_totals_key, [EPOCH_FIELD, AS_OF_FIELD])
                return list(await pipe.execute())

        gen, states, totals, (window_epoch, window_as_of) = await self._redis.run(read, f"snapshot {self.states_key}")
        state_fields = {text(k): text(v) for k, v in states.items()}
        totals_fields = {text(k): text(v) for k, v in totals.items()}
        return Snapshot(
            generation=int(text(gen)) if gen is not None else 0,
            states={int(k): v for k, v in state_fields.items() if not k.startswith("__")},
            totals=totals_from_fields(totals_fields),
            epochs=(
                state_fields.get(EPOCH_FIELD),
                totals_fields.get(EPOCH_FIELD),
                None if window_epoch is None else text(window_epoch),
            ),
            window_as_of=None if window_as_of is None else text(window_as_of),
        )

    async def apply(
        self, writes: Sequence[StateWrite], deltas: Sequence[TotalsDelta], *, as_of: dt.date
    ) -> ApplyResult:
        """Apply a batch atomically (see the module docstring for what is refused, an empty store included). `as_of`
        is the date the window deltas were computed for."""
        if not writes and not deltas:
            return ApplyResult("ok")
        args: list[str | int] = [
            SPEND_TENDER_STATE.ttl_s,
            SPEND_BY_BUYER.ttl_s,
            as_of_field(as_of),
            len(writes),
        ]
        for w in writes:
            args.extend((str(_tender_id(w.tender_id)), "" if w.expected is None else w.expected, w.value))
        args.append(len(deltas))
        for d in deltas:
            for name, value in (("cents", d.cents), ("tenders", d.tenders), ("without_budget", d.without_budget)):
                if not whole(value, -MAX_EXACT, MAX_EXACT):
                    # Refused before anything is written; the runner then finds the event at fault alone.
                    raise InvalidInputError(f"spend delta of {d.member[:60]!r}: {name} {value!r} is past 2^53")
            args.extend(("w" if d.window else "a", _check_member(d.member), d.cents, d.tenders, d.without_budget))
        keys = [self.states_key, self.totals_key, self.zset_key, self.window_totals_key, self.window_zset_key]
        apply, _ = self._scripts()

        async def run() -> ApplyResult:
            reply = [text(x) for x in await apply(keys=keys, args=args)]
            status, rest = reply[0], reply[1:]
            if status == "conflict":
                return ApplyResult("conflict", conflicts=[int(x) for x in rest])
            if status in ("ok", "lost", "as_of", "overflow"):
                return ApplyResult(cast(ApplyStatus, status), detail=" ".join(rest))
            raise InvalidInputError(f"spend apply script replied {reply[:3]!r}")

        return await self._redis.run(run, f"spend apply ({len(writes)} states, {len(deltas)} deltas)")

    async def read_totals(self, *, window: bool) -> dict[str, Totals]:
        key = self.window_totals_key if window else self.totals_key

        async def read() -> dict[Any, Any]:
            return dict(await self._redis.client().hgetall(key))

        raw = await self._redis.run(read, f"hgetall {key}")
        return totals_from_fields({text(k): text(v) for k, v in raw.items()})

    async def replace(
        self,
        *,
        generation: int | None,
        epoch: str | None = None,
        as_of: dt.date | None = None,
        states: Mapping[int, str] | None = None,
        totals: Mapping[str, Totals] | None = None,
        zset: Mapping[str, float] | None = None,
        window_totals: Mapping[str, Totals] | None = None,
        window_zset: Mapping[str, float] | None = None,
    ) -> ReplaceStatus:
        """Replace the given keys whole and at once, if the generation is still `generation` (None: always).

        `epoch` set: a whole rebuild (states, totals and window totals all given) marked with it; unset: the stored
        epoch is kept and must be whole in states and totals. Window totals need `as_of`, the date they are for.
        Returns 'done'; 'moved' (nothing replaced) when a batch landed since the caller's snapshot: read again and
        retry; 'lost' when the stored epoch is not whole: rebuild everything."""
        if epoch is not None and (states is None or totals is None or window_totals is None):
            raise InvalidInputError("a rebuild with a new epoch replaces states, totals and window totals together")
        if window_totals is not None and as_of is None:
            raise InvalidInputError("window totals need the as-of date they were computed for")
        # Every hash carries a marker field, so its temporary key exists even with no entries: an empty hash must
        # stay (marked), not be deleted, or the next batch would take the store for lost.
        hashes: list[tuple[str, int, Mapping[str, str | int]]] = [
            (dest, ttl, values)
            for dest, ttl, values in (
                (
                    self.states_key,
                    SPEND_TENDER_STATE.ttl_s,
                    None if states is None else {EPOCH_FIELD: epoch or "", **_state_fields(states)},
                ),
                (
                    self.totals_key,
                    SPEND_TOTALS.ttl_s,
                    None if totals is None else {EPOCH_FIELD: epoch or "", **_totals_fields(totals)},
                ),
                (
                    self.window_totals_key,
                    SPEND_WINDOW_TOTALS.ttl_s,
                    None
                    if window_totals is None or as_of is None
                    else {AS_OF_FIELD: as_of_field(as_of), **_totals_fields(window_totals)},
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
            return "done"
        _, replace = self._scripts()

        async def run() -> ReplaceStatus:
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
            keys = [self.states_key, self.totals_key]
            for dest, tmp, _ttl in plan:
                keys.extend((dest, tmp))
            args: list[str | int] = ["" if generation is None else str(generation), epoch or "", len(plan)]
            args.extend(ttl for _, _, ttl in plan)
            outcome = int(await replace(keys=keys, args=args))
            return "done" if outcome == 1 else "moved" if outcome == 0 else "lost"

        status = await self._redis.run(run, f"spend replace ({len(hashes) + len(zsets)} keys)")
        if status == "moved":
            log.info("spend replace skipped: a batch landed since generation %s was read", generation)
        elif status == "lost":
            log.warning("spend replace refused: the stored states and totals are not whole (markers lost)")
        return status


def as_of_field(as_of: dt.date) -> str:
    """The window's `__as_of` value: YYYYMMDD, a number like every other field of a totals hash."""
    return as_of.strftime("%Y%m%d")


def totals_from_fields(fields: Mapping[str, str]) -> dict[str, Totals]:
    """Members and their totals from a totals hash's fields ('c:', 't:', 'w:' per member; markers ignored)."""
    members = {k[2:] for k in fields if k[:2] in ("c:", "t:", "w:")}
    return {
        m: Totals(int(fields.get(f"c:{m}", 0)), int(fields.get(f"t:{m}", 0)), int(fields.get(f"w:{m}", 0)))
        for m in members
    }


def _state_fields(states: Mapping[int, str]) -> dict[str, str | int]:
    return {str(_tender_id(t)): v for t, v in states.items()}


def _totals_fields(totals: Mapping[str, Totals]) -> dict[str, str | int]:
    out: dict[str, str | int] = {}
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
