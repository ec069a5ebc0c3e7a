"""The learned sector guess (rules version 12): it speaks only where the rules find no sector and know no word of the
one it guesses, passes weakly with the words it weighed as evidence, and its weights file is checked at load."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from bench.sector_match import FIXTURES
from streams.readiness import learned
from streams.readiness.sectors import (
    GUESS_CEILING,
    PASS_THRESHOLD,
    match_sectors,
    sector_profiles,
    tender_evidence,
)
from streams.readiness.taxonomy import CONCEPTS, TaxonomyError


def model(weights: dict[str, dict[str, float]], threshold: float = 0.5, bias: float = -3.0) -> learned.Model:
    """A model of a few hand-set weights: every concept has a bias, the named ones their features."""
    return learned.parse(
        {
            "threshold": threshold,
            "trained_on": "a test",
            "bias": {c.id: bias for c in CONCEPTS},
            "weights": {c.id: weights.get(c.id, {}) for c in CONCEPTS},
        }
    )


# "storage" and "renewals" weigh for ICT; "jetty" for construction (a word the rules may know or not).
STORAGE = model({"ict": {"storage": 9.0, "renewals": 6.0, "cat:professional": 1.0}})


def match(sectors: list[str], text: str, m: learned.Model | None, category: str | None = None) -> tuple[float, str]:
    result = match_sectors(tender_evidence(category, text, model=m), sector_profiles(sectors))
    return result.score, result.reason


def test_a_tender_the_rules_find_nothing_in_gets_the_models_guess_as_a_weak_pass() -> None:
    score, reason = match(["ICT"], "DR storage renewals", STORAGE, "Services: Professional")
    assert PASS_THRESHOLD <= score <= GUESS_CEILING < 1.0
    assert "learned from labelled tenders" in reason and "'storage'" in reason and "'renewals'" in reason
    assert "'category: professional'" in reason
    # The other sectors get nothing from it.
    assert match(["Security"], "DR storage renewals", STORAGE)[0] == 0.0


def test_without_a_model_or_below_its_threshold_nothing_is_guessed() -> None:
    assert match(["ICT"], "DR storage renewals", None)[0] == 0.0
    unsure = model({"ict": {"storage": 0.5}})
    assert tender_evidence(None, "DR storage renewals", model=unsure).guess is None
    assert match(["ICT"], "DR storage renewals", unsure)[0] == 0.0


def test_a_tender_the_rules_match_gets_no_guess() -> None:
    sure = model({"ict": {"school": 20.0, "construction": 20.0}})
    evidence = tender_evidence(None, "Construction of a new school", model=sure)
    assert evidence.guess is None
    assert match(["Construction"], "Construction of a new school", sure)[0] >= PASS_THRESHOLD
    assert match(["ICT"], "Construction of a new school", sure)[0] == 0.0


@pytest.mark.parametrize(
    ("sector", "concept", "text"),
    [
        # The rules know these words and judged them: PPE is not the workers' trade, training is one step of a supply.
        ("Electrical", "electrical", "Supply and delivery of specialised PPE for electrical and associated workers"),
        ("Training", "training", "Supply, calibrate and provide end user training of multigas detectors"),
    ],
)
def test_a_guess_does_not_overrule_the_rules_on_their_own_vocabulary(sector: str, concept: str, text: str) -> None:
    sure = model({concept: {w: 20.0 for w in learned.features(None, text)}})
    assert match([sector], text, sure)[0] < PASS_THRESHOLD


def test_the_strongest_guess_ranks_below_a_clear_match() -> None:
    sure = model({"ict": {"storage": 60.0}})
    guessed = match(["ICT"], "DR storage renewals", sure)[0]
    assert guessed == GUESS_CEILING
    assert match(["ICT"], "Supply of laptops", sure)[0] == 1.0


def test_features_are_words_pairs_and_category_words() -> None:
    assert learned.features("Services: Professional", "DR Storage", "and renewals") == {
        "dr",
        "storage",
        "and",
        "renewals",
        "dr_storage",
        "storage_and",
        "and_renewals",
        "cat:services",
        "cat:professional",
    }
    assert learned.readable("storage_and") == "storage and"
    assert learned.readable("cat:professional") == "category: professional"


def _valid() -> dict[str, Any]:
    return {"threshold": 0.5, "trained_on": "x", "bias": {"ict": 0.0}, "weights": {"ict": {"a": 1.0}}}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"threshold": 1.0}, "threshold must be between 0 and 1"),
        ({"threshold": "0.5"}, "threshold must be a finite number"),
        ({"bias": {"ict": math.nan}}, "bias.ict must be a finite number"),
        ({"weights": {"ict": {"a": True}}}, "weights.ict.a must be a finite number"),
        ({"weights": {"ict": ["a"]}}, "weights.ict must be an object"),
        ({"bias": {"plumbing": 0.0}, "weights": {"plumbing": {}}}, "unknown or unpaired concepts ['plumbing']"),
        ({"bias": {}}, "unknown or unpaired concepts"),
        ({"weights": None}, "expected an object"),
    ],
)
def test_a_broken_weights_file_is_refused_naming_the_entry(change: dict[str, Any], message: str) -> None:
    with pytest.raises(TaxonomyError, match="learned.json: " + message.replace("[", r"\[").replace("]", r"\]")):
        learned.parse({**_valid(), **change})


def test_the_shipped_weights_were_trained_on_the_tuning_set_as_it_is() -> None:
    # Retrain (`python -m bench.sector_learned --write`) when labels.jsonl changes; never on the held-out labels.
    tuning = len((FIXTURES / "labels.jsonl").read_text().splitlines())
    shipped = json.loads(learned.SOURCE.read_text())
    assert shipped["trained_on"].startswith(f"labels.jsonl: {tuning} tenders;")
    assert set(learned.MODEL.weights) == {c.id for c in CONCEPTS}


def test_the_shipped_model_reads_a_wording_the_rules_do_not_know() -> None:
    # A real tender of the held-out parts (31-33), in none of the rules' vocabulary: "DR storage" is a data centre's.
    text = "DR Storage support and maintenance renewals"
    assert tender_evidence("Services: Professional", "RFQJW045NS26", text, model=None).guess is None
    score, reason = match(["ICT"], text, learned.MODEL, "Services: Professional")
    assert PASS_THRESHOLD <= score <= GUESS_CEILING, reason


def test_the_category_alone_never_makes_a_guess() -> None:
    # The category weighs for cleaning, the text's words do not: a reference number alone is no evidence.
    leaning = model({"cleaning": {"cat:cleaning": 30.0, "cat:functional": 30.0}})
    functional = "Services: Functional (Including Cleaning and Security Services)"
    assert tender_evidence(functional, "SCMU10-25/26-0018", model=leaning).guess is None
    # With a word of its own in the text, the category adds to it.
    leaning = model({"cleaning": {"cat:cleaning": 30.0, "sparkle": 0.5}})
    assert tender_evidence(functional, "Sparkle at the district office", model=leaning).guess is not None
