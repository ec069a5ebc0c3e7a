"""Retry policy: only transient errors are retried, with capped exponential backoff, and the last one surfaces."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypedDict

import pytest

from schema.retry import backoff_delay
from sinks.errors import PermanentSinkError, SinkError, TransientSinkError
from sinks.retry import RetryPolicy, bounded_all, retry, retry_sync


class Flaky:
    """Fails with the given exceptions in turn, then returns "done"."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "done"

    async def run(self) -> str:
        return self()


def classify(exc: Exception) -> SinkError | None:
    if isinstance(exc, ConnectionRefusedError):
        return TransientSinkError(f"refused: {exc}")
    if isinstance(exc, ValueError):
        return PermanentSinkError(f"bad: {exc}")
    return None


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)

    def sync(self, delay: float) -> None:
        self.delays.append(delay)


def top(lo: float, hi: float) -> float:
    return hi


class Policy(TypedDict):
    attempts: int
    base_delay_s: float
    max_delay_s: float


POLICY: Policy = {"attempts": 4, "base_delay_s": 0.1, "max_delay_s": 0.3}


@pytest.mark.asyncio
async def test_success_first_time_does_not_sleep() -> None:
    op, sleeps = Flaky(), Sleeps()
    assert await retry(op.run, **POLICY, classify=classify, sleep=sleeps) == "done"
    assert op.calls == 1
    assert sleeps.delays == []


@pytest.mark.asyncio
async def test_transient_errors_are_retried_with_backoff_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    op, sleeps = Flaky(ConnectionRefusedError("a"), ConnectionRefusedError("b")), Sleeps()
    with caplog.at_level(logging.WARNING, logger="sinks.retry"):
        result = await retry(op.run, **POLICY, classify=classify, sleep=sleeps, jitter=top, what="test write")
    assert result == "done"
    assert op.calls == 3
    assert sleeps.delays == pytest.approx([0.1, 0.2])
    messages = [r.getMessage() for r in caplog.records]
    assert "attempt 1/4" in messages[0] and "refused: a" in messages[0] and "test write" in messages[0]
    assert "attempt 2/4" in messages[1] and "refused: b" in messages[1]


@pytest.mark.asyncio
async def test_gives_up_after_attempts_with_transient_error_chained_to_the_last() -> None:
    last = ConnectionRefusedError("4th")
    op = Flaky(*(ConnectionRefusedError(str(i)) for i in range(3)), last)
    sleeps = Sleeps()
    with pytest.raises(TransientSinkError, match="after 4 attempts: refused: 4th") as info:
        await retry(op.run, **POLICY, classify=classify, sleep=sleeps)
    assert info.value.__cause__ is last
    assert op.calls == 4
    assert len(sleeps.delays) == 3


@pytest.mark.asyncio
async def test_permanent_error_is_raised_at_once() -> None:
    op, sleeps = Flaky(ValueError("no"), ConnectionRefusedError("never reached")), Sleeps()
    with pytest.raises(PermanentSinkError, match="bad: no") as info:
        await retry(op.run, **POLICY, classify=classify, sleep=sleeps)
    assert isinstance(info.value.__cause__, ValueError)
    assert op.calls == 1
    assert sleeps.delays == []


@pytest.mark.asyncio
async def test_unclassified_error_propagates_unchanged() -> None:
    boom = KeyError("bug")
    op, sleeps = Flaky(boom), Sleeps()
    with pytest.raises(KeyError) as info:
        await retry(op.run, **POLICY, classify=classify, sleep=sleeps)
    assert info.value is boom
    assert op.calls == 1


@pytest.mark.asyncio
async def test_sink_errors_raised_by_the_operation_follow_their_own_kind() -> None:
    op, sleeps = Flaky(TransientSinkError("busy"), PermanentSinkError("broken")), Sleeps()
    with pytest.raises(PermanentSinkError, match="broken"):
        await retry(op.run, **POLICY, classify=lambda exc: None, sleep=sleeps)
    assert op.calls == 2


