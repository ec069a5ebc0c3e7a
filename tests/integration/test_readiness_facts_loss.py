"""Readiness facts lost whole (a Redis restarted without persistence, a FLUSHALL, every key expired): the agent finds
its facts hashes without their marker while scores exist, refills them from MySQL, and ends with the scores and top
lists of a run that lost nothing (before, it scored on from the tenders seen since the loss: a changed team's top
list held only those, and its documents for every other tender were retired)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis as sync_redis
import sqlalchemy as sa
from pydantic import SecretStr
from pymongo import MongoClient

from schema.engines import mysql_engine
from schema.mysql import BUSINESS_TABLES, OUTBOX_TABLE
from schema.settings import Settings
from streams.agents.readiness import ReadinessHandler
from tenderhub.companies import load_companies, read_profiles
from tenderhub.loader import read_releases, tender_row, upsert_tender
from tests.integration.store_faults import FaultPlan, Namespace, envelope, run_batches
from tests.integration.test_spend_repair import Scratch

pytestmark = pytest.mark.asyncio

AS_OF = dt.date(2025, 9, 25)


class ScratchDatabase(Scratch):
    """A MySQL database of the test's own with the application's tables, written the application's way."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, tables=(*BUSINESS_TABLES, OUTBOX_TABLE))
        self.engine = mysql_engine(SecretStr(self.url))
        self.seen = 0

    def new_events(self) -> list[bytes]:
        """The outbox rows appended since the last call, as the relay publishes them (source_seq = outbox id)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT id, event_type, aggregate_id, payload FROM integration_outbox WHERE id > :n ORDER BY id"
                ),
                {"n": self.seen},
            ).all()
        self.seen = max([self.seen, *(int(r.id) for r in rows)])
        return [envelope(int(r.id), r.event_type, int(r.aggregate_id), json.loads(r.payload)) for r in rows]

    def drop(self) -> None:
        self.engine.dispose()
        super().drop()


@pytest.fixture
def scratch(settings: Settings) -> Iterator[ScratchDatabase]:
    db = ScratchDatabase(settings)
    yield db
    db.drop()


def _write_tenders(scratch: ScratchDatabase, releases: list[dict[str, Any]]) -> None:
    for release in releases:
        with scratch.engine.begin() as conn:
            upsert_tender(conn, tender_row(release))


def _state(ns: Namespace) -> tuple[dict[tuple[int, int], tuple[float, bool]], dict[str, list[str]]]:
    """The current score of every pair (the highest team_seq) and every team's top list members."""
    with MongoClient(ns.settings.mongo_url.get_secret_value(), serverSelectionTimeoutMS=5000) as client:
        docs = list(client[ns.settings.mongo_db]["readiness_scores"].find({}, {"_id": 0}))
    current: dict[tuple[int, int], dict[str, Any]] = {}
    for d in docs:
        pair = (d["team_id"], d["tender_id"])
        if pair not in current or d["team_seq"] > current[pair]["team_seq"]:
            current[pair] = d
    scores = {pair: (d["score"], d["biddable"]) for pair, d in current.items()}
    r = sync_redis.Redis.from_url(ns.settings.redis_url.get_secret_value(), socket_timeout=5)
    try:
        prefix = ns.settings.redis_key_prefix
        tops = {
            key.decode().removeprefix(prefix): [m.decode() for m in r.zrange(key, 0, -1)]
            for key in r.scan_iter(match=f"{prefix}team:*:top_tenders", count=1000)
        }
    finally:
        r.close()
    return scores, tops


def _lose_redis(ns: Namespace) -> None:
    r = sync_redis.Redis.from_url(ns.settings.redis_url.get_secret_value(), socket_timeout=5)
    try:
        keys = list(r.scan_iter(match=f"{ns.settings.redis_key_prefix}*", count=1000))
        assert any(k.endswith(b"readiness:tenders") for k in keys)
        r.delete(*keys)
    finally:
        r.close()


async def test_facts_lost_with_the_redis_data_are_refilled_from_mysql(
    settings: Settings, scratch: ScratchDatabase
) -> None:
    releases = list(read_releases(limit=12))
    profiles = read_profiles()
    # The first batch: most tenders and every company; the second: one more tender and a changed profile.
    _write_tenders(scratch, releases[:11])
    load_companies(scratch.engine, profiles)
    first = scratch.new_events()
    _write_tenders(scratch, releases[11:])
    changed = dataclasses.replace(profiles[0], experience_years=(profiles[0].experience_years or 0) + 7)
    load_companies(scratch.engine, [changed])
    second = scratch.new_events()
    assert len(first) == 11 + len(profiles) and len(second) == 2

    update = {"as_of": AS_OF, "mysql_url": SecretStr(scratch.url)}
    clean, lossy = Namespace.fresh(settings, "clean:"), Namespace.fresh(settings, "lossy:")
    try:
        for ns in (clean, lossy):
            ns.settings = ns.settings.model_copy(update=update)
        assert (await run_batches(clean.settings, FaultPlan(), ReadinessHandler, [first, second])).event_ids() == []
        assert (await run_batches(lossy.settings, FaultPlan(), ReadinessHandler, [first])).event_ids() == []
        _lose_redis(lossy)
        assert (await run_batches(lossy.settings, FaultPlan(), ReadinessHandler, [second])).event_ids() == []
        want_scores, want_tops = _state(clean)
        got_scores, got_tops = _state(lossy)
        assert len(want_scores) == 12 * len(profiles) and any(want_tops.values())
        assert got_scores == want_scores
        # A list the second batch did not touch is gone with the rest of Redis, as an expired one (readers fall back
        # to the scores); every list written after the loss is the whole one, the changed team's included.
        assert got_tops and {key: want_tops.get(key) for key in got_tops} == got_tops
        changed_list = "team:{1}:top_tenders"  # the first profile's team, the one that changed
        assert want_tops.get(changed_list) and changed_list in got_tops
    finally:
        clean.drop()
        lossy.drop()
