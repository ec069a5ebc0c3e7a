"""The stream workers' Kafka consumer: batches read straight from Kafka and handed to the agents' batch runners.

Faust runs the worker (its lifecycle, the web view, the leader's timers, the DLQ producer), but the data topics are
not read through Faust's per-message streams: a py-spy profile of the spend agent showed about 45 % of the worker's
CPU in Faust's message routing, acknowledgement bookkeeping, the event loop's wake-ups for it and its consumer thread,
and batches of 235 events on average where 1,000 were allowed (bench/README.md). One aiokafka consumer per worker
reads every topic the chosen agents take and hands each batch to them:

- **read_committed**: events of relay transactions that aborted (a relay killed mid-batch) are never seen;
- **at least once**: offsets are committed only for events every agent has handled or dead-lettered (the runner's
  policy, streams/batch.py), at most every `COMMIT_INTERVAL_S`, when partitions are revoked and at stop; what is
  committed is the consumer's position, so transaction markers after the last event are committed past too, but
  never past a record fetched and not yet handled;
- **one batch in flight**: a batch goes to all the agents at once and the next is read when all are done; a
  rebalance waits for the batch in flight before its partitions are committed and given up;
- **stop (SIGTERM)**: the batch in flight finishes, its offsets are committed, then the consumer leaves the group; a
  batch that cannot finish within `drain_timeout_s` (a store down) exits the process without committing it
  (`EXIT_STORE_DOWN_AT_STOP`), so the next worker gets it again.

Its consumer group is `TENDERHUB_WORKER_GROUP` (the data topics' offsets, which `tenderhub replay` rewinds); the Faust
app that hosts it uses its own group, `<group>-control`, for the leader election of timers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import (
    CommitFailedError,
    ConsumerStoppedError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
)
from mode import Service

from schema.kafka_client import kafka_options
from schema.settings import Settings
from streams.batch import EXIT_STORE_DOWN_AT_STOP, BatchRunner

log = logging.getLogger(__name__)

ISOLATION_LEVEL = "read_committed"
COMMIT_INTERVAL_S = 1.0
# A member that stops heartbeating (SIGKILL) is replaced after `worker_session_timeout_ms` (60 s by default, as Faust
# had it); heartbeats go at least three times per session. A batch may take long (a summary model on a slow machine)
# without the member being thrown out of the group: heartbeats do not wait for batches.
HEARTBEAT_INTERVAL_MS = 3_000
MAX_POLL_INTERVAL_MS = 1_000_000
# Largest fetch per partition: a whole data-topic record (1 MiB) several times over.
MAX_PARTITION_FETCH_BYTES = 4 * 1024 * 1024


class Record:
    """One Kafka record as the batch runner reads it (`streams.batch.RawEvent`: key, value, and the message's topic,
    partition and offset)."""

    __slots__ = ("key", "offset", "partition", "topic", "value")

    def __init__(self, record: ConsumerRecord[Any, Any]) -> None:
        self.key, self.value = record.key, record.value
        self.topic, self.partition, self.offset = record.topic, record.partition, record.offset

    @property
    def message(self) -> Record:
        return self


@dataclass(frozen=True)
class Route:
    """An agent's runner and the topics it reads."""

    runner: BatchRunner
    topics: frozenset[str]


def make_consumer(settings: Settings) -> AIOKafkaConsumer:
    """The worker's consumer, not started: group `worker_group`, read_committed, offsets committed by the worker,
    the broker holding an empty fetch at most `worker_fetch_max_wait_ms` (Faust's 1,500 ms paused agents up to 1.5 s
    at 1,000 events/s; bench/README.md)."""
    return AIOKafkaConsumer(
        **kafka_options(settings),
        group_id=settings.worker_group,
        client_id=f"{settings.worker_group}-worker",
        isolation_level=ISOLATION_LEVEL,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.worker_fetch_max_wait_ms,
        max_partition_fetch_bytes=MAX_PARTITION_FETCH_BYTES,
        session_timeout_ms=settings.worker_session_timeout_ms,
        # A JoinGroup is answered once the rebalance ends, up to a session later: the request must outlast it.
        request_timeout_ms=max(40_000, settings.worker_session_timeout_ms + 5_000),
        heartbeat_interval_ms=heartbeat_ms(settings),
        max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
    )


def heartbeat_ms(settings: Settings) -> int:
    """Heartbeats at least three times per session, and no more often than every 3 s."""
    return min(HEARTBEAT_INTERVAL_MS, settings.worker_session_timeout_ms // 3)


def _redeliverable(exc: KafkaError) -> bool:
    """A commit failure that only means redelivery: the group rebalanced without this member, or the coordinator
    was unreachable or busy."""
    return isinstance(exc, CommitFailedError | KafkaConnectionError | KafkaTimeoutError) or bool(exc.retriable)


def control_group(group: str) -> str:
    """The consumer group of the Faust app hosting the consumer (leader election only). Its topic (Faust's
    `<app id>-__assignor-__leader`) starts with `<group>-`, as cleanups of a group's topics expect."""
    return f"{group}-control"


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: BatchConsumer) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        await self._owner.partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        self._owner.partitions_assigned(assigned)


