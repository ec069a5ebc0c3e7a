"""Scenario 1, readiness: every team scored against every open tender, kept right under tender and company events.

Pure core (streams.readiness.scoring does the rules): facts from events (`fold_tender_facts`, `company_facts_value`),
`is_open`, and top-k maintenance (`top_k`, `update_top`). Wrapper: the facts of every tender and company live in
two version-guarded Redis hashes (event-carried state, so a replay rebuilds the same scores without reading MySQL);
a tender event rescores that tender for every team, a company event rescores that team against every open tender.
Scores go to MongoDB `readiness_scores` (guarded by the source_seq of both inputs); `team:{id}:top_tenders`, owned
here, is replaced by compare-and-set so two workers never lose each other's update; a leader timer sweeps tenders
whose closing date passed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import faust

from schema.events import CompanyUpdatedV1, ContractError, TenderClosedV1, TenderV1
from schema.mongo import READINESS_SCORES
from schema.redis_keys import READINESS_COMPANIES, READINESS_TENDERS, TEAM_TOP_TENDERS
from sinks.errors import PermanentSinkError
from sinks.mongo import VersionedDoc
from sinks.redis_versioned import RawZset, Versioned, VersionedHash, ZsetCas
from streams.batch import BatchRunner, Incoming, refused_event
from streams.context import WorkerContext
from streams.readiness.scoring import (
    Readiness,
    ReadinessWeights,
    company_facts_from_payload,
    score,
    tender_facts_from_payload,
)
from streams.wiring import RunnerFactory, batch_agent, periodic

log = logging.getLogger(__name__)

AGENT = "readiness"
OPEN_STATUSES = frozenset({"active", "planned", "planning"})
_CAS_ROUNDS = 5


# -- pure core ---------------------------------------------------------------------------------------------------


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def fold_tender_facts(previous: Mapping[str, Any] | None, payload: Any) -> dict[str, Any]:
    """The tender's facts after one event: created/updated carry the whole tender, closed only its status."""
    if isinstance(payload, TenderV1):
        description = payload.description if payload.description and payload.description != payload.title else None
        return {
            "tender_id": payload.tender_id,
            "title": payload.title,
            "description": description,
            "category": payload.category,
            "province": payload.province,
            "closing_at": _iso(payload.closing_at),
            "buyer": payload.buyer,
            "special_conditions": payload.special_conditions,
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
        "company_name": payload.company_name,
        "sectors": list(payload.sectors),
        "provinces": list(payload.provinces),
        "experience_years": payload.experience_years,
        "bbbee_level": payload.bbbee_level,
        "cidb": [g.model_dump() for g in payload.cidb],
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
    """Whether a score may enter a top list: a bid is possible and the score is above zero."""
    return result.biddable and result.score > 0


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


def score_document(result: Readiness, tender: _Entry, company: _Entry) -> VersionedDoc:
    """The score document, versioned by both inputs. Its event is the newer input's (in commit order), so a replay
    that interleaves the tender and company topics differently still writes the same document."""
    tender_seq, team_seq = tender.version, company.version
    event_id = int(tender.value["event_id"] if tender_seq >= team_seq else company.value["event_id"])
    fields = result.to_dict()
    team_id, tender_id = fields.pop("team_id"), fields.pop("tender_id")
    return VersionedDoc(
        key={"team_id": team_id, "tender_id": tender_id},
        fields=fields,
        versions={"tender_seq": tender_seq, "team_seq": team_seq},
        event_id=event_id,
    )


# -- wrapper -----------------------------------------------------------------------------------------------------


class FactsCache:
    """Parsed facts by id, reused while the stored value is unchanged (parsing a tender costs ~60 µs)."""

    def __init__(self, parse: Any) -> None:
        self._parse = parse
        self._entries: dict[int, _Entry] = {}

    def sync(self, stored: Mapping[str, Versioned]) -> dict[int, _Entry]:
        fresh: dict[int, _Entry] = {}
        for field, item in stored.items():
            key = int(field)
            old = self._entries.get(key)
            if old is not None and old.raw == item.value and old.version == item.version:
                fresh[key] = old
                continue
            value = json.loads(item.value)
            fresh[key] = _Entry(item.version, item.value, self._parse(value), value)
        self._entries = fresh
        return fresh


class ReadinessHandler:
    def __init__(self, ctx: WorkerContext) -> None:
        self._ctx = ctx
        redis = ctx.redis
        self.tenders = VersionedHash(redis, READINESS_TENDERS.key(), READINESS_TENDERS.ttl_s)
        self.companies = VersionedHash(redis, READINESS_COMPANIES.key(), READINESS_COMPANIES.ttl_s)
        self.tops = ZsetCas(redis, TEAM_TOP_TENDERS.ttl_s)
        self._tender_cache = FactsCache(tender_facts_from_payload)
        self._company_cache = FactsCache(company_facts_from_payload)
        defaults = ReadinessWeights()
        overrides = ctx.settings.readiness_weights
        unknown = set(overrides) - set(defaults.__dataclass_fields__)
        if unknown:
            raise ValueError(f"TENDERHUB_READINESS_WEIGHTS names unknown items {sorted(unknown)}")
        self.weights = ReadinessWeights(**{**defaults.__dict__, **overrides})
        self.k = ctx.settings.readiness_top_k
        self.scored = 0

    def as_of(self) -> dt.datetime:
        # End of the as-of day in UTC: "open as of 2026-03-01" includes tenders closing later that day.
        day = self._ctx.as_of()
        return dt.datetime.combine(day, dt.time(23, 59, 59), tzinfo=dt.UTC)

    async def __call__(self, items: Sequence[Incoming]) -> None:
        tender_events = [i.event for i in items if i.event.event_type.startswith("tender.")]
        company_events = [i.event for i in items if i.event.event_type == "company.updated"]
        changed_tenders = await self._store_tender_facts(tender_events)
        changed_teams = await self._store_company_facts(company_events)
        if changed_tenders or changed_teams:
            await self.rescore(changed_tenders, changed_teams)

    async def _store_tender_facts(self, events: Sequence[Any]) -> dict[int, int]:
        if not events:
            return {}
        ids = sorted({int(e.aggregate_id) for e in events})
        stored = await self.tenders.get([str(t) for t in ids])
        current: dict[int, tuple[int, dict[str, Any] | None]] = {
            t: (v.version, json.loads(v.value)) if (v := stored[str(t)]) is not None else (-1, None) for t in ids
        }
        event_ids: dict[int, int] = {}
        for e in events:
            t = int(e.aggregate_id)
            version, facts = current[t]
            if e.source_seq <= version:
                continue
            current[t] = (e.source_seq, fold_tender_facts(facts, e.payload) | {"event_id": e.event_id})
            event_ids[t] = e.event_id
        writes = {
            str(t): (version, json.dumps(facts, sort_keys=True, separators=(",", ":")))
            for t, (version, facts) in current.items()
            if t in event_ids and facts is not None
        }
        written = await self.tenders.put_if_newer(writes)
        return {int(f): event_ids[int(f)] for f in written}

    async def _store_company_facts(self, events: Sequence[Any]) -> dict[int, int]:
        latest: dict[int, Any] = {}
        for e in events:
            team = int(e.aggregate_id)
            if team not in latest or e.source_seq > latest[team].source_seq:
                latest[team] = e
        writes = {}
        for team, e in latest.items():
            value = company_facts_value(e.payload) | {"event_id": e.event_id}
            company_facts_from_payload(value)  # a profile the rules cannot read fails here, not at every rescore
            writes[str(team)] = (e.source_seq, json.dumps(value, sort_keys=True, separators=(",", ":")))
        written = await self.companies.put_if_newer(writes)
        return {int(f): latest[int(f)].event_id for f in written}

    async def rescore(self, changed_tenders: Mapping[int, int], changed_teams: Mapping[int, int]) -> None:
        as_of = self.as_of()
        tenders = self._tender_cache.sync(await self.tenders.get_all())
        companies = self._company_cache.sync(await self.companies.get_all())
        open_tenders = {t: e for t, e in tenders.items() if is_open(e.value, as_of)}
        # CPU-bound (25 us a score): in a thread, so the event loop (web view, timers) stays responsive.
        docs, updates, full = await asyncio.to_thread(
            self._score_changes, changed_tenders, changed_teams, tenders, companies, open_tenders, as_of
        )
        self.scored += len(docs)
        if docs:
            try:
                await asyncio.to_thread(self._ctx.mongo.upsert_versioned, READINESS_SCORES.name, docs)
            except PermanentSinkError as exc:
                raise refused_event(exc, None) from exc
        affected = sorted({team for team, u in updates.items() if u} | set(full))
        await self._update_tops(affected, updates, full, open_tenders, companies, as_of)

    def _score_changes(
        self,
        changed_tenders: Mapping[int, int],
        changed_teams: Mapping[int, int],
        tenders: Mapping[int, _Entry],
        companies: Mapping[int, _Entry],
        open_tenders: Mapping[int, _Entry],
        as_of: dt.datetime,
    ) -> tuple[list[VersionedDoc], dict[int, list[tuple[int, float | None]]], dict[int, dict[int, float]]]:
        docs: list[VersionedDoc] = []
        # Per team: the changed tenders' new scores (None = not eligible any more), in tender order.
        updates: dict[int, list[tuple[int, float | None]]] = {team: [] for team in companies}
        full: dict[int, dict[int, float]] = {}
        for tender_id in sorted(changed_tenders):
            entry = tenders[tender_id]
            for team, company in companies.items():
                if tender_id not in open_tenders:
                    updates[team].append((tender_id, None))
                    continue
                result = score(entry.facts, company.facts, as_of, self.weights)
                docs.append(score_document(result, entry, company))
                updates[team].append((tender_id, result.score if eligible(result) else None))
        for team in sorted(changed_teams):
            company = companies[team]
            ranked: dict[int, float] = {}
            for tender_id, entry in open_tenders.items():
                result = score(entry.facts, company.facts, as_of, self.weights)
                docs.append(score_document(result, entry, company))
                if eligible(result):
                    ranked[tender_id] = result.score
            full[team] = top_k(ranked, self.k)
        return docs, updates, full

    def _full_top(self, company: _Entry, open_tenders: Mapping[int, _Entry], as_of: dt.datetime) -> dict[int, float]:
        ranked = {}
        for tender_id, entry in open_tenders.items():
            result = score(entry.facts, company.facts, as_of, self.weights)
            if eligible(result):
                ranked[tender_id] = result.score
        return top_k(ranked, self.k)

    async def _update_tops(
        self,
        teams: Sequence[int],
        updates: Mapping[int, Sequence[tuple[int, float | None]]],
        full: Mapping[int, dict[int, float]],
        open_tenders: Mapping[int, _Entry],
        companies: Mapping[int, _Entry],
        as_of: dt.datetime,
    ) -> None:
        pending = list(teams)
        for round_ in range(_CAS_ROUNDS):
            if not pending:
                return
            keys = {team: TEAM_TOP_TENDERS.key(id=team) for team in pending}
            current = await self.tops.read(list(keys.values()))
            changes = await asyncio.to_thread(
                self._new_tops, pending, keys, current, round_, updates, full, open_tenders, companies, as_of
            )
            conflicts = set(await self.tops.replace_if_unchanged(changes))
            pending = [team for team in pending if keys[team] in conflicts]
            if pending:
                # Someone else changed these lists: start again from fresh facts, with a full rescore.
                tenders = self._tender_cache.sync(await self.tenders.get_all())
                companies = self._company_cache.sync(await self.companies.get_all())
                open_tenders = {t: e for t, e in tenders.items() if is_open(e.value, as_of)}
        if pending:
            raise RuntimeError(f"{AGENT}: top lists of teams {pending[:10]} kept changing ({_CAS_ROUNDS} rounds)")

    def _new_tops(
        self,
        pending: Sequence[int],
        keys: Mapping[int, str],
        current: Mapping[str, RawZset],
        round_: int,
        updates: Mapping[int, Sequence[tuple[int, float | None]]],
        full: Mapping[int, dict[int, float]],
        open_tenders: Mapping[int, _Entry],
        companies: Mapping[int, _Entry],
        as_of: dt.datetime,
    ) -> dict[str, tuple[RawZset, dict[str, float]]]:
        changes: dict[str, tuple[RawZset, dict[str, float]]] = {}
        for team in pending:
            raw = current[keys[team]]
            if team in full and round_ == 0:
                new = full[team]
            else:
                # After a lost CAS round, the list read may already mix someone else's update: rescore in full.
                new_or_none: dict[int, float] | None = None if round_ > 0 else {int(m): float(s) for m, s in raw}
                for tender_id, value in updates.get(team, ()):
                    if new_or_none is None:
                        break
                    new_or_none = update_top(new_or_none, tender_id, value, self.k)
                new = new_or_none if new_or_none is not None else self._full_top(companies[team], open_tenders, as_of)
            changes[keys[team]] = (raw, {str(t): s for t, s in new.items()})
        return changes

    async def sweep(self) -> int:
        """Drop tenders whose closing date passed (as of now) from every top list; refill those lists."""
        as_of = self.as_of()
        tenders = self._tender_cache.sync(await self.tenders.get_all())
        companies = self._company_cache.sync(await self.companies.get_all())
        open_ids = {t for t, e in tenders.items() if is_open(e.value, as_of)}
        keys = {team: TEAM_TOP_TENDERS.key(id=team) for team in companies}
        current = await self.tops.read(list(keys.values()))
        stale = [team for team in companies if any(int(m) not in open_ids for m, _ in current[keys[team]])]
        if stale:
            updates = {
                team: [(int(m), None) for m, _ in current[keys[team]] if int(m) not in open_ids] for team in stale
            }
            open_tenders = {t: tenders[t] for t in open_ids}
            await self._update_tops(stale, updates, {}, open_tenders, companies, as_of)
            log.info("%s: sweep removed closed tenders from the top lists of %d teams", AGENT, len(stale))
        # Every list has just been checked against the closing dates: it stays valid for another TTL. Without this a
        # quiet hour would expire them all, and the next eligible tender would rescore each team from scratch.
        await self.tops.refresh_ttl([keys[team] for team in companies if current[keys[team]]])
        return len(stale)


def register(app: faust.App, ctx: WorkerContext, runner_factory: RunnerFactory) -> tuple[Any, BatchRunner]:
    handler = ReadinessHandler(ctx)
    topics = [ctx.topics.data["tender"], ctx.topics.data["company"]]
    agent, runner = batch_agent(app, ctx, AGENT, topics, handler, runner_factory)

    sweep = periodic("readiness_sweep", handler.sweep)
    app.timer(ctx.settings.readiness_sweep_s, on_leader=True, name="readiness_sweep")(sweep)
    return agent, runner
