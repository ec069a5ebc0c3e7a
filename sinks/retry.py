"""Bounded retries of sink writes (transient errors only; async and sync variants), waiting `schema.retry`'s backoff."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar, cast

from schema.retry import Jitter, backoff_delay
from sinks.errors import SinkError, TransientSinkError, store_condition

log = logging.getLogger(__name__)

T = TypeVar("T")

# Maps a store exception to a SinkError, or to None when it is not the sink's to handle (it is then re-raised).
Classify = Callable[[Exception], SinkError | None]
# Told of every store call a sink makes (its retries included): the store, the operation (the first word of the
# call's description: "upsert_versioned", "hgetall", ...), the seconds it took and whether it succeeded. A worker's
# sensor feeds its Prometheus metrics; none by default.
StoreSensor = Callable[[str, str, float, bool], None]


@contextmanager
def sensed(sensor: StoreSensor | None, store: str, what: str) -> Iterator[None]:
    """Tell `sensor` how long the block took and whether it raised (around a sink's call with its retries)."""
    started = time.perf_counter()
    ok = False
    try:
        yield
        ok = True
    finally:
        if sensor is not None:
            sensor(store, what.split(" ", 1)[0], time.perf_counter() - started, ok)


@dataclass(frozen=True)
class RetryPolicy:
    """How sinks retry transient errors: `attempts` tries in all, delays doubling from `base_delay_s`."""

    attempts: int = 5
    base_delay_s: float = 0.2
    max_delay_s: float = 5.0

    def __post_init__(self) -> None:
        _check_policy(self.attempts, self.base_delay_s, self.max_delay_s)


async def retry(
    op: Callable[[], Awaitable[T]],
    *,
    attempts: int,
    base_delay_s: float,
    max_delay_s: float,
    classify: Classify,
    what: str = "sink write",
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    jitter: Jitter = random.uniform,
) -> T:
    """Await `op()` until it succeeds; retry transient errors, raise the rest at once.

    Raises TransientSinkError (chained to the last error) after `attempts` transient failures, PermanentSinkError
    and StoreAccessError at once, and re-raises unchanged any exception neither `sinks.errors.store_condition` nor
    `classify` claims. Cancellation is never retried.
    """
    _check_policy(attempts, base_delay_s, max_delay_s)
    for attempt in range(1, attempts + 1):
        try:
            return await op()
        except Exception as exc:
            outcome = _next_delay(exc, attempt, attempts, base_delay_s, max_delay_s, classify, what, jitter)
            if outcome is exc:
                raise
            if isinstance(outcome, Exception):
                raise outcome from exc
            delay = outcome
        await sleep(delay)
    raise AssertionError("unreachable: the last attempt returns or raises")


def retry_sync(
    op: Callable[[], T],
    *,
    attempts: int,
    base_delay_s: float,
    max_delay_s: float,
    classify: Classify,
    what: str = "sink write",
    sleep: Callable[[float], None] = time.sleep,
    jitter: Jitter = random.uniform,
) -> T:
    """The blocking twin of `retry`, for pymongo calls that run in a worker thread (asyncio.to_thread)."""
    _check_policy(attempts, base_delay_s, max_delay_s)
    for attempt in range(1, attempts + 1):
        try:
            return op()
        except Exception as exc:
            outcome = _next_delay(exc, attempt, attempts, base_delay_s, max_delay_s, classify, what, jitter)
            if outcome is exc:
                raise
            if isinstance(outcome, Exception):
                raise outcome from exc
            delay = outcome
        sleep(delay)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _next_delay(
    exc: Exception,
    attempt: int,
    attempts: int,
    base_delay_s: float,
    max_delay_s: float,
    classify: Classify,
    what: str,
    jitter: Jitter,
) -> float | Exception:
    """How long to wait before the next attempt, or the exception the caller must see now (`exc` = unchanged)."""
    # Conditions that mean the same for every store come first (sinks.errors): a refused login surfaces at once
    # instead of being retried, and a store refusing all writes (MISCONF) is not mistaken for a bad document.
    error = exc if isinstance(exc, SinkError) else store_condition(exc) or classify(exc)
    if error is None:
        return exc
    if not isinstance(error, TransientSinkError):
        return error
    if attempt >= attempts:
        return TransientSinkError(f"{what} failed after {attempts} attempts: {error}")
    delay = backoff_delay(attempt, base_delay_s, max_delay_s, jitter)
    log.warning("%s failed (attempt %d/%d), retrying in %.2fs: %s", what, attempt, attempts, delay, error)
    return delay


def _check_policy(attempts: int, base_delay_s: float, max_delay_s: float) -> None:
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    if base_delay_s < 0 or max_delay_s < base_delay_s:
        raise ValueError(f"need 0 <= base_delay_s <= max_delay_s, got {base_delay_s} and {max_delay_s}")


async def bounded_all(calls: Sequence[Callable[[], Awaitable[T]]], limit: int) -> list[T]:
    """Run `calls` (each starts one store call), at most `limit` at once; their results in order.

    After a failure no further call starts: the store is likely down, and each would wait out its own timeout (five
    seconds of server selection on MongoDB) before the caller could retry the batch. The calls in flight end first,
    then the first failure is raised, so none is left running behind the caller's retry."""
    gate = asyncio.Semaphore(limit)
    failures: list[BaseException] = []

    async def one(call: Callable[[], Awaitable[T]]) -> T | None:
        async with gate:
            if failures:
                return None
            try:
                return await call()
            except BaseException as exc:
                failures.append(exc)
                raise

    outcomes = await asyncio.gather(*(one(call) for call in calls), return_exceptions=True)
    if failures:
        raise failures[0]
    return cast(list[T], outcomes)
