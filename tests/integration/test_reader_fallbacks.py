"""The cache-first reader's MongoDB fallbacks never show a closed, cancelled or expired tender as open (issue 10,
item 6): tender cards carry `open` from the status and closing date as stored, and a fallback top list filters the
score documents by them instead of trusting `biddable`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import MongoClient

from schema.mongo import READINESS_SCORES
from schema.settings import Settings
from sinks.mongo import MongoSink
from sinks.reader import CacheFirstReader
from sinks.redis import RedisSink
from tests.integration.store_faults import FaultPlan, Namespace, envelope, run_batches
from tests.integration.test_summaries_closes import closed, summaries_handler, tender

pytestmark = pytest.mark.asyncio

AS_OF = dt.date(2025, 9, 25)


@pytest.fixture
def namespace(settings: Settings) -> Iterator[Namespace]:
    ns = Namespace.fresh(settings.model_copy(update={"as_of": AS_OF}), "rd:")
    yield ns
    ns.drop()


async def _tenders(ns: Namespace) -> None:
    batches = [
        [
            envelope(1, "tender.created", 1, tender(1)),
            envelope(2, "tender.created", 2, tender(2)),
            envelope(3, "tender.created", 3, tender(3, closing_at="2025-09-01T10:00:00")),
            envelope(4, "tender.created", 4, tender(4)),
            envelope(5, "tender.created", 6, tender(6, closing_at="2025-09-25T15:00:00")),
        ],
        [
            envelope(10, "tender.closed", 2, closed(2, "complete")),
            envelope(11, "tender.updated", 4, tender(4, status="cancelled")),
        ],
    ]
    assert (await run_batches(ns.settings, FaultPlan(), summaries_handler, batches)).event_ids() == []


def _reader(ns: Namespace) -> tuple[CacheFirstReader, RedisSink, MongoSink]:
    redis = RedisSink.from_settings(ns.settings, key_prefix=ns.settings.redis_key_prefix)
    mongo = MongoSink.from_settings(ns.settings)
    return CacheFirstReader(redis, mongo, as_of=ns.settings.today), redis, mongo


async def test_tender_card_fallback_shows_closed_cancelled_and_expired_tenders_as_not_open(
    namespace: Namespace,
) -> None:
    await _tenders(namespace)
    reader, redis, mongo = _reader(namespace)
    try:
        cards = {t: await reader.tender_card(t) for t in (1, 2, 3, 4, 6)}
        assert {t: (r.source, r.value["status"], r.value["open"]) for t, r in cards.items()} == {
            1: ("redis", "active", True),
            2: ("mongodb", "complete", False),  # closed: no card any more, the document says so
            3: ("redis", "active", False),  # its closing date passed with no event
            4: ("mongodb", "cancelled", False),
            6: ("redis", "active", False),  # closes on the as-of day itself: not open for bids, as readiness says
        }
        # The card expired: the fallback reads the same answer from MongoDB.
        await redis.client().delete(redis.full_key("tender:1:metadata", "hash"))
        fallback = await reader.tender_card(1)
        assert (fallback.source, fallback.value["status"], fallback.value["open"]) == ("mongodb", "active", True)
        assert fallback.value["title"] == "Construction of a community hall 1" and fallback.value["summary"]
    finally:
        await redis.aclose()
        mongo.close()


async def test_fallback_top_list_leaves_out_tenders_closed_by_status_or_date_even_if_scores_say_biddable(
    namespace: Namespace,
) -> None:
    await _tenders(namespace)
    # Score documents as a readiness agent that has not seen the closes yet left them: all biddable.
    with MongoClient(namespace.settings.mongo_url.get_secret_value()) as client:
        scores = client[namespace.settings.mongo_db][READINESS_SCORES.name]
        docs: list[dict[str, Any]] = [
            {"team_id": 9, "tender_id": t, "score": 90.0 - t, "biddable": True, "checklist": [{"name": "cidb"}]}
            for t in (1, 2, 3, 4, 5, 6)  # 5 has no summary document: its closing date is unknown
        ]
        docs.append({"team_id": 9, "tender_id": 7, "score": 95.0, "biddable": True, "tender_status": "withdrawn"})
        docs.append({"team_id": 9, "tender_id": 8, "score": 80.0, "biddable": False})
        scores.insert_many(docs)
    reader, redis, mongo = _reader(namespace)
    try:
        top = await reader.top_tenders(9, k=5)
        assert top.source == "mongodb"
        assert [(r.tender_id, r.score) for r in top.value] == [(1, 89.0)]
        assert top.value[0].checklist == [{"name": "cidb"}]
    finally:
        await redis.aclose()
        mongo.close()


async def test_reads_take_a_teams_current_generation_while_the_older_one_is_still_stored(
    namespace: Namespace,
) -> None:
    """Between a profile change's inserts and its delete of the older generation a pair has two score documents:
    the score read, the fallback top list and its checklists all take the highest team_seq."""
    await _tenders(namespace)
    with MongoClient(namespace.settings.mongo_url.get_secret_value()) as client:
        scores = client[namespace.settings.mongo_db][READINESS_SCORES.name]
        older = [
            {
                "team_id": 9,
                "tender_id": t,
                "team_seq": 5,
                "score": 70.0,
                "biddable": True,
                "checklist": [{"name": "old"}],
            }
            for t in (1, 6)
        ]
        newer = [
            {
                "team_id": 9,
                "tender_id": 1,
                "team_seq": 8,
                "score": 40.0,
                "biddable": True,
                "checklist": [{"name": "new"}],
            },
            {"team_id": 9, "tender_id": 6, "team_seq": 8, "score": 0.0, "biddable": False, "checklist": []},
        ]
        # Storage order must not decide: the newer generation first for one tender, last for the other.
        scores.insert_many([newer[0], *older, newer[1]])
    reader, redis, mongo = _reader(namespace)
    try:
        one = await reader.team_score(9, 1)
        assert (one.value["score"], one.value["checklist"]) == (40.0, [{"name": "new"}])
        assert (await reader.team_score(9, 6)).value["biddable"] is False
        top = await reader.top_tenders(9, k=5)
        assert top.source == "mongodb"
        assert [(r.tender_id, r.score, r.checklist) for r in top.value] == [(1, 40.0, [{"name": "new"}])]
    finally:
        await redis.aclose()
        mongo.close()
