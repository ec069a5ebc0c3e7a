"""Cache-first reads for the product: Redis first, MongoDB when the cache has nothing (expired or not built yet).

Readers never write the cache back: every Redis key family has one owning agent, and a reader's write-back of a
value it read from MongoDB could land after the owner deleted the key (a closed tender's card would come back).
The owner rebuilds the key on its next event or sweep; until then reads fall back to MongoDB.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from schema.mongo import READINESS_SCORES, TENDER_SUMMARIES
from schema.redis_keys import (
    SPEND_BY_BUYER,
    SPEND_BY_BUYER_WINDOW,
    SPEND_TOTALS,
    SPEND_WINDOW_TOTALS,
    TEAM_TOP_TENDERS,
    TENDER_METADATA,
)
from sinks.mongo import MongoSink, validate_id
from sinks.redis import RedisSink, text


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


class CacheFirstReader:
    def __init__(self, redis: RedisSink, mongo: MongoSink) -> None:
        self._redis = redis
        self._mongo = mongo

    async def tender_card(self, tender_id: int) -> Read:
        validate_id("tender_id", tender_id)
        key = self._redis.full_key(TENDER_METADATA.key(id=tender_id), "hash")

        async def read() -> dict[Any, Any]:
            return dict(await self._redis.client().hgetall(key))

        cached = await self._redis.run(read, f"hgetall {key}")
        if cached:
            return Read({text(k): text(v) for k, v in cached.items()}, "redis")
        docs = await asyncio.to_thread(
            self._mongo.find_by_ids,
            TENDER_SUMMARIES.name,
            "tender_id",
            [tender_id],
            ["summary", "title", "buyer", "status", "model_used"],
        )
        return Read(docs[0], "mongodb") if docs else Read(None, None)

    async def top_tenders(self, team_id: int, k: int = 5) -> Read:
        """The team's best open tenders with their checklists: the ranking from Redis, the reasons from MongoDB."""
        validate_id("team_id", team_id)
        key = self._redis.full_key(TEAM_TOP_TENDERS.key(id=team_id), "zset")

        async def read() -> list[Any]:
            return list(await self._redis.client().zrevrange(key, 0, k - 1, withscores=True))

        ranked = [(int(text(m)), float(s)) for m, s in await self._redis.run(read, f"zrevrange {key}")]
        source = "redis"
        if not ranked:
            source = "mongodb"
            docs = await asyncio.to_thread(
                self._mongo.find_by_ids, READINESS_SCORES.name, "team_id", [team_id], ["tender_id", "score", "biddable"]
            )
            best = sorted(
                (d for d in docs if d.get("biddable") and d.get("score", 0) > 0),
                key=lambda d: (-d["score"], d["tender_id"]),
            )[:k]
            ranked = [(int(d["tender_id"]), float(d["score"])) for d in best]
        if not ranked:
            return Read([], None)
        details = await asyncio.to_thread(
            self._mongo.find_by_ids,
            READINESS_SCORES.name,
            "tender_id",
            [t for t, _ in ranked],
            ["team_id", "checklist", "biddable"],
        )
        by_tender = {int(d["tender_id"]): d for d in details if d.get("team_id") == team_id}
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

        top, counts = await self._redis.run(read, f"spend {zkey}")
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
