"""Scenario 1, readiness: every team scored against every open tender, kept right under tender and company events.

Pure core (streams.readiness.scoring does the rules): facts from events (`fold_tender_facts`, `company_facts_value`),
their checks (`check_tender_facts`, `check_company_facts`), `is_open`, and top-k maintenance (`top_k`,
`update_top`). Wrapper: the facts of every tender and company live in two version-guarded Redis hashes
(event-carried state, so a replay rebuilds the same scores without reading MySQL); a fact the rules cannot use is
refused with its event (DLQ) before it is stored, and one stored by an older version is skipped, never a crash.

A tender event rescores that tender for every team, a company event that team against every open tender; what is
already done is read from the derived stores, never inferred from "did this call write the facts": scores in MongoDB
`readiness_scores` carry the versions of both inputs and the rules (a document at those versions is not written
again; a closed or cancelled tender's documents become not biddable); `team:{<id>}:top_tenders`, owned here, carries
the versions of its inputs (company profile, tender facts generation) and is replaced by compare-and-set only by a
list built from inputs at least as new, so a retry after a failure at any point, a second worker or the sweep all end
with the lists the facts give. A leader timer sweeps tenders whose closing date passed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, cast

from pydantic import Field
from pydantic.dataclasses import dataclass as model

from schema.checked import STRICT, checked, unchecked, whole
from schema.events import OPEN_STATUSES, CompanyUpdatedV1, ContractError, Envelope, TenderClosedV1, TenderV1
from schema.mongo import READINESS_SCORES
from schema.redis_keys import READINESS_COMPANIES, READINESS_TENDERS, TEAM_TOP_INPUTS, TEAM_TOP_TENDERS
from sinks.errors import PermanentSinkError
from sinks.mongo import VersionedDoc, storable_text
from sinks.redis_versioned import EMPTY, GENERATION_FIELD, HashSnapshot, ListChange, TopList, VersionedHash, ZsetCas
from streams.batch import Incoming, refused_event
from streams.context import WorkerContext
from streams.readiness.reference import ReadinessError
from streams.readiness.scoring import (
    DEFAULT_WEIGHTS,
    MAX_ID,
    CompanyFacts,
    FactsError,
    Readiness,
    ReadinessWeights,
    TenderFacts,
    company_facts_from_payload,
    rules_version,
    score,
    tender_facts_from_payload,
    weights_with,
)
from streams.spec import AgentSpec, Timer

log = logging.getLogger(__name__)

_REFILL_CHUNK = 1000  # facts per write of a refill from MySQL

AGENT = "readiness"
_CAS_ROUNDS = 5
# Tenders rescored per sweep when their scores come from other rules (a sweep every readiness_sweep_s).
RULES_CATCH_UP = 200


# -- pure core ---------------------------------------------------------------------------------------------------


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def fold_tender_facts(previous: Mapping[str, Any] | None, payload: Any) -> dict[str, Any]:
    """The tender's facts after one event: created/updated carry the whole tender, closed only its status."""
    if isinstance(payload, TenderV1):
        description = payload.description if payload.description and payload.description != payload.title else None
        # Text as the stores keep it (no NUL): the checklist quotes it, and a document the store refuses would
        # refuse every batch that rescores the tender.
        return {
            "tender_id": payload.tender_id,
            "title": storable_text(payload.title),
            "description": storable_text(description),
            "category": storable_text(payload.category),
            "province": storable_text(payload.province),
            "closing_at": _iso(payload.closing_at),
            "buyer": storable_text(payload.buyer),
            "special_conditions": storable_text(payload.special_conditions),
            "status": payload.status,
        }
    if isinstance(payload, TenderClosedV1):
        base = dict(previous) if previous is not None else {"tender_id": payload.tender_id, "title": ""}
        base["status"] = payload.status
        return base
    raise ContractError(f"{AGENT}: not a tender payload: {type(payload).__name__}")


def company_facts_value(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, CompanyUpdatedV1):
        raise ContractError(f"{AGENT}: not a company payload: {type(payload).__name__}")
    if payload.sectors is None or payload.provinces is None or payload.cidb is None:
        raise ContractError(
            f"company.updated for team {payload.team_id} carries no profile (sectors, provinces, cidb): readiness "
            "needs the whole profile in the event; republish it with the profile"
        )
    return {
        "team_id": payload.team_id,
        "company_id": payload.company_id,
        "company_name": storable_text(payload.company_name),
        # As a tender's text: a label the checklist quotes must be one the store keeps.
        "sectors": [storable_text(s) for s in payload.sectors],
        "provinces": [storable_text(p) for p in payload.provinces],
        "experience_years": payload.experience_years,
        "bbbee_level": payload.bbbee_level,
        # By class of works: the order the profile listed them in is not a fact (MySQL, which verify and rebuild
        # read, gives them back by class), and the reasons a score names must not depend on it.
        "cidb": [g.model_dump() for g in sorted(payload.cidb, key=lambda g: g.class_of_works)],
    }


