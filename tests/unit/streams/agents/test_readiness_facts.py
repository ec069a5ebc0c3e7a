"""Readiness facts are checked before they are stored, poison facts already stored are skipped (never a crash), and
a closed or cancelled tender's score documents are not biddable (issue 10, items 2 and 6)."""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

import pytest

from sinks.redis_versioned import HashSnapshot, Versioned
from streams.agents.readiness import (
    FactsCache,
    _Entry,
    check_company_facts,
    check_tender_facts,
    score_document,
)
from streams.readiness.scoring import FactsError, company_facts_from_payload, score, tender_facts_from_payload

AS_OF = dt.datetime(2025, 9, 25, 23, 59, 59, tzinfo=dt.UTC)


def tender(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "tender_id": 3,
        "title": "Construction of a guardhouse",
        "description": None,
        "category": "Construction",
        "province": "Gauteng",
        "closing_at": "2025-10-13T09:00:00",
        "buyer": "City of Tshwane",
        "special_conditions": "CIDB grading of 3GB or higher",
        "status": "active",
        "event_id": 17,
    }
    return base | kw


def company(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "team_id": 7,
        "company_id": 70,
        "company_name": "Guardhouse Builders",
        "sectors": ["Construction"],
        "provinces": ["Gauteng"],
        "experience_years": 5,
        "bbbee_level": 1,
        "cidb": [{"class_of_works": "GB", "grade": 4, "potentially_emerging": False}],
        "event_id": 18,
    }
    return base | kw


def test_usable_facts_pass_the_checks() -> None:
    assert check_tender_facts(tender(), AS_OF).tender_id == 3
    assert check_company_facts(company(), AS_OF).team_id == 7


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tender_id": 2**63}, "tender_id must be a positive integer"),
        ({"tender_id": 10**19 + 7}, "tender_id must be a positive integer"),
        ({"tender_id": "TND-3"}, "tender_id must be an integer"),
        ({"closing_at": "0001-01-01T00:00:00"}, "closing_at 0001-01-01T00:00:00 is outside 1900-2199"),
        ({"closing_at": "0001-01-01T00:00:00+02:00"}, "closing_at 0001-01-01T00:00:00\\+02:00 is outside"),
        ({"closing_at": "9999-12-31T23:59:59"}, "closing_at 9999-12-31T23:59:59 is outside"),
        ({"closing_at": "9999-12-31T23:59:59-05:00"}, "is outside 1900-2199"),
        ({"event_id": None}, "event_id must be a positive 64-bit integer"),
        ({"event_id": 2**63}, "event_id must be a positive 64-bit integer"),
        ({"status": 5}, "status must be a non-empty string"),
    ],
)
def test_tender_facts_the_rules_cannot_use_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(FactsError, match=message):
        check_tender_facts(tender(**changes), AS_OF)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"company_id": 2**63}, "company_id must be a positive integer"),
        ({"team_id": 2**64 + 1}, "team_id must be a positive integer"),
        ({"provinces": ["Atlantis"]}, "unknown province"),
        ({"event_id": "18"}, "event_id must be a positive 64-bit integer"),
    ],
)
def test_company_facts_the_rules_cannot_use_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(FactsError, match=message):
        check_company_facts(company(**changes), AS_OF)


def test_facts_at_the_edges_of_the_allowed_range_still_score() -> None:
    for closing in ("1900-01-01T00:00:00", "2199-12-31T23:59:59+02:00"):
        facts = check_tender_facts(tender(closing_at=closing), AS_OF)
        score(facts, company_facts_from_payload(company()), AS_OF)
    check_company_facts(company(team_id=2**63 - 1, company_id=2**63 - 1), AS_OF)


def _snapshot(entries: dict[str, tuple[int, Any]], unreadable: dict[str, str] | None = None) -> HashSnapshot:
    return HashSnapshot(
        {f: Versioned(v, value if isinstance(value, str) else json.dumps(value)) for f, (v, value) in entries.items()},
        len(entries),
        unreadable or {},
    )


