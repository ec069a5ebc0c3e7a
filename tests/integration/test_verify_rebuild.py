"""`tenderhub verify` and `tenderhub rebuild` on the real stores: MySQL of the test's own (a database created and
migrated here, so other tests' tenders are not in it), topics, MongoDB database and Redis prefix of its own."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import redis
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from pymongo import MongoClient

from schema.settings import Settings
from schema.topics import TopicNames
from streams.agents.tender_summaries import TenderSummaryHandler, summariser_config
from streams.batch import Incoming
from streams.context import WorkerContext
from streams.rebuild import high_water, rebuild
from streams.replay import clear_stores
from streams.summaries.factory import load_summariser
from streams.verify import event, verify
from tenderhub.processes import PipelineEnv
from tests.integration.conftest import Source
from tests.integration.worker_harness import run_cli

HISTORY_SEQ = 1_000_000  # the source_seq of the last event "the relay published" before the rebuild


async def _publish_history(settings: Settings, seq: int) -> None:
    """One record on the tender topic as the relay would have published it (its source_seq is the clock's mark)."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        envelope = {
            "event_id": 1,
            "event_type": "heartbeat",
            "aggregate_type": "tender",
            "aggregate_id": "1",
            "occurred_at": "2025-09-01T00:00:00.000Z",
            "schema_version": 1,
            "source_seq": seq,
            "payload": {},
        }
        await producer.send_and_wait(TopicNames.from_settings(settings).data["tender"], json.dumps(envelope).encode())
    finally:
        await producer.stop()


def _families(report: Any) -> dict[str, int]:
    return {f.family: f.drift for f in report.families}


def test_rebuild_from_mysql_makes_verify_clean_and_damage_is_reported_per_family(
    source: Source, penv: PipelineEnv, mongo: MongoClient[dict[str, Any]], redis_client: redis.Redis
) -> None:
    settings = source.settings
    empty = asyncio.run(verify(settings))
    assert empty.drift > 0  # nothing derived yet: every family that has rows drifts

    asyncio.run(rebuild(settings))
    clean = asyncio.run(verify(settings))
    assert clean.drift == 0, clean.lines()
    assert {f.family: f.checked > 0 for f in clean.families} == dict.fromkeys(_families(clean), True)

    db = mongo[penv.mongo_db]
    prefix = penv.redis_prefix
    open_card = next(t for t in source.tenders if redis_client.exists(f"{prefix}tender:{t}:metadata"))
    scored = db["readiness_scores"].find_one({})
    assert scored is not None
    db["readiness_scores"].delete_one({"_id": scored["_id"]})
    field = next(
        f.decode() for f in redis_client.hkeys(f"{prefix}analytics:{{spend_by_buyer}}:totals") if f[:2] == b"c:"
    )
    redis_client.hset(f"{prefix}analytics:{{spend_by_buyer}}:totals", field, "12345")  # a changed total (cents)
    member = field.removeprefix("c:")
    with source.engine.begin() as conn:  # closed in MySQL; its card stays behind
        conn.execute(sa.text("UPDATE tenders SET status = 'cancelled' WHERE id = :id"), {"id": open_card})
    gone = source.tenders[-1]
    db["tender_summaries"].delete_one({"tender_id": gone})

    result = run_cli(penv, "verify", "--json", "--examples", "3", **source.env)
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    fams = report["families"]
    assert fams["readiness"]["drift"] >= 1
    assert any(f"tender {scored['tender_id']}: no score" in e for e in fams["readiness"]["examples"])
    assert fams["spend"]["drift"] >= 1 and any(f"totals {member}:" in e for e in fams["spend"]["examples"])
    assert any(f"tender {open_card}: card for a tender that is cancelled" in e for e in fams["cards"]["examples"])
    assert any(f"tender {gone}: no summary document" in e for e in fams["summaries"]["examples"])
    assert fams["activity"]["drift"] == 0
    human = run_cli(penv, "verify", "--family", "cards", **source.env)
    assert human.returncode == 1 and "card for a tender that is cancelled" in human.stdout
    bad = run_cli(penv, "verify", "--family", "nonsense", **source.env)
    assert bad.returncode == 2


def test_rebuild_after_wiping_hands_over_to_the_stream(
    source: Source, penv: PipelineEnv, mongo: MongoClient[dict[str, Any]]
) -> None:
    settings = source.settings
    asyncio.run(_publish_history(settings, HISTORY_SEQ))
    assert asyncio.run(high_water(settings)) == HISTORY_SEQ
    asyncio.run(rebuild(settings))
    clear_stores(settings)
    assert asyncio.run(verify(settings)).drift > 0
    report = asyncio.run(rebuild(settings))
    assert report.version == HISTORY_SEQ
    assert asyncio.run(verify(settings)).drift == 0

    db = mongo[penv.mongo_db]
    tid = source.tenders[0]
    with source.engine.connect() as conn:
        row = dict(conn.execute(sa.text("SELECT * FROM tenders WHERE id = :id"), {"id": tid}).one()._mapping)
    from streams.verify import tender_payload

    def send(seq: int, title: str) -> None:
        async def go() -> None:
            ctx = WorkerContext(settings)
            handler = TenderSummaryHandler(ctx, load_summariser(summariser_config(settings)))
            try:
                e = event(
                    "tender.updated",
                    tid,
                    tender_payload(row) | {"title": title},
                    event_id=9,
                    source_seq=seq,
                    at="2025-09-02T00:00:00.000Z",
                )
                await handler([Incoming(e, "t", 0, 0)])
            finally:
                await handler.aclose()
                await ctx.aclose()

        asyncio.run(go())

    send(HISTORY_SEQ - 5, "a stale title from before the rebuild")
    doc = db["tender_summaries"].find_one({"tender_id": tid})
    assert doc is not None and doc["title"] == row["title"] and doc["source_seq"] == HISTORY_SEQ
    send(HISTORY_SEQ + 1, "a newer title")
    doc = db["tender_summaries"].find_one({"tender_id": tid})
    assert doc is not None and doc["title"] == "a newer title" and doc["source_seq"] == HISTORY_SEQ + 1
