"""Sector match: how well a tender's category and title fit the sectors a company works in, as a score 0..1 with
the matched words for the reason.

Offline and deterministic: word tokens (so "art" never matches "department"), a light suffix stemmer, generic
procurement words dropped, broad activity words ("maintenance") counted half, and a small hand-written synonym
table for South African procurement. Tender text is
turned into `TextTerms` once; a company's sectors into `SectorProfile`s once; `match_sectors` is set lookups only.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

# A sector term found in the tender only through a synonym counts for less than the word itself.
SYNONYM_WEIGHT = 0.8
# Share of one sector's terms the tender must match for the sector check to pass.
PASS_THRESHOLD = 0.5
# Activity words that fit many sectors ("maintenance", "installation") count half in a sector label: "Electrical
# maintenance" should hinge on "electrical", so a road-maintenance tender alone does not pass it.
BROAD_WEIGHT = 0.5

# Linear: one character class, and a match consumes its whole run (sector matching is otherwise set lookups).
_WORD = re.compile(r"[a-z0-9]+")

# Words every tender or category carries ("Services: General", "Supply and delivery of ...", "for a period of 36
# months"): they say nothing about the sector, and a company sector "General services" would otherwise match all.
_STOPWORDS = frozenset(
    _WORD.findall(
        """
    a about above across after all also an and any are as at be been by can each etc for from has have in incl
    including into is it its of on or other others per same such than that the their them then there these this
    those to under up upon use via was were when where which while who will with within without
    activities activity additional annual appoint appointed appointment appointments based bid bidder
    bidders bids contract contracts contractor contractors company companies deliver delivered delivery
    department departments existing functional general goods invitation item items kind month months municipal
    municipality n nec new panel period phase phases procure procurement project projects provide
    provider providers provision quotation quotations related request required requirement requirements rfb rfp rfq
    sector sectors service services supplier suppliers supplies supply support tender tenders term three two one
    various work works year years
    """
    )
)

# Longest first; (suffix, replacement). A stem keeps at least 4 letters (3 for a plural "s"), so "water" stays
# "water" and "arts" becomes "art".
_SUFFIXES = (
    ("ification", ""),
    ("isation", ""),
    ("ization", ""),
    ("ations", ""),
    ("ation", ""),
    ("icity", ""),
    ("ities", ""),
    ("ments", ""),
    ("ment", ""),
    ("ings", ""),
    ("ical", ""),
    ("ancy", ""),
    ("ions", ""),
    ("ants", ""),
    ("ity", ""),
    ("ing", ""),
    ("ion", ""),
    ("ant", ""),
    ("ers", ""),
    ("als", ""),
    ("ies", "y"),
    ("er", ""),
    ("es", ""),
    ("ed", ""),
    ("al", ""),
    ("ic", ""),
    ("e", ""),
)


# Longer words are stemmed without the cache: no real word is this long, and hostile text of distinct 20,000-letter
# tokens must not fill the cache with gigabytes.
_CACHED_WORD_CHARS = 40


def stem(word: str) -> str:
    """A light, deterministic suffix stemmer: 'electrical', 'electricity', 'electric' -> 'electr';
    'construction' -> 'construct'; 'cleaning', 'cleaners' -> 'clean'."""
    return _cached_stem(word) if len(word) <= _CACHED_WORD_CHARS else _stem(word)


def _stem(word: str) -> str:
    for suffix, replacement in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) + len(replacement) >= 4:
            return word[: len(word) - len(suffix)] + replacement
    if word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) >= 4:
        return word[:-1]
    return word


_cached_stem = functools.lru_cache(maxsize=1 << 16)(_stem)


# Synonym groups: the first word names the concept. Words and two-word phrases; each is stemmed like the text.
# Kept small and specific: a loose group ("services" ~ everything) would make every tender match every company.
# Words that name a place rather than an activity stay out: "hospital", "clinic" and "kitchen" appear in building
# tenders, "network" in water and road tenders, "Garden Route" is a district, "testing" follows every installation.
_SYNONYM_GROUPS: tuple[tuple[str, ...], ...] = (
    ("construction", "building", "builder", "civil", "renovation", "refurbishment", "bricklaying"),
    ("ict", "information technology", "software", "computer", "digital", "server", "website"),
    ("telecommunication", "telecoms", "telecom", "radio", "fibre", "broadband"),
    ("security", "guarding", "guard", "cctv", "surveillance", "armed response", "access control"),
    ("cleaning", "hygiene", "janitorial", "washroom", "sanitiser"),
    ("medical", "health", "healthcare", "pharmaceutical", "nursing", "medicine"),
    ("electrical", "electrification", "lighting", "substation"),
    ("maintenance", "repair", "servicing", "maintain"),
    ("catering", "food", "meal", "canteen"),
    ("transport", "logistics", "fleet", "courier", "freight", "vehicle"),
    ("consulting", "consultancy", "advisory", "consultant"),
    ("plumbing", "plumber", "pipe", "geyser"),
    ("water", "sewer", "sewerage", "sanitation", "wastewater", "stormwater"),
    ("road", "paving", "asphalt", "resurfacing", "gravel", "tarring"),
    ("stationery", "printing", "office supplies", "toner"),
    ("training", "education", "skills development", "learnership"),
    ("accounting", "audit", "auditing", "bookkeeping", "financial", "finance"),
    ("legal", "attorney", "lawyer", "litigation"),
    ("waste", "refuse", "rubbish", "recycling", "landfill"),
    ("landscaping", "gardening", "horticulture", "grass cutting"),
    ("hvac", "air conditioning", "refrigeration", "ventilation", "chiller"),
    ("fire", "firefighting", "fire protection", "extinguisher"),
    ("clothing", "uniform", "garment", "textile", "footwear", "ppe", "protective clothing"),
    ("furniture", "chairs", "cabinet"),
    ("travel", "accommodation", "tourism", "hotel", "lodging"),
    ("marketing", "advertising", "media", "branding"),
    ("agriculture", "farming", "livestock", "crop"),
    ("laboratory", "scientific"),
    ("mechanical", "mechanic", "machinery", "pump"),
    ("event", "conference"),
    ("pest control", "fumigation", "pest"),
    ("safety", "health and safety", "occupational health", "ohs"),
)


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _significant(word: str) -> bool:
    return len(word) >= 2 and word not in _STOPWORDS and not word.isdigit()


def _build_synonyms() -> tuple[dict[str, str], dict[tuple[str, ...], str]]:
    singles: dict[str, str] = {}
    phrases: dict[tuple[str, ...], str] = {}
    for group in _SYNONYM_GROUPS:
        concept = group[0]
        for phrase in group:
            stems = tuple(stem(w) for w in _words(phrase))
            if not 1 <= len(stems) <= _LONGEST_PHRASE:
                raise ValueError(f"synonym {phrase!r}: phrases have 1 to {_LONGEST_PHRASE} words")
            other = singles.setdefault(stems[0], concept) if len(stems) == 1 else phrases.setdefault(stems, concept)
            if other != concept:
                raise ValueError(f"synonym {phrase!r} is in two groups ({other!r} and {concept!r})")
    return singles, phrases


_LONGEST_PHRASE = 3
_CONCEPT_OF, _PHRASE_CONCEPT = _build_synonyms()
_BROAD_STEMS = frozenset(
    stem(w)
    for w in _WORD.findall(
        "maintenance maintain repair repairs installation install management design engineering technical "
        "professional equipment system systems product products material materials solution solutions "
        "infrastructure upgrade upgrading consulting"
    )
)


def _terms(text: str, *, sector_label: bool = False) -> Iterator[tuple[str, str, str | None]]:
    """(stem, words as written, concept) for each known phrase and each remaining significant word.

    A phrase takes its words: "health and safety" is occupational safety, not a "health" term for medical
    suppliers. A phrase's stem holds spaces, so it never equals a single word's stem.
    """
    words = _words(text)
    stems = [stem(w) for w in words]
    i = 0
    while i < len(words):
        for n in range(min(_LONGEST_PHRASE, len(words) - i), 1, -1):
            concept = _PHRASE_CONCEPT.get(tuple(stems[i : i + n]))
            if concept is not None:
                yield " ".join(stems[i : i + n]), " ".join(words[i : i + n]), concept
                i += n
                break
        else:
            word, s = words[i], stems[i]
            i += 1
            if sector_label and word == "it":
                # "IT" in a sector label means information technology; in tender text "it" is a pronoun.
                yield "ict", "IT", "ict"
            elif _significant(word):
                yield s, word, _CONCEPT_OF.get(s)


@dataclass(frozen=True)
class TextTerms:
    """A text's significant stems (words and known phrases) and synonym concepts, with the words the text used
    for each, for reasons."""

    stems: frozenset[str]
    concepts: frozenset[str]
    stem_words: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False, repr=False)
    concept_words: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False, repr=False)


def text_terms(*texts: str | None) -> TextTerms:
    """Terms of a tender's category, title and description, computed once per tender."""
    stems: dict[str, str] = {}
    concepts: dict[str, str] = {}
    for text in texts:
        if not text:
            continue
        for s, written, concept in _terms(text):
            stems.setdefault(s, written)
            if concept is not None:
                concepts.setdefault(concept, written)
    return TextTerms(frozenset(stems), frozenset(concepts), MappingProxyType(stems), MappingProxyType(concepts))


