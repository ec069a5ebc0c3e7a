"""Row -> record mapping: the envelope on the aggregate's topic, or a DLQ record that says why."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

from cdc.envelope import OutboxRow, to_record
from cdc.position import source_seq
from schema.events import AGGREGATE_TYPES, Envelope
from schema.topics import TopicNames

TOPICS = TopicNames({a: f"tenderhub.{a}" for a in AGGREGATE_TYPES}, "tenderhub.dlq", "tenderhub.relay.position")

CREATED = dt.datetime(2025, 9, 18, 10, 0, 0, 123000)


def row(**kw: object) -> OutboxRow:
    base: dict[str, object] = {
        "id": 41,
        "event_type": "user.activity",
        "aggregate_type": "activity",
        "aggregate_id": "7",
        "schema_version": 1,
        "payload": json.dumps({"user_id": 7, "team_id": 2, "action": "tender.viewed", "tender_id": 9}),
        "created_at": CREATED,
        "txn_seq": 560,
        "row_index": 3,
        "source_seq": source_seq(560, 3),
    }
    base.update(kw)
    return OutboxRow(**base)  # type: ignore[arg-type]


def test_valid_row_becomes_envelope_on_aggregate_topic() -> None:
    rec = to_record(row(), TOPICS)
    assert rec.topic == "tenderhub.activity" and rec.key == b"7" and rec.dlq_reason is None
    env = json.loads(rec.value)
    assert env == {
        "event_id": 41,
        "event_type": "user.activity",
        "aggregate_type": "activity",
        "aggregate_id": "7",
        "occurred_at": "2025-09-18T10:00:00.123Z",
        "schema_version": 1,
        "source_seq": source_seq(560, 3),
        "payload": {"user_id": 7, "team_id": 2, "action": "tender.viewed", "tender_id": 9},
    }
    assert Envelope.from_json(rec.value).payload["tender_id"] == 9
    headers = dict(rec.headers)
    assert headers["event_id"] == b"41" and headers["event_type"] == b"user.activity"
    assert headers["source_seq"] == str(source_seq(560, 3)).encode()


def test_contract_violation_goes_to_dlq_with_reason_and_original_row() -> None:
    rec = to_record(row(event_type="user.exploded"), TOPICS)
    assert rec.topic == "tenderhub.dlq" and rec.dlq_reason is not None
    body = json.loads(rec.value)
    assert "unknown event type" in body["reason"]
    assert body["row"]["payload"] == row().payload and body["event_id"] == 41


def test_oversized_event_is_recorded_by_id_size_hash_and_sample() -> None:
    big = json.dumps({"user_id": 7, "team_id": 2, "action": "x", "details": {"blob": "y" * 5000}})
    rec = to_record(row(payload=big), TOPICS, max_bytes=4096)
    body = json.loads(rec.value)
    assert rec.topic == "tenderhub.dlq" and body["reason"] == "oversized"
    full = to_record(row(payload=big), TOPICS).value
    assert body["size"] == len(full) and body["sha256"] == hashlib.sha256(full).hexdigest()
    assert len(body["sample"]) == 2048 and body["event_id"] == 41
