"""What the runner concludes from what it saw (pure): each send's verdict, and the harmful writes found in the
namespace's stores (operator keys, keys outside the catalogue, anything carrying the id of a refused case)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from schema.events import MAX_ID
from schema.mongo import COLLECTIONS
from schema.redis_keys import READINESS_COMPANIES, READINESS_TENDERS, SPEND_TENDER_STATE, InvalidKeyError, family_of
from tenderhub.corpus.cases import Expect, Outcome

# Document fields that carry an aggregate or event id.
ID_FIELDS = ("_id", "event_id", "tender_id", "team_id", "user_id", "company_id")
# Hashes whose field names are aggregate ids.
ID_FIELD_HASHES = frozenset(f.key() for f in (READINESS_TENDERS, READINESS_COMPANIES, SPEND_TENDER_STATE))
KNOWN_COLLECTIONS = frozenset(spec.name for spec in COLLECTIONS)
_REASON_QUOTE = 160


@dataclass(frozen=True)
class Letter:
    """One dead letter, from the relay (agent None) or a worker agent."""

    stage: str  # "relay" | "worker"
    agent: str | None
    reason: str

    def text(self) -> str:
        where = "relay DLQ" if self.stage == "relay" else f"worker DLQ [{self.agent}]"
        return f"{where}: {self.reason[:_REASON_QUOTE]}"


@dataclass
class Observed:
    """What became of one send."""

    refused: str | None = None
    letters: list[Letter] = field(default_factory=list)
    stored: bool | None = None  # None: not checked (the send was refused or dead-lettered)
    stored_note: str = ""

    def text(self) -> str:
        if self.refused is not None:
            return f"refused: {self.refused[:_REASON_QUOTE]}"
        parts = sorted({letter.text() for letter in self.letters})
        if self.stored:
            parts.append(f"stored ({self.stored_note})" if self.stored_note else "stored")
        elif self.stored is False and not parts:
            parts.append(f"not stored ({self.stored_note})")
        return "; ".join(parts) or "nothing seen"


def verdict(expect: Expect, seen: Observed) -> str | None:
    """None when the send went where the case says; else what differs."""
    if expect.outcome is Outcome.REFUSED:
        if seen.refused is None:
            return "expected the write to be refused"
        return None if expect.reason in seen.refused else f"refused, but not for {expect.reason!r}"
    if seen.refused is not None:
        return f"the write was refused: {seen.refused[:_REASON_QUOTE]}"
    if expect.outcome is Outcome.DLQ:
        if not seen.letters:
            return "no dead letter"
        wrong = [letter for letter in seen.letters if expect.reason not in letter.reason]
        return f"dead letter without {expect.reason!r}: {wrong[0].text()}" if wrong else None
    if seen.letters:
        return f"dead-lettered: {seen.letters[0].text()}"
    if not seen.stored:
        return f"not stored: {seen.stored_note or '?'}"
    return None


def operator_keys(value: Any, path: str = "") -> list[str]:
    """Paths of keys a store must never hold: `$`-operators and NUL (what MongoDB would read as a query or cut)."""
    found: list[str] = []
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:  # iterative: a stored document may be deep
        node, where = stack.pop()
        if isinstance(node, Mapping):
            for key, inner in node.items():
                name = str(key)
                if name.startswith("$") or "\x00" in name:
                    found.append(f"{where}.{name!r}")
                stack.append((inner, f"{where}.{name}"))
        elif isinstance(node, list | tuple):
            stack.extend((inner, f"{where}[{i}]") for i, inner in enumerate(node))
    return found


def harmful_documents(collection: str, docs: Iterable[Mapping[str, Any]], forbidden: set[int]) -> list[str]:
    """Problems in one collection: it is not a declared collection, a document holds operator keys, or it carries
    the id of a send that must leave nothing behind."""
    problems = [] if collection in KNOWN_COLLECTIONS else [f"MongoDB collection {collection!r} is not declared"]
    for doc in docs:
        name = f"{collection}/{str(doc.get('_id'))[:40]}"
        problems.extend(f"{name}: operator key {p}" for p in operator_keys(doc))
        for id_field in ID_FIELDS:
            value = doc.get(id_field)
            if isinstance(value, int) and value in forbidden:
                problems.append(f"{name}: {id_field} {value} is a dead-lettered case's id")
    return problems


def harmful_keys(
    prefix: str, keys: Iterable[str], hash_fields: Mapping[str, Iterable[str]], forbidden: set[int]
) -> list[str]:
    """Problems in the namespace's Redis keys: a key outside the catalogue (so built from something no family
    validates), or a hash field naming an invalid or dead-lettered id."""
    problems = []
    for full in keys:
        if not full.startswith(prefix):
            problems.append(f"Redis key {full[:80]!r} lacks the namespace prefix")
            continue
        key = full[len(prefix) :]
        try:
            family_of(key)
        except InvalidKeyError:
            problems.append(f"Redis key {full[:80]!r} is not in the key catalogue")
            continue
        if key in ID_FIELD_HASHES:
            for name in hash_fields.get(full, ()):
                if name.startswith("__"):
                    continue  # the families' own markers (__gen, __epoch, __as_of)
                if not (name.isascii() and name.isdigit() and name[0] != "0" and int(name) <= MAX_ID):
                    problems.append(f"Redis hash {full} has field {name[:40]!r}, not an id")
                elif int(name) in forbidden:
                    problems.append(f"Redis hash {full} has field {name}, a dead-lettered case's id")
    return problems
