"""The relay's committed position is read back from the tail of its topic, in growing windows, on the real broker:
the newest record of the source wins wherever it lies, a tombstone never hides an older position, other sources'
records are skipped, and a source with no record has no position."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaProducer

from cdc.position import Position
from cdc.publisher import load_position_record
from schema.kafka_client import kafka_options
from schema.settings import Settings
from schema.topics import TopicSpec, ensure_topics


def test_the_newest_position_of_each_source_is_found_from_the_tail(settings: Settings) -> None:
    topic = f"test.position.{uuid.uuid4().hex[:10]}"

    async def scenario() -> None:
        await ensure_topics(settings, [TopicSpec(topic, 1, {"cleanup.policy": "compact"})])
        producer = AIOKafkaProducer(**kafka_options(settings), acks="all")
        await producer.start()
        try:
            # "early" writes only at the start: its newest record lies past two windows (1,024 and 4,096) back.
            for n in range(1, 4):
                await producer.send(topic, key=b"early", value=Position(f"0-1-{n}", n).to_json())
            batch = []
            for n in range(1, 6001):
                batch.append(producer.send(topic, key=b"busy", value=Position(f"0-1-{n}", n).to_json()))
            await asyncio.gather(*[await f for f in batch])
            await producer.send_and_wait(topic, key=b"busy", value=None)  # a tombstone after its newest position
            await producer.send_and_wait(topic, key=b"other", value=Position("0-1-7", 7).to_json())
        finally:
            await producer.stop()
        busy, busy_at = await load_position_record(settings, topic, "busy")
        early, _ = await load_position_record(settings, topic, "early")
        none, none_at = await load_position_record(settings, topic, "nobody")
        assert busy is not None and (busy.gtid, busy.seq) == ("0-1-6000", 6000) and busy_at is not None
        assert early is not None and (early.gtid, early.seq) == ("0-1-3", 3)
        assert (none, none_at) == (None, None)

    asyncio.run(scenario())
