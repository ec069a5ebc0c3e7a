"""Scenario 4 end to end (outbox -> relay -> Kafka -> activity agent -> capped MongoDB collection), redelivery,
poison events to the DLQ, and a SIGTERM that drains and commits."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from pymongo import MongoClient

from tenderhub.processes import PipelineEnv, RelayProcess, WorkerProcess
from tests.integration.relay_harness import consume, produce, run
from tests.integration.test_cdc_relay import insert_activities
from tests.integration.worker_harness import wait_for


def test_activity_logs_once_each_with_redelivery_and_poison_to_dlq(
    penv: PipelineEnv, engine: sa.Engine, mongo: MongoClient[dict[str, Any]]
) -> None:
    relay = RelayProcess(penv.renv, "--from-now").start().wait_tailing()
    worker = WorkerProcess(penv, "--agents", "activity_logs").start()
    worker.wait_ready()
    bootstrap = penv.renv.settings.kafka_bootstrap
    topic = f"{penv.renv.prefix}activity"
    ids = insert_activities(engine, penv.uid, [1, 50, 1, 200, 3], users=7)
    published = run(consume(bootstrap, [topic], until=len(ids), timeout=60))
    assert len(published) == len(ids)
    # Poison on user 3's partition: not JSON, and a valid envelope whose payload breaks the contract. Then the
    # same partition must keep flowing: more events for user 3 after them, and a redelivery of 40 old events.
    poison_bad_json = (b"3", b"{not json")
    broken = dict(published[0].value, payload={"user_id": 3, "team_id": "x", "action": "view"}, aggregate_id="3")
    poison_contract = (b"3", json.dumps(broken).encode())
    run(produce(bootstrap, [(topic, k, v) for k, v in (poison_bad_json, poison_contract)]))
    run(produce(bootstrap, [(topic, r.key, json.dumps(r.value).encode()) for r in published[:40]]))
    later = insert_activities(engine, penv.uid, [30], users=7)

    logs = mongo[penv.mongo_db]["user_activity_logs"]
    expected = set(ids) | set(later)
    wait_for(lambda: logs.count_documents({}) >= len(expected), 60, "every activity logged")
    wait_for(lambda: worker.stats()["activity_logs"]["events"] >= len(expected) + 42, 30, "worker took every record")
    docs = list(logs.find({}))
    assert len(docs) == len(expected), "a redelivered event was logged twice"
    assert {d["_id"] for d in docs} == expected
    by_id = {r.value["event_id"]: r.value for r in published}
    for d in docs:
        if d["_id"] in by_id:
            env = by_id[d["_id"]]
            assert d["user_id"] == env["payload"]["user_id"]
            assert d["action"] == env["payload"]["action"]
            assert d["source_seq"] == env["source_seq"]
            assert d["details"]["test"] == penv.uid
    # The worker created the collection at start-up, capped.
    assert logs.options()["capped"] is True

    dlq = run(consume(bootstrap, [f"{penv.renv.prefix}dlq"], until=2, timeout=30))
    reasons = sorted(r.value["reason"] for r in dlq)
    assert len(dlq) == 2, reasons
    assert reasons[0].startswith("payload breaks user.activity v1: team_id"), reasons
    assert reasons[1].startswith("value is not JSON"), reasons
    assert all(r.value["agent"] == "activity_logs" and r.value["origin"]["topic"] == topic for r in dlq)
    assert {r.headers["dlq_agent"] for r in dlq} == {b"activity_logs"}

    # The same figures as Prometheus metrics, next to the relay's.
    metrics, stats = worker.metrics(), worker.stats()["activity_logs"]
    assert metrics['tenderhub_worker_events_total{agent="activity_logs"}'] == stats["events"] >= len(expected) + 42
    assert metrics['tenderhub_worker_dead_letters_total{agent="activity_logs"}'] == 2
    assert metrics['tenderhub_worker_batch_seconds_count{agent="activity_logs"}'] == stats["batches"] >= 1
    assert metrics["tenderhub_worker_offset_commits_total"] >= 1
    # Sink latency: every insert of the logs went through the MongoDB sink's sensor, and succeeded.
    inserts = metrics['tenderhub_worker_store_seconds_count{ok="true",operation="insert_logs",store="mongodb"}']
    assert 1 <= inserts <= stats["batches"]
    assert metrics['tenderhub_worker_store_seconds_sum{ok="true",operation="insert_logs",store="mongodb"}'] > 0
    lags = {k: v for k, v in metrics.items() if k.startswith("tenderhub_worker_consumer_lag{")}
    assert lags and all(f'topic="{topic}"' in k for k in lags), lags
    # Start-up objects are out of the collector's full passes (schema/heap.py), and its pauses are measured.
    assert metrics["tenderhub_gc_frozen_objects"] > 10_000
    assert metrics['tenderhub_gc_pause_seconds_count{generation="0"}'] >= 1

    assert worker.terminate() == 0, worker.tail()
    assert "Stopping" in worker.log_text()
    relay.terminate()


def test_sigterm_commits_what_was_done_and_restart_redoes_nothing(
    penv: PipelineEnv, engine: sa.Engine, mongo: MongoClient[dict[str, Any]]
) -> None:
    relay = RelayProcess(penv.renv, "--from-now").start().wait_tailing()
    worker = WorkerProcess(penv, "--agents", "activity_logs").start()
    worker.wait_ready()
    ids = insert_activities(engine, penv.uid, [500, 500])
    logs = mongo[penv.mongo_db]["user_activity_logs"]
    wait_for(lambda: logs.count_documents({}) == len(ids), 60, "all logged")
    assert worker.terminate() == 0, worker.tail()
    # Restarted, the worker starts from the offsets committed at SIGTERM: it gets no event again.
    worker = WorkerProcess(penv, "--agents", "activity_logs").start()
    worker.wait_ready()
    more = insert_activities(engine, penv.uid, [5])
    wait_for(lambda: logs.count_documents({}) == len(ids) + len(more), 60, "new events logged")
    wait_for(lambda: worker.stats()["activity_logs"]["events"] >= len(more), 30, "worker took the new events")
    assert worker.stats()["activity_logs"]["events"] == len(more), "events before SIGTERM were delivered again"
    assert worker.terminate() == 0
    relay.terminate()
