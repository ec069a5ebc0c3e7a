"""The Faust wrappers under `agent.test_context()`: events put straight into each agent (no Kafka), handled by the
real batch runner against the real MongoDB and Redis."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from pymongo import MongoClient

from schema.settings import Settings
from streams.app import build_pipeline
from tests.integration.worker_harness import PipelineEnv

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
    async with pipeline.agents["activity_logs"].test_context() as agent:
        for n in (1, 2, 2, 3):  # event 2 twice: a redelivery
            payload = {"user_id": 4, "team_id": 1, "action": "tender.viewed", "details": {"n": n}}
            await agent.put(envelope(n, "user.activity", "activity", 4, payload), key=b"4")
        await until(lambda: runner.stats.events >= 4)
    await pipeline.ctx.aclose()
    assert sorted(d["_id"] for d in mongo[penv.mongo_db]["user_activity_logs"].find({})) == [1, 2, 3]


async def test_spend_wrapper_keeps_totals_exact_under_a_budget_change(penv: PipelineEnv) -> None:
    pipeline = build_pipeline(_settings(penv), agents=["spend"])
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

    async with pipeline.agents["spend"].test_context() as agent:
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
