"""Sector matching against the hand-labelled real tenders of tests/fixtures/sector_labels (README.md there: the
sample, how it was labelled, by whom and when): F1 at least 0.85 overall and 0.7 for every sector with 5 or more
examples, with the sectors worded as the taxonomy names them and as company profiles word them."""

from __future__ import annotations

import pytest

from bench.sector_match import evaluate, load, report

OVERALL_F1 = 0.85
SECTOR_F1 = 0.7
MIN_SUPPORT = 5


@pytest.fixture(scope="module")
def labelled() -> list:  # type: ignore[type-arg]
    return load()


def test_the_labelled_set_is_large_enough_and_covers_the_taxonomy(labelled: list) -> None:  # type: ignore[type-arg]
    assert len(labelled) >= 200
    covered = {s for item in labelled for s in item.sectors}
    assert len(covered) >= 14, sorted(covered)


@pytest.mark.parametrize("wording", ["names", "profiles"])
def test_sector_matching_reaches_the_targets(labelled: list, wording: str) -> None:  # type: ignore[type-arg]
    counts = evaluate(labelled, wording)
    print(f"\nsectors worded as {wording}:\n{report(counts)}")
    overall = counts.pop("all")
    weak = {name: round(c.f1, 3) for name, c in counts.items() if c.support >= MIN_SUPPORT and c.f1 < SECTOR_F1}
    assert overall.f1 >= OVERALL_F1, f"overall F1 {overall.f1:.3f} < {OVERALL_F1}\n{report(counts)}"
    assert not weak, f"sectors below F1 {SECTOR_F1}: {weak}\n{report(counts)}"


def test_every_label_file_names_known_sectors_and_the_parts_do_not_overlap(labelled: list) -> None:  # type: ignore[type-arg]
    tuning = {item.tender["id"] for item in labelled}
    heldout = {item.tender["id"] for item in load(labels="labels_heldout.jsonl")}
    second = {item.tender["id"] for item in load(labels="labels_second_reader.jsonl")}
    second_22_24 = {item.tender["id"] for item in load(labels="labels_second_reader_parts_22_24.jsonl")}
    assert not tuning & heldout, sorted(tuning & heldout)
    # Both second readings are of tenders whose errors have been read (parts 6 and 22-24): the tuning set's.
    assert second <= tuning, sorted(second - tuning)
    assert second_22_24 <= tuning, sorted(second_22_24 - tuning)
