"""Province coverage: does the company work where the tender is? Names, abbreviations and aliases from the
reference tables ("GP", "KZN", "Gauteng Province", "Kwazulu-Natal") resolve to one canonical province; eTenders'
"National" means every province.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from streams.readiness.reference import CheckResult, ReadinessError, reference_tables

NATIONAL = "National"
_NATIONAL_KEYS = frozenset({"national", "nationwide", "all provinces", "all", "south africa", "rsa", "za"})
# Several provinces in one field ("Gauteng, Limpopo", "Free State / North West"). Whitespace runs are collapsed
# first, so the pattern never scans one: `\s*` around a separator took quadratic time on a run of spaces with no
# separator after it (20,000 spaces: 7 s, holding the GIL).
_SPLIT = re.compile(r" ?(?:,|;|/|&|\band\b|\+) ?", re.IGNORECASE)


class UnknownProvinceError(ReadinessError):
    """A company profile names a province the reference tables do not know."""


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", name.lower()).strip()


def _without_province_word(key: str) -> str:
    """'gauteng province', 'the province of gauteng' -> 'gauteng' (tried after the exact key: 'Northern Province'
    is an alias of Limpopo, while 'Northern' alone is nothing)."""
    return re.sub(r" province$", "", re.sub(r"^(?:the )?province of ", "", key))


def _build_lookup() -> dict[str, str]:
    lookup: dict[str, str] = {}
    for p in reference_tables().provinces:
        for alias in (p.name, p.abbr, p.iso, *p.aliases):
            key = _key(alias)
            # Both "kwazulu natal" and "kwazulunatal", "north west" and "northwest": spacing varies in free text.
            lookup[key] = p.name
            lookup[key.replace(" ", "")] = p.name
    return lookup


_LOOKUP = _build_lookup()
ALL_PROVINCES: tuple[str, ...] = reference_tables().province_names
_ORDER = {name: i for i, name in enumerate(ALL_PROVINCES)}


def resolve_province(name: str) -> str | None:
    """The canonical province for a name, abbreviation or alias; NATIONAL for a national scope; None if unknown."""
    key = _key(name)
    if key in _NATIONAL_KEYS:
        return NATIONAL
    for candidate in (key, _without_province_word(key)):
        found = _LOOKUP.get(candidate) or _LOOKUP.get(candidate.replace(" ", ""))
        if found is not None:
            return found
    return None


@dataclass(frozen=True)
class ProvinceScope:
    """Where a tender is, resolved once when its facts are built."""

    raw: str | None
    # Canonical names in reference-table order; all nine for a national tender; empty when unknown.
    provinces: tuple[str, ...]
    national: bool

    @property
    def known(self) -> bool:
        return bool(self.provinces)


def tender_scope(raw: str | None) -> ProvinceScope:
    """Resolve a tender's province field. Parts that name no province are ignored when another part resolves."""
    if raw is None or not raw.strip():
        return ProvinceScope(raw, (), False)
    resolved = {resolve_province(part) for part in _SPLIT.split(" ".join(raw.split())) if part}
    if NATIONAL in resolved:
        return ProvinceScope(raw, ALL_PROVINCES, True)
    names = sorted((r for r in resolved if r is not None), key=_ORDER.__getitem__)
    return ProvinceScope(raw, tuple(names), False)


def company_provinces(names: Iterable[str]) -> tuple[str, ...]:
    """Canonical provinces a company covers, in reference-table order; "National" expands to all nine.

    Raises UnknownProvinceError naming the value and the accepted names: a profile is not scored with a guess.
    """
    covered: set[str] = set()
    for name in names:
        resolved = resolve_province(name) if isinstance(name, str) else None
        if resolved is None:
            raise UnknownProvinceError(
                f"unknown province {name!r}; use one of {', '.join(ALL_PROVINCES)}, an abbreviation such as GP or "
                f"KZN, or {NATIONAL!r} for all provinces"
            )
        covered.update(ALL_PROVINCES if resolved == NATIONAL else (resolved,))
    return tuple(sorted(covered, key=_ORDER.__getitem__))


def _names(provinces: Collection[str]) -> str:
    ordered = sorted(provinces, key=_ORDER.__getitem__)
    if len(ordered) == len(ALL_PROVINCES):
        return "all provinces"
    if len(ordered) == 1:
        return ordered[0]
    return f"{', '.join(ordered[:-1])} and {ordered[-1]}"


def check_coverage(scope: ProvinceScope, covered: Collection[str]) -> CheckResult:
    """Pass when the company covers the tender's province (any of them for a multi-province tender).

    `covered` holds canonical names (from `company_provinces`). A province the company does not cover is a blocking
    failure; an unknown or missing tender province cannot be checked and does not apply.
    """
    if not scope.known:
        if scope.raw is None or not scope.raw.strip():
            return CheckResult(None, "The tender states no province, so coverage was not checked")
        return CheckResult(
            None, f"The tender's province {scope.raw.strip()!r} is not one we know, so coverage was not checked"
        )
    if scope.national:
        held = f"; you cover {_names(covered)}" if covered else ""
        return CheckResult(True, f"National tender, open to bidders from all provinces{held}")
    where = f"Tender is in {_names(scope.provinces)}"
    if not covered:
        return CheckResult(False, f"{where}; your profile lists no provinces")
    overlap = [p for p in scope.provinces if p in covered]
    if overlap:
        return CheckResult(True, f"{where}; you cover {_names(covered)}")
    return CheckResult(False, f"{where}; you cover only {_names(covered)}", blocking=True)
