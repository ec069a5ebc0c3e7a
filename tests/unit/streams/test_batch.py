"""The batch runner's policy: the DLQ for what is the event's fault (contract breaks, undecodable records, a sink's
refusal of one event, validation), endless backoff while a store is down or the error is unknown, a stop without
acknowledging when a store refuses the worker, dead letters that always fit the DLQ topic, and a cancelled batch
that finishes before take() acknowledges it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError, TopicAuthorizationFailedError
from faust.exceptions import ProducerSendError
from pydantic import BaseModel
from redis.exceptions import AuthenticationError, ResponseError

from schema.topics import DATA_MAX_MESSAGE_BYTES
from sinks.errors import PermanentSinkError, TransientSinkError
from streams.batch import DEAD_LETTER_MAX_BYTES, BatchRunner, DeadLetter, Incoming


@dataclass
class Message:
    topic: str
    partition: int
    offset: int


@dataclass
class RawEvent:
    key: bytes | None
    value: bytes | None
    message: Message


class Letters:
    """The DLQ producer: refuses, like aiokafka before sending, a record above its request size."""

    def __init__(self, max_request_bytes: int = 8 * 1024 * 1024) -> None:
        self.sent: list[DeadLetter] = []
        self.values: list[bytes] = []
        self.max_request_bytes = max_request_bytes

    async def send(self, letter: DeadLetter) -> None:
        value = letter.to_json()
        if len(value) > self.max_request_bytes:
            try:
                raise MessageSizeTooLargeError(f"The message is {len(value)} bytes when serialized")
            except MessageSizeTooLargeError as exc:
                raise ProducerSendError(f"Error while sending: {exc!r}") from exc
        self.sent.append(letter)
        self.values.append(value)


class Stopped(BaseException):
    """What the test's stop raises: the real one ends the process (os._exit) and never returns."""


class Stops:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    def __call__(self, reason: str) -> NoReturn:
        self.reasons.append(reason)
        raise Stopped(reason)


def raw(n: int, **payload: Any) -> RawEvent:
    value = {
        "event_id": n,
        "event_type": "user.activity",
        "aggregate_type": "activity",
        "aggregate_id": "5",
        "occurred_at": "2026-01-05T10:00:00",
        "schema_version": 1,
        "source_seq": n,
        "payload": {"user_id": 5, "team_id": 1, "action": "tender.viewed", **payload},
    }
    return RawEvent(b"5", json.dumps(value).encode(), Message("t.activity", 0, n))


async def no_sleep(_: float) -> None:
    return None


def runner(handler: Any, letters: Letters, stop: Stops | None = None) -> BatchRunner:
    return BatchRunner("test", handler, letters, store_retry_max_s=1, sleep=no_sleep, stop=stop or Stops())


@pytest.mark.asyncio
async def test_contract_breaks_go_to_dlq_and_the_rest_is_handled() -> None:
    seen: list[int] = []

    async def handler(items: Sequence[Incoming]) -> None:
        seen.extend(i.event.event_id for i in items)

    letters = Letters()
    bad = RawEvent(b"5", b"{oops", Message("t.activity", 0, 99))
    await runner(handler, letters).process([raw(1), bad, raw(2)])
    assert seen == [1, 2]
    assert [(d.offset, d.reason[:17]) for d in letters.sent] == [(99, "value is not JSON")]
    assert json.loads(letters.sent[0].to_json())["value"] == "{oops"


@pytest.mark.asyncio
async def test_store_outage_is_retried_until_it_ends_and_nothing_is_dead_lettered() -> None:
    calls = 0

    async def handler(items: Sequence[Incoming]) -> None:
        nonlocal calls
        calls += 1
        if calls < 25:
            raise TransientSinkError("connection refused")

    letters = Letters()
    r = runner(handler, letters)
    await r.process([raw(1), raw(2)])
    assert calls == 25 and r.stats.store_retries == 24 and not letters.sent


