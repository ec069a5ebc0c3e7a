"""The summary input built from real tenders, the content hash, and the configuration's validation."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from streams.summaries.base import (
    DEFAULT_MODEL,
    BriefingSession,
    SummariserConfig,
    SummariserConfigError,
    SummariserError,
    SummaryInput,
    content_hash,
)
from tests.unit.streams.summaries.support import read_releases

SAST = dt.timezone(dt.timedelta(hours=2))


def release_by_ocid(releases: list[dict[str, Any]], ocid: str) -> dict[str, Any]:
    [release] = [r for r in releases if r["ocid"] == ocid]
    return release


def test_etenders_text_leads_with_tender_number_and_real_title_then_facts_then_conditions(
    etenders_releases: list[dict[str, Any]],
) -> None:
    inp = SummaryInput.from_ocds(5, release_by_ocid(etenders_releases, "ocds-9t57fa-147492"))

    assert inp.title == "WCGHSC0414/2023"
    assert inp.buyer == "Western Cape - Health"
    assert inp.closing_at == dt.datetime(2026, 3, 20, tzinfo=SAST)
    assert inp.briefing is None  # isSession false
    paragraphs = inp.text().split("\n\n")
    assert paragraphs[0].startswith("WCGHSC0414/2023: THE SUPPLY OF MEDICAL LOCUMS OF ALL GRADES")
    assert paragraphs[1] == "Buyer: Western Cape - Health; category: Human health activities; closing date: 2026-03-20."
    assert paragraphs[2].startswith("Potential bidders may ask for clarification")


def test_briefing_session_is_one_phrase_of_the_facts(etenders_releases: list[dict[str, Any]]) -> None:
    inp = SummaryInput.from_ocds(1, release_by_ocid(etenders_releases, "ocds-9t57fa-148351"))

    assert inp.briefing == BriefingSession(compulsory=False, date=None, venue="MS TEAMS")
    assert "closing date: 2026-03-18; non-compulsory briefing session at MS TEAMS." in inp.text()


def test_briefing_with_date_and_time_is_shown_in_the_tenders_own_clock() -> None:
    briefing = BriefingSession(compulsory=True, date=dt.datetime(2025, 9, 29, 11, 0, tzinfo=SAST), venue="Room 4.")
    assert briefing.phrase() == "compulsory briefing session on 2025-09-29 11:00 at Room 4"


def test_placeholder_special_conditions_are_left_out(etenders_releases: list[dict[str, Any]]) -> None:
    release = release_by_ocid(etenders_releases, "ocds-9t57fa-148194")
    assert release["tender"]["specialConditions"].strip().casefold() in {"n/a", "none"}

    text = SummaryInput.from_ocds(1, release).text()

    assert len(text.split("\n\n")) == 2
    assert "N/A" not in text


def test_wrapped_description_lines_are_joined_but_condition_lines_kept() -> None:
    inp = SummaryInput(
        tender_id=1,
        title="31536-7E",
        description="Lease of Erf 836 Dunns\nGrant, measuring approximately\n5928m2",
        special_conditions="Technical:\r\nErrol Douwes\r\n\r\n\r\n\r\nGeneral:\tN. Mlilo",
    )
    assert inp.text() == (
        "31536-7E: Lease of Erf 836 Dunns Grant, measuring approximately 5928m2.\n\n"
        "Technical:\nErrol Douwes\n\nGeneral: N. Mlilo"
    )


def test_uk_release_uses_title_and_cpv_classification() -> None:
    release = read_releases("uk_long_descriptions.ocds.jsonl")[0]

    inp = SummaryInput.from_ocds(9, release)

    assert inp.title == release["tender"]["title"]
    assert inp.category == release["tender"]["classification"]["description"]
    assert inp.text().startswith(release["tender"]["title"] + ": ")


def test_text_is_deterministic_for_every_sample_tender(etenders_releases: list[dict[str, Any]]) -> None:
    first = [SummaryInput.from_ocds(n, r).text() for n, r in enumerate(etenders_releases, start=1)]
    again = [SummaryInput.from_ocds(n, r).text() for n, r in enumerate(etenders_releases, start=1)]
    assert first == again
    assert all(t.strip() for t in first)


def test_malformed_release_is_a_value_error_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"tenderPeriod\.endDate"):
        SummaryInput.from_ocds(1, {"tender": {"title": "T", "tenderPeriod": {"endDate": "next week"}}})
    with pytest.raises(ValueError, match="description"):
        SummaryInput.from_ocds(1, {"tender": {"title": "T", "description": 42}})
    with pytest.raises(ValueError, match="tender_id"):
        SummaryInput(tender_id=0, title="T")


def test_content_hash_depends_on_text_and_model_only() -> None:
    h = content_hash("Supply of locums.", "extractive:textrank-tfidf-v1:sentences=3")

    assert h == content_hash("Supply of locums.", "extractive:textrank-tfidf-v1:sentences=3")
    assert len(h) == 64 and int(h, 16) >= 0
    assert h != content_hash("Supply of locums!", "extractive:textrank-tfidf-v1:sentences=3")
    assert h != content_hash("Supply of locums.", "extractive:textrank-tfidf-v1:sentences=2")
    # Moving text between the two parts cannot produce the same hash.
    assert content_hash("ab", "c") != content_hash("b", "ca")


def test_default_config_is_extractive_and_transformers_defaults_to_bart_large_cnn() -> None:
    assert SummariserConfig().backend == "extractive"
    assert SummariserConfig().model_name is None
    assert SummariserConfig(backend="transformers").model_name == DEFAULT_MODEL == "facebook/bart-large-cnn"
    assert SummariserConfig(backend="transformers", model="/models/bart").model_name == "/models/bart"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"backend": "abstractive"}, "backend must be one of extractive, transformers"),
        ({"model": "facebook/bart-large-cnn"}, "set the backend to 'transformers'"),
        ({"backend": "transformers", "model": " "}, "non-empty string"),
        ({"num_beams": 0}, "num_beams must be an int >= 1"),
        ({"batch_size": True}, "batch_size must be an int >= 1"),
        ({"sentences": 0}, "sentences must be an int >= 1"),
        ({"max_rounds": 0}, "max_rounds must be an int >= 1"),
        ({"max_input_tokens": 8}, "max_input_tokens must be an int >= 16"),
        ({"max_input_tokens": 200, "max_summary_tokens": 142}, "at most half of max_input_tokens"),
        ({"device": "gpu"}, "device must be cpu, cuda, cuda:N or mps"),
    ],
)
def test_invalid_config_says_what_to_fix(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(SummariserConfigError, match=message) as info:
        SummariserConfig(**settings)
    assert isinstance(info.value, SummariserError) and isinstance(info.value, ValueError)


def test_config_is_frozen() -> None:
    config = SummariserConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.backend = "transformers"  # type: ignore[misc]
