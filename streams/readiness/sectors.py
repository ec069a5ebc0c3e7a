"""Sector match: how clearly a tender asks for the work of a company's sectors, as a strength 0..1 with the evidence
for the reason.

Company sectors are mapped once to concepts of a fixed taxonomy (`streams.readiness.taxonomy`: sixteen concepts, each
with the names companies give it, weighted vocabulary and the phrases that look like it but are not). A tender is
read once into evidence per concept: the vocabulary its title and description use (a phrase inside a longer matched
phrase is not counted again, an excluded phrase hides its words from that concept, and the name of a department,
"Department of Water and Sanitation", is never evidence of its work), its CIDB classes of works, and its eTenders
category, which only supports evidence the text already gives. The strength of a concept is its evidence summed,
capped at 1; a sector passes at PASS_THRESHOLD. When no concept passes, the one concept a model learned from the
labelled tenders is fairly sure of passes weakly (`streams.readiness.learned`), named with the words it weighed,
unless the tender uses that concept's own vocabulary (the rules have judged it). A sector the taxonomy does not know
is matched on its own words.

Deterministic and offline; linear in the text (one pass of dictionary lookups over at most LONGEST_PHRASE words per
position).
"""

from __future__ import annotations

import bisect
import functools
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from streams.readiness import learned
from streams.readiness.taxonomy import (
    BY_ID,
    CATEGORY_HINTS,
    CONCEPTS,
    FRAMES,
    MEDIUM,
    STRONG,
    WEAK,
    TaxonomyError,
)

# A learned guess passes with PASS_THRESHOLD to GUESS_CEILING: below a clear match on the rules' evidence.
GUESS_CEILING = 0.8
# Evidence a sector needs to pass: one strong term, one medium term, or weak terms with support.
PASS_THRESHOLD = 0.6
# What the eTenders category adds to a concept the text already shows (it never counts alone). Rules version 10: as
# much as a medium phrase (fitted with DOMINANCE on the 1,953 labelled tenders, see bench/README.md).
CATEGORY_WEIGHT = MEDIUM
# A CIDB class of works the tender requires (e.g. 6CE) counts as this much evidence for its concept.
CIDB_WEIGHT = MEDIUM
# A concept whose evidence is below this share of the strongest concept's counts in proportion (mentioned in passing).
# Rules version 10: 0.7 (was 0.5), fitted with CATEGORY_WEIGHT.
DOMINANCE = 0.7
# The strongest concept's evidence is capped at this when compared: a long list of one trade's words should not
# make a second trade the tender clearly asks for look incidental.
TOP_CAP = 2.0
# Words of a sector label the tender must show when the taxonomy does not know the label.
LITERAL_THRESHOLD = 0.5
# A trade's work named as the subject of a professional appointment counts this much of its evidence (below a pass
# for one strong phrase): the professional is hired, not the trade.
SUBJECT_SCALE = 0.5

# Linear: one character class, and a match consumes its whole run.
_WORD = re.compile(r"[a-z0-9]+")
# Words that name nothing on their own, in a sector label the taxonomy does not know ("General services").
_FILLER = frozenset(
    _WORD.findall(
        """
    a an and any are as at by for from in incl including into is it of on or other per the to with all general
    goods item items kind products product provision provider providers service services solution solutions supplier
    suppliers supplies supply various work works related activities activity
    """
    )
)
# After these, the name of an organisation follows: its words are not evidence of the work asked for.
_ORG_STARTS = (("department", "of"), ("dept", "of"), ("ministry", "of"), ("office", "of", "the"))
# Words that end an organisation's name ("Department of Health IN Limpopo", "... FOR a period").
_ORG_ENDS = frozenset(
    ["", *_WORD.findall("for at in to on the a an with by from during as per via within under who which that")]
)
_ORG_MAX_WORDS = 8
_ORG_FIRST = frozenset(start[0] for start in _ORG_STARTS)


# A rating written onto its number ("22kV", "500kva", "40MVA") is read as its unit.
_RATING = re.compile(r"[0-9]+(kv|kva|mva|mw|kw|kwp|mwp|kwh|mwh)")


def fold(word: str) -> str:
    """Plural folded: 'pumps' -> 'pump', 'facilities' -> 'facility'; short words ('ups', 'gas', 'dams') kept; a
    rating read as its unit: '22kv' -> 'kv'."""
    if word[:1].isdigit():
        rating = _RATING.fullmatch(word)
        return rating.group(1) if rating else word
    if len(word) >= 5 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) >= 5 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


_CACHED_WORD_CHARS = 40  # longer tokens are folded without the cache (hostile text must not fill it)
_cached_fold = functools.lru_cache(maxsize=1 << 16)(fold)


def words(text: str) -> list[str]:
    """Lowercase words with accents dropped ("crèche" = "creche"), plurals folded and "&" read as "and"
    ("Control & Instrumentation" = "control and instrumentation", "C&I" = "c and i")."""
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    if "&" in text:
        text = text.replace("&", " and ")
    return [_cached_fold(w) if len(w) <= _CACHED_WORD_CHARS else fold(w) for w in _WORD.findall(text.lower())]


Phrase = tuple[str, ...]


@dataclass(frozen=True)
class _Entry:
    concept: str
    weight: float  # 0 = an exclusion


