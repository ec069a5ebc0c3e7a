"""What every agent runs on each batch the worker's consumer hands it (streams/consumer.py): decode the records,
give the agent's handler the events it takes, and act on every failure by the one policy (`sinks.errors.policy_for`)
before the batch's offsets may be committed.

| failure                                                       | the runner                                          |
|---------------------------------------------------------------|-----------------------------------------------------|
| a record that cannot be decoded, for any reason (not JSON,    | that record to the DLQ with the reason; the rest of |
| bad UTF-8, nesting past the recursion limit, a non-object,    | the batch is handled                                |
| numbers past 64 bits, a contract break)                       |                                                     |
| `ContractError`, pydantic `ValidationError`,                  | the event at fault to the DLQ at once (`index`, or  |
| `PermanentSinkError` (a store refuses the event's document)   | found by handling the batch one event at a time);   |
|                                                               | the others are handled                              |
| `TransientSinkError` (a store down), Redis MISCONF or OOM,    | back off (doubling, up to                           |
| retriable Kafka errors, and ANY error nobody classified       | `worker_store_retry_max_s`) and retry the SAME      |
|                                                               | batch until it passes: nothing is acknowledged past |
|                                                               | it, nothing is dead-lettered                        |
| a store refuses the worker itself (Redis NOAUTH / WRONGPASS / | stop the worker WITHOUT acknowledging: exit         |
| NOPERM, MongoDB authentication and authorization codes, MySQL | `EXIT_STORE_REFUSED` (78) with a message naming the |
| access denied, a non-retriable Kafka produce error)           | store and the fix; the batch is redelivered to the  |
|                                                               | next worker                                         |
| the DLQ refuses a dead letter as too large                    | send its compact form (id, size, SHA-256, sample)   |
| SIGTERM while a store is still down after the consumer's      | exit `EXIT_STORE_DOWN_AT_STOP` (75), unacknowledged |
| `drain_timeout_s` (streams/consumer.py)                       |                                                     |

Dead letters above `DEAD_LETTER_MAX_BYTES` (what a data topic takes) carry the event's id, origin, size, SHA-256
and a sample instead of the value, as the relay's do: a dead letter of an event near the data topics' limit is
larger than the event (its JSON is quoted again) and must still fit.

Handlers must be idempotent: a batch may be handled again after a retry, a crash or a rebalance.

The consumer commits a batch's offsets once `process` returns, so `process` never raises: a stop (SIGTERM, a
rebalance) waits for the batch in flight to finish first, and a stop without committing leaves the process at once
(`os._exit`), like a crash (the fault tests prove that safe).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Generic, NoReturn, Protocol, TypeVar

from schema.checked import encodable
from schema.events import ContractError, Envelope, Payload, decode_event
from schema.retry import backoff_delay
from schema.topics import DATA_MAX_MESSAGE_BYTES
from sinks.errors import Action, PermanentSinkError, Policy, message_too_large, policy_for

log = logging.getLogger(__name__)

# Exit status when the worker must stop while a store is still down: exiting without acknowledging keeps the batch
# for the next worker (like a crash, which the fault tests prove safe); acknowledging it would lose it.
EXIT_STORE_DOWN_AT_STOP = 75
# Exit status (sysexits EX_CONFIG) when a store refuses the worker itself: wrong credentials or permissions.
EXIT_STORE_REFUSED = 78
# First pause of the endless retry while a store is down (doubling up to worker_store_retry_max_s).
_BASE_DELAY_S = 0.4
# A dead letter never outgrows what a data topic takes; room is left for the record's key, headers and framing.
DEAD_LETTER_MAX_BYTES = DATA_MAX_MESSAGE_BYTES - 16 * 1024
# As the relay's oversized records (cdc/envelope.py): enough to recognise the event, never the whole value.
SAMPLE_CHARS = 2048
_KEY_MAX_BYTES = 1024
_REASON_MAX_CHARS = 2000
# Unclassified errors are logged with their traceback on the first attempt and every this many after it.
_TRACEBACK_EVERY = 10

Stop = Callable[[str], NoReturn]


def exit_worker(reason: str) -> NoReturn:
    """Stop the worker without acknowledging anything: leave the process now, so that take()'s `finally` never runs
    and the batch in flight is redelivered to the next worker (which needs the fix first)."""
    log.critical(
        "stopping the worker (exit %d) without acknowledging the batch in flight: %s", EXIT_STORE_REFUSED, reason
    )
    logging.shutdown()
    os._exit(EXIT_STORE_REFUSED)


P = TypeVar("P", bound=Payload, covariant=True)


@dataclass(frozen=True)
class Incoming(Generic[P]):
    """One decoded event and where it came from (for logs and the DLQ). A handler annotates the payloads it takes,
    e.g. `Sequence[Incoming[UserActivityV1]]`: the runner gives it only the event types its spec lists."""

    event: Envelope[P]
    topic: str
    partition: int
    offset: int
    # The Kafka value as it came (the dead letter quotes it, or hashes it when it is too large to quote).
    value: bytes | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class DeadLetter:
    """One DLQ record: why, which agent, where the event came from, and the event (whole, or compact when large)."""

    agent: str
    reason: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    event_id: int | None = None
    compact: bool = False

    def __post_init__(self) -> None:
        # The reason may quote the refused value: a lone surrogate in it would make the letter itself unwritable,
        # an unclassified error retried for ever on the same batch.
        for name in ("agent", "reason", "topic"):
            object.__setattr__(self, name, encodable(getattr(self, name)))

    def compacted(self) -> DeadLetter:
        return replace(self, compact=True)

    def record_key(self) -> bytes | None:
        """The DLQ record's key: the event's, cut short (the DLQ has one partition; the key only helps a reader)."""
        return None if self.key is None else self.key[:_KEY_MAX_BYTES]

    def to_json(self) -> bytes:
        """The record value: the whole event when it fits `DEAD_LETTER_MAX_BYTES`, else its compact form."""
        value = self.value or b""
        room = DEAD_LETTER_MAX_BYTES - len(self.record_key() or b"")
        if not self.compact and len(value) <= room:
            try:
                text: str | None = value.decode("utf-8")
            except UnicodeDecodeError:
                text = None
            full = self._encode({"value": text, "value_hex": value.hex() if text is None else None}, whole_key=True)
            if len(full) <= room:
                return full
        return self._encode(
            {
                "value": None,
                "value_hex": None,
                "size": len(value),
                "max_bytes": DEAD_LETTER_MAX_BYTES,
                "sha256": hashlib.sha256(value).hexdigest(),
                "sample": value[:SAMPLE_CHARS].decode("utf-8", "replace"),
            },
            whole_key=False,
        )

    def _encode(self, detail: dict[str, Any], *, whole_key: bool) -> bytes:
        key = self.key if whole_key else self.record_key()
        return json.dumps(
            {
                "stage": "worker",
                "agent": self.agent,
                "reason": self.reason[:_REASON_MAX_CHARS],
                "event_id": self.event_id,
                "origin": {"topic": self.topic, "partition": self.partition, "offset": self.offset},
                "key": None if key is None else key.decode("utf-8", "replace"),
                **detail,
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


Handler = Callable[[Sequence[Incoming[Any]]], Awaitable[None]]


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
    skipped: int = 0  # decoded events of types the agent does not take
    store_retries: int = 0
    error_retries: int = 0
    last_batch_s: float = 0.0
    in_flight: int = 0  # events of the batch being handled now (0: idle)
    in_flight_since: float | None = None  # time.monotonic() when that batch began
    extra: dict[str, int] = field(default_factory=dict)


class BatchRunner:
    """Runs one agent's handler over batches with the policy above."""

    def __init__(
        self,
        agent: str,
        handler: Handler,
        dead_letters: DeadLetterSink,
        *,
        store_retry_max_s: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        stop: Stop = exit_worker,
        event_types: frozenset[str] | None = None,
        on_batch: Callable[[str, int, float], None] | None = None,
    ) -> None:
        self.agent = agent
        # A sensor told of every batch done: (agent, events, seconds). None: nothing to tell.
        self._on_batch = on_batch
        self._handler = handler
        # The events the handler takes (None: all); the others are acknowledged without reaching it.
        self._event_types = event_types
        self._dead_letters = dead_letters
        self._store_retry_max_s = store_retry_max_s
        self._sleep = sleep
        self._stop = stop
        self.stats = BatchStats()

    @property
    def handler(self) -> Handler:
        return self._handler

    async def process(self, raw_events: Sequence[RawEvent]) -> None:
        """Decode, handle, back off and dead-letter one batch. Returns once every event is handled or dead-lettered;
        never raises (but for cancellation, and the stop, which leaves the process)."""
        started = time.perf_counter()
        self.stats.in_flight, self.stats.in_flight_since = len(raw_events), time.monotonic()
        try:
            await self._process(raw_events)
        finally:
            self.stats.in_flight, self.stats.in_flight_since = 0, None
        self.stats.batches += 1
        self.stats.events += len(raw_events)
        self.stats.last_batch_s = time.perf_counter() - started
        if self._on_batch is not None:
            self._on_batch(self.agent, len(raw_events), self.stats.last_batch_s)

    async def _process(self, raw_events: Sequence[RawEvent]) -> None:
        good: list[Incoming[Any]] = []
        for raw in raw_events:
            msg = raw.message
            try:
                event = decode_event(raw.value)
            except ContractError as exc:
                await self._dead_letter(raw, exc.reason)
                continue
            except Exception as exc:  # noqa: BLE001 - whatever breaks the decoder is that record's fault alone
                await self._dead_letter(raw, f"value cannot be decoded: {type(exc).__name__}: {exc}")
                continue
            if self._event_types is not None and event.event_type not in self._event_types:
                self.stats.skipped += 1
                continue
            value = raw.value if isinstance(raw.value, bytes) else None
            good.append(Incoming(event, msg.topic, msg.partition, msg.offset, value))
        if good:
            await self._handle(good)

    async def _handle(self, items: Sequence[Incoming[Any]]) -> None:
        """Handle `items` until they pass, dead-lettering only the events at fault."""
        pending = list(items)
        while pending:
            try:
                await self._until_handled(pending)
                return
            except Exception as exc:  # noqa: BLE001 - only what the policy dead-letters gets here
                index = exc.index if isinstance(exc, PermanentSinkError) else None
                if index is not None and 0 <= index < len(pending):
                    bad = pending.pop(index)
                elif len(pending) == 1:
                    bad = pending.pop()
                else:
                    log.warning(
                        "%s: batch of %d refused without naming the event (%s: %s); handling its events one by one",
                        self.agent,
                        len(pending),
                        type(exc).__name__,
                        exc,
                    )
                    for item in pending:
                        await self._handle([item])
                    return
                await self._dead_letter_incoming(bad, policy_for(exc).reason)

    async def _until_handled(self, items: Sequence[Incoming[Any]]) -> None:
        """Run the handler until it passes; raise only what dead-letters an event, stop on what stops the worker."""
        attempt = 0
        while True:
            try:
                await self._handler(items)
                return
            except Exception as exc:  # sorted by the one policy below
                policy = policy_for(exc)
                if policy.action is Action.DEAD_LETTER:
                    raise
                if policy.action is Action.STOP:
                    self._stop_worker(policy, items)
                attempt += 1
                await self._back_off(policy, exc, items, attempt)

    async def _back_off(self, policy: Policy, exc: Exception, items: Sequence[Incoming[Any]], attempt: int) -> None:
        delay = backoff_delay(attempt, _BASE_DELAY_S, self._store_retry_max_s)
        first = items[0]
        if policy.unclassified:
            self.stats.error_retries += 1
            # Never blamed on an event (it would dead-letter innocent ones), so the traceback is what gets it fixed.
            log.error(
                "%s: %s; batch of %d from %s[%d]@%d kept (nothing acknowledged, nothing dead-lettered), retry %d in "
                "%.1f s",
                self.agent,
                policy.reason,
                len(items),
                first.topic,
                first.partition,
                first.offset,
                attempt,
                delay,
                exc_info=exc if attempt % _TRACEBACK_EVERY == 1 else None,
            )
        else:
            self.stats.store_retries += 1
            log.warning(
                "%s: %s; batch of %d from %s[%d]@%d kept, retry %d in %.1f s",
                self.agent,
                policy.reason,
                len(items),
                first.topic,
                first.partition,
                first.offset,
                attempt,
                delay,
            )
        await self._sleep(delay)

    def _stop_worker(self, policy: Policy, items: Sequence[Incoming[Any]]) -> NoReturn:
        first = items[0]
        self._stop(
            f"{self.agent}: {policy.reason} (batch of {len(items)} from "
            f"{first.topic}[{first.partition}]@{first.offset} not acknowledged)"
        )

    async def _dead_letter_incoming(self, item: Incoming[Any], reason: str) -> None:
        letter = DeadLetter(
            agent=self.agent,
            reason=reason,
            topic=item.topic,
            partition=item.partition,
            offset=item.offset,
            key=item.event.aggregate_id.encode(),
            value=item.value if item.value is not None else item.event.to_json(),
            event_id=item.event.event_id,
        )
        await self._send(letter)

    async def _dead_letter(self, raw: RawEvent, reason: str) -> None:
        msg = raw.message
        key = raw.key if isinstance(raw.key, bytes | None) else str(raw.key).encode()
        value = raw.value if isinstance(raw.value, bytes | None) else str(raw.value).encode()
        await self._send(DeadLetter(self.agent, reason, msg.topic, msg.partition, msg.offset, key, value))

    async def _send(self, letter: DeadLetter) -> None:
        log.error(
            "%s: event %s at %s[%d]@%d -> DLQ: %s",
            self.agent,
            letter.event_id,
            letter.topic,
            letter.partition,
            letter.offset,
            letter.reason[:_REASON_MAX_CHARS],
        )
        attempt = 0
        while True:
            try:
                await self._dead_letters.send(letter)
                self.stats.dead_letters += 1
                return
            except Exception as exc:  # noqa: BLE001 - sorted below; a dead letter is never dropped
                if message_too_large(exc) and not letter.compact:
                    # The DLQ topic takes less than planned (its max.message.bytes): the compact form still tells
                    # which event it was; the same record would be refused forever.
                    log.warning(
                        "%s: the DLQ refused the dead letter of %s[%d]@%d as too large (%s); sending its compact form",
                        self.agent,
                        letter.topic,
                        letter.partition,
                        letter.offset,
                        exc,
                    )
                    letter = letter.compacted()
                    continue
                policy = policy_for(exc)
                if policy.action is not Action.BACK_OFF:
                    self._stop(
                        f"{self.agent}: cannot write the dead letter of {letter.topic}[{letter.partition}]@"
                        f"{letter.offset} to the DLQ: {policy.reason}"
                    )
                attempt += 1
                delay = backoff_delay(attempt, _BASE_DELAY_S, self._store_retry_max_s)
                log.warning("%s: DLQ write failed (%s); retry %d in %.1f s", self.agent, policy.reason, attempt, delay)
                await self._sleep(delay)
