"""Pure cores of the activity-log and tender-summary agents."""

from __future__ import annotations

import datetime as dt
import json

from schema.events import TenderV1, decode_event
from streams.agents.activity_logs import log_document
from streams.agents.tender_summaries import metadata, summary_input


def test_log_document_is_keyed_by_event_id_and_deterministic() -> None:
    raw = json.dumps(
        {
            "event_id": 41,
            "event_type": "user.activity",
            "aggregate_type": "activity",
            "aggregate_id": "8",
            "occurred_at": "2026-01-05T10:00:00.123+02:00",
            "schema_version": 1,
            "source_seq": 99,
            "payload": {"user_id": 8, "team_id": 2, "action": "tender.saved", "tender_id": 17, "details": {"a": 1}},
        }
    )
    doc = log_document(decode_event(raw))
    assert doc == {
        "_id": 41,
        "event_id": 41,
        "source_seq": 99,
        "user_id": 8,
        "team_id": 2,
        "action": "tender.saved",
        "tender_id": 17,
        "details": {"a": 1},
        "occurred_at": dt.datetime(2026, 1, 5, 8, 0, 0, 123000),
    }
    assert log_document(decode_event(raw)) == doc


def test_summary_input_and_card_from_a_real_etenders_tender() -> None:
    payload = TenderV1.model_validate_json(
        json.dumps(
            {
                "tender_id": 5,
                "ocid": "ocds-9t57fa-132162",
                "title": "Provision of security services for East London District for a period of 36 months",
                "tender_number": "SCMU8 - 25/26 - 0082",
                "buyer": "Eastern Cape - Agriculture",
                "category": "Services: Functional (Including Cleaning and Security Services)",
                "province": "Eastern Cape",
                "closing_at": "2025-10-13T09:00:00",
                "special_conditions": "PSIRA Registration\nBargaining Council Registration",
                "briefing_compulsory": True,
                "briefing_at": "2025-09-29T09:00:00",
                "briefing_venue": "94 Fitzpatrick Road",
            }
        )
    )
    text = summary_input(payload).text()
    assert "security services" in text and "Eastern Cape - Agriculture" in text and "PSIRA" in text
    assert "94 Fitzpatrick Road" in text
    card = metadata(payload, "A summary.", "extractive")
    assert card["title"] == payload.title and card["summary"] == "A summary." and card["status"] == "active"
    assert card["closing_at"] == "2025-10-13T09:00:00"
    assert "published_at" not in card  # empty fields are left out