@pytest.mark.asyncio
async def test_cancellation_is_never_retried() -> None:
    calls = 0

    async def cancelled() -> str:
        nonlocal calls
        calls += 1
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await retry(cancelled, **POLICY, classify=classify, sleep=Sleeps())
    assert calls == 1


def test_backoff_doubles_up_to_the_cap_and_keeps_half_under_jitter() -> None:
    assert [backoff_delay(n, 0.1, 0.5, top) for n in range(1, 6)] == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])
    assert backoff_delay(3, 0.1, 0.5, lambda lo, hi: lo) == pytest.approx(0.2)
    for _ in range(100):
        assert 0.2 <= backoff_delay(3, 0.1, 10.0) <= 0.4


def test_sync_variant_retries_and_gives_up_the_same_way() -> None:
    sleeps = Sleeps()
    op = Flaky(ConnectionRefusedError("x"))
    assert retry_sync(op, **POLICY, classify=classify, sleep=sleeps.sync, jitter=top) == "done"
    assert sleeps.delays == pytest.approx([0.1])
    op = Flaky(*(ConnectionRefusedError(str(i)) for i in range(4)))
    with pytest.raises(TransientSinkError, match="after 4 attempts"):
        retry_sync(op, **POLICY, classify=classify, sleep=sleeps.sync)
    with pytest.raises(PermanentSinkError):
        retry_sync(Flaky(ValueError("v")), **POLICY, classify=classify, sleep=sleeps.sync)


@pytest.mark.parametrize(
    ("attempts", "base", "cap"),
    [(0, 0.1, 1.0), (3, -0.1, 1.0), (3, 2.0, 1.0)],
)
def test_nonsense_policies_are_refused(attempts: int, base: float, cap: float) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(attempts, base, cap)
    with pytest.raises(ValueError):
        retry_sync(Flaky(), attempts=attempts, base_delay_s=base, max_delay_s=cap, classify=classify)


def test_the_store_sensor_hears_each_call_with_its_operation_and_outcome() -> None:
    from sinks.retry import sensed

    heard: list[tuple[str, str, bool]] = []

    def sensor(store: str, operation: str, seconds: float, ok: bool) -> None:
        assert seconds >= 0
        heard.append((store, operation, ok))

    with sensed(sensor, "redis", "hgetall th:tender:1:metadata"):
        pass
    with pytest.raises(RuntimeError), sensed(sensor, "mongodb", "upsert_versioned readiness_scores (3 docs)"):
        raise RuntimeError("store down")
    with sensed(None, "redis", "get x"):  # no sensor: nothing to tell
        pass
    assert heard == [("redis", "hgetall", True), ("mongodb", "upsert_versioned", False)]


class Fanout:
    """`count` calls: the first fails at once (the store just went down); the others take a while."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.started: list[int] = []
        self.running = 0

    def call(self, n: int) -> Callable[[], Awaitable[int]]:
        async def run() -> int:
            self.started.append(n)
            self.running += 1
            try:
                if n == 0:
                    raise ConnectionError("store down")
                await asyncio.sleep(0.01)
                return n
            finally:
                self.running -= 1

        return run


def test_a_fan_out_starts_no_call_after_the_first_failure_and_leaves_none_running() -> None:
    """An update of 80 scores is 80 commands, 8 at a time: once the store is down each would wait out its own
    timeout (5 s of server selection), so a batch kept the worker 30 s behind a 30 s outage before its retry."""
    fanout = Fanout(80)

    async def go() -> None:
        with pytest.raises(ConnectionError, match="store down"):
            await bounded_all([fanout.call(n) for n in range(fanout.count)], limit=8)
        assert fanout.running == 0  # the calls in flight ended before the failure was raised

    asyncio.run(go())
    assert len(fanout.started) <= 8, fanout.started


def test_a_fan_out_without_failures_returns_every_result_in_order() -> None:
    fanout = Fanout(50)

    async def go() -> list[int]:
        return await bounded_all([fanout.call(n) for n in range(1, fanout.count)], limit=4)

    assert asyncio.run(go()) == list(range(1, 50))
