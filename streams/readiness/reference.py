"""South African reference tables the readiness rules need (CIDB classes of works, provinces with their aliases,
B-BBEE levels), loaded once from the JSON shipped in this package, plus the small types every check shares.

`reference_tables.json` is a verbatim copy of `data/za_reference_tables.json` (public facts compiled from the CIDB
and the B-BBEE codes; see data/README.md). It ships as package data so an installed wheel can score without the
repository checkout.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

TABLES_RESOURCE = "reference_tables.json"


class ReadinessError(ValueError):
    """Root of the readiness errors: input the rules cannot score (a bad payload, an unknown province, bad weights).

    Policy: the caller rejects the input with this message (an agent sends the event to the DLQ); it is never
    scored with a guess.
    """


class ReferenceDataError(ReadinessError):
    """The packaged reference tables are missing or malformed: a packaging bug, fatal at start-up."""


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one readiness check.

    `passed` is None when the check does not apply or cannot be decided (the tender states nothing to check).
    `blocking` marks a failure that rules the bid out (CIDB grading not held, province not covered, closed): the
    score policy in `scoring` treats those differently from a shortfall the company can still live with.
    """

    passed: bool | None
    reason: str
    blocking: bool = False


@dataclass(frozen=True)
class Province:
    name: str
    abbr: str
    iso: str
    aliases: tuple[str, ...]


@dataclass(frozen=True)
class ReferenceTables:
    # Class code -> description, in the table's order (CE, GB, EB, EP, ME, then the specialist classes SB..SQ).
    cidb_classes: Mapping[str, str]
    provinces: tuple[Province, ...]
    # Numeric B-BBEE levels, best first (1 = highest recognition); "non-compliant" is the absence of a level.
    bbbee_levels: tuple[int, ...]

    @property
    def province_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.provinces)


def _tables_from_json(data: Any, source: str) -> ReferenceTables:
    try:
        classes = data["cidb_classes"]
        provinces = data["provinces"]
        levels = data["bbbee_levels"]
        if not isinstance(classes, dict) or not all(
            isinstance(k, str) and len(k) == 2 and k.isupper() for k in classes
        ):
            raise ReferenceDataError(f"{source}: cidb_classes must map two-letter class codes to descriptions")
        parsed = tuple(
            Province(
                name=str(p["name"]),
                abbr=str(p["abbr"]),
                iso=str(p["iso"]),
                aliases=tuple(str(a) for a in p.get("aliases", [])),
            )
            for p in provinces
        )
        numeric = tuple(int(lv["level"]) for lv in levels if isinstance(lv.get("level"), int))
    except (KeyError, TypeError, AttributeError) as exc:
        raise ReferenceDataError(f"{source}: malformed reference tables ({exc!r})") from exc
    if len(parsed) != 9:
        raise ReferenceDataError(f"{source}: expected the 9 South African provinces, found {len(parsed)}")
    if numeric != tuple(range(1, 9)):
        raise ReferenceDataError(f"{source}: expected B-BBEE levels 1..8, found {numeric}")
    return ReferenceTables(
        cidb_classes=MappingProxyType({str(k): str(v) for k, v in classes.items()}),
        provinces=parsed,
        bbbee_levels=numeric,
    )


def load_reference_tables(path: Path | None = None) -> ReferenceTables:
    """Read the tables from `path`, or from the copy packaged with this module."""
    try:
        if path is None:
            text = resources.files(__package__ or "streams.readiness").joinpath(TABLES_RESOURCE).read_text("utf-8")
            source = f"package resource {TABLES_RESOURCE}"
        else:
            text = path.read_text(encoding="utf-8")
            source = str(path)
    except OSError as exc:
        raise ReferenceDataError(f"cannot read the reference tables: {exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReferenceDataError(f"{source}: not valid JSON ({exc})") from exc
    return _tables_from_json(data, source)


@functools.cache
def reference_tables() -> ReferenceTables:
    """The packaged tables, read once per process (every parser and check builds its lookups from them)."""
    return load_reference_tables()
