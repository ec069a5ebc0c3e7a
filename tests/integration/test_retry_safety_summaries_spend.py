"""The summaries and spend agents end in the state of a clean run when any one of their store calls fails (before
the store applied it, after, or with the worker killed there) and the batch is retried as the batch runner does
(issue 10, item 1), with tender creations, updates, closes and cancellations (spend: budget and buyer changes too)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import SecretStr

from schema.settings import Settings
from streams.agents.spend import SpendHandler
from tests.integration.store_faults import assert_retry_safe, envelope
from tests.integration.test_spend_repair import AS_OF, Scratch, spend_tender
from tests.integration.test_summaries_closes import closed, summaries_handler, tender

pytestmark = pytest.mark.asyncio


def summaries_batches() -> list[list[bytes]]:
    return [
        [
            envelope(1, "tender.created", 1, tender(1)),
            envelope(2, "tender.created", 2, tender(2)),
            envelope(3, "tender.created", 3, tender(3, description="Supply of office furniture.")),
        ],
        [
            envelope(10, "tender.updated", 1, tender(1, description="Repairs to the community hall roof.")),
            envelope(11, "tender.closed", 2, closed(2, "cancelled", "budget withdrawn")),
            envelope(12, "tender.created", 4, tender(4)),
            envelope(13, "tender.closed", 4, closed(4, "complete")),
        ],
        [
            envelope(20, "tender.updated", 3, tender(3, description="Supply of office chairs.", status="cancelled")),
            envelope(21, "tender.updated", 1, tender(1, description="Repairs to the community hall roof.")),
            envelope(11, "tender.closed", 2, closed(2, "cancelled", "budget withdrawn")),  # a redelivery
        ],
    ]


async def test_summaries_reach_the_clean_state_after_a_failure_at_any_store_call(settings: Settings) -> None:
    report = await assert_retry_safe(settings, summaries_handler, summaries_batches())
    assert report.clean_calls >= 15
    assert any("lock" in c for c in report.calls) and any("unlock" in c for c in report.calls)
    docs = {d["tender_id"]: d for d in map(json.loads, report.clean_state["mongo:tender_summaries"])}
    assert {t: d["status"] for t, d in docs.items()} == {1: "active", 2: "cancelled", 3: "cancelled", 4: "complete"}
    assert [k for k in report.clean_state if k.startswith("redis:")] == ["redis:<ns>tender:1:metadata"]


def spend_batches() -> list[list[bytes]]:
    def t(seq: int, event_type: str, tender_id: int, **kw: Any) -> bytes:
        return envelope(seq, event_type, tender_id, spend_tender(tender_id, **kw))

    return [
        [
            t(1, "tender.created", 1),
            t(2, "tender.created", 2, budget="2500.00"),
            t(3, "tender.created", 3, buyer="York Council", budget="300.00"),
            t(4, "tender.created", 4, buyer="York Council", budget=None, currency=None),
            t(5, "tender.created", 5, published_at="2024-06-01T09:00:00"),  # outside the 30-day window
        ],
        [
            t(10, "tender.updated", 1, budget="1999.99"),  # a budget change
            t(11, "tender.updated", 2, buyer="Bradford Council", budget="2500.00"),  # a buyer change
            envelope(12, "tender.closed", 3, {"tender_id": 3, "status": "cancelled"}),  # leaves spend
            envelope(13, "tender.closed", 5, {"tender_id": 5, "status": "complete"}),  # stays in spend
            t(14, "tender.updated", 4, buyer="York Council", budget="45.50", currency="GBP"),  # gets a budget
        ],
        [
            t(20, "tender.updated", 1, budget="1999.99", status="cancelled"),  # cancelled through an update
            t(10, "tender.updated", 1, budget="1999.99"),  # a stale redelivery
            t(21, "tender.updated", 3, buyer="York Council", budget="300.00"),  # re-opened
        ],
    ]


async def test_spend_reaches_the_clean_state_after_a_failure_at_any_store_call(settings: Settings) -> None:
    # An empty database of the test's own: the empty store is built from it first (nothing), then the stream folds.
    scratch = Scratch(settings)
    try:
        update = {"as_of": AS_OF, "mysql_url": SecretStr(scratch.url)}
        report = await assert_retry_safe(settings.model_copy(update=update), SpendHandler, spend_batches())
    finally:
        scratch.drop()
    assert report.clean_calls >= 6
    totals = report.clean_state["redis:<ns>analytics:{spend_by_buyer}:totals"][1]
    assert {k: v for k, v in totals.items() if k.startswith("c:")} == {
        "c:GBP|Bradford Council": "250000",
        "c:GBP|Leeds City Council": "100010",
        "c:GBP|York Council": "34550",
    }


async def test_spend_rebuilt_from_mysql_reaches_the_clean_state_after_a_failure_at_any_store_call(
    settings: Settings,
) -> None:
    scratch = Scratch(settings)
    try:
        for n in (1, 2, 3):
            scratch.write(n, spend_tender(n, budget=f"{n}00.00"))
        batches = [
            # The store is empty and the stream begins with an update: the tenders come from MySQL first.
            [envelope(10, "tender.updated", 2, spend_tender(2, budget="250.00"))],
            [envelope(11, "tender.closed", 3, {"tender_id": 3, "status": "cancelled"})],
        ]
        update = {"as_of": AS_OF, "mysql_url": SecretStr(scratch.url)}
        report = await assert_retry_safe(settings.model_copy(update=update), SpendHandler, batches)
    finally:
        scratch.drop()
    assert any("snapshot" in c for c in report.calls) and any("replace" in c for c in report.calls)
    totals = report.clean_state["redis:<ns>analytics:{spend_by_buyer}:totals"][1]
    assert (totals["c:GBP|Leeds City Council"], totals["t:GBP|Leeds City Council"]) == ("35000", "2")