class BatchConsumer(Service):
    """Reads the routes' topics in batches and runs every route's runner on its part of each batch."""

    def __init__(self, settings: Settings, routes: Sequence[Route], *, drain_timeout_s: float = 120.0) -> None:
        super().__init__()
        self._settings = settings
        self._routes = list(routes)
        self._topics = sorted(set().union(*(r.topics for r in self._routes)))
        self._drain_timeout_s = drain_timeout_s
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()  # held while a batch is in flight and while offsets are committed
        self._pending: dict[TopicPartition, int] = {}  # first offset of each partition's fetched, unhandled records
        self._seen: set[TopicPartition] = set()  # partitions with events handled since they were assigned
        self._committed: dict[TopicPartition, int] = {}
        self.commits = 0  # offset commits made (for the metrics)
        self._last_commit = time.monotonic()
        self._stopping = False

    @property
    def topics(self) -> list[str]:
        return list(self._topics)

    async def on_start(self) -> None:
        consumer = make_consumer(self._settings)
        consumer.subscribe(self._topics, listener=_Listener(self))
        await consumer.start()
        self._consumer = consumer
        self.add_future(self._run(consumer))

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        within_ms, most = self._settings.worker_batch_within_ms, self._settings.worker_batch_max
        while not self._stopping:
            try:
                batch = await consumer.getmany(timeout_ms=within_ms, max_records=most)
            except ConsumerStoppedError:
                return
            # Fetched is not handled: until the batch is, a commit stops at its first record (the consumer's
            # position is already past it). Set before any await, so no commit can slip in between.
            self._pending = {tp: records[0].offset for tp, records in batch.items() if records}
            if self._stopping:
                return
            async with self._lock:
                if batch:
                    # Shielded: a cancellation never abandons a batch half handled.
                    await asyncio.shield(self._handle(batch))
                    self._seen.update(batch)
                self._pending = {}
                if time.monotonic() - self._last_commit >= COMMIT_INTERVAL_S:
                    await self._commit(consumer, self._seen)

    async def _handle(self, batch: dict[TopicPartition, list[ConsumerRecord[Any, Any]]]) -> None:
        records = [Record(r) for rs in batch.values() for r in rs]
        work = []
        for route in self._routes:
            mine = [r for r in records if r.topic in route.topics]
            if mine:
                work.append(route.runner.process(mine))
        await asyncio.gather(*work)

    async def _commit(self, consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition]) -> None:
        """Commit where `partitions` stand, where that moved since the last commit: the consumer's position (past
        everything handled and past transaction markers the fetcher skipped), or the first record of a batch fetched
        but not handled yet."""
        self._last_commit = time.monotonic()
        assigned = consumer.assignment()
        offsets = {}
        for tp in partitions:
            if tp not in assigned:
                continue
            offset = self._pending.get(tp)
            if offset is None:
                offset = await consumer.position(tp)
            if self._committed.get(tp) != offset:
                offsets[tp] = offset
        if offsets:
            try:
                await consumer.commit(offsets)
            except KafkaError as exc:
                if not _redeliverable(exc):
                    raise  # refused for good (authorization): the worker stops, as for any store refusing it
                # The group went on without this member (its session expired while the coordinator's broker was
                # down, say) or the coordinator cannot take the commit now. Nothing is lost: the events since the
                # last commit are redelivered to whoever owns the partitions, and every agent is retry-safe. The
                # consumer rejoins by itself; a worker that stopped here would leave its partitions idle instead.
                log.warning(
                    "offset commit refused (%s: %s): the events since the last commit are redelivered",
                    type(exc).__name__,
                    str(exc).splitlines()[0][:200],
                )
                return
            self._committed.update(offsets)
            self.commits += 1

    def lag(self) -> dict[tuple[str, int], int]:
        """Per assigned partition this worker has committed on: events between its committed offset and the end the
        broker last reported (the last stable offset, as a read_committed consumer sees it)."""
        consumer = self._consumer
        if consumer is None:
            return {}
        out = {}
        for tp in consumer.assignment():
            end, start = consumer.last_stable_offset(tp), self._committed.get(tp)
            if end is not None and start is not None:
                out[(tp.topic, tp.partition)] = max(end - start, 0)
        return out

    async def partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        # Called by aiokafka before the group rebalances: the batch in flight finishes first (the lock), so what is
        # committed here was handled, and the next owner starts right after it.
        async with self._lock:
            if self._consumer is not None:
                await self._commit(self._consumer, [tp for tp in revoked if tp in self._seen])
            self._seen.difference_update(revoked)
            for tp in revoked:
                self._committed.pop(tp, None)
        log.info("partitions revoked: %s", _names(revoked))

    def partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        log.info("partitions assigned: %s", _names(assigned))

    async def on_stop(self) -> None:
        self._stopping = True
        consumer, self._consumer = self._consumer, None
        if consumer is None:
            return
        try:
            await asyncio.wait_for(self._lock.acquire(), timeout=self._drain_timeout_s)
        except TimeoutError:
            log.critical(
                "the batch in flight did not finish within %.0f s of stopping (a store is down?); exiting without "
                "committing it: it is redelivered when a worker starts again",
                self._drain_timeout_s,
            )
            logging.shutdown()
            os._exit(EXIT_STORE_DOWN_AT_STOP)
        try:
            await self._commit(consumer, self._seen)
        except Exception:
            log.exception("committing at stop failed: the events of the last second are redelivered")
        finally:
            self._lock.release()
            await consumer.stop()


def _names(tps: Sequence[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(tps)) or "none"
