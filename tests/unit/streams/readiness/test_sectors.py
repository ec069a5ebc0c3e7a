"""Sector match: word tokens, light stemming and a procurement synonym table, scored 0..1 with readable reasons."""

from __future__ import annotations

import pytest

from streams.readiness.sectors import (
    BROAD_WEIGHT,
    SYNONYM_WEIGHT,
    match_sectors,
    sector_profile,
    sector_profiles,
    stem,
    text_terms,
)


def match(sectors: list[str], category: str | None, title: str) -> tuple[float, str]:
    result = match_sectors(text_terms(category, title), sector_profiles(sectors))
    return result.score, result.reason


@pytest.mark.parametrize(
    "title",
    [
        "SUPPLY AND INSTALLATION OF SMART METERS",
        "Office partitioning at the regional office",
        "Departure lounge refurbishment",
        "Department of Health: cartography services",
        "Start-up support programme",
    ],
)
def test_a_word_inside_another_word_does_not_match(title: str) -> None:
    assert match(["Art"], None, title)[0] == 0.0


def test_the_word_itself_matches_on_word_boundaries() -> None:
    score, reason = match(["Art"], None, "Supply of art materials to schools")
    assert score == 1.0
    assert reason == "Matched 'art' from your sector 'Art'"


def test_the_reason_names_the_matched_words_and_the_sector() -> None:
    score, reason = match(["Electrical maintenance"], "Services: Electrical", "MAINTENANCE OF SUBSTATIONS")
    assert score == 1.0
    assert reason == "Matched 'electrical' and 'maintenance' from your sector 'Electrical maintenance'"


@pytest.mark.parametrize(
    ("word", "other"),
    [
        ("electrical", "electricity"),
        ("electric", "electrification"),
        ("construction", "constructions"),
        ("building", "buildings"),
        ("cleaning", "cleaners"),
        ("security", "secure"),
        ("consultant", "consultancy"),
        ("fence", "fencing"),
        ("supply", "supplies"),
    ],
)
def test_stemming_joins_word_forms(word: str, other: str) -> None:
    assert stem(word) == stem(other)


@pytest.mark.parametrize(("word", "kept"), [("water", "water"), ("arts", "art"), ("glass", "glass"), ("bus", "bus")])
def test_stemming_keeps_short_and_non_plural_words(word: str, kept: str) -> None:
    assert stem(word) == kept


@pytest.mark.parametrize(
    ("sector", "category", "title", "tender_word"),
    [
        ("Construction", "Services: Building", "Renovation of the community hall", "building"),
        ("Construction", None, "Civil works for the bulk water pipeline", "civil"),
        ("ICT", "Services: Professional", "Annual software licences and support", "software"),
        ("ICT", None, "Supply of computer equipment", "computer"),
        ("ICT", None, "Information technology helpdesk", "information technology"),
        ("Security", None, "Guarding of municipal buildings for 36 months", "guarding"),
        ("Cleaning", None, "Hygiene services for all offices", "hygiene"),
        ("Medical", None, "Supply of health equipment to clinics", "health"),
        ("Catering", None, "Provision of meals for learners", "meals"),
        ("Landscaping", None, "Grass cutting along provincial roads", "grass cutting"),
    ],
)
def test_synonyms_match_at_reduced_weight(sector: str, category: str | None, title: str, tender_word: str) -> None:
    score, reason = match([sector], category, title)
    assert score == SYNONYM_WEIGHT
    assert reason == f"Matched '{sector.lower()}' (as '{tender_word}') from your sector '{sector}'"


def test_it_in_a_sector_label_means_information_technology() -> None:
    score, reason = match(["IT"], None, "ICT infrastructure refresh")
    assert score == 1.0
    assert reason == "Matched 'IT' (as 'ict') from your sector 'IT'"
    assert match(["IT"], None, "Software licences")[0] == SYNONYM_WEIGHT


def test_it_in_tender_text_is_not_information_technology() -> None:
    assert match(["Cleaning"], None, "IT IS REQUIRED THAT IT BE CLEAN")[0] == 1.0
    assert match(["Security"], None, "it is what it is")[0] == 0.0


def test_partial_match_scores_the_share_of_terms_and_names_what_is_missing() -> None:
    score, reason = match(["Civil engineering"], None, "Civil works: upgrading of gravel roads")
    assert score == pytest.approx(1 / 1.5)  # "engineering" is a broad word and counts half
    assert reason == "Matched 'civil' from your sector 'Civil engineering'; 'engineering' not found"


def test_a_broad_activity_word_alone_does_not_pass_a_sector() -> None:
    roads = match_sectors(
        text_terms("Construction", "Routine maintenance of provincial roads"),
        sector_profiles(["Electrical maintenance"]),
    )
    assert roads.score == pytest.approx(BROAD_WEIGHT / 1.5)
    assert not roads.passed
    lights = match_sectors(
        text_terms("Services: Electrical", "Street lights for Ward 4"), sector_profiles(["Electrical maintenance"])
    )
    assert lights.score == pytest.approx(1 / 1.5)
    assert lights.passed


def test_a_phrase_takes_its_words() -> None:
    ohs = text_terms(None, "Appointment of health and safety consultants")
    assert match_sectors(ohs, sector_profiles(["Medical supplies"])).score == 0.0
    assert match_sectors(ohs, sector_profiles(["Health and safety"])).score == 1.0
    assert match_sectors(ohs, sector_profiles(["OHS"])).score == SYNONYM_WEIGHT
    training = text_terms(None, "PROVISION OF OCCUPATIONAL HEALTH AND SAFETY TRAINING")
    assert match_sectors(training, sector_profiles(["Medical supplies"])).score == 0.0


def test_the_best_sector_wins() -> None:
    result = match_sectors(
        text_terms("Services: Functional (Including Cleaning and Security Services)", "Guarding services"),
        sector_profiles(["Catering", "Security guarding", "Cleaning"]),
    )
    assert result.sector == "Security guarding"
    assert result.score == 1.0
    assert result.passed


def test_generic_procurement_words_do_not_match() -> None:
    assert sector_profile("General services").terms == ()
    score, reason = match(["General services", "Supplies"], "Services: General", "Supply and delivery of goods")
    assert score == 0.0
    assert reason == "Your sectors name no specific activity, so the tender's sector could not be matched"


def test_no_sectors_is_explained() -> None:
    result = match_sectors(text_terms("Construction", "Roads"), ())
    assert (result.score, result.passed) == (0.0, False)
    assert result.reason == "Your profile lists no sectors, so the tender's sector could not be matched"


def test_no_match_lists_the_sectors_tried() -> None:
    score, reason = match(["Catering", "Legal"], "Construction", "Upgrading of roads")
    assert score == 0.0
    assert reason == "No word from your sectors ('Catering', 'Legal') appears in the tender's category or title"


def test_matching_is_deterministic_and_independent_of_sector_order_on_distinct_scores() -> None:
    terms = text_terms("Civil engineering", "Road construction and stormwater")
    first = match_sectors(terms, sector_profiles(["Road construction", "Catering"]))
    again = match_sectors(terms, sector_profiles(["Catering", "Road construction"]))
    assert first == again
