"""The summaries agent's pure core: every tender event applied in order over the stored version, so the stored
document and card never depend on where the batches were cut, on duplicates or on redeliveries; closes and
cancellations reach the document and take the card away."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import random
from collections.abc import Sequence
from typing import Any

from schema.events import Envelope, TenderV1, decode_event
from sinks.mongo import VersionedDoc
from streams.agents.tender_summaries import (
    card,
    document,
    fold_events,
    metadata,
    stored_datetime,
    summary_input,
)
from streams.summaries.base import content_hash

MODEL = "extractive:test"


def full(seq: int, tender_id: int, event_type: str = "tender.updated", **payload: Any) -> Envelope[Any]:
    base = {
        "tender_id": tender_id,
        "ocid": f"ocds-{tender_id}",
        "title": f"Tender {tender_id}",
        "description": f"Supply and delivery of goods for tender {tender_id}.",
        "buyer": "City of Tshwane",
        "status": "active",
        "closing_at": "2025-10-20T10:00:00",
    }
    return _event(seq, event_type, tender_id, base | payload)


def closed(seq: int, tender_id: int, status: str = "complete", reason: str | None = None) -> Envelope[Any]:
    return _event(seq, "tender.closed", tender_id, {"tender_id": tender_id, "status": status, "reason": reason})


def _event(seq: int, event_type: str, tender_id: int, payload: dict[str, Any]) -> Envelope[Any]:
    return decode_event(
        json.dumps(
            {
                "event_id": seq + 1000,
                "event_type": event_type,
                "aggregate_type": "tender",
                "aggregate_id": str(tender_id),
                "occurred_at": "2025-09-20T10:00:00.000",
                "schema_version": 1,
                "source_seq": seq,
                "payload": payload,
            }
        )
    )


class Stores:
    """MongoDB's version-guarded $set upsert and the card rule, in memory: what the handler writes, per batch."""

    def __init__(self) -> None:
        self.docs: dict[int, dict[str, Any]] = {}
        self.summarised = 0

    def summarise(self, text: str) -> str:
        self.summarised += 1
        return "S:" + hashlib.sha256(text.encode()).hexdigest()[:12]

    def write(self, doc: VersionedDoc) -> None:
        tender_id = int(doc.key["tender_id"])
        stored = self.docs.get(tender_id)
        if stored is not None and stored["source_seq"] > doc.versions["source_seq"]:
            return
        self.docs[tender_id] = (stored or dict(doc.key)) | doc.fields | doc.versions | {"event_id": doc.event_id}

    def batch(self, events: Sequence[Envelope[Any]]) -> None:
        changes = fold_events({t: d["source_seq"] for t, d in self.docs.items()}, events)
        for change in changes.values():
            summary, hash_ = "", ""
            if change.full is not None:
                text = summary_input(change.full).text()
                hash_ = content_hash(text, MODEL)
                before = self.docs.get(change.tender_id, {})
                summary = before["summary"] if before.get("content_hash") == hash_ else self.summarise(text)
            self.write(document(change, summary, MODEL, hash_))

    def cards(self) -> dict[int, dict[str, str] | None]:
        return {t: card(d) for t, d in self.docs.items()}


def run(events: Sequence[Envelope[Any]], cuts: Sequence[int]) -> Stores:
    stores = Stores()
    bounds = [0, *sorted(set(cuts)), len(events)]
    for start, end in itertools.pairwise(bounds):
        if end > start:
            stores.batch(events[start:end])
    return stores


def history(rng: random.Random, tenders: int = 4, length: int = 30) -> list[Envelope[Any]]:
    """One partition's events in commit order: created, updates (new titles, cancellations through an update,
    re-openings), closes; then redelivered stretches of it (duplicates, stale events) spliced in."""
    events: list[Envelope[Any]] = []
    created: set[int] = set()
    for seq in range(1, length + 1):
        tender_id = rng.randint(1, tenders)
        kind = rng.random()
        if tender_id not in created:
            created.add(tender_id)
            events.append(full(seq, tender_id, "tender.created", title=f"Tender {tender_id} v{seq}"))
        elif kind < 0.5:
            status = rng.choice(["active", "active", "cancelled", "planned"])
            events.append(full(seq, tender_id, title=f"Tender {tender_id} v{seq}", status=status))
        else:
            events.append(closed(seq, tender_id, rng.choice(["complete", "cancelled", "unsuccessful"]), f"r{seq}"))
    delivered = list(events)
    for _ in range(rng.randint(0, 3)):
        start = rng.randrange(len(events))
        at = rng.randrange(start, len(delivered) + 1)
        delivered[at:at] = events[start : start + rng.randint(1, 6)]
    return delivered


