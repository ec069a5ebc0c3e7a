"""The summaries agent against the real MongoDB and Redis: every event applied in order (the stores end the same
whatever the batching), closes and cancellations reach `tender_summaries` and take the card away (issue 10, item 6)."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterator
from typing import Any

import pytest

from schema.settings import Settings
from streams.agents.tender_summaries import TenderSummaryHandler
from streams.context import WorkerContext
from streams.summaries.extractive import ExtractiveSummariser
from tests.integration.store_faults import FaultPlan, Namespace, envelope, run_batches, snapshot

pytestmark = pytest.mark.asyncio


def tender(tender_id: int, **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "tender_id": tender_id,
        "ocid": f"ocds-sum-{tender_id}",
        "title": f"Construction of a community hall {tender_id}",
        "description": "Construction of a community hall. The contractor must hold a CIDB grading of 4GB or higher.",
        "buyer": "City of Tshwane",
        "province": "Gauteng",
        "closing_at": "2025-10-20T10:00:00",
    }
    return base | kw


def closed(tender_id: int, status: str, reason: str | None = None) -> dict[str, Any]:
    return {"tender_id": tender_id, "status": status, "reason": reason}


def summaries_handler(ctx: WorkerContext) -> TenderSummaryHandler:
    return TenderSummaryHandler(ctx, ExtractiveSummariser(sentences=2), lock_lease_s=1.0)


def events() -> list[bytes]:
    """Creations, title changes, a close, a cancellation through an update and one through tender.closed, a close
    arriving right after the creation, and a re-opening."""
    return [
        envelope(1, "tender.created", 1, tender(1)),
        envelope(2, "tender.created", 2, tender(2)),
        envelope(3, "tender.closed", 2, closed(2, "cancelled", "budget withdrawn")),
        envelope(4, "tender.updated", 1, tender(1, title="Community hall, phase 2")),
        envelope(5, "tender.created", 3, tender(3, description="Supply of office furniture.")),
        envelope(6, "tender.updated", 3, tender(3, description="Supply of office furniture.", status="cancelled")),
        envelope(7, "tender.closed", 1, closed(1, "complete")),
        envelope(8, "tender.created", 4, tender(4)),
        envelope(9, "tender.updated", 4, tender(4, description="Repairs to the community hall roof.")),
        envelope(10, "tender.updated", 3, tender(3, description="Supply of office chairs.")),
    ]


@pytest.fixture
def namespace(settings: Settings) -> Iterator[Namespace]:
    ns = Namespace.fresh(settings, "sum:")
    yield ns
    ns.drop()


def _docs(state: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {d["tender_id"]: d for d in map(json.loads, state["mongo:tender_summaries"])}


async def test_a_close_in_the_batch_of_the_creation_reaches_mongodb_and_leaves_no_card(namespace: Namespace) -> None:
    batch = [
        envelope(1, "tender.created", 5, tender(5)),
        envelope(2, "tender.updated", 5, tender(5, title="New title")),
        envelope(3, "tender.closed", 5, closed(5, "cancelled", "budget withdrawn")),
    ]
    dead = await run_batches(namespace.settings, FaultPlan(), summaries_handler, [batch])
    assert dead.event_ids() == []
    state = snapshot(namespace.settings)
    doc = _docs(state)[5]
    assert (doc["title"], doc["status"], doc["closed_reason"], doc["source_seq"]) == (
        "New title",
        "cancelled",
        "budget withdrawn",
        3,
    )
    assert doc["summary"] and doc["closing_at"].startswith("2025-10-20")
    assert "redis:<ns>tender:5:metadata" not in state


async def test_the_stores_end_the_same_for_any_batching(settings: Settings) -> None:
    stream = events()
    rng = random.Random(10)
    batchings = [[stream], [[e] for e in stream]]
    for _ in range(3):
        cuts = sorted(rng.sample(range(1, len(stream)), rng.randint(2, 5)))
        bounds = [0, *cuts, len(stream)]
        batchings.append([stream[a:b] for a, b in itertools.pairwise(bounds)])
    # A redelivery: the first half again after everything, as a worker sees it after a crash.
    batchings.append([stream, stream[:5]])
    states = []
    for batches in batchings:
        ns = Namespace.fresh(settings, "sumb:")
        try:
            await run_batches(ns.settings, FaultPlan(), summaries_handler, batches)
            states.append(snapshot(ns.settings))
        finally:
            ns.drop()
    assert all(s == states[0] for s in states[1:])
    docs = _docs(states[0])
    assert {t: (d["status"], d["source_seq"]) for t, d in docs.items()} == {
        1: ("complete", 7),
        2: ("cancelled", 3),
        3: ("active", 10),
        4: ("active", 9),
    }
    assert docs[1]["title"] == "Community hall, phase 2"
    assert sorted(k for k in states[0] if k.startswith("redis:")) == [
        "redis:<ns>tender:3:metadata",
        "redis:<ns>tender:4:metadata",
    ]
    card = states[0]["redis:<ns>tender:3:metadata"]
    assert card[1]["status"] == "active" and card[1]["source_seq"] == "10" and "chairs" in card[1]["summary"]
