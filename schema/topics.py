"""Kafka topics tenderhub declares (never auto-created): one per aggregate type, the DLQ and the relay position."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiokafka import TopicPartition, errors
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from schema.events import AGGREGATE_TYPES
from schema.kafka_client import KafkaConnection, kafka_options
from schema.settings import Settings, SettingsError

log = logging.getLogger(__name__)

# Data topics keep the broker's default 1 MiB message cap; the DLQ takes 8 MiB so that an oversized event's
# record (id, size, hash, truncated sample) and a contract violation with its original row always fit.
DATA_MAX_MESSAGE_BYTES = 1_048_588
DLQ_MAX_MESSAGE_BYTES = 8 * 1024 * 1024


class TopicError(Exception):
    """The broker refused to create a declared topic."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TopicNames:
    """Where events go: a topic per aggregate type (prefix + type unless TENDERHUB_TOPIC_MAP says otherwise)."""

    data: dict[str, str]
    dlq: str
    position: str

    @classmethod
    def from_settings(cls, settings: Settings) -> TopicNames:
        unknown = set(settings.topic_map) - set(AGGREGATE_TYPES)
        if unknown:
            raise SettingsError(
                f"TENDERHUB_TOPIC_MAP names unknown aggregate types {sorted(unknown)}; known: {AGGREGATE_TYPES}"
            )
        p = settings.topic_prefix
        data = {agg: settings.topic_map.get(agg, f"{p}{agg}") for agg in AGGREGATE_TYPES}
        return cls(data=data, dlq=f"{p}dlq", position=f"{p}relay.position")


def topic_specs(settings: Settings, partitions: int = 6) -> list[TopicSpec]:
    names = TopicNames.from_settings(settings)
    # An acknowledged write (acks=all) is on two replicas before the relay moves on, once there are three.
    isr = {"min.insync.replicas": str(min_insync_replicas(settings.kafka_replication_factor))}
    specs = [
        TopicSpec(topic, partitions, {"max.message.bytes": str(DATA_MAX_MESSAGE_BYTES), **isr})
        for topic in names.data.values()
    ]
    specs.append(TopicSpec(names.dlq, 1, {"max.message.bytes": str(DLQ_MAX_MESSAGE_BYTES), **isr}))
    # The relay's committed position: one key per source, only the newest value matters. Compaction only cleans
    # closed segments: a segment rolls every 10 minutes (not the default 7 days), so the topic stays small.
    position = {"cleanup.policy": "compact", "segment.ms": str(10 * 60 * 1000), "min.cleanable.dirty.ratio": "0.1"}
    specs.append(TopicSpec(names.position, 1, {**position, **isr}))
    return specs


async def missing_topics(kafka: KafkaConnection, specs: list[TopicSpec]) -> list[str]:
    """The declared topics the broker does not have (relay and worker refuse to start without them)."""
    admin = AIOKafkaAdminClient(**kafka_options(kafka), request_timeout_ms=15000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
    finally:
        await admin.close()
    return sorted(s.name for s in specs if s.name not in existing)


def min_insync_replicas(replication: int) -> int:
    return 2 if replication >= 3 else 1


async def ensure_topics(kafka: KafkaConnection, specs: list[TopicSpec], replication: int | None = None) -> list[str]:
    """Create missing topics (at the settings' replication factor unless given; 1 for bare bootstrap servers);
    return the names created now. Existing topics are left as they are."""
    if replication is None:
        replication = 1 if isinstance(kafka, str) else kafka.kafka_replication_factor
    admin = AIOKafkaAdminClient(**kafka_options(kafka), request_timeout_ms=15000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        if not missing:
            return []
        response = await admin.create_topics(
            [NewTopic(s.name, s.partitions, replication, topic_configs=s.configs) for s in missing]
        )
    finally:
        await admin.close()
    created = []
    # The broker answers per topic; a failure is an error code in the response, not an exception.
    for topic, code, *rest in response.topic_errors:
        if code == 0:
            created.append(topic)
            log.info("created topic %s", topic)
        elif errors.for_code(code) is not errors.TopicAlreadyExistsError:
            message = rest[0] if rest else ""
            raise TopicError(f"cannot create topic {topic}: {errors.for_code(code).__name__} {message}")
    return created


async def delete_topics(kafka: KafkaConnection, prefixes: Sequence[str]) -> list[str]:
    """Delete every topic whose name starts with one of `prefixes` (a throwaway namespace's: a test, a fault run, a
    benchmark); return the names deleted."""
    if not prefixes or any(not p for p in prefixes):
        raise ValueError("delete_topics needs non-empty prefixes: an empty one would match every topic")
    admin = AIOKafkaAdminClient(**kafka_options(kafka), request_timeout_ms=30_000)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(tuple(prefixes))]
        if names:
            await admin.delete_topics(names)
        return names
    finally:
        await admin.close()


async def topic_partitions(kafka: KafkaConnection, topics: list[str]) -> list[TopicPartition]:
    """Every partition of those of `topics` that exist (a topic the broker does not know is left out)."""
    admin = AIOKafkaAdminClient(**kafka_options(kafka), request_timeout_ms=15_000)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    return sorted(
        TopicPartition(str(d["topic"]), int(p["partition"]))
        for d in described
        if not d.get("error_code")
        for p in d.get("partitions", ())
    )
