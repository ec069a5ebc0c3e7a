"""Readiness score of one company for one tender: 0-100, whether it can bid at all, and a checklist that says why.

Tender text is parsed once into `TenderFacts` (CIDB grading, stated experience and B-BBEE level, province, word
terms); a company profile once into `CompanyFacts`; `score` then only compares them, so one tender can be scored
for thousands of teams (and one team against thousands of tenders) in well under a second.

Score policy (RULES_VERSION records it; change the version when a rule changes, so stored scores get rescored):
- Each checklist item has a weight (`ReadinessWeights`, default sum 100) and earns a share of it. An item that does
  not apply (the tender states no experience, no B-BBEE level, no province, no closing date) earns its full weight:
  what is not asked cannot hold a company back. Missing company data earns nothing: the profile can be completed.
- A closed tender (closing date at or before `as_of`) scores 0 and is not biddable.
- A blocking failure (CIDB grading not held, tender province not covered) makes the tender not biddable and scales
  the score by HARD_FAIL_SCALE, so it stays below 20 and never outranks a tender the company can bid for, while the
  order among blocked tenders still follows how close the company comes.
- Experience and B-BBEE shortfalls are not blocking: buyers mostly score them as functionality or preference points,
  and a stated level is read from free text that can be ambiguous.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Annotated, Any

from pydantic import Field
from pydantic.dataclasses import dataclass as model

from schema.checked import STRICT, checked, unchecked
from streams.readiness.cidb import CidbGrading, CidbRequirement, check_cidb, parse_cidb_requirements
from streams.readiness.coverage import (
    ProvinceScope,
    UnknownProvinceError,
    check_coverage,
    company_provinces,
    tender_scope,
)
from streams.readiness.reference import CheckResult, ReadinessError
from streams.readiness.sectors import SectorProfile, TenderEvidence, match_sectors, sector_profiles, tender_evidence

RULES_VERSION = "14"
HARD_FAIL_SCALE = 0.2
# Days of preparation that earn the full "closing date" weight; fewer earn a proportional share.
PREPARATION_DAYS = 7
# South Africa keeps one offset all year (no daylight saving): closing dates read best in it.
SAST = dt.timezone(dt.timedelta(hours=2), "SAST")

TenderId = int | str


class FactsError(ReadinessError):
    """A tender or company payload (or facts built directly) that cannot be scored: wrong type, out of range,
    missing id. The message names the field."""


class WeightsError(ReadinessError):
    """Readiness weights that are negative, not finite, or do not sum to 100."""


# --- weights -------------------------------------------------------------------------------------------------------


Points = Annotated[float, Field(ge=0, allow_inf_nan=False)]
_POINTS = "a finite number >= 0"


@checked(
    WeightsError,
    {n: _POINTS for n in ("sector", "cidb", "province", "experience", "bbbee", "closing")},
    lambda name: f"readiness weight {name!r}",
)
@model(frozen=True, config=STRICT)
class ReadinessWeights:
    """Points each checklist item is worth; they must sum to 100."""

    sector: Points = 35.0
    cidb: Points = 25.0
    province: Points = 15.0
    experience: Points = 10.0
    bbbee: Points = 10.0
    closing: Points = 5.0

    def __post_init__(self) -> None:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        total = sum(values.values())
        if abs(total - 100) > 1e-6:
            listed = ", ".join(f"{k}={v:g}" for k, v in values.items())
            raise WeightsError(f"readiness weights must sum to 100, got {total:g} ({listed})")


DEFAULT_WEIGHTS = ReadinessWeights()


def weights_with(overrides: Mapping[str, float]) -> ReadinessWeights:
    """The default weights with `overrides` (TENDERHUB_READINESS_WEIGHTS); WeightsError names unknown items."""
    unknown = set(overrides) - {f.name for f in fields(ReadinessWeights)}
    if unknown:
        raise WeightsError(f"TENDERHUB_READINESS_WEIGHTS names unknown items {sorted(unknown)}")
    return ReadinessWeights(**{**DEFAULT_WEIGHTS.__dict__, **overrides})


@functools.lru_cache(maxsize=64)
def rules_version(weights: ReadinessWeights = DEFAULT_WEIGHTS) -> str:
    """RULES_VERSION, plus a digest of the weights when they are not the defaults: a weight change is a rule change
    too, and must trigger a rescore like one."""
    if weights == DEFAULT_WEIGHTS:
        return RULES_VERSION
    values = ",".join(f"{getattr(weights, f.name)!r}" for f in fields(weights))
    return f"{RULES_VERSION}+w.{hashlib.sha256(values.encode()).hexdigest()[:8]}"


# --- what tender text states -----------------------------------------------------------------------------------------

_NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        re.findall(
            r"\w+",
            "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
            "seventeen eighteen nineteen twenty",
        )
    )
}
# Linear time on any text: every run of whitespace is matched possessively (`\s*+`, `\s++`), so a failed attempt
# never tries the ways to split a run between two neighbouring `\s*` (that was quadratic: 50,000 spaces after "5"
# took 8 s, after "B-BBEE level 2" over 20 s, holding the GIL). What follows each run is never whitespace, so no
# match needs a run given back; the bounded parts ({0,40}?, {0,3}, the number words) backtrack a bounded amount.
_NUM = r"(?P<n>\d{1,2}|" + "|".join(_NUMBER_WORDS) + r")(?:\s*+\(\s*+(?P<d>\d{1,2})\s*+\))?"
_QUALIFIER = (
    r"(?:(?:relevant|proven|working|operational|industry|practical|related|similar|direct|demonstrable|"
    r"post[- ]qualification|company|hands[- ]on)\s++)"
)
_EXPERIENCE = (
    # "minimum of 5 years experience", "5 years' relevant experience", "five (5) years of proven experience"
    re.compile(rf"(?i)\b{_NUM}\s*+\+?\s*+years?['\u2019]?\s*+(?:of\s++)?{_QUALIFIER}{{0,3}}experience"),
    # "operational experience of at least 4 years"
    re.compile(
        rf"(?i)\bexperience\s++(?:of\s++)?(?:at\s++least\s++|a\s++minimum\s++of\s++|minimum\s++(?:of\s++)?|"
        rf"more\s++than\s++|over\s++|not\s++less\s++than\s++)?{_NUM}\s*+\+?\s*+years?\b"
    ),
)
_BEE = r"(?:b-?bbee|bbbee|bee)"
# Only statements of a minimum: "B-BBEE level 1 contribution 5" (a preference-point table) and "NQF Level 6" are not.
_BBBEE_RANGE = (
    # "B-BBEE level 1-4", "B-BBEE status level 1 to 4"
    re.compile(rf"(?i)\b{_BEE}\b[^.;\n]{{0,40}}?\blevels?\s*+(?P<a>[1-8])\s*+(?:-|to)\s*+(?:level\s*+)?(?P<b>[1-8])\b"),
    # "Level 1 to 4 B-BBEE contributors"
    re.compile(rf"(?i)\blevels?\s*+(?P<a>[1-8])\s*+(?:-|to)\s*+(?P<b>[1-8])\s*+{_BEE}\b"),
)
_BBBEE_MINIMUM = (
    # "B-BBEE level 2 or better", "BBBEE Level 2 (or higher)", "B-BBEE level 3 and above", "B-BBEE level 2 minimum"
    re.compile(
        rf"(?i)\b{_BEE}\b[^.;\n]{{0,40}}?\blevel\s*+(?P<a>[1-8])\b\s*+(?:contributor\s*+)?"
        rf"(?:\(?\s*+(?:or|and)\s++(?:better|higher|above)|minimum\b)"
    ),
    # "minimum B-BBEE level 2", "at least a B-BBEE status level of 3"
    re.compile(
        rf"(?i)\b(?:minimum|at\s++least)\s++(?:of\s++)?(?:an?\s++)?{_BEE}\s*+(?:status\s++)?(?:contributor\s++)?"
        rf"level\s*+(?:of\s++)?(?P<a>[1-8])\b"
    ),
)


# The characters outside ASCII that a case-insensitive pattern takes for an ASCII letter, and `lower()` does not
# turn into it: the dotted and dotless i, the long s and the Kelvin sign ("FİVE years" matches the number words).
_ASCII_TWINS = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s", "\u212a": "k"})


def _number(m: re.Match[str]) -> int:
    # "five (5)": the digits in brackets are the figure the buyer meant.
    raw = m["d"] or m["n"]
    return int(raw) if raw.isdigit() else _NUMBER_WORDS[raw.translate(_ASCII_TWINS).lower()]


def parse_min_experience_years(*texts: str | None) -> int | None:
    """The most years of experience the text asks for ("minimum of 5 years experience"); None when it states none."""
    found = [
        years
        for text in texts
        if text and "experience" in text.lower()
        for pattern in _EXPERIENCE
        for m in pattern.finditer(text)
        if 1 <= (years := _number(m)) <= 60
    ]
    return max(found) if found else None


def parse_max_bbbee_level(*texts: str | None) -> int | None:
    """The worst B-BBEE level the text still accepts ("level 1-4" -> 4, "level 2 or better" -> 2); None when it
    states no minimum. Several statements: the most demanding (lowest) one."""
    found: list[int] = []
    for text in texts:
        if not text or "level" not in text.lower():
            continue
        found.extend(max(int(m["a"]), int(m["b"])) for p in _BBBEE_RANGE for m in p.finditer(text))
        found.extend(int(m["a"]) for p in _BBBEE_MINIMUM for m in p.finditer(text))
    return min(found) if found else None


# --- facts -----------------------------------------------------------------------------------------------------------


# Facts the rules can score: ids fit a signed 64-bit integer (MySQL BIGINT, MongoDB's int64, Redis keys), dates
# sit well inside the calendar (a closing date at year 1 or 9999-12-31 overflows as soon as it is shown in SAST).
MAX_ID = 2**63 - 1
EARLIEST_DATE = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)
LATEST_DATE = dt.datetime(2200, 1, 1, tzinfo=dt.UTC)


def _utc(value: dt.datetime) -> dt.datetime:
    """Aware UTC. A naive datetime is taken as UTC, the convention of the MySQL DATETIME columns and the loader."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


