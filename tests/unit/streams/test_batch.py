"""The batch runner's policy: DLQ for contract breaks and poison events, endless backoff while a store is down,
a sink's permanent refusal of one event, and a cancelled batch that finishes before take() acknowledges it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from sinks.errors import PermanentSinkError, TransientSinkError
from streams.batch import BatchRunner, DeadLetter, Incoming


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
    def __init__(self) -> None:
        self.sent: list[DeadLetter] = []

    async def send(self, letter: DeadLetter) -> None:
        self.sent.append(letter)


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


def runner(handler: Any, letters: Letters, attempts: int = 3) -> BatchRunner:
    return BatchRunner("test", handler, letters, event_attempts=attempts, store_retry_max_s=1, sleep=no_sleep)


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
async def test_poison_event_is_dead_lettered_after_its_attempts_and_the_others_pass() -> None:
    done: list[int] = []
    tries: dict[int, int] = {}

    async def handler(items: Sequence[Incoming]) -> None:
        for i in items:
            if i.event.payload.details.get("poison"):
                tries[i.event.event_id] = tries.get(i.event.event_id, 0) + 1
                raise KeyError("boom")
        done.extend(i.event.event_id for i in items)

    letters = Letters()
    await runner(handler, letters, attempts=3).process([raw(1), raw(2, details={"poison": True}), raw(3)])
    assert done == [1, 3]
    assert tries[2] == 1 + 3  # once in the batch, then three times alone
    assert len(letters.sent) == 1 and letters.sent[0].event_id == 2 and "KeyError" in letters.sent[0].reason


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


@pytest.mark.asyncio
async def test_cancelled_batch_finishes_before_the_cancellation_goes_on() -> None:
    finished = asyncio.Event()
    started = asyncio.Event()

    async def handler(items: Sequence[Incoming]) -> None:
        started.set()
        await asyncio.sleep(0.2)
        finished.set()

    async def batches() -> AsyncIterator[Sequence[RawEvent]]:
        yield [raw(1)]
        await asyncio.sleep(10)

    r = runner(handler, Letters())
    task = asyncio.ensure_future(r.run(batches()))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished.is_set(), "the batch was abandoned half done"


def test_a_sink_refusal_is_re_aimed_at_the_event_that_made_the_document() -> None:
    from streams.batch import refused_event

    exc = PermanentSinkError("too large", index=1, key={"_id": 9})
    assert refused_event(exc, [0, 2, 5]).index == 2
    assert refused_event(exc, None).index is None  # documents from several events: handled one by one
    assert refused_event(PermanentSinkError("x", index=7), [0, 1]).index is None