def is_open(facts: Mapping[str, Any], as_of: dt.datetime) -> bool:
    """Open = an open status and a closing date after `as_of` (naive = UTC). A tender without a closing date is
    not open for bids: nobody can say until when (requests for information, notices)."""
    if facts.get("status", "active") not in OPEN_STATUSES:
        return False
    closing = facts.get("closing_at")
    if closing is None:
        return False
    when = dt.datetime.fromisoformat(closing)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    ref = as_of if as_of.tzinfo is not None else as_of.replace(tzinfo=dt.UTC)
    return when > ref


def eligible(result: Readiness) -> bool:
    """Whether a score may enter a top list: a bid is possible, the score is above zero, and the tender is in the
    company's sectors (a profile without sectors cannot decide that, and keeps every biddable tender)."""
    sector = next((item.passed for item in result.checklist if item.name == "sector"), None)
    return result.biddable and result.score > 0 and sector is not False


def top_k(scores: Mapping[int, float], k: int) -> dict[int, float]:
    """The k best (ties: lower tender id first, so the result is deterministic)."""
    best = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:k]
    return dict(best)


def update_top(current: Mapping[int, float], tender_id: int, new: float | None, k: int) -> dict[int, float] | None:
    """The top list after one tender's score changed (None = no longer eligible), or None when it cannot be known
    from the list alone (a member dropped or fell: the next best is not in the list) and a full rescore is needed."""
    if tender_id in current:
        if new is None or (len(current) >= k and new < current[tender_id]):
            return None
        updated = dict(current)
        updated[tender_id] = new
        return top_k(updated, k)
    if new is None:
        return dict(current)
    if len(current) < k:
        if len(current) == 0:
            return None  # empty may mean "expired": only a full rescore knows
        updated = dict(current)
        updated[tender_id] = new
        return top_k(updated, k)
    worst = min(current.items(), key=lambda item: (item[1], -item[0]))
    if (new, -tender_id) <= (worst[1], -worst[0]):
        return dict(current)
    updated = dict(current)
    updated[tender_id] = new
    return top_k(updated, k)


@dataclass(frozen=True)
class _Entry:
    version: int
    raw: str
    facts: Any  # TenderFacts | CompanyFacts
    value: dict[str, Any]


def _probe_tender() -> TenderFacts:
    return tender_facts_from_payload(
        {
            "tender_id": 1,
            "title": "Construction of a road",
            "description": "Construction of a road; CIDB grading of 5CE or higher; 3 years of experience",
            "category": "Construction",
            "province": "Gauteng",
            "closing_at": "2030-01-01T09:00:00",
            "special_conditions": "B-BBEE level 4 or better",
        }
    )


def _probe_company() -> CompanyFacts:
    return company_facts_from_payload(
        {
            "team_id": 1,
            "company_id": 1,
            "sectors": ["Construction"],
            "provinces": ["National"],
            "experience_years": 5,
            "bbbee_level": 2,
            "cidb": [{"class_of_works": "CE", "grade": 6}],
        }
    )


_PROBE_TENDER = _probe_tender()
_PROBE_COMPANY = _probe_company()
# What a stored value or a rule can raise on data it cannot use: such a fact is poison, never a crash.
_UNUSABLE = (ReadinessError, ValueError, TypeError, KeyError, OverflowError, RecursionError)


@checked(FactsError, {"event_id": "a positive 64-bit integer", "status": "a non-empty string"})
@model(frozen=True, config=STRICT)
class StoredMark:
    """What a stored facts value carries beside the facts: the id of the event that set it, and (tenders) the status
    it left the tender in."""

    event_id: Annotated[int, Field(ge=1, le=MAX_ID)]
    status: Annotated[str, Field(min_length=1)] = "active"


def check_tender_facts(value: Any, as_of: dt.datetime, weights: ReadinessWeights = DEFAULT_WEIGHTS) -> TenderFacts:
    """The facts of a stored (or about to be stored) tender value, if the rules can use them: parsed, a known
    status, an event id, and scored once against a probe company. Raises FactsError otherwise."""
    if not isinstance(value, Mapping):
        raise FactsError(f"tender facts must be an object, got {type(value).__name__}")
    StoredMark(unchecked(value.get("event_id")), unchecked(value.get("status", "active")))
    facts = tender_facts_from_payload(value)
    if not isinstance(facts.tender_id, int):
        raise FactsError(f"tender_id must be an integer, got {repr(facts.tender_id)[:40]}")
    _trial(facts, _PROBE_COMPANY, as_of, weights)
    return facts


def check_company_facts(value: Any, as_of: dt.datetime, weights: ReadinessWeights = DEFAULT_WEIGHTS) -> CompanyFacts:
    """The facts of a stored (or about to be stored) company value, if the rules can use them (see
    `check_tender_facts`). Raises FactsError otherwise."""
    if not isinstance(value, Mapping):
        raise FactsError(f"company facts must be an object, got {type(value).__name__}")
    StoredMark(unchecked(value.get("event_id")))
    facts = company_facts_from_payload(value)
    _trial(_PROBE_TENDER, facts, as_of, weights)
    return facts