Id = Annotated[int, Field(ge=1, le=MAX_ID)]
_TEXT = "a string or null"


def _in_calendar(name: str, value: dt.datetime) -> dt.datetime:
    """`value` as aware UTC, if it lies between EARLIEST_DATE and LATEST_DATE."""
    try:
        moment = _utc(value)
    except OverflowError:
        moment = EARLIEST_DATE - dt.timedelta(days=1)  # the offset pushed it past year 1 or 9999
    if not EARLIEST_DATE <= moment < LATEST_DATE:
        raise FactsError(f"{name} {value.isoformat()} is outside {EARLIEST_DATE.year}-{LATEST_DATE.year - 1}")
    return moment


@checked(
    FactsError,
    {
        "tender_id": "a positive integer or a non-empty string",
        "title": "a string",
        "closing_at": "a datetime or null",
        **dict.fromkeys(("description", "category", "province", "buyer", "special_conditions"), _TEXT),
    },
)
@model(frozen=True, config=STRICT)
class TenderFacts:
    """A tender as the rules see it (its annotations are its checks). The derived fields are parsed from the text
    once, at construction."""

    tender_id: Id | Annotated[str, Field(min_length=1)]
    title: str = ""
    description: str | None = None
    category: str | None = None
    province: str | None = None
    closing_at: dt.datetime | None = None  # normalised to aware UTC
    buyer: str | None = None
    special_conditions: str | None = None
    # Derived: CIDB alternatives (empty = none stated), stated minimum experience, worst accepted B-BBEE level.
    cidb: tuple[CidbRequirement, ...] = field(init=False, compare=False)
    min_experience_years: int | None = field(init=False, compare=False)
    max_bbbee_level: int | None = field(init=False, compare=False)
    scope: ProvinceScope = field(init=False, compare=False, repr=False)
    terms: TenderEvidence = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.closing_at is not None:
            object.__setattr__(self, "closing_at", _in_calendar("closing_at", self.closing_at))
        texts = (self.title, self.description, self.special_conditions)
        object.__setattr__(self, "cidb", parse_cidb_requirements(*texts))
        object.__setattr__(self, "min_experience_years", parse_min_experience_years(*texts))
        object.__setattr__(self, "max_bbbee_level", parse_max_bbbee_level(*texts))
        object.__setattr__(self, "scope", tender_scope(self.province))
        # Special conditions stay out of the sector words (boilerplate about documents and briefings); their CIDB
        # classes of works count.
        classes = (r.class_of_works for r in self.cidb)
        object.__setattr__(
            self, "terms", tender_evidence(self.category, self.title, self.description, cidb_classes=classes)
        )


