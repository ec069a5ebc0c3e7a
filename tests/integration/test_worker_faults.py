"""A worker never sees aborted relay transactions; the store faults the fault tests inject (SIGKILL mid-batch and
store outages of every agent are in test_worker_faults_all_agents.py)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from typing import Any

from aiokafka import AIOKafkaProducer
from pymongo import MongoClient

from schema.settings import load_stack_settings
from tenderhub.processes import PipelineEnv, WorkerProcess
from tenderhub.stack import Service, Stack
from tests.integration.relay_harness import consume, run
from tests.integration.test_cdc_relay import activity
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


def _pause(svc: Service, seconds: float, is_down: threading.Event) -> None:
    """SIGSTOP the service for `seconds`: it accepts no request, as if the host were gone, and keeps what it holds in
    memory (a restart is a different fault)."""
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