def _trial(tender: TenderFacts, company: CompanyFacts, as_of: dt.datetime, weights: ReadinessWeights) -> None:
    try:
        score(tender, company, as_of, weights)
    except _UNUSABLE as exc:
        raise FactsError(f"the rules cannot score these facts: {type(exc).__name__}: {exc}") from None


def score_document(result: Readiness, tender: _Entry, company: _Entry) -> VersionedDoc:
    """The score document, versioned by both inputs. Its event is the newer input's (in commit order), so a replay
    that interleaves the tender and company topics differently still writes the same document. A tender whose
    status is not open (closed, cancelled, ...) scores 0 and is not biddable, whatever its closing date says."""
    tender_seq, team_seq = tender.version, company.version
    event_id = int(tender.value["event_id"] if tender_seq >= team_seq else company.value["event_id"])
    fields = result.to_dict()
    team_id, tender_id = fields.pop("team_id"), fields.pop("tender_id")
    status = str(tender.value.get("status", "active"))
    fields["tender_status"] = status
    if status not in OPEN_STATUSES:
        # As the rules treat a closing date that passed: nothing to bid for, whatever the checklist says.
        fields["score"] = 0.0
        fields["biddable"] = False
        fields["blocked_by"] = [*fields["blocked_by"], "status"]
    # The team's profile version is part of the key (its generation, see `ReadinessHandler._retire`): a profile change
    # inserts a new generation of documents, which FerretDB writes many times faster than it updates documents.
    return VersionedDoc(
        key={"team_id": team_id, "tender_id": tender_id, TEAM_SEQ: team_seq},
        fields=fields,
        versions={"tender_seq": tender_seq},
        event_id=event_id,
    )


# -- wrapper -----------------------------------------------------------------------------------------------------


class FactsCache:
    """Parsed facts by id, reused while the stored value is unchanged (parsing a tender costs ~60 µs). A stored
    value the rules cannot use (poison, e.g. written by an older version) is left out, logged once per stored
    value and counted in `poison`: it never stops the rescoring of the others."""

    def __init__(self, what: str, check: Callable[[Any], Any]) -> None:
        self._what = what
        self._check = check
        self._entries: dict[int, _Entry] = {}
        self._bad: dict[str, str] = {}  # field -> the stored form already reported
        self._lock = threading.Lock()  # the sweep (a timer) and a batch may sync at the same time, in threads
        self.poison = 0

    def sync(self, snapshot: HashSnapshot) -> dict[int, _Entry]:
        with self._lock:
            return self._sync(snapshot)

    def _sync(self, snapshot: HashSnapshot) -> dict[int, _Entry]:
        fresh: dict[int, _Entry] = {}
        bad: dict[str, str] = {}
        for field, reason in snapshot.unreadable.items():
            self._report(bad, field, reason, reason)
        for field, item in snapshot.entries.items():
            key = int(field) if field.isascii() and field.isdigit() else None
            old = self._entries.get(key) if key is not None else None
            if key is not None and old is not None and old.raw == item.value and old.version == item.version:
                fresh[key] = old
                continue
            stored = f"{item.version}|{item.value}"
            if self._bad.get(field) == stored:
                bad[field] = stored
                continue
            try:
                value = json.loads(item.value)
                facts = self._check(value)
                if key is None or facts_id(facts) != key:
                    raise FactsError(f"field {field[:40]!r} does not match the facts' id {facts_id(facts)}")
            except _UNUSABLE as exc:
                self._report(bad, field, stored, f"{type(exc).__name__}: {exc}")
                continue
            fresh[key] = _Entry(item.version, item.value, facts, value)
        self._entries = fresh
        self._bad = bad
        self.poison = len(bad)
        return fresh

    def _report(self, bad: dict[str, str], field: str, stored: str, reason: str) -> None:
        if self._bad.get(field) != stored:
            log.warning(
                "%s: stored %s facts %s cannot be used and are skipped (fix or republish them): %s",
                AGENT,
                self._what,
                field[:40],
                reason[:300],
            )
        bad[field] = stored


def facts_id(facts: Any) -> int:
    return int(facts.team_id if isinstance(facts, CompanyFacts) else facts.tender_id)


