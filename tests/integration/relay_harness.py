"""Test helpers around the real relay (run through `tenderhub.processes`): read what it published, restart it at
random moments, run a writer in a thread."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tenderhub.processes import RelayProcess


def kill_repeatedly(
    relay: RelayProcess, rng: random.Random, while_alive: threading.Thread, at_least: int, pause_s: tuple[float, float]
) -> int:
    """SIGKILL and restart the relay at random moments, at least `at_least` times and until the writer is done."""
    kills = 0
    while kills < at_least or while_alive.is_alive():
        time.sleep(rng.uniform(*pause_s))
        relay.kill()
        kills += 1
        relay.start()
    return kills


@dataclass(frozen=True)
class Consumed:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: dict[str, Any]
    headers: dict[str, bytes]


async def consume(
    bootstrap: str,
    topics: Iterable[str],
    until: int,
    timeout: float = 60,
    isolation: str = "read_committed",
    settle_s: float = 1.0,
) -> list[Consumed]:
    """Everything on `topics` from the start, until `until` records arrived (then `settle_s` more, to catch
    duplicates) or `timeout`."""
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        isolation_level=isolation,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    out: list[Consumed] = []
    deadline = time.monotonic() + timeout
    settled_at: float | None = None
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300, max_records=10_000)
            for tp, records in batch.items():
                for r in records:
                    out.append(
                        Consumed(
                            tp.topic, tp.partition, r.offset, r.key, json.loads(r.value or b"null"), dict(r.headers)
                        )
                    )
            if len(out) >= until:
                settled_at = settled_at or time.monotonic()
                if time.monotonic() - settled_at >= settle_s:
                    break
    finally:
        await consumer.stop()
    return out


def run(coro: Any) -> Any:
    return asyncio.run(coro)


class Writer(threading.Thread):
    """Runs `fn` in a thread and hands its result (or its exception) back to the test through `result()`."""

    def __init__(self, fn: Any) -> None:
        super().__init__()
        self.fn = fn
        self.value: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.value = self.fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread by result()
            self.error = exc

    def result(self) -> Any:
        self.join()
        if self.error is not None:
            raise self.error
        return self.value


async def produce(bootstrap: str, records: list[tuple[str, bytes | None, bytes]]) -> None:
    """Write (topic, key, value) records straight to Kafka, one at a time, each acknowledged by every replica."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=2 * 1024 * 1024)
    await producer.start()
    try:
        for topic, key, value in records:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()
