"""The one decoder of raw Kafka values: every way a value can break the contract is a ContractError with a reason."""

from __future__ import annotations

import json
from typing import Any

import pytest

from schema.events import ContractError, UserActivityV1, decode_event


def envelope(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": 7,
        "event_type": "user.activity",
        "aggregate_type": "activity",
        "aggregate_id": "5",
        "occurred_at": "2026-01-05T10:00:00.000",
        "schema_version": 1,
        "source_seq": 123 << 24,
        "payload": {"user_id": 5, "team_id": 1, "action": "tender.viewed"},
    }
    return base | overrides


def test_valid_envelope_decodes_to_typed_record_and_payload() -> None:
    event = decode_event(json.dumps(envelope()).encode())
    assert event.event_id == 7 and event.source_seq == 123 << 24 and event.aggregate_id == "5"
    assert isinstance(event.payload, UserActivityV1) and event.payload.action == "tender.viewed"
    assert event.to_json() == json.dumps(envelope(), separators=(",", ":")).encode()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "empty value"),
        (b"{not json", "value is not JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (json.dumps({"event_id": 1}).encode(), "envelope lacks"),
        (json.dumps(envelope(event_id="7")).encode(), "event_id must be a non-negative 64-bit integer"),
        (json.dumps(envelope(source_seq=-1)).encode(), "source_seq must be a non-negative 64-bit integer"),
        (json.dumps(envelope(event_id=True)).encode(), "event_id must be a non-negative 64-bit integer"),
        (json.dumps(envelope(aggregate_id=5)).encode(), "aggregate_id must be a string"),
        (json.dumps(envelope(payload=[1])).encode(), "payload must be a JSON object"),
        (json.dumps(envelope(event_type="user.deleted")).encode(), "unknown event type"),
        (json.dumps(envelope(schema_version=9)).encode(), "unknown schema_version 9"),
        (json.dumps(envelope(payload={"user_id": 5, "team_id": "1", "action": "x"})).encode(), "team_id"),
        (json.dumps(envelope(aggregate_id="6")).encode(), "does not match aggregate_id"),
        (b"\xff\xfe", "value is not JSON"),
    ],
)
def test_broken_values_raise_contract_error_with_reason(raw: bytes | None, reason: str) -> None:
    with pytest.raises(ContractError) as info:
        decode_event(raw)
    assert reason in info.value.reason


def _with_details(details_json: bytes) -> bytes:
    """A valid envelope whose payload carries `details_json` verbatim (JSON no encoder would write)."""
    head = json.dumps(envelope()).encode()
    assert head.endswith(b"}}")
    return head[:-2] + b', "details": ' + details_json + b"}}"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "nests too deeply"),
        (b"[" * 100_000 + b"]" * 100_000, "nests too deeply"),
        (_with_details(b"[" * 400 + b"]" * 400), "nests too deeply"),
        (b'{"event_id": ' + b"9" * 5000 + b"}", "value is not JSON"),
        (json.dumps(envelope(event_id=2**63)).encode(), "event_id must be a non-negative 64-bit integer"),
        (json.dumps(envelope(source_seq=10**30)).encode(), "source_seq must be a non-negative 64-bit integer"),
        (_with_details(b'{"x": NaN}'), "value is not JSON: NaN"),
        (_with_details(b'{"x": -Infinity}'), "value is not JSON: -Infinity"),
        (json.dumps(envelope(occurred_at="\ud800")).encode(), "occurred_at must be an ISO 8601 time"),
        (json.dumps(envelope(occurred_at="yesterday")).encode(), "occurred_at must be an ISO 8601 time"),
        (b'"just a string"', "must be a JSON object, got str"),
        (b"\xc3\x28", "value is not JSON"),
    ],
    ids=[
        "nested-objects",
        "nested-arrays",
        "nested-payload",
        "huge-number",
        "event-id-past-int64",
        "source-seq-past-int64",
        "nan",
        "infinity",
        "lone-surrogate",
        "not-a-time",
        "non-object",
        "bad-utf8",
    ],
)
def test_hostile_values_raise_contract_error_never_anything_else(raw: bytes, reason: str) -> None:
    with pytest.raises(ContractError) as info:
        decode_event(raw)
    assert reason in info.value.reason
    assert len(info.value.reason) <= 500, "a reason quoting the whole value would bloat every dead letter"


def test_largest_allowed_ids_and_times_with_offsets_still_decode() -> None:
    raw = json.dumps(envelope(event_id=2**63 - 1, source_seq=2**63 - 1, occurred_at="2026-01-05T10:00:00.123Z"))
    event = decode_event(raw.encode())
    assert event.event_id == 2**63 - 1 and event.source_seq == 2**63 - 1
