"""Worker faults against the real services: aborted relay transactions, SIGKILL mid-batch, MongoDB and Redis
outages. Each ends with the stores equal to what the events say, nothing lost, nothing counted twice."""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from typing import Any

import redis
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from pymongo import MongoClient

from schema.settings import load_stack_settings
from streams.spend import recompute, totals_in_cents
from tenderhub.processes import PipelineEnv, RelayProcess, WorkerProcess
from tenderhub.stack import FerretDB, Redis, Service, Stack
from tests.integration.relay_harness import Writer, consume, run
from tests.integration.test_cdc_relay import activity, insert_activities
from tests.integration.test_worker_spend import mysql_rows, store_totals, uk_rows, write_tenders
from tests.integration.worker_harness import wait_for


def _service(kind: type[Service]) -> Service:
    return next(s for s in Stack(load_stack_settings()).services if isinstance(s, kind))


def _envelope(event_id: int, user_id: int, uid: str, seq: int) -> bytes:
    return json.dumps(
        {
            "event_id": event_id,
            "event_type": "user.activity",
            "aggregate_type": "activity",
            "aggregate_id": str(user_id),
            "occurred_at": "2026-01-05T10:00:00.000",
            "schema_version": 1,
            "source_seq": seq,
            "payload": activity(uid, user_id, event_id),
        }
    ).encode()


async def _transactions(bootstrap: str, topic: str, uid: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"test-abort-{uid}")
    await producer.start()
    try:
        await producer.begin_transaction()
        for i in range(1, 6):
            await producer.send(topic, _envelope(900_000 + i, i, uid, i), key=str(i).encode())
        await producer.abort_transaction()
        async with producer.transaction():
            for i in range(6, 9):
                await producer.send(topic, _envelope(900_000 + i, i, uid, i), key=str(i).encode())
    finally:
        await producer.stop()


def test_worker_never_sees_records_of_aborted_transactions(
    penv: PipelineEnv, mongo: MongoClient[dict[str, Any]]
) -> None:
    worker = WorkerProcess(penv, "--agents", "activity_logs").start()
    worker.wait_ready()
    bootstrap = penv.renv.settings.kafka_bootstrap
    topic = f"{penv.renv.prefix}activity"
    run(_transactions(bootstrap, topic, penv.uid))
    # The aborted records are in the log: a read_uncommitted consumer gets all 8.
    assert len(run(consume(bootstrap, [topic], until=8, timeout=30, isolation="read_uncommitted"))) == 8
    logs = mongo[penv.mongo_db]["user_activity_logs"]
    wait_for(lambda: logs.count_documents({}) >= 3, 30, "committed events logged")
    time.sleep(2)
    assert sorted(d["_id"] for d in logs.find({})) == [900_006, 900_007, 900_008]
    assert worker.stats()["activity_logs"]["events"] == 3
    assert worker.terminate() == 0


def test_worker_sigkilled_mid_batch_logs_once_and_counts_spend_once(
    penv: PipelineEnv, engine: sa.Engine, mongo: MongoClient[dict[str, Any]], redis_client: redis.Redis
) -> None:
    relay = RelayProcess(penv.renv, "--from-now").start().wait_tailing()
    worker = WorkerProcess(penv, "--agents", "activity_logs,spend", TENDERHUB_WORKER_BATCH_MAX="200").start()
    worker.wait_ready()
    rng = random.Random(7)
    rows = uk_rows(penv.uid)

    def write() -> tuple[list[int], list[int]]:
        activity_ids: list[int] = []
        tender_ids: list[int] = []
        for round_ in range(12):
            activity_ids += insert_activities(engine, f"{penv.uid}", [rng.randint(50, 400), 1, rng.randint(1, 30)])
            chunk = rows[round_ * 4 : round_ * 4 + 4]
            if chunk:
                tender_ids += write_tenders(engine, chunk)
            time.sleep(0.3)
        return activity_ids, tender_ids

    writer = Writer(write)
    writer.start()
    kills = 0
    while kills < 6 or writer.is_alive():
        time.sleep(rng.uniform(0.4, 1.5))
        worker.kill()
        kills += 1
        worker.start()
    activity_ids, _ = writer.result()
    worker.wait_ready()
    logs = mongo[penv.mongo_db]["user_activity_logs"]
    wait_for(lambda: logs.count_documents({}) >= len(activity_ids), 120, "every activity logged")
    expected = totals_in_cents(recompute(mysql_rows(engine)))
    prefix = penv.redis_prefix
    wait_for(
        lambda: store_totals(redis_client, f"{prefix}analytics:{{spend_by_buyer}}:totals") == expected,
        60,
        "spend equals the MySQL recompute",
    )
    time.sleep(2)
    assert logs.count_documents({}) == len(activity_ids)
    assert {d["_id"] for d in logs.find({}, {"_id": 1})} == set(activity_ids)
    assert store_totals(redis_client, f"{prefix}analytics:{{spend_by_buyer}}:totals") == expected
    assert any(c > 0 for c, _, _ in expected.values())
    assert kills >= 6
    assert worker.terminate() == 0
    relay.terminate()