def _compile() -> tuple[dict[Phrase, tuple[_Entry, ...]], int]:
    table: dict[Phrase, dict[str, float]] = {}
    clashes: list[str] = []
    for concept in CONCEPTS:
        for weight, phrases in ((STRONG, concept.strong), (MEDIUM, concept.medium), (WEAK, concept.weak)):
            for phrase in phrases:
                key = tuple(words(phrase))
                if not key:
                    raise TaxonomyError(f"{concept.id}: phrase {phrase!r} has no words")
                slot = table.setdefault(key, {})
                slot[concept.id] = max(slot.get(concept.id, 0.0), weight)
        for phrase in concept.exclude:
            key = tuple(words(phrase))
            if not key:
                raise TaxonomyError(f"{concept.id}: exclusion {phrase!r} has no words")
            slot = table.setdefault(key, {})
            if slot.get(concept.id, 0.0) > 0.0:
                clashes.append(f"{concept.id}: {phrase!r}")
            slot[concept.id] = 0.0
    if clashes:
        raise TaxonomyError(f"phrases both vocabulary and an exclusion of one concept (after folding): {clashes}")
    compiled = {k: tuple(_Entry(c, w) for c, w in sorted(v.items())) for k, v in table.items()}
    return compiled, max(len(k) for k in compiled)


_TABLE, LONGEST_PHRASE = _compile()

# Misspelt vocabulary ("wasterwater", "instalation", "refurbihment"): a long word the vocabulary does not know that
# is one long vocabulary word with one letter added or dropped inside it (not at its end: "provide" and "provider",
# "deliver" and "delivery" are both words) is read as that word. A changed letter is left alone ("shopping" is no
# misspelt "shipping"), and words the vocabulary knows, exclusions included, are never changed.
_TYPO_MIN = 8
_TYPO_MAX = 30
_KNOWN = frozenset(w for key in _TABLE for w in key)
_BY_DELETION: dict[str, set[str]] = {}
for _long in _KNOWN:
    if len(_long) >= _TYPO_MIN and _long.isalpha():
        for _i in range(len(_long) - 1):
            _BY_DELETION.setdefault(_long[:_i] + _long[_i + 1 :], set()).add(_long)


def corrected(word: str) -> str:
    """`word` as the vocabulary spells it, when it misspells exactly one long vocabulary word; else `word`."""
    if not _TYPO_MIN <= len(word) <= _TYPO_MAX or word in _KNOWN or not word.isalpha():
        return word  # checked before the cache: a hostile text's long tokens never become cache keys
    return _corrected(word)


@functools.lru_cache(maxsize=1 << 14)
def _corrected(word: str) -> str:
    near = set(_BY_DELETION.get(word, ()))  # a letter dropped
    for i in range(len(word) - 1):  # a letter added
        shorter = word[:i] + word[i + 1 :]
        if shorter in _KNOWN and len(shorter) >= _TYPO_MIN:
            near.add(shorter)
    return near.pop() if len(near) == 1 else word


def _phrase_set(where: str, phrases: Iterable[str]) -> frozenset[Phrase]:
    keys = [tuple(words(p)) for p in phrases]
    if not all(keys):
        raise TaxonomyError(f"frames.{where}: a phrase has no words")
    return frozenset(keys)


_PROFESSIONAL = _phrase_set("professional", FRAMES.professional)
_CONTRACTOR = _phrase_set("contractor", FRAMES.contractor)
_NO_WORK = _phrase_set("no_work", FRAMES.no_work)
_OUTSIDE = _phrase_set("outside", FRAMES.outside)
_PLACES = _phrase_set("places", FRAMES.places)
_PRODUCTS = _phrase_set("products", FRAMES.products)
_VEHICLES = _phrase_set("vehicles", FRAMES.vehicles)
_UNITS = _phrase_set("units", FRAMES.units)
_SUBJECTS = frozenset(FRAMES.subjects)
_GOODS = _phrase_set("goods", FRAMES.goods)
_SERVICES = frozenset(FRAMES.services)
# Upkeep of the works of several trades at once (building, civil, mechanical, electrical...) is facilities management.
_UPKEEP = frozenset({("maintenance",), ("repair",), ("repairs",)})
_SEVERAL_TRADES = 3
_MULTI_TRADE_CONCEPT = "facilities_management"
MULTI_TRADE_EVIDENCE = "maintenance across several trades"
if _MULTI_TRADE_CONCEPT not in BY_ID:
    raise TaxonomyError(f"the taxonomy has no {_MULTI_TRADE_CONCEPT!r} concept")
# Professionals: the trade their title governs first ("consultants FOR civil engineering services", "engineering
# consultants FOR electrical construction") is their discipline, which the subject rules weigh
# (`TenderEvidence.scaled`), not another trade's object; further on it names what they study or review.
_PROFESSIONAL_CONCEPT = "consulting"
_DISCIPLINE_REACH = 2  # words after the link: "for [professional] electrical engineering"
# "consultants for THE electrification of 300 houses": a project, whose works stay the professional's subject.
_ARTICLES = frozenset({"the", "a", "an"})
_DISCIPLINE_OWNER = "consulting discipline"  # the first words a professional's title governs (in `_object_spans`)
# A professional's title: a consulting phrase ending in one of these ("panel of consultants", "consulting engineers").
_TITLE_WORDS = frozenset({"consultant", "consultants", "consultancy", "engineer", "engineers"})
if _PROFESSIONAL_CONCEPT not in BY_ID:
    raise TaxonomyError(f"the taxonomy has no {_PROFESSIONAL_CONCEPT!r} concept")
_DISCIPLINE_SEEN_BY = _SUBJECTS | {_PROFESSIONAL_CONCEPT}  # the concepts a discipline span does not hide
# Generic phrases as evidence names them (folded words joined by spaces).
_GENERIC = frozenset(" ".join(p) for p in _phrase_set("generic", FRAMES.generic))
_APPOINTMENT = frozenset(" ".join(p) for p in _phrase_set("appointment", FRAMES.appointment))
# The frames found by phrase, in one pass over a tender's words: phrase -> the frames it belongs to.
_FRAME_PHRASES: dict[str, frozenset[Phrase]] = {
    "professional": _PROFESSIONAL,
    "contractor": _CONTRACTOR,
    "no_work": _NO_WORK,
    "outside": _OUTSIDE,
    "goods": _GOODS,
    "products": _PRODUCTS,
    "vehicles": _VEHICLES,
    "units": _UNITS,
    "upkeep": _UPKEEP,
}
# Products whose qualifiers count for one concept only: frame -> its concept, and the words that end the qualifiers
# ("human resource AND payroll system" is one product; "armed guards AND vehicle hire" are two things).
_PRODUCT_OWNERS = {"products": ("ict", _ORG_ENDS), "vehicles": ("transport_fleet", _ORG_ENDS | {"and", "or"})}
for _owner, _ in _PRODUCT_OWNERS.values():
    if _owner not in BY_ID:
        raise TaxonomyError(f"the taxonomy has no {_owner!r} concept")
