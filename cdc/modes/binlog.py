"""Binlog mode: start from the committed position (healing its bookkeeping first), or from a consistent snapshot
(backfill) or from now; then tail the binlog, batching rows into Kafka transactions with the position after their
last row."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace

from cdc.bookkeeping import record_published
from cdc.connections import relay_connection
from cdc.decoder import Decoded, ProcessBinlogSource
from cdc.envelope import OutboxRow, Record, to_record
from cdc.errors import SourceSeqRegressionError
from cdc.modes import Host, fresh_position
from cdc.position import Position, SeqClock, id_ranges
from cdc.publisher import TransactionalPublisher
from cdc.snapshot import current_position, detect_flavor, snapshot
from cdc.source import BinlogSource, EpochStarted, Idle, TxnEnd

log = logging.getLogger(__name__)

# With nothing to publish, the position still moves on (heartbeats, other tables' transactions) at this pace.
IDLE_POSITION_FLUSH_S = 1.0


class BinlogMode:
    def __init__(self, host: Host) -> None:
        self.h = host
        self._mariadb = True  # set from the server on first contact

    async def start(self, publisher: TransactionalPublisher, committed: Position | None, first: bool) -> Position:
        if committed is not None:
            # Records are bookkeeping that a crash can lose (SIGKILL, a commit whose outcome was unknown, a dead
            # marker): the committed position lists what Kafka holds but MySQL may not show yet. Record it first,
            # so the janitor can clean up and a resnapshot never publishes those rows again.
            await asyncio.to_thread(self._heal, committed)
        self._mariadb = await asyncio.to_thread(detect_flavor, self.h.s)
        if committed is not None and not (first and self.h.options.resnapshot):
            log.info("resuming from the committed position %s", committed.describe())
            return committed
        # No position to resume (first start, lost position topic) or a resnapshot: numbering must continue above
        # everything already published, whatever the binlog's numbers are now (RESET MASTER, a new server).
        floor = committed or await fresh_position(self.h)
        if self.h.options.from_now and first:
            position = await asyncio.to_thread(current_position, self.h.s, self._mariadb, floor.clock())
            await publisher.publish([], position)
            self.h.committed([], position)
            log.info("starting from now at %s (no backfill)", position.describe())
            return position
        return await self._backfill(publisher, floor.clock())

    def _heal(self, committed: Position) -> None:
        ranges = committed.unmarked + id_ranges(list(committed.last_ids))
        if not ranges or not self.h.s.relay_mark_published:
            return
        with relay_connection(self.h.s.relay_mysql) as conn:
            record_published(conn, self.h.s.relay_source_name, ranges)
        log.info("recorded %d committed id runs as published (from the committed position)", len(ranges))

    async def _backfill(self, publisher: TransactionalPublisher, clock: SeqClock) -> Position:
        position, rows = await asyncio.to_thread(snapshot, self.h.s, self._mariadb, clock)
        records = [to_record(r, self.h.topics) for r in rows]
        log.info(
            "backfill: publishing %d unpublished outbox rows, then streaming from %s", len(records), position.describe()
        )
        await self.h.publish(publisher, records, position)
        return position

    async def stream(self, publisher: TransactionalPublisher, position: Position) -> None:
        s = self.h.s
        args = (s.relay_mysql, position, s.relay_server_id, s.relay_heartbeat_s)
        source = (
            ProcessBinlogSource(*args, mariadb=self._mariadb, domain=s.relay_gtid_domain, topics=self.h.topics)
            if s.relay_decoder == "process"
            else BinlogSource(*args, mariadb=self._mariadb, domain=s.relay_gtid_domain)
        )
        source.start()
        await source.ready(60)
        log.info("tailing binlog from %s", position.describe())
        batch: list[Record] = []
        pending = position
        last_flush = time.monotonic()
        linger, gap = s.relay_linger_ms / 1000, s.relay_commit_gap_ms / 1000
        try:
            while True:
                items = await source.get_many(wait_s(len(batch), time.monotonic() - last_flush, linger, gap))
                for item in items:
                    if isinstance(item, BaseException):
                        raise item
                    if isinstance(item, Decoded | OutboxRow):
                        record = item.record if isinstance(item, Decoded) else to_record(item, self.h.topics)
                        check_monotonic(record, pending)
                        batch.append(record)
                        pending = replace(
                            pending,
                            txn_seq=item.txn_seq,
                            rows_done=item.row_index + 1,
                            last_source_seq=record.source_seq,
                        )
                        if len(batch) >= s.relay_batch_rows:
                            await self.h.publish(publisher, batch, pending)
                            position, batch, last_flush = pending, [], time.monotonic()
                    elif isinstance(item, TxnEnd):
                        pending = replace(pending, gtid=item.gtid_state, seq=item.seq, txn_seq=None, rows_done=0)
                    elif isinstance(item, EpochStarted):
                        log.warning(
                            "source_seq epoch %d starts (sequence space %r changed at %s): numbering continues "
                            "above %d",
                            item.epoch.number,
                            item.epoch.space,
                            pending.describe(),
                            pending.last_source_seq,
                        )
                        pending = replace(pending, epoch=item.epoch)
                self.h.check()
                due = flush_due(
                    rows=len(batch),
                    moved=pending != position,
                    idle=not items or isinstance(items[-1], Idle),
                    since=time.monotonic() - last_flush,
                    linger=linger,
                    gap=gap,
                    stopping=self.h.stop.is_set(),
                )
                if due:
                    await self.h.publish(publisher, batch, pending)
                    position, batch, last_flush = pending, [], time.monotonic()
                if self.h.stop.is_set() and not batch:
                    return
        finally:
            source.stop()
            await asyncio.to_thread(source.join)


def flush_due(*, rows: int, moved: bool, idle: bool, since: float, linger: float, gap: float, stopping: bool) -> bool:
    """Whether the batch (`rows` records), or with no rows the position alone (`moved`), goes out now, `since`
    seconds after the last Kafka transaction ended. Rows go when the binlog has nothing more for now (`idle`) or
    after `linger`, never before `gap` (a full batch goes out before this is asked); the position alone once a
    second; everything when stopping."""
    if not rows and not moved:
        return False
    if stopping:
        return True
    if rows and (since >= max(linger, gap) or (idle and since >= gap)):
        return True
    return moved and since >= IDLE_POSITION_FLUSH_S


def wait_s(rows: int, since: float, linger: float, gap: float) -> float:
    """How long to wait for the binlog's next items: with a batch held back by `gap`, until the gap ends (new rows
    still wake the loop at once); with a batch, `linger`; with none, the idle position pace."""
    if not rows:
        return IDLE_POSITION_FLUSH_S
    return gap - since if since < gap else linger


def check_monotonic(record: Record, pending: Position) -> None:
    """The last line of defence for the clock: an event must number above the last one published (a DLQ record of
    a row that had no room in its transaction's slot may repeat the last number; it versions nothing)."""
    last = pending.last_source_seq
    if record.source_seq < last or (record.source_seq == last and record.dlq_reason is None):
        raise SourceSeqRegressionError(
            f"event {record.event_id} has source_seq {record.source_seq}, not above the last published {last} "
            f"(at {pending.describe()}). Remedy: `tenderhub cdc run --resnapshot` starts a new epoch."
        )