def _pause(svc: Service, seconds: float, is_down: threading.Event) -> None:
    """SIGSTOP the service for `seconds`: it accepts no request, as if the host were gone, and keeps its data
    (the test Redis runs without persistence: a restart would also wipe it, a different fault)."""
    pid = svc.running_pid()
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    is_down.set()
    try:
        time.sleep(seconds)
    finally:
        os.kill(pid, signal.SIGCONT)


def _crash(svc: Service, down_s: float, is_down: threading.Event) -> None:
    """SIGKILL the service (a crash: no graceful goodbye to clients), keep it down `down_s`, start it again."""
    pid = svc.running_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    svc.stop()  # reaps it and clears the PID file
    is_down.set()
    time.sleep(down_s)
    svc.start()
    svc.wait_healthy(120)
    svc.after_start()


def _outage_run(
    penv: PipelineEnv,
    engine: sa.Engine,
    mongo: MongoClient[dict[str, Any]],
    redis_client: redis.Redis,
    outage: Any,
    is_down: threading.Event,
) -> WorkerProcess:
    relay = RelayProcess(penv.renv, "--from-now").start().wait_tailing()
    worker = WorkerProcess(penv, "--agents", "activity_logs,spend").start()
    worker.wait_ready()
    rows = uk_rows(penv.uid)
    before_ids = insert_activities(engine, penv.uid, [100])
    tender_ids = write_tenders(engine, rows[:10])
    logs = mongo[penv.mongo_db]["user_activity_logs"]
    wait_for(lambda: logs.count_documents({}) == len(before_ids), 60, "logged before the outage")
    down = threading.Thread(target=outage)
    down.start()
    assert is_down.wait(30)
    # Events keep coming while the store is down.
    during_ids = insert_activities(engine, penv.uid, [200, 50])
    tender_ids += write_tenders(engine, rows[10:30])
    down.join()
    expected = totals_in_cents(recompute(mysql_rows(engine)))
    wait_for(lambda: logs.count_documents({}) == len(before_ids) + len(during_ids), 120, "every activity logged after")
    wait_for(
        lambda: store_totals(redis_client, f"{penv.redis_prefix}analytics:{{spend_by_buyer}}:totals") == expected,
        120,
        "spend converged",
    )
    assert {d["_id"] for d in logs.find({}, {"_id": 1})} == set(before_ids) | set(during_ids)
    assert worker.proc is not None and worker.proc.poll() is None, worker.tail()
    relay.terminate()
    return worker


def test_mongodb_down_30s_worker_backs_off_and_loses_nothing(
    penv: PipelineEnv, engine: sa.Engine, mongo: MongoClient[dict[str, Any]], redis_client: redis.Redis
) -> None:
    down = threading.Event()
    worker = _outage_run(penv, engine, mongo, redis_client, lambda: _crash(_service(FerretDB), 30, down), down)
    assert worker.stats()["activity_logs"]["store_retries"] >= 1
    assert worker.stats()["activity_logs"]["dead_letters"] == 0
    assert "store unavailable" in worker.log_text()
    assert worker.terminate() == 0


def test_redis_unreachable_30s_worker_backs_off_and_loses_nothing(
    penv: PipelineEnv, engine: sa.Engine, mongo: MongoClient[dict[str, Any]], redis_client: redis.Redis
) -> None:
    down = threading.Event()
    worker = _outage_run(penv, engine, mongo, redis_client, lambda: _pause(_service(Redis), 30, down), down)
    assert worker.stats()["spend"]["store_retries"] >= 1
    assert worker.stats()["spend"]["dead_letters"] == 0
    assert worker.terminate() == 0
