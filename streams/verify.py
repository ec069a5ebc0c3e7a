"""`tenderhub verify`: recompute every derived family from MySQL (the source of truth) with the agents' own pure
functions and compare with what MongoDB and Redis hold; drift is reported per family with examples.

Layers in a row: the source (MySQL rows -> the payloads the application published for them, read in chunks), the
expected values (the agents' cores: `summary_input` + `content_hash`, `fold_tender_facts` + `score` +
`score_document` + `top_k`, spend's `cents_by_member`, `card` fields), the comparison per family, rendering.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from pymongo import MongoClient
from pymongo.database import Database

from schema.engines import mysql_engine
from schema.events import OPEN_STATUSES, Envelope, TenderTexts, decode_event
from schema.events import tender_payload as contract_tender_payload
from schema.mongo import READINESS_SCORES, TENDER_SUMMARIES, USER_ACTIVITY_LOGS
from schema.redis_keys import (
    SPEND_BY_BUYER,
    SPEND_BY_BUYER_WINDOW,
    SPEND_TOTALS,
    SPEND_WINDOW_TOTALS,
    TEAM_TOP_TENDERS,
    TENDER_METADATA,
    placeholder,
)
from schema.settings import Settings
from sinks.reader import current_scores
from sinks.redis import SyncClient, sync_client
from sinks.spend_store import totals_from_fields
from streams.agents.readiness import (
    _Entry,
    check_company_facts,
    check_tender_facts,
    company_facts_value,
    eligible,
    fold_tender_facts,
    is_open,
    score_document,
    top_k,
)
from streams.agents.tender_summaries import metadata, summariser_config, summary_input
from streams.readiness.scoring import FactsError, ReadinessWeights, score
from streams.spend import _row_state, cents_by_member
from streams.summaries.base import content_hash

log = logging.getLogger(__name__)

FAMILIES = ("summaries", "readiness", "top_lists", "spend", "cards", "activity")
CHUNK = 1000
# Scores are floats written by the same function; a stored one that differs by more than this is drift.
_SCORE_TOLERANCE = 1e-9
# Card fields that come from the tender row (summary, model and event id come from the summary document).
_CARD_ROW_FIELDS = ("title", "tender_number", "buyer", "category", "province", "status", "closing_at", "published_at")


class VerifyError(Exception):
    """verify cannot run as asked (a usage or configuration error); the message says what to fix."""


# -- source: MySQL rows as the payloads the application published for them ------------------------------------


def tender_payload(row: Mapping[str, Any]) -> dict[str, Any]:
    """The `tender.created/updated` payload of a tenders row, as the application writes it (the contract's
    `schema.events.tender_payload`): the columns, and the tender's own texts from its OCDS release, which the table
    keeps only there (the description column joins them)."""
    texts = TenderTexts(text=row["description"])
    raw = row.get("raw_ocds")
    release = None
    if isinstance(raw, str | bytes) and raw:
        try:
            release = json.loads(raw)
        except ValueError as exc:
            # One corrupt row must not stop the check of all the others: its texts come from the description
            # column, and if that is not what was published its summary shows as drift.
            log.warning(
                "verify: tender %s: raw_ocds is not JSON (%s); reading its texts from the columns", row["id"], exc
            )
    tender = release.get("tender") if isinstance(release, dict) else None
    if isinstance(tender, dict):
        texts = TenderTexts.from_ocds(tender)
    return contract_tender_payload(
        int(row["id"]),
        ocid=row["ocid"],
        title=str(row["title"]),
        tender_number=row["tender_number"],
        buyer=row["buyer"],
        budget=row["budget"],
        currency=row["currency"],
        status=row["status"],
        published_at=row["published_at"],
        closing_at=row["closing_at"],
        province=row["province"],
        category=row["category"],
        texts=texts,
    )


def company_payload(row: Mapping[str, Any], gradings: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The `company.updated` payload of a company_profiles row and its CIDB gradings (tenderhub.companies)."""

    def listed(value: Any) -> list[str]:
        return list(json.loads(value) if isinstance(value, str | bytes) else value)

    return {
        "team_id": int(row["team_id"]),
        "company_id": int(row["id"]),
        "company_name": row["company_name"],
        "sectors": listed(row["sectors"]),
        "provinces": listed(row["provinces"]),
        "experience_years": row["experience_years"],
        "bbbee_level": row["bbbee_level"],
        "cidb": [
            {
                "class_of_works": g["class_of_works"],
                "grade": int(g["grade"]),
                "potentially_emerging": bool(g["potentially_emerging"]),
            }
            for g in gradings
        ],
    }


