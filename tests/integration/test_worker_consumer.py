"""The worker's batch consumer (streams/consumer.py) against the real broker: two workers in one group share the
partitions, a second worker joining mid-stream loses and doubles nothing, and once the events are handled the
group's committed offsets reach the end of every partition (past the relay's transaction markers too)."""

from __future__ import annotations

import asyncio
from typing import Any

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pymongo import MongoClient

from tenderhub.processes import PipelineEnv, RelayProcess, WorkerProcess
from tests.integration.test_cdc_relay import insert_activities
from tests.integration.worker_harness import wait_for


async def _lag(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """Per partition: its end (past the last transaction marker) minus the group's committed offset."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    partitions = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
    assert partitions, f"topic {topic} has no partitions"
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await reader.start()
    try:
        ends = await reader.end_offsets(partitions)
    finally:
        await reader.stop()
    return {tp.partition: end - (committed[tp].offset if tp in committed else 0) for tp, end in ends.items()}


def test_a_second_worker_joining_mid_stream_shares_the_partitions_and_nothing_is_lost_or_doubled(
    penv: PipelineEnv, engine: sa.Engine, mongo: MongoClient[dict[str, Any]]
) -> None:
    relay = RelayProcess(penv.renv, "--from-now").start().wait_tailing()
    first = WorkerProcess(penv, "--agents", "activity_logs").start()
    first.wait_ready()
    ids = insert_activities(engine, penv.uid, [200] * 10, users=40)
    # The second worker joins while the first is busy: the group rebalances with a batch in flight.
    second = WorkerProcess(penv, "--agents", "activity_logs").start()
    second.wait_ready()
    topic = f"{penv.renv.prefix}activity"
    # Both write the same log: after the second's start, one assignment per member once the group has rebalanced.
    wait_for(
        lambda: second.log_text()[second.offset :].count(f"partitions assigned: {topic}[") >= 2,
        90,
        "the group rebalanced onto both workers",
    )
    ids += insert_activities(engine, penv.uid, [200] * 10, users=40)
    logs = mongo[penv.mongo_db]["user_activity_logs"]
    wait_for(lambda: logs.count_documents({}) >= len(ids), 120, "every activity logged")
    assert logs.count_documents({}) == len(ids)
    assert {d["_id"] for d in logs.find({}, {"_id": 1})} == set(ids)

    bootstrap = penv.renv.settings.kafka_bootstrap
    # Both took part once the group had rebalanced; every event was handled at least once between them.
    wait_for(lambda: all(w.stats()["activity_logs"]["events"] > 0 for w in (first, second)), 60, "both workers busy")
    handled = sum(w.stats()["activity_logs"]["events"] for w in (first, second))
    assert handled >= len(ids)
    # Committed within a second of being handled, up to the end of every partition (transaction markers included).
    wait_for(lambda: not any(asyncio.run(_lag(bootstrap, penv.group, topic)).values()), 30, "no lag left")
    assert first.terminate() == 0, first.tail()
    assert second.terminate() == 0, second.tail()
    relay.terminate()
    assert not any(asyncio.run(_lag(bootstrap, penv.group, topic)).values())
