"""After the load: wait for quiescence, then check every link of the chain against MySQL.

Quiescence: no outbox row left unpublished, the workers idle (no event processed for `idle_s`), and `verify` finds
no drift; verify is repeated (the last batches may still be landing) until it is clean or the time is up, and the
last report is what counts. Then: every committed outbox event in Kafka (read_committed) exactly once, the derived
documents and keys expected / present / extra per family (verify's counts) and duplicated (a scan by natural key),
and the DLQ (relay and workers share it) empty: the load is valid, so a dead letter is lost derived data."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer
from pymongo import MongoClient

from cdc.bookkeeping import count_unpublished
from schema.kafka_client import kafka_options
from schema.mongo import READINESS_SCORES, TENDER_SUMMARIES, USER_ACTIVITY_LOGS
from schema.settings import Settings
from schema.topics import TopicNames
from streams.verify import VerifyReport, verify
from tenderhub.faults.fleet import Member

log = logging.getLogger(__name__)
Say = Callable[[str], None]


def outbox_ids(engine: sa.Engine) -> dict[int, str]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, event_type FROM integration_outbox"))
        return {int(r.id): str(r.event_type) for r in rows}


def unpublished(engine: sa.Engine) -> int:
    """Outbox rows no relay has recorded as published (row flags or runs, `cdc.bookkeeping`)."""
    conn = engine.raw_connection()
    try:
        cur = conn.cursor()
        try:
            return count_unpublished(cur)
        finally:
            cur.close()
    finally:
        conn.close()


@dataclass
class KafkaCheck:
    committed: int = 0
    records: int = 0
    once: int = 0
    missing: int = 0
    duplicated: int = 0
    foreign: int = 0
    dead_letters: int = 0
    examples: list[str] = field(default_factory=list)


async def read_all(settings: Settings, topics: Sequence[str], timeout_s: float = 300) -> list[tuple[str, bytes | None]]:
    """Every committed record on `topics` up to their current end (read_committed: the last stable offsets)."""
    consumer = AIOKafkaConsumer(
        *topics,
        **kafka_options(settings),
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    out: list[tuple[str, bytes | None]] = []
    deadline = time.monotonic() + timeout_s
    try:
        # Without a group every partition of the topics is assigned, once the metadata is in.
        while not consumer.assignment():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no partition of {list(topics)} assigned within {timeout_s:.0f} s")
            await asyncio.sleep(0.1)
        partitions = sorted(consumer.assignment())
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {list(topics)} back took over {timeout_s:.0f} s")
            batch = await consumer.getmany(timeout_ms=500, max_records=20_000)
            for tp, records in batch.items():
                out += [(tp.topic, r.value) for r in records]
    finally:
        await consumer.stop()
    return out


def check_kafka(settings: Settings, committed: dict[int, str], examples: int = 5) -> KafkaCheck:
    names = TopicNames.from_settings(settings)
    records = asyncio.run(read_all(settings, sorted(set(names.data.values()))))
    seen: Counter[int] = Counter()
    result = KafkaCheck(committed=len(committed), records=len(records))
    for topic, value in records:
        try:
            event_id = int(json.loads(value or b"null")["event_id"])
        except (ValueError, TypeError, KeyError) as exc:
            result.foreign += 1
            if len(result.examples) < examples:
                result.examples.append(f"{topic}: a record that is no envelope ({exc})")
            continue
        seen[event_id] += 1
    for event_id, n in seen.items():
        if event_id not in committed:
            result.foreign += n
            if len(result.examples) < examples:
                result.examples.append(f"event {event_id} in Kafka, not in the outbox")
        elif n > 1:
            result.duplicated += n - 1
            if len(result.examples) < examples:
                result.examples.append(f"event {event_id} in Kafka {n} times")
    result.once = sum(1 for event_id in committed if seen.get(event_id) == 1)
    missing = sorted(event_id for event_id in committed if event_id not in seen)
    result.missing = len(missing)
    if missing:
        result.examples.append(f"{len(missing)} committed events not in Kafka, e.g. {missing[:10]}")
    result.dead_letters = len(asyncio.run(read_all(settings, [names.dlq])))
    return result


def duplicated_documents(settings: Settings) -> dict[str, int]:
    """Documents minus distinct natural keys, per collection (unique indexes should make each 0; this counts)."""
    client: MongoClient[dict[str, Any]] = MongoClient(
        settings.mongo_url.get_secret_value(), serverSelectionTimeoutMS=10_000
    )
    try:
        db = client[settings.mongo_db]
        keys: dict[str, tuple[str, ...]] = {
            TENDER_SUMMARIES.name: ("tender_id",),
            READINESS_SCORES.name: ("team_id", "tender_id"),
            USER_ACTIVITY_LOGS.name: ("_id",),
        }
        out = {}
        for name, fields in keys.items():
            seen: Counter[tuple[Any, ...]] = Counter(
                tuple(d.get(f) for f in fields) for d in db[name].find({}, dict.fromkeys(fields, 1), batch_size=5000)
            )
            out[name] = sum(n - 1 for n in seen.values())
        return out
    finally:
        client.close()


def _agent_stats(w: Member) -> dict[str, dict[str, float]] | None:
    try:
        url = f"http://127.0.0.1:{w.port}/tenderhub/agents/"
        with urllib.request.urlopen(url, timeout=5) as resp:
            stats: dict[str, dict[str, float]] = json.loads(resp.read())
            return stats
    except (OSError, ValueError):
        return None


def worker_state(workers: Sequence[Member]) -> tuple[tuple[int, ...] | None, str]:
    """What the workers have done (starts, then per agent: batches, events, retries) and what they are busy with;
    the state is None while one does not answer or has a batch in flight. Equal twice over `idle_s` with nothing
    in flight means idle."""
    state: list[int] = [sum(w.starts for w in workers)]
    busy: list[str] = []
    for w in workers:
        stats = _agent_stats(w)
        if stats is None:
            busy.append(f"{w.name} not answering")
            continue
        for name, agent in sorted(stats.items()):
            if agent.get("in_flight"):
                n, seconds = agent["in_flight"], agent.get("in_flight_s", 0.0)
                busy.append(f"{w.name} {name}: {n:.0f} events in flight for {seconds:.0f} s")
            state += [int(agent.get(k, 0)) for k in ("batches", "events", "store_retries", "error_retries")]
    return (None if busy else tuple(state)), "; ".join(busy)


@dataclass
class Quiescence:
    reached: bool
    seconds: float
    verify_runs: int
    report: VerifyReport | None
    unpublished: int


def quiesce(
    settings: Settings, engine: sa.Engine, workers: Sequence[Member], say: Say, timeout_s: float, idle_s: float = 10
) -> Quiescence:
    start = time.monotonic()
    deadline = start + timeout_s
    left = unpublished(engine)
    while left and time.monotonic() < deadline:
        say(f"  waiting for the relay: {left} outbox rows unpublished")
        time.sleep(5)
        left = unpublished(engine)
    runs = 0
    report: VerifyReport | None = None
    while time.monotonic() < deadline:
        (last, busy), idle_since, told = worker_state(workers), time.monotonic(), time.monotonic()
        while (last is None or time.monotonic() - idle_since < idle_s) and time.monotonic() < deadline:
            time.sleep(2)
            now, busy = worker_state(workers)
            if now is None or now != last:
                last, idle_since = now, time.monotonic()
            if busy and time.monotonic() - told >= 30:
                say(f"  waiting for the workers: {busy}")
                told = time.monotonic()
        report = asyncio.run(verify(settings, examples=5))
        runs += 1
        left = unpublished(engine)
        if report.drift == 0 and left == 0:
            return Quiescence(True, time.monotonic() - start, runs, report, left)
        say(f"  verify run {runs}: {report.drift} drifted, {left} unpublished; the workers may still be landing")
    return Quiescence(False, time.monotonic() - start, runs, report, unpublished(engine))
