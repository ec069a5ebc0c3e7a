"""The relay applies the contract's 64-bit bound to the event id (the outbox column is BIGINT UNSIGNED): a row past
it goes to the relay's DLQ instead of reaching consumers that would refuse it."""

from __future__ import annotations

import json

from cdc.envelope import to_record
from schema.events import MAX_ID
from tests.unit.cdc.test_envelope import TOPICS, row


def test_an_outbox_id_past_signed_64_bits_goes_to_the_dlq_with_the_reason() -> None:
    rec = to_record(row(id=MAX_ID + 1), TOPICS)
    assert rec.topic == "tenderhub.dlq" and rec.dlq_reason == f"event id {MAX_ID + 1} is past 2^63-1"
    assert json.loads(rec.value)["row"]["id"] == MAX_ID + 1


def test_the_largest_signed_64_bit_outbox_id_is_published() -> None:
    rec = to_record(row(id=MAX_ID), TOPICS)
    assert rec.topic == "tenderhub.activity" and json.loads(rec.value)["event_id"] == MAX_ID


def test_a_payload_id_past_signed_64_bits_goes_to_the_dlq() -> None:
    payload = json.dumps({"user_id": MAX_ID + 1, "team_id": 2, "action": "tender.viewed"})
    rec = to_record(row(aggregate_id=str(MAX_ID + 1), payload=payload), TOPICS)
    assert rec.topic == "tenderhub.dlq" and "aggregate_id" in (rec.dlq_reason or "")
