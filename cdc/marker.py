"""Bookkeeping off the relay's hot path: the marker that records the ids Kafka committed (binlog mode), marking
rows published (polling mode), and the janitor's clean-up of what was published long enough ago."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import time
from typing import Any

import pymysql

from cdc.bookkeeping import clean_up, record_published
from cdc.connections import marker_connection, relay_connection
from cdc.position import IdRanges
from schema.mysql import OUTBOX_TABLE
from schema.retry import backoff_delay
from schema.settings import Settings

log = logging.getLogger(__name__)

# The marker records at most this often: the relay commits a Kafka transaction every few milliseconds under a steady
# trickle (68 a second at 1,000 single-row commits/s), and each record is a durable MySQL commit that the relay's own
# binlog reader then reads back. Recording later costs nothing but staleness: the Kafka position lists what is not
# recorded yet (`unmarked`).
MARK_INTERVAL_S = 0.25


def delete_published(settings: Settings, chunk: int = 10_000) -> int:
    """The janitor: remove outbox rows published longer ago than the retention, by partition where the outbox is
    partitioned, else by row (`cdc.bookkeeping.clean_up`)."""
    with relay_connection(settings.relay_mysql) as conn:
        return clean_up(conn, settings.relay_retention_hours, settings.relay_partition_ids, chunk)


def mark_published(conn: Any, ranges: IdRanges, chunk: int = 500) -> int:
    """Set published/published_at on the outbox rows in `ranges` (inclusive id runs) that are not marked yet."""
    marked = 0
    with conn.cursor() as cur:
        for i in range(0, len(ranges), chunk):
            part = ranges[i : i + chunk]
            where = " OR ".join(["id BETWEEN %s AND %s"] * len(part))
            marked += int(
                cur.execute(
                    f"UPDATE {OUTBOX_TABLE} SET published = TRUE, published_at = NOW(3) "
                    f"WHERE published = FALSE AND ({where})",
                    [x for r in part for x in r],
                )
            )
    return marked


class PublishedMarker:
    """Records the ids Kafka committed as runs in integration_outbox_published (`cdc.bookkeeping`), in batches, off
    the hot path. They are bookkeeping for the janitor, resnapshots and operators; the Kafka position is the truth,
    and it lists the ids not yet confirmed here (`unmarked`), so no record is lost to a crash."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self._queue: collections.deque[IdRanges] = collections.deque()
        self._ranges = 0
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._conn: Any = None
        self._tail: tuple[int, int] | None = None  # the run recorded last (extended while ids follow on)

    def add(self, ranges: IdRanges) -> None:
        self._queue.append(ranges)
        self._ranges += len(ranges)
        self._drained.clear()
        self._wake.set()

    def unmarked(self) -> IdRanges:
        return tuple(r for ranges in self._queue for r in ranges)

    async def wait_below(self, limit: int, stop: asyncio.Event) -> None:
        while self._ranges > max(limit, 0) and not stop.is_set():
            log.warning("mark-published backlog at %d id ranges: waiting for MySQL to publish more", self._ranges)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._drained.wait(), 5)

    async def run(self, stop: asyncio.Event) -> None:
        failures = 0
        last = -math.inf
        while True:
            await _first_of(self._wake, stop, timeout=0.5)
            pause = last + MARK_INTERVAL_S - time.monotonic()
            if pause > 0 and not stop.is_set():
                await _first_of(stop, timeout=pause)  # gather more commits into this record; not past a stop
            self._wake.clear()
            if self._queue:
                n = len(self._queue)
                ranges = tuple(r for i, rs in enumerate(self._queue) if i < n for r in rs)
                try:
                    await asyncio.to_thread(self._mark, ranges)
                except pymysql.MySQLError as exc:
                    failures += 1
                    log.warning("marking %d id ranges published failed (will retry): %s", len(ranges), exc)
                    await asyncio.sleep(backoff_delay(failures, 0.5, 5.0))
                else:
                    failures = 0
                    last = time.monotonic()
                    for _ in range(n):
                        self._ranges -= len(self._queue.popleft())
                    if not self._queue:
                        self._drained.set()
            if stop.is_set() and not self._queue:
                if self._conn is not None:
                    await asyncio.to_thread(self._conn.close)
                return

    def _mark(self, ranges: IdRanges) -> None:
        # One long-lived connection: connecting per batch cost more than the UPDATE itself.
        if self._conn is None:
            self._conn = marker_connection(self.s.relay_mysql)
        try:
            self._tail = record_published(self._conn, self.s.relay_source_name, ranges, self._tail)
        except pymysql.MySQLError:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):
                conn.close()
            raise


async def _first_of(*events: asyncio.Event, timeout: float) -> None:
    """Until one of `events` is set, or `timeout` seconds."""
    if any(e.is_set() for e in events):
        return
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
