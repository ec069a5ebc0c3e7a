"""Records written straight to a data topic (no relay to check them): an event near the data topics' 1 MiB limit
and a deeply nested JSON value each reach the DLQ as ONE dead letter that fits, and the agent keeps flowing past
them on the same partition."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from aiokafka import AIOKafkaProducer
from pymongo import MongoClient

from schema.topics import DATA_MAX_MESSAGE_BYTES
from streams.batch import DEAD_LETTER_MAX_BYTES, SAMPLE_CHARS
from tenderhub.processes import PipelineEnv, WorkerProcess
from tests.integration.relay_harness import consume, run
from tests.integration.worker_harness import wait_for

USER = 3


def activity(event_id: int, uid: str, **payload: Any) -> bytes:
    body = {"user_id": USER, "team_id": 1, "action": "tender.viewed", "details": {"test": uid}} | payload
    return json.dumps(
        {
            "event_id": event_id,
            "event_type": "user.activity",
            "aggregate_type": "activity",
            "aggregate_id": str(USER),
            "occurred_at": "2026-01-05T10:00:00.000Z",
            "schema_version": 1,
            "source_seq": event_id << 20,
            "payload": body,
        }
    ).encode()


def near_limit_contract_break(uid: str) -> bytes:
    """A user.activity envelope just under the data topics' limit that breaks the contract (team_id "x"), made of
    quotes: its dead letter, quoting the value again, is about twice its size."""
    head = activity(900, uid, team_id="x", details={"q": ""})
    room = DATA_MAX_MESSAGE_BYTES - 4096 - len(head)
    value = activity(900, uid, team_id="x", details={"q": '"' * (room // 2)})
    assert DATA_MAX_MESSAGE_BYTES - 8192 < len(value) < DATA_MAX_MESSAGE_BYTES
    return value


async def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=2 * 1024 * 1024, acks="all")
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=str(USER).encode())
    finally:
        await producer.stop()


def test_event_near_the_topic_limit_and_deeply_nested_json_are_dead_lettered_and_the_agent_flows_on(
    penv: PipelineEnv, mongo: MongoClient[dict[str, Any]]
) -> None:
    worker = WorkerProcess(penv, "--agents", "activity_logs").start()
    worker.wait_ready()
    bootstrap = penv.renv.settings.kafka_bootstrap
    topic = f"{penv.renv.prefix}activity"
    big = near_limit_contract_break(penv.uid)
    nested = b'{"event_id": 901, "payload": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    before = [activity(n, penv.uid) for n in range(1, 6)]
    after = [activity(n, penv.uid) for n in range(6, 11)]
    # One partition (same key), in this order: the poison sits between events that must all be logged.
    run(produce(bootstrap, topic, [*before, big, *after[:2], nested, *after[2:]]))

    logs = mongo[penv.mongo_db]["user_activity_logs"]
    wait_for(lambda: logs.count_documents({}) >= 10, 90, "the events after the poison were logged")
    assert sorted(d["_id"] for d in logs.find({})) == list(range(1, 11))

    dlq = run(consume(bootstrap, [f"{penv.renv.prefix}dlq"], until=2, timeout=30))
    assert len(dlq) == 2, [r.value.get("reason") for r in dlq]
    compact = next(r for r in dlq if r.value["origin"]["offset"] == 5)
    deep = next(r for r in dlq if r.value["origin"]["offset"] == 8)

    record = compact.value
    assert len(json.dumps(record).encode()) <= DEAD_LETTER_MAX_BYTES
    assert record["reason"].startswith("payload breaks user.activity v1: team_id"), record["reason"][:200]
    assert record["event_id"] is None  # the contract break is found before any id is trusted
    assert record["size"] == len(big)
    assert record["sha256"] == hashlib.sha256(big).hexdigest()
    assert record["sample"] == big[:SAMPLE_CHARS].decode()
    assert record["value"] is None and record["origin"]["topic"] == topic
    assert compact.headers["dlq_agent"] == b"activity_logs"

    assert "nests too deeply" in deep.value["reason"]
    assert deep.value["value"] == nested.decode(), "a dead letter that fits keeps the whole value"

    stats = worker.stats()["activity_logs"]
    assert stats["dead_letters"] == 2 and stats["events"] == 12
    assert worker.terminate() == 0, worker.tail()