_FRAME_TABLE: dict[Phrase, tuple[str, ...]] = {}
for _name, _phrases in _FRAME_PHRASES.items():
    for _phrase in _phrases:
        _FRAME_TABLE[_phrase] = (*_FRAME_TABLE.get(_phrase, ()), _name)
_FRAME_LONGEST = max(len(p) for p in _FRAME_TABLE)
Spans = list[tuple[int, int]]


def _frame_matches(ws: Sequence[str]) -> dict[str, Spans]:
    """Per frame, where its phrases occur in `ws` (one pass, at most _FRAME_LONGEST lookups per position)."""
    out: dict[str, Spans] = {name: [] for name in _FRAME_PHRASES}
    for i in range(len(ws)):
        for n in range(1, min(_FRAME_LONGEST, len(ws) - i) + 1):
            for name in _FRAME_TABLE.get(tuple(ws[i : i + n]), ()):
                out[name].append((i, i + n))
    return out


# Every proper prefix of a phrase: reading stops at the first word sequence that starts no phrase (most words).
_PREFIXES = frozenset(key[:n] for key in _TABLE for n in range(1, len(key)))
_CATEGORY_RULES = tuple((tuple(words(rule)), concepts) for rule, concepts in CATEGORY_HINTS)
_CIDB_CONCEPTS: dict[str, tuple[str, ...]] = {}
for _concept in CONCEPTS:
    for _code in _concept.cidb:
        _CIDB_CONCEPTS[_code] = (*_CIDB_CONCEPTS.get(_code, ()), _concept.id)


def _org_spans(ws: Sequence[str], breaks: frozenset[int] = frozenset()) -> list[tuple[int, int]]:
    """'Department of Health in Limpopo': the name runs to a word of _ORG_ENDS, at most _ORG_MAX_WORDS words, and
    never past the end of its clause ("Department of Education: construction of a school")."""
    spans = []
    for i in range(len(ws)):
        start = _org_start(ws, i)
        if start is not None:
            j = i + len(start)
            end = j
            while end < len(ws) and end - j < _ORG_MAX_WORDS and ws[end] not in _ORG_ENDS and end not in breaks:
                end += 1
            spans.append((j, end))
    return spans


def _org_start(ws: Sequence[str], i: int) -> tuple[str, ...] | None:
    """The words of _ORG_STARTS that begin an organisation's name at `i` ("department of"), if any."""
    if ws[i] not in _ORG_FIRST:
        return None
    return next((start for start in _ORG_STARTS if tuple(ws[i : i + len(start)]) == start), None)


_STREET = frozenset(_WORD.findall("road street avenue drive lane crescent way boulevard"))


def _address_spans(ws: Sequence[str]) -> list[tuple[int, int]]:
    """'370 Riverdene Road': a number, up to three words of a name, a street word. An address is not evidence of
    roadworks. A name has no function words: "four (04) contractors for routine road maintenance" is no address."""
    spans = []
    for i, word in enumerate(ws):
        if word.isdigit():
            for j in range(i + 2, min(i + 5, len(ws)) + 1):
                if ws[j - 2] in _ORG_ENDS and j - 2 > i:
                    break
                if ws[j - 1] in _STREET:
                    spans.append((i, j))
                    break
    return spans


# Words an acronym's letters skip ("Recognition of Prior Learning (RPL)").
_ACRONYM_SKIPS = frozenset(_WORD.findall("of and the for in on to a an"))
_ACRONYM_LETTERS = range(2, 7)
# How far back an acronym's words may reach, per letter: its word and the skipped words beside it. Bounded, so that a
# text of skip words ("to to to ...") costs linear time, not quadratic.
_ACRONYM_REACH_PER_LETTER = 3


def _acronym_spans(ws: Sequence[str]) -> Spans:
    """Every occurrence of an acronym the text defines ("Reactor Pool Liners (RPL)"): it stands for the words
    before it, which are read as they are, not for what the same letters name in the taxonomy (RPL = recognition of
    prior learning)."""
    defined = set()
    for i, word in enumerate(ws):
        if len(word) not in _ACRONYM_LETTERS or not word.isalpha() or i == 0:
            continue
        initials: list[str] = []
        j = i - 1
        stop = max(-1, i - 1 - _ACRONYM_REACH_PER_LETTER * len(word))
        while j > stop and ws[j] and len(initials) < len(word):
            if ws[j] not in _ACRONYM_SKIPS:
                initials.append(ws[j][0])
            j -= 1
        if "".join(reversed(initials)) == word:
            defined.add(word)
    return [(i, i + 1) for i, word in enumerate(ws) if word in defined]


# "... on the remainder of portion 7 of the farm Wonderfontein 258 JP": a land parcel's name, not farming.
_PARCEL_WORDS = frozenset({"farm"})
_PARCEL_REACH = 3
# "... portion 7 of the farm Wonderfontein 258 JP", "rezoning of farm Bultfontein 396", "situated at farm Rietvly 276"
_PARCEL_BEFORE = frozenset({"the", "of", "at", "on"})


def _parcel_spans(ws: Sequence[str]) -> Spans:
    return [
        (i, i + 1)
        for i, word in enumerate(ws)
        if word in _PARCEL_WORDS
        and i > 0
        and ws[i - 1] in _PARCEL_BEFORE
        and any(w[:1].isdigit() for w in ws[i + 1 : i + 1 + _PARCEL_REACH])
    ]


