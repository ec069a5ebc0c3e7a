"""Fit the matcher's three global weights on the tuning labels, then score the held-out labels once. A probe: it prints,
it changes nothing (the chosen values are constants in streams/readiness/sectors.py).

    .venv/bin/python -m bench.sector_weights [--top 8]

DOMINANCE (below which share of the strongest concept a concept counts in proportion), SUBJECT_SCALE (what a trade
named as a professional's subject counts) and CATEGORY_WEIGHT (what the eTenders category adds to evidence the text
gives) are tried on a grid; each combination's F1 over every sector of every tuning tender (labels.jsonl) ranks it,
and the held-out F1 (labels_heldout.jsonl) is printed beside the best few, never used to choose. The pass threshold
stays 0.6 (one strong or medium phrase passes). Each tender is read once; about a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from bench.sector_match import Labelled, load
from streams.readiness import sectors
from streams.readiness.scoring import tender_facts_from_payload
from streams.readiness.sectors import PASS_THRESHOLD, TenderEvidence
from streams.readiness.taxonomy import CONCEPTS

GRID = {
    "DOMINANCE": (0.3, 0.4, 0.5, 0.6, 0.7, 0.8),
    "SUBJECT_SCALE": (0.3, 0.5, 0.7),
    "CATEGORY_WEIGHT": (0.0, 0.3, 0.6),
}
Read = list[tuple[TenderEvidence, frozenset[str]]]


def read(data: Sequence[Labelled]) -> Read:
    """Each tender's evidence as the product reads it (its CIDB classes from the text included)."""
    out = []
    for item in data:
        t = item.tender
        payload = {"tender_id": 1, **{k: t[k] for k in ("title", "description", "category", "special_conditions")}}
        out.append((tender_facts_from_payload(payload).terms, item.sectors))
    return out


def f1(tenders: Read) -> float:
    said = meant = both = 0
    for evidence, labels in tenders:
        evidence.__dict__.pop("top", None)  # a cached property that depends on the weights
        passed = {c.id for c in CONCEPTS if evidence.strength(c.id) >= PASS_THRESHOLD}
        said, meant, both = said + len(passed), meant + len(labels), both + len(passed & labels)
    precision, recall = both / max(said, 1), both / max(meant, 1)
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


@contextmanager
def weights(values: dict[str, float]) -> Iterator[None]:
    saved = {name: getattr(sectors, name) for name in values}
    try:
        for name, value in values.items():
            setattr(sectors, name, value)
        yield
    finally:
        for name, value in saved.items():
            setattr(sectors, name, value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--top", type=int, default=8, help="how many of the best combinations to print")
    args = parser.parse_args()
    tuning, heldout = read(load(labels="labels.jsonl")), read(load(labels="labels_heldout.jsonl"))
    current = {name: float(getattr(sectors, name)) for name in GRID}
    ranked = []
    for values in itertools.product(*GRID.values()):
        combination = dict(zip(GRID, values, strict=True))
        with weights(combination):
            ranked.append((f1(tuning), combination))
    ranked.sort(key=lambda r: -r[0])
    print(f"{len(tuning)} tuning tenders, {len(heldout)} held-out; current {current}")
    with weights(current):
        print(f"current: tuning F1 {f1(tuning):.3f}, held-out F1 {f1(heldout):.3f}")
    for score, combination in ranked[: args.top]:
        with weights(combination):
            print(f"tuning F1 {score:.3f}  held-out F1 {f1(heldout):.3f}  {combination}")


if __name__ == "__main__":
    main()
