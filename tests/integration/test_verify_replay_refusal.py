"""`replay --to earliest --rebuild` refuses, naming `tenderhub rebuild`, when retention has removed the oldest events of
a data topic (simulated with delete-records): clearing the stores then would lose derived data for good."""

from __future__ import annotations

import asyncio
import json

import redis
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.records_to_delete import RecordsToDelete

from schema.settings import Settings
from schema.topics import TopicNames
from tenderhub.processes import PipelineEnv
from tests.integration.worker_harness import run_cli


async def _send_then_truncate(settings: Settings, topic: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        for n in range(3):
            await producer.send_and_wait(topic, json.dumps({"n": n}).encode(), partition=0)
    finally:
        await producer.stop()
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        # What retention does to the oldest segment: the partition now starts at offset 2.
        await admin.delete_records({TopicPartition(topic, 0): RecordsToDelete(before_offset=2)})
    finally:
        await admin.close()


def test_replay_rebuild_refuses_when_a_topic_lost_its_oldest_events(
    penv: PipelineEnv, redis_client: redis.Redis
) -> None:
    settings = penv.settings()
    topic = TopicNames.from_settings(settings).data["tender"]
    marker = f"{penv.redis_prefix}tender:1:metadata"
    redis_client.hset(marker, "title", "derived data that must survive the refusal")
    whole = run_cli(penv, "replay", "--to", "earliest", "--rebuild", "--yes")
    assert whole.returncode == 0, whole.stderr  # every topic starts at 0: the replay holds the whole history
    redis_client.hset(marker, "title", "derived data that must survive the refusal")

    asyncio.run(_send_then_truncate(settings, topic))
    refused = run_cli(penv, "replay", "--to", "earliest", "--rebuild", "--yes")
    assert refused.returncode == 2
    assert f"{topic}[0]@2" in refused.stderr and "tenderhub rebuild" in refused.stderr
    assert redis_client.hget(marker, "title") == b"derived data that must survive the refusal"
    rewind = run_cli(penv, "replay", "--to", "earliest")  # a rewind alone clears nothing: still allowed
    assert rewind.returncode == 0, rewind.stderr
