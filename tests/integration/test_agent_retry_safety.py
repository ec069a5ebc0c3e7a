"""Every agent ends in the state of a clean run when any one of its store calls fails (before the store applied it,
after, or with the worker killed there) and the batch is retried as the batch runner does (issue 10, item 1); and
readiness refuses facts it cannot use, never stalls on stored ones (item 2), marks closed tenders' scores not
biddable (item 6) and never lets a top list built from older inputs replace a newer one (item 7)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis as sync_redis
from pymongo import MongoClient

from schema.events import Envelope, TenderV1, decode_event
from schema.redis_keys import TEAM_TOP_INPUTS, TEAM_TOP_TENDERS
from schema.settings import Settings
from sinks.errors import PermanentSinkError
from sinks.redis import text
from streams.agents.activity_logs import ActivityLogHandler
from streams.agents.readiness import ReadinessHandler
from streams.agents.search_cache import SearchCacheHandler
from streams.batch import Incoming
from streams.context import WorkerContext
from streams.readiness.scoring import rules_version
from tests.integration.store_faults import (
    FaultPlan,
    LostUpdateMongo,
    Namespace,
    assert_retry_safe,
    envelope,
    faulty_context,
    run_batches,
    snapshot,
)

pytestmark = pytest.mark.asyncio

AS_OF = "2025-09-25"


def _tender(tender_id: int, **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "tender_id": tender_id,
        "ocid": f"ocds-sf-{tender_id}",
        "title": f"Construction of a community hall {tender_id}",
        "description": "Construction of a community hall; CIDB grading of 4GB or higher",
        "buyer": "City of Tshwane",
        "province": "Gauteng",
        "category": "Construction",
        "closing_at": "2025-10-20T10:00:00",
    }
    return base | kw


def _company(team_id: int, **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "team_id": team_id,
        "company_id": 100 + team_id,
        "company_name": f"Team {team_id} Civils",
        "sectors": ["Construction"],
        "provinces": ["Gauteng"],
        "experience_years": 6,
        "bbbee_level": 2,
        "cidb": [{"class_of_works": "GB", "grade": 5}],
    }
    return base | kw


def readiness_batches() -> list[list[bytes]]:
    """Tender created/updated/closed/cancelled and company changes, across three batches."""
    return [
        [
            envelope(10, "company.updated", 1, _company(1)),
            envelope(11, "company.updated", 2, _company(2, provinces=["Western Cape"])),
            envelope(12, "tender.created", 1, _tender(1)),
            envelope(13, "tender.created", 2, _tender(2, province="Western Cape", closing_at="2025-10-05T10:00:00")),
            envelope(14, "tender.created", 3, _tender(3, description="Supply of office furniture")),
        ],
        [
            envelope(20, "tender.updated", 1, _tender(1, closing_at="2025-11-01T10:00:00")),
            envelope(21, "tender.closed", 3, {"tender_id": 3, "status": "cancelled", "reason": "budget"}),
            envelope(22, "company.updated", 1, _company(1, cidb=[{"class_of_works": "GB", "grade": 3}])),
            envelope(23, "tender.created", 4, _tender(4, province="National", description="Community hall repairs")),
        ],
        [
            envelope(30, "tender.closed", 2, {"tender_id": 2, "status": "complete"}),
            envelope(31, "company.updated", 2, _company(2, provinces=["National"])),
            envelope(
                32, "tender.updated", 4, _tender(4, province="National", description="Community hall roof repairs")
            ),
        ],
    ]


def activity_batches() -> list[list[bytes]]:
    def act(seq: int, user: int, n: int) -> bytes:
        return envelope(
            seq,
            "user.activity",
            user,
            {"user_id": user, "team_id": 1, "action": "tender.viewed"} | {"details": {"n": n}},
        )

    return [[act(1, 4, 1), act(2, 4, 2), act(3, 5, 3)], [act(2, 4, 2), act(4, 5, 4)], [act(5, 4, 5)]]


async def test_readiness_reaches_the_clean_state_after_a_failure_at_any_store_call(settings: Settings) -> None:
    as_of = dt.date.fromisoformat(AS_OF)
    report = await assert_retry_safe(
        settings.model_copy(update={"as_of": as_of}), ReadinessHandler, readiness_batches()
    )
    assert report.clean_calls >= 20
    state = report.clean_state
    assert state["redis:<ns>team:{1}:top_tenders"][1] == [("4", 100.0)]
    assert state["redis:<ns>team:{2}:top_tenders"][1] == [("1", 100.0), ("4", 100.0)]
    scores = {(d["team_id"], d["tender_id"]): d for d in map(json.loads, state["mongo:readiness_scores"])}
    # One document per pair: a profile change's new generation replaced the older one (team 1 in batch 2, team 2 in
    # batch 3), and every pair's is at its team's last profile.
    assert len(scores) == len(state["mongo:readiness_scores"]) == 8
    assert {k: d["team_seq"] for k, d in scores.items()} == {(1, t): 22 for t in (1, 2, 3, 4)} | {
        (2, t): 31 for t in (1, 2, 3, 4)
    }
    # Closed and cancelled tenders' documents are not biddable any more (item 6).
    assert [(k, d["biddable"]) for k, d in sorted(scores.items()) if k[1] in (2, 3)] == [
        ((1, 2), False),
        ((1, 3), False),
        ((2, 2), False),
        ((2, 3), False),
    ]


async def test_activity_logs_reach_the_clean_state_after_a_failure_at_any_store_call(settings: Settings) -> None:
    report = await assert_retry_safe(settings, ActivityLogHandler, activity_batches())
    assert report.clean_calls == 3
    assert len(report.clean_state["mongo:user_activity_logs"]) == 5


def seeded_search_cache(ctx: WorkerContext) -> SearchCacheHandler:
    """The search_cache handler over three cached searches (seeded once per namespace, as the read service would
    have filled them): one holds tenders 1 and 2, one tender 3, one tender 9, which never changes."""
    prefix = ctx.settings.redis_key_prefix
    with sync_redis.Redis.from_url(ctx.settings.redis_url.get_secret_value()) as r:
        if r.set(f"{prefix}seeded", 1, nx=True):
            for digest, tenders in (("a" * 32, (1, 2)), ("b" * 32, (3,)), ("c" * 32, (9,))):
                key = f"{prefix}search:{{cache}}:{digest}"
                r.set(key, json.dumps({"rows": [{"id": t} for t in tenders]}), ex=120)
                for t in tenders:
                    r.sadd(f"{prefix}search:{{cache}}:tender:{t}", digest)
                    r.expire(f"{prefix}search:{{cache}}:tender:{t}", 180)
    return SearchCacheHandler(ctx)


async def test_search_cache_reaches_the_clean_state_after_a_failure_at_any_store_call(settings: Settings) -> None:
    batches = [
        [envelope(1, "tender.created", 1, _tender(1)), envelope(2, "tender.created", 5, _tender(5))],
        [envelope(3, "tender.closed", 3, {"tender_id": 3, "status": "cancelled"})],
        [envelope(4, "tender.updated", 1, _tender(1, title="Renamed"))],
    ]
    report = await assert_retry_safe(settings, seeded_search_cache, batches)
    assert report.clean_calls == 3
    left = sorted(k for k in report.clean_state if k.startswith("redis:<ns>search:"))
    # Search a went with tender 1; tender 2's set still names it until the set expires (dropping it is a no-op).
    assert left == [
        "redis:<ns>search:{cache}:" + "c" * 32,
        "redis:<ns>search:{cache}:epoch",
        "redis:<ns>search:{cache}:tender:2",
        "redis:<ns>search:{cache}:tender:9",
    ]


# -- poison facts (item 2) ---------------------------------------------------------------------------------------


def _incoming(values: list[bytes]) -> list[Incoming]:
    return [Incoming(decode_event(v), "sf.topic", 0, n) for n, v in enumerate(values)]


def _unchecked_tender(seq: int, tender_id: int, **kw: Any) -> Incoming:
    """A tender event as an older contract let it through (no bounds on ids or dates): built without validation."""
    fields = _tender(tender_id, **kw)
    payload = TenderV1.model_construct(**{k: v for k, v in fields.items() if k != "closing_at"})
    object.__setattr__(payload, "closing_at", dt.datetime.fromisoformat(fields["closing_at"]))
    event = Envelope[Any].model_construct(
        event_id=seq,
        event_type="tender.created",
        aggregate_type="tender",
        aggregate_id=str(tender_id),
        occurred_at="2025-09-20T10:00:00.000",
        schema_version=1,
        source_seq=seq,
        payload=payload,
    )
    return Incoming(event, "sf.tender", 0, seq)


@pytest.fixture
def namespace(settings: Settings) -> Iterator[Namespace]:
    ns = Namespace.fresh(settings.model_copy(update={"as_of": dt.date.fromisoformat(AS_OF)}), "t:")
    yield ns
    ns.drop()


@pytest.mark.parametrize(
    ("tender_id", "changes"),
    [
        (2**63, {}),
        (10**19 + 9, {}),
        (8, {"closing_at": "0001-01-01T00:00:00"}),
        (8, {"closing_at": "9999-12-31T23:59:59"}),
    ],
)
async def test_a_tender_the_rules_cannot_use_is_refused_alone_and_never_stored(
    namespace: Namespace, tender_id: int, changes: dict[str, Any]
) -> None:
    ctx = WorkerContext(namespace.settings)
    handler = ReadinessHandler(ctx)
    try:
        good = _incoming(
            [envelope(10, "company.updated", 1, _company(1)), envelope(11, "tender.created", 1, _tender(1))]
        )
        items = [good[0], _unchecked_tender(12, tender_id, **changes), good[1]]
        with pytest.raises(PermanentSinkError) as refused:
            await handler(items)
        assert refused.value.index == 1  # the runner sends that one event to the DLQ and retries the others
        assert (await handler.tenders.snapshot()).entries == {}  # refused before anything was stored
        await handler([items[0], items[2]])
        assert sorted(int(t) for t in (await handler.tenders.snapshot()).entries) == [1]
        top = await handler.tops.read([TEAM_TOP_TENDERS.key(id=1)])
        assert [m for m, _ in top[TEAM_TOP_TENDERS.key(id=1)].members] == ["1"]
    finally:
        await ctx.aclose()


async def test_a_company_the_rules_cannot_use_is_refused_through_the_runner(namespace: Namespace) -> None:
    batch = [
        envelope(10, "company.updated", 1, _company(1)),
        envelope(11, "company.updated", 2, _company(2, company_id=2**63)),
        envelope(12, "tender.created", 1, _tender(1)),
    ]
    dead = await run_batches(namespace.settings, FaultPlan(), ReadinessHandler, [batch])
    # The contract's bound (ids within signed 64 bits) refuses it at decode, before any agent code: one dead letter,
    # the record's id unread (a value that fails the contract is not trusted for its id either).
    assert len(dead.event_ids()) == 1
    state = snapshot(namespace.settings)
    assert sorted(f for f in state["redis:<ns>readiness:companies"][1] if not f.startswith("__")) == ["1"]
    assert [json.loads(d)["team_id"] for d in state["mongo:readiness_scores"]] == [1]


async def test_stored_poison_facts_never_block_the_rescoring_of_the_others(namespace: Namespace) -> None:
    ctx = WorkerContext(namespace.settings)
    handler = ReadinessHandler(ctx)
    try:
        # Facts an older version stored without checks: a closing date at the calendar's end, an id past signed
        # 64 bits, a company id past 2^63, and a field that is not even `version|value`.
        poison_tender = _tender(5, closing_at="9999-12-31T23:59:59") | {"status": "active", "event_id": 5}
        huge = 2**63 + 1
        await handler.tenders.put_if_newer(
            {
                "5": (5, json.dumps(poison_tender)),
                str(huge): (6, json.dumps(_tender(huge) | {"status": "active", "event_id": 6})),
            }
        )
        await handler.companies.put_if_newer({"9": (7, json.dumps(_company(9, company_id=2**63) | {"event_id": 7}))})
        await ctx.redis.client().hset(handler.tenders.key, "13", "garbage")
        values = [
            envelope(20, "company.updated", 1, _company(1)),
            envelope(21, "tender.created", 1, _tender(1)),
            envelope(22, "tender.updated", 5, _tender(5, title="Community hall 5", closing_at="2025-12-01T10:00:00")),
        ]
        await handler(_incoming(values))
        await handler(_incoming([envelope(23, "tender.created", 2, _tender(2))]))
        assert handler.poison_facts == 3  # tender 5 was repaired by its update; the other three are skipped
        top = await handler.tops.read([TEAM_TOP_TENDERS.key(id=1)])
        assert sorted(m for m, _ in top[TEAM_TOP_TENDERS.key(id=1)].members) == ["1", "2", "5"]
        docs = await ctx.mongo.find_by_ids("readiness_scores", "team_id", [1, 9], ["tender_id"])
        assert sorted((d["team_id"], d["tender_id"]) for d in docs) == [(1, 1), (1, 2), (1, 5)]
        assert await handler.sweep() == 0  # the sweep reads the same facts: no crash either
    finally:
        await ctx.aclose()


async def test_activity_logs_keep_an_event_whose_date_is_at_the_calendar_edge(namespace: Namespace) -> None:
    def act(seq: int, occurred_at: str) -> bytes:
        value = json.loads(envelope(seq, "user.activity", 4, {"user_id": 4, "team_id": 1, "action": "tender.viewed"}))
        return json.dumps(value | {"occurred_at": occurred_at}).encode()

    batch = [act(1, "0001-01-01T00:00:00+02:00"), act(2, "9999-12-31T23:59:59-05:00"), act(3, "2025-09-20T10:00:00")]
    dead = await run_batches(namespace.settings, FaultPlan(), ActivityLogHandler, [batch])
    assert dead.event_ids() == []
    docs = {
        d["_id"]: d["occurred_at"] for d in map(json.loads, snapshot(namespace.settings)["mongo:user_activity_logs"])
    }
    assert docs[1] == "0001-01-01T00:00:00+02:00" and docs[2] == "9999-12-31T23:59:59-05:00"


# -- top lists carry their inputs' versions (item 7) -------------------------------------------------------------


class _GatedReads:
    """The handler's top-list store, held at read number `at` (1-based) until `gate` opens (a builder paused
    between reading the facts and reading the lists it replaces)."""

    def __init__(self, inner: Any, at: int = 1) -> None:
        self._inner = inner
        self._at = at
        self._reads = 0
        self.reached = asyncio.Event()
        self.gate = asyncio.Event()

    async def read(self, keys: Any) -> Any:
        self._reads += 1
        if self._reads == self._at:
            self.reached.set()
            await self.gate.wait()
        return await self._inner.read(keys)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def test_a_list_built_from_an_older_profile_never_replaces_a_newer_one(namespace: Namespace) -> None:
    ctx_a, ctx_b = WorkerContext(namespace.settings), WorkerContext(namespace.settings)
    a, b = ReadinessHandler(ctx_a), ReadinessHandler(ctx_b)
    redis = ctx_b.redis

    async def members() -> list[str]:
        key = redis.full_key(TEAM_TOP_TENDERS.key(id=1), "zset")
        return [text(m) for m in await redis.client().zrange(key, 0, -1)]

    try:
        await b(
            _incoming(
                [
                    envelope(10, "company.updated", 1, _company(1)),  # Gauteng only
                    envelope(11, "tender.created", 1, _tender(1, description="Hall repairs")),
                    envelope(12, "tender.created", 2, _tender(2, description="Hall repairs", province="Western Cape")),
                ]
            )
        )
        assert await members() == ["1"]
        # Worker A handles a new Gauteng tender and pauses after reading the facts (profile: Gauteng) ...
        gated = _GatedReads(a.tops)
        a.tops = gated  # type: ignore[assignment]
        task = asyncio.create_task(
            a(_incoming([envelope(13, "tender.created", 3, _tender(3, description="Hall repairs"))]))
        )
        await asyncio.wait_for(gated.reached.wait(), 30)
        # ... while worker B applies the team's new profile (Western Cape only) and rebuilds its list.
        await b(_incoming([envelope(14, "company.updated", 1, _company(1, provinces=["Western Cape"]))]))
        assert await members() == ["2"]
        gated.gate.set()
        await asyncio.wait_for(task, 60)
        # A's list (built from the Gauteng profile) must not replace B's: the list holds the Western Cape tenders.
        assert await members() == ["2"]
        inputs = redis.full_key(TEAM_TOP_INPUTS.key(id=1), "hash")
        assert await redis.client().hget(inputs, "team_seq") == b"14"
    finally:
        await ctx_a.aclose()
        await ctx_b.aclose()


async def test_the_sweep_never_writes_a_list_from_an_older_profile(namespace: Namespace) -> None:
    ctx_b = WorkerContext(namespace.settings)
    # The sweep runs a week later: tender 1 has closed by then, with no event to say so.
    ctx_a = WorkerContext(namespace.settings.model_copy(update={"as_of": dt.date(2025, 10, 1)}))
    sweeper, worker = ReadinessHandler(ctx_a), ReadinessHandler(ctx_b)
    redis = ctx_b.redis

    async def members() -> list[str]:
        key = redis.full_key(TEAM_TOP_TENDERS.key(id=1), "zset")
        return [text(m) for m in await redis.client().zrange(key, 0, -1)]

    try:
        await worker(
            _incoming(
                [
                    envelope(10, "company.updated", 1, _company(1)),  # Gauteng only
                    envelope(11, "tender.created", 1, _tender(1, description="Hall", closing_at="2025-09-30T10:00:00")),
                    envelope(12, "tender.created", 2, _tender(2, description="Hall")),
                    envelope(13, "tender.created", 3, _tender(3, description="Hall", province="Western Cape")),
                ]
            )
        )
        assert await members() == ["1", "2"]
        # The sweep reads the facts (Gauteng profile), finds tender 1 closed, and pauses before it rebuilds ...
        gated = _GatedReads(sweeper.tops, at=2)
        sweeper.tops = gated  # type: ignore[assignment]
        task = asyncio.create_task(sweeper.sweep())
        await asyncio.wait_for(gated.reached.wait(), 30)
        # ... while the worker applies the new profile (Gauteng and Western Cape): three tenders as of its day.
        profile = _company(1, provinces=["Gauteng", "Western Cape"])
        await worker(_incoming([envelope(14, "company.updated", 1, profile)]))
        assert await members() == ["1", "2", "3"]
        gated.gate.set()
        assert await asyncio.wait_for(task, 60) == 1
        # Rebuilt without tender 1 from the NEW profile: tender 3 (Western Cape) stays.
        assert await members() == ["2", "3"]
    finally:
        await ctx_a.aclose()
        await ctx_b.aclose()


@pytest.mark.parametrize("stale", ["company", "tender"])
async def test_a_score_built_from_facts_read_before_another_workers_write_never_stays(
    namespace: Namespace, stale: str
) -> None:
    """Worker S reads the facts, then worker N writes newer facts and their score, then S's older score lands over
    N's (a store whose guarded update is not atomic). S must notice that the facts changed under it and score again:
    the document ends at the newest versions of both inputs, as a run without the race ends."""
    ctx_s, ctx_n = WorkerContext(namespace.settings), WorkerContext(namespace.settings)
    s, n = ReadinessHandler(ctx_s), ReadinessHandler(ctx_n)
    company = envelope(14, "company.updated", 1, _company(1, cidb=[{"class_of_works": "GB", "grade": 7}]))
    closed = envelope(15, "tender.closed", 1, {"tender_id": 1, "status": "complete"})
    s_event, n_event = (company, closed) if stale == "company" else (closed, company)
    try:
        await n(
            _incoming([envelope(10, "company.updated", 1, _company(1)), envelope(11, "tender.created", 1, _tender(1))])
        )
        lost = LostUpdateMongo(ctx_s.mongo, namespace.settings, lambda: n(_incoming([n_event])))
        ctx_s._mongo = lost  # type: ignore[assignment]
        await s(_incoming([s_event]))
        assert lost.fired
        (doc,) = await ctx_n.mongo.find_by_ids(
            "readiness_scores", "team_id", [1], ["tender_id", "tender_seq", "team_seq", "tender_status", "biddable"]
        )
        assert (doc["tender_seq"], doc["team_seq"]) == (15, 14)
        assert (doc["tender_status"], doc["biddable"]) == ("complete", False)
    finally:
        await ctx_s.aclose()
        await ctx_n.aclose()


async def test_scores_from_older_rules_are_rescored_by_the_sweep(namespace: Namespace) -> None:
    """A new rules version (or other weights) deployed: the stored scores say which rules made them, and each sweep
    rescores the next tenders whose scores came from other rules, until none is left."""
    ctx = WorkerContext(namespace.settings)
    handler = ReadinessHandler(ctx)
    try:
        events = [envelope(10, "company.updated", 1, _company(1)), envelope(11, "company.updated", 2, _company(2))]
        events += [envelope(20 + t, "tender.created", t, _tender(t)) for t in (1, 2, 3)]
        await handler(_incoming(events))
        with MongoClient(namespace.settings.mongo_url.get_secret_value(), serverSelectionTimeoutMS=5000) as client:
            scores = client[namespace.settings.mongo_db]["readiness_scores"]
            scores.update_many({"tender_id": {"$in": [1, 3]}}, {"$set": {"rules_version": "0", "score": -1.0}})
            assert await handler.rescore_older_rules(limit=1) == 1
            assert sorted(d["tender_id"] for d in scores.find({"rules_version": "0"})) == [3, 3]
            await handler.sweep()
            assert scores.count_documents({"rules_version": {"$ne": rules_version()}}) == 0
            assert scores.count_documents({"score": -1.0}) == 0
            assert await handler.rescore_older_rules() == 0
    finally:
        await ctx.aclose()


async def test_a_profile_change_replaces_the_teams_generation_and_deletes_blind_only_when_it_must(
    namespace: Namespace,
) -> None:
    """A company event inserts its team's next generation of scores and deletes the older one. A batch that touches
    every tender (a rebuild, a replay) has read every team's documents, so it deletes only where it found older ones;
    a company event alone deletes its team's older generation blind (one delete, whatever is stored)."""
    plan = FaultPlan()
    ctx = faulty_context(namespace.settings, plan)
    handler = ReadinessHandler(ctx)

    def deletes() -> list[str]:
        found = [c for c in plan.calls if c.startswith("mongo.delete_older")]
        plan.calls.clear()
        return found

    def stored() -> list[tuple[int, int, int]]:
        with MongoClient(namespace.settings.mongo_url.get_secret_value(), serverSelectionTimeoutMS=5000) as client:
            docs = client[namespace.settings.mongo_db]["readiness_scores"].find({}, {"_id": 0})
            return sorted((d["team_id"], d["tender_id"], d["team_seq"]) for d in docs)

    tenders = [envelope(10 + t, "tender.created", t, _tender(t)) for t in (1, 2, 3)]
    try:
        # A rebuild: every tender and every team in one batch, on an empty store: nothing to delete, no delete sent.
        await handler(_incoming([*tenders, envelope(20, "company.updated", 1, _company(1))]))
        assert deletes() == []
        assert stored() == [(1, 1, 20), (1, 2, 20), (1, 3, 20)]
        # The same, with a newer profile: the read saw the older generation, so exactly that team's is deleted.
        await handler(_incoming([*tenders, envelope(30, "company.updated", 1, _company(1, experience_years=7))]))
        assert len(deletes()) == 1
        assert stored() == [(1, 1, 30), (1, 2, 30), (1, 3, 30)]
        # A company event alone read only its new generation: it deletes the older one blind.
        await handler(_incoming([envelope(40, "company.updated", 1, _company(1, experience_years=8))]))
        assert len(deletes()) == 1
        assert stored() == [(1, 1, 40), (1, 2, 40), (1, 3, 40)]
    finally:
        await ctx.aclose()
