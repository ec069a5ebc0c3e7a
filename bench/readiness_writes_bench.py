"""Readiness rescoring WITH its writes, against the real FerretDB and Redis: the agent's own handler
(streams.agents.readiness.ReadinessHandler) rescoring one new tender for 1,000 teams and one team against 5,000
tenders, each split into scoring, MongoDB bulk write and Redis (facts read, top-list update). Prints figures;
asserts nothing.

    .venv/bin/python -m bench.readiness_writes_bench              # ~4 minutes on 2 cores with FerretDB
    .venv/bin/python -m bench.readiness_writes_bench --runs 2 --teams 500 --tenders 2000 --update-sample 0
    .venv/bin/python -m bench.readiness_writes_bench --cases ii --update-sample 0   # one case; every update written

Facts come from the real eTenders releases (tenderhub.loader.tender_row -> the tender event's payload ->
fold_tender_facts, as the agent stores them) and from companies generated like bench.readiness_bench's (fixed
seed, real sectors, provinces and CIDB gradings). As of 2025-09-18 most of the tenders are open.

Before the timed cases, every team's top list is computed against every open tender (the steady state of a running
worker; also what the handler does for a team whose list expired, TTL 1 h), and that scoring is timed. Then each case
runs `--runs` times: the first writes new score documents (inserts), the later ones newer versions of the same
documents: updates for a tender change, a new generation for a profile change (inserts, then the older generation
deleted; "new scores visible after" is when the inserts returned). FerretDB 1.24 writes an update to an existing
document in one command per document, and each costs in proportion to the size of the collection (SQLite backend: the
documents stored before it, decoded in FerretDB; PostgreSQL backend: a sequential scan in SQL, 20-30x cheaper): update
runs write an evenly spaced sample of each batch (`--update-sample`, default 100) and extrapolate MongoDB's time to the
whole batch (marked "~"; checked against full runs at 100 teams x 500 tenders: 45.7 s extrapolated vs 47.0 s written in
full). On the PostgreSQL backend `--update-sample 0` writes every document in a few minutes. The backend is printed
(told by FerretDB's explain).

Needs the stack (`tenderhub stack up`). Uses its own MongoDB database and Redis key prefix, removed at the end
(also on Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import statistics
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from pymongo import MongoClient
from pymongo.database import Database

from bench.args import non_negative, positive
from bench.readiness_bench import company_payloads
from cdc.outbox import encode_payload
from cdc.position import source_seq
from schema.events import CompanyUpdatedV1, TenderV1, validate_payload
from schema.mongo import READINESS_SCORES, ensure_collections
from schema.redis_keys import READINESS_COMPANIES, READINESS_TENDERS, TEAM_TOP_TENDERS
from schema.settings import Settings, load_settings
from sinks.mongo import AsyncMongoSink, UpsertResult, VersionedDoc
from sinks.redis import RedisSink, delete_namespace
from sinks.redis_versioned import EMPTY, GENERATION_FIELD, HashSnapshot, ListChange, TopList, VersionedHash, ZsetCas
from streams.agents.readiness import (
    ReadinessHandler,
    company_facts_value,
    eligible,
    fold_tender_facts,
    is_open,
    top_k,
)
from streams.context import WorkerContext
from streams.readiness.scoring import company_facts_from_payload, score, tender_facts_from_payload
from tenderhub.loader import _payload as loader_payload  # the exact payload the application writes
from tenderhub.loader import read_releases, tender_row

ROOT = Path(__file__).resolve().parents[1]
ADVERTISED = ROOT.parent / "shared" / "data" / "za_etenders_advertised.ocds.jsonl"
PORTAL_200 = ROOT / "data" / "za_etenders_portal_200.ocds.jsonl"
# The advertised releases close between 2025-09-18 and 2030; as of this day 4,793 of 5,000 tenders are open.
AS_OF = dt.date(2025, 9, 18)
GTID_BASE = 7_000_000
PUT_CHUNK = 500


class Clock:
    """Wall time per section of one rescore, filled by the timed stores below."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.started = time.perf_counter()
        self.visible: float | None = None  # when the last score write of the rescore returned

    def reset(self) -> None:
        self.seconds = {}
        self.started = time.perf_counter()
        self.visible = None

    def add(self, section: str, started: float) -> None:
        now = time.perf_counter()
        self.seconds[section] = self.seconds.get(section, 0.0) + now - started
        if section == "mongo":
            self.visible = now - self.started


