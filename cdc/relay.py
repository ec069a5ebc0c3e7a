"""The CDC relay: binlog -> Kafka, exactly once for read_committed consumers, crash-safe.

Loop: read outbox rows from `BinlogSource`, map them to records (`cdc.envelope`), and publish each batch together
with the position after its last row in one Kafka transaction. Only a committed transaction moves the position.
Any failure (MySQL or Kafka down, a commit with an unknown outcome) tears down source and producer, backs off,
reloads the committed position from Kafka and resumes there: nothing is lost and nothing is sent twice.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import pymysql
from aiokafka.errors import KafkaError

from cdc.bookkeeping import clean_up, record_published, select_unpublished
from cdc.decoder import Decoded, ProcessBinlogSource
from cdc.envelope import OutboxRow, Record, to_record
from cdc.errors import CdcError, FencedError, PositionPurgedError, SourceConfigError, SourceSeqRegressionError
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
from schema.mysql import OUTBOX_TABLE, connect, is_mariadb
from schema.retry import backoff_delay
from schema.settings import MysqlDsn, Settings
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
        with _relay_connection(self.s.relay_mysql) as conn:
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
        with _relay_connection(dsn) as conn, conn.cursor() as cur:
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
        conn = await asyncio.to_thread(_polling_connection, self.s)
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


# Every relay session reads and writes timestamps in UTC: `occurred_at`, lag and the janitor's cut-off must not
# depend on the server's time zone (created_at is a TIMESTAMP, converted to the session's zone on read).
_UTC_INIT = "SET time_zone = '+00:00'"


def _transactional_connection(dsn: MysqlDsn) -> Any:
    conn = pymysql.connect(
        **dsn.pymysql_kwargs(), database=dsn.database, autocommit=False, charset="utf8mb4", init_command=_UTC_INIT
    )
    with conn.cursor() as cur:
        # No gap locks: a polling batch held open across the Kafka commit must not stall the app's inserts.
        cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
    return conn


def _marker_connection(dsn: MysqlDsn) -> Any:
    """Autocommit: each run is recorded in its own statement. The runs never touch outbox rows, so the marker does not
    wait for a transaction the relay read from the binlog before InnoDB committed it."""
    return pymysql.connect(
        **dsn.pymysql_kwargs(), database=dsn.database, autocommit=True, charset="utf8mb4", init_command=_UTC_INIT
    )


def _polling_connection(settings: Settings) -> Any:
    conn = _transactional_connection(settings.relay_mysql)
    with conn.cursor() as cur:
        # A paused leader (SIGSTOP, a frozen VM) must not keep its batch's row locks for the server's default
        # wait_timeout (8 h): the server drops this session, and with it the locks, once it is idle as long as the
        # leader lock's bound. The loop talks to the server at least every poll interval while it is alive.
        cur.execute("SET SESSION wait_timeout = %s", (settings.relay_lock_timeout_s,))
        # The first poll of a new leader waits on the old one's locks at most this long before it retries.
        cur.execute("SET SESSION innodb_lock_wait_timeout = %s", (settings.relay_lock_timeout_s * 2,))
    return conn


@contextlib.contextmanager
def _relay_connection(dsn: MysqlDsn) -> Iterator[Any]:
    conn = pymysql.connect(
        **dsn.pymysql_kwargs(),
        database=dsn.database,
        autocommit=True,
        charset="utf8mb4",
        connect_timeout=10,
        init_command=_UTC_INIT,
    )
    try:
        yield conn
    finally:
        conn.close()


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


def delete_published(settings: Settings, chunk: int = 10_000) -> int:
    """The janitor: remove outbox rows published longer ago than the retention, by partition where the outbox is
    partitioned, else by row (`cdc.bookkeeping.clean_up`)."""
    with _relay_connection(settings.relay_mysql) as conn:
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
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.5)
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
            self._conn = _marker_connection(self.s.relay_mysql)
        try:
            self._tail = record_published(self._conn, self.s.relay_source_name, ranges, self._tail)
        except pymysql.MySQLError:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):
                conn.close()
            raise


class LeaderLock:
    """Exactly one active relay per source: a MySQL named lock held on a dedicated connection. A standby waits
    for it. The lock alone cannot stop a paused relay that wakes up; the shared transactional id does that."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.name = f"tenderhub_relay_{settings.relay_source_name}"
        self._conn: Any = None

    async def acquire(self, stop: asyncio.Event, poll_s: float = 1.0) -> None:
        announced = False
        while not stop.is_set():
            try:
                if await asyncio.to_thread(self._try):
                    log.info("leader lock %s acquired: this relay is active", self.name)
                    return
            except pymysql.MySQLError as exc:
                log.warning("cannot reach MySQL for the leader lock (%s); retrying", exc)
                self._close()
            if not announced:
                log.info("leader lock %s is held by another relay: standing by", self.name)
                announced = True
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), poll_s)

    def _try(self) -> bool:
        if self._conn is None:
            self._conn = pymysql.connect(**self.s.relay_mysql.pymysql_kwargs(), autocommit=True, connect_timeout=5)
            with self._conn.cursor() as cur:
                # The server drops this connection (and so the lock) once it is idle this long: a relay that is
                # paused (SIGSTOP, a long GC, a frozen VM) stops pinging and a standby takes over.
                cur.execute("SET SESSION wait_timeout = %s", (self.s.relay_lock_timeout_s,))
        with self._conn.cursor() as cur:
            cur.execute("SELECT GET_LOCK(%s, 0)", (self.name,))
            row = cur.fetchone()
        return bool(row and row[0] == 1)

    def holds(self) -> bool:
        """Is the lock still held by this relay's connection? (Also keeps that connection alive.)"""
        if self._conn is None:
            return False
        try:
            with self._conn.cursor() as cur:
                cur.execute("SELECT IS_USED_LOCK(%s) = CONNECTION_ID()", (self.name,))
                row = cur.fetchone()
        except pymysql.MySQLError:
            self._close()
            return False
        return bool(row and row[0] == 1)

    async def ensure(self, stop: asyncio.Event) -> None:
        """Re-acquire after a lost connection (e.g. MySQL restarted). Safe: Kafka fencing guards the overlap."""
        if not await asyncio.to_thread(self.holds):
            await self.acquire(stop)

    async def watch(self, lost: asyncio.Event) -> None:
        every_s = self.s.relay_lock_timeout_s / 4
        while True:
            await asyncio.sleep(every_s)
            if not await asyncio.to_thread(self.holds):
                log.warning("leader lock %s lost; pausing publication until it is held again", self.name)
                lost.set()

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(pymysql.MySQLError), self._conn.cursor() as cur:
                cur.execute("SELECT RELEASE_LOCK(%s)", (self.name,))
            self._close()

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
