"""CIDB contractor grading: parse what a tender's free text requires ("GRADE 5CE OR HIGHER", "8EP/ME or higher",
"6CE or higher PE") into alternatives, and check a company's gradings against them numerically.

Grades compare as integers 1-9 (the seed compared strings, so "9" >= "10" held). A requirement is a set of
alternatives; meeting any one of them is enough.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Annotated

from pydantic import AfterValidator, Field
from pydantic.dataclasses import dataclass

from schema.checked import STRICT, checked
from streams.readiness.reference import CheckResult, ReadinessError, reference_tables

_CLASS_CODES = tuple(reference_tables().cidb_classes)
# Class codes are matched case-sensitively: eTenders text writes them in capitals ("5CE OR hIGHER" included), and
# lowercase "so", "me" or "se" are English words.
_CLASS = "(?:" + "|".join(sorted(_CLASS_CODES)) + ")"
_NUMBER_WORDS = "one|two|three|four|five|six|seven|eight|nine"


def _known_class(code: str) -> str:
    if code not in _CLASS_CODES:
        raise ValueError(f"unknown CIDB class of works {code!r}; expected one of {', '.join(_CLASS_CODES)}")
    return code


ClassOfWorks = Annotated[str, AfterValidator(_known_class)]
Grade = Annotated[int, Field(ge=1, le=9)]
_GRADE = {"grade": "an integer 1-9"}


def _cidb_label(name: str) -> str:
    return "CIDB grade" if name == "grade" else name


@checked(ReadinessError, _GRADE, _cidb_label)
@dataclass(frozen=True, config=STRICT)
class CidbRequirement:
    """One acceptable grading: `grade` or higher in `class_of_works`.

    `class_of_works` is None when the text names a grade but no class ("CIDB GRADE 4 or higher"): any class at
    that grade meets it, and the reason says the class was not stated. `pe_allowed` admits, in addition,
    contractors graded one grade lower who are registered as potentially emerging (DESIGN.md).
    """

    grade: Grade
    class_of_works: ClassOfWorks | None
    pe_allowed: bool = False

    @property
    def label(self) -> str:
        """'6CE', or 'grade 4 (any class)' when the class is not stated."""
        if self.class_of_works is None:
            return f"grade {self.grade} (any class)"
        return f"{self.grade}{self.class_of_works}"

    def admits(self, grading: CidbGrading) -> bool:
        if self.class_of_works is not None and grading.class_of_works != self.class_of_works:
            return False
        if grading.grade >= self.grade:
            return True
        return self.pe_allowed and grading.potentially_emerging and grading.grade == self.grade - 1


@checked(ReadinessError, {**_GRADE, "potentially_emerging": "true or false"}, _cidb_label)
@dataclass(frozen=True, config=STRICT)
class CidbGrading:
    """A grading a company holds: one grade per class of works, optionally registered as potentially emerging."""

    class_of_works: ClassOfWorks
    grade: Grade
    potentially_emerging: bool = False

    @property
    def label(self) -> str:
        return f"{self.grade}{self.class_of_works}"


# --- parsing ---------------------------------------------------------------------------------------------------------
# Linear time on hostile text (50,000 characters of "5CE", "grade ", spaces or dots parse in milliseconds): the text
# is normalised first (whitespace runs become one space), every quantifier in _UNIT is bounded, the unbounded runs
# that remain are matched possessively, and the loop only moves forward.

# A PE marker glued to or following a class: "5CEPE", "6CE PE", "6CE (PE)". Never a free-standing "(PE)": eTenders
# writes Port Elizabeth that way ("GQEBERHA (PE) AREA").
_PE = r"(?:\s?\(?PE\)?)"
# Nothing may stand before a grade digit that would make it part of a longer token: tender numbers ("SCMU8"),
# amounts ("R3000.00"), decimals ("KM 0,60"), "10CE" (there is no grade 10). "-" and "/" may ("-5CE or higher",
# "6CE/5CEPE"), but not after a digit: "by 2025-09-04 -7ME" is a date then 7ME, not the range 4-7ME.
_START = r"(?<![A-Za-z0-9.,])(?<!\d[-/])"
_END = r"(?![A-Za-z0-9])"

_UNIT = re.compile(
    rf"""
    # "2CE TO 8CE", "2GB TO 4GB": a range with the class on both ends.
    {_START}0?(?P<ra_g>[1-9])\s?(?P<ra_c>{_CLASS})\s?(?:-|(?i:to))\s?0?[1-9]\s?(?P=ra_c){_END}
    # "CIBD GRADE 4-6EP", "GRADE 7-9 EP", "CIDB Grade 5-7 (EP/EB)": a grade range, then the class.
    | {_START}0?(?P<rb_g>[1-9])\s?(?:-|(?i:to))\s?0?[1-9]\s?\(?\s?(?P<rb_c>{_CLASS})(?P<rb_pe>{_PE})?{_END}
    # "5CE", "01GB", "4 CE", "5CEPE", "6EP PE".
    | {_START}0?(?P<s_g>[1-9])(?P<s_sp>\s?)(?P<s_c>{_CLASS})(?P<s_pe>{_PE})?{_END}
    # "CIDB GRADING ME LEVEL 4", "CIDB Grade: GB or Higher": class first, grade after or not at all.
    | (?i:\bcidb\b)\s?(?i:grad(?:e|es|ing)\b|level\b)?\s?[:\-]?\s?(?P<k_c>{_CLASS}){_END}
      (?:\s?(?i:level|grade)\s?0?(?P<k_g>[1-9]){_END})?
    # "CIDB GRADE 4 or higher", "CIDB GRADE FOUR (4) OR HIGHER", "CIDB Grades 8 and 9": a grade and no class.
    | (?i:\bcidb\b)(?:\s?(?i:contractor))?\s?(?i:grad(?:e|es|ing)\b|level\b)?(?:\s?(?i:required|requirement))?
      (?:\s?(?i:is|of))?\s?[:\-]?\s?(?:(?i:{_NUMBER_WORDS})\s?\()?0?(?P<o_g>[1-9])\)?
      (?!\d|\s?\(?{_CLASS}{_END}|\s?(?:-|(?i:to))\s?0?[1-9]\s?\(?\s?{_CLASS})
    """,
    re.VERBOSE,
)
# A further class sharing the grade just read: "8EP/ME", "7 CE EP ME", "6EP PE OR EB PE", "1SG/GB", "(EP/EB)".
_SHARED_CLASS = re.compile(rf"\s?(?:/|,|&|\s(?i:or|and)\s|\s)\s?(?P<c>{_CLASS})(?P<pe>{_PE})?{_END}")
# "6CE or higher PE": the PE marker after "or higher" applies to the alternatives before it.
_OR_HIGHER_PE = re.compile(rf"\s?\(?(?i:or|and)\s(?i:higher|above)\)?\s?\(?PE\)?{_END}")
# A spaced form ("4 CE", "2 GB") is only a grading with a grading word shortly before it, "or higher" (or PE) after
# it, as a text's last words after a full stop or colon (eTenders titles end so: "REPAIRS TO ROOF. 2 GB"), or as the
# whole text; otherwise "8 GB" of memory in an ICT tender would read as a building grade.
_SPACED_CONTEXT_BEFORE = re.compile(r"(?i:cidb|grad(?:e|es|ing)|level|minimum|designation|higher)")
_SPACED_CONTEXT_AFTER = re.compile(r"\s?\(?\s?(?i:or|and)\s(?i:higher|above|more)|\s?PE\b|\s?/")
_SPACED_LAST_WORDS = re.compile(r"[\s.)\]]*+$")
_SENTENCE_BREAK_BEFORE = re.compile(r"(?:^|[.:;(-])\s*$")
_CONTEXT_CHARS = 40
# The CIDB standard conditions of tender admit PE contractors one grade lower in a separate sentence:
# "Contractors registered as potentially emerging enterprises with the CIDB who are registered in one contractor
# grading designation lower than the required ... may submit tenders." The opposite sentence ("... lower than ...
# required for this tender, will not be accepted") must not count.
_PE_CLAUSE = re.compile(r"(?i)potentially\s++emerging[^.]{0,200}?\bone\b[^.]{0,60}?\blower\b[^.]*+")
_PE_CLAUSE_NEGATED = re.compile(r"(?i)\bnot\s+(?:be\s+)?(?:accepted|eligible|considered|allowed)")


_FIXES = (
    (re.compile(r"(?i)\bc\.?i\.?b\.?d\b|\bc\.i\.d\.b\.?"), "CIDB"),  # "CIBD" is a common typo in the data
    (re.compile(r"(?i)\b0r\b"), "or"),  # "GB 0r Higher"
    (re.compile(r"[\u2010-\u2015\u2212]"), "-"),
    # "Minimum7CE", "GRADING:7GB": a grading word glued to the grade.
    (re.compile(r"(?i)(minimum|grading|grade|cidb|level|designation)(?=\d)"), r"\1 "),
    # "6CE5CEPE": two gradings glued together.
    (re.compile(rf"({_CLASS})(?=0?[1-9]{_CLASS})"), r"\1 "),
    (re.compile(r"\s+"), " "),
)


# Every requirement form has a grade digit next to a class code, or the word CIDB: texts without either (most
# tenders) skip the parser.
_MAY_STATE_GRADING = re.compile(rf"\d\s?\(?\s?{_CLASS}|(?i:\bc\.?i\.?[db]\.?[db]\b)")


def _normalise(text: str) -> str:
    for pattern, replacement in _FIXES:
        text = pattern.sub(replacement, text)
    return text


def _spaced_form_allowed(text: str, start: int, end: int) -> bool:
    if _SPACED_CONTEXT_BEFORE.search(text, max(0, start - _CONTEXT_CHARS), start):
        return True
    if _SPACED_CONTEXT_AFTER.match(text, end):
        return True
    return bool(_SPACED_LAST_WORDS.match(text, end) and _SENTENCE_BREAK_BEFORE.search(text, max(0, start - 3), start))


def _parse_one(text: str) -> tuple[list[CidbRequirement], bool]:
    """Alternatives in order of appearance, and whether the text carries the PE admission clause."""
    text = _normalise(text)
    found: list[CidbRequirement] = []
    pos = 0
    while (m := _UNIT.search(text, pos)) is not None:
        pos = m.end()
        group: list[tuple[int, str | None, bool]] = []
        if m["ra_g"]:
            # A range names the grades eligible for a panel or framework ("CIDB GRADE 2CE TO 8CE", "4-6EP"): every
            # grade in it may bid, and a contractor above the range can always take smaller work, so the lower
            # bound is the only threshold a company has to meet.
            group.append((int(m["ra_g"]), m["ra_c"], False))
        elif m["rb_g"]:
            group.append((int(m["rb_g"]), m["rb_c"], bool(m["rb_pe"])))
        elif m["s_g"]:
            if m["s_sp"] and not _spaced_form_allowed(text, m.start(), m.end()):
                continue
            group.append((int(m["s_g"]), m["s_c"], bool(m["s_pe"])))
        elif m["k_c"]:
            # "CIDB Grade: GB or Higher" names no grade: any registration in the class (grade 1 or higher) meets it.
            group.append((int(m["k_g"] or 1), m["k_c"], False))
        else:
            found.append(CidbRequirement(int(m["o_g"]), None))
            continue
        grade = group[0][0]
        while (more := _SHARED_CLASS.match(text, pos)) is not None:
            group.append((grade, more["c"], bool(more["pe"])))
            pos = more.end()
        if (pe := _OR_HIGHER_PE.match(text, pos)) is not None:
            group = [(g, c, True) for g, c, _ in group]
            pos = pe.end()
        found.extend(CidbRequirement(g, c, p) for g, c, p in group)
    clause = any(not _PE_CLAUSE_NEGATED.search(c.group(0)) for c in _PE_CLAUSE.finditer(text))
    return found, clause


def _merge_pe_designations(alternatives: Sequence[CidbRequirement]) -> list[CidbRequirement]:
    """Fold a PE form one grade below a plain one into the plain one, marked PE.

    In "6CE/5CEPE" and "5CE or higher ... (4CEPE)" the PE form names the contractor designation that the PE rule
    admits, so the pair is the one requirement "6CE PE" (read alone, "5CE PE" would also admit every 5CE and 4CE PE).
    """
    alts = list(dict.fromkeys(alternatives))
    for a in list(alts):
        if a.pe_allowed and a.class_of_works is not None and a.grade < 9:
            upper = CidbRequirement(a.grade + 1, a.class_of_works, False)
            if upper in alts:
                alts[alts.index(upper)] = CidbRequirement(upper.grade, upper.class_of_works, True)
                alts.remove(a)
    return alts


def _simplify(alternatives: Sequence[CidbRequirement]) -> tuple[CidbRequirement, ...]:
    alts = list(dict.fromkeys(alternatives))
    # A class-less grade next to class-specific ones is the vaguer statement of the same need; keep the precise one.
    if any(a.class_of_works is not None for a in alts):
        alts = [a for a in alts if a.class_of_works is not None]

    def dominated(a: CidbRequirement, b: CidbRequirement) -> bool:
        # b admits everything a admits: same class, no higher grade, and no higher floor for PE contractors.
        return (
            a != b
            and a.class_of_works == b.class_of_works
            and b.grade <= a.grade
            and b.grade - b.pe_allowed <= a.grade - a.pe_allowed
        )

    return tuple(dict.fromkeys(a for a in alts if not any(dominated(a, b) for b in alts)))


def parse_cidb_requirements(*texts: str | None) -> tuple[CidbRequirement, ...]:
    """The CIDB gradings the tender text asks for, as alternatives (any one suffices); empty when none is stated.

    Pass every free-text field of the tender (title, description, special conditions): requirements are collected
    from all of them, and the CIDB PE admission clause in any one applies to all alternatives.
    """
    alternatives: list[CidbRequirement] = []
    pe_clause = False
    for text in dict.fromkeys(t for t in texts if t and _MAY_STATE_GRADING.search(t)):
        found, clause = _parse_one(text)
        alternatives.extend(found)
        pe_clause = pe_clause or clause
    # Designations first: the clause's "one grade lower" must widen "5CE", not a "4CEPE" that restates it.
    alternatives = _merge_pe_designations(alternatives)
    if pe_clause:
        alternatives = [CidbRequirement(a.grade, a.class_of_works, True) for a in alternatives]
    return _simplify(alternatives)


# --- checking --------------------------------------------------------------------------------------------------------


def _join(words: Sequence[str], conjunction: str = "and") -> str:
    if len(words) <= 1:
        return "".join(words)
    return f"{', '.join(words[:-1])} {conjunction} {words[-1]}"


def describe_requirement(alternatives: Sequence[CidbRequirement]) -> str:
    """'CIDB 6CE or higher (PE admitted)', 'CIDB 8EP or 8ME or higher'."""
    all_pe = all(a.pe_allowed for a in alternatives)
    labels = [a.label + (" PE" if a.pe_allowed and not all_pe else "") for a in alternatives]
    return f"CIDB {' or '.join(labels)} or higher" + (" (PE admitted)" if all_pe else "")


def _holding(grading: CidbGrading) -> str:
    return grading.label + (" registered as potentially emerging" if grading.potentially_emerging else "")


def check_cidb(
    requirement_alternatives: Sequence[CidbRequirement], company_gradings: Iterable[CidbGrading]
) -> CheckResult:
    """Pass when any alternative admits one of the company's gradings; no requirement found passes as not required.

    A failure is blocking: a tenderer below the required grading is not eligible (CIDB regulation 25).
    """
    if not requirement_alternatives:
        return CheckResult(True, "CIDB grading not required: the tender text states none")
    by_class = {g.class_of_works: g for g in company_gradings}
    wanted = f"Requires {describe_requirement(requirement_alternatives)}"
    for alt in requirement_alternatives:
        candidates = by_class.values() if alt.class_of_works is None else [by_class.get(alt.class_of_works)]
        for grading in candidates:
            if grading is not None and alt.admits(grading):
                return CheckResult(True, f"{wanted}; you hold {_holding(grading)}")
    if not by_class:
        return CheckResult(False, f"{wanted}; you hold no CIDB grading", blocking=True)
    held: list[str] = []
    missing: list[str] = []
    pe_short: list[str] = []
    classes = list(dict.fromkeys(a.class_of_works for a in requirement_alternatives))
    for cls in classes:
        if cls is None:
            held.extend(_holding(g) for g in by_class.values())
            continue
        grading = by_class.get(cls)
        if grading is None:
            missing.append(cls)
            continue
        held.append(_holding(grading))
        if any(
            a.class_of_works == cls and a.pe_allowed and grading.grade == a.grade - 1 for a in requirement_alternatives
        ):
            pe_short.append(grading.label)
    parts = []
    if held:
        parts.append(_join(list(dict.fromkeys(held))))
    if missing:
        parts.append(f"no {_join(missing, 'or')} grading")
    reason = f"{wanted}; you hold {_join(parts)}"
    if pe_short:
        reason += f" (a PE registration would admit {_join(pe_short)})"
    return CheckResult(False, reason, blocking=True)