class TimedMongoSink(AsyncMongoSink):
    """Times `upsert_versioned`; with `sample` set, writes only `sample` documents of each batch, evenly spaced
    through it (the rest are counted, not written).

    Why sample: FerretDB 1.24 on SQLite runs the guarded update `{team_id, tender_id, tender_seq: {$lte}}` by
    decoding the collection in storage order until the first match, so an update costs in proportion to how many
    documents were stored before its own. A full update run of one team against 5,000 tenders would keep the
    shared FerretDB busy for the better part of an hour. Evenly spaced samples cover the batch's spread of
    positions, so their mean is the batch's (the first documents of a batch alone would underestimate it)."""

    def __init__(self, clock: Clock, url: str, database: str, **options: Any) -> None:
        super().__init__(url, database, **options)
        self.clock = clock
        self.sample: int | None = None
        self.batches: list[tuple[int, int, UpsertResult]] = []  # (documents given, documents written, result)
        self.deleted = 0  # older generations' documents deleted

    async def upsert_versioned(
        self, collection: str, docs: Sequence[VersionedDoc], stored: Sequence[Mapping[str, Any]] | None = None
    ) -> UpsertResult:
        batch = docs if self.sample is None else docs[:: max(1, len(docs) // self.sample)][: self.sample]
        started = time.perf_counter()
        try:
            result = await super().upsert_versioned(collection, batch, stored)
        finally:
            self.clock.add("mongo", started)
        self.batches.append((len(docs), len(batch), result))
        return result

    async def find_by_ids(
        self,
        collection: str,
        field: str,
        ids: Sequence[int],
        fields: Sequence[str],
        *,
        where: Mapping[str, int] | None = None,
    ) -> list[dict[str, Any]]:
        started = time.perf_counter()
        try:
            return await super().find_by_ids(collection, field, ids, fields, where=where)
        finally:
            self.clock.add("read", started)

    async def delete_older(self, collection: str, where: Mapping[str, int], field: str, below: int) -> int:
        started = time.perf_counter()
        try:
            deleted = await super().delete_older(collection, where, field, below)
        finally:
            self.clock.add("retire", started)
        self.deleted += deleted
        return deleted


class TimedVersionedHash(VersionedHash):
    def __init__(self, clock: Clock, redis_sink: RedisSink, key: str, ttl_s: int) -> None:
        super().__init__(redis_sink, key, ttl_s)
        self.clock = clock

    async def snapshot(self) -> HashSnapshot:
        started = time.perf_counter()
        try:
            return await super().snapshot()
        finally:
            self.clock.add("facts", started)


class TimedZsetCas(ZsetCas):
    def __init__(self, clock: Clock, redis_sink: RedisSink, ttl_s: int) -> None:
        super().__init__(redis_sink, ttl_s)
        self.clock = clock

    async def read(self, keys: Sequence[str]) -> dict[str, TopList]:
        started = time.perf_counter()
        try:
            return await super().read(keys)
        finally:
            self.clock.add("tops", started)

    async def replace_if_unchanged(self, changes: Mapping[str, ListChange]) -> list[str]:
        started = time.perf_counter()
        try:
            return await super().replace_if_unchanged(changes)
        finally:
            self.clock.add("tops", started)


@dataclass
class Events:
    """Event ids and source_seq in commit order, one source transaction per event."""

    n: int = 0

    def next(self) -> tuple[int, int]:
        self.n += 1
        return self.n, source_seq(GTID_BASE + self.n, 0)


@dataclass
class Bench:
    handler: ReadinessHandler
    sink: TimedMongoSink
    clock: Clock
    events: Events
    tender_payloads: dict[int, dict[str, Any]] = field(default_factory=dict)
    company_payloads: dict[int, dict[str, Any]] = field(default_factory=dict)

    async def put_tenders(self, payloads: Mapping[int, dict[str, Any]], event_type: str) -> dict[int, int]:
        """Store tender facts as the agent does for a tender event; return tender id -> event id."""
        writes: dict[str, tuple[int, str]] = {}
        event_ids: dict[int, int] = {}
        for tender_id, payload in payloads.items():
            model = validate_payload(event_type, 1, "tender", str(tender_id), encode_payload(payload))
            assert isinstance(model, TenderV1)
            event_id, seq = self.events.next()
            facts = fold_tender_facts(None, model) | {"event_id": event_id}
            writes[str(tender_id)] = (seq, json.dumps(facts, sort_keys=True, separators=(",", ":")))
            event_ids[tender_id] = event_id
            self.tender_payloads[tender_id] = payload
        await self._put(self.handler.tenders, writes)
        return event_ids

    async def put_companies(self, payloads: Mapping[int, dict[str, Any]]) -> dict[int, int]:
        writes: dict[str, tuple[int, str]] = {}
        event_ids: dict[int, int] = {}
        for team_id, payload in payloads.items():
            model = validate_payload("company.updated", 1, "company", str(team_id), encode_payload(payload))
            assert isinstance(model, CompanyUpdatedV1)
            event_id, seq = self.events.next()
            value = company_facts_value(model) | {"event_id": event_id}
            company_facts_from_payload(value)
            writes[str(team_id)] = (seq, json.dumps(value, sort_keys=True, separators=(",", ":")))
            event_ids[team_id] = event_id
            self.company_payloads[team_id] = payload
        await self._put(self.handler.companies, writes)
        return event_ids

    @staticmethod
    async def _put(target: VersionedHash, writes: dict[str, tuple[int, str]]) -> None:
        items = list(writes.items())
        for start in range(0, len(items), PUT_CHUNK):
            written = await target.put_if_newer(dict(items[start : start + PUT_CHUNK]))
            if len(written) != len(items[start : start + PUT_CHUNK]):
                raise RuntimeError(f"{target.key}: {len(written)} of {PUT_CHUNK} facts written (stale versions?)")

    async def rescore(self, tenders: Mapping[int, int], teams: Mapping[int, int]) -> Breakdown:
        self.clock.reset()
        self.sink.batches.clear()
        self.sink.deleted = 0
        started = time.perf_counter()
        await self.handler.rescore(tenders, teams)
        total = time.perf_counter() - started
        s = self.clock.seconds
        results = [r for _, _, r in self.sink.batches]
        merged = UpsertResult(
            upserted=sum(r.upserted for r in results),
            modified=sum(r.modified for r in results),
            unchanged=sum(r.unchanged for r in results),
            stale=sum(r.stale for r in results),
        )
        given = sum(n for n, _, _ in self.sink.batches)
        written = sum(n for _, n, _ in self.sink.batches)
        return Breakdown(
            total,
            s.get("mongo", 0.0),
            s.get("facts", 0.0),
            s.get("tops", 0.0),
            given,
            written,
            merged,
            read=s.get("read", 0.0),
            retire=s.get("retire", 0.0),
            deleted=self.sink.deleted,
            visible=self.clock.visible,
        )


@dataclass(frozen=True)
class Breakdown:
    total: float
    mongo: float
    facts: float
    tops: float
    docs: int
    written: int
    result: UpsertResult
    read: float = 0.0  # the agent's read of the stored versions
    retire: float = 0.0  # deleting a team's older generation
    deleted: int = 0
    visible: float | None = None  # from the start until the score writes returned (readers see the new scores)

    @property
    def cpu(self) -> float:
        """What is left: cache sync, is_open, score(), documents, top-k (all in the event loop)."""
        return self.total - self.mongo - self.facts - self.tops - self.read - self.retire

    def line(self, label: str) -> str:
        r = self.result
        per_doc = self.mongo / self.written if self.written else 0.0
        mongo = self.mongo * self.docs / self.written if self.written else 0.0  # extrapolated when sampled
        sign = "~" if self.written < self.docs else ""
        head = (
            f"    {label}: {sign}{duration(self.total - self.mongo + mongo)} = scoring & top-k {duration(self.cpu)} + "
            f"MongoDB read {duration(self.read)} + MongoDB write {sign}{duration(mongo)} + MongoDB older generation "
            f"deleted {duration(self.retire)} ({self.deleted:,} documents) + Redis facts read {duration(self.facts)} + "
            f"Redis top lists {duration(self.tops)}"
        )
        if self.visible is not None and not sign:
            head += f"\n      new scores visible after {duration(self.visible)}"
        written = f"{self.written:,} of {self.docs:,} score documents written" if sign else f"{self.docs:,} written"
        tail = (
            f"      {written}: {r.upserted:,} inserted, {r.modified:,} updated, {r.unchanged:,} rewritten unchanged, "
            f"{r.stale:,} stale; MongoDB {per_doc * 1000:.2f} ms per document"
        )
        if sign:
            tail += f" (measured on the {self.written:,} written, the total extrapolated linearly)"
        return f"{head}\n{tail}"


def duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds * 1000:,.0f} ms"
    if seconds < 600:
        return f"{seconds:,.1f} s"
    return f"{seconds / 60:,.1f} min"


def tender_payloads(count: int) -> dict[int, dict[str, Any]]:
    """`count` tender events' payloads from the real releases (cycled; tender id = position + 1). Most advertised
    releases have no ocid: one is made, as the application needs one."""
    path = ADVERTISED if ADVERTISED.exists() else PORTAL_200
    releases = list(read_releases(path))
    out = {}
    for n in range(count):
        release = releases[n % len(releases)]
        row = tender_row(release | {"ocid": f"{release.get('ocid') or 'ocds-za-advertised'}-bench-{n + 1}"})
        out[n + 1] = loader_payload(n + 1, row)
    return out


def open_with_cidb(payloads: Mapping[int, dict[str, Any]], as_of: dt.datetime) -> list[int]:
    """Tenders that are open and state a modest CIDB grading: every check of the rules runs for them."""
    out = []
    for tender_id, payload in payloads.items():
        facts = tender_facts_from_payload(payload)
        if facts.cidb and facts.cidb[0].grade <= 5 and is_open({"closing_at": payload["closing_at"]}, as_of):
            out.append(tender_id)
    return out


async def pure_scores(bench: Bench, tender_ids: Sequence[int], team_ids: Sequence[int], as_of: dt.datetime) -> float:
    """Median time of the score() calls alone (facts parsed beforehand), over 3 runs."""
    handler = bench.handler
    # Outside any timed rescore (the clock restarts with each), so these reads count nowhere.
    tenders = {int(k): v for k, v in (await handler.tenders.get_all()).items()}
    companies = {int(k): v for k, v in (await handler.companies.get_all()).items()}
    t_facts = [tender_facts_from_payload(json.loads(tenders[t].value)) for t in tender_ids]
    c_facts = [company_facts_from_payload(json.loads(companies[c].value)) for c in team_ids]
    times = []
    for _ in range(3):
        started = time.perf_counter()
        for tf in t_facts:
            for cf in c_facts:
                score(tf, cf, as_of, handler.weights)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def fill_top_lists(handler: ReadinessHandler, as_of: dt.datetime) -> tuple[float, int]:
    """Every team's top list from scoring it against every open tender (the handler's full rescore of one team,
    without the score documents): the steady state a worker reaches. Returns (seconds of scoring, empty lists)."""
    snapshot = await handler.tenders.snapshot()
    tenders, generation = {int(k): v for k, v in snapshot.entries.items()}, snapshot.generation
    companies = {int(k): v for k, v in (await handler.companies.get_all()).items()}
    open_facts = {
        t: tender_facts_from_payload(value) for t, v in tenders.items() if is_open(value := json.loads(v.value), as_of)
    }
    scoring = 0.0
    empty = 0
    teams = sorted(companies)
    for start in range(0, len(teams), 100):
        changes: dict[str, ListChange] = {}
        started = time.perf_counter()
        for team in teams[start : start + 100]:
            company = company_facts_from_payload(json.loads(companies[team].value))
            ranked = {}
            for tender_id, facts in open_facts.items():
                result = score(facts, company, as_of, handler.weights)
                if eligible(result):
                    ranked[tender_id] = result.score
            best = top_k(ranked, handler.k)
            empty += not best
            inputs = {"team_seq": companies[team].version, GENERATION_FIELD: generation}
            changes[TEAM_TOP_TENDERS.key(id=team)] = ListChange(EMPTY, {str(t): s for t, s in best.items()}, inputs)
        scoring += time.perf_counter() - started
        conflicts = await handler.tops.replace_if_unchanged(changes)
        if conflicts:
            raise RuntimeError(f"top lists {conflicts[:5]} already existed: not this bench's keys?")
    return scoring, empty


def count_docs(settings: Settings) -> int:
    client: MongoClient[dict[str, Any]] = MongoClient(settings.mongo_url.get_secret_value())
    try:
        return int(client[settings.mongo_db][READINESS_SCORES.name].count_documents({}))
    finally:
        client.close()


async def run(
    settings: Settings, n_tenders: int, n_teams: int, runs: int, update_sample: int, cases: Sequence[str]
) -> None:
    clock = Clock()
    policy = WorkerContext(settings).retry_policy
    sink = TimedMongoSink(clock, settings.mongo_url.get_secret_value(), settings.mongo_db, retry_policy=policy)
    ctx = WorkerContext(settings, _mongo=sink)
    try:
        handler = ReadinessHandler(ctx)
        handler.tenders = TimedVersionedHash(clock, ctx.redis, READINESS_TENDERS.key(), READINESS_TENDERS.ttl_s)
        handler.companies = TimedVersionedHash(clock, ctx.redis, READINESS_COMPANIES.key(), READINESS_COMPANIES.ttl_s)
        handler.tops = TimedZsetCas(clock, ctx.redis, TEAM_TOP_TENDERS.ttl_s)
        bench = Bench(handler, sink, clock, Events())
        as_of = handler.as_of()

        started = time.perf_counter()
        payloads = tender_payloads(n_tenders)
        # The "new" tender of case (i): a copy of an open one that states a CIDB grading, under a new id.
        new_id = n_tenders + 1
        candidates = open_with_cidb(payloads, as_of)
        source = candidates[len(candidates) // 2]
        new_payload = payloads[source] | {"tender_id": new_id, "ocid": f"{payloads[source]['ocid']}-new"}
        await bench.put_tenders(payloads, "tender.created")
        categories = sorted({str(p["category"]) for p in payloads.values() if p["category"]})
        companies = {int(c["team_id"]): c for c in company_payloads(n_teams, categories)}
        await bench.put_companies(companies)
        open_count = sum(1 for p in payloads.values() if is_open({"closing_at": p["closing_at"]}, as_of))
        print(
            f"facts: {n_tenders:,} real eTenders tenders ({open_count:,} open as of {AS_OF}) and {n_teams:,} companies "
            f"stored in Redis in {time.perf_counter() - started:.1f} s; MongoDB database {settings.mongo_db}"
        )

        warm = await bench.rescore({}, {})
        print(f"warm-up (parse every stored fact into the handler's cache, no scoring): {warm.total * 1000:,.0f} ms")
        seconds, empty = await fill_top_lists(handler, as_of)
        print(
            f"top lists of all {n_teams:,} teams computed against every open tender (what the handler does for a "
            f"team whose list expired, TTL 1 h): {seconds:.1f} s of scoring; {empty:,} teams have no eligible open "
            "tender"
            + (" (a tender event eligible for one of those rescores it against every open tender)" if empty else "")
        )

        if "i" in cases:
            await new_tender_case(bench, settings, new_id, new_payload, companies, runs, update_sample)
        if "ii" in cases:
            await company_case(bench, settings, companies, runs, update_sample)
    finally:
        await ctx.aclose()


async def new_tender_case(
    bench: Bench,
    settings: Settings,
    new_id: int,
    new_payload: dict[str, Any],
    companies: Mapping[int, dict[str, Any]],
    runs: int,
    update_sample: int,
) -> None:
    sink, as_of, n_teams = bench.sink, bench.handler.as_of(), len(companies)
    print(f"(i) one new tender ({new_id}) rescored for {n_teams:,} teams (top lists filled)")
    for r in range(1, runs + 1):
        before = count_docs(settings)
        # Later runs: the tender updated with the same content, a newer version of every score document.
        ids = await bench.put_tenders({new_id: new_payload}, "tender.created" if r == 1 else "tender.updated")
        sink.sample = update_sample if r > 1 and update_sample else None
        result = await bench.rescore(ids, {})
        sink.sample = None
        kind = "inserts" if r == 1 else "updates"
        print(result.line(f"run {r} ({kind}, collection held {before:,})"))
    fan_out = await pure_scores(bench, [new_id], sorted(companies), as_of)
    print(f"    score() alone for the {n_teams:,} teams: {fan_out * 1000:.0f} ms (median of 3)")


async def company_case(
    bench: Bench, settings: Settings, companies: Mapping[int, dict[str, Any]], runs: int, update_sample: int
) -> None:
    sink, as_of = bench.sink, bench.handler.as_of()
    team = min(companies)
    opened = [t for t, p in bench.tender_payloads.items() if is_open({"closing_at": p["closing_at"]}, as_of)]
    print(f"(ii) one team ({team}) rescored against {len(opened):,} open tenders of {len(bench.tender_payloads):,}")
    for r in range(1, runs + 1):
        before = count_docs(settings)
        profile = bench.company_payloads[team]
        if r > 1:
            # A real profile change: one more year of experience (the score may or may not move).
            profile = profile | {"experience_years": (profile.get("experience_years") or 0) + 1}
        ids = await bench.put_companies({team: profile})
        sink.sample = update_sample if r > 1 and update_sample else None
        result = await bench.rescore({}, ids)
        sink.sample = None
        kind = "mostly inserts" if r == 1 else "a new generation: inserts, then the older one deleted"
        print(result.line(f"run {r} ({kind}, collection held {before:,})"))
    sweep = await pure_scores(bench, opened, [team], as_of)
    print(f"    score() alone for the {len(opened):,} tenders: {sweep * 1000:.0f} ms (median of 3)")


def ferretdb_backend(db: Database[dict[str, Any]]) -> str:
    """FerretDB's storage, told by its explain: PostgreSQL's plan is a document, SQLite's a list of plan lines."""
    plan = db.command("explain", {"find": READINESS_SCORES.name, "filter": {"team_id": 1}})["queryPlanner"].get("Plan")
    return "PostgreSQL" if isinstance(plan, dict) else "SQLite" if isinstance(plan, list) else "unknown"


def cleanup(settings: Settings) -> None:
    client: MongoClient[dict[str, Any]] = MongoClient(
        settings.mongo_url.get_secret_value(), serverSelectionTimeoutMS=5000
    )
    try:
        client.drop_database(settings.mongo_db)
    finally:
        client.close()
    r = redis.Redis.from_url(settings.redis_url.get_secret_value(), socket_timeout=5)
    try:
        delete_namespace(r, settings.redis_key_prefix)
    finally:
        r.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenders", type=positive, default=5000)
    parser.add_argument("--teams", type=positive, default=1000)
    parser.add_argument("--runs", type=positive, default=3, help="runs per case: the first inserts, the others update")
    parser.add_argument(
        "--update-sample",
        type=non_negative,
        default=100,
        help="update runs write only this many documents per batch and extrapolate MongoDB's time (0 = write all)",
    )
    parser.add_argument(
        "--cases",
        default="i,ii",
        help="which cases to run: i (a new tender for every team), ii (a team against every open tender)",
    )
    args = parser.parse_args()
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if not cases or set(cases) - {"i", "ii"}:
        parser.error("--cases takes i, ii or i,ii")
    uid = uuid.uuid4().hex[:10]
    settings = load_settings().model_copy(
        update={"mongo_db": f"bench_rw_{uid}", "redis_key_prefix": f"bench:{uid}:", "as_of": AS_OF}
    )
    one, five, _ = os.getloadavg()
    print(f"start: load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores")
    try:
        client: MongoClient[dict[str, Any]] = MongoClient(settings.mongo_url.get_secret_value())
        try:
            ensure_collections(client[settings.mongo_db], settings)
            info = client.admin.command("buildInfo")
            backend = ferretdb_backend(client[settings.mongo_db]) if info.get("ferretdbVersion") else ""
        finally:
            client.close()
        server = (
            f"FerretDB {info['ferretdbVersion']} ({backend} backend)"
            if info.get("ferretdbVersion")
            else f"MongoDB {info['version']}"
        )
        print(f"stores: {server}, Redis; as of {AS_OF}")
        asyncio.run(run(settings, args.tenders, args.teams, args.runs, args.update_sample, cases))
    finally:
        cleanup(settings)
    one, five, _ = os.getloadavg()
    print(f"end: load average {one:.2f} (1 min), {five:.2f} (5 min)")


if __name__ == "__main__":
    main()
