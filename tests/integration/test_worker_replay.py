"""Replay and rebuild: after `tenderhub replay --to earliest --rebuild`, the workers recompute every derived
MongoDB document and Redis value from the topics, byte for byte what the first run produced."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import redis
import sqlalchemy as sa
from pymongo import MongoClient

from streams.spend import recompute, totals_in_cents
from tenderhub.companies import load_companies, read_profiles
from tenderhub.loader import read_releases, tender_row, upsert_tender
from tenderhub.processes import PipelineEnv, RelayProcess, WorkerProcess
from tests.integration.test_cdc_relay import insert_activities
from tests.integration.test_worker_spend import mysql_rows, store_totals, uk_rows, write_tenders
from tests.integration.worker_harness import run_cli, wait_for

AS_OF = "2025-09-25"


def mongo_snapshot(db: Any) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for name in ("tender_summaries", "readiness_scores", "user_activity_logs"):
        # `_id` of versioned documents is an ObjectId (insert time): a timestamp of the run, not derived data.
        keep_id = name == "user_activity_logs"
        docs = [{k: v for k, v in d.items() if keep_id or k != "_id"} for d in db[name].find({})]
        out[name] = sorted(docs, key=lambda d: repr(sorted(d.items())))
    return out


def redis_snapshot(r: redis.Redis, prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for raw in r.scan_iter(match=f"{prefix}*", count=1000):
        key = raw.decode()
        kind = r.type(raw).decode()
        if kind == "hash":
            # __gen counts applied batches (a concurrency token of the spend store), not a derived figure.
            out[key] = {k.decode(): v.decode() for k, v in r.hgetall(raw).items() if k != b"__gen"}
        elif kind == "zset":
            out[key] = [(m.decode(), s) for m, s in r.zrange(raw, 0, -1, withscores=True)]
        else:
            out[key] = (kind, r.get(raw))
    return out


def differences(before: dict[str, Any], after: dict[str, Any]) -> str:
    out = []
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key), after.get(key)
        if a == b:
            continue
        if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            pairs = [(x, y) for x, y in zip(a, b, strict=True) if x != y]
            out.append(f"{key}: {len(pairs)} of {len(a)} differ, first: {pairs[0][0]!r} != {pairs[0][1]!r}"[:1500])
        else:
            out.append(f"{key}: {str(a)[:300]} != {str(b)[:300]}")
    return "\n".join(out[:10])


def test_replay_from_the_start_rebuilds_identical_stores(
    penv: PipelineEnv, engine: sa.Engine, mongo: MongoClient[dict[str, Any]], redis_client: redis.Redis
) -> None:
    penv.as_of = AS_OF
    relay = RelayProcess(penv.renv, "--from-now").start().wait_tailing()
    worker = WorkerProcess(penv).start()
    worker.wait_ready()
    activity_ids = insert_activities(engine, penv.uid, [200, 1, 50])
    uk = uk_rows(penv.uid)
    uk_ids = write_tenders(engine, uk)
    write_tenders(engine, [dataclasses.replace(uk[0], budget=uk[0].budget or 0 + 10)])
    za = [dataclasses.replace(tender_row(r), ocid=f"{r['ocid']}-{penv.uid}") for r in read_releases(limit=40)]
    za_ids = []
    for row in za:
        with engine.begin() as conn:
            za_ids.append(upsert_tender(conn, row)[0])
    profiles = [dataclasses.replace(p, team=f"{p.team} {penv.uid}") for p in read_profiles()]
    load_companies(engine, profiles)

    db = mongo[penv.mongo_db]
    prefix = penv.redis_prefix
    expected_spend = totals_in_cents(recompute(mysql_rows(engine)))
    wait_for(lambda: db["user_activity_logs"].count_documents({}) == len(activity_ids), 90, "logs")
    wait_for(lambda: db["tender_summaries"].count_documents({}) == len(set(uk_ids) | set(za_ids)), 90, "summaries")
    wait_for(
        lambda: store_totals(redis_client, f"{prefix}analytics:{{spend_by_buyer}}:totals") == expected_spend,
        90,
        "spend",
    )
    wait_for(lambda: worker.stats()["readiness"]["events"] >= len(uk) + 1 + len(za) + len(profiles), 90, "readiness")
    time.sleep(2)
    first_mongo, first_redis = mongo_snapshot(db), redis_snapshot(redis_client, prefix)
    assert first_mongo["readiness_scores"] and any(k.endswith(":top_tenders") for k in first_redis)
    assert worker.terminate() == 0
    relay.terminate()

    result = run_cli(penv, "replay", "--to", "earliest", "--rebuild", "--yes")
    assert result.returncode == 0, result.stderr + result.stdout
    assert "rewound" in result.stdout
    assert db["tender_summaries"].count_documents({}) == 0
    assert not list(redis_client.scan_iter(match=f"{prefix}*"))

    worker = WorkerProcess(penv).start()
    worker.wait_ready()
    try:
        wait_for(lambda: mongo_snapshot(db) == first_mongo, 120, "MongoDB rebuilt as before")
        wait_for(lambda: redis_snapshot(redis_client, prefix) == first_redis, 60, "Redis rebuilt as before")
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}\n{differences(first_mongo, mongo_snapshot(db))}\n"
            f"{differences(first_redis, redis_snapshot(redis_client, prefix))}"
        ) from None
    time.sleep(2)
    assert mongo_snapshot(db) == first_mongo
    assert redis_snapshot(redis_client, prefix) == first_redis
    assert worker.terminate() == 0


def test_replay_refuses_a_live_group_and_rebuild_without_earliest(penv: PipelineEnv) -> None:
    worker = WorkerProcess(penv, "--agents", "activity_logs").start()
    worker.wait_ready()
    live = run_cli(penv, "replay", "--to", "earliest")
    assert live.returncode == 2 and "live member" in live.stderr
    partial = run_cli(penv, "replay", "--to", "offset:5", "--rebuild", "--yes")
    assert partial.returncode == 2 and "--to earliest" in partial.stderr
    assert worker.terminate() == 0


def test_replay_refuses_to_move_the_group_forward_past_events_it_has_not_handled(penv: PipelineEnv) -> None:
    from tests.integration.relay_harness import run
    from tests.integration.test_worker_errors import produce, tender_event

    bootstrap = penv.renv.settings.kafka_bootstrap
    run(produce(bootstrap, f"{penv.renv.prefix}tender", [tender_event(n, penv.uid) for n in range(1, 21)]))
    # No worker has read them: an offset past them, or a time in the future (a typo of the year), would skip them.
    for to in ("offset:1000000", "2062-01-01T00:00:00"):
        ahead = run_cli(penv, "replay", "--to", to)
        assert ahead.returncode == 2 and "forward" in ahead.stderr and "--forward" in ahead.stderr, ahead.stderr
    # Asked for on purpose, it moves.
    moved = run_cli(penv, "replay", "--to", "offset:1000000", "--forward")
    assert moved.returncode == 0, moved.stderr
    # Back to the start is a rewind: always allowed.
    assert run_cli(penv, "replay", "--to", "earliest").returncode == 0
