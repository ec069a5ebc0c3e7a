"""Kafka side of the relay: each batch of records and the relay position go out in ONE Kafka transaction, so a
crash aborts both; the committed position is read back from a compacted topic on start."""

from __future__ import annotations

import asyncio
import logging
import os
import socket

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka import errors as kafka_errors

from cdc.envelope import Record
from cdc.errors import CdcError, FencedError
from cdc.position import Position
from schema.kafka_client import KafkaConnection, kafka_options
from schema.topics import DLQ_MAX_MESSAGE_BYTES, topic_partitions

log = logging.getLogger(__name__)


class TransactionalPublisher:
    """One transactional producer. All relay instances of a source share its transactional id, so a standby that
    takes over fences the old instance: Kafka aborts its open transaction and rejects anything it sends later."""

    def __init__(
        self,
        kafka: KafkaConnection,
        transactional_id: str,
        position_topic: str,
        source_name: str,
        transaction_timeout_ms: int,
    ) -> None:
        self.kafka = kafka
        self.transactional_id = transactional_id
        self.position_topic = position_topic
        self.source_key = source_name.encode()
        self.transaction_timeout_ms = transaction_timeout_ms
        # Which process committed each position: for audits ("who was active when?") and the failover tests.
        self.instance = f"{socket.gethostname()}:{os.getpid()}".encode()
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            **kafka_options(self.kafka),
            transactional_id=self.transactional_id,
            enable_idempotence=True,
            acks="all",
            linger_ms=2,
            max_batch_size=512 * 1024,
            # DLQ records may exceed the data topics' 1 MiB cap (the DLQ topic allows more).
            max_request_size=DLQ_MAX_MESSAGE_BYTES + 64 * 1024,
            transaction_timeout_ms=self.transaction_timeout_ms,
            request_timeout_ms=30_000,
        )
        # start() initialises transactions: this fences any older producer with the same transactional id.
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    async def publish(self, records: list[Record], position: Position) -> None:
        """Send `records` and `position` atomically. Raises FencedError if another instance took over."""
        producer = self._producer
        assert producer is not None, "start() first"
        sent: list[asyncio.Future[object]] = []
        try:
            await producer.begin_transaction()
            for r in records:
                sent.append(await producer.send(r.topic, r.value, key=r.key, headers=r.headers))
            sent.append(
                await producer.send(
                    self.position_topic,
                    position.to_json(),
                    key=self.source_key,
                    headers=[("instance", self.instance)],
                )
            )
            await producer.commit_transaction()
        except (kafka_errors.ProducerFenced, kafka_errors.InvalidProducerEpoch) as exc:
            _consume_outcomes(sent)
            raise FencedError(
                f"transactional id {self.transactional_id} was taken over by another relay instance: {exc}"
            ) from exc
        except BaseException:
            _consume_outcomes(sent)
            await self._abort_quietly()
            raise

    async def _abort_quietly(self) -> None:
        producer = self._producer
        if producer is None:
            return
        try:
            await producer.abort_transaction()
        except Exception as exc:  # noqa: BLE001 - the caller restarts the producer and reloads the position anyway
            log.warning("abort after a failed publish also failed (%s); the producer will be recreated", exc)


def _consume_outcomes(sent: list[asyncio.Future[object]]) -> None:
    # The transaction failed as a whole (the caller reports why); per-record failures are part of that.
    for fut in sent:
        if fut.done() and not fut.cancelled():
            fut.exception()
        else:
            fut.add_done_callback(lambda f: f.cancelled() or f.exception())


# The first window of the position topic read back from its end (see `load_position_record`).
_POSITION_WINDOW = 1024


async def load_position(kafka: KafkaConnection, position_topic: str, source_name: str) -> Position | None:
    """The last COMMITTED position of `source_name` (read_committed: an aborted position is never seen)."""
    position, _ = await load_position_record(kafka, position_topic, source_name)
    return position


async def load_position_record(
    kafka: KafkaConnection, position_topic: str, source_name: str
) -> tuple[Position | None, int | None]:
    """The last committed position of `source_name` and its record's timestamp (ms since the epoch: when the relay
    committed it), or (None, None).

    Read from the tail backwards, in windows that grow fourfold (1,024 offsets, then 4,096, ...): the newest record
    of the source is almost always in the last window, so a restart does not read the whole topic. (Compaction keeps
    only the newest value per key, but only in closed segments: an active segment holds every position committed
    since it rolled, a million records after hours at a thousand commits a second.)"""
    key = source_name.encode()
    tp = TopicPartition(position_topic, 0)
    consumer = AIOKafkaConsumer(
        **kafka_options(kafka),
        isolation_level="read_committed",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        begin = (await consumer.beginning_offsets([tp]))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        deadline = asyncio.get_running_loop().time() + 60
        hi, span = end, _POSITION_WINDOW
        while hi > begin:
            lo = max(begin, hi - span)
            consumer.seek(tp, lo)
            newest: tuple[bytes, int] | None = None
            while await consumer.position(tp) < hi:
                if asyncio.get_running_loop().time() > deadline:
                    raise CdcError(f"could not read {position_topic} back from offset {end} to {lo} within 60 s")
                batch = await consumer.getmany(tp, timeout_ms=1000)
                for record in batch.get(tp, []):
                    if record.offset < hi and record.key == key and record.value is not None:
                        newest = record.value, record.timestamp
            if newest is not None:
                return Position.from_json(newest[0]), newest[1]
            hi, span = lo, span * 4
        return None, None
    finally:
        await consumer.stop()


async def max_published_source_seq(
    kafka: KafkaConnection, topics: list[str], tail: int = 64, timeout_s: float = 60
) -> int:
    """The highest `source_seq` header among the last `tail` committed records of each partition of `topics`
    (-1 if none): the floor for a relay that lost its position, so its numbering never goes backwards."""
    return await max_published_header(kafka, topics, "source_seq", tail, timeout_s)


async def max_published_header(
    kafka: KafkaConnection, topics: list[str], header: str, tail: int = 64, timeout_s: float = 60
) -> int:
    """The highest integer header `header` among the last `tail` committed records of each partition of `topics`
    (-1 if none)."""
    tps = await topic_partitions(kafka, topics)
    if not tps:
        return -1
    consumer = AIOKafkaConsumer(
        **kafka_options(kafka), isolation_level="read_committed", enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    try:
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        begins = await consumer.beginning_offsets(tps)
        todo = {tp for tp in tps if ends[tp] > begins[tp]}
        for tp in todo:
            consumer.seek(tp, max(begins[tp], ends[tp] - tail))
        highest = -1
        deadline = asyncio.get_running_loop().time() + timeout_s
        while todo:
            if asyncio.get_running_loop().time() > deadline:
                raise CdcError(f"could not read the tails of {sorted(t.topic for t in todo)} within {timeout_s} s")
            batch = await consumer.getmany(*todo, timeout_ms=500)
            for records in batch.values():
                for record in records:
                    for key, value in record.headers or ():
                        if key == header and value.isdigit():
                            highest = max(highest, int(value))
            for tp in list(todo):
                if await consumer.position(tp) >= ends[tp]:
                    todo.discard(tp)
        return highest
    finally:
        await consumer.stop()