@dataclass(frozen=True)
class Facts:
    """Both facts hashes as read, with their generations and the tenders open as of the read."""

    tenders: dict[int, _Entry]
    companies: dict[int, _Entry]
    generation: int  # the tender hash's
    open_tenders: dict[int, _Entry]
    company_generation: int = 0

    def changed(self, fresh: Facts, pairs: Collection[Pair]) -> set[int]:
        """The tenders of `pairs` whose tender or company facts differ in `fresh` (newer, or gone)."""

        def moved(mine: _Entry | None, theirs: _Entry | None) -> bool:
            return mine is None or theirs is None or mine.version != theirs.version

        return {
            tender
            for team, tender in pairs
            if moved(self.tenders.get(tender), fresh.tenders.get(tender))
            or moved(self.companies.get(team), fresh.companies.get(team))
        }

    def list_inputs(self, team: int) -> dict[str, int]:
        """What a team's top list is built from: its company profile's version and the tender facts' generation."""
        return {TEAM_SEQ: self.companies[team].version, GENERATION_FIELD: self.generation}


TEAM_SEQ = "team_seq"
Pair = tuple[int, int]  # (team, tender)
StoredVersions = dict[Pair, tuple[Any, Any, Any]]  # (tender_seq, team_seq, rules_version) of stored documents


@dataclass
class _Plan:
    docs: list[VersionedDoc]
    # Per team: the touched tenders' scores (None = not in a top list any more), in tender order.
    updates: dict[int, list[tuple[int, float | None]]]
    full: dict[int, dict[int, float]]  # touched teams: their whole top list


