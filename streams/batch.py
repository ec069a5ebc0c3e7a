"""The batch loop every agent runs: take events from its stream, decode them, hand them to the agent's handler,
retry, dead-letter what can never succeed, and only then let Faust acknowledge the batch.

Policy (sinks/errors.py has the sink side):
- a value that breaks the contract -> DLQ at once, with the reason;
- `TransientSinkError` (a store is down) -> back off and retry the SAME batch until it succeeds: nothing is
  acknowledged past it, so nothing is lost and the partition resumes where it stopped;
- `PermanentSinkError` naming an event -> that event to the DLQ, the rest retried;
- any other exception -> each event of the batch is retried alone (`worker_event_attempts` times); those still
  failing go to the DLQ with the error, the others are done: one poison event never stops its partition.
Handlers must be idempotent: a batch may be handled again after a retry, a crash or a rebalance.

Faust's `take()` acknowledges a batch in a `finally` block once the loop body ends, however it ends; so nothing may
escape the body, and a cancellation (SIGTERM, rebalance) waits for the batch in flight to finish first.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from schema.events import ContractError
from sinks.errors import PermanentSinkError, TransientSinkError
from sinks.retry import backoff_delay
from streams.records import Event, decode

log = logging.getLogger(__name__)

# Exit status when the worker must stop while a store is still down: exiting without acknowledging keeps the batch
# for the next worker (like a crash, which the fault tests prove safe); acknowledging it would lose it.
EXIT_STORE_DOWN_AT_STOP = 75
# First pause of the endless retry while a store is down (doubling up to worker_store_retry_max_s).
_BASE_DELAY_S = 0.4


@dataclass(frozen=True)
class Incoming:
    """One decoded event and where it came from (for logs and the DLQ)."""

    event: Event
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class DeadLetter:
    agent: str
    reason: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    event_id: int | None = None

    def to_json(self) -> bytes:
        value = self.value or b""
        try:
            text: str | None = value.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        return json.dumps(
            {
                "stage": "worker",
                "agent": self.agent,
                "reason": self.reason,
                "event_id": self.event_id,
                "origin": {"topic": self.topic, "partition": self.partition, "offset": self.offset},
                "key": None if self.key is None else self.key.decode("utf-8", "replace"),
                "value": text,
                "value_hex": value.hex() if text is None else None,
                "at": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            },
            ensure_ascii=False,
        ).encode()


class DeadLetterSink(Protocol):
    async def send(self, letter: DeadLetter) -> None:
        """Publish and wait for the broker's acknowledgement."""


class RawEvent(Protocol):
    """What the runner needs of a Faust event (faust.types.EventT)."""

    @property
    def key(self) -> Any: ...

    @property
    def value(self) -> Any: ...

    @property
    def message(self) -> Any: ...


Handler = Callable[[Sequence[Incoming]], Awaitable[None]]


def refused_event(exc: PermanentSinkError, positions: Sequence[int] | None) -> PermanentSinkError:
    """A sink's refusal re-aimed at the handler's batch: `positions[i]` is the batch position of the event that
    produced document i. Without that map (documents derived from several events, e.g. scores) the index is dropped
    and the runner finds the offending event by handling the batch one event at a time."""
    index = None
    if positions is not None and exc.index is not None and 0 <= exc.index < len(positions):
        index = positions[exc.index]
    return PermanentSinkError(str(exc), index=index, key=exc.key, code=exc.code)


@dataclass
class BatchStats:
    batches: int = 0
    events: int = 0
    dead_letters: int = 0
    store_retries: int = 0
    last_batch_s: float = 0.0
    extra: dict[str, int] = field(default_factory=dict)


