"""Tender and company payloads: good ones become facts; bad ones raise a ValueError that names the field."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from streams.readiness.cidb import CidbGrading
from streams.readiness.reference import ReadinessError
from streams.readiness.scoring import (
    CompanyFacts,
    FactsError,
    TenderFacts,
    company_facts_from_payload,
    tender_facts_from_payload,
)

COMPANY: dict[str, Any] = {
    "team_id": 3,
    "company_id": 30,
    "sectors": ["Security services"],
    "provinces": ["KZN", "Gauteng Province"],
    "experience_years": 8,
    "bbbee_level": 1,
    "cidb": [{"class_of_works": "GB", "grade": 4, "potentially_emerging": True}],
}


def test_facts_errors_are_value_errors() -> None:
    assert issubclass(FactsError, ReadinessError)
    assert issubclass(FactsError, ValueError)


def test_a_tender_payload_needs_only_its_id() -> None:
    facts = tender_facts_from_payload({"tender_id": 42})
    assert facts == TenderFacts(tender_id=42)
    assert (facts.title, facts.cidb, facts.closing_at, facts.scope.known) == ("", (), None, False)


def test_tender_payload_reads_every_field_and_ignores_unknown_ones() -> None:
    facts = tender_facts_from_payload(
        {
            "tender_id": "ocds-9t57fa-148252",
            "title": "Upgrading of pegasus canal",
            "description": "Civil works",
            "category": "Civil engineering",
            "province": "Gauteng",
            "closing_at": "2026-03-20T00:00:00Z",
            "buyer": "City of Tshwane",
            "special_conditions": "CIDB grading: 7CE or higher",
            "budget": None,
            "schema_extra": {"x": 1},
        }
    )
    assert facts.tender_id == "ocds-9t57fa-148252"
    assert facts.closing_at == dt.datetime(2026, 3, 20, tzinfo=dt.UTC)
    assert facts.buyer == "City of Tshwane"
    assert [r.label for r in facts.cidb] == ["7CE"]


def test_naive_closing_at_is_taken_as_utc() -> None:
    facts = tender_facts_from_payload({"tender_id": 1, "closing_at": "2026-03-20T09:00:00"})
    assert facts.closing_at == dt.datetime(2026, 3, 20, 9, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({}, "tender payload has no tender_id"),
        ({"tender_id": None}, "tender payload has no tender_id"),
        ({"tender_id": True}, "tender_id must be a positive integer or a non-empty string, got True"),
        ({"tender_id": 0}, "tender_id must be a positive integer or a non-empty string"),
        ({"tender_id": ""}, "tender_id must be a positive integer or a non-empty string"),
        ({"tender_id": 1.5}, "tender_id must be a positive integer or a non-empty string, got 1.5"),
        ({"tender_id": 1, "title": 12}, "title must be a string, got 12"),
        ({"tender_id": 1, "province": ["GP"]}, r"province must be a string or null, got \['GP'\]"),
        ({"tender_id": 1, "special_conditions": 3}, "special_conditions must be a string or null"),
        ({"tender_id": 1, "closing_at": "next Friday"}, "closing_at is not an ISO 8601 date-time: 'next Friday'"),
        ({"tender_id": 1, "closing_at": 1767225600}, "closing_at must be an ISO 8601 string or null, got int"),
    ],
)
def test_bad_tender_payloads_name_the_field(payload: dict[str, Any], message: str) -> None:
    with pytest.raises(FactsError, match=message):
        tender_facts_from_payload(payload)


def test_a_tender_payload_must_be_an_object() -> None:
    with pytest.raises(FactsError, match="tender payload must be an object, got list"):
        tender_facts_from_payload([("tender_id", 1)])  # type: ignore[arg-type]


def test_company_payload_becomes_facts() -> None:
    facts = company_facts_from_payload(COMPANY)
    assert facts == CompanyFacts(
        team_id=3,
        company_id=30,
        sectors=("Security services",),
        provinces=("KZN", "Gauteng Province"),
        experience_years=8,
        bbbee_level=1,
        gradings=(CidbGrading("GB", 4, True),),
    )
    assert facts.covered == {"KwaZulu-Natal", "Gauteng"}
    assert [p.label for p in facts.profiles] == ["Security services"]


def test_company_payload_with_only_ids_is_an_empty_profile() -> None:
    facts = company_facts_from_payload({"team_id": 1, "company_id": 2})
    assert (facts.sectors, facts.provinces, facts.gradings, facts.bbbee_level) == ((), (), (), None)


def test_class_of_works_is_read_case_insensitively() -> None:
    facts = company_facts_from_payload({**COMPANY, "cidb": [{"class_of_works": " ce ", "grade": 6}]})
    assert facts.gradings == (CidbGrading("CE", 6, False),)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"team_id": None}, "team_id must be a positive integer, got None"),
        ({"team_id": "3"}, "team_id must be a positive integer, got '3'"),
        ({"company_id": -1}, "company_id must be a positive integer"),
        ({"sectors": "Security"}, "sectors must be a list of strings, got str"),
        ({"sectors": ["Security", 5]}, r"sectors\[1\] must be a string, got 5"),
        ({"provinces": ["GP", "Lesotho"]}, "provinces: unknown province 'Lesotho'; use one of Eastern Cape"),
        ({"provinces": [None]}, r"provinces\[0\] must be a string"),
        ({"experience_years": -1}, "experience_years must be an integer 0-200 or null, got -1"),
        ({"experience_years": "10"}, "experience_years must be an integer 0-200 or null"),
        ({"bbbee_level": 9}, r"bbbee_level must be an integer 1-8 or null \(non-compliant\), got 9"),
        ({"bbbee_level": 0}, "bbbee_level must be an integer 1-8"),
        ({"cidb": "6CE"}, "cidb must be a list of gradings, got str"),
        ({"cidb": [{"grade": 6}]}, r"cidb\[0\].class_of_works must be a class code such as 'CE', got None"),
        ({"cidb": [{"class_of_works": "XX", "grade": 6}]}, r"cidb\[0\]: unknown CIDB class of works 'XX'"),
        ({"cidb": [{"class_of_works": "CE", "grade": "6"}]}, r"cidb\[0\]: CIDB grade must be an integer 1-9, got '6'"),
        ({"cidb": [{"class_of_works": "CE", "grade": 10}]}, r"cidb\[0\]: CIDB grade must be an integer 1-9, got 10"),
        (
            {"cidb": [{"class_of_works": "CE", "grade": 6, "potentially_emerging": "yes"}]},
            r"cidb\[0\]: potentially_emerging must be true or false",
        ),
        ({"cidb": [6]}, r"cidb\[0\] payload must be an object, got int"),
        (
            {"cidb": [{"class_of_works": "CE", "grade": 6}, {"class_of_works": "CE", "grade": 3}]},
            "two CIDB gradings for class CE: a company holds one grade per class",
        ),
    ],
)
def test_bad_company_payloads_name_the_field(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(FactsError, match=message):
        company_facts_from_payload({**COMPANY, **changes})


def test_company_facts_built_directly_are_validated_too() -> None:
    with pytest.raises(FactsError, match=r"sectors must be a tuple, got \['Security'\]"):
        CompanyFacts(team_id=1, company_id=1, sectors=["Security"])  # type: ignore[arg-type]
    with pytest.raises(FactsError, match="provinces: unknown province"):
        CompanyFacts(team_id=1, company_id=1, provinces=("Atlantis",))
