"""Cache-first reads for the product: Redis first, MongoDB when the cache has nothing (expired or not built yet).

Readers never write the cache back: every Redis key family has one owning agent, and a reader's write-back of a
value it read from MongoDB could land after the owner deleted the key (a closed tender's card would come back).
The owner rebuilds the key on its next event or sweep; until then reads fall back to MongoDB.

Redis being down is one more reason to fall back, not an error: a read that Redis cannot answer (after the sink's
own quick retries) goes to MongoDB, and says so in `Read.source`. Spend lives in Redis only: its fallback is the
caller's (the read service recomputes it from MySQL).

A fallback never shows a closed tender as open: documents are read with their status and closing date as stored, and
"open" means an open status and a closing date after the as-of date (the end of that day, UTC), as readiness scores
it. A score document's `biddable` alone is not trusted: a close may not have reached it yet.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from schema.checked import finite, whole
from schema.events import OPEN_STATUSES
from schema.mongo import READINESS_SCORES, TENDER_SUMMARIES, USER_ACTIVITY_LOGS
from schema.redis_keys import (
    SPEND_BY_BUYER,
    SPEND_BY_BUYER_WINDOW,
    SPEND_TOTALS,
    SPEND_WINDOW_TOTALS,
    TEAM_TOP_TENDERS,
    TENDER_METADATA,
)
from sinks.errors import TransientSinkError
from sinks.mongo import MongoSink, validate_id
from sinks.redis import RedisSink, text
from sinks.spend_store import totals_from_fields

log = logging.getLogger(__name__)

# What `tender_summaries` documents hold (written by streams.agents.tender_summaries), as read back.
SUMMARY_FIELDS = (
    "summary",
    "model_used",
    "content_hash",
    "title",
    "tender_number",
    "buyer",
    "category",
    "province",
    "status",
    "closing_at",
    "published_at",
    "closed_reason",
    "source_seq",
    "event_id",
)


def tender_open(status: object, closing_at: object, as_of: dt.date) -> bool:
    """Open = an open status and a closing date after the as-of day (naive datetimes are UTC). A tender without a
    closing date is not open: nobody can say until when."""
    if status not in OPEN_STATUSES:
        return False
    if isinstance(closing_at, str) and closing_at:
        try:
            closing_at = dt.datetime.fromisoformat(closing_at)
        except ValueError:
            return False
    if not isinstance(closing_at, dt.datetime):
        return False
    when = closing_at if closing_at.tzinfo is not None else closing_at.replace(tzinfo=dt.UTC)
    return when > dt.datetime.combine(as_of, dt.time(23, 59, 59), tzinfo=dt.UTC)


@dataclass(frozen=True)
class Read:
    """A value and where it came from ('redis' or 'mongodb'; None = found nowhere)."""

    value: Any
    source: str | None


@dataclass(frozen=True)
class RankedTender:
    tender_id: int
    score: float
    checklist: list[dict[str, Any]] = field(default_factory=list)
    biddable: bool = True


@dataclass(frozen=True)
class BuyerSpend:
    buyer: str
    currency: str
    amount: float
    tenders: int
    without_budget: int


# What a user's activity entries show (user_activity_logs, written by streams.agents.activity_logs).
ACTIVITY_FIELDS = ("event_id", "user_id", "team_id", "action", "tender_id", "details", "occurred_at")
# What one readiness score shows (readiness_scores, written by streams.agents.readiness).
SCORE_FIELDS = ("team_id", "tender_id", "score", "biddable", "checklist", "tender_status", "rules_version")


def current_scores(docs: Iterable[Mapping[str, Any]]) -> dict[int, Mapping[str, Any]]:
    """One team's score documents by tender, the current generation's only (the highest team_seq: a profile change
    writes the next generation before it deletes the older one, see READINESS_SCORES)."""
    best: dict[int, Mapping[str, Any]] = {}
    for d in docs:
        tender = int(d["tender_id"])
        held = best.get(tender)
        if held is None or score_generation(d) > score_generation(held):
            best[tender] = d
    return best


def score_generation(doc: Mapping[str, Any]) -> int:
    """A score document's generation (its team_seq); -1 for one without a usable one."""
    seq = doc.get("team_seq")
    return seq if whole(seq) else -1


_MAX_PAGE = 10_000  # the most documents one find_where returns