@checked(
    FactsError,
    {
        "team_id": "a positive integer",
        "company_id": "a positive integer",
        **{name: "a tuple" for name in ("sectors", "provinces", "gradings")},
        "sectors[]": "a string",
        "provinces[]": "a string",
        "gradings[]": "a CidbGrading",
        "experience_years": "an integer 0-200 or null",
        "bbbee_level": "an integer 1-8 or null (non-compliant)",
    },
)
@model(frozen=True, config=STRICT)
class CompanyFacts:
    """A company profile as the rules see it (its annotations are its checks). Provinces and sectors are resolved
    once, at construction."""

    team_id: Id
    company_id: Id
    sectors: tuple[str, ...] = ()
    provinces: tuple[str, ...] = ()  # as given: names, abbreviations, aliases or "National"
    experience_years: Annotated[int, Field(ge=0, le=200)] | None = None
    bbbee_level: Annotated[int, Field(ge=1, le=8)] | None = None  # 1 (best) to 8; None = non-compliant or not stated
    gradings: tuple[CidbGrading, ...] = ()
    # Derived: canonical provinces covered, sector terms.
    covered: frozenset[str] = field(init=False, compare=False, repr=False)
    profiles: tuple[SectorProfile, ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for g in self.gradings:
            if g.class_of_works in seen:
                raise FactsError(f"two CIDB gradings for class {g.class_of_works}: a company holds one grade per class")
            seen.add(g.class_of_works)
        try:
            covered = company_provinces(self.provinces)
        except UnknownProvinceError as exc:
            raise FactsError(f"provinces: {exc}") from exc
        object.__setattr__(self, "covered", frozenset(covered))
        object.__setattr__(self, "profiles", sector_profiles(self.sectors))


# --- payloads --------------------------------------------------------------------------------------------------------


def _mapping(payload: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(payload, Mapping):
        raise FactsError(f"{what} payload must be an object, got {type(payload).__name__}")
    return payload


def _closing(value: Any) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return value
    if not isinstance(value, str):
        raise FactsError(f"closing_at must be an ISO 8601 string or null, got {type(value).__name__} {value!r}")
    try:
        return dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise FactsError(f"closing_at is not an ISO 8601 date-time: {value!r}") from None


def tender_facts_from_payload(payload: Mapping[str, Any]) -> TenderFacts:
    """TenderFacts from a tender event payload (tender_id required; title, description, category, province,
    closing_at, buyer, special_conditions optional). Unknown keys are ignored, as the event contract allows."""
    data = _mapping(payload, "tender")
    if data.get("tender_id") is None:
        raise FactsError("tender payload has no tender_id")
    title = data.get("title")
    return TenderFacts(
        tender_id=data["tender_id"],
        title="" if title is None else title,
        description=data.get("description"),
        category=data.get("category"),
        province=data.get("province"),
        closing_at=_closing(data.get("closing_at")),
        buyer=data.get("buyer"),
        special_conditions=data.get("special_conditions"),
    )


def _string_list(name: str, value: Any) -> tuple[Any, ...]:
    """A payload's list as the tuple the facts hold (CompanyFacts checks its items)."""
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise FactsError(f"{name} must be a list of strings, got {type(value).__name__} {value!r}")
    return tuple(value)


def _grading(i: int, item: Any) -> CidbGrading:
    where = f"cidb[{i}]"
    entry = _mapping(item, where)
    cls = entry.get("class_of_works")
    if not isinstance(cls, str):
        raise FactsError(f"{where}.class_of_works must be a class code such as 'CE', got {cls!r}")
    grade: Any = entry.get("grade")
    pe: Any = entry.get("potentially_emerging", False)
    try:
        return CidbGrading(cls.strip().upper(), grade, pe)
    except ValueError as exc:
        raise FactsError(f"{where}: {exc}") from None


def company_facts_from_payload(payload: Mapping[str, Any]) -> CompanyFacts:
    """CompanyFacts from a company event payload: team_id, company_id, sectors, provinces, experience_years,
    bbbee_level, cidb ([{"class_of_works": "CE", "grade": 6, "potentially_emerging": false}, ...])."""
    data = _mapping(payload, "company")
    cidb = data.get("cidb")
    if cidb is not None and (isinstance(cidb, str) or not isinstance(cidb, Sequence)):
        raise FactsError(f"cidb must be a list of gradings, got {type(cidb).__name__} {cidb!r}")
    return CompanyFacts(
        team_id=unchecked(data.get("team_id")),
        company_id=unchecked(data.get("company_id")),
        sectors=_string_list("sectors", data.get("sectors")),
        provinces=_string_list("provinces", data.get("provinces")),
        experience_years=data.get("experience_years"),
        bbbee_level=data.get("bbbee_level"),
        gradings=tuple(_grading(i, g) for i, g in enumerate(cidb or ())),
    )


# --- scoring ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChecklistItem:
    name: str
    passed: bool | None  # None: does not apply, or cannot be decided from what the tender states
    weight: float
    earned: float
    reason: str


@dataclass(frozen=True)
class Readiness:
    tender_id: TenderId
    team_id: int
    company_id: int
    score: float  # 0-100, one decimal
    biddable: bool
    rules_version: str
    as_of: dt.datetime
    checklist: tuple[ChecklistItem, ...]
    blocked_by: tuple[str, ...]  # names of the checklist items that rule the bid out

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form for the readiness_scores document."""
        return {
            "tender_id": self.tender_id,
            "team_id": self.team_id,
            "company_id": self.company_id,
            "score": self.score,
            "biddable": self.biddable,
            "rules_version": self.rules_version,
            "as_of": self.as_of.isoformat(),
            "checklist": [
                {"name": i.name, "passed": i.passed, "weight": i.weight, "earned": i.earned, "reason": i.reason}
                for i in self.checklist
            ],
            "blocked_by": list(self.blocked_by),
        }


def _when(moment: dt.datetime) -> str:
    return moment.astimezone(SAST).strftime("%Y-%m-%d %H:%M SAST")


def _check_closing(closing_at: dt.datetime | None, as_of: dt.datetime) -> tuple[CheckResult, float]:
    if closing_at is None:
        return CheckResult(None, "The tender states no closing date"), 1.0
    left = (closing_at - as_of).total_seconds()
    if left <= 0:
        return CheckResult(False, f"Closed {_when(closing_at)}; bids can no longer be submitted", blocking=True), 0.0
    days = left / 86400
    span = f"{int(days)} days" if days >= 2 else f"{int(left // 3600)} hours"
    if days >= PREPARATION_DAYS:
        return CheckResult(True, f"Open until {_when(closing_at)}: {span} to prepare"), 1.0
    return CheckResult(True, f"Open until {_when(closing_at)}: only {span} to prepare"), days / PREPARATION_DAYS


def _check_experience(required: int | None, held: int | None) -> tuple[CheckResult, float]:
    if required is None:
        return CheckResult(None, "The tender states no minimum experience"), 1.0
    wanted = f"Tender asks for at least {required} years of experience"
    if held is None:
        return CheckResult(False, f"{wanted}; your profile does not state yours"), 0.0
    if held >= required:
        return CheckResult(True, f"{wanted}; you have {held}"), 1.0
    return CheckResult(False, f"{wanted}; you have {held}"), held / required


def _check_bbbee(worst_accepted: int | None, level: int | None) -> tuple[CheckResult, float]:
    if worst_accepted is None:
        return CheckResult(None, "The tender states no minimum B-BBEE level"), 1.0
    wanted = (
        f"Tender asks for B-BBEE level {worst_accepted} or better"
        if worst_accepted > 1
        else "Tender asks for B-BBEE level 1"
    )
    if level is None:
        return CheckResult(False, f"{wanted}; your profile has no B-BBEE level"), 0.0
    if level <= worst_accepted:
        return CheckResult(True, f"{wanted}; you are level {level}"), 1.0
    return CheckResult(False, f"{wanted}; you are level {level}"), 0.0


def score(
    tender: TenderFacts, company: CompanyFacts, as_of: dt.datetime, weights: ReadinessWeights = DEFAULT_WEIGHTS
) -> Readiness:
    """Readiness of `company` for `tender` as of `as_of` (naive = UTC). Deterministic: same inputs, same result."""
    as_of = _utc(as_of)
    sector = match_sectors(tender.terms, company.profiles)
    cidb = check_cidb(tender.cidb, company.gradings)
    province = check_coverage(tender.scope, company.covered)
    # (name, weight, result, share of the weight earned)
    results: tuple[tuple[str, float, CheckResult, float], ...] = (
        ("closing_date", weights.closing, *_check_closing(tender.closing_at, as_of)),
        ("cidb", weights.cidb, cidb, 0.0 if cidb.passed is False else 1.0),
        ("province", weights.province, province, 0.0 if province.passed is False else 1.0),
        ("sector", weights.sector, CheckResult(sector.passed, sector.reason), sector.score),
        ("experience", weights.experience, *_check_experience(tender.min_experience_years, company.experience_years)),
        ("bbbee", weights.bbbee, *_check_bbbee(tender.max_bbbee_level, company.bbbee_level)),
    )
    checklist = []
    blocked_by = []
    raw = 0.0
    for name, weight, result, share in results:
        earned = weight * share
        raw += earned
        if result.blocking:
            blocked_by.append(name)
        checklist.append(ChecklistItem(name, result.passed, weight, round(earned, 2), result.reason))
    if "closing_date" in blocked_by:
        total = 0.0
    elif blocked_by:
        total = raw * HARD_FAIL_SCALE
    else:
        total = raw
    return Readiness(
        tender_id=tender.tender_id,
        team_id=company.team_id,
        company_id=company.company_id,
        score=round(min(100.0, max(0.0, total)), 1),
        biddable=not blocked_by,
        rules_version=rules_version(weights),
        as_of=as_of,
        checklist=tuple(checklist),
        blocked_by=tuple(blocked_by),
    )