@dataclass(frozen=True)
class SectorTerm:
    word: str  # as the company wrote it (lowercased), for the reason
    stem: str
    concept: str | None
    weight: float = 1.0


@dataclass(frozen=True)
class SectorProfile:
    """One of a company's sectors, reduced to the terms a tender must show; computed once per company."""

    label: str
    terms: tuple[SectorTerm, ...]

    @property
    def total_weight(self) -> float:
        return sum(t.weight for t in self.terms)


def sector_profile(label: str) -> SectorProfile:
    terms: dict[str, SectorTerm] = {}
    for s, written, concept in _terms(label, sector_label=True):
        terms.setdefault(s, SectorTerm(written, s, concept, BROAD_WEIGHT if s in _BROAD_STEMS else 1.0))
    return SectorProfile(label, tuple(terms.values()))


def sector_profiles(labels: Iterable[str]) -> tuple[SectorProfile, ...]:
    return tuple(sector_profile(label) for label in labels)


@dataclass(frozen=True)
class SectorMatch:
    # 0..1: the best sector's weighted share of matched terms, a synonym counting SYNONYM_WEIGHT
    score: float
    sector: str | None  # the best-matching sector label; None when nothing matched
    matched: tuple[tuple[str, str], ...]  # (sector word, tender word) of the best sector
    missing: tuple[str, ...]  # words of the best sector the tender does not show
    reason: str

    @property
    def passed(self) -> bool:
        return self.score >= PASS_THRESHOLD


