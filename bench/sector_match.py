"""Sector matching measured against hand-labelled tenders (tests/fixtures/sector_labels): precision, recall and F1
per sector and overall, asked the way the product asks it (a company whose profile names one sector, scored with
`score`; the sector check passes or not).

    .venv/bin/python -m bench.sector_match [--wording names|profiles] [--errors] [--heldout]
    .venv/bin/python -m bench.sector_match --agreement    # two readers' labels of the same tenders, no matcher
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from streams.readiness.scoring import company_facts_from_payload, score, tender_facts_from_payload
from streams.readiness.taxonomy import CONCEPTS

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "sector_labels"
# Second, blind readings of labelled tenders (of the tuning set; of the held-out set).
SECOND_READINGS = ("labels_second_reader.jsonl", "labels_second_reader_parts_22_24.jsonl")
AS_OF = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)

# How a company would name each concept: the taxonomy's own names, and the way profiles word them (the demo's
# companies, the load generator's), which the matcher must understand as well.
WORDINGS: dict[str, dict[str, str]] = {
    "names": {c.id: c.name for c in CONCEPTS},
    "profiles": {
        "construction": "Building construction",
        "civil_engineering": "Roads and stormwater",
        "electrical": "Electrical installations",
        "mechanical_hvac": "Air conditioning and refrigeration",
        "ict": "Software development",
        "security": "Security services",
        "cleaning": "Cleaning services",
        "facilities_management": "Facilities maintenance",
        "medical_supplies": "Pharmaceuticals",
        "catering": "Catering services",
        "transport_fleet": "Fleet management",
        "consulting": "Professional services",
        "training": "Skills development",
        "office_supplies": "Stationery",
        "agriculture": "Farming",
        "water_sanitation": "Water treatment",
    },
}


@dataclass(frozen=True)
class Labelled:
    tender: dict[str, str]
    sectors: frozenset[str]


def load(folder: Path = FIXTURES, labels: str = "labels.jsonl") -> list[Labelled]:
    texts = {}
    for line in (folder / "sample.jsonl").read_text().splitlines():
        row = json.loads(line)
        texts[row["id"]] = row
    known = {c.id for c in CONCEPTS}
    out = []
    for line in (folder / labels).read_text().splitlines():
        row = json.loads(line)
        unknown = set(row["sectors"]) - known
        if unknown:
            raise ValueError(f"tender {row['id']}: unknown sectors {sorted(unknown)}")
        out.append(Labelled(texts[row["id"]], frozenset(row["sectors"])))
    return out


@dataclass
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    false_positives: list[str] = field(default_factory=list)
    false_negatives: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def support(self) -> int:
        return self.tp + self.fn


def predicted(tender: Mapping[str, str], labels: Mapping[str, str]) -> dict[str, bool]:
    """Per concept: does the sector check pass for a company naming it `labels[concept]`?"""
    facts = tender_facts_from_payload(
        {
            "tender_id": 1,
            "title": tender["title"],
            "description": tender["description"],
            "category": tender["category"],
            "special_conditions": tender["special_conditions"],
        }
    )
    out = {}
    for concept, label in labels.items():
        company = company_facts_from_payload({"team_id": 1, "company_id": 1, "sectors": [label]})
        (item,) = [i for i in score(facts, company, AS_OF).checklist if i.name == "sector"]
        out[concept] = bool(item.passed)
    return out


def evaluate(data: Sequence[Labelled], wording: str = "names") -> dict[str, Counts]:
    """Counts per concept, and overall under "all" (micro-averaged over every tender x concept)."""
    labels = WORDINGS[wording]
    counts = {c: Counts() for c in [*labels, "all"]}
    for item in data:
        for concept, passed in predicted(item.tender, labels).items():
            tally(counts, concept, passed, concept in item.sectors, item.tender["id"])
    return counts


def tally(counts: Mapping[str, Counts], concept: str, said: bool, meant: bool, tender_id: str) -> None:
    for c in (counts[concept], counts["all"]):
        if said and meant:
            c.tp += 1
        elif said:
            c.fp += 1
            c.false_positives.append(tender_id)
        elif meant:
            c.fn += 1
            c.false_negatives.append(tender_id)


def agreement(first: Sequence[Labelled], second: Sequence[Labelled]) -> dict[str, Counts]:
    """The second reader's labels scored against the first's as if they were predictions: how far two people reading
    the same tenders with the same guideline agree, the ceiling a matcher can be measured against."""
    truth = {d.tender["id"]: d.sectors for d in first}
    counts = {c.id: Counts() for c in CONCEPTS}
    counts["all"] = Counts()
    for item in second:
        expected = truth[item.tender["id"]]
        for c in CONCEPTS:
            tally(counts, c.id, c.id in item.sectors, c.id in expected, item.tender["id"])
    return counts


def report(counts: Mapping[str, Counts]) -> str:
    lines = [f"{'sector':<24} {'support':>7} {'P':>6} {'R':>6} {'F1':>6}"]
    for name, c in counts.items():
        lines.append(f"{name:<24} {c.support:>7} {c.precision:>6.3f} {c.recall:>6.3f} {c.f1:>6.3f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wording", choices=sorted(WORDINGS), default="names")
    parser.add_argument("--errors", action="store_true", help="list the misclassified tenders per sector")
    parser.add_argument(
        "--heldout", action="store_true", help="score the held-out labels (never used to build the vocabulary)"
    )
    parser.add_argument(
        "--agreement",
        action="store_true",
        help="score the second readers' labels (SECOND_READINGS) against the first readers'",
    )
    args = parser.parse_args()
    if args.agreement:
        first = [*load(labels="labels.jsonl"), *load(labels="labels_heldout.jsonl")]
        for name in SECOND_READINGS:
            second = load(labels=name)
            print(f"{name}: {len(second)} tenders labelled by two readers, the second scored against the first")
            print(report(agreement(first, second)))
        return
    data = load(labels="labels_heldout.jsonl" if args.heldout else "labels.jsonl")
    if not data:
        raise SystemExit("no labelled tenders in that file yet (tests/fixtures/sector_labels/README.md)")
    counts = evaluate(data, args.wording)
    which = "held-out" if args.heldout else "labelled"
    print(f"{len(data)} {which} tenders, sectors worded as {args.wording}")
    print(report(counts))
    if args.errors:
        by_id = {d.tender["id"]: d for d in data}
        for name, c in counts.items():
            if name == "all":
                continue
            for kind, ids in (("FP", c.false_positives), ("FN", c.false_negatives)):
                for tender_id in ids:
                    d = by_id[tender_id]
                    text = " ".join(f"{d.tender['title']} | {d.tender['description']}".split())[:160]
                    print(f"{name:<22} {kind} {tender_id} {sorted(d.sectors)} [{d.tender['category'][:30]}] {text}")


if __name__ == "__main__":
    main()