# "Diesel mechanic training", "training for MV/LV line construction": the words around a training course name its
# subject, not work of another sector.
_FRAME_WORDS = frozenset({"training", "certificate", "learnership", "course"})
_FRAME_BEFORE = 3
_FRAME_JOINS = frozenset({"and"})
_FRAME_LINKS = frozenset({"for", "on", "in", "of"})
# A certificate, learnership or course is a course only "in" its subject ("occupational certificate in plumber"): a
# "certificate of compliance for the electrical installation" is electrical work.
_FRAME_ONLY_IN = frozenset({"certificate", "learnership", "course"})
# "training intervention in the field of ...": one such word may stand between the course and its link.
_FRAME_NOUNS = frozenset(_WORD.findall("intervention interventions programme programmes session sessions workshop"))
# ...but the words before a learnership are always its subject ("construction roads learnerships for the period").
_FRAME_SUBJECT_BEFORE = frozenset({"learnership"})
_ACROSS = _FRAME_LINKS | {"a", "an", "the"}
_FRAME_AFTER = 10


def _frame_spans(ws: Sequence[str]) -> list[tuple[int, int]]:
    spans = []
    for i, word in enumerate(ws):
        if word in _FRAME_WORDS:
            start, named = i, 0
            # up to _FRAME_BEFORE words of its subject, "and" not counted ("fleet and transport management
            # training"), never across a text boundary, never more than twice as many words in all
            while start > 0 and named < _FRAME_BEFORE and i - start < 2 * _FRAME_BEFORE and ws[start - 1] != "":
                start -= 1
                named += ws[start] not in _FRAME_JOINS
            end = i + 1
            if end + 1 < len(ws) and ws[end] in _FRAME_NOUNS and ws[end + 1] in _FRAME_LINKS:
                end += 1
            links = {"in"} if word in _FRAME_ONLY_IN else _FRAME_LINKS
            if end < len(ws) and ws[end] in links:
                end += 1
                # "training of 25 learners for apprenticeship trade in electrical": across further links
                while end < len(ws) and end - i <= _FRAME_AFTER and (ws[end] not in _ORG_ENDS or ws[end] in _ACROSS):
                    end += 1
            elif word in _FRAME_ONLY_IN and word not in _FRAME_SUBJECT_BEFORE:
                continue  # "an electrical compliance certificate": not a course, its words are work
            spans.append((start, end))
    return spans


# How far back the words that qualify a product or name an organisation's unit reach.
_MODIFIERS = 4


def _modifier_spans(ws: Sequence[str], heads: Spans, ends: frozenset[str] = _ORG_ENDS) -> Spans:
    """Each head (where it occurs in `ws`) with the words just before it (up to _MODIFIERS, never across a text
    boundary or a word of `ends`; by default 'and' joins them: "human resource and payroll system")."""
    spans = []
    for i, j in heads:
        start = i
        while start > 0 and i - start < _MODIFIERS and ws[start - 1] not in ends:
            start -= 1
        spans.append((start, j))
    return spans


# "... at Midmar Dam access roads project", "at Esselen Substation", "in Tlokoeng Landfill Site", "lifts in various
# government buildings": where the work is done, not what it is. The words between "at" (or "in") and the place must
# name it ("at all substations" is not a name), and the name runs on to its last place word before a function word
# ("at Goedertrouw Dam", "at the Aquaculture Demonstration Centre, Gariep Dam").
_NOT_NAMES = frozenset(_WORD.findall("the all various any our its their a an each every other these those"))


_PLACE_STARTS = frozenset({"at", "in"})


def _place_spans(ws: Sequence[str]) -> list[tuple[int, int]]:
    spans = []
    for i, word in enumerate(ws):
        if word not in _PLACE_STARTS:
            continue
        last = None  # where the place named so far ends
        for j in range(i + 2, min(i + 2 + _ORG_MAX_WORDS, len(ws))):
            if ws[j] == "" or (last is not None and ws[j] in _ORG_ENDS):
                break
            # `j + n <= len(ws)`: a one-word slice at the very end is not a two-word place.
            end = next((j + n for n in (2, 1) if j + n <= len(ws) and tuple(ws[j : j + n]) in _PLACES), None)
            if end is not None:
                if all(w in _NOT_NAMES for w in ws[i + 1 : j]):
                    break
                last = end
        if last is not None:
            spans.append((i + 1, last))
    return spans


# "Design, manufacture, testing, training, supply and delivery of ...": training as one step of a works contract.
_WORKS_STEPS = frozenset(
    _WORD.findall(
        "design manufacture manufacturing testing commissioning commission installation install supply delivery"
        " erection support"
        " maintenance operation operator"
    )
)
_STEP_REACH = 3
# "commissioning training", "product training", "end user training": one step (or the product or its user) right
# before it is enough ("operator training" is a course).
_STEP_BEFORE = frozenset(_WORD.findall("commissioning testing installation erection product user"))


def _listed_steps(ws: Sequence[str]) -> list[tuple[int, int]]:
    """Positions of 'training' among the steps of a works contract (hidden from the training concept)."""
    spans = []
    for i, word in enumerate(ws):
        if word in _FRAME_WORDS:
            near = [*ws[max(0, i - _STEP_REACH) : i], *ws[i + 1 : i + 1 + _STEP_REACH]]
            if sum(w in _WORKS_STEPS for w in near) >= 2 or (i > 0 and ws[i - 1] in _STEP_BEFORE):
                spans.append((i, i + 1))
    return spans


# "Supply of control cables FOR THE RAISING OF CLANWILLIAM DAM PROJECT", "reinforcing TO MZIMVUBU WATER PROJECT": once
# the text has named what it asks for, "for / to ... project" names the project it serves, not more work.
_PURPOSE_WORDS = frozenset({"for", "to"})
_PURPOSE_ENDS = frozenset(_WORD.findall("project projects programme"))
_PURPOSE_REACH = 12


