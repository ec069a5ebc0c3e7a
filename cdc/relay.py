"""The CDC relay: binlog -> Kafka, exactly once for read_committed consumers, crash-safe.

Loop: read outbox rows from `BinlogSource`, map them to records (`cdc.envelope`), and publish each batch together
with the position after its last row in one Kafka transaction. Only a committed transaction moves the position.
Any failure (MySQL or Kafka down, a commit with an unknown outcome) tears down source and producer, backs off,
reloads the committed position from Kafka and resumes there: nothing is lost and nothing is sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pymysql
from aiokafka.errors import KafkaError

from cdc.bookkeeping import record_published, select_unpublished
from cdc.connections import polling_connection, relay_connection
from cdc.decoder import Decoded, ProcessBinlogSource
from cdc.envelope import OutboxRow, Record, to_record
from cdc.errors import CdcError, FencedError, PositionPurgedError, SourceConfigError, SourceSeqRegressionError
from cdc.leader import LeaderLock
from cdc.marker import PublishedMarker, delete_published, mark_published
from cdc.metrics import RelayMetrics
from cdc.position import (
    MAX_ROWS_PER_TXN,
    MAX_UNMARKED_RANGES,
    IdRanges,
    Position,
    SeqClock,
    id_ranges,
    mariadb_gtid_seq,
    mysql_gtid_seq,
)
from cdc.publisher import TransactionalPublisher, load_position, max_published_source_seq
from cdc.source import BinlogSource, EpochStarted, Idle, TxnEnd, outbox_row_from_values
from schema.mysql import connect, is_mariadb
from schema.retry import backoff_delay
from schema.settings import Settings
from schema.topics import TopicNames, missing_topics, topic_specs

log = logging.getLogger(__name__)

BACKOFF_START_S, BACKOFF_MAX_S = 0.5, 10.0
IDLE_POSITION_FLUSH_S = 1.0
PROGRESS_LOG_S = 10.0


@dataclass
class StartOptions:
    from_now: bool = False  # no backfill: start at the current binlog position
    resnapshot: bool = False  # ignore the committed position: backfill unpublished rows, restart from a snapshot


class Relay:
    def __init__(
        self, settings: Settings, options: StartOptions | None = None, metrics: RelayMetrics | None = None
    ) -> None:
        self.s = settings
        self.options = options or StartOptions()
        self.metrics = metrics or RelayMetrics()
        self.topics = TopicNames.from_settings(settings)
        self.position_topic = self.topics.position
        self.transactional_id = f"tenderhub-relay-{settings.relay_source_name}"
        self._stop = asyncio.Event()
        self._lock_lost = asyncio.Event()
        # Binlog mode records runs of published ids after the Kafka commit; polling mode marks rows inside its own
        # transaction.
        self._marker = (
            PublishedMarker(settings) if settings.relay_mark_published and settings.relay_mode == "binlog" else None
        )
        self._marker_task: asyncio.Task[None] | None = None
        self.position: Position | None = None
        self._mariadb = True  # set from the server on first contact
        self._since_log, self._last_log = 0, time.monotonic()
        self.on_commit: Callable[[list[Record], Position], None] | None = None

    def request_stop(self) -> None:
        log.info("stop requested: flushing the current batch, then exiting")
        self._stop.set()

    # -- start-up --------------------------------------------------------------------------------------------

    async def run(self) -> None:
        lock = LeaderLock(self.s)
        await lock.acquire(self._stop)
        if self._stop.is_set():
            return
        janitor = asyncio.create_task(self._janitor_loop(), name="outbox-janitor")
        marker = asyncio.create_task(self._marker.run(self._stop), name="mark-published") if self._marker else None
        self._marker_task = marker
        failures = 0
        first = True
        try:
            while not self._stop.is_set():
                await lock.ensure(self._stop)
                if self._stop.is_set():
                    break
                self._lock_lost.clear()
                watcher = asyncio.create_task(lock.watch(self._lock_lost), name="leader-lock-watch")
                publisher = TransactionalPublisher(
                    self.s.kafka_bootstrap,
                    self.transactional_id,
                    self.position_topic,
                    self.s.relay_source_name,
                    self.s.relay_transaction_timeout_ms,
                )
                try:
                    await self._check_topics()
                    await publisher.start()
                    position = await self._initial_position(publisher, first)
                    first = False
                    await self._stream(publisher, position)
                    failures = 0
                except (FencedError, PositionPurgedError, SourceConfigError, SourceSeqRegressionError):
                    raise
                except (TimeoutError, OSError, pymysql.MySQLError, CdcError, KafkaError) as exc:
                    # Transient: a service restarting, a commit with an unknown outcome. Anything else is a bug
                    # and crashes the relay rather than retrying forever.
                    self._note_error(exc)
                finally:
                    watcher.cancel()
                    await publisher.stop()
                if not self._stop.is_set():
                    failures += 1
                    delay = backoff_delay(failures, BACKOFF_START_S, BACKOFF_MAX_S)
                    log.info("reconnecting in %.1f s from the last committed position", delay)
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), delay)
        finally:
            janitor.cancel()
            if marker is not None:
                self._stop.set()
                await asyncio.shield(marker)
            lock.release()

    async def _check_topics(self) -> None:
        """Topics are declared by `tenderhub migrate`, never auto-created: a missing one is a setup error."""
        missing = await missing_topics(self.s.kafka_bootstrap, topic_specs(self.s))
        if missing:
            raise SourceConfigError(
                f"Kafka topics {missing} do not exist. Fix: run `tenderhub migrate` (it declares them)."
            )

    def _note_error(self, exc: BaseException) -> None:
        pos = self.position.describe() if self.position else "(none)"
        log.warning("relay error at %s: %s: %s", pos, type(exc).__name__, exc)
        self.metrics.error(exc)

    async def _initial_position(self, publisher: TransactionalPublisher, first: bool) -> Position:
        committed = await load_position(self.s.kafka_bootstrap, self.position_topic, self.s.relay_source_name)
        if committed is not None:
            # Marks are bookkeeping that a crash can lose (SIGKILL, a commit whose outcome was unknown, a dead
            # marker): the committed position lists what Kafka holds but MySQL may not show yet. Mark it first,
            # so the janitor can clean up and a resnapshot never publishes those rows again.
            await asyncio.to_thread(self._heal_marks, committed)
        if self.s.relay_mode == "polling":
            position = committed or await self._fresh_position(Position("", 0))
            clock = position.clock()
            clock.prepare("", position.seq + 1)
            position = replace(position, epoch=clock.epoch)
            log.info("polling mode: starting after batch %d (%s)", position.seq, position.describe())
            self.position = position
            return position
        self._mariadb = await asyncio.to_thread(self._detect_flavor)
        if committed is not None and not (first and self.options.resnapshot):
            log.info("resuming from the committed position %s", committed.describe())
            self.position = committed
            return committed
        # No position to resume (first start, lost position topic) or a resnapshot: numbering must continue above
        # everything already published, whatever the binlog's numbers are now (RESET MASTER, a new server).
        floor = committed or await self._fresh_position(Position("", 0))
        if self.options.from_now and first:
            position = await asyncio.to_thread(self._current_position, floor.clock())
            await publisher.publish([], position)
            self._committed([], position)
            log.info("starting from now at %s (no backfill)", position.describe())
        else:
            position = await self._backfill(publisher, floor.clock())
        self.position = position
        return position

    async def _fresh_position(self, position: Position) -> Position:
        """A start without a committed position: if the topics already hold events (the position topic was lost
        or its source renamed), numbering continues above the highest source_seq they hold."""
        topics = [*self.topics.data.values(), self.topics.dlq]
        highest = await max_published_source_seq(self.s.kafka_bootstrap, topics)
        if highest >= 0:
            log.warning(
                "no committed position, but the topics hold events up to source_seq %d: numbering continues above it",
                highest,
            )
        return replace(position, last_source_seq=highest)

    def _heal_marks(self, committed: Position) -> None:
        ids_ranges = committed.unmarked + id_ranges(list(committed.last_ids))
        if not ids_ranges or not (self.s.relay_mark_published or self.s.relay_mode == "polling"):
            return
        with relay_connection(self.s.relay_mysql) as conn:
            if self.s.relay_mode == "polling":
                marked = mark_published(conn, ids_ranges)
                log.info("marked %d committed outbox rows published (from the committed position)", marked)
            else:
                record_published(conn, self.s.relay_source_name, ids_ranges)
                log.info("recorded %d committed id runs as published (from the committed position)", len(ids_ranges))

    def _detect_flavor(self) -> bool:
        with connect(self.s.relay_mysql) as conn:
            return is_mariadb(conn)

    def _current_position(self, clock: SeqClock) -> Position:
        with connect(self.s.relay_mysql) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT @@gtid_binlog_pos, ''" if self._mariadb else "SELECT @@global.gtid_executed, @@server_uuid"
            )
            row = cur.fetchone()
        gtid, space = (str(row[0] or ""), str(row[1] or "").lower()) if row else ("", "")
        seq = self._gtid_seq(gtid, space)
        clock.prepare(space, seq + 1)
        return Position(gtid, seq, epoch=clock.epoch, last_source_seq=clock.last)

    def _gtid_seq(self, gtid: str, space: str) -> int:
        return mariadb_gtid_seq(gtid, self.s.relay_gtid_domain) if self._mariadb else mysql_gtid_seq(gtid, space)

    def _snapshot(self, clock: SeqClock) -> tuple[Position, list[OutboxRow]]:
        """Unpublished outbox rows and the binlog position of the same consistent snapshot (no global lock on
        MariaDB)."""
        dsn = self.s.relay_mysql
        space = ""
        with relay_connection(dsn) as conn, conn.cursor() as cur:
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            if self._mariadb:
                # MariaDB reports the binlog position of a consistent snapshot: no global lock.
                cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                cur.execute("SHOW STATUS LIKE 'binlog_snapshot_%'")
                status = {str(k).lower(): str(v) for k, v in cur.fetchall()}
                if not status.get("binlog_snapshot_file"):
                    raise SourceConfigError("the server reports no binlog snapshot position: is log_bin on?")
                cur.execute(
                    "SELECT BINLOG_GTID_POS(%s, %s)",
                    (status["binlog_snapshot_file"], int(status["binlog_snapshot_position"])),
                )
                row = cur.fetchone()
                gtid = str(row[0] or "") if row else ""
            else:
                if not self.s.relay_mysql_snapshot_lock:
                    raise SourceConfigError(
                        "a first start or --resnapshot on MySQL reads the outbox under a brief global read lock, "
                        "and TENDERHUB_RELAY_MYSQL_SNAPSHOT_LOCK is false (the relay has no RELOAD). Fix: start "
                        "with --from-now, or set it to true and run `tenderhub migrate` to grant RELOAD."
                    )
                # MySQL has no snapshot status: hold a global read lock for the instant it takes to open the
                # snapshot and read gtid_executed (needs RELOAD).
                cur.execute("FLUSH TABLES WITH READ LOCK")
                try:
                    cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                    cur.execute("SELECT @@global.gtid_executed, @@server_uuid")
                    row = cur.fetchone()
                    gtid = str(row[0] or "") if row else ""
                    space = str(row[1] or "").lower() if row else ""
                finally:
                    cur.execute("UNLOCK TABLES")
            rows = select_unpublished(cur, self.s.relay_backfill_max_rows + 1)
            cur.execute("COMMIT")
        if len(rows) > self.s.relay_backfill_max_rows:
            raise CdcError(
                f"more than {self.s.relay_backfill_max_rows} unpublished outbox rows: raise "
                "TENDERHUB_RELAY_BACKFILL_MAX_ROWS (they are published in one Kafka transaction)"
            )
        seq = self._gtid_seq(gtid, space)
        # Backfilled rows were committed at or before the snapshot; streamed rows come after it. They take the
        # snapshot transaction's seq slot, in id order (their exact commit order is not recoverable).
        clock.prepare(space, seq)
        out = _outbox_rows(rows, seq, clock, space)
        clock.prepare(space, seq + 1)
        return Position(gtid, seq, epoch=clock.epoch, last_source_seq=clock.last), out

    async def _backfill(self, publisher: TransactionalPublisher, clock: SeqClock) -> Position:
        position, rows = await asyncio.to_thread(self._snapshot, clock)
        records = [to_record(r, self.topics) for r in rows]
        log.info(
            "backfill: publishing %d unpublished outbox rows, then streaming from %s", len(records), position.describe()
        )
        await self._publish(publisher, records, position)
        return position

    # -- streaming -------------------------------------------------------------------------------------------

    async def _stream(self, publisher: TransactionalPublisher, position: Position) -> None:
        if self.s.relay_mode == "polling":
            await self._poll(publisher, position)
            return
        args = (self.s.relay_mysql, position, self.s.relay_server_id, self.s.relay_heartbeat_s)
        source = (
            ProcessBinlogSource(*args, mariadb=self._mariadb, domain=self.s.relay_gtid_domain, topics=self.topics)
            if self.s.relay_decoder == "process"
            else BinlogSource(*args, mariadb=self._mariadb, domain=self.s.relay_gtid_domain)
        )
        source.start()
        await source.ready(60)
        log.info("tailing binlog from %s", position.describe())
        batch: list[Record] = []
        pending = position
        last_flush = time.monotonic()
        linger = self.s.relay_linger_ms / 1000
        try:
            while True:
                items = await source.get_many(linger if batch else IDLE_POSITION_FLUSH_S)
                for item in items:
                    if isinstance(item, BaseException):
                        raise item
                    if isinstance(item, Decoded | OutboxRow):
                        record = item.record if isinstance(item, Decoded) else to_record(item, self.topics)
                        _check_monotonic(record, pending)
                        batch.append(record)
                        pending = replace(
                            pending,
                            txn_seq=item.txn_seq,
                            rows_done=item.row_index + 1,
                            last_source_seq=record.source_seq,
                        )
                        if len(batch) >= self.s.relay_batch_rows:
                            await self._publish(publisher, batch, pending)
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
                if self._lock_lost.is_set():
                    raise CdcError("the leader lock was lost")
                self._check_marker()
                idle = not items or isinstance(items[-1], Idle)
                since = time.monotonic() - last_flush
                due = (
                    (batch and (idle or since >= linger))
                    or (pending != position and since >= IDLE_POSITION_FLUSH_S)
                    or self._stop.is_set()
                )
                if due and (batch or pending != position):
                    await self._publish(publisher, batch, pending)
                    position, batch, last_flush = pending, [], time.monotonic()
                if self._stop.is_set() and not batch:
                    return
        finally:
            source.stop()
            await asyncio.to_thread(source.join)

    def _check_marker(self) -> None:
        task = self._marker_task
        if task is not None and task.done() and not task.cancelled() and task.exception() is not None:
            # Its marks are safe (the committed position lists them); crash loudly rather than let them pile up.
            raise CdcError(f"the mark-published task died: {task.exception()!r}") from task.exception()

    # -- polling mode (servers without binlog access) ----------------------------------------------------------

    async def _poll(self, publisher: TransactionalPublisher, position: Position) -> None:
        """SELECT ... FOR UPDATE SKIP LOCKED a batch, publish it in a Kafka transaction whose position lists the
        batch's ids, mark it published, then commit MySQL. Order follows visibility, which follows commit order
        between batches; inside a batch rows go in id order."""
        conn = await asyncio.to_thread(polling_connection, self.s)
        # The first poll waits for row locks instead of skipping them: a relay killed mid-batch may still hold
        # some (until the server notices its connection is gone), and skipping them would publish later rows of
        # the same aggregate first. After that only uncommitted app inserts hold locks, and those are skipped.
        skip_locked = False
        clock = position.clock()
        try:
            while not self._stop.is_set():
                batch_no = position.seq + 1
                rows = await asyncio.to_thread(self._poll_lock_batch, conn, batch_no, clock, skip_locked)
                skip_locked = True
                if not rows:
                    await asyncio.to_thread(conn.rollback)
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), self.s.relay_poll_interval_ms / 1000)
                    continue
                records = [to_record(r, self.topics) for r in rows]
                ids = tuple(r.id for r in rows)
                last = max(clock.last, position.last_source_seq)
                new = Position("", batch_no, last_ids=ids, epoch=clock.epoch, last_source_seq=last)
                await publisher.publish(records, new)
                await asyncio.to_thread(self._poll_mark_and_commit, conn, ids)
                self._committed(records, new)
                position = new
        finally:
            await asyncio.to_thread(conn.close)

    def _poll_lock_batch(self, conn: Any, batch_no: int, clock: SeqClock, skip_locked: bool) -> list[OutboxRow]:
        with conn.cursor() as cur:
            # Rows a binlog-mode relay recorded as published are not polled again (a deployment that switched modes).
            lock = "FOR UPDATE SKIP LOCKED" if skip_locked else "FOR UPDATE"
            rows = select_unpublished(cur, self.s.relay_batch_rows, lock)
        return _outbox_rows(rows, batch_no, clock, "")

    def _poll_mark_and_commit(self, conn: Any, ids: tuple[int, ...]) -> None:
        mark_published(conn, id_ranges(list(ids)))
        conn.commit()

    async def _publish(self, publisher: TransactionalPublisher, batch: list[Record], position: Position) -> None:
        marker = self._marker
        new_ranges: IdRanges = ()
        if marker is not None:
            new_ranges = id_ranges([r.event_id for r in batch])
            # Never drop a mark: past the bound, wait for the marker (MySQL may be slow) instead of publishing on.
            await marker.wait_below(MAX_UNMARKED_RANGES - len(new_ranges), self._stop)
            position = replace(position, unmarked=marker.unmarked() + new_ranges)
        with self.metrics.commit_seconds.time():
            await publisher.publish(batch, position)
        if marker is not None and new_ranges:
            marker.add(new_ranges)
        self._committed(batch, position)

    def _committed(self, records: list[Record], position: Position) -> None:
        self.position = position
        self.metrics.committed(records, position)
        self._since_log += len(records)
        now = time.monotonic()
        if now - self._last_log >= PROGRESS_LOG_S:
            log.info(
                "committed %d events in %.0f s (%.0f/s), position %s, lag %.0f ms",
                self._since_log,
                now - self._last_log,
                self._since_log / (now - self._last_log),
                position.describe(),
                self.metrics.last_lag_ms,
            )
            self._since_log, self._last_log = 0, now
        if self.on_commit is not None:
            self.on_commit(records, position)

    async def _janitor_loop(self, every_s: float = 300.0) -> None:
        while True:
            try:
                deleted = await asyncio.to_thread(delete_published, self.s)
                if deleted:
                    log.info(
                        "janitor: deleted %d published outbox rows older than %.0f h",
                        deleted,
                        self.s.relay_retention_hours,
                    )
            except pymysql.MySQLError as exc:
                log.warning("janitor failed (will retry): %s", exc)
            await asyncio.sleep(every_s)


def _check_monotonic(record: Record, pending: Position) -> None:
    """The last line of defence for the clock: an event must number above the last one published (a DLQ record of
    a row that had no room in its transaction's slot may repeat the last number; it versions nothing)."""
    last = pending.last_source_seq
    if record.source_seq < last or (record.source_seq == last and record.dlq_reason is None):
        raise SourceSeqRegressionError(
            f"event {record.event_id} has source_seq {record.source_seq}, not above the last published {last} "
            f"(at {pending.describe()}). Remedy: `tenderhub cdc run --resnapshot` starts a new epoch."
        )


_COLUMNS = ("id", "event_type", "aggregate_type", "aggregate_id", "schema_version", "payload", "created_at")


def _outbox_rows(rows: Any, txn_seq: int, clock: SeqClock, space: str) -> list[OutboxRow]:
    """Rows read from the table (backfill, polling) in id order, numbered inside one seq slot. A row that cannot
    become an event (a zero date, no room left in the slot) is kept as a defect for the DLQ."""
    out = []
    for i, r in enumerate(rows):
        values = dict(zip(_COLUMNS, r, strict=True))
        if i >= MAX_ROWS_PER_TXN:
            defect: str | None = f"more than {MAX_ROWS_PER_TXN} rows in one batch; row {i} has no source_seq"
            seq = clock.last
        else:
            defect, seq = None, clock.assign(space, txn_seq, i, may_start_epoch=False)
        out.append(outbox_row_from_values(values, txn_seq, i, seq, defect))
    return out
