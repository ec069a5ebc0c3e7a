"""`tenderhub replay`: rewind the workers' consumer group (to the beginning, an offset, or a time) and, from the
beginning, rebuild the derived stores: MongoDB collections and every Redis key of the catalogue are cleared first,
then the workers, started again, recompute everything from the topics. A rebuild refuses when retention has already
removed the oldest events of a data topic (`tenderhub rebuild` recomputes from MySQL instead). Workers must be
stopped: Kafka refuses to move the offsets of a group with live members, and a live worker would race the clearing."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pymongo import MongoClient

from schema.kafka_client import kafka_options
from schema.mongo import COLLECTIONS, ensure_collections
from schema.redis_keys import CATALOGUE, escape_glob
from schema.settings import Settings
from schema.topics import TopicNames
from sinks.redis import sync_client

log = logging.getLogger(__name__)


class ReplayError(Exception):
    """The replay cannot run as asked; the message says what to do."""


@dataclass(frozen=True)
class Target:
    """Where to rewind: 'earliest', an absolute offset for every partition, or a time (first offset at or after)."""

    earliest: bool = False
    offset: int | None = None
    time: dt.datetime | None = None

    @classmethod
    def parse(cls, text: str) -> Target:
        if text == "earliest":
            return cls(earliest=True)
        if text.startswith("offset:"):
            value = text.removeprefix("offset:")
            if not (value.isascii() and value.isdigit()):
                raise ReplayError(f"--to {text!r}: expected offset:N with N >= 0")
            return cls(offset=int(value))
        try:
            when = dt.datetime.fromisoformat(text)
        except ValueError:
            raise ReplayError(
                f"--to {text!r}: expected 'earliest', 'offset:N' or an ISO time such as 2026-01-05T10:00:00+00:00"
            ) from None
        return cls(time=when if when.tzinfo else when.replace(tzinfo=dt.UTC))

    def describe(self) -> str:
        if self.earliest:
            return "earliest"
        return f"offset:{self.offset}" if self.offset is not None else str(self.time)


@dataclass(frozen=True)
class ReplayReport:
    group: str
    offsets: dict[str, int]  # "topic[p]" -> the offset the group resumes at
    cleared_collections: list[str]
    cleared_keys: int


async def group_members(settings: Settings, group: str) -> int:
    admin = AIOKafkaAdminClient(**kafka_options(settings), request_timeout_ms=15000)
    await admin.start()
    try:
        described = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    members = 0
    for response in described:
        for entry in response.groups:
            # (error_code, group, state, protocol_type, protocol, members, ...)
            members += len(entry[5])
    return members


async def data_partitions(settings: Settings) -> list[TopicPartition]:
    """Every partition of the data topics (ReplayError when a topic does not exist)."""
    topics = sorted(TopicNames.from_settings(settings).data.values())
    admin = AIOKafkaAdminClient(**kafka_options(settings), request_timeout_ms=15000)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    missing = sorted(d["topic"] for d in described if d["error_code"] != 0 or not d["partitions"])
    if missing:
        raise ReplayError(f"topics {missing} do not exist: run `tenderhub migrate`")
    return sorted(TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"])


def truncated_history(first: dict[TopicPartition, int]) -> list[str]:
    """Partitions that no longer start at offset 0: retention (or delete-records) removed their oldest events, so a
    replay from the earliest offset would not see the whole history."""
    return [f"{tp.topic}[{tp.partition}]@{o}" for tp, o in sorted(first.items()) if o > 0]


async def plan_offsets(settings: Settings, target: Target) -> dict[TopicPartition, int]:
    """The offset each partition of the data topics resumes at."""
    tps = await data_partitions(settings)
    # read_committed: the end is the last stable offset, never inside a relay transaction still open.
    consumer = AIOKafkaConsumer(**kafka_options(settings), enable_auto_commit=False, isolation_level="read_committed")
    await consumer.start()
    try:
        first = await consumer.beginning_offsets(tps)
        end = await consumer.end_offsets(tps)
        if target.earliest:
            return dict(first)
        if target.offset is not None:
            return {tp: min(max(target.offset, first[tp]), end[tp]) for tp in tps}
        assert target.time is not None
        found = await consumer.offsets_for_times({tp: int(target.time.timestamp() * 1000) for tp in tps})
        return {tp: (found[tp].offset if found[tp] is not None else end[tp]) for tp in tps}
    finally:
        await consumer.stop()


async def group_positions(settings: Settings, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    """Where the workers' group resumes on each partition: its committed offset, or the first offset kept when that
    is later (a group with nothing committed starts at the earliest, `auto_offset_reset`)."""
    consumer = AIOKafkaConsumer(**kafka_options(settings), group_id=settings.worker_group, enable_auto_commit=False)
    await consumer.start()
    try:
        first = await consumer.beginning_offsets(tps)
        committed = {tp: await consumer.committed(tp) for tp in tps}
    finally:
        await consumer.stop()
    # Below the first offset kept, the events are gone (retention): the group effectively resumes there.
    return {tp: max(committed[tp] or 0, first[tp]) for tp in tps}


def moved_forward(planned: dict[TopicPartition, int], positions: dict[TopicPartition, int]) -> list[str]:
    """Partitions the plan moves past events the group has not handled yet: `topic[p] position -> planned`."""
    return [
        f"{tp.topic}[{tp.partition}] {positions[tp]} -> {o}" for tp, o in sorted(planned.items()) if o > positions[tp]
    ]


async def commit_offsets(settings: Settings, offsets: dict[TopicPartition, int]) -> None:
    # A group without live members accepts commits from a consumer with manually assigned partitions.
    consumer = AIOKafkaConsumer(**kafka_options(settings), group_id=settings.worker_group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit(offsets)
    finally:
        await consumer.stop()


def clear_stores(settings: Settings) -> tuple[list[str], int]:
    """Drop the derived MongoDB collections (recreated empty, the capped one capped) and delete every Redis key of
    the catalogue under this deployment's prefix."""
    client: MongoClient[dict[str, object]] = MongoClient(
        settings.mongo_url.get_secret_value(), serverSelectionTimeoutMS=10000
    )
    try:
        db = client[settings.mongo_db]
        dropped = []
        for spec in COLLECTIONS:
            db.drop_collection(spec.name)
            dropped.append(spec.name)
        ensure_collections(db, settings)
    finally:
        client.close()
    r = sync_client(settings, socket_timeout=10)
    deleted = 0
    try:
        prefix = settings.redis_key_prefix
        for family in CATALOGUE:
            keys = list(r.scan_iter(match=escape_glob(prefix) + family.glob(), count=1000))
            for start in range(0, len(keys), 500):
                deleted += int(r.delete(*keys[start : start + 500]))
    finally:
        r.close()
    return dropped, deleted


