"""Scenarios 1 and 2 end to end on real eTenders tenders and company profiles written through the outbox:
summaries and tender cards, readiness scores in MongoDB and each team's top 5 in Redis, kept right when tenders
change, close, and when a profile changes."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable
from typing import Any

import redis
import sqlalchemy as sa
from pymongo import MongoClient

from cdc.outbox import write_event
from streams.agents.readiness import top_k
from tenderhub.companies import load_companies, read_profiles
from tenderhub.loader import read_releases, tender_row, upsert_tender
from tenderhub.processes import PipelineEnv, RelayProcess, WorkerProcess
from tests.integration.worker_harness import run_cli, wait_for

AS_OF = "2025-09-25"


def _open(row: Any, as_of: str) -> bool:
    end = dt.datetime.combine(dt.date.fromisoformat(as_of), dt.time(23, 59, 59))
    return row.status == "active" and row.closing_at is not None and row.closing_at > end


def expected_top(mongo_db: Any, team_id: int, open_ids: set[int], k: int = 5) -> dict[int, float]:
    docs = mongo_db["readiness_scores"].find(
        {"team_id": team_id}, {"_id": 0, "tender_id": 1, "score": 1, "biddable": 1, "checklist": 1}
    )

    def in_sector(doc: dict[str, Any]) -> bool:
        return all(item["passed"] is not False for item in doc["checklist"] if item["name"] == "sector")

    ranked = {
        d["tender_id"]: d["score"]
        for d in docs
        if d["biddable"] and d["score"] > 0 and in_sector(d) and d["tender_id"] in open_ids
    }
    return top_k(ranked, k)


def redis_top(r: redis.Redis | redis.RedisCluster, prefix: str, team_id: int) -> dict[int, float]:
    return {int(m): s for m, s in r.zrange(f"{prefix}team:{{{team_id}}}:top_tenders", 0, -1, withscores=True)}


def wait_every_team_ranked(
    db: Any, read_top: Callable[[int], dict[int, float]], teams: Iterable[int], open_ids: set[int], each_s: float = 30
) -> None:
    """Wait until every team is scored against every open tender in MongoDB, then until each team's top list (as
    `read_top` reads it) equals the best of its scores."""
    teams = list(teams)
    wait_for(
        lambda: (
            db["readiness_scores"].count_documents({"tender_id": {"$in": sorted(open_ids)}})
            == len(open_ids) * len(teams)
        ),
        120,
        "every team scored against every open tender",
    )
    for team_id in teams:
        wait_for(
            lambda team_id=team_id: read_top(team_id) == expected_top(db, team_id, open_ids),
            each_s,
            f"team {team_id}'s top 5 equals the best of its MongoDB scores",
        )


def test_real_tenders_and_profiles_give_summaries_scores_and_top5_kept_right(
    penv: PipelineEnv, engine: sa.Engine, mongo: MongoClient[dict[str, Any]], redis_client: redis.Redis
) -> None:
    penv.as_of = AS_OF
    relay = RelayProcess(penv.renv, "--from-now").start().wait_tailing()
    worker = WorkerProcess(penv, "--agents", "tender_summaries,readiness").start()
    worker.wait_ready()
    rows = [dataclasses.replace(tender_row(r), ocid=f"{r['ocid']}-{penv.uid}") for r in read_releases(limit=120)]
    ids: dict[int, Any] = {}
    for row in rows:
        with engine.begin() as conn:
            tender_id, _ = upsert_tender(conn, row)
        ids[tender_id] = row
    profiles = [dataclasses.replace(p, team=f"{p.team} {penv.uid}") for p in read_profiles()]
    teams = {team_id: p for team_id, _, p in load_companies(engine, profiles)}
    open_ids = {t for t, row in ids.items() if _open(row, AS_OF)}
    assert len(open_ids) >= 30

    db = mongo[penv.mongo_db]
    prefix = penv.redis_prefix
    # Counted over this test's tenders: the relay's first-start backfill also publishes rows other tests left.
    mine = {"tender_id": {"$in": sorted(ids)}}
    wait_for(lambda: db["tender_summaries"].count_documents(mine) == len(ids), 120, "every tender summarised")
    wait_every_team_ranked(db, lambda team_id: redis_top(redis_client, prefix, team_id), teams, open_ids)
    non_empty = [t for t in teams if redis_top(redis_client, prefix, t)]
    assert len(non_empty) >= 4, {teams[t].team: redis_top(redis_client, prefix, t) for t in teams}
    assert all(len(redis_top(redis_client, prefix, t)) <= 5 for t in teams)
    assert 0 < redis_client.ttl(f"{prefix}team:{{{non_empty[0]}}}:top_tenders") <= 3600

    # Scores explain themselves, record their inputs' versions and the rules version.
    doc = db["readiness_scores"].find_one({"team_id": non_empty[0]})
    assert doc is not None
    assert {i["name"] for i in doc["checklist"]} == {
        "closing_date",
        "cidb",
        "province",
        "sector",
        "experience",
        "bbbee",
    }
    assert all(i["reason"] for i in doc["checklist"])
    assert doc["rules_version"] and doc["tender_seq"] > 0 and doc["team_seq"] > 0 and doc["event_id"] > 0

    # Summaries: real text, extractive (verbatim sentences), cached as the tender card with its TTL.
    summary = db["tender_summaries"].find_one({"tender_id": next(iter(ids))})
    assert summary is not None and summary["summary"] and summary["model_used"].startswith("extractive")
    card_key = f"{prefix}tender:{summary['tender_id']}:metadata"
    card = {k.decode(): v.decode() for k, v in redis_client.hgetall(card_key).items()}
    assert card["summary"] == summary["summary"] and card["title"] == ids[summary["tender_id"]].title
    assert 0 < redis_client.ttl(card_key) <= 6 * 3600

    # A tender in someone's top list is cancelled, another one's closing date moves into the past.
    top_team = non_empty[0]
    cancelled, moved = list(redis_top(redis_client, prefix, top_team))[:2]
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE tenders SET status = 'cancelled' WHERE id = :id"), {"id": cancelled})
        write_event(conn, "tender.closed", cancelled, {"tender_id": cancelled, "status": "cancelled"})
    past = dataclasses.replace(ids[moved], closing_at=dt.datetime(2025, 9, 20, 9, 0))
    with engine.begin() as conn:
        upsert_tender(conn, past)
    open_ids -= {cancelled, moved}
    wait_for(lambda: not redis_client.exists(f"{prefix}tender:{cancelled}:metadata"), 60, "cancelled card dropped")
    for team_id in teams:
        wait_for(
            lambda team_id=team_id: redis_top(redis_client, prefix, team_id) == expected_top(db, team_id, open_ids),
            60,
            f"team {team_id}'s top 5 without the closed tenders",
        )
    assert cancelled not in redis_top(redis_client, prefix, top_team)
    assert moved not in redis_top(redis_client, prefix, top_team)
    # A company changes its profile: it now covers only the Northern Cape, so its list is rebuilt from new scores.
    before = redis_top(redis_client, prefix, top_team)
    narrowed = dataclasses.replace(teams[top_team], provinces=["Northern Cape"])
    load_companies(engine, [narrowed])
    wait_for(
        lambda: (
            redis_top(redis_client, prefix, top_team) != before
            and redis_top(redis_client, prefix, top_team) == expected_top(db, top_team, open_ids)
        ),
        60,
        "the top 5 follows the changed profile",
    )
    changed = db["readiness_scores"].find_one({"team_id": top_team, "tender_id": next(iter(open_ids))})
    assert changed is not None and changed["team_seq"] > doc["team_seq"]
    assert worker.stats()["tender_summaries"]["dead_letters"] == 0
    assert worker.stats()["readiness"]["dead_letters"] == 0
    assert worker.terminate() == 0, worker.tail()
    relay.terminate()


def test_worker_with_a_model_that_cannot_load_stops_at_start_up_with_the_reason(
    penv: PipelineEnv, tmp_path: Any
) -> None:
    result = run_cli(
        penv,
        "worker",
        "--agents",
        "tender_summaries",
        TENDERHUB_SUMMARY_BACKEND="transformers",
        TENDERHUB_SUMMARY_MODEL=str(tmp_path),
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert str(tmp_path) in result.stderr and "config.json" in result.stderr, result.stderr[-2000:]