class ReadinessHandler:
    def __init__(self, ctx: WorkerContext) -> None:
        self._ctx = ctx
        redis = ctx.redis
        self.tenders = VersionedHash(redis, READINESS_TENDERS.key(), READINESS_TENDERS.ttl_s)
        self.companies = VersionedHash(redis, READINESS_COMPANIES.key(), READINESS_COMPANIES.ttl_s)
        self.tops = ZsetCas(redis, TEAM_TOP_TENDERS.ttl_s, inputs_suffix=_INPUTS_SUFFIX)
        self.weights = weights_with(ctx.settings.readiness_weights)
        self._tender_cache = FactsCache("tender", lambda v: check_tender_facts(v, self.as_of(), self.weights))
        self._company_cache = FactsCache("company", lambda v: check_company_facts(v, self.as_of(), self.weights))
        self.k = ctx.settings.readiness_top_k
        self.scored = 0
        self.unscorable = 0  # (team, tender) pairs whose score raised: skipped, logged
        self.rescored_after_change = 0  # tenders scored again because their facts changed while being written

    @property
    def poison_facts(self) -> int:
        """Stored facts the rules cannot use (skipped at every rescore), as of the last read."""
        return self._tender_cache.poison + self._company_cache.poison

    def as_of(self) -> dt.datetime:
        # End of the as-of day in UTC: "open as of 2026-03-01" includes tenders closing later that day.
        day = self._ctx.as_of()
        return dt.datetime.combine(day, dt.time(23, 59, 59), tzinfo=dt.UTC)

    async def __call__(self, items: Sequence[Incoming[TenderV1 | TenderClosedV1 | CompanyUpdatedV1]]) -> None:
        tender_events = [(n, i.event) for n, i in enumerate(items) if i.event.event_type.startswith("tender.")]
        company_events = [(n, i.event) for n, i in enumerate(items) if i.event.event_type == "company.updated"]
        # Everything is checked before anything is stored: a fact the rules cannot use is refused (that one event
        # to the DLQ, the runner retries the rest) and never reaches the hash every later rescore reads.
        tender_writes = await self._tender_writes(tender_events)
        company_writes = self._company_writes(company_events)
        await self.tenders.put_if_newer(tender_writes)
        await self.companies.put_if_newer(company_writes)
        # What to rescore comes from the batch's ids, whether or not this call wrote their facts: after a failure
        # past the facts write, the retry finds them stored and must still bring the scores and lists up to them.
        # The stored documents' versions and the lists' inputs say what is already done.
        touched_tenders = {int(e.aggregate_id) for _, e in tender_events}
        touched_teams = {int(e.aggregate_id) for _, e in company_events}
        if touched_tenders or touched_teams:
            await self.rescore(touched_tenders, touched_teams)

    async def _tender_writes(self, events: Sequence[tuple[int, Envelope[Any]]]) -> dict[str, tuple[int, str]]:
        if not events:
            return {}
        as_of = self.as_of()
        for n, e in events:
            _check_envelope(n, e)
        ids = sorted({int(e.aggregate_id) for _, e in events})
        stored = await self.tenders.get([str(t) for t in ids])
        current: dict[int, tuple[int, Any]] = {}
        for t in ids:
            item = stored[str(t)]
            current[t] = (-1, None) if item is None else (item.version, _loads(item.value))
        written: set[int] = set()
        for n, e in events:
            t = int(e.aggregate_id)
            version, previous = current[t]
            applies = e.source_seq > version
            if not applies and not isinstance(e.payload, TenderV1):
                continue  # a stale close: nothing of it is stored (a stale full tender is still checked below)
            base = previous if isinstance(previous, dict) else None
            facts = fold_tender_facts(base, e.payload) | {"event_id": e.event_id}
            try:
                check_tender_facts(facts, as_of, self.weights)
            except _UNUSABLE as exc:
                raise _refused(n, e, f"tender facts the rules cannot use: {type(exc).__name__}: {exc}") from None
            if applies:
                current[t] = (e.source_seq, facts)
                written.add(t)
        return {str(t): (current[t][0], _dumps(current[t][1])) for t in sorted(written)}

    def _company_writes(self, events: Sequence[tuple[int, Envelope[Any]]]) -> dict[str, tuple[int, str]]:
        as_of = self.as_of()
        latest: dict[int, tuple[int, str]] = {}
        for n, e in events:
            _check_envelope(n, e)
            value = company_facts_value(e.payload) | {"event_id": e.event_id}
            try:
                check_company_facts(value, as_of, self.weights)
            except _UNUSABLE as exc:
                raise _refused(n, e, f"company facts the rules cannot use: {type(exc).__name__}: {exc}") from None
            team = int(e.aggregate_id)
            if team not in latest or e.source_seq > latest[team][0]:
                latest[team] = (e.source_seq, _dumps(value))
        return {str(team): latest[team] for team in sorted(latest)}

    async def read_facts(self, as_of: dt.datetime) -> Facts:
        """Both facts hashes, parsed (poison left out), and the tenders open as of `as_of`; refilled from MySQL first
        when they were lost (see `_whole_facts`)."""
        tender_snap = await self.tenders.snapshot()
        company_snap = await self.companies.snapshot()
        if not (tender_snap.whole and company_snap.whole) and await self._whole_facts():
            tender_snap = await self.tenders.snapshot()
            company_snap = await self.companies.snapshot()
        # Parsing and checking what changed (~85 us a fact, all of them at start-up): off the event loop.
        tenders = await asyncio.to_thread(self._tender_cache.sync, tender_snap)
        companies = await asyncio.to_thread(self._company_cache.sync, company_snap)
        open_tenders = {t: e for t, e in tenders.items() if _open(e, as_of)}
        return Facts(tenders, companies, tender_snap.generation, open_tenders, company_snap.generation)

    async def _whole_facts(self) -> bool:
        """Make both facts hashes whole again: they carry a marker (`WHOLE_FIELD`) that goes with the key, so a hash
        without one is new, or was lost whole (every key of a Redis restarted without persistence, a FLUSHALL, seven
        days without a worker). Scores in MongoDB tell the two apart: once any pair was scored, the facts were lost,
        and scoring on from what is left would write top lists of the tenders seen since, and retire a changed
        team's older documents as if no other tender existed. So they are refilled from MySQL (rows read after
        the relay's high-water mark, the version they get: the rule of `tenderhub rebuild`), then marked. Returns
        True when it refilled. (Left: a deployment that had facts but never a score, no team yet, starts afresh.)"""
        started = await self._ctx.mongo.ids_where_not(READINESS_SCORES.name, "tender_id", "rules_version", "", 1)
        if started:
            await self._refill_facts()
        await self.tenders.mark_whole()
        await self.companies.mark_whole()
        return bool(started)

    async def _refill_facts(self) -> None:
        from streams.rebuild import high_water  # both modules import this one
        from streams.verify import ROWS_AT, company_rows, event, tender_payload, tender_rows

        log.warning("%s: the facts hashes were lost (scores exist, facts do not): refilling them from MySQL", AGENT)
        version = max(await high_water(self._ctx.settings), 1)
        engine = self._ctx.engine

        def read() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            rows = [tender_payload(row) for chunk in tender_rows(engine) for row in chunk]
            return rows, company_rows(engine)

        tender_payloads, company_payloads = await asyncio.to_thread(read)
        as_of = self.as_of()
        # The account of the worker may not read the outbox: the facts carry event id 1 (an event id is only named
        # in a score document; versions and keys come from the high-water mark and the ids).
        tenders: dict[str, tuple[int, str]] = {}
        companies: dict[str, tuple[int, str]] = {}
        for kind, payloads, out in (
            ("tender.updated", tender_payloads, tenders),
            ("company.updated", company_payloads, companies),
        ):
            for raw in payloads:
                entity = raw["tender_id"] if kind == "tender.updated" else raw["team_id"]
                try:
                    e = event(kind, int(entity), raw, event_id=1, source_seq=version, at=ROWS_AT)
                    if kind == "tender.updated":
                        value = fold_tender_facts(None, e.payload) | {"event_id": 1}
                        check_tender_facts(value, as_of, self.weights)
                    else:
                        value = company_facts_value(e.payload) | {"event_id": 1}
                        check_company_facts(value, as_of, self.weights)
                except (ContractError, FactsError) as exc:
                    log.warning("%s: %s %s left out of the refill: %s", AGENT, kind, entity, str(exc)[:300])
                    continue
                out[str(entity)] = (version, _dumps(value))
        for store, items in ((self.tenders, tenders), (self.companies, companies)):
            fields = sorted(items)
            for n in range(0, len(fields), _REFILL_CHUNK):
                await store.put_if_newer({f: items[f] for f in fields[n : n + _REFILL_CHUNK]})
        log.warning(
            "%s: refilled the facts of %d tenders and %d teams at source_seq %d",
            AGENT,
            len(tenders),
            len(companies),
            version,
        )

    async def rescore(self, tenders: Collection[int], teams: Collection[int]) -> None:
        """Bring the scores of `tenders` (every team) and of `teams` (every open tender), and the top lists, up to
        the stored facts; work already done (documents at these versions and rules) is not written again.

        Then, if the facts changed since they were read, score again the pairs written whose inputs moved: a
        document store whose guarded update is not atomic (FerretDB 1.x runs the filter, then replaces the document
        by `_id`) can let a score built from the facts we read land over the newer score of the worker that changed
        them. Whoever read before a change and wrote after it sees the change here, so the last score written for a
        pair is built from its newest facts, whatever the store's atomicity."""
        as_of = self.as_of()
        facts = await self.read_facts(as_of)
        for _ in range(_CAS_ROUNDS):
            written = await self._rescore(facts, tenders, teams, as_of)
            if not written:
                return
            now = (await self.tenders.generation(), await self.companies.generation())
            if now == (facts.generation, facts.company_generation):
                return
            fresh = await self.read_facts(as_of)
            moved = facts.changed(fresh, written)
            if not moved:
                return
            self.rescored_after_change += len(moved)
            facts, tenders, teams = fresh, moved, ()
        raise RuntimeError(f"{AGENT}: the facts of tenders {sorted(tenders)[:10]} kept changing ({_CAS_ROUNDS} rounds)")

    async def _rescore(
        self, facts: Facts, tenders: Collection[int], teams: Collection[int], as_of: dt.datetime
    ) -> list[Pair]:
        """One pass of `rescore` over `facts`; returns the pairs whose documents it sent to the store."""
        touched_tenders = sorted(set(tenders))
        touched_teams = sorted(t for t in set(teams) if t in facts.companies)
        # When the batch touched every tender (a rebuild, a replay), the tender read sees every document of every
        # team: no team needs a read of its own, and only the teams it found older documents of need a delete.
        # Otherwise a touched team's older generation is deleted blind (its own read is of the current generation
        # only), a scan of the team's documents on FerretDB.
        covers_all = bool(facts.tenders) and set(facts.tenders) <= set(touched_tenders)
        stored_docs = await self._stored_docs(facts, touched_tenders, () if covers_all else touched_teams)
        # Only the documents of each team's current generation count as done; older ones are retired below.
        stored: StoredVersions = {}
        retire = set() if covers_all else set(touched_teams)
        for d in stored_docs:
            company = facts.companies.get(d["team_id"])
            if company is None:
                continue
            if d.get(TEAM_SEQ) == company.version:
                stored[(d["team_id"], d["tender_id"])] = (d.get("tender_seq"), d.get(TEAM_SEQ), d.get("rules_version"))
            elif whole(d.get(TEAM_SEQ)) and d[TEAM_SEQ] < company.version:
                retire.add(d["team_id"])
        plan = await asyncio.to_thread(self._plan, facts, touched_tenders, touched_teams, stored, as_of)
        self.scored += len(plan.docs)
        if plan.docs:
            try:
                # The same read answers the sink's (every pair written is one of the pairs read), sparing a second
                # read of the same documents; the sink's guards still decide if they moved meanwhile.
                await self._ctx.mongo.upsert_versioned(READINESS_SCORES.name, plan.docs, stored=stored_docs)
            except PermanentSinkError as exc:
                raise refused_event(exc, None) from exc
        affected = sorted({team for team, u in plan.updates.items() if u} | set(plan.full))
        await self._update_tops(affected, plan.updates, plan.full, facts, as_of)
        await self._retire(sorted(retire), facts)
        return [(int(d.key["team_id"]), int(d.key["tender_id"])) for d in plan.docs]

    async def _stored_docs(self, facts: Facts, tenders: Sequence[int], teams: Sequence[int]) -> list[dict[str, Any]]:
        """Keys, versions and rules of the stored documents the batch may rewrite: every generation's for its
        tenders (one read for all teams), and each touched team's current generation (a new profile's is usually
        empty: reading the older generation would cost FerretDB more than inserting the new one)."""
        wanted = ["tender_seq", TEAM_SEQ, "rules_version"]
        docs: list[dict[str, Any]] = []
        known = [t for t in tenders if t in facts.tenders]
        if known:
            docs += await self._ctx.mongo.find_by_ids(READINESS_SCORES.name, "tender_id", known, ["team_id", *wanted])
        for team in teams:
            docs += await self._ctx.mongo.find_by_ids(
                READINESS_SCORES.name,
                "team_id",
                [team],
                ["tender_id", *wanted],
                where={TEAM_SEQ: facts.companies[team].version},
            )
        return docs

    async def _retire(self, teams: Sequence[int], facts: Facts) -> None:
        """Delete the score documents of `teams` from profiles older than the ones in `facts` (their generation is
        replaced: `_rescore` wrote the current one first). Also what a retry does after a failure between the two,
        and what cleans up after a worker whose older profile landed a document after a newer generation was
        written (its next round reads that tender again and finds the document)."""
        for team in teams:
            company = facts.companies.get(team)
            if company is not None:
                await self._ctx.mongo.delete_older(READINESS_SCORES.name, {"team_id": team}, TEAM_SEQ, company.version)

    def _plan(
        self,
        facts: Facts,
        tenders: Sequence[int],
        teams: Sequence[int],
        stored: StoredVersions,
        as_of: dt.datetime,
    ) -> _Plan:
        # Pairs to score: a touched tender for every team and a touched team against every tender, open or not.
        # Every known pair has its document (a closed tender's says not biddable), so which documents exist never
        # depends on how events were batched or redelivered: a tender created and closed in one batch, or closed
        # before a team appeared, ends exactly as when each event came alone. Top lists take open tenders only.
        pairs: set[Pair] = set()
        for tender_id in tenders:
            if tender_id in facts.tenders:
                pairs.update((team, tender_id) for team in facts.companies)
        for team in teams:
            pairs.update((team, tender_id) for tender_id in facts.tenders)
        docs: list[VersionedDoc] = []
        scores: dict[Pair, float] = {}
        failed: list[Pair] = []
        for team, tender_id in sorted(pairs):
            tender, company = facts.tenders[tender_id], facts.companies[team]
            try:
                result = score(tender.facts, company.facts, as_of, self.weights)
            except _UNUSABLE:
                failed.append((team, tender_id))
                continue
            if tender_id in facts.open_tenders and eligible(result):
                scores[(team, tender_id)] = result.score
            if stored.get((team, tender_id)) != (tender.version, company.version, result.rules_version):
                docs.append(score_document(result, tender, company))
        if failed:
            self.unscorable += len(failed)
            log.warning(
                "%s: %d (team, tender) pairs could not be scored and are skipped: %s", AGENT, len(failed), failed[:10]
            )
        touched = set(teams)
        updates: dict[int, list[tuple[int, float | None]]] = {
            team: [(t, scores.get((team, t))) for t in tenders] for team in facts.companies if team not in touched
        }
        full: dict[int, dict[int, float]] = {
            team: top_k({t: s for (c, t), s in scores.items() if c == team}, self.k) for team in teams
        }
        return _Plan(docs, updates, full)

    def _full_top(self, company: _Entry, open_tenders: Mapping[int, _Entry], as_of: dt.datetime) -> dict[int, float]:
        ranked = {}
        for tender_id, entry in open_tenders.items():
            try:
                result = score(entry.facts, company.facts, as_of, self.weights)
            except _UNUSABLE:
                self.unscorable += 1
                continue
            if eligible(result):
                ranked[tender_id] = result.score
        return top_k(ranked, self.k)

    async def _update_tops(
        self,
        teams: Sequence[int],
        updates: Mapping[int, Sequence[tuple[int, float | None]]],
        full: Mapping[int, dict[int, float]],
        facts: Facts,
        as_of: dt.datetime,
    ) -> None:
        pending = [team for team in teams if team in facts.companies]
        for round_ in range(_CAS_ROUNDS):
            if not pending:
                return
            keys = {team: TEAM_TOP_TENDERS.key(id=team) for team in pending}
            current = await self.tops.read(list(keys.values()))
            changes = await asyncio.to_thread(
                self._new_tops, pending, keys, current, round_, updates, full, facts, as_of
            )
            conflicts = set(await self.tops.replace_if_unchanged(changes))
            pending = [team for team in pending if keys[team] in conflicts]
            if pending:
                # Changed since we read them, or built from newer inputs than ours: start again from fresh facts,
                # with a full rescore.
                facts = await self.read_facts(as_of)
                pending = [team for team in pending if team in facts.companies]
        if pending:
            raise RuntimeError(f"{AGENT}: top lists of teams {pending[:10]} kept changing ({_CAS_ROUNDS} rounds)")

    def _new_tops(
        self,
        pending: Sequence[int],
        keys: Mapping[int, str],
        current: Mapping[str, TopList],
        round_: int,
        updates: Mapping[int, Sequence[tuple[int, float | None]]],
        full: Mapping[int, dict[int, float]],
        facts: Facts,
        as_of: dt.datetime,
    ) -> dict[str, ListChange]:
        changes: dict[str, ListChange] = {}
        for team in pending:
            read = current[keys[team]]
            if team in full and round_ == 0:
                new = full[team]
            else:
                # After a lost CAS round, the list read may already mix someone else's update: rescore in full.
                new_or_none: dict[int, float] | None = (
                    None if round_ > 0 else {int(m): float(s) for m, s in read.members}
                )
                for tender_id, value in updates.get(team, ()):
                    if new_or_none is None:
                        break
                    new_or_none = update_top(new_or_none, tender_id, value, self.k)
                if new_or_none is None:
                    new = self._full_top(facts.companies[team], facts.open_tenders, as_of)
                else:
                    new = new_or_none
            inputs = facts.list_inputs(team)
            if _same_list(read, new, inputs):
                continue  # already what these inputs give (a redelivery, or a retry after the write)
            changes[keys[team]] = ListChange(read, {str(t): s for t, s in new.items()}, inputs)
        return changes

    async def rescore_older_rules(self, limit: int = RULES_CATCH_UP) -> int:
        """Rescore up to `limit` tenders that still have score documents from other rules (a new rules version or
        other weights were deployed): every sweep takes the next ones, so the stored scores catch up without a
        rebuild. Returns how many tenders were rescored."""
        current = rules_version(self.weights)
        stale = await self._ctx.mongo.ids_where_not(READINESS_SCORES.name, "tender_id", "rules_version", current, limit)
        if stale:
            await self.rescore(stale, ())
            log.info("%s: rescored %d tenders whose scores came from other rules (now %s)", AGENT, len(stale), current)
        return len(stale)

    async def sweep(self) -> int:
        """Drop tenders whose closing date passed (as of now) from every top list; refill those lists. Keeps the
        lists and the facts they are built from alive for another TTL. Then rescores the next tenders whose scores
        come from other rules (`rescore_older_rules`)."""
        await self.rescore_older_rules()
        as_of = self.as_of()
        facts = await self.read_facts(as_of)
        keys = {team: TEAM_TOP_TENDERS.key(id=team) for team in facts.companies}
        current = await self.tops.read(list(keys.values()))
        stale = [
            team
            for team in facts.companies
            if any(int(m) not in facts.open_tenders for m, _ in current[keys[team]].members)
        ]
        if stale:
            updates = {
                team: [(int(m), None) for m, _ in current[keys[team]].members if int(m) not in facts.open_tenders]
                for team in stale
            }
            await self._update_tops(stale, updates, {}, facts, as_of)
            log.info("%s: sweep removed closed tenders from the top lists of %d teams", AGENT, len(stale))
        # Every list has just been checked against the closing dates: it stays valid for another TTL. Without this a
        # quiet hour would expire them all, and the next eligible tender would rescore each team from scratch.
        await self.tops.refresh_ttl([keys[team] for team in facts.companies if current[keys[team]] != EMPTY])
        # The facts outlive the lists only while a worker keeps them: a list must never hold inputs newer than the
        # facts a rebuild would read.
        await self.tenders.refresh_ttl()
        await self.companies.refresh_ttl()
        return len(stale)


