"""Defects the bad-input corpus found outside its own files, each as the failing test the fix must turn green."""

from __future__ import annotations

import datetime as dt

from cdc.envelope import to_record
from cdc.source import outbox_row_from_values
from schema.settings import load_settings
from schema.topics import TopicNames


def test_outbox_row_with_schema_version_zero_is_dead_lettered_not_published_as_version_one() -> None:
    # Corpus case unknown-version-0, outbox way: `int(v.get("schema_version") or 1)` reads 0 as 1, so the relay
    # published the row as a v1 event and the activity log stored it.
    values = {
        "id": 7,
        "event_type": "user.activity",
        "aggregate_type": "activity",
        "aggregate_id": "3",
        "schema_version": 0,
        "payload": '{"user_id":3,"team_id":1,"action":"tender.viewed"}',
        "created_at": dt.datetime(2026, 1, 5, 10),
    }
    row = outbox_row_from_values(values, txn_seq=1, idx=0, seq=1 << 20)
    assert row.schema_version == 0
    record = to_record(row, TopicNames.from_settings(load_settings()))
    assert record.dlq_reason == "unknown schema_version 0 for user.activity"
