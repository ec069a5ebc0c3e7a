"""Tender search: MySQL full-text over title, description and buyer (migration 0005), with filters for province,
status and closing date, its results cached in Redis.

- `SearchQuery.parse` checks every parameter a client sends and normalises it (the words become a boolean-mode
  full-text query of required prefix terms, nothing of the client's text reaches SQL but bound words of letters and
  digits). Two requests that mean the same thing share one cache entry (`digest`).
- `TenderSearch.search`: Redis first (`search:{digest}`), else MySQL; a result read from MySQL is put in the cache by
  `SearchCache.fill`, a script that refuses it when the owner dropped anything since the search began (the epoch
  moved), so a fill can never bring back results from before a tender changed.
- `SearchCache.drop` is the owner's (agent `search_cache`): when tenders change it drops every cached search that
  holds one of them, and moves the epoch. New matches of a cached search appear when its entry expires (TTL).

A result row says whether its tender is `open` as of today when it is served, not when it was cached; a search for
open tenders filters again at that moment, so a tender whose closing date passed is never served as open.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, get_args

import sqlalchemy as sa

from schema.checked import digits_within
from schema.events import OPEN_STATUSES, PROVINCE_MAX_CHARS, Status
from schema.redis_keys import SEARCH_BY_TENDER, SEARCH_EPOCH, SEARCH_RESULTS
from sinks.errors import InvalidInputError, TransientSinkError
from sinks.reader import Read, tender_open
from sinks.redis import RedisSink

log = logging.getLogger(__name__)

MAX_QUERY_CHARS = 200
MAX_TERMS = 8
MIN_TERM_CHARS = 3  # InnoDB's innodb_ft_min_token_size: shorter words are not in the index
MAX_TERM_CHARS = 84  # innodb_ft_max_token_size
MAX_LIMIT = 50
MAX_OFFSET = 1000
STATUSES: tuple[str, ...] = get_args(Status)
PARAMETERS = ("q", "province", "status", "closes_after", "closes_before", "limit", "offset")
# InnoDB's default full-text stopwords (INFORMATION_SCHEMA.INNODB_FT_DEFAULT_STOPWORD; a test compares them with the
# server's). A stopword as a required term makes every search fail, so they are left out of the query.
_STOPWORDS_TEXT = (
    "a about an are as at be by com de en for from how i in is it la of on or that the this to was what when where "
    "who will with und www"
)
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())
_WORD = re.compile(r"[^\W_]+")
_DROP_CHUNK = 500
EPOCH_FIELD = "__gen"  # a write counter, like readiness's: compared, never read as data
_FILL_LUA = """
local current = redis.call('HGET', KEYS[1], '__gen') or ''
if current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'EX', tonumber(ARGV[3]))
for i = 3, #KEYS do
  redis.call('SADD', KEYS[i], ARGV[5])
  redis.call('EXPIRE', KEYS[i], tonumber(ARGV[4]))
