"""Readiness score: weights, the hard-fail policy, the checklist and its reasons, determinism, and what tender text
states about experience and B-BBEE."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from streams.readiness.scoring import (
    DEFAULT_WEIGHTS,
    HARD_FAIL_SCALE,
    RULES_VERSION,
    CompanyFacts,
    ReadinessWeights,
    TenderFacts,
    WeightsError,
    company_facts_from_payload,
    parse_max_bbbee_level,
    parse_min_experience_years,
    rules_version,
    score,
    tender_facts_from_payload,
)

AS_OF = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.UTC)
ITEMS = ("closing_date", "cidb", "province", "sector", "experience", "bbbee")


def tender(**overrides: Any) -> TenderFacts:
    payload: dict[str, Any] = {
        "tender_id": 148252,
        "title": "Tender for the appointment of a contractor for the upgrading of pegasus canal in Equestria",
        "category": "Civil engineering",
        "province": "Gauteng",
        "closing_at": "2026-03-20T11:00:00+02:00",
        "buyer": "City of Tshwane",
        "special_conditions": "CIDB grading: 7CE or higher",
    }
    payload.update(overrides)
    return tender_facts_from_payload(payload)


def company(**overrides: Any) -> CompanyFacts:
    payload: dict[str, Any] = {
        "team_id": 7,
        "company_id": 70,
        "sectors": ["Civil engineering", "Road construction"],
        "provinces": ["GP", "Limpopo"],
        "experience_years": 12,
        "bbbee_level": 2,
        "cidb": [{"class_of_works": "CE", "grade": 7, "potentially_emerging": False}],
    }
    payload.update(overrides)
    return company_facts_from_payload(payload)


def item(readiness: Any, name: str) -> Any:
    return next(i for i in readiness.checklist if i.name == name)


# --- weights ---------------------------------------------------------------------------------------------------------


def test_default_weights_sum_to_100() -> None:
    w = DEFAULT_WEIGHTS
    assert w.sector + w.cidb + w.province + w.experience + w.bbbee + w.closing == 100


def test_weights_that_do_not_sum_to_100_are_rejected_with_the_total() -> None:
    with pytest.raises(WeightsError, match=r"must sum to 100, got 95 \(sector=30, cidb=25"):
        ReadinessWeights(sector=30)


@pytest.mark.parametrize("bad", [-5.0, float("nan"), float("inf"), "35", True])
def test_negative_or_non_numeric_weights_are_rejected(bad: Any) -> None:
    with pytest.raises(WeightsError, match="'sector' must be a finite number >= 0"):
        ReadinessWeights(sector=bad)


def test_weights_error_is_a_value_error() -> None:
    assert issubclass(WeightsError, ValueError)


def test_custom_weights_change_the_points_and_the_rules_version() -> None:
    custom = ReadinessWeights(sector=50, cidb=20, province=10, experience=10, bbbee=5, closing=5)
    result = score(tender(), company(), AS_OF, custom)
    assert [i.weight for i in result.checklist] == [5, 20, 10, 50, 10, 5]
    assert result.rules_version.startswith(f"{RULES_VERSION}+w.")
    assert result.rules_version == rules_version(custom) != rules_version(DEFAULT_WEIGHTS) == RULES_VERSION


# --- the score -------------------------------------------------------------------------------------------------------


def test_a_company_that_meets_everything_scores_100_and_can_bid() -> None:
    result = score(tender(), company(sectors=["Civil engineering"]), AS_OF)
    assert result.score == 100.0
    assert result.biddable
    assert result.blocked_by == ()
    assert [i.name for i in result.checklist] == list(ITEMS)
    assert sum(i.earned for i in result.checklist) == 100.0


def test_checklist_reasons_say_why() -> None:
    result = score(tender(), company(), AS_OF)
    reasons = {i.name: i.reason for i in result.checklist}
    assert reasons == {
        "closing_date": "Open until 2026-03-20 11:00 SAST: 19 days to prepare",
        "cidb": "Requires CIDB 7CE or higher; you hold 7CE",
        "province": "Tender is in Gauteng; you cover Gauteng and Limpopo",
        "sector": (
            "Sector 'Civil engineering': clear match; the tender asks for 'canal' and 'upgrading'; requires CIDB "
            "class 'CE'; its eTenders category agrees"
        ),
        "experience": "The tender states no minimum experience",
        "bbbee": "The tender states no minimum B-BBEE level",
    }
    assert [i.passed for i in result.checklist] == [True, True, True, True, None, None]


def test_closed_tender_scores_zero_and_is_not_biddable() -> None:
    result = score(tender(), company(), dt.datetime(2026, 3, 21, tzinfo=dt.UTC))
    assert result.score == 0.0
    assert not result.biddable
    assert result.blocked_by == ("closing_date",)
    closing = item(result, "closing_date")
    assert (closing.passed, closing.earned) == (False, 0.0)
    assert closing.reason == "Closed 2026-03-20 11:00 SAST; bids can no longer be submitted"


def test_a_tender_closing_exactly_at_as_of_is_closed() -> None:
    closing = dt.datetime(2026, 3, 20, 9, 0, tzinfo=dt.UTC)
    assert not score(tender(), company(), closing).biddable
    assert score(tender(), company(), closing - dt.timedelta(seconds=1)).biddable


def test_little_time_to_prepare_earns_part_of_the_closing_weight() -> None:
    result = score(tender(), company(), dt.datetime(2026, 3, 16, 9, 0, tzinfo=dt.UTC))
    closing = item(result, "closing_date")
    assert closing.passed is True
    assert closing.earned == pytest.approx(5 * 4 / 7, abs=0.01)
    assert closing.reason == "Open until 2026-03-20 11:00 SAST: only 4 days to prepare"


def test_cidb_grading_not_held_blocks_and_keeps_the_score_low() -> None:
    result = score(tender(), company(cidb=[{"class_of_works": "CE", "grade": 5}]), AS_OF)
    assert not result.biddable
    assert result.blocked_by == ("cidb",)
    assert item(result, "cidb").reason == "Requires CIDB 7CE or higher; you hold 5CE"
    # 75 of 100 points without CIDB, scaled down.
    assert result.score == round(75 * HARD_FAIL_SCALE, 1) <= 20


def test_province_not_covered_blocks_and_keeps_the_score_low() -> None:
    result = score(tender(province="Western Cape"), company(), AS_OF)
    assert result.blocked_by == ("province",)
    assert not result.biddable
    assert result.score == round(85 * HARD_FAIL_SCALE, 1)
    assert item(result, "province").reason == "Tender is in Western Cape; you cover only Gauteng and Limpopo"


def test_a_blocked_tender_never_outranks_a_biddable_one_with_a_sector_match() -> None:
    blocked = score(tender(), company(cidb=[]), AS_OF)
    weak = score(tender(special_conditions=None), company(sectors=["Catering"]), AS_OF)
    assert weak.biddable and not blocked.biddable
    assert weak.score > blocked.score


def test_pe_contractor_one_grade_below_passes_a_pe_requirement() -> None:
    result = score(
        tender(special_conditions="CIDB 6CE or higher PE"),
        company(cidb=[{"class_of_works": "CE", "grade": 5, "potentially_emerging": True}]),
        AS_OF,
    )
    assert result.biddable
    assert item(result, "cidb").reason == (
        "Requires CIDB 6CE or higher (PE admitted); you hold 5CE registered as potentially emerging"
    )


def test_tender_without_cidb_requirement_passes_as_not_required() -> None:
    result = score(tender(special_conditions="Compulsory briefing session"), company(cidb=[]), AS_OF)
    cidb = item(result, "cidb")
    assert (cidb.passed, cidb.earned) == (True, 25.0)
    assert "not required" in cidb.reason


def test_national_tender_is_covered_for_any_company() -> None:
    result = score(tender(province="National"), company(provinces=["Northern Cape"]), AS_OF)
    assert item(result, "province").passed is True


def test_unknown_tender_province_does_not_apply() -> None:
    result = score(tender(province=None), company(), AS_OF)
    province = item(result, "province")
    assert (province.passed, province.earned) == (None, 15.0)


def test_sector_weight_is_earned_in_proportion_to_the_match_strength() -> None:
    clear = item(score(tender(), company(sectors=["Civil engineering"]), AS_OF), "sector")
    # Two weak terms of facilities management ("maintenance of", "premises"), no category, no CIDB class: 0.6.
    premises = tender(title="Maintenance of the premises", category=None, special_conditions=None)
    likely = item(score(premises, company(sectors=["Facilities management"]), AS_OF), "sector")
    assert clear.earned == 35.0
    assert likely.earned == pytest.approx(35 * 0.6, abs=0.01)
    assert likely.passed


def test_stated_experience_is_checked_with_partial_credit() -> None:
    t = tender(special_conditions="CIDB grading: 7CE or higher. Bidders must have a minimum of 5 years experience.")
    short = item(score(t, company(experience_years=3), AS_OF), "experience")
    assert (short.passed, short.earned) == (False, 6.0)
    assert short.reason == "Tender asks for at least 5 years of experience; you have 3"
    unknown = item(score(t, company(experience_years=None), AS_OF), "experience")
    assert (unknown.passed, unknown.earned) == (False, 0.0)
    assert unknown.reason == "Tender asks for at least 5 years of experience; your profile does not state yours"
    assert item(score(t, company(experience_years=5), AS_OF), "experience").passed is True


def test_stated_bbbee_level_is_checked() -> None:
    t = tender(special_conditions="CIDB grading: 7CE or higher. Only B-BBEE level 1-4 contributors may bid.")
    good = item(score(t, company(bbbee_level=4), AS_OF), "bbbee")
    assert (good.passed, good.earned) == (True, 10.0)
    assert good.reason == "Tender asks for B-BBEE level 4 or better; you are level 4"
    poor = item(score(t, company(bbbee_level=6), AS_OF), "bbbee")
    assert (poor.passed, poor.earned) == (False, 0.0)
    none = item(score(t, company(bbbee_level=None), AS_OF), "bbbee")
    assert none.reason == "Tender asks for B-BBEE level 4 or better; your profile has no B-BBEE level"
    # Not blocking: buyers mostly score B-BBEE as preference points.
    assert score(t, company(bbbee_level=6), AS_OF).biddable


def test_naive_as_of_is_utc() -> None:
    naive = score(tender(), company(), AS_OF.replace(tzinfo=None))
    assert naive == score(tender(), company(), AS_OF)
    assert naive.as_of.tzinfo is dt.UTC


def test_scoring_is_deterministic() -> None:
    assert score(tender(), company(), AS_OF) == score(tender(), company(), AS_OF)


def test_scores_do_not_depend_on_the_hash_seed() -> None:
    # Set iteration order changes with PYTHONHASHSEED: nothing in a score may depend on it.
    script = (
        "import datetime as dt, json\n"
        "from streams.readiness.scoring import score, tender_facts_from_payload, company_facts_from_payload\n"
        "t = tender_facts_from_payload({'tender_id': 1, 'title': 'Civil works, security guarding and cleaning',"
        " 'category': 'Services: Functional (Including Cleaning and Security Services)', 'province': 'National',"
        " 'special_conditions': 'CIDB 6EP PE OR EB PE OR 6ME PE OR HIGHER'})\n"
        "c = company_facts_from_payload({'team_id': 1, 'company_id': 1, 'sectors': ['Security', 'Cleaning', 'Civil'],"
        " 'provinces': ['KZN', 'GP', 'WC', 'National'], 'cidb': [{'class_of_works': 'ME', 'grade': 4},"
        " {'class_of_works': 'EB', 'grade': 3}, {'class_of_works': 'EP', 'grade': 2}]})\n"
        "print(json.dumps(score(t, c, dt.datetime(2026, 1, 1)).to_dict(), sort_keys=True))\n"
    )
    root = Path(__file__).resolve().parents[4]
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": seed},
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(outputs) == 1


def test_to_dict_is_json_safe() -> None:
    data = score(tender(), company(), AS_OF).to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["rules_version"] == RULES_VERSION
    assert [c["name"] for c in data["checklist"]] == list(ITEMS)


# --- what tender text states -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "years"),
    [
        # Real eTenders special conditions.
        ("• Bidders must have a minimum of 1 year experience in terms of the installation", 1),
        ("- Bidder must have 3 years of experience in pest control and fumigation", 3),
        ("1. Company Operational Experience - A company must have operational experience of at least 4 years.", 4),
        ("Must have a relevant NQF Level 6 qualification plus 5 years\u2019 relevant experience.", 5),
        # Other common phrasings.
        ("minimum of 5 years experience", 5),
        ("at least five (5) years of proven experience in road construction", 5),
        ("ten years' experience", 10),
        ("Experience of not less than 7 years", 7),
        ("3 years experience for the supervisor and 10 years experience for the company", 10),
    ],
)
def test_parses_stated_minimum_experience(text: str, years: int) -> None:
    assert parse_min_experience_years(text) == years


@pytest.mark.parametrize(
    "text",
    [
        "RELEVANT EXPERIENCE OF THE COMPANY = 25 Points",
        "for a period of 3 years. Experience in similar projects is an advantage",
        "FIVE YEAR CONTRACT FOR 24/7 SECURITY SERVICES",
        None,
    ],
)
def test_text_without_a_stated_minimum_experience_gives_none(text: str | None) -> None:
    assert parse_min_experience_years(text) is None


@pytest.mark.parametrize(
    ("text", "level"),
    [
        ("B-BBEE level 1-4", 4),
        ("Only B-BBEE status level 1 to 3 contributors", 3),
        ("Level 1 to 4 B-BBEE contributors", 4),
        ("B-BBEE level 2 or better", 2),
        ("BBBEE Level 2 (or higher)", 2),
        ("minimum B-BBEE level 3", 3),
        ("at least a BBBEE status level of 2", 2),
        ("B-BBEE level 1-4 ... minimum B-BBEE level 2", 2),
    ],
)
def test_parses_stated_bbbee_level(text: str, level: int) -> None:
    assert parse_max_bbbee_level(text) == level


@pytest.mark.parametrize(
    "text",
    [
        # Real eTenders text: a preference-point table and qualifications, not a minimum level.
        "B-BBEE level 1 contribution 5 ? Certified Valid BBBEE certificate",
        "Must have a relevant NQF Level 6 qualification",
        "CIDB GRADING ME LEVEL 4 OR HIGHER",
        "SPECIFIC GOALS & POINTS: Locality: 10 Points B-BBEE: 10 Points",
    ],
)
def test_text_without_a_minimum_bbbee_level_gives_none(text: str) -> None:
    assert parse_max_bbbee_level(text) is None


def test_tender_facts_parse_the_text_once_at_construction() -> None:
    t = tender(special_conditions="6CE or higher PE. Minimum of 5 years experience. B-BBEE level 2 or better.")
    assert [(r.grade, r.class_of_works, r.pe_allowed) for r in t.cidb] == [(6, "CE", True)]
    assert (t.min_experience_years, t.max_bbbee_level) == (5, 2)
    assert t.scope.provinces == ("Gauteng",)
    assert t.closing_at == dt.datetime(2026, 3, 20, 9, 0, tzinfo=dt.UTC)


def _case_twins(letter: str) -> list[str]:
    """Every character a case-insensitive pattern matches for the ASCII `letter` (the Kelvin sign for "k", the long
    s for "s", the dotted and dotless i for "i", ...)."""
    pattern = re.compile(letter, re.IGNORECASE)
    return [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF and pattern.fullmatch(chr(c))]


def test_a_number_word_in_any_case_a_pattern_matches_is_read_not_a_crash() -> None:
    # "FİVE years of experience" (a Turkish capital dotted I) matched the pattern but was looked up as "fi̇ve".
    for word, value in (("five", 5), ("six", 6), ("ten", 10), ("three", 3), ("twelve", 12)):
        for at, letter in enumerate(word):
            for twin in _case_twins(letter):
                text = f"{word[:at]}{twin}{word[at + 1 :]} years experience"
                assert parse_min_experience_years(text) == value, text
