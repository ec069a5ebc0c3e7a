"""Extractive summariser: sentence splitting on eTenders text and summaries that only ever quote the input."""

from __future__ import annotations

import itertools

import pytest

from streams.summaries.base import Summariser, SummariserConfig
from streams.summaries.extractive import ALGORITHM, ExtractiveSummariser, sentence_spans, split_sentences
from streams.summaries.factory import load_summariser


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        pytest.param(
            "SUPPLY OF REFUSE BAGS. BIDDERS MUST BE REGISTERED ON THE CSD. NO LATE BIDS.",
            ["SUPPLY OF REFUSE BAGS.", "BIDDERS MUST BE REGISTERED ON THE CSD.", "NO LATE BIDS."],
            id="all-caps",
        ),
        pytest.param(
            "CONTACT MR. J. SMITH, TEL. 012 345 6789, E.G. FOR SITE VISITS. REFER TO NO. 5 OF THE BID.",
            ["CONTACT MR. J. SMITH, TEL. 012 345 6789, E.G. FOR SITE VISITS.", "REFER TO NO. 5 OF THE BID."],
            id="abbreviations-and-initials",
        ),
        pytest.param(
            "CONSORTIUM CONSISTING OF: 1. PROJECT MANAGEMENT, 2. QUANTITY SURVEYING. FOR SCHOOLS",
            ["CONSORTIUM CONSISTING OF: 1. PROJECT MANAGEMENT, 2. QUANTITY SURVEYING.", "FOR SCHOOLS"],
            id="inline-numbered-list",
        ),
        pytest.param(
            "1.\tCompliance Returnable\r\n2.\tFunctionality\r\n3.\tPrice= 80",
            ["1. Compliance Returnable", "2. Functionality", "3. Price= 80"],
            id="one-item-per-line",
        ),
        pytest.param(
            "\u2022\tPSIRA Registration\r\n\r\n\u2022\tICASA  License",
            ["PSIRA Registration", "ICASA License"],
            id="bullets-dropped",
        ),
        pytest.param(
            "The meeting will be held\nat the venue. Is it compulsory? Yes!",
            ["The meeting will be held at the venue.", "Is it compulsory?", "Yes!"],
            id="wrapped-prose-and-other-stops",
        ),
        pytest.param(
            "Valid for 90 days (i.e. until 30 June). Thanks", ["Valid for 90 days (i.e. until 30 June).", "Thanks"]
        ),
        pytest.param("   ", [], id="blank"),
    ],
)
def test_split_sentences(text: str, sentences: list[str]) -> None:
    assert split_sentences(text) == sentences


def test_spans_are_verbatim_slices_in_order(etenders_texts: list[str]) -> None:
    for text in etenders_texts:
        spans = sentence_spans(text)
        assert spans == sorted(spans)
        assert all(s < e <= s2 for (s, e), (s2, _) in itertools.pairwise(spans))
        # Nothing but whitespace and list bullets is lost between sentences.
        covered = "".join(text[s:e] for s, e in spans)
        assert unbulleted(covered) == unbulleted(text)


BULLETS = "-*\u2022\u00b7\u2013\u2014"


def unbulleted(text: str) -> str:
    return "".join(c for c in text if not c.isspace() and c not in BULLETS)


def multi_sentence(texts: list[str], at_least: int = 6) -> list[str]:
    chosen = [t for t in texts if len(split_sentences(t)) >= at_least]
    assert len(chosen) >= 10, "the sample should hold long real tenders"
    return chosen


def quoted_positions(summary: str, sentences: list[str], start: int = 0) -> list[int] | None:
    """Indexes of input sentences that, in order and joined by spaces, make up `summary`; None if none do."""
    if not summary:
        return []
    for i in range(start, len(sentences)):
        if summary == sentences[i] or summary.startswith(sentences[i] + " "):
            rest = quoted_positions(summary[len(sentences[i]) + 1 :], sentences, i + 1)
            if rest is not None:
                return [i, *rest]
    return None


def test_summary_quotes_input_sentences_in_order_and_is_shorter(etenders_texts: list[str]) -> None:
    summariser = ExtractiveSummariser(sentences=3)
    for text in multi_sentence(etenders_texts):
        sentences = split_sentences(text)
        summary = summariser.summarise(text)

        positions = quoted_positions(summary, sentences)

        assert positions is not None, f"not verbatim input sentences in order: {summary!r}"
        assert len(positions) == 3
        assert positions[0] == 0  # the subject leads
        assert len(summary) < len(" ".join(text.split()))


def test_summary_never_contains_a_word_the_input_lacks(etenders_texts: list[str], uk_long_texts: list[str]) -> None:
    summariser = ExtractiveSummariser()
    for text in etenders_texts + uk_long_texts:
        # A sentence's leading list bullet is the one thing ever dropped.
        words = set(text.split()) | {w.lstrip(BULLETS) for w in text.split()}
        assert set(summariser.summarise(text).split()) <= words


def test_short_text_comes_back_whole(etenders_texts: list[str]) -> None:
    short = [t for t in etenders_texts if len(split_sentences(t)) <= 3]
    assert short
    summariser = ExtractiveSummariser(sentences=3)
    for text in short:
        assert summariser.summarise(text) == " ".join(split_sentences(text))


def test_near_duplicate_sentences_are_not_both_kept() -> None:
    text = (
        "Supply of fencing material to the depot. "
        "The first clarification meeting will be held on 2025-11-11 in the Main Boardroom, Embassy Building. "
        "The second clarification meeting will be held on 2026-01-29 in the Main Boardroom, Embassy Building. "
        "Bidders must hold a CIDB grading of 2SQ or higher and be registered on the CSD. "
        "Fencing material must comply with the SANS specification for security fencing."
    )
    summary = ExtractiveSummariser(sentences=3).summarise(text)
    assert not ("first clarification" in summary and "second clarification" in summary)


def test_long_uk_descriptions_are_summarised(uk_long_texts: list[str]) -> None:
    summariser = ExtractiveSummariser(sentences=4)
    for text in uk_long_texts:
        summary = summariser.summarise(text)
        # Lost line breaks ("deadline.rnrnTender") glue some sentences together, so only "shorter" is certain.
        assert summary
        assert len(summary) < len(text)
        assert quoted_positions(summary, split_sentences(text)) is not None


def test_deterministic_and_batch_equals_single(etenders_texts: list[str]) -> None:
    summariser = ExtractiveSummariser()
    batch = summariser.summarise_batch(etenders_texts)
    assert batch == summariser.summarise_batch(etenders_texts)
    assert batch == [ExtractiveSummariser().summarise(t) for t in etenders_texts]
    assert summariser.summarise_batch(["", "  \n "]) == ["", ""]


def test_factory_default_is_extractive_with_its_settings_in_model_used() -> None:
    summariser = load_summariser()
    assert isinstance(summariser, ExtractiveSummariser)
    assert isinstance(summariser, Summariser)
    assert summariser.name == "extractive"
    assert summariser.model_used == f"extractive:{ALGORITHM}:sentences=3"
    assert load_summariser(SummariserConfig(sentences=5)).model_used.endswith(":sentences=5")
