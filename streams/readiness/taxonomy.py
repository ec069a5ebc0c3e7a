"""The sector taxonomy of readiness, loaded once from `taxonomy.toml` beside this module and checked: sixteen concepts
of South African public procurement, each with the names companies give it, weighted vocabulary, the phrases that look
like it but are not, and the CIDB classes of works that count for it; and the eTenders categories that hint at
concepts. A data table, so that vocabulary is reviewed and extended without touching the matcher
(`streams.readiness.sectors`).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STRONG = 1.0
MEDIUM = 0.6
WEAK = 0.3

SOURCE = Path(__file__).with_name("taxonomy.toml")
_LISTS = ("labels", "strong", "medium", "weak", "exclude", "cidb")


class TaxonomyError(ValueError):
    """taxonomy.toml is not what the matcher needs (a broken edit): raised at import, naming the entry."""


@dataclass(frozen=True)
class Concept:
    id: str
    name: str
    labels: tuple[str, ...]  # how a company names it (its name and id always count too)
    strong: tuple[str, ...]  # phrases that show the work on their own
    medium: tuple[str, ...] = ()  # phrases that mostly do
    weak: tuple[str, ...] = ()  # phrases that need support
    exclude: tuple[str, ...] = ()  # phrases whose words never count for this concept
    cidb: tuple[str, ...] = ()  # CIDB classes of works whose requirement counts as medium evidence


def _strings(where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise TaxonomyError(f"{where} must be a list of non-empty strings")
    if len(set(value)) != len(value):
        raise TaxonomyError(f"{where} lists a phrase twice")
    return tuple(value)


def load(path: Path = SOURCE) -> tuple[tuple[Concept, ...], tuple[tuple[str, tuple[str, ...]], ...]]:
    """The concepts and the category hints of `path`; TaxonomyError names what is wrong."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    concepts: list[Concept] = []
    for n, raw in enumerate(data.get("concept", [])):
        unknown = set(raw) - {"id", "name", *_LISTS}
        if unknown or not isinstance(raw.get("id"), str) or not isinstance(raw.get("name"), str):
            raise TaxonomyError(f"concept {n}: needs a string id and name, and only {_LISTS} besides ({unknown})")
        lists = {k: _strings(f"concept {raw['id']}.{k}", raw.get(k, [])) for k in _LISTS}
        if not lists["strong"]:
            raise TaxonomyError(f"concept {raw['id']}: no strong phrase")
        concepts.append(Concept(raw["id"], raw["name"], **lists))
    ids = [c.id for c in concepts]
    if not concepts or len(set(ids)) != len(ids):
        raise TaxonomyError(f"concept ids must be present and unique: {ids}")
    hints: list[tuple[str, tuple[str, ...]]] = []
    for n, raw in enumerate(data.get("category", [])):
        words, named = raw.get("words"), _strings(f"category {n}.concepts", raw.get("concepts"))
        if not isinstance(words, str) or not words.strip() or set(named) - set(ids):
            raise TaxonomyError(f"category {n}: needs words and known concepts, got {words!r} -> {named}")
        hints.append((words, named))
    return tuple(concepts), tuple(hints)


CONCEPTS, CATEGORY_HINTS = load()
BY_ID = {c.id: c for c in CONCEPTS}
