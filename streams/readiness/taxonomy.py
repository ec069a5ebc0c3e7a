"""The sector taxonomy of readiness, loaded once from `taxonomy.toml` beside this module and checked: sixteen concepts
of South African public procurement, each with the names companies give it, weighted vocabulary, the phrases that look
like it but are not, and the CIDB classes of works that count for it; and the eTenders categories that hint at
concepts. A data table, so that vocabulary is reviewed and extended without touching the matcher
(`streams.readiness.sectors`).
"""

from __future__ import annotations

import tomllib
from collections import Counter
from dataclasses import dataclass, fields
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
    twice = sorted(v for v, n in Counter(value).items() if n > 1)
    if twice:
        raise TaxonomyError(f"{where} lists a phrase twice: {', '.join(map(repr, twice))}")
    return tuple(value)


@dataclass(frozen=True)
class Frames:
    """Phrases that change what a tender's other words mean (taxonomy.toml, [frames])."""

    professional: tuple[str, ...] = ()  # a professional is appointed: the works named are its subject...
    subjects: tuple[str, ...] = ()  # ...for these concepts...
    contractor: tuple[str, ...] = ()  # ...unless a contractor is appointed too
    no_work: tuple[str, ...] = ()  # property let, sold or rented, scrap sold: no work is asked for
    outside: tuple[str, ...] = ()  # work none of the concepts is (legal services): no sector matches
    generic: tuple[str, ...] = ()  # what is done to a thing, not the thing: needs the concept's own evidence
    appointment: tuple[str, ...] = ()  # a professional's title: not evidence beside another field's own work
    places: tuple[str, ...] = ()  # "at <name> <place>" names where, not what
    goods: tuple[str, ...] = ()  # a tender for goods...
    services: tuple[str, ...] = ()  # ...shows these service concepts only by their strong phrases
    products: tuple[str, ...] = ()  # software: the words just before it name what it is for (ict only)
    vehicles: tuple[str, ...] = ()  # a vehicle: the words just before it name what it carries (transport only)
    units: tuple[str, ...] = ()  # "<name> branch of": a part of an organisation, not work


def _frames(raw: Any, ids: list[str]) -> Frames:
    if not isinstance(raw, dict):
        raise TaxonomyError("[frames] must be a table")
    names = [f.name for f in fields(Frames)]
    unknown = set(raw) - set(names)
    if unknown:
        raise TaxonomyError(f"[frames]: unknown lists {sorted(unknown)}; known: {names}")
    frames = Frames(**{k: _strings(f"frames.{k}", raw.get(k, [])) for k in names})
    for name in ("subjects", "services"):
        unknown_ids = set(getattr(frames, name)) - set(ids)
        if unknown_ids:
            raise TaxonomyError(f"frames.{name}: unknown concepts {sorted(unknown_ids)}")
    return frames


Taxonomy = tuple[tuple[Concept, ...], tuple[tuple[str, tuple[str, ...]], ...], Frames]


def load(path: Path = SOURCE) -> Taxonomy:
    """The concepts, the category hints and the frames of `path`; TaxonomyError names what is wrong."""
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
    return tuple(concepts), tuple(hints), _frames(data.get("frames", {}), ids)


CONCEPTS, CATEGORY_HINTS, FRAMES = load()
BY_ID = {c.id: c for c in CONCEPTS}