@pytest.mark.asyncio
async def test_unknown_error_backs_off_until_it_clears_and_never_dead_letters() -> None:
    calls = 0
    done: list[int] = []

    async def handler(items: Sequence[Incoming]) -> None:
        nonlocal calls
        calls += 1
        if calls <= 5:
            raise KeyError("a bug, or a server code nobody classified")
        done.extend(i.event.event_id for i in items)

    letters = Letters()
    r = runner(handler, letters)
    await r.process([raw(1), raw(2, details={"poison": True}), raw(3)])
    assert done == [1, 2, 3] and calls == 6
    assert not letters.sent and r.stats.error_retries == 5


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "exc",
    [
        ResponseError("MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist"),
        RecursionError("maximum recursion depth exceeded"),
    ],
    ids=["misconf", "recursion-in-handler"],
)
async def test_errors_that_are_not_the_events_fault_never_dead_letter(exc: Exception) -> None:
    calls = 0

    async def handler(items: Sequence[Incoming]) -> None:
        nonlocal calls
        calls += 1
        if calls <= 3:
            raise exc

    letters = Letters()
    await runner(handler, letters).process([raw(1), raw(2)])
    assert calls == 4 and not letters.sent


@pytest.mark.asyncio
async def test_wrong_redis_password_stops_the_worker_without_dead_lettering_or_finishing_the_batch() -> None:
    calls = 0

    async def handler(items: Sequence[Incoming]) -> None:
        nonlocal calls
        calls += 1
        raise AuthenticationError("invalid username-password pair or user is disabled.")

    letters, stops = Letters(), Stops()
    r = runner(handler, letters, stops)
    with pytest.raises(Stopped):
        await r.process([raw(1), raw(2), raw(3)])
    assert calls == 1, "a refused login is not retried event by event"
    assert not letters.sent
    assert len(stops.reasons) == 1 and "Redis" in stops.reasons[0] and "TENDERHUB_REDIS_URL" in stops.reasons[0]
    assert r.stats.batches == 0, "the batch must not count as done"


class _Budget(BaseModel):
    cents: int


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["pydantic", "refusal-without-index"])
async def test_validation_failure_dead_letters_only_the_guilty_event(kind: str) -> None:
    done: list[int] = []

    async def handler(items: Sequence[Incoming]) -> None:
        if any(i.event.event_id == 2 for i in items):
            if kind == "pydantic":
                _Budget.model_validate({"cents": "lots"})
            raise PermanentSinkError("a score document derived from several events was refused")
        done.extend(i.event.event_id for i in items)

    letters = Letters()
    await runner(handler, letters).process([raw(1), raw(2), raw(3)])
    assert done == [1, 3]
    assert [d.event_id for d in letters.sent] == [2]


@pytest.mark.asyncio
async def test_permanent_refusal_of_one_event_dead_letters_it_and_resends_the_rest() -> None:
    batches: list[list[int]] = []

    async def handler(items: Sequence[Incoming]) -> None:
        ids = [i.event.event_id for i in items]
        batches.append(ids)
        if 2 in ids:
            raise PermanentSinkError("document too large", index=ids.index(2))

    letters = Letters()
    await runner(handler, letters).process([raw(1), raw(2), raw(3)])
    assert batches == [[1, 2, 3], [1, 3]]
    assert [d.event_id for d in letters.sent] == [2]


def test_a_sink_refusal_is_re_aimed_at_the_event_that_made_the_document() -> None:
    from streams.batch import refused_event

    exc = PermanentSinkError("too large", index=1, key={"_id": 9})
    assert refused_event(exc, [0, 2, 5]).index == 2
    assert refused_event(exc, None).index is None  # documents from several events: handled one by one
    assert refused_event(PermanentSinkError("x", index=7), [0, 1]).index is None


@pytest.mark.asyncio
async def test_any_decode_failure_dead_letters_that_record_and_its_neighbours_are_handled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[int] = []

    async def handler(items: Sequence[Incoming]) -> None:
        seen.extend(i.event.event_id for i in items)

    from schema.events import decode_event as real_decode

    def decode(value: bytes | str | None) -> Any:
        if value == b"surprise":
            raise LookupError("a failure the decoder never planned for")
        return real_decode(value)

    monkeypatch.setattr("streams.batch.decode_event", decode)
    hostile = [
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
        b"\xc3\x28",
        b"[1, 2, 3]",
        b'{"event_id": ' + b"9" * 5000 + b"}",
        b"surprise",
    ]
    batch = [raw(1)]
    for n, value in enumerate(hostile, start=100):
        batch.append(RawEvent(b"5", value, Message("t.activity", 0, n)))
    batch.append(raw(2))
    letters = Letters()
    await runner(handler, letters).process(batch)
    assert seen == [1, 2]
    assert [d.offset for d in letters.sent] == [100, 101, 102, 103, 104]
    reasons = [d.reason for d in letters.sent]
    assert "nests too deeply" in reasons[0] and "LookupError" in reasons[4]


