"""Kafka 4 (KRaft, one node) runs transactions; read_committed consumers never see aborted records."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from schema.settings import Settings
from schema.topics import DLQ_MAX_MESSAGE_BYTES, TopicSpec, ensure_topics, topic_specs


@pytest_asyncio.fixture
async def topic(settings: Settings, uid: str) -> AsyncIterator[str]:
    name = f"test.tx.{uid}"
    assert await ensure_topics(settings.kafka_bootstrap, [TopicSpec(name, 3)]) == [name]
    yield name
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    await admin.delete_topics([name])
    await admin.close()


async def _read_all(settings: Settings, topic: str, isolation: str, expect: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        isolation_level=isolation,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        for _ in range(20):
            batch = await consumer.getmany(timeout_ms=500)
            values += [r.value for recs in batch.values() for r in recs if r.value is not None]
            if len(values) >= expect:
                break
    finally:
        await consumer.stop()
    return values


@pytest.mark.asyncio
async def test_transaction_commit_visible_abort_hidden(settings: Settings, topic: str, uid: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, transactional_id=f"test-{uid}")
    await producer.start()
    try:
        await producer.begin_transaction()
        for i in range(5):
            await producer.send(topic, f"aborted-{i}".encode(), key=str(i).encode())
        await producer.abort_transaction()
        async with producer.transaction():
            for i in range(5):
                await producer.send(topic, f"committed-{i}".encode(), key=str(i).encode())
    finally:
        await producer.stop()
    committed = await _read_all(settings, topic, "read_committed", 5)
    assert sorted(committed) == sorted(f"committed-{i}".encode() for i in range(5))
    # The aborted records are in the log: a read_uncommitted consumer (Faust's default) does see them.
    everything = await _read_all(settings, topic, "read_uncommitted", 10)
    assert len(everything) == 10


@pytest.mark.asyncio
async def test_declared_topics_exist_with_their_configs(settings: Settings) -> None:
    # `tenderhub migrate` (run by the test command) declared them; a second call creates nothing.
    assert await ensure_topics(settings.kafka_bootstrap, topic_specs(settings)) == []
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        p = settings.topic_prefix
        responses = await admin.describe_configs(
            [
                ConfigResource(ConfigResourceType.TOPIC, f"{p}dlq"),
                ConfigResource(ConfigResourceType.TOPIC, f"{p}relay.position"),
            ]
        )
    finally:
        await admin.close()
    configs = {}
    for response in responses:
        for resource in response.resources:
            name, entries = resource[3], resource[4]
            configs[name] = {e[0]: e[1] for e in entries}
    assert configs[f"{p}dlq"]["max.message.bytes"] == str(DLQ_MAX_MESSAGE_BYTES)
    assert configs[f"{p}relay.position"]["cleanup.policy"] == "compact"