def _quote(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"


def match_sectors(tender: TextTerms, profiles: Sequence[SectorProfile]) -> SectorMatch:
    """Score the tender against each of the company's sectors; the best one counts (the first listed on a tie)."""
    usable = [p for p in profiles if p.terms]
    if not usable:
        why = "Your profile lists no sectors" if not profiles else "Your sectors name no specific activity"
        return SectorMatch(0.0, None, (), (), f"{why}, so the tender's sector could not be matched")
    stems, concepts = tender.stems, tender.concepts
    best, best_score = usable[0], -1.0
    for profile in usable:
        total = 0.0
        for term in profile.terms:
            if term.stem in stems:
                total += term.weight
            elif term.concept is not None and term.concept in concepts:
                total += term.weight * SYNONYM_WEIGHT
        score = total / profile.total_weight
        if score > best_score:
            best, best_score = profile, score
    if best_score == 0.0:
        labels = ", ".join(f"'{p.label}'" for p in usable)
        return SectorMatch(
            0.0, None, (), (), f"No word from your sectors ({labels}) appears in the tender's category or title"
        )
    # Only the winner is looked at again, for its reason: the loop above stays set lookups.
    matched: list[tuple[str, str]] = []
    missing: list[str] = []
    for term in best.terms:
        if term.stem in stems:
            matched.append((term.word, tender.stem_words.get(term.stem, term.word)))
        elif term.concept is not None and term.concept in concepts:
            matched.append((term.word, tender.concept_words.get(term.concept, term.concept)))
        else:
            missing.append(term.word)
    shown = [f"'{w}'" if w.lower() == t else f"'{w}' (as '{t}')" for w, t in matched]
    reason = f"Matched {_quote(shown)} from your sector '{best.label}'"
    if missing:
        not_found = [f"'{w}'" for w in missing]
        reason += f"; {_quote(not_found)} not found"
    return SectorMatch(best_score, best.label, tuple(matched), tuple(missing), reason)
