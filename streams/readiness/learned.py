"""A sector guess learned from the labelled tenders, for the tenders the rules find no sector in (rules version 12).

The phrase rules (`streams.readiness.sectors`) name their evidence but only know the vocabulary they were written
from; on tenders they have never read, most misses are tenders in which they find nothing at all ("DR storage support
and maintenance renewals"). For those alone a logistic regression per concept, trained on the tuning set of
`tests/fixtures/sector_labels` (`python -m bench.sector_learned --write`; never on the held-out labels), names the
one concept it is fairly sure of (probability at least `threshold`), with the words that weighed most for it as the
evidence. Its weights are data (`learned.json` beside this module), loaded once and checked at import.

Features: the words (two or more characters, starting with a letter) and adjacent word pairs of the title and
description, and the words of the eTenders category ("cat:" + word); binary, scaled by one over the square root of
their number. Pure Python at run time; linear in the text.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from streams.readiness.taxonomy import BY_ID, TaxonomyError

SOURCE = Path(__file__).with_name("learned.json")
_WORD = re.compile(r"[a-z][a-z0-9]+")
_CATEGORY = "cat:"
EVIDENCE_WORDS = 4  # the features named as evidence


def features(category: str | None, *texts: str | None) -> frozenset[str]:
    """The features of a tender's category and texts (title, description)."""
    ws = _WORD.findall(" ".join(t or "" for t in texts).lower())
    out = set(ws) | {f"{a}_{b}" for a, b in itertools.pairwise(ws)}
    out.update(_CATEGORY + w for w in _WORD.findall((category or "").lower()))
    return frozenset(out)


def readable(feature: str) -> str:
    """A feature as the checklist names it: "storage", "support and", "category: information"."""
    if feature.startswith(_CATEGORY):
        return f"category: {feature[len(_CATEGORY) :]}"
    return feature.replace("_", " ")


@dataclass(frozen=True)
class Guess:
    concept: str
    probability: float
    threshold: float  # the model's: what a guess needs
    words: tuple[str, ...]  # readable features that weighed most for it, strongest first


@dataclass(frozen=True)
class Model:
    threshold: float
    trained_on: str
    bias: Mapping[str, float]
    weights: Mapping[str, Mapping[str, float]]  # concept -> feature -> weight (zeros left out)

    def probabilities(self, found: frozenset[str]) -> dict[str, float]:
        scale = 1.0 / max(1.0, math.sqrt(len(found)))
        out = {}
        for concept, weights in self.weights.items():
            z = self.bias[concept] + scale * sum(weights.get(f, 0.0) for f in found)
            out[concept] = 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))
        return out

    def guess(self, found: frozenset[str]) -> Guess | None:
        """The one concept the model is at least `threshold` sure of (the likeliest), or None; never on the category
        alone: the words of the title and description must weigh for it themselves (issue 15: a category is evidence
        only with support in the text)."""
        probabilities = self.probabilities(found)
        if not found or not probabilities:
            return None
        concept = max(sorted(probabilities), key=probabilities.__getitem__)
        if probabilities[concept] < self.threshold:
            return None
        weights = self.weights[concept]
        if sum(weights.get(f, 0.0) for f in found if not f.startswith(_CATEGORY)) <= 0.0:
            return None
        ranked = sorted((f for f in found if weights.get(f, 0.0) > 0.0), key=lambda f: (-weights[f], f))
        words = tuple(readable(f) for f in ranked[:EVIDENCE_WORDS])
        return Guess(concept, probabilities[concept], self.threshold, words)


def _number(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TaxonomyError(f"{SOURCE.name}: {where} must be a finite number, not {value!r}")
    return float(value)


def parse(data: Any) -> Model:
    """The model from `learned.json`'s content, checked: known concepts, finite numbers, a threshold in (0, 1)."""
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("weights"), dict)
        or not isinstance(data.get("bias"), dict)
    ):
        raise TaxonomyError(f"{SOURCE.name}: expected an object with 'threshold', 'trained_on', 'bias' and 'weights'")
    threshold = _number("threshold", data.get("threshold"))
    if not 0.0 < threshold < 1.0:
        raise TaxonomyError(f"{SOURCE.name}: threshold must be between 0 and 1, not {threshold}")
    concepts = set(data["weights"]) | set(data["bias"])
    unknown = sorted(concepts - set(BY_ID))
    if unknown or set(data["weights"]) != set(data["bias"]):
        raise TaxonomyError(f"{SOURCE.name}: unknown or unpaired concepts {unknown or sorted(concepts)}")
    weights = {}
    for concept, table in data["weights"].items():
        if not isinstance(table, dict):
            raise TaxonomyError(f"{SOURCE.name}: weights.{concept} must be an object of feature -> weight")
        weights[concept] = MappingProxyType({f: _number(f"weights.{concept}.{f}", w) for f, w in table.items()})
    bias = {c: _number(f"bias.{c}", b) for c, b in data["bias"].items()}
    return Model(threshold, str(data.get("trained_on", "")), MappingProxyType(bias), MappingProxyType(weights))


MODEL = parse(json.loads(SOURCE.read_text()))