def test_any_batching_with_duplicates_and_redeliveries_ends_in_the_one_event_at_a_time_state() -> None:
    rng = random.Random(20251204)
    for _ in range(300):
        events = history(rng)
        reference = run(events, range(len(events)))  # one event per batch
        for cuts in ([], *[rng.sample(range(1, len(events)), rng.randint(1, 8)) for _ in range(5)]):
            got = run(events, cuts)
            assert got.docs == reference.docs, cuts
            assert got.cards() == reference.cards()


def test_a_close_in_the_same_batch_as_the_creation_still_writes_the_document_closed() -> None:
    stores = run([full(1, 7, "tender.created"), closed(2, 7, "cancelled", "budget withdrawn")], [])
    doc = stores.docs[7]
    assert doc["title"] == "Tender 7" and doc["summary"].startswith("S:")
    assert (doc["status"], doc["closed_reason"], doc["source_seq"], doc["event_id"]) == (
        "cancelled",
        "budget withdrawn",
        2,
        1002,
    )
    assert stores.cards() == {7: None}


def test_an_update_then_a_close_keeps_the_updated_title() -> None:
    events = [full(1, 7, "tender.created"), full(2, 7, title="New title"), closed(3, 7)]
    for cuts in ([], [1], [2], [1, 2]):
        doc = run(events, cuts).docs[7]
        assert (doc["title"], doc["status"], doc["source_seq"]) == ("New title", "complete", 3)


def test_a_close_alone_sets_the_status_and_keeps_the_rest_of_the_stored_document() -> None:
    stores = run([full(1, 7, "tender.created")], [])
    before = dict(stores.docs[7])
    stores.batch([closed(5, 7, "complete")])
    after = stores.docs[7]
    assert {k: v for k, v in after.items() if k not in ("status", "closed_reason", "source_seq", "event_id")} == {
        k: v for k, v in before.items() if k not in ("status", "closed_reason", "source_seq", "event_id")
    }
    assert (after["status"], after["source_seq"]) == ("complete", 5)


def test_a_stale_full_event_before_a_newer_close_never_brings_an_old_title_back() -> None:
    stores = run([full(1, 7, "tender.created", title="Old"), full(5, 7, title="New")], [])
    stores.batch([full(1, 7, "tender.created", title="Old"), closed(6, 7)])  # a redelivered event, then a close
    assert (stores.docs[7]["title"], stores.docs[7]["status"]) == ("New", "complete")


def test_a_cancellation_through_an_update_takes_the_card_away_and_a_reopening_brings_it_back() -> None:
    stores = run([full(1, 7, "tender.created")], [])
    assert stores.cards()[7] is not None
    stores.batch([full(2, 7, status="cancelled")])
    assert stores.docs[7]["status"] == "cancelled" and stores.cards()[7] is None
    stores.batch([full(3, 7, status="active")])
    assert stores.docs[7]["closed_reason"] is None and stores.cards()[7] is not None


def test_unchanged_text_is_summarised_once() -> None:
    stores = run([full(1, 7, "tender.created"), full(2, 7), full(3, 7, status="planned")], [1, 2])
    assert stores.summarised == 1


def test_the_card_is_built_from_the_document_as_stored() -> None:
    payload = TenderV1.model_validate_json(
        json.dumps(
            {
                "tender_id": 3,
                "ocid": "o",
                "title": "T",
                "closing_at": "2025-10-13T09:00:00.123456+02:00",
                "published_at": "2025-09-01T08:00:00",
            }
        )
    )
    values = metadata(payload, "A summary.", MODEL)
    # Naive UTC with whole milliseconds, as MongoDB returns it: the card rebuilt from the stored document is equal.
    assert values["closing_at"] == "2025-10-13T07:00:00.123000"
    assert stored_datetime(dt.datetime(2025, 1, 1, 0, 0, 0, 999999)) == dt.datetime(2025, 1, 1, 0, 0, 0, 999000)
    assert values["published_at"] == "2025-09-01T08:00:00" and values["status"] == "active"


def test_a_nul_in_a_close_reason_is_not_stored_and_never_loses_the_close() -> None:
    from sinks.mongo import validate_versioned

    # Alone (the stored document is older) and in the batch of the creation: both documents must be storable.
    for events in ([closed(2, 7, "cancelled", "budget\x00cut")], [full(1, 7), closed(2, 7, "cancelled", "a\x00b")]):
        changes = fold_events({7: 1} if len(events) == 1 else {}, events)
        doc = document(changes[7], "S: x", "extractive", "h")
        validate_versioned([doc])
        assert doc.fields["closed_reason"] in ("budgetcut", "ab") and doc.fields["status"] == "cancelled"