class CacheFirstReader:
    def __init__(self, redis: RedisSink, mongo: MongoSink, as_of: Callable[[], dt.date] | None = None) -> None:
        """`as_of`: today's date for "open" (Settings.today: the configured as-of date, else the real clock)."""
        self._redis = redis
        self._mongo = mongo
        self._as_of = as_of or (lambda: dt.datetime.now(dt.UTC).date())
        self.redis_failures = 0  # reads Redis could not answer (they fell back)

    async def close(self) -> None:
        """Close both clients (for a reader that owns them, like the read service's)."""
        await self._redis.aclose()
        await asyncio.to_thread(self._mongo.close)

    async def _cached(self, op: Callable[[], Any], what: str) -> Any:
        """Redis's answer, or None when Redis cannot answer (then the caller falls back)."""
        try:
            return await self._redis.run(op, what)
        except TransientSinkError as exc:
            self.redis_failures += 1
            log.warning("Redis could not answer %s (%s): falling back", what, exc)
            return None

    async def tender_card(self, tender_id: int) -> Read:
        """The tender's card (title, buyer, status, closing date, summary, ...) and `open` (bool) as of today. A
        tender that is not open by status has no card in Redis: its document says why (status, closed_reason)."""
        validate_id("tender_id", tender_id)
        key = self._redis.full_key(TENDER_METADATA.key(id=tender_id), "hash")

        async def read() -> dict[Any, Any]:
            return dict(await self._redis.client().hgetall(key))

        cached = await self._cached(read, f"hgetall {key}")
        as_of = self._as_of()
        if cached:
            values: dict[str, Any] = {text(k): text(v) for k, v in cached.items()}
            values["open"] = tender_open(values.get("status"), values.get("closing_at"), as_of)
            return Read(values, "redis")
        docs = await asyncio.to_thread(
            self._mongo.find_by_ids, TENDER_SUMMARIES.name, "tender_id", [tender_id], SUMMARY_FIELDS
        )
        if not docs:
            return Read(None, None)
        doc = dict(docs[0])
        doc["open"] = tender_open(doc.get("status"), doc.get("closing_at"), as_of)
        return Read(doc, "mongodb")

    async def top_tenders(self, team_id: int, k: int = 5) -> Read:
        """The team's best open tenders with their checklists: the ranking from Redis, the reasons from MongoDB."""
        validate_id("team_id", team_id)
        key = self._redis.full_key(TEAM_TOP_TENDERS.key(id=team_id), "zset")

        async def read() -> list[Any]:
            return list(await self._redis.client().zrevrange(key, 0, k - 1, withscores=True))

        ranked = [(int(text(m)), float(s)) for m, s in (await self._cached(read, f"zrevrange {key}") or [])]
        source = "redis"
        if not ranked:
            source = "mongodb"
            ranked = await asyncio.to_thread(self._stored_top, team_id, k)
        if not ranked:
            return Read([], None)
        details = await asyncio.to_thread(
            lambda: self._mongo.find_by_ids(
                READINESS_SCORES.name,
                "tender_id",
                [t for t, _ in ranked],
                ["team_id", "checklist", "biddable", "team_seq"],
                where={"team_id": team_id},  # this team's documents only, by the (team_id, tender_id) index
            )
        )
        by_tender = current_scores(d for d in details if d.get("team_id") == team_id)
        return Read(
            [
                RankedTender(
                    t,
                    s,
                    list(by_tender.get(t, {}).get("checklist", [])),
                    bool(by_tender.get(t, {}).get("biddable", True)),
                )
                for t, s in ranked
            ],
            source,
        )

    def _stored_top(self, team_id: int, k: int) -> list[tuple[int, float]]:
        """The best k open tenders from the score documents: biddable with a positive score, and open by the
        tender's status and closing date as stored (the score's own status, and the summary document's status and
        closing date), so a close that has not reached the scores yet, or a closing date that passed with no event,
        never shows. A tender with no summary document has no known closing date: left out."""
        # The best scores first, a page at a time: only as many documents as the answer needs are read (a team with
        # thousands of scores and no open tender in Redis read every one of them on every request).
        limit = max(4 * k, 64)
        while True:
            page = self._mongo.find_where(
                READINESS_SCORES.name, {"team_id": team_id}, ["tender_id", "score"], sort=("score", -1), limit=limit
            )
            all_read = len(page) < limit
            if not all_read and limit >= _MAX_PAGE:
                return self._best_open(team_id, None, k)  # a page cannot hold enough: read every document
            ids = sorted({int(d["tender_id"]) for d in page if whole(d.get("tender_id"), 1)})
            best = self._best_open(team_id, ids, k)
            numbers = [float(d["score"]) for d in page if finite(d.get("score"))]
            # A tender outside the page has no document scoring above the page's lowest: it can enter the top k
            # only when it could tie with or beat the last one.
            floor = min(numbers) if numbers else None
            if all_read or (floor is not None and (floor <= 0 or (len(best) == k and best[-1][1] > floor))):
                return best
            limit = min(limit * 4, _MAX_PAGE)

    def _best_open(self, team_id: int, tender_ids: list[int] | None, k: int) -> list[tuple[int, float]]:
        """The best k open tenders among `tender_ids` (None: all the team's), from every score document of theirs
        (the current generation of each)."""
        fields = ["tender_id", "score", "biddable", "tender_status", "team_seq"]
        if tender_ids is None:
            docs = self._mongo.find_by_ids(READINESS_SCORES.name, "team_id", [team_id], fields)
        elif not tender_ids:
            return []
        else:
            docs = self._mongo.find_by_ids(
                READINESS_SCORES.name, "tender_id", tender_ids, fields, where={"team_id": team_id}
            )
        candidates = [
            d
            for d in current_scores(docs).values()
            if d.get("biddable") is True
            and finite(d.get("score"))
            and d["score"] > 0
            and d.get("tender_status", "active") in OPEN_STATUSES
        ]
        if not candidates:
            return []
        tenders: Mapping[int, Mapping[str, Any]] = {
            int(t["tender_id"]): t
            for t in self._mongo.find_by_ids(
                TENDER_SUMMARIES.name, "tender_id", [int(d["tender_id"]) for d in candidates], ["status", "closing_at"]
            )
        }
        as_of = self._as_of()
        open_ones = [
            d
            for d in candidates
            if (t := tenders.get(int(d["tender_id"]))) is not None
            and tender_open(t.get("status"), t.get("closing_at"), as_of)
        ]
        best = sorted(open_ones, key=lambda d: (-float(d["score"]), int(d["tender_id"])))[:k]
        return [(int(d["tender_id"]), float(d["score"])) for d in best]

    async def team_score(self, team_id: int, tender_id: int) -> Read:
        """One team's readiness score for one tender, with its checklist, and whether the tender is open as of
        today (by the tender's status and closing date as stored, not by the score's own `biddable`)."""
        validate_id("team_id", team_id)
        validate_id("tender_id", tender_id)
        docs = await asyncio.to_thread(
            self._mongo.find_where,
            READINESS_SCORES.name,
            {"team_id": team_id, "tender_id": tender_id},
            SCORE_FIELDS,
            sort=("team_seq", -1),  # the current generation (see READINESS_SCORES)
            limit=1,
        )
        if not docs:
            return Read(None, None)
        doc = dict(docs[0])
        card = await asyncio.to_thread(
            self._mongo.find_by_ids, TENDER_SUMMARIES.name, "tender_id", [tender_id], ["status", "closing_at"]
        )
        tender = card[0] if card else {}
        doc["open"] = bool(
            doc.get("tender_status", "active") in OPEN_STATUSES
            and tender_open(tender.get("status"), tender.get("closing_at"), self._as_of())
        )
        return Read(doc, "mongodb")

    async def recent_activity(self, user_id: int, limit: int = 20) -> Read:
        """A user's latest activity entries, newest first (the capped log in MongoDB; Redis holds none)."""
        validate_id("user_id", user_id)
        docs = await asyncio.to_thread(
            self._mongo.find_where,
            USER_ACTIVITY_LOGS.name,
            {"user_id": user_id},
            ACTIVITY_FIELDS,
            sort=("occurred_at", -1),
            limit=limit,
        )
        return Read(docs, "mongodb" if docs else None)

    async def spend_by_buyer(self, limit: int = 10, window_days: int | None = None) -> Read:
        """Biggest buyers by spend, with tenders counted and those without a budget (counted, not summed)."""
        if window_days is None:
            zkey = self._redis.full_key(SPEND_BY_BUYER.key(), "zset")
            tkey = self._redis.full_key(SPEND_TOTALS.key(), "hash")
        else:
            zkey = self._redis.full_key(SPEND_BY_BUYER_WINDOW.key(window=f"{window_days}d"), "zset")
            tkey = self._redis.full_key(SPEND_WINDOW_TOTALS.key(window=f"{window_days}d"), "hash")

        async def read() -> tuple[list[Any], dict[Any, Any]]:
            client = self._redis.client()
            reply: Any = await client.zrevrange(zkey, 0, limit - 1, withscores=True)
            top: list[tuple[Any, float]] = list(reply)
            fields = [f"{prefix}:{text(pair[0])}" for pair in top for prefix in ("t", "w")]
            counts = dict(zip(fields, await client.hmget(tkey, fields), strict=True)) if fields else {}
            return top, counts

        top, counts = await self._redis.run(read, f"spend {zkey}")  # Redis only: its failure is the caller's
        if not top:
            # The sorted set is a read model with a shorter TTL than the exact totals it is built from (the next
            # batch or refresh rebuilds it): rank from the totals meanwhile.
            top, counts = await self._top_from_totals(tkey, limit)
        rows = []
        for raw_member, amount in top:
            member = text(raw_member)
            currency, _, buyer = member.partition("|")
            rows.append(
                BuyerSpend(
                    buyer,
                    currency,
                    float(amount),
                    int(counts.get(f"t:{member}") or 0),
                    int(counts.get(f"w:{member}") or 0),
                )
            )
        return Read(rows, "redis" if rows else None)

    async def _top_from_totals(self, tkey: str, limit: int) -> tuple[list[tuple[str, float]], dict[str, Any]]:
        async def read() -> dict[Any, Any]:
            return dict(await self._redis.client().hgetall(tkey))

        fields = {text(k): text(v) for k, v in (await self._redis.run(read, f"hgetall {tkey}")).items()}
        totals = totals_from_fields(fields)
        ranked = sorted(totals.items(), key=lambda item: (item[1].cents, item[0]), reverse=True)[:limit]
        top = [(m, t.cents / 100) for m, t in ranked]
        counts: dict[str, Any] = {}
        for m, t in ranked:
            counts[f"t:{m}"], counts[f"w:{m}"] = t.tenders, t.without_budget
        return top, counts
