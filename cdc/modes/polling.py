"""Polling mode, for servers whose binlog the relay may not read: SELECT ... FOR UPDATE SKIP LOCKED a batch of
unpublished rows, publish it in a Kafka transaction whose position lists the batch's ids, mark it published, then
commit MySQL. A crash between the two commits is repaired at the next start (`start` marks what the committed
position lists). Order follows visibility, which follows commit order between batches; inside a batch rows go in
id order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace
from typing import Any

from cdc.bookkeeping import select_unpublished
from cdc.connections import polling_connection, relay_connection
from cdc.envelope import OutboxRow, to_record
from cdc.marker import mark_published
from cdc.modes import Host, fresh_position
from cdc.position import Position, SeqClock, id_ranges
from cdc.publisher import TransactionalPublisher
from cdc.snapshot import outbox_rows

log = logging.getLogger(__name__)


class PollingMode:
    def __init__(self, host: Host) -> None:
        self.h = host

    async def start(self, publisher: TransactionalPublisher, committed: Position | None, first: bool) -> Position:
        if committed is not None:
            await asyncio.to_thread(self._heal, committed)
        position = committed or await fresh_position(self.h)
        clock = position.clock()
        clock.prepare("", position.seq + 1)
        position = replace(position, epoch=clock.epoch)
        log.info("polling mode: starting after batch %d (%s)", position.seq, position.describe())
        return position

    def _heal(self, committed: Position) -> None:
        ranges = committed.unmarked + id_ranges(list(committed.last_ids))
        if not ranges:
            return
        with relay_connection(self.h.s.relay_mysql) as conn:
            marked = mark_published(conn, ranges)
        log.info("marked %d committed outbox rows published (from the committed position)", marked)

    async def stream(self, publisher: TransactionalPublisher, position: Position) -> None:
        conn = await asyncio.to_thread(polling_connection, self.h.s)
        # The first poll waits for row locks instead of skipping them: a relay killed mid-batch may still hold
        # some (until the server notices its connection is gone), and skipping them would publish later rows of
        # the same aggregate first. After that only uncommitted app inserts hold locks, and those are skipped.
        skip_locked = False
        clock = position.clock()
        try:
            while not self.h.stop.is_set():
                self.h.check()
                batch_no = position.seq + 1
                rows = await asyncio.to_thread(self._lock_batch, conn, batch_no, clock, skip_locked)
                skip_locked = True
                if not rows:
                    await asyncio.to_thread(conn.rollback)
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self.h.stop.wait(), self.h.s.relay_poll_interval_ms / 1000)
                    continue
                records = [to_record(r, self.h.topics) for r in rows]
                ids = tuple(r.id for r in rows)
                last = max(clock.last, position.last_source_seq)
                new = Position("", batch_no, last_ids=ids, epoch=clock.epoch, last_source_seq=last)
                await publisher.publish(records, new)
                await asyncio.to_thread(self._mark_and_commit, conn, ids)
                self.h.committed(records, new)
                position = new
        finally:
            await asyncio.to_thread(conn.close)

    def _lock_batch(self, conn: Any, batch_no: int, clock: SeqClock, skip_locked: bool) -> list[OutboxRow]:
        with conn.cursor() as cur:
            # Rows a binlog-mode relay recorded as published are not polled again (a deployment that switched modes).
            lock = "FOR UPDATE SKIP LOCKED" if skip_locked else "FOR UPDATE"
            rows = select_unpublished(cur, self.h.s.relay_batch_rows, lock)
        return outbox_rows(rows, batch_no, clock, "")

    def _mark_and_commit(self, conn: Any, ids: tuple[int, ...]) -> None:
        mark_published(conn, id_ranges(list(ids)))
        conn.commit()