class BatchRunner:
    """Runs one agent's handler over batches with the policy above."""

    def __init__(
        self,
        agent: str,
        handler: Handler,
        dead_letters: DeadLetterSink,
        *,
        event_attempts: int = 3,
        store_retry_max_s: float = 30.0,
        drain_timeout_s: float = 120.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.agent = agent
        self._handler = handler
        self._dead_letters = dead_letters
        self._event_attempts = event_attempts
        self._store_retry_max_s = store_retry_max_s
        self._drain_timeout_s = drain_timeout_s
        self._sleep = sleep
        self.stats = BatchStats()

    async def run(self, batches: AsyncIterator[Sequence[RawEvent]]) -> None:
        """The agent body: `await runner.run(stream.take_events(n, within))`."""
        async for raw_events in batches:
            task = asyncio.ensure_future(self.process(raw_events))
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                await self._drain(task)
                raise

    async def _drain(self, task: asyncio.Future[None]) -> None:
        # Stopping (SIGTERM) or rebalancing: let the batch in flight finish, so the acks that take() sends when we
        # leave are true; a repeated cancel keeps waiting for the same task.
        log.info("%s: stopping; finishing the batch in flight before its offsets are committed", self.agent)
        deadline = time.monotonic() + self._drain_timeout_s
        while not task.done():
            left = deadline - time.monotonic()
            if left <= 0:
                log.critical(
                    "%s: the batch in flight did not finish within %.0f s of stopping (a store is down?); exiting "
                    "without committing it: it is redelivered when a worker starts again",
                    self.agent,
                    self._drain_timeout_s,
                )
                logging.shutdown()
                os._exit(EXIT_STORE_DOWN_AT_STOP)
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=left)
            except asyncio.CancelledError:
                continue
            except TimeoutError:
                continue
        if task.exception() is not None:
            log.error("%s: batch in flight failed while stopping: %r", self.agent, task.exception())

    async def process(self, raw_events: Sequence[RawEvent]) -> None:
        """Decode, handle, retry and dead-letter one batch. Never raises (but for cancellation)."""
        started = time.perf_counter()
        good: list[Incoming] = []
        for raw in raw_events:
            msg = raw.message
            try:
                good.append(Incoming(decode(raw.value), msg.topic, msg.partition, msg.offset))
            except ContractError as exc:
                await self._dead_letter(raw, None, exc.reason)
        if good:
            await self._handle(good)
        self.stats.batches += 1
        self.stats.events += len(raw_events)
        self.stats.last_batch_s = time.perf_counter() - started

    async def _handle(self, items: list[Incoming]) -> None:
        pending = list(items)
        while pending:
            try:
                await self._with_store_retry(pending)
                return
            except PermanentSinkError as exc:
                if exc.index is None or not 0 <= exc.index < len(pending):
                    break
                bad = pending.pop(exc.index)
                await self._dead_letter_incoming(bad, f"sink refused the event: {exc}")
            except Exception as exc:  # noqa: BLE001 - any bug in one event must not stop the partition
                log.warning(
                    "%s: batch of %d failed (%s: %s); handling its events one by one",
                    self.agent,
                    len(pending),
                    type(exc).__name__,
                    exc,
                )
                break
        for item in pending:
            await self._handle_alone(item)

    async def _handle_alone(self, item: Incoming) -> None:
        error: BaseException | None = None
        for attempt in range(1, self._event_attempts + 1):
            try:
                await self._with_store_retry([item])
                return
            except PermanentSinkError as exc:
                error = exc
                break
            except Exception as exc:  # noqa: BLE001 - counted, logged and dead-lettered below
                error = exc
                log.warning(
                    "%s: event %s (%s[%d]@%d) failed, attempt %d of %d: %s: %s",
                    self.agent,
                    item.event.event_id,
                    item.topic,
                    item.partition,
                    item.offset,
                    attempt,
                    self._event_attempts,
                    type(exc).__name__,
                    exc,
                )
        await self._dead_letter_incoming(item, f"{type(error).__name__}: {error}")

    async def _with_store_retry(self, items: Sequence[Incoming]) -> None:
        attempt = 0
        while True:
            try:
                await self._handler(items)
                return
            except TransientSinkError as exc:
                attempt += 1
                self.stats.store_retries += 1
                delay = backoff_delay(min(attempt, 30), _BASE_DELAY_S, self._store_retry_max_s)
                first = items[0]
                log.warning(
                    "%s: store unavailable (%s); batch of %d from %s[%d]@%d kept, retry %d in %.1f s",
                    self.agent,
                    exc,
                    len(items),
                    first.topic,
                    first.partition,
                    first.offset,
                    attempt,
                    delay,
                )
                await self._sleep(delay)

    async def _dead_letter_incoming(self, item: Incoming, reason: str) -> None:
        letter = DeadLetter(
            agent=self.agent,
            reason=reason,
            topic=item.topic,
            partition=item.partition,
            offset=item.offset,
            key=item.event.aggregate_id.encode(),
            value=item.event.envelope().to_json(),
            event_id=item.event.event_id,
        )
        await self._send(letter)

    async def _dead_letter(self, raw: RawEvent, event_id: int | None, reason: str) -> None:
        msg = raw.message
        key = raw.key if isinstance(raw.key, bytes | None) else str(raw.key).encode()
        value = raw.value if isinstance(raw.value, bytes | None) else str(raw.value).encode()
        await self._send(DeadLetter(self.agent, reason, msg.topic, msg.partition, msg.offset, key, value, event_id))

    async def _send(self, letter: DeadLetter) -> None:
        log.error(
            "%s: event %s at %s[%d]@%d -> DLQ: %s",
            self.agent,
            letter.event_id,
            letter.topic,
            letter.partition,
            letter.offset,
            letter.reason,
        )
        attempt = 0
        while True:
            try:
                await self._dead_letters.send(letter)
                self.stats.dead_letters += 1
                return
            except Exception as exc:  # noqa: BLE001 - the DLQ write is retried until Kafka takes it, never dropped
                attempt += 1
                delay = backoff_delay(min(attempt, 30), _BASE_DELAY_S, self._store_retry_max_s)
                log.warning("%s: DLQ write failed (%s); retry %d in %.1f s", self.agent, exc, attempt, delay)
                await self._sleep(delay)