_INPUTS_SUFFIX = TEAM_TOP_INPUTS.pattern.removeprefix(TEAM_TOP_TENDERS.pattern)


def _open(entry: _Entry, as_of: dt.datetime) -> bool:
    """`is_open` on checked facts (their closing date already parsed to aware UTC)."""
    closing = entry.facts.closing_at
    return entry.value.get("status", "active") in OPEN_STATUSES and closing is not None and closing > as_of


def _same_list(read: TopList, new: Mapping[int, float], inputs: Mapping[str, int]) -> bool:
    if read.inputs != {name: str(v) for name, v in inputs.items()}:
        return False
    return {int(m): float(s) for m, s in read.members} == dict(new)


def _check_envelope(n: int, e: Envelope[Any]) -> None:
    for name, value in (("event_id", e.event_id), ("source_seq", e.source_seq)):
        if not 0 < value <= MAX_ID:
            raise _refused(n, e, f"{name} {value} is not a positive 64-bit integer")


def _refused(n: int, e: Envelope[Any], reason: str) -> PermanentSinkError:
    log.warning("%s: event %d (%s %s) refused: %s", AGENT, e.event_id, e.event_type, e.aggregate_id, reason[:300])
    return PermanentSinkError(f"{AGENT}: {reason}", index=n, key={"aggregate_id": e.aggregate_id})


def _loads(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _dumps(value: Mapping[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


SPEC = AgentSpec(
    name=AGENT,
    doc="tender and company events -> a readiness score per (team, tender) in MongoDB and each team's top 5 in Redis",
    aggregates=("tender", "company"),
    event_types=frozenset({"tender.created", "tender.updated", "tender.closed", "company.updated"}),
    handler=ReadinessHandler,
    key_families=(TEAM_TOP_TENDERS, TEAM_TOP_INPUTS, READINESS_TENDERS, READINESS_COMPANIES),
    collections=(READINESS_SCORES,),
    timers=(
        Timer(
            "readiness_sweep",
            lambda _ctx, handler: cast(ReadinessHandler, handler).sweep,
            every_s=lambda settings: settings.readiness_sweep_s,
        ),
    ),
)