def _huge_quotes_event(n: int) -> RawEvent:
    """A contract-breaking envelope of about `n` bytes whose every character needs escaping in a JSON string."""
    event = raw(n)
    data = json.loads(event.value or b"")
    data["payload"]["team_id"] = "x"
    data["payload"]["details"] = {"q": '"' * (n // 2)}
    return RawEvent(b"5", json.dumps(data).encode(), event.message)


@pytest.mark.asyncio
async def test_dead_letter_of_an_event_near_the_data_topic_limit_is_compact_and_fits() -> None:
    event = _huge_quotes_event(DATA_MAX_MESSAGE_BYTES - 10_000)
    assert event.value is not None and len(event.value) < DATA_MAX_MESSAGE_BYTES

    async def handler(items: Sequence[Incoming]) -> None:
        raise AssertionError("a contract break never reaches the handler")

    letters = Letters(max_request_bytes=DATA_MAX_MESSAGE_BYTES)
    await runner(handler, letters).process([event])
    (value,) = letters.values
    assert len(value) <= DEAD_LETTER_MAX_BYTES
    record = json.loads(value)
    assert record["size"] == len(event.value)
    assert record["sha256"] == hashlib.sha256(event.value).hexdigest()
    assert record["sample"] == event.value[:2048].decode()
    assert record["value"] is None and record["origin"] == {"topic": "t.activity", "partition": 0, "offset": 1038588}
    assert "payload breaks user.activity v1" in record["reason"]


def test_small_dead_letters_keep_the_whole_value() -> None:
    letter = DeadLetter("a", "why", "t", 0, 5, b"k", b'{"x": "\\"quoted\\""}', 7)
    record = json.loads(letter.to_json())
    assert record["value"] == '{"x": "\\"quoted\\""}' and "sha256" not in record


@pytest.mark.asyncio
async def test_dlq_refusing_a_record_as_too_large_gets_the_compact_record_instead_of_a_retry() -> None:
    # A broker whose DLQ topic takes less than the worker planned for: the full letter is refused once, then the
    # compact one goes through; nothing is retried forever.
    async def handler(items: Sequence[Incoming]) -> None:
        raise PermanentSinkError("refused", index=0)

    # An undeclared field: the contract bounds details to 16 KiB, but lets producers add fields of any size.
    event = raw(1, blob="y" * 300_000)
    letters = Letters(max_request_bytes=100_000)
    r = runner(handler, letters)
    await r.process([event])
    (value,) = letters.values
    record = json.loads(value)
    assert record["event_id"] == 1 and record["size"] > 300_000 and record["value"] is None


@pytest.mark.asyncio
async def test_dlq_that_refuses_even_the_compact_record_stops_the_worker() -> None:
    async def handler(items: Sequence[Incoming]) -> None:
        raise PermanentSinkError("refused", index=0)

    stops = Stops()
    with pytest.raises(Stopped):
        await runner(handler, Letters(max_request_bytes=100), stops).process([raw(1)])
    assert "Kafka" in stops.reasons[0]


class FlakyDlq:
    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.sent: list[DeadLetter] = []

    async def send(self, letter: DeadLetter) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(letter)


@pytest.mark.asyncio
async def test_dlq_unreachable_backs_off_until_kafka_takes_the_letter() -> None:
    async def handler(items: Sequence[Incoming]) -> None:
        raise PermanentSinkError("refused", index=0)

    dlq = FlakyDlq(KafkaConnectionError("no broker"), KafkaConnectionError("no broker"))
    r = BatchRunner("test", handler, dlq, sleep=no_sleep, stop=Stops())
    await r.process([raw(1)])
    assert [d.event_id for d in dlq.sent] == [1]


@pytest.mark.asyncio
async def test_dlq_write_refused_for_permissions_stops_instead_of_retrying_forever() -> None:
    async def handler(items: Sequence[Incoming]) -> None:
        raise PermanentSinkError("refused", index=0)

    stops = Stops()
    dlq = FlakyDlq(*[TopicAuthorizationFailedError() for _ in range(1000)])
    with pytest.raises(Stopped):
        await BatchRunner("test", handler, dlq, sleep=no_sleep, stop=stops).process([raw(1)])
    assert len(dlq.failures) == 999 and "Kafka" in stops.reasons[0]


@pytest.mark.asyncio
async def test_periodic_job_refused_by_a_store_stops_the_worker() -> None:
    from streams.wiring import periodic

    async def sweep() -> None:
        raise AuthenticationError("invalid username-password pair or user is disabled.")

    stops = Stops()
    with pytest.raises(Stopped):
        await periodic("readiness_sweep", sweep, stop=stops)()
    assert stops.reasons[0].startswith("readiness_sweep: Redis refused the worker")


@pytest.mark.asyncio
async def test_periodic_job_that_fails_otherwise_waits_for_its_next_tick(caplog: pytest.LogCaptureFixture) -> None:
    from streams.wiring import periodic

    async def sweep() -> None:
        raise TransientSinkError("connection refused")

    stops = Stops()
    await periodic("readiness_sweep", sweep, stop=stops)()
    assert not stops.reasons and "runs again at its next tick" in caplog.text


@pytest.mark.asyncio
async def test_the_batch_in_flight_is_visible_while_it_runs_and_through_its_retries() -> None:
    # The web view shows it: "no new events processed" alone cannot tell an idle worker from one stuck in a long
    # batch or a store's backoff.
    seen: list[int] = []
    r: BatchRunner

    async def handler(items: Sequence[Incoming]) -> None:
        seen.append(r.stats.in_flight)
        assert r.stats.in_flight_since is not None
        if len(seen) < 3:
            raise TransientSinkError("connection refused")

    r = runner(handler, Letters())
    assert r.stats.in_flight == 0 and r.stats.in_flight_since is None
    await r.process([raw(1), raw(2), RawEvent(b"5", b"{oops", Message("t.activity", 0, 9))])
    assert seen == [3, 3, 3]
    assert r.stats.in_flight == 0 and r.stats.in_flight_since is None and r.stats.events == 3


@pytest.mark.asyncio
async def test_events_of_types_the_agent_does_not_take_never_reach_its_handler() -> None:
    seen: list[int] = []

    async def handler(items: Sequence[Incoming]) -> None:
        seen.extend(i.event.event_id for i in items)

    letters = Letters()
    heartbeat = json.loads(raw(2).value or b"")
    heartbeat.update(
        event_type="system.heartbeat",
        aggregate_type="system",
        aggregate_id="1",
        payload={"origin": "test", "marker": "m1"},
    )
    other = RawEvent(b"1", json.dumps(heartbeat).encode(), Message("t.activity", 0, 2))
    only_activity = BatchRunner(
        "test", handler, letters, sleep=no_sleep, stop=Stops(), event_types=frozenset({"user.activity"})
    )
    await only_activity.process([raw(1), other, raw(3)])
    assert seen == [1, 3]
    assert only_activity.stats.skipped == 1
    assert only_activity.stats.events == 3  # acknowledged with the batch
    assert letters.sent == []
    # Without a filter every decoded event reaches the handler.
    seen.clear()
    await runner(handler, letters).process([raw(1), other, raw(3)])
    assert seen == [1, 2, 3]


@pytest.mark.asyncio
async def test_a_lone_surrogate_past_the_200th_character_of_the_event_type_still_reaches_the_dlq() -> None:
    # A plain producer's record: JSON-escaped, so it decodes to a string no store can encode. Its reason quotes the
    # event type; the letter, its reason header included, must still encode (or the batch would retry for ever).
    value = (
        b'{"event_id":1,"event_type":"' + b"x" * 200 + b'\\ud800","aggregate_type":"tender","aggregate_id":"7",'
        b'"occurred_at":"2026-01-05T10:00:00Z","schema_version":1,"source_seq":1,"payload":{}}'
    )

    async def handler(items: Sequence[Incoming]) -> None:
        raise AssertionError("nothing here is an event")

    async def sleep(_: float) -> None:
        raise AssertionError("the dead letter was retried: the partition would stall")

    letters = Letters()
    await BatchRunner("test", handler, letters, sleep=sleep, stop=Stops()).process(
        [RawEvent(b"7", value, Message("t.tender", 0, 3))]
    )
    assert [d.offset for d in letters.sent] == [3]
    letters.sent[0].reason[:200].encode()  # the DLQ header
    assert "\\ud800" in json.loads(letters.values[0])["reason"]


def test_a_dead_letter_never_holds_text_utf_8_cannot_encode() -> None:
    letter = DeadLetter("agent\udcff", "reason \ud800 here", "t", 0, 1, b"k", b"v")
    assert (letter.agent, letter.reason) == ("agent\\udcff", "reason \\ud800 here")
    assert json.loads(letter.to_json())["reason"] == "reason \\ud800 here"
