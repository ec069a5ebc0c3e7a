"""The worker closes what it opens: after a real run of all four agents (every store client, the summariser's
thread, the DLQ producer, Faust's consumer thread and web server in use) and a SIGTERM, the process that ran it
holds no thread and no socket it did not hold before."""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from pymongo import MongoClient

from tenderhub.processes import Child, PipelineEnv
from tests.integration.relay_harness import run
from tests.integration.worker_harness import wait_for

AGENTS = ("activity_logs", "spend", "tender_summaries", "readiness")

# Runs the worker the way `tenderhub worker` does, in this process's main thread, then reports what is still open
# once it has stopped (pymongo's monitors and the loop's executor threads get a moment to end).
PROBE = """
import json, os, sys, threading, time

def sockets():
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            found.add(target)
    return found

threads_before = {t.ident for t in threading.enumerate()}
sockets_before = sockets()
from schema.settings import load_settings, load_stack_settings
from tenderhub.cli import setup_logging
from streams.worker import run_worker

setup_logging(load_stack_settings(), False)
code = run_worker(load_settings(), agents=sys.argv[1].split(","))
deadline = time.monotonic() + 15
while True:
    threads = [t.name for t in threading.enumerate() if t.ident not in threads_before]
    leftover = sorted(sockets() - sockets_before)
    if (not threads and not leftover) or time.monotonic() > deadline:
        break
    time.sleep(0.2)
print("PROBE " + json.dumps({"code": code, "threads": threads, "sockets": leftover}), flush=True)
"""


def envelope(event_id: int, event_type: str, aggregate: str, aggregate_id: int, payload: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "event_id": event_id,
            "event_type": event_type,
            "aggregate_type": aggregate,
            "aggregate_id": str(aggregate_id),
            "occurred_at": "2025-01-20T10:00:00.000Z",
            "schema_version": 1,
            "source_seq": event_id << 20,
            "payload": payload,
        }
    ).encode()


def events(uid: str) -> dict[str, list[tuple[bytes, bytes]]]:
    """Per topic suffix: tenders (spend, summaries, readiness), company profiles (readiness), activity."""
    tenders = [
        (
            str(t).encode(),
            envelope(
                t,
                "tender.created",
                "tender",
                t,
                {
                    "tender_id": t,
                    "ocid": f"ocds-{uid}-{t}",
                    "title": f"Tender {t}",
                    "description": "Construction of a community hall in Soweto. Grade 5GB or higher. "
                    "Compulsory briefing session at the municipal offices.",
                    "buyer": f"Buyer {uid}",
                    "budget": "1000.00",
                    "currency": "ZAR",
                    "province": "Gauteng",
                    "category": "Construction",
                    "published_at": "2025-01-10T09:00:00",
                    "closing_at": "2025-03-10T09:00:00",
                },
            ),
        )
        for t in range(1, 6)
    ]
    company = {
        "team_id": 1,
        "company_id": 101,
        "company_name": "Team 1 Civils",
        "sectors": ["Construction"],
        "provinces": ["Gauteng"],
        "experience_years": 6,
        "bbbee_level": 2,
        "cidb": [{"class_of_works": "GB", "grade": 5}],
    }
    activity = {"user_id": 4, "team_id": 1, "action": "tender.viewed", "details": {"test": uid}}
    return {
        "tender": tenders,
        "company": [(b"1", envelope(10, "company.updated", "company", 1, company))],
        "activity": [(b"4", envelope(20 + n, "user.activity", "activity", 4, activity)) for n in range(3)],
    }


async def produce(bootstrap: str, prefix: str, by_topic: dict[str, list[tuple[bytes, bytes]]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for suffix, records in by_topic.items():
            for key, value in records:
                await producer.send_and_wait(f"{prefix}{suffix}", value, key=key)
    finally:
        await producer.stop()


def held(pid: int) -> tuple[int, int]:
    """(threads, sockets) of a running process, read from /proc."""
    threads = len(os.listdir(f"/proc/{pid}/task"))
    sockets = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            sockets += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            continue
    return threads, sockets


def stats(port: int) -> dict[str, dict[str, float]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/tenderhub/agents/", timeout=2) as resp:
        data: dict[str, dict[str, float]] = json.loads(resp.read())
        return data


def test_worker_stop_closes_every_client_thread_and_socket_it_opened(
    penv: PipelineEnv, mongo: MongoClient[dict[str, Any]]
) -> None:
    log_path = Path(tempfile.gettempdir()) / f"worker-lifecycle-{penv.uid}.log"
    probe = Child(
        "worker probe",
        [",".join(AGENTS)],
        penv.env(TENDERHUB_AS_OF="2025-01-20"),
        log_path,
        "TENDERHUB_WORKER_WEB_PORT",
        program=(sys.executable, "-c", PROBE),
    ).start()
    assert probe.proc is not None
    proc, port = probe.proc, probe.port

    def ready() -> bool:
        assert proc.poll() is None, log_path.read_text(errors="replace")[-3000:]
        try:
            stats(port)
        except OSError:
            return False
        return "Worker ready" in log_path.read_text(errors="replace")

    wait_for(ready, 90, "worker ready")
    by_topic = events(penv.uid)
    run(produce(penv.renv.settings.kafka_bootstrap, penv.renv.prefix, by_topic))
    expected = {"activity_logs": 3, "spend": 5, "tender_summaries": 5, "readiness": 6}
    wait_for(
        lambda: all(stats(port)[name]["events"] >= n for name, n in expected.items()),
        120,
        "every agent handled its events",
    )
    db = mongo[penv.mongo_db]
    # The agents really used their stores (the summaries went through the summariser's own thread).
    wait_for(lambda: db["tender_summaries"].count_documents({}) == 5, 30, "five summaries written")
    assert db["user_activity_logs"].count_documents({}) == 3 and db["readiness_scores"].count_documents({}) >= 1
    threads_during, sockets_during = held(proc.pid)
    # Not a vacuous check: the run held Faust's consumer thread, the summariser's and the loop's executor threads,
    # and sockets to Kafka, MongoDB, Redis and the web view. (pymongo's asyncio client, which the agents use, runs its
    # server monitors as tasks of the loop, not as threads.)
    assert threads_during >= 3 and sockets_during >= 5, (threads_during, sockets_during)

    proc.send_signal(signal.SIGTERM)
    proc.wait(120)
    text = log_path.read_text(errors="replace")
    line = next((ln for ln in text.splitlines() if ln.startswith("PROBE ")), None)
    assert line is not None, text[-3000:]
    report = json.loads(line.removeprefix("PROBE "))
    assert report["code"] == 0, text[-3000:]
    assert report["threads"] == [], f"threads left running after the worker stopped: {report['threads']}"
    assert report["sockets"] == [], f"{len(report['sockets'])} sockets left open after the worker stopped"
