"""The event contract rejects unknown types and versions, wrong types, missing ids and id mismatches."""

from __future__ import annotations

import json

import pytest

from schema.events import (
    EVENT_TYPES,
    ContractError,
    Envelope,
    TenderClosedV1,
    TenderV1,
    decode_event,
    envelope_of,
    validate_payload,
)

TENDER = {
    "tender_id": 12,
    "ocid": "ocds-9t57fa-165050",
    "title": "Supply of water meters",
    "status": "active",
    "budget": "125000.50",
    "currency": "ZAR",
    "closing_at": "2025-10-01T11:00:00",
}


def test_valid_tender_event_parses() -> None:
    payload = validate_payload("tender.created", 1, "tender", "12", json.dumps(TENDER))
    assert isinstance(payload, TenderV1) and payload.tender_id == 12 and payload.currency == "ZAR"


@pytest.mark.parametrize(
    ("event_type", "version", "agg", "agg_id", "payload", "reason"),
    [
        ("tender.deleted2", 1, "tender", "12", TENDER, "unknown event type"),
        ("tender.created", 9, "tender", "12", TENDER, "unknown schema_version 9"),
        ("tender.created", 1, "company", "12", TENDER, "belongs to aggregate 'tender'"),
        ("tender.created", 1, "tender", "", TENDER, "aggregate_id"),
        ("tender.created", 1, "tender", "12", {**TENDER, "tender_id": "12"}, "tender_id"),
        ("tender.created", 1, "tender", "12", {k: v for k, v in TENDER.items() if k != "ocid"}, "ocid"),
        ("tender.created", 1, "tender", "13", TENDER, "does not match aggregate_id 13"),
        ("tender.created", 1, "tender", "12", {**TENDER, "currency": "rand"}, "currency"),
        ("user.activity", 1, "activity", "3", {"user_id": 3, "team_id": 1, "action": "DROP TABLE"}, "action"),
    ],
)
def test_contract_violations_say_why(
    event_type: str, version: int, agg: str, agg_id: str, payload: dict[str, object], reason: str
) -> None:
    with pytest.raises(ContractError) as err:
        validate_payload(event_type, version, agg, agg_id, json.dumps(payload))
    assert reason in err.value.reason


def test_invalid_json_is_a_contract_error() -> None:
    with pytest.raises(ContractError):
        validate_payload("tender.created", 1, "tender", "12", "{not json")


def test_required_event_types_are_declared() -> None:
    assert {"tender.created", "tender.updated", "tender.closed", "company.updated", "user.activity"} <= set(EVENT_TYPES)


def test_envelope_round_trips() -> None:
    fields = {"event_id": 1, "event_type": "tender.closed", "aggregate_type": "tender", "aggregate_id": "12"}
    fields |= {"occurred_at": "2025-09-18T10:00:00.123Z", "schema_version": 1, "source_seq": 77}
    env = envelope_of(fields | {"payload": {"tender_id": 12, "status": "complete"}})
    assert isinstance(env, Envelope) and isinstance(env.payload, TenderClosedV1)
    assert decode_event(env.to_json()) == env
    with pytest.raises(ContractError, match="envelope lacks"):
        decode_event(b'{"event_id": 1}')
