"""The agents as the worker wires them (`build_pipeline`): events handed straight to each agent's batch runner, one
batch per event in order, as the worker's consumer would hand them (no Kafka), handled against the real MongoDB and
Redis."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from pymongo import MongoClient

from schema.settings import Settings
from streams.app import build_pipeline
from streams.batch import BatchRunner
from tenderhub.processes import PipelineEnv

pytestmark = pytest.mark.asyncio


def envelope(event_id: int, event_type: str, aggregate: str, aggregate_id: int, payload: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "event_id": event_id,
            "event_type": event_type,
            "aggregate_type": aggregate,
            "aggregate_id": str(aggregate_id),
            "occurred_at": "2025-01-20T10:00:00.000",
            "schema_version": 1,
            "source_seq": event_id * 1000,
            "payload": payload,
        }
    ).encode()


@dataclass
class _Record:
    key: bytes
    value: bytes
    topic: str
    partition: int
    offset: int

    @property
    def message(self) -> _Record:
        return self


class _Feed:
    """Puts events into an agent's runner in order, each as its own batch, while the test goes on."""

    def __init__(self, runner: BatchRunner) -> None:
        self._runner = runner
        self._queue: asyncio.Queue[_Record | None] = asyncio.Queue()
        self._offset = 0
        self._task = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        while (record := await self._queue.get()) is not None:
            await self._runner.process([record])

    async def put(self, value: bytes, key: bytes) -> None:
        self._offset += 1
        await self._queue.put(_Record(key, value, "t.data", 0, self._offset))

    async def close(self) -> None:
        await self._queue.put(None)
        await self._task


@asynccontextmanager
async def fed(runner: BatchRunner) -> AsyncIterator[_Feed]:
    feed = _Feed(runner)
    try:
        yield feed
    finally:
        await feed.close()