def test_stored_poison_facts_are_skipped_logged_once_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    cache = FactsCache("tender", lambda v: check_tender_facts(v, AS_OF))
    stored = {
        "3": (10, tender()),
        "4": (11, tender(tender_id=4, closing_at="9999-12-31T23:59:59")),  # stored by an older version
        str(2**63 + 5): (12, tender(tender_id=2**63 + 5)),
        "6": (13, "{not json"),
        "7": (14, tender(tender_id=8)),  # field and facts disagree
    }
    with caplog.at_level(logging.WARNING, logger="streams.agents.readiness"):
        entries = cache.sync(_snapshot(stored, {"9": "stored value 'x' is not 'version|value'"}))
        assert sorted(entries) == [3] and cache.poison == 5
        warned = len(caplog.records)
        again = cache.sync(_snapshot(stored, {"9": "stored value 'x' is not 'version|value'"}))
    assert warned == 5 and len(caplog.records) == 5  # a poison value is reported once, not at every rescore
    assert again[3] is entries[3]  # parsed once while unchanged
    # A newer usable version replaces the poison: it is used and no longer counted.
    fixed = stored | {"4": (20, tender(tender_id=4))}
    assert sorted(cache.sync(_snapshot(fixed))) == [3, 4] and cache.poison == 3


def _entry(version: int, value: dict[str, Any], parse: Any) -> _Entry:
    return _Entry(version, json.dumps(value), parse(value), value)


@pytest.mark.parametrize("status", ["cancelled", "complete", "unsuccessful", "withdrawn"])
def test_a_closed_or_cancelled_tender_scores_zero_and_is_not_biddable(status: str) -> None:
    open_tender = _entry(30, tender(status=status, event_id=30), tender_facts_from_payload)
    team = _entry(20, company(event_id=20), company_facts_from_payload)
    result = score(open_tender.facts, team.facts, AS_OF)
    assert result.biddable and result.score > 0  # the rules alone would let the team bid
    doc = score_document(result, open_tender, team)
    assert doc.fields["biddable"] is False and doc.fields["score"] == 0.0
    assert doc.fields["blocked_by"][-1] == "status" and doc.fields["tender_status"] == status
    # The team's profile version is its generation, part of the key; the tender's is the guarded version.
    assert doc.key == {"team_id": team.facts.team_id, "tender_id": open_tender.facts.tender_id, "team_seq": 20}
    assert doc.versions == {"tender_seq": 30} and doc.event_id == 30


def test_an_open_tender_keeps_the_rules_verdict() -> None:
    open_tender = _entry(30, tender(event_id=30), tender_facts_from_payload)
    team = _entry(40, company(event_id=41), company_facts_from_payload)
    result = score(open_tender.facts, team.facts, AS_OF)
    doc = score_document(result, open_tender, team)
    assert doc.fields["biddable"] is result.biddable and doc.fields["score"] == result.score
    assert doc.fields["tender_status"] == "active" and doc.event_id == 41  # the newer input's event


def test_a_nul_in_any_text_of_a_tender_or_profile_never_makes_a_document_the_store_refuses() -> None:
    # A NUL the contract lets through (FerretDB's PostgreSQL storage cannot hold one) was quoted by the checklist:
    # the company's facts were stored, then every tender event's batch was refused for that team's document.
    from schema.events import CompanyUpdatedV1, TenderV1
    from sinks.mongo import validate_versioned
    from streams.agents.readiness import company_facts_value, fold_tender_facts

    nul = "\x00"
    profile = company(
        company_name=f"Guard{nul}house", sectors=[f"Construction{nul}", f"Clean{nul}ing"], provinces=[f"Gau{nul}teng"]
    )
    payload = CompanyUpdatedV1.model_validate_json(json.dumps({k: v for k, v in profile.items() if k != "event_id"}))
    company_value = company_facts_value(payload) | {"event_id": 18}
    texts = {k: f"{v}{nul} 5CE{nul}" for k, v in tender().items() if k in ("title", "category", "buyer")}
    tender_payload = TenderV1.model_validate_json(
        json.dumps(
            {
                "ocid": "ocds-x",
                **{k: v for k, v in tender().items() if k not in ("event_id", "status", "description")},
                **texts,
                "description": f"Construction{nul} of a guardhouse, {nul}3 years{nul} experience",
                "special_conditions": f"CIDB grading of 3GB{nul} or higher; B-BBEE{nul} level 2",
            }
        )
    )
    tender_value = fold_tender_facts(None, tender_payload) | {"event_id": 17}
    t = _Entry(5, "", check_tender_facts(tender_value, AS_OF), tender_value)
    c = _Entry(6, "", check_company_facts(company_value, AS_OF), company_value)
    doc = score_document(score(t.facts, c.facts, AS_OF), t, c)
    validate_versioned([doc])
    assert nul not in json.dumps([tender_value, company_value, doc.fields])
