"""Pure core of the readiness agent: tender facts from events, openness as of a date, and top-k maintenance."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from schema.events import CompanyUpdatedV1, ContractError, TenderClosedV1, TenderV1
from streams.agents.readiness import company_facts_value, eligible, fold_tender_facts, is_open, top_k, update_top
from streams.readiness.scoring import company_facts_from_payload, score, tender_facts_from_payload

AS_OF = dt.datetime(2025, 9, 25, 23, 59, 59, tzinfo=dt.UTC)


def tender(**kw: object) -> TenderV1:
    base: dict[str, object] = {
        "tender_id": 3,
        "ocid": "ocds-x-3",
        "title": "Construction of a guardhouse",
        "closing_at": dt.datetime(2025, 10, 13, 9, 0),
        "province": "Gauteng",
        "category": "Construction",
        "special_conditions": "CIDB grading of 3GB or higher",
    }
    return TenderV1.model_validate(base | kw)


def test_tender_facts_follow_created_then_closed_and_feed_the_rules() -> None:
    facts = fold_tender_facts(None, tender())
    assert facts["status"] == "active" and facts["closing_at"] == "2025-10-13T09:00:00"
    closed = fold_tender_facts(facts, TenderClosedV1(tender_id=3, status="cancelled"))
    assert closed["status"] == "cancelled" and closed["title"] == facts["title"]
    parsed = tender_facts_from_payload(facts)
    assert [r.label for r in parsed.cidb] == ["3GB or higher"] or parsed.cidb


def test_open_means_open_status_and_a_closing_date_after_as_of() -> None:
    facts = fold_tender_facts(None, tender())
    assert is_open(facts, AS_OF)
    assert not is_open(facts | {"closing_at": "2025-09-25T08:00:00"}, AS_OF)
    assert not is_open(facts | {"status": "cancelled"}, AS_OF)
    assert not is_open(facts | {"status": "complete"}, AS_OF)
    assert not is_open(facts | {"closing_at": None}, AS_OF)


def test_company_event_without_profile_is_a_contract_error() -> None:
    with pytest.raises(ContractError, match="carries no profile"):
        company_facts_value(CompanyUpdatedV1(team_id=1, company_id=2))
    value = company_facts_value(
        CompanyUpdatedV1.model_validate(
            {
                "team_id": 1,
                "company_id": 2,
                "sectors": ["Construction"],
                "provinces": ["Gauteng"],
                "cidb": [{"class_of_works": "GB", "grade": 4}],
            }
        )
    )
    assert company_facts_from_payload(value).team_id == 1


def test_top_k_orders_by_score_then_tender_id() -> None:
    assert list(top_k({5: 80.0, 2: 80.0, 9: 95.0, 1: 10.0}, 3)) == [9, 2, 5]


def test_update_top_asks_for_a_full_rescore_only_when_the_list_cannot_know() -> None:
    top = {1: 90.0, 2: 80.0, 3: 70.0}
    assert update_top(top, 4, 60.0, 3) == top  # below the worst of a full list
    assert update_top(top, 4, 85.0, 3) == {1: 90.0, 4: 85.0, 2: 80.0}
    assert update_top(top, 2, 95.0, 3) == {2: 95.0, 1: 90.0, 3: 70.0}
    assert update_top(top, 2, 10.0, 3) is None  # fell: the next best is unknown
    assert update_top(top, 2, None, 3) is None  # left: same
    assert update_top(top, 9, None, 3) == top
    assert update_top({}, 9, 50.0, 3) is None  # empty may be an expired key


def test_update_top_with_full_rescores_equals_top_k_of_all_scores() -> None:
    rng = random.Random(11)
    for _ in range(300):
        k = rng.randint(1, 5)
        scores: dict[int, float] = {}
        top: dict[int, float] = {}
        for _ in range(60):
            tender_id = rng.randint(1, 15)
            new = None if rng.random() < 0.25 else float(rng.randint(1, 20))
            if new is None:
                scores.pop(tender_id, None)
            else:
                scores[tender_id] = new
            updated = update_top(top, tender_id, new, k)
            top = top_k(scores, k) if updated is None else updated
            assert top == top_k(scores, k)


def test_company_facts_do_not_depend_on_the_order_of_the_gradings() -> None:
    # The application publishes gradings in the profile's order; MySQL gives them back by class of works (verify and
    # rebuild read them so). The facts, and so the reasons a score document names, must be the same either way.
    def facts(order: list[str]) -> dict[str, object]:
        grades = {"EP": 3, "EB": 5, "GB": 2}
        payload = {
            "team_id": 1,
            "company_id": 2,
            "sectors": ["Construction"],
            "provinces": ["Gauteng"],
            "cidb": [{"class_of_works": c, "grade": grades[c]} for c in order],
        }
        return company_facts_value(CompanyUpdatedV1.model_validate(payload))

    assert facts(["EP", "EB", "GB"]) == facts(["EB", "GB", "EP"])


def _company(sectors: list[str]) -> object:
    return company_facts_from_payload(
        {
            "team_id": 1,
            "company_id": 1,
            "sectors": sectors,
            "provinces": ["Gauteng"],
            "cidb": [{"class_of_works": "GB", "grade": 5}],
        }
    )


def test_a_top_list_takes_tenders_in_the_companys_sectors_only() -> None:
    guardhouse = tender_facts_from_payload(fold_tender_facts(None, tender()))
    builder = score(guardhouse, _company(["Construction"]), AS_OF)  # type: ignore[arg-type]
    caterer = score(guardhouse, _company(["Catering"]), AS_OF)  # type: ignore[arg-type]
    assert eligible(builder)
    # Biddable and a fair score from the other checks, but nothing a caterer does: not in its top list.
    assert caterer.biddable and caterer.score > 0
    assert not eligible(caterer)


def test_a_profile_without_sectors_cannot_decide_the_sector_check_and_keeps_its_top_list() -> None:
    guardhouse = tender_facts_from_payload(fold_tender_facts(None, tender()))
    result = score(guardhouse, _company([]), AS_OF)  # type: ignore[arg-type]
    (sector,) = [i for i in result.checklist if i.name == "sector"]
    assert sector.passed is None and sector.earned == 0.0
    assert eligible(result)