def event(
    event_type: str, aggregate_id: int, payload: Mapping[str, Any], *, event_id: int, source_seq: int, at: str
) -> Envelope[Any]:
    """An envelope decoded by the agents' own decoder (the contract's checks included)."""
    aggregate = event_type.split(".", 1)[0]
    envelope = {
        "event_id": event_id,
        "event_type": event_type,
        "aggregate_type": "activity" if aggregate == "user" else aggregate,
        "aggregate_id": str(aggregate_id),
        "occurred_at": at,
        "schema_version": 1,
        "source_seq": source_seq,
        "payload": dict(payload),
    }
    return decode_event(json.dumps(envelope, ensure_ascii=False))


_TENDER_COLUMNS = (
    "id, ocid, tender_number, title, description, buyer, budget, currency, status, published_at, closing_at, "
    "province, category, raw_ocds"
)


def reader_engine(settings: Settings) -> sa.Engine:
    """The read-only account's engine: verify and rebuild read every table, the outbox included, which the
    application's account may not (it only appends to the outbox)."""
    if settings.mysql_reader_url is None:
        raise VerifyError(
            "TENDERHUB_MYSQL_READER_URL is not set: verify and rebuild read MySQL (the outbox included) with a "
            "read-only user. Fix: export it (the dev stack writes it to .stack/tenderhub.env) and run "
            "`tenderhub migrate`, which creates the user."
        )
    return mysql_engine(settings.mysql_reader_url)


def tender_rows(engine: sa.Engine, chunk: int = CHUNK) -> Iterator[list[dict[str, Any]]]:
    """Every tenders row, in id order, a chunk at a time (keyset pagination: no OFFSET scan)."""
    last = 0
    while True:
        with engine.connect() as conn:
            rows = [
                dict(r._mapping)
                for r in conn.execute(
                    sa.text(f"SELECT {_TENDER_COLUMNS} FROM tenders WHERE id > :last ORDER BY id LIMIT :n"),
                    {"last": last, "n": chunk},
                )
            ]
        if not rows:
            return
        yield rows
        last = int(rows[-1]["id"])


def company_rows(engine: sa.Engine) -> list[dict[str, Any]]:
    """Every company profile as its `company.updated` payload."""
    with engine.connect() as conn:
        profiles = [dict(r._mapping) for r in conn.execute(sa.text("SELECT * FROM company_profiles ORDER BY id"))]
        gradings: dict[int, list[dict[str, Any]]] = {}
        for g in conn.execute(sa.text("SELECT * FROM company_cidb_gradings ORDER BY company_id, class_of_works")):
            gradings.setdefault(int(g.company_id), []).append(dict(g._mapping))
    return [company_payload(p, gradings.get(int(p["id"]), [])) for p in profiles]