def _purpose_spans(ws: Sequence[str], asked_before: int) -> Spans:
    """'for ... project' spans that start after position `asked_before` (where the first specific phrase ends)."""
    spans = []
    for i in range(asked_before, len(ws)):
        if ws[i] not in _PURPOSE_WORDS:
            continue
        for j in range(i + 1, min(i + 1 + _PURPOSE_REACH, len(ws))):
            if ws[j] == "":
                break
            if ws[j] in _PURPOSE_ENDS:
                spans.append((i + 1, j + 1))
                break
    return spans


# Punctuation that ends a clause: what a link governs stops there ("renovations to the hall (engineering consultant)").
_CLAUSE_BREAK = re.compile(r"[():;]")
# "cleaning services FOR offices and ablutions", "electrical repairs TO an existing borehole system", "cleaning OF
# storage tanks": after a trade's own strong phrase, what follows such a link is what the work is done on or for, not
# another trade's work.
_OBJECT_LINKS = frozenset({"for", "to", "on", "of"})
_OBJECT_GAP = 1  # words between the phrase and the link ("electrical REPAIRS to")
_OBJECT_REACH = 6


def _is_measure(word: str) -> bool:
    """A quantity written with its unit ("7ml", "20mw"), not a count ("28")."""
    return word[:1].isdigit() and not word.isdigit()


def _object_spans(
    ws: Sequence[str], kept: Mapping[str, Sequence[tuple[int, int, float, str]]], breaks: frozenset[int]
) -> dict[str, Spans]:
    """Per concept, the words its strong specific phrases' links govern (hidden from every other concept), up to the
    end of the clause (`breaks`: positions where a bracket, colon or semicolon stood)."""
    out: dict[str, Spans] = {}
    for concept, matches in kept.items():
        for _, end, weight, phrase in matches:
            if weight < STRONG or phrase in _GENERIC:
                continue
            for link in range(end, min(end + _OBJECT_GAP + 1, len(ws))):
                if ws[link] == "":
                    break
                if ws[link] in _OBJECT_LINKS:
                    if _is_measure(ws[link + 1] if link + 1 < len(ws) else ""):
                        break  # an extent, not an object: "extension of the works TO 7ML/D"
                    stop = link + 1
                    while stop < len(ws) and stop - link <= _OBJECT_REACH and ws[stop] != "" and stop not in breaks:
                        stop += 1
                    start = link + 1
                    if (
                        concept == _PROFESSIONAL_CONCEPT
                        and phrase.rsplit(" ", 1)[-1] in _TITLE_WORDS
                        and start < stop
                        and ws[start] not in _ARTICLES
                    ):
                        # A professional's discipline is not another trade's object: see _PROFESSIONAL_CONCEPT.
                        discipline_end = min(stop, start + _DISCIPLINE_REACH)
                        out.setdefault(_DISCIPLINE_OWNER, []).append((start, discipline_end))
                        if discipline_end < stop:
                            out.setdefault(concept, []).append((discipline_end, stop))
                    else:
                        out.setdefault(concept, []).append((start, stop))
                    break
    return out


class _Cover:
    """The word positions a set of spans covers, so that whether a phrase overlaps any of them costs O(1) (a check
    against every span was quadratic on hostile text). `[a, b)` overlaps `[start, end)` when `a < end and start < b`;
    an empty span `(a, a)` overlaps a phrase that holds position `a` inside it (`start < a < end`)."""

    def __init__(self, size: int, spans: Iterable[tuple[int, int]]) -> None:
        depth = [0] * (size + 1)
        points = [0] * (size + 1)
        for a, b in spans:
            if a < b:
                depth[a] += 1
                depth[b] -= 1
            else:
                points[a] += 1
        self._covered = [0] * (size + 1)
        self._points = [0] * (size + 1)
        level = covered = marked = 0
        for i in range(size):
            level += depth[i]
            covered += level > 0
            marked += points[i] > 0
            self._covered[i + 1] = covered
            self._points[i + 1] = marked

    def overlaps(self, start: int, end: int) -> bool:
        if self._covered[end] - self._covered[start] > 0:
            return True
        return end - start > 1 and self._points[end - 1] - self._points[start + 1] > 0


def _products_hide(products: Sequence[tuple[tuple[int, int], tuple[int, int]]]) -> Callable[[int, int], bool]:
    """Whether a phrase `[start, end)` overlaps a product's qualifiers without naming the product whole (holding its
    head): only the spans that start near the phrase are looked at (a span is at most `longest` words)."""
    ordered = sorted(products)
    starts = [span[0] for span, _ in ordered]
    longest = max((b - a for (a, b), _ in ordered), default=0)

    def hides(start: int, end: int) -> bool:
        for k in range(bisect.bisect_left(starts, start - longest), bisect.bisect_left(starts, end)):
            (a, b), head = ordered[k]
            if a < end and start < b and not (start <= head[0] and head[1] <= end):
                return True
        return False

    return hides


def _table_matches(ws: Sequence[str]) -> Iterator[tuple[int, int, tuple[_Entry, ...]]]:
    """Every phrase of the table in `ws`: (start, length, its entries); a prefix of a longer phrase keeps the scan
    going, anything else ends it (at most LONGEST_PHRASE lookups per position)."""
    for i in range(len(ws)):
        for n in range(1, min(LONGEST_PHRASE, len(ws) - i) + 1):
            key = tuple(ws[i : i + n])
            entries = _TABLE.get(key)
            if entries is None:
                if key in _PREFIXES:
                    continue
                break
            yield i, n, entries