end
return 1
"""
_DROP_LUA = """
redis.call('HINCRBY', KEYS[1], '__gen', 1)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
local dropped = 0
for i = 2, #KEYS do
  local digests = redis.call('SMEMBERS', KEYS[i])
  for j = 1, #digests, 500 do
    local keys = {}
    for k = j, math.min(j + 499, #digests) do keys[#keys + 1] = ARGV[2] .. digests[k] end
    dropped = dropped + redis.call('UNLINK', unpack(keys))
  end
  redis.call('DEL', KEYS[i])
end
return dropped
"""
_COLUMNS = "id, title, buyer, province, category, status, closing_at, published_at"
_MATCH = "MATCH(title, description, buyer) AGAINST (:words IN BOOLEAN MODE)"


class InvalidSearchError(InvalidInputError):
    """A search parameter that is not valid (the message says which and why)."""


@dataclass(frozen=True)
class SearchQuery:
    terms: tuple[str, ...]  # lower-case words, sorted, each a required prefix term
    province: str | None  # canonical name
    status: str | None  # an OCDS status, or "open" (open status, closing after today)
    closes_after: dt.date | None
    closes_before: dt.date | None
    limit: int = 20
    offset: int = 0

    @classmethod
    def parse(cls, params: Mapping[str, str], resolve_province: Callable[[str], str | None]) -> SearchQuery:
        unknown = sorted(set(params) - set(PARAMETERS))
        if unknown:
            raise InvalidSearchError(f"unknown parameter(s) {[u[:40] for u in unknown[:5]]}; known: {list(PARAMETERS)}")
        text = params.get("q", "")
        if len(text) > MAX_QUERY_CHARS:
            raise InvalidSearchError(f"q is {len(text)} characters; at most {MAX_QUERY_CHARS}")
        terms = _terms(text)
        province = params.get("province")
        if province is not None:
            resolved = resolve_province(province) if 0 < len(province) <= PROVINCE_MAX_CHARS else None
            if resolved is None:
                raise InvalidSearchError(f"province {province[:40]!r} is not a South African province (or National)")
            province = resolved
        status = params.get("status")
        if status is not None and status not in (*STATUSES, "open"):
            raise InvalidSearchError(f"status must be 'open' or one of {list(STATUSES)}, got {status[:40]!r}")
        after = _date(params, "closes_after")
        before = _date(params, "closes_before")
        if after is not None and before is not None and after > before:
            raise InvalidSearchError(f"closes_after {after} is later than closes_before {before}")
        if not terms and province is None and status is None and after is None and before is None:
            raise InvalidSearchError(
                "give words to search for (q, words of 3 or more letters or digits) or a filter "
                "(province, status, closes_after, closes_before)"
            )
        return cls(
            terms,
            province,
            status,
            after,
            before,
            _bounded(params, "limit", 20, 1, MAX_LIMIT),
            _bounded(params, "offset", 0, 0, MAX_OFFSET),
        )

    def digest(self, as_of: dt.date) -> str:
        """One cache entry per meaning and day (results of status=open depend on the day)."""
        canonical = json.dumps([as_of.isoformat(), *_fields(self)], separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]

    def sql(self, as_of: dt.date) -> tuple[str, dict[str, Any]]:
        """The statement and its bound parameters."""
        where: list[str] = []
        params: dict[str, Any] = {"limit": self.limit, "offset": self.offset}
        if self.terms:
            where.append(_MATCH)
            params["words"] = " ".join(f"+{t}*" for t in self.terms)
        if self.province is not None:
            where.append("province = :province")
            params["province"] = self.province
        if self.status == "open":
            where.append("status IN :open_statuses AND closing_at > :end_of_today")
            params["open_statuses"] = tuple(sorted(OPEN_STATUSES))
            params["end_of_today"] = dt.datetime.combine(as_of, dt.time(23, 59, 59))
        elif self.status is not None:
            where.append("status = :status")
            params["status"] = self.status
        if self.closes_after is not None:
            where.append("closing_at >= :closes_after")
            params["closes_after"] = dt.datetime.combine(self.closes_after, dt.time())
        if self.closes_before is not None:
            where.append("closing_at < :closes_before")
            params["closes_before"] = dt.datetime.combine(self.closes_before + dt.timedelta(days=1), dt.time())
        if self.terms:
            select = f"SELECT {_COLUMNS}, {_MATCH} AS relevance FROM tenders"
            order = "relevance DESC, id DESC"
        else:
            select = f"SELECT {_COLUMNS}, NULL AS relevance FROM tenders"
            order = "closing_at IS NULL, closing_at, id"
        return f"{select} WHERE {' AND '.join(where)} ORDER BY {order} LIMIT :limit OFFSET :offset", params


def _fields(query: SearchQuery) -> list[Any]:
    return [
        list(query.terms),
        query.province,
        query.status,
        query.closes_after.isoformat() if query.closes_after else None,
        query.closes_before.isoformat() if query.closes_before else None,
        query.limit,
        query.offset,
    ]


def _terms(text: str) -> tuple[str, ...]:
    words = []
    for word in _WORD.findall(text.lower()):
        if len(word) < MIN_TERM_CHARS or word in STOPWORDS or word in words:
            continue
        if len(word) > MAX_TERM_CHARS:
            raise InvalidSearchError(f"the word {word[:40]!r}... is longer than {MAX_TERM_CHARS} characters")
        words.append(word)
    if len(words) > MAX_TERMS:
        raise InvalidSearchError(f"q has {len(words)} words to search for; at most {MAX_TERMS}")
    return tuple(sorted(words))  # order does not change what matches, nor how well


# MySQL's DATETIME range, less the last day: a closes_before date is searched up to the next midnight.
_EARLIEST, _LATEST = dt.date(1000, 1, 1), dt.date(9998, 12, 31)


def _date(params: Mapping[str, str], name: str) -> dt.date | None:
    raw = params.get(name)
    if raw is None:
        return None
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", raw):
        raise InvalidSearchError(f"{name} must be a date as YYYY-MM-DD, got {raw[:40]!r}")
    try:
        day = dt.date.fromisoformat(raw)
    except ValueError:
        raise InvalidSearchError(f"{name} {raw!r} is not a calendar date") from None
    if not _EARLIEST <= day <= _LATEST:
        raise InvalidSearchError(f"{name} must be between {_EARLIEST} and {_LATEST}, got {raw}")
    return day


def _bounded(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    value = digits_within(raw, low, high)
    if value is None:
        raise InvalidSearchError(f"{name} must be an integer from {low} to {high}, got {raw[:40]!r}")
    return value


class SearchCache:
    """The `search:*` keys. `fill` is the read service's (guarded), `drop` the owning agent's."""

    def __init__(self, redis: RedisSink) -> None:
        self._redis = redis
        self._epoch = redis.full_key(SEARCH_EPOCH.key(), "hash")
        # A set holds digests; the drop script makes each a key with this (the prefix and "search:{cache}:").
        self._results_prefix = self._key("0" * 32).removesuffix("0" * 32)

    def _key(self, digest: str) -> str:
        return self._redis.full_key(SEARCH_RESULTS.key(digest=digest), "string")

    async def get(self, digest: str) -> tuple[list[dict[str, Any]] | None, str]:
        """The cached rows (None when not cached) and the epoch to fill under."""
        key = self._key(digest)

        async def read() -> list[Any]:
            async with self._redis.client().pipeline(transaction=False) as pipe:
                pipe.get(key)
                pipe.hget(self._epoch, EPOCH_FIELD)
                return list(await pipe.execute())

        value, epoch = await self._redis.run(read, f"get {key}")
        return _cached_rows(key, value), epoch.decode() if isinstance(epoch, bytes) else str(epoch or "")

    async def fill(self, digest: str, epoch: str, rows: Sequence[Mapping[str, Any]]) -> bool:
        """Cache `rows`, unless the owner dropped anything since `epoch` was read. True if cached."""
        key = self._key(digest)
        members = sorted({int(r["id"]) for r in rows})
        sets = [self._redis.full_key(SEARCH_BY_TENDER.key(id=t), "set") for t in members]
        value = json.dumps({"rows": list(rows)}, separators=(",", ":"), default=str)

        async def write() -> Any:
            return await self._redis.script(_FILL_LUA)(
                keys=[self._epoch, key, *sets],
                args=[epoch, value, SEARCH_RESULTS.ttl_s, SEARCH_BY_TENDER.ttl_s, digest],
            )

        return bool(await self._redis.run(write, f"fill {key}"))

    async def drop(self, tender_ids: Sequence[int]) -> int:
        """Drop every cached search that holds one of these tenders, and move the epoch (also when none is cached:
        a search running now may hold them). Idempotent. Returns how many searches were dropped."""
        ids = sorted(set(tender_ids))
        dropped = 0
        for start in range(0, max(len(ids), 1), _DROP_CHUNK):
            sets = [self._redis.full_key(SEARCH_BY_TENDER.key(id=t), "set") for t in ids[start : start + _DROP_CHUNK]]

            async def write(sets: list[str] = sets) -> Any:
                return await self._redis.script(_DROP_LUA)(
                    keys=[self._epoch, *sets], args=[SEARCH_EPOCH.ttl_s, self._results_prefix]
                )

            dropped += int(await self._redis.run(write, f"drop searches of {len(sets)} tenders"))
        return dropped


def _cached_rows(key: str, value: bytes | None) -> list[dict[str, Any]] | None:
    """The rows of a cached entry; None when there is none, or when it is not what `fill` writes (then the search
    runs again and its fill replaces the entry)."""
    if value is None:
        return None
    try:
        rows = json.loads(value)["rows"]
    except (ValueError, KeyError, TypeError):
        rows = None
    if isinstance(rows, list) and all(isinstance(r, dict) and isinstance(r.get("id"), int) for r in rows):
        return rows
    log.warning("search cache %s holds %r..., not search results: searching again", key, value[:60])
    return None


class TenderSearch:
    def __init__(self, cache: SearchCache, mysql: sa.Engine, as_of: Callable[[], dt.date]) -> None:
        self._cache = cache
        self._mysql = mysql
        self._as_of = as_of
        self.fills_refused = 0  # results not cached because a drop happened while they were read

    async def search(self, query: SearchQuery, as_of: dt.date | None = None, digest: str | None = None) -> Read:
        """Rows of the matching tenders, best first; `source` is 'redis' or 'mysql'. Redis that cannot answer is
        no error: the search runs on MySQL and is not cached. `as_of` (today when None) and its `digest` (computed
        when None) may come from a caller that has them already."""
        as_of = self._as_of() if as_of is None else as_of
        digest = query.digest(as_of) if digest is None else digest
        try:
            rows, epoch = await self._cache.get(digest)
        except TransientSinkError as exc:
            log.warning("search cache cannot answer (%s): searching MySQL", exc)
            rows, epoch = None, None
        source = "redis"
        if rows is None:
            source = "mysql"
            rows = await asyncio.to_thread(self._select, query, as_of)
            if epoch is not None:
                await self._fill(digest, epoch, rows)
        return Read(_served(rows, query, as_of), source)

    async def _fill(self, digest: str, epoch: str, rows: list[dict[str, Any]]) -> None:
        try:
            if not await self._cache.fill(digest, epoch, rows):
                self.fills_refused += 1
        except TransientSinkError as exc:
            log.warning("search %s not cached, Redis cannot answer (%s)", digest, exc)

    def _select(self, query: SearchQuery, as_of: dt.date) -> list[dict[str, Any]]:
        statement, params = query.sql(as_of)
        text = sa.text(statement)
        if "open_statuses" in params:
            text = text.bindparams(sa.bindparam("open_statuses", expanding=True))
        try:
            with self._mysql.connect() as conn:
                found = conn.execute(text, params).mappings().all()
        except (sa.exc.OperationalError, sa.exc.TimeoutError) as exc:  # down, or the pool has no connection free
            raise TransientSinkError(f"MySQL cannot answer the search: {str(exc)[:200]}") from exc
        return [_row(r) for r in found]


def _row(found: sa.RowMapping) -> dict[str, Any]:
    row = {name: found[name] for name in _COLUMNS.split(", ")}
    for name in ("closing_at", "published_at"):
        if isinstance(row[name], dt.datetime):
            row[name] = row[name].isoformat()
    row["relevance"] = None if found["relevance"] is None else round(float(found["relevance"]), 6)
    return row


def _served(rows: list[dict[str, Any]], query: SearchQuery, as_of: dt.date) -> list[dict[str, Any]]:
    """Rows with `open` as of now; for status=open only those still open (a cached row's closing date may have
    passed since it was cached)."""
    out = [{**r, "open": tender_open(r["status"], r["closing_at"], as_of)} for r in rows]
    return [r for r in out if r["open"]] if query.status == "open" else out