async def replay(
    settings: Settings,
    target: Target,
    *,
    rebuild: bool,
    forward: bool = False,
    say: Callable[[str], None] = log.info,
) -> ReplayReport:
    if rebuild and not target.earliest:
        raise ReplayError("--rebuild clears the stores, so it must replay everything: use it with --to earliest")
    members = await group_members(settings, settings.worker_group)
    if members:
        raise ReplayError(
            f"consumer group {settings.worker_group!r} has {members} live member(s): stop every `tenderhub worker` "
            "of this deployment first (Kafka refuses to move a live group's offsets)"
        )
    planned = await plan_offsets(settings, target)
    if not forward and not rebuild:
        # A replay goes back. An offset past the end or a time in the future (a mistyped year) would skip every
        # event the workers have not handled yet, and their derived data would be missing until a rebuild.
        ahead = moved_forward(planned, await group_positions(settings, list(planned)))
        if ahead:
            raise ReplayError(
                f"--to {target.describe()} moves the group forward past events its workers have not handled "
                f"({', '.join(ahead[:6])}{' ...' if len(ahead) > 6 else ''}); they would never reach the derived "
                "stores. Nothing was changed. To skip them on purpose, add --forward"
            )
    if rebuild:
        # beginning_offsets of the data topics, as planned for --to earliest: a partition that does not start at 0
        # lost events to retention, and clearing the stores then would lose their derived data for good.
        lost = truncated_history(planned)
        if lost:
            raise ReplayError(
                f"the data topics no longer hold the whole history (first offsets {', '.join(lost[:6])}"
                f"{' ...' if len(lost) > 6 else ''}): a replay would rebuild only what retention kept. Nothing was "
                "cleared. Rebuild from MySQL instead: `tenderhub rebuild --yes` (stores recomputed from the source "
                "of truth, versions the stream continues from), then start the workers"
            )
    cleared: tuple[list[str], int] = ([], 0)
    if rebuild:
        cleared = clear_stores(settings)
        say(f"cleared MongoDB collections {cleared[0]} and {cleared[1]} Redis keys")
    await commit_offsets(settings, planned)
    offsets = {f"{tp.topic}[{tp.partition}]": o for tp, o in sorted(planned.items())}
    say(f"group {settings.worker_group} rewound: " + ", ".join(f"{k}={v}" for k, v in offsets.items()))
    return ReplayReport(settings.worker_group, offsets, cleared[0], cleared[1])