def latest_event_ids(engine: sa.Engine, aggregate_type: str) -> dict[int, int]:
    """The newest outbox id of each aggregate still in the outbox (the janitor may have deleted older rows)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT aggregate_id, MAX(id) AS id FROM integration_outbox WHERE aggregate_type = :t "
                "GROUP BY aggregate_id"
            ),
            {"t": aggregate_type},
        )
        return {int(r.aggregate_id): int(r.id) for r in rows if str(r.aggregate_id).isdigit()}


def activity_rows(engine: sa.Engine, newest: int) -> list[dict[str, Any]]:
    """The newest `newest` user.activity outbox rows (what a capped collection of that many documents holds)."""
    with engine.connect() as conn:
        return [
            dict(r._mapping)
            for r in conn.execute(
                sa.text(
                    "SELECT id, aggregate_id, payload, created_at FROM integration_outbox "
                    "WHERE event_type = 'user.activity' ORDER BY id DESC LIMIT :n"
                ),
                {"n": newest},
            )
        ]


# -- comparison ---------------------------------------------------------------------------------------------------


@dataclass
class FamilyReport:
    family: str
    checked: int = 0
    drift: int = 0
    examples: list[str] = field(default_factory=list)
    seconds: float = 0.0
    # Documents or keys MySQL calls for, how many of them the store has, and how many it has that MySQL does not
    # justify (each of those is drift too). Cards are a cache: none is expected, a stale one is drift.
    expected: int = 0
    present: int = 0
    extra: int = 0

    def add(self, example: str, limit: int) -> None:
        self.drift += 1
        if len(self.examples) < limit:
            self.examples.append(example)


@dataclass
class VerifyReport:
    families: list[FamilyReport]
    seconds: float

    @property
    def drift(self) -> int:
        return sum(f.drift for f in self.families)

    def to_json(self) -> dict[str, Any]:
        return {
            "drift": self.drift,
            "seconds": round(self.seconds, 3),
            "families": {
                f.family: {
                    "checked": f.checked,
                    "expected": f.expected,
                    "present": f.present,
                    "extra": f.extra,
                    "drift": f.drift,
                    "examples": f.examples,
                    "seconds": round(f.seconds, 3),
                }
                for f in self.families
            },
        }

    def lines(self) -> list[str]:
        out = []
        for f in self.families:
            state = "ok" if f.drift == 0 else f"DRIFT {f.drift}"
            counts = f"expected {f.expected}, present {f.present}, extra {f.extra}"
            out.append(f"{f.family:<10} {f.checked:>9} checked  {counts}  {state}  ({f.seconds:.2f} s)")
            out += [f"    {e}" for e in f.examples]
        out.append(f"{'no drift' if self.drift == 0 else f'{self.drift} drifted'} in {self.seconds:.2f} s")
        return out


@dataclass
class _Stores:
    db: Database[dict[str, Any]]
    r: SyncClient
    prefix: str

    def key(self, key: str) -> str:
        return self.prefix + key


def _zset(r: SyncClient, key: str) -> list[tuple[str, float]]:
    return [(str(pair[0]), float(pair[1])) for pair in r.zrange(key, 0, -1, withscores=True)]


def _docs_by(db: Database[dict[str, Any]], name: str, key: str, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    return {int(d[key]): d for d in db[name].find({key: {"$in": list(ids)}})}


def _verify_summaries(
    stores: _Stores, chunks: Sequence[list[dict[str, Any]]], model_used: str, fam: FamilyReport, n: int
) -> None:
    known: set[int] = set()
    for rows in chunks:
        docs = _docs_by(stores.db, TENDER_SUMMARIES.name, "tender_id", [int(r["id"]) for r in rows])
        fam.present += len(docs)
        for row in rows:
            fam.checked += 1
            fam.expected += 1
            tid = int(row["id"])
            known.add(tid)
            payload = row["_event"].payload
            expected = content_hash(summary_input(payload).text(), model_used)
            doc = docs.get(tid)
            if doc is None:
                fam.add(f"tender {tid}: no summary document", n)
            elif doc.get("content_hash") != expected:
                fam.add(f"tender {tid}: content hash {str(doc.get('content_hash'))[:12]} != {expected[:12]}", n)
            elif doc.get("status") != row["status"]:
                fam.add(f"tender {tid}: summary status {doc.get('status')!r} != MySQL {row['status']!r}", n)
    for d in stores.db[TENDER_SUMMARIES.name].find({}, {"_id": 0, "tender_id": 1}, batch_size=CHUNK):
        if d.get("tender_id") not in known:
            fam.extra += 1
            fam.add(f"tender {d.get('tender_id')!r}: summary document for a tender MySQL does not have", n)


def _verify_cards(stores: _Stores, by_id: Mapping[int, dict[str, Any]], fam: FamilyReport, n: int) -> None:
    head, tail = TENDER_METADATA.pattern.split(placeholder("id"))
    pattern = stores.key(head) + "*" + tail
    for raw in stores.r.scan_iter(match=pattern, count=1000):
        key = str(raw)
        middle = key[len(stores.key(head)) : len(key) - len(tail)]
        if not middle.isdigit():
            continue
        fam.checked += 1
        fam.present += 1
        tid = int(middle)
        row = by_id.get(tid)
        values = {str(k): str(v) for k, v in stores.r.hgetall(key).items()}
        if row is None:
            fam.extra += 1
            fam.add(f"tender {tid}: card for a tender MySQL does not have", n)
            continue
        if row["status"] not in OPEN_STATUSES:
            fam.add(f"tender {tid}: card for a tender that is {row['status']} in MySQL", n)
            continue
        want = metadata(row["_event"].payload, "", "")
        wrong = [f for f in _CARD_ROW_FIELDS if values.get(f) != want.get(f)]
        if wrong:
            f = wrong[0]
            fam.add(f"tender {tid}: card {f} {values.get(f)!r:.60} != MySQL {want.get(f)!r:.60}", n)


def _verify_readiness(
    stores: _Stores,
    tenders: Mapping[int, _Entry],
    companies: Mapping[int, _Entry],
    as_of: dt.datetime,
    weights: ReadinessWeights,
    k: int,
    fams: tuple[FamilyReport, FamilyReport],
    n: int,
    *,
    scores_wanted: bool,
    tops_wanted: bool,
) -> None:
    scores_fam, tops_fam = fams
    open_ids = {t for t, e in tenders.items() if is_open(e.value, as_of)}
    # One scan of the collection: FerretDB answers a per-team query by scanning it whole (measured 1.9 s a team at
    # 10,000 documents), so 200 teams would scan it 200 times.
    docs_by_team: dict[int, list[dict[str, Any]]] = {}
    if scores_wanted:
        wanted = dict.fromkeys(("team_id", "tender_id", "score", "biddable", "tender_status", "rules_version"), 1)
        for d in stores.db[READINESS_SCORES.name].find({}, {"_id": 0, "team_seq": 1, **wanted}, batch_size=CHUNK):
            docs_by_team.setdefault(int(d["team_id"]), []).append(d)
    by_team: dict[int, dict[int, Mapping[str, Any]]] = {}
    for team, docs in sorted(docs_by_team.items()):
        by_team[team] = current_scores(docs)
        older = len(docs) - len(by_team[team])  # a profile change whose older generation is not deleted yet
        if older:
            scores_fam.extra += older
            scores_fam.add(f"team {team}: {older} score documents of an older profile not yet deleted", n)
    for team, company in companies.items():
        stored = by_team.pop(team, {})
        if scores_wanted:
            for tid in sorted(set(stored) - set(tenders)):
                scores_fam.extra += 1
                scores_fam.add(f"team {team} tender {tid}: score document for a tender MySQL does not have", n)
        ranked: dict[int, float] = {}
        for tid, tender in tenders.items():
            result = score(tender.facts, company.facts, as_of, weights)
            if tid in open_ids and eligible(result):
                ranked[tid] = result.score
            if not scores_wanted:
                continue
            scores_fam.checked += 1
            scores_fam.expected += 1
            want = score_document(result, tender, company).fields
            doc = stored.get(tid)
            scores_fam.present += doc is not None
            if doc is None:
                scores_fam.add(f"team {team} tender {tid}: no score document", n)
                continue
            for name in ("score", "biddable", "tender_status", "rules_version"):
                got, exp = doc.get(name), want.get(name)
                same = (
                    isinstance(got, int | float)
                    and isinstance(exp, int | float)
                    and abs(float(got) - float(exp)) <= _SCORE_TOLERANCE
                    if name == "score"
                    else got == exp
                )
                if not same:
                    scores_fam.add(f"team {team} tender {tid}: {name} {got!r} != {exp!r}", n)
                    break
        if tops_wanted:
            tops_fam.checked += 1
            want_top = top_k(ranked, k)
            key = stores.key(TEAM_TOP_TENDERS.key(id=team))
            got_top = {int(m): float(s) for m, s in _zset(stores.r, key)}
            tops_fam.expected += bool(want_top)
            tops_fam.present += bool(want_top) and bool(got_top)
            tops_fam.extra += bool(got_top) and not want_top
            if set(got_top) != set(want_top) or any(abs(got_top[t] - want_top[t]) > _SCORE_TOLERANCE for t in want_top):
                tops_fam.add(f"team {team}: top list {sorted(got_top)} != {sorted(want_top)}", n)
    for team, stored in sorted(by_team.items()):  # what is left: teams MySQL has no profile for
        scores_fam.extra += len(stored)
        scores_fam.add(f"team {team}: {len(stored)} score documents for a team MySQL does not have", n)


def _verify_spend(
    stores: _Stores, rows: Sequence[Mapping[str, Any]], settings: Settings, as_of: dt.date, fam: FamilyReport, n: int
) -> None:
    states = [_row_state(r) for r in rows]
    window = f"{settings.spend_window_days}d"
    all_cents = cents_by_member(states)
    window_cents = cents_by_member(states, as_of, settings.spend_window_days)
    for name, key, want in (
        ("totals", SPEND_TOTALS.key(), all_cents),
        (f"{window} totals", SPEND_WINDOW_TOTALS.key(window=window), window_cents),
    ):
        fields = {str(k): str(v) for k, v in stores.r.hgetall(stores.key(key)).items()}
        got = {m: (t.cents, t.tenders, t.without_budget) for m, t in totals_from_fields(fields).items()}
        fam.expected += len(want)
        fam.present += len(set(got) & set(want))
        fam.extra += len(set(got) - set(want))
        for m in sorted(set(got) | set(want)):
            fam.checked += 1
            if got.get(m) != want.get(m):
                fam.add(f"{name} {m}: store {got.get(m)} != MySQL {want.get(m)} (cents, tenders, without budget)", n)
    for name, key, want in (
        ("sorted set", SPEND_BY_BUYER.key(), all_cents),
        (f"{window} sorted set", SPEND_BY_BUYER_WINDOW.key(window=window), window_cents),
    ):
        zset = dict(_zset(stores.r, stores.key(key)))
        fam.expected += len(want)
        fam.present += len(set(zset) & set(want))
        fam.extra += len(set(zset) - set(want))
        for m in sorted(set(zset) | set(want)):
            fam.checked += 1
            expected = want[m][0] / 100 if m in want else None
            if zset.get(m) != expected:
                fam.add(f"{name} {m}: store {zset.get(m)} != MySQL {expected}", n)


def _verify_activity(stores: _Stores, engine: sa.Engine, settings: Settings, fam: FamilyReport, n: int) -> None:
    rows = activity_rows(engine, settings.activity_log_max_docs)
    # One scan of the logs' ids: FerretDB answers an `_id: {$in: [...]}` query by scanning the whole collection,
    # so a query per chunk scanned it once per 1,000 events (minutes at 100,000 logs).
    stored = {d["_id"] for d in stores.db[USER_ACTIVITY_LOGS.name].find({}, {"_id": 1}, batch_size=10 * CHUNK)}
    fam.expected += len(rows)
    for row in rows:
        event_id = int(row["id"])
        fam.checked += 1
        if event_id in stored:
            fam.present += 1
        else:
            fam.add(f"event {event_id}: user.activity in the outbox, no log document", n)


# -- entry point -------------------------------------------------------------------------------------------------


def _facts_entries(
    tender_events: Mapping[int, Envelope[Any]],
    company_events: Mapping[int, Envelope[Any]],
    as_of: dt.datetime,
    w: ReadinessWeights,
) -> tuple[dict[int, _Entry], dict[int, _Entry]]:
    """The facts a worker would hold after these events, parsed and checked by the agent's own functions; a row
    whose facts the rules cannot use is left out, as the agent refuses its event (logged)."""
    tenders: dict[int, _Entry] = {}
    for tid, e in tender_events.items():
        value = fold_tender_facts(None, e.payload) | {"event_id": e.event_id}
        try:
            tenders[tid] = _Entry(e.source_seq, "", check_tender_facts(value, as_of, w), value)
        except FactsError as exc:
            log.warning("verify: tender %d left out: the rules cannot use its facts: %s", tid, exc)
    companies: dict[int, _Entry] = {}
    for team, e in company_events.items():
        value = company_facts_value(e.payload) | {"event_id": e.event_id}
        try:
            companies[team] = _Entry(e.source_seq, "", check_company_facts(value, as_of, w), value)
        except FactsError as exc:
            log.warning("verify: team %d left out: the rules cannot use its company facts: %s", team, exc)
    return tenders, companies


def tender_events(rows: Sequence[dict[str, Any]], event_ids: Mapping[int, int], seq: int) -> None:
    """Attach to each row (`_event`) its tender event as the agents decode it."""
    for row in rows:
        tid = int(row["id"])
        row["_event"] = event(
            "tender.updated", tid, tender_payload(row), event_id=event_ids.get(tid, 1), source_seq=seq, at=ROWS_AT
        )


# occurred_at of the events built from MySQL rows (verify, rebuild, readiness's refill): rows keep no event time.
ROWS_AT = "1970-01-01T00:00:00.000Z"


async def verify(settings: Settings, families: Sequence[str] = FAMILIES, examples: int = 5) -> VerifyReport:
    from streams.agents.readiness import ReadinessHandler
    from streams.context import WorkerContext
    from streams.summaries.factory import load_summariser

    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise VerifyError(f"unknown families {unknown}: choose from {', '.join(FAMILIES)}")
    if examples < 0:
        raise VerifyError("--examples must be >= 0")
    start = time.monotonic()
    ctx = WorkerContext(settings)
    # The agent's own weights and as-of instant (end of the as-of day, UTC).
    handler = ReadinessHandler(ctx)
    as_of, weights, k = handler.as_of(), handler.weights, handler.k
    engine = reader_engine(settings)
    client: MongoClient[dict[str, Any]] = MongoClient(
        settings.mongo_url.get_secret_value(), serverSelectionTimeoutMS=10_000
    )
    r = sync_client(settings, socket_timeout=30, decode_responses=True)
    stores = _Stores(client[settings.mongo_db], r, settings.redis_key_prefix)
    reports = {f: FamilyReport(f) for f in FAMILIES if f in families}
    try:
        t0 = time.monotonic()
        chunks = list(await asyncio.to_thread(lambda: list(tender_rows(engine))))
        tender_ids = await asyncio.to_thread(latest_event_ids, engine, "tender")
        for rows in chunks:
            tender_events(rows, tender_ids, 1)
        by_id = {int(r["id"]): r for rows in chunks for r in rows}
        log.info("verify: %d tenders read from MySQL in %.2f s", len(by_id), time.monotonic() - t0)
        if "summaries" in reports:
            t0 = time.monotonic()
            model_used = load_summariser(summariser_config(settings)).model_used
            await asyncio.to_thread(_verify_summaries, stores, chunks, model_used, reports["summaries"], examples)
            reports["summaries"].seconds = time.monotonic() - t0
        if "cards" in reports:
            t0 = time.monotonic()
            await asyncio.to_thread(_verify_cards, stores, by_id, reports["cards"], examples)
            reports["cards"].seconds = time.monotonic() - t0
        if "readiness" in reports or "top_lists" in reports:
            t0 = time.monotonic()
            team_ids = await asyncio.to_thread(latest_event_ids, engine, "company")
            companies = {
                int(p["team_id"]): event(
                    "company.updated",
                    int(p["team_id"]),
                    p,
                    event_id=team_ids.get(int(p["team_id"]), 1),
                    source_seq=1,
                    at=ROWS_AT,
                )
                for p in await asyncio.to_thread(company_rows, engine)
            }
            tenders_f, companies_f = _facts_entries(
                {t: row["_event"] for t, row in by_id.items()}, companies, as_of, weights
            )
            dummy = FamilyReport("top_lists")
            await asyncio.to_thread(
                _verify_readiness,
                stores,
                tenders_f,
                companies_f,
                as_of,
                weights,
                k,
                (reports.get("readiness", FamilyReport("readiness")), reports.get("top_lists", dummy)),
                examples,
                scores_wanted="readiness" in reports,
                tops_wanted="top_lists" in reports,
            )
            for f in ("readiness", "top_lists"):
                if f in reports:
                    reports[f].seconds = time.monotonic() - t0
        if "spend" in reports:
            t0 = time.monotonic()
            rows = [r for rows in chunks for r in rows]
            await asyncio.to_thread(_verify_spend, stores, rows, settings, ctx.as_of(), reports["spend"], examples)
            reports["spend"].seconds = time.monotonic() - t0
        if "activity" in reports:
            t0 = time.monotonic()
            await asyncio.to_thread(_verify_activity, stores, engine, settings, reports["activity"], examples)
            reports["activity"].seconds = time.monotonic() - t0
    finally:
        client.close()
        r.close()
        engine.dispose()
        await ctx.aclose()
    report = VerifyReport(list(reports.values()), time.monotonic() - start)
    for fam in report.families:
        if fam.drift:
            log.warning("verify: %s drifted in %d of %d: %s", fam.family, fam.drift, fam.checked, fam.examples[:3])
    return report