def _phrase_evidence(
    ws: Sequence[str], frames: dict[str, Spans] | None = None, breaks: frozenset[int] = frozenset()
) -> dict[str, dict[str, float]]:
    """Per concept, the phrases of `ws` that count for it (phrase -> weight): exclusions and organisation names
    hide their words from their concepts, and a phrase inside a longer counted phrase of the same concept is not
    counted again. `frames`: `_frame_matches(ws)`, when the caller has it already."""
    frames = _frame_matches(ws) if frames is None else frames
    hidden: dict[str, list[tuple[int, int]]] = {}
    found: dict[str, list[tuple[int, int, float, str]]] = {}
    for i, n, entries in _table_matches(ws):
        for entry in entries:
            if entry.weight == 0.0:
                hidden.setdefault(entry.concept, []).append((i, i + n))
            else:
                found.setdefault(entry.concept, []).append((i, i + n, entry.weight, " ".join(ws[i : i + n])))
    specific_ends = [end for ms in found.values() for _, end, _, phrase in ms if phrase not in _GENERIC]
    everyone = (
        (_purpose_spans(ws, min(specific_ends)) if specific_ends else [])
        + _org_spans(ws, breaks)
        + _address_spans(ws)
        + _place_spans(ws)
        # a unit word that starts an organisation's name ("Office Building Department of Public Works") qualifies
        # nothing before it: `_org_spans` reads the name
        + _modifier_spans(ws, [h for h in frames["units"] if _org_start(ws, h[0]) is None])
        + _acronym_spans(ws)
        + _parcel_spans(ws)
    )
    # A product's qualifiers: hidden from every concept but its owner (software: ict; a vehicle: transport), unless
    # a concept's own phrase names the product whole ("fuel management system" is fleet work, "payroll management
    # system" is software, "water tanker truck" is a vehicle).
    products_hide = {
        owner: _products_hide(list(zip(_modifier_spans(ws, frames[frame], ends), frames[frame], strict=True)))
        for frame, (owner, ends) in _PRODUCT_OWNERS.items()
    }
    steps = _listed_steps(ws)
    in_steps = _Cover(len(ws), steps)
    courses = [f for f in _frame_spans(ws) if not (f[0] < f[1] and in_steps.overlaps(*f))]
    kept_by: dict[str, list[tuple[int, int, float, str]]] = {}
    for concept, matches in found.items():
        masks = _Cover(len(ws), hidden.get(concept, []) + everyone + (steps if concept == "training" else courses))
        kept = [m for m in matches if not masks.overlaps(m[0], m[1])]
        for owner, hides in products_hide.items():
            if concept != owner:
                kept = [m for m in kept if not hides(m[0], m[1])]
        kept_by[concept] = kept
    objects = _object_spans(ws, kept_by, breaks)
    evidence: dict[str, dict[str, float]] = {}
    for concept, kept in kept_by.items():
        others = [
            span
            for owner, spans in objects.items()
            if owner != concept and not (owner == _DISCIPLINE_OWNER and concept in _DISCIPLINE_SEEN_BY)
            for span in spans
        ]
        if others:
            served = _Cover(len(ws), others)
            kept = [m for m in kept if not served.overlaps(m[0], m[1])]
        # A phrase inside a longer one that counts is not counted again: the longer one starts at most
        # LONGEST_PHRASE words before it ends, and the furthest end per start decides.
        furthest: dict[int, int] = {}
        for start, end, _, _ in kept:
            furthest[start] = max(furthest.get(start, end), end)
        counted: dict[str, float] = {}
        for start, end, weight, phrase in kept:
            if any(
                furthest.get(s, -1) >= end and furthest[s] - s > end - start
                for s in range(max(0, end - LONGEST_PHRASE), start + 1)
            ):
                continue  # inside a longer phrase that already counts
            counted[phrase] = max(counted.get(phrase, 0.0), weight)
        if counted:
            evidence[concept] = counted
    return evidence


def category_concepts(category: str | None) -> tuple[str, ...]:
    """The concepts an eTenders category string hints at (the first rule whose words it contains, in order)."""
    if not category:
        return ()
    ws = words(category)
    for rule, concepts in _CATEGORY_RULES:
        for i in range(len(ws) - len(rule) + 1):
            if tuple(ws[i : i + len(rule)]) == rule:
                return concepts
    return ()


