"""`tenderhub dlq list | show | replay`: read the dead-letter topic and send dead-lettered events back.

Two stages write dead letters (one topic, one partition, so an offset names a letter):

- the relay, for an outbox row that breaks the event contract or is too large for Kafka: the letter holds the row
  (`row`: its columns and payload text, cut at 64 KiB) or, when too large, its size, hash and a sample;
- a worker, for an event an agent could not take (not decodable, a contract break, a store refusing its document):
  the letter holds the agent, the origin (`topic[partition]@offset`) and the Kafka value as it came, or, when that
  is too large to quote, its size, SHA-256 and a sample.

Replay, after the fix (a producer corrected, an agent fixed, the contract extended), sends each chosen letter's event
back to its data topic:

- a worker's letter: its value as it came, with its key, to the topic it came from;
- a relay's letter: its row checked again against the contract of this version and, if it passes now, published as
  the relay would have published it (same envelope, same `source_seq`). A row that still breaks it is not sent.

Every agent is idempotent and version-guarded by `source_seq`, so a replayed event that other agents already handled
changes nothing there, and it never overwrites what a newer event of the same aggregate produced. Letters that hold
only a hash and a sample cannot be replayed: the event has to be written to the outbox again. Replayed records carry
the header `replayed_from_dlq` (the letter's offset).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from cdc.envelope import OutboxRow, to_record
from schema.checked import whole
from schema.kafka_client import KafkaConnection, kafka_options
from schema.topics import DATA_MAX_MESSAGE_BYTES, TopicNames, topic_partitions

_READ_TIMEOUT_S = 30.0


class DlqError(ValueError):
    """A DLQ command cannot do what was asked (an offset with no letter, a DLQ of several partitions)."""


@dataclass(frozen=True)
class Letter:
    offset: int
    at: str  # when it was dead-lettered (the record's timestamp, UTC)
    stage: str  # "relay" or "worker"
    agent: str | None  # the worker's agent
    event_id: int | None
    reason: str
    key: bytes | None
    body: dict[str, Any]  # the letter as written

    def summary(self) -> dict[str, Any]:
        return {
            "offset": self.offset,
            "at": self.at,
            "stage": self.stage,
            "agent": self.agent,
            "event_id": self.event_id,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Replay:
    """What replaying one letter sends (topic, key, value, headers), or why it cannot be replayed."""

    letter: Letter
    topic: str | None = None
    key: bytes | None = None
    value: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()
    refused: str | None = None


def parse_letter(offset: int, timestamp_ms: int, key: bytes | None, value: bytes | None) -> Letter:
    at = dt.datetime.fromtimestamp(timestamp_ms / 1000, dt.UTC).isoformat(timespec="milliseconds")
    try:
        body = json.loads(value or b"")
    except ValueError as exc:
        body = {"unreadable": f"{exc}", "value": (value or b"")[:2048].decode("utf-8", "replace")}
    if not isinstance(body, dict):
        body = {"unreadable": "not a JSON object", "value": str(body)[:2048]}
    event_id = body.get("event_id")
    return Letter(
        offset=offset,
        at=at,
        stage="worker" if body.get("stage") == "worker" else "relay",
        agent=body.get("agent") if isinstance(body.get("agent"), str) else None,
        event_id=event_id if whole(event_id) else None,
        reason=str(body.get("reason") or body.get("unreadable") or "(no reason given)"),
        key=key,
        body=body,
    )


def plan_replay(letter: Letter, topics: TopicNames) -> Replay:
    """What replaying `letter` would send, checked against this version's contract and the topic names."""
    marker = ("replayed_from_dlq", str(letter.offset).encode())
    body = letter.body
    if letter.stage == "worker":
        origin = body.get("origin")
        topic = origin.get("topic") if isinstance(origin, dict) else None
        if topic not in set(topics.data.values()):
            return Replay(letter, refused=f"its origin topic {str(topic)[:80]!r} is not a data topic of this pipeline")
        if isinstance(body.get("value"), str):
            value = body["value"].encode()
        elif isinstance(body.get("value_hex"), str):
            value = bytes.fromhex(body["value_hex"])
        else:
            return Replay(letter, refused=_ONLY_A_HASH)
        key = body.get("key")
        return Replay(letter, topic, key.encode() if isinstance(key, str) else None, value, (marker,))
    row = body.get("row")
    if not isinstance(row, dict):
        return Replay(letter, refused=_ONLY_A_HASH)
    if row.get("payload_truncated"):
        return Replay(letter, refused="its payload was cut at 64 KiB in the letter: write the event again")
    try:
        outbox_row = OutboxRow(
            id=int(row["id"]),
            event_type=str(row["event_type"]),
            aggregate_type=str(row["aggregate_type"]),
            aggregate_id=str(row["aggregate_id"]),
            schema_version=int(row["schema_version"]),
            payload=str(row["payload"]),
            created_at=_naive_utc(row.get("created_at")),
            txn_seq=0,
            row_index=0,
            source_seq=int(body["source_seq"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        return Replay(letter, refused=f"its row cannot be read back: {type(exc).__name__}: {exc}")
    record = to_record(outbox_row, topics)
    if record.dlq_reason is not None:
        return Replay(letter, refused=f"the row still breaks the contract: {record.dlq_reason}")
    headers = (*((k, v) for k, v in record.headers if k != "source_pos"), marker)
    return Replay(letter, record.topic, record.key, record.value, headers)


_ONLY_A_HASH = "the letter holds only the event's size, hash and a sample (it was too large): write the event again"


def _naive_utc(text: object) -> dt.datetime | None:
    if not isinstance(text, str):
        return None
    parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed.astimezone(dt.UTC).replace(tzinfo=None) if parsed.tzinfo else parsed


class DlqReader:
    """Reads the DLQ topic (read_committed: a letter of an aborted relay transaction never shows)."""

    def __init__(self, kafka: KafkaConnection, topic: str) -> None:
        self._kafka = kafka
        self._topic = topic
        self._tp = TopicPartition(topic, 0)

    async def __aenter__(self) -> DlqReader:
        partitions = [tp.partition for tp in await topic_partitions(self._kafka, [self._topic])]
        if not partitions:
            raise DlqError(f"the DLQ topic {self._topic} does not exist (run `tenderhub migrate`)")
        if partitions != [0]:
            raise DlqError(f"the DLQ topic {self._topic} has partitions {partitions}; tenderhub declares one")
        # Made here, not in __init__: a consumer never started (the broker down above) is reported unclosed.
        self._consumer = AIOKafkaConsumer(
            **kafka_options(self._kafka), isolation_level="read_committed", enable_auto_commit=False, group_id=None
        )
        try:
            await self._consumer.start()
        except BaseException:
            await self._consumer.stop()  # closes what start() opened before it failed
            raise
        self._consumer.assign([self._tp])
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._consumer.stop()

    async def bounds(self) -> tuple[int, int]:
        """(first offset kept, end offset)."""
        begin = (await self._consumer.beginning_offsets([self._tp]))[self._tp]
        end = (await self._consumer.end_offsets([self._tp]))[self._tp]
        return begin, end

    async def count(self) -> int:
        """Dead letters kept (the topic's retention may have removed older ones; transaction markers count too, so
        this is an upper bound for a relay that dead-lettered inside its transactions)."""
        begin, end = await self.bounds()
        return end - begin

    async def read(self, *, last: int | None = None, offsets: Sequence[int] | None = None) -> list[Letter]:
        """The last `last` letters, the letters at `offsets`, or (neither) all of them, in offset order."""
        begin, end = await self.bounds()
        if offsets is not None:
            wanted = set(offsets)
            missing = sorted(o for o in wanted if not begin <= o < end)
            if missing:
                raise DlqError(f"no dead letter at offset {missing[0]} (the DLQ holds offsets {begin} to {end - 1})")
            start = min(wanted, default=end)
        else:
            wanted = None
            start = begin if last is None else max(begin, end - last)
        out: list[Letter] = []
        if start >= end:
            return out
        self._consumer.seek(self._tp, start)
        stop_at = end if wanted is None else max(wanted) + 1
        while await self._consumer.position(self._tp) < stop_at:
            batch = await self._consumer.getmany(self._tp, timeout_ms=int(_READ_TIMEOUT_S * 1000))
            records = batch.get(self._tp, [])
            if not records and await self._consumer.position(self._tp) < stop_at:
                # Only transaction markers were left, or the broker is not answering: the position tells which.
                position = await self._consumer.position(self._tp)
                if position >= stop_at:
                    break
                raise DlqError(f"could not read the DLQ up to offset {stop_at} within {_READ_TIMEOUT_S:.0f} s")
            for r in records:
                if r.offset < stop_at and (wanted is None or r.offset in wanted):
                    out.append(parse_letter(r.offset, r.timestamp, r.key, r.value))
        if wanted is not None:
            found = {letter.offset for letter in out}
            absent = sorted(wanted - found)
            if absent:
                raise DlqError(f"offset {absent[0]} holds no dead letter (a transaction marker)")
        return out


async def replay(kafka: KafkaConnection, plans: Sequence[Replay]) -> int:
    """Send every replayable plan and wait for the broker's acknowledgement of each; return how many were sent."""
    sendable = [p for p in plans if p.refused is None]
    if not sendable:
        return 0
    producer = AIOKafkaProducer(
        **kafka_options(kafka),
        acks="all",
        enable_idempotence=True,
        max_request_size=DATA_MAX_MESSAGE_BYTES + 64 * 1024,
    )
    await producer.start()
    try:
        for plan in sendable:
            await producer.send_and_wait(plan.topic or "", plan.value, key=plan.key, headers=list(plan.headers))
    finally:
        await producer.stop()
    return len(sendable)
