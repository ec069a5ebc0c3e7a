"""The summaries and spend agents end in the state of a clean run when any one of their store calls fails (before
the store applied it, after, or with the worker killed there) and the batch is retried as the batch runner does
(issue 10, item 1), with tender creations, updates, closes and cancellations (spend: budget and buyer changes too)."""

from __future__ import annotations

import json

import pytest

from schema.settings import Settings
from tests.integration.store_faults import assert_retry_safe, envelope
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