@dataclass(frozen=True)
class TenderEvidence:
    """What a tender shows per concept (computed once per tender): the phrases found with their weights, the
    concepts its category hints at, the CIDB classes it requires, and its words (for sectors the taxonomy does
    not know)."""

    phrases: Mapping[str, Mapping[str, float]]
    category: tuple[str, ...] = ()
    cidb: tuple[str, ...] = ()
    words: frozenset[str] = field(default_factory=frozenset)
    professional: bool = False  # appoints a professional (and no contractor): FRAMES.subjects are its subject
    no_work: bool = False  # lets, sells or rents property, sells scrap, or asks for work outside the taxonomy
    goods: bool = False  # asks for goods (and appoints no professional): FRAMES.services count strong phrases only
    guess: learned.Guess | None = None  # the learned guess, when no concept passes on the rules' evidence

    def evidence(self, concept: str) -> tuple[str, ...]:
        """The phrases found for `concept`, strongest first (for a guessed concept: the words the model weighed)."""
        if self.guess is not None and concept == self.guess.concept:
            return self.guess.words
        found = self.phrases.get(concept, {})
        return tuple(sorted(found, key=lambda phrase: (-found[phrase], phrase)))

    @functools.cached_property
    def specific(self) -> frozenset[str]:
        """The concepts with evidence of their own: a phrase that is not generic, or a CIDB class."""
        shown = {c for c, found in self.phrases.items() if any(p not in _GENERIC for p in found)}
        shown.update(concept for c in self.cidb for concept in _CIDB_CONCEPTS.get(c, ()))
        return frozenset(shown)

    def raw(self, concept: str) -> float:
        """The concept's evidence summed, uncapped: its phrases (generic ones only beside its own evidence, or when
        no concept has any but the works a professional is appointed for; a professional's title only beside its
        own evidence, beside such works, or alone), its CIDB classes, its category's support."""
        found = self.phrases.get(concept, {})
        generic_counts = concept in self.specific or all(self.subject_only(c) for c in self.specific)
        others = self.specific - {concept}
        title_counts = (
            any(p not in _GENERIC and p not in _APPOINTMENT for p in found)
            or all(c in _SUBJECTS for c in others)  # true when no other concept shows evidence
        )
        least = STRONG if self.goods and concept in _SERVICES else 0.0
        text = sum(
            w
            for p, w in found.items()
            if (generic_counts or p not in _GENERIC) and (title_counts or p not in _APPOINTMENT) and w >= least
        )
        cidb = CIDB_WEIGHT if any(concept in _CIDB_CONCEPTS.get(c, ()) for c in self.cidb) else 0.0
        support = CATEGORY_WEIGHT if text > 0 and concept in self.category else 0.0
        return text + cidb + support

    def subject_only(self, concept: str) -> bool:
        """The concept's work is only the subject of a professional appointment."""
        return self.professional and concept in _SUBJECTS

    def scaled(self, concept: str) -> bool:
        """The concept's evidence counts at SUBJECT_SCALE: the subject of a professional appointment, unless it is
        the one trade the appointment is about (`sole_subject`)."""
        return self.subject_only(concept) and concept != self.sole_subject

    @functools.cached_property
    def sole_subject(self) -> str | None:
        """The one subject concept with evidence, when a strong phrase of its own shows it: a professional appointed
        for one trade's work ("an electrical consultant", "water conservation strategies") is that trade's specialist
        and is matched to it as well as to consulting (GUIDELINES.md: civil engineering consulting gets both); the
        disciplines of a multi-disciplinary team, and works named only by generic words, stay its subject."""
        subjects = [c for c in _SUBJECTS if c in self.specific]
        if len(subjects) != 1:
            return None
        (only,) = subjects
        found = self.phrases.get(only, {})
        return only if any(w >= STRONG and p not in _GENERIC for p, w in found.items()) else None

    @functools.cached_property
    def top(self) -> float:
        """The largest evidence of any concept (capped at TOP_CAP): what the tender is mostly about. The works a
        professional is appointed for count at SUBJECT_SCALE here even when they are its one trade: the appointment is
        not incidental beside them."""
        scaled = (self.raw(c.id) * (SUBJECT_SCALE if self.subject_only(c.id) else 1.0) for c in CONCEPTS)
        return min(TOP_CAP, max(scaled, default=0.0))

    def strength(self, concept: str) -> float:
        """0..1: the evidence, capped at 1, and scaled down when another concept has far more (a sector the tender
        mentions in passing beside the work it asks for); a guessed concept passes weakly (`guess_strength`)."""
        if self.guess is not None and concept == self.guess.concept:
            return guess_strength(self.guess)
        return self.rule_strength(concept)

    def rule_strength(self, concept: str) -> float:
        """`strength` on the rules' evidence alone."""
        raw = self.raw(concept)
        if raw <= 0.0 or self.no_work:
            return 0.0
        share = raw / self.top
        strength = min(1.0, raw) * (1.0 if share >= DOMINANCE else share / DOMINANCE)
        return strength * SUBJECT_SCALE if self.scaled(concept) else strength


def guess_strength(guess: learned.Guess) -> float:
    """A learned guess's strength: from PASS_THRESHOLD at the model's threshold to GUESS_CEILING when it is sure,
    so that a clear match on the rules' evidence ranks above it."""
    sureness = max(0.0, min(1.0, (guess.probability - guess.threshold) / (1.0 - guess.threshold)))
    return round(PASS_THRESHOLD + (GUESS_CEILING - PASS_THRESHOLD) * sureness, 6)


def tender_evidence(
    category: str | None,
    *texts: str | None,
    cidb_classes: Iterable[str | None] = (),
    model: learned.Model | None = learned.MODEL,
) -> TenderEvidence:
    """Evidence from a tender's category, its texts (title, description) and its CIDB classes of works; with `model`,
    its guess when no concept passes on that evidence."""
    ws: list[str] = []
    breaks: set[int] = set()
    for text in texts:
        if text:
            for clause in _CLAUSE_BREAK.split(text):
                ws.extend(corrected(w) for w in words(clause))
                breaks.add(len(ws))
            ws.append("")  # texts never form a phrase across their boundary
    matches = _frame_matches(ws)
    found = _phrase_evidence(ws, matches, frozenset(breaks))
    # A trade counts when it shows a specific phrase no other trade shows ("pumps" is not two trades).
    shown = {
        c: {p for p in found.get(c, {}) if p not in _GENERIC} for c in FRAMES.subjects if c != _MULTI_TRADE_CONCEPT
    }
    trades = [c for c, own in shown.items() if own - set().union(*(o for d, o in shown.items() if d != c))]
    if len(trades) >= _SEVERAL_TRADES and matches["upkeep"]:
        found.setdefault(_MULTI_TRADE_CONCEPT, {})[MULTI_TRADE_EVIDENCE] = STRONG
    phrases = {c: MappingProxyType(p) for c, p in found.items()}
    classes = tuple(sorted({c for c in cidb_classes if c}))
    professional = bool(matches["professional"]) and not matches["contractor"]
    evidence = TenderEvidence(
        MappingProxyType(phrases),
        category_concepts(category),
        classes,
        frozenset(ws) - {""},
        professional=professional,
        no_work=bool(matches["no_work"] or matches["outside"]),
        goods=bool(matches["goods"]) and not professional,
    )
    if model is None or any(evidence.rule_strength(c.id) >= PASS_THRESHOLD for c in CONCEPTS):
        return evidence
    guess = model.guess(learned.features(category, *texts))
    if guess is None or _uses_vocabulary(ws, guess.concept):
        return evidence
    return replace(evidence, guess=guess)