async def until(check: Any, timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("not reached")
        await asyncio.sleep(0.05)


def _settings(penv: PipelineEnv) -> Settings:
    return penv.settings(as_of="2025-01-23")


async def test_activity_wrapper_logs_each_event_once(penv: PipelineEnv, mongo: MongoClient[dict[str, Any]]) -> None:
    pipeline = build_pipeline(_settings(penv), agents=["activity_logs"])
    from schema.mongo import ensure_collections

    ensure_collections(mongo[penv.mongo_db], pipeline.ctx.settings)
    runner = pipeline.runners["activity_logs"]
    async with fed(pipeline.runners["activity_logs"]) as agent:
        for n in (1, 2, 2, 3):  # event 2 twice: a redelivery
            payload = {"user_id": 4, "team_id": 1, "action": "tender.viewed", "details": {"n": n}}
            await agent.put(envelope(n, "user.activity", "activity", 4, payload), key=b"4")
        await until(lambda: runner.stats.events >= 4)
    await pipeline.ctx.aclose()
    assert sorted(d["_id"] for d in mongo[penv.mongo_db]["user_activity_logs"].find({})) == [1, 2, 3]


async def test_spend_wrapper_keeps_totals_exact_under_a_budget_change(penv: PipelineEnv, settings: Settings) -> None:
    from pydantic import SecretStr

    from tests.integration.test_spend_repair import Scratch

    # An empty database of the test's own: the empty store is built from it (nothing), then the stream folds.
    scratch = Scratch(settings)
    try:
        await _spend_wrapper_keeps_totals_exact(penv.settings(as_of="2025-01-23", mysql_url=SecretStr(scratch.url)))
    finally:
        scratch.drop()


async def _spend_wrapper_keeps_totals_exact(settings: Settings) -> None:
    pipeline = build_pipeline(settings, agents=["spend"])
    runner = pipeline.runners["spend"]

    def tender(budget: str, buyer: str = "Leeds City Council") -> dict[str, Any]:
        return {
            "tender_id": 9,
            "ocid": "ocds-b5fd17-x",
            "title": "Road resurfacing",
            "buyer": buyer,
            "budget": budget,
            "currency": "GBP",
            "published_at": "2025-01-10T09:00:00",
        }

    async with fed(pipeline.runners["spend"]) as agent:
        await agent.put(envelope(1, "tender.created", "tender", 9, tender("1000.10")), key=b"9")
        await agent.put(envelope(2, "tender.updated", "tender", 9, tender("2500.00")), key=b"9")
        await agent.put(envelope(1, "tender.created", "tender", 9, tender("1000.10")), key=b"9")  # stale redelivery
        await agent.put(envelope(3, "tender.updated", "tender", 9, tender("2500.00", "York Council")), key=b"9")
        await until(lambda: runner.stats.events >= 4)
        totals = await pipeline.ctx.spend.read_totals(window=False)
        window = await pipeline.ctx.spend.read_totals(window=True)
    await pipeline.ctx.aclose()
    assert {m: (t.cents, t.tenders, t.without_budget) for m, t in totals.items()} == {
        "GBP|York Council": (250000, 1, 0)
    }
    assert {m: (t.cents, t.tenders) for m, t in window.items()} == {"GBP|York Council": (250000, 1)}


async def test_nightly_recompute_replaces_the_sorted_sets_with_the_mysql_figures(
    penv: PipelineEnv, engine: Any
) -> None:
    import sqlalchemy as sa

    from streams.agents.spend import recompute_from_mysql
    from streams.spend import recompute, recompute_window, totals_in_cents, zset_from_cents
    from tests.integration.test_worker_spend import uk_rows, write_tenders

    write_tenders(engine, uk_rows(penv.uid)[:12])  # tenders with budgets, so the figures cannot be empty
    settings = _settings(penv)
    pipeline = build_pipeline(settings, agents=["spend"])
    ctx = pipeline.ctx
    try:
        # A stale figure in the read model, as if an event had been lost: the recompute must replace it.
        await ctx.redis.replace_zset("analytics:{spend_by_buyer}", {"GBP|Nobody": 1.0}, 60)
        report = await recompute_from_mysql(ctx)
        with ctx.engine.connect() as conn:
            rows = [
                dict(r._mapping)
                for r in conn.execute(sa.text("SELECT id, buyer, currency, budget, status, published_at FROM tenders"))
            ]
        client = ctx.redis.client()
        got = {m.decode(): s for m, s in await client.zrange(ctx.spend.zset_key, 0, -1, withscores=True)}
        window = {m.decode(): s for m, s in await client.zrange(ctx.spend.window_zset_key, 0, -1, withscores=True)}
        assert report.replaced and report.rebuilt_state  # no stream state yet under this prefix: rebuilt from rows
        assert got == zset_from_cents(totals_in_cents(recompute(rows)))
        assert window == zset_from_cents(totals_in_cents(recompute_window(rows, settings.today(), 30)))
        assert "GBP|Nobody" not in got and any(score > 0 for score in got.values())
        assert 0 < await client.ttl(ctx.spend.zset_key) <= 24 * 3600
    finally:
        await ctx.aclose()


async def test_readiness_sweep_drops_tenders_whose_closing_date_passed(penv: PipelineEnv) -> None:
    import datetime as dt

    from schema.events import TenderV1
    from streams.agents.readiness import ReadinessHandler, fold_tender_facts

    pipeline = build_pipeline(penv.settings(as_of="2025-09-25"), agents=["readiness"])
    ctx = pipeline.ctx
    handler = ReadinessHandler(ctx)
    try:
        company = {
            "team_id": 7,
            "company_id": 70,
            "company_name": "Sweep Test Civils",
            "sectors": ["Construction"],
            "provinces": ["Gauteng"],
            "experience_years": 5,
            "bbbee_level": 1,
            "cidb": [],
            "event_id": 1,
        }
        await handler.companies.put_if_newer({"7": (10, json.dumps(company))})
        tenders = {}
        for i, closes in enumerate(["2025-09-30T10:00:00", "2025-10-20T10:00:00"], start=1):
            payload = TenderV1.model_validate_json(
                json.dumps(
                    {
                        "tender_id": i,
                        "ocid": f"ocds-sweep-{i}",
                        "title": f"Construction of a community hall {i}",
                        "province": "Gauteng",
                        "category": "Construction",
                        "closing_at": closes,
                    }
                )
            )
            tenders[str(i)] = (100 + i, json.dumps(fold_tender_facts(None, payload) | {"event_id": 100 + i}))
        await handler.tenders.put_if_newer(tenders)
        await handler.rescore({}, {7: 1})
        key = ctx.redis.full_key("team:{7}:top_tenders", "zset")
        assert {m.decode() for m in await ctx.redis.client().zrange(key, 0, -1)} == {"1", "2"}
        # Time passes: tender 1 closes, with no event to say so.
        ctx.settings = ctx.settings.model_copy(update={"as_of": dt.date(2025, 10, 1)})
        assert await handler.sweep() == 1
        assert [m.decode() for m in await ctx.redis.client().zrange(key, 0, -1)] == ["2"]
    finally:
        await ctx.aclose()


async def test_summary_wrapper_with_a_tiny_bart_through_the_real_loading_path(penv: PipelineEnv, tmp_path: Any) -> None:
    from devtools.tiny_bart import build_bart, ocds_texts
    from tenderhub.loader import SAMPLE_TENDERS

    model_dir = build_bart(tmp_path / "tiny-bart", ocds_texts(SAMPLE_TENDERS, limit=200))
    settings = penv.settings(
        summary_backend="transformers", summary_model=str(model_dir), summary_num_beams=1, summary_max_tokens=32
    )
    pipeline = build_pipeline(settings, agents=["tender_summaries"])
    runner = pipeline.runners["tender_summaries"]
    long_text = " ".join(["The contractor shall maintain the pump stations and report monthly."] * 60)
    payload = {
        "tender_id": 11,
        "ocid": "ocds-9t57fa-tiny",
        "title": "Maintenance of pump stations",
        "description": long_text,
        "buyer": "City of Tshwane",
        "closing_at": "2025-10-10T09:00:00",
    }
    async with fed(pipeline.runners["tender_summaries"]) as agent:
        await agent.put(envelope(1, "tender.created", "tender", 11, payload), key=b"11")
        await until(lambda: runner.stats.events >= 1, timeout=60)
        card = await pipeline.ctx.redis.client().hgetall(pipeline.ctx.redis.full_key("tender:11:metadata", "hash"))
    docs = await pipeline.ctx.mongo.find_by_ids(
        "tender_summaries", "tender_id", [11], ["model_used", "summary", "content_hash"]
    )
    await pipeline.ctx.aclose()
    assert runner.stats.dead_letters == 0
    assert docs and docs[0]["model_used"].startswith("transformers") and docs[0]["summary"]
    assert card[b"summary"].decode() == docs[0]["summary"]


async def test_a_held_summary_lock_makes_the_batch_wait_not_skip(penv: PipelineEnv) -> None:
    pipeline = build_pipeline(_settings(penv), agents=["tender_summaries"])
    runner = pipeline.runners["tender_summaries"]
    client = pipeline.ctx.redis.client()
    lock = pipeline.ctx.redis.full_key("lock:summary:12", "string")
    await client.set(lock, "another-worker", ex=60)
    payload = {"tender_id": 12, "ocid": "ocds-lock", "title": "Supply of diesel", "buyer": "Theewaterskloof"}
    async with fed(pipeline.runners["tender_summaries"]) as agent:
        await agent.put(envelope(1, "tender.created", "tender", 12, payload), key=b"12")
        await until(lambda: runner.stats.store_retries >= 1)
        assert runner.stats.events == 0  # still waiting, not skipped, not dead-lettered
        await client.delete(lock)
        await until(lambda: runner.stats.events >= 1, timeout=30)
    card = await client.hgetall(pipeline.ctx.redis.full_key("tender:12:metadata", "hash"))
    await pipeline.ctx.aclose()
    assert card[b"title"] == b"Supply of diesel" and runner.stats.dead_letters == 0
    assert not await client.exists(lock)