def _uses_vocabulary(ws: Sequence[str], concept: str) -> bool:
    """Whether `ws` holds a phrase of the concept's vocabulary, before exclusions and frames: then the rules have
    judged the concept's own words ("PPE for electrical workers", "training" as a step of a supply) and a learned
    guess does not overrule them; it speaks only for wordings the rules do not know."""
    return any(e.concept == concept and e.weight > 0.0 for _, _, entries in _table_matches(ws) for e in entries)


@dataclass(frozen=True)
class SectorProfile:
    """One of a company's sectors as the rules see it: the taxonomy concepts it names, or (when it names none)
    the significant words a tender must show."""

    label: str
    concepts: tuple[str, ...]
    literal: tuple[str, ...] = ()

    @property
    def usable(self) -> bool:
        return bool(self.concepts or self.literal)


@functools.lru_cache(maxsize=4096)
def _label_concepts(normalised: str) -> tuple[str, ...]:
    for concept in CONCEPTS:
        names = {concept.id.replace("_", " "), *(" ".join(words(n)) for n in (concept.name, *concept.labels))}
        if normalised in names:
            return (concept.id,)
    evidence = _phrase_evidence(normalised.split())
    return tuple(c.id for c in CONCEPTS if sum(evidence.get(c.id, {}).values()) >= PASS_THRESHOLD)


def sector_profile(label: str) -> SectorProfile:
    ws = words(label)
    normalised = " ".join(ws)
    concepts = _label_concepts(normalised) if normalised and len(ws) <= LONGEST_PHRASE * 2 else ()
    if concepts:
        return SectorProfile(label, concepts)
    literal = tuple(dict.fromkeys(w for w in ws if w not in _FILLER and not w.isdigit() and len(w) >= 2))
    return SectorProfile(label, (), literal)


def sector_profiles(labels: Iterable[str]) -> tuple[SectorProfile, ...]:
    return tuple(sector_profile(label) for label in labels)


@dataclass(frozen=True)
class SectorMatch:
    score: float  # 0..1: the strength of the best sector's evidence
    sector: str | None  # the best-matching sector label; None when nothing matched
    concept: str | None  # its taxonomy concept; None for a label the taxonomy does not know
    evidence: tuple[str, ...]  # what the tender shows for it
    reason: str

    applies: bool = True  # False when the profile names no sector: the check cannot be decided

    @property
    def passed(self) -> bool | None:
        return self.score >= PASS_THRESHOLD if self.applies else None


def _quote(items: Sequence[str]) -> str:
    quoted = [f"'{i}'" for i in items]
    if len(quoted) <= 1:
        return "".join(quoted)
    return f"{', '.join(quoted[:-1])} and {quoted[-1]}"


def _literal_strength(tender: TenderEvidence, profile: SectorProfile) -> tuple[float, tuple[str, ...]]:
    found = tuple(w for w in profile.literal if w in tender.words)
    share = len(found) / len(profile.literal)
    return (share if share >= LITERAL_THRESHOLD else share * 0.5), found


def match_sectors(tender: TenderEvidence, profiles: Sequence[SectorProfile]) -> SectorMatch:
    """The company's best sector for this tender (the first listed on a tie), with its evidence."""
    usable = [p for p in profiles if p.usable]
    if not usable:
        why = "Your profile lists no sectors" if not profiles else "Your sectors name no specific activity"
        return SectorMatch(0.0, None, None, (), f"{why}, so the tender's sector could not be matched", applies=False)
    best: tuple[float, SectorProfile, str | None, tuple[str, ...]] | None = None
    for profile in usable:
        if profile.concepts:
            for named in profile.concepts:
                strength = tender.strength(named)
                if best is None or strength > best[0]:
                    best = (strength, profile, named, tender.evidence(named))
        else:
            strength, found = _literal_strength(tender, profile)
            if best is None or strength > best[0]:
                best = (strength, profile, None, found)
    assert best is not None
    strength, profile, concept, evidence = best
    if strength == 0.0:
        labels = ", ".join(f"'{p.label}'" for p in usable)
        return SectorMatch(0.0, None, None, (), f"Nothing in the tender asks for the work of your sectors ({labels})")
    return SectorMatch(
        round(strength, 3), profile.label, concept, evidence, _reason(tender, profile, concept, evidence, strength)
    )


def _reason(
    tender: TenderEvidence, profile: SectorProfile, concept: str | None, evidence: Sequence[str], strength: float
) -> str:
    if concept is None:
        missing = [w for w in profile.literal if w not in evidence]
        reason = f"Your sector '{profile.label}' is not in the sector taxonomy; the tender shows {_quote(evidence)}"
        return reason + (f", not {_quote(missing)}" if missing else "")
    name = BY_ID[concept].name
    shown = f"'{profile.label}'" if profile.label.lower() == name.lower() else f"'{profile.label}' ({name})"
    if tender.guess is not None and concept == tender.guess.concept:
        return (
            f"Sector {shown}: likely match, learned from labelled tenders: no phrase of the sector's vocabulary is in "
            f"the tender, but {_quote(evidence)} weigh for it (probability {tender.guess.probability:.2f})"
        )
    parts = []
    if evidence:
        parts.append(f"the tender asks for {_quote(evidence[:6])}")
    classes = [c for c in tender.cidb if concept in _CIDB_CONCEPTS.get(c, ())]
    if classes:
        parts.append(f"requires CIDB class {_quote(classes)}")
    if evidence and concept in tender.category:
        parts.append("its eTenders category agrees")
    clear = "clear" if strength >= 1.0 else ("likely" if strength >= PASS_THRESHOLD else "weak, not enough")
    return f"Sector {shown}: {clear} match; " + "; ".join(parts)
