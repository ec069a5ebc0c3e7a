"""The CDC relay: binlog -> Kafka, exactly once for read_committed consumers, crash-safe.

Loop: read outbox rows from `BinlogSource`, map them to records (`cdc.envelope`), and publish each batch together
with the position after its last row in one Kafka transaction. Only a committed transaction moves the position.
Any failure (MySQL or Kafka down, a commit with an unknown outcome) tears down source and producer, backs off,
reloads the committed position from Kafka and resumes there: nothing is lost and nothing is sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pymysql
from aiokafka.errors import KafkaError

from cdc.envelope import OutboxRow, Record, to_record
from cdc.errors import CdcError, FencedError, PositionPurgedError, SourceConfigError
from cdc.metrics import RelayMetrics
from cdc.position import Position, mariadb_gtid_seq, mysql_gtid_seq, source_seq
from cdc.publisher import TransactionalPublisher, load_position
from cdc.source import BinlogSource, Idle, TxnEnd
from schema.mysql import OUTBOX_TABLE, connect, is_mariadb
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
        # Binlog mode marks rows after the Kafka commit; polling mode marks them inside its own transaction.
        self._marker = (
            PublishedMarker(settings) if settings.relay_mark_published and settings.relay_mode == "binlog" else None
        )
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
        backoff = BACKOFF_START_S
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
                    backoff = BACKOFF_START_S
                except (FencedError, PositionPurgedError, SourceConfigError):
                    raise
                except (TimeoutError, OSError, pymysql.MySQLError, CdcError, KafkaError) as exc:
                    # Transient: a service restarting, a commit with an unknown outcome. Anything else is a bug
                    # and crashes the relay rather than retrying forever.
                    self._note_error(exc)
                finally:
                    watcher.cancel()
                    await publisher.stop()
                if not self._stop.is_set():
                    log.info("reconnecting in %.1f s from the last committed position", backoff)
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX_S)
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
        if self.s.relay_mode == "polling":
            committed = await load_position(self.s.kafka_bootstrap, self.position_topic, self.s.relay_source_name)
            position = committed or Position("", 0)
            if position.last_ids:
                # The last batch may have been committed to Kafka but not marked in MySQL: mark it now.
                await asyncio.to_thread(self._poll_conn_mark, list(position.last_ids))
            log.info("polling mode: starting after batch %d", position.seq)
            self.position = position
            return position
        self._mariadb = await asyncio.to_thread(self._detect_flavor)
        if not (first and self.options.resnapshot):
            committed = await load_position(self.s.kafka_bootstrap, self.position_topic, self.s.relay_source_name)
            if committed is not None:
                log.info("resuming from the committed position %s", committed.describe())
                self.position = committed
                return committed
        if self.options.from_now and first:
            position = await asyncio.to_thread(self._current_position)
            await publisher.publish([], position)
            self._committed([], position)
            log.info("no committed position: starting from now at %s (no backfill)", position.describe())
        else:
            position = await self._backfill(publisher)
        self.position = position
        return position

    def _detect_flavor(self) -> bool:
        with connect(self.s.relay_mysql) as conn:
            return is_mariadb(conn)

    def _current_position(self) -> Position:
        with connect(self.s.relay_mysql) as conn, conn.cursor() as cur:
            cur.execute("SELECT @@gtid_binlog_pos" if self._mariadb else "SELECT @@global.gtid_executed")
            row = cur.fetchone()
        gtid = str(row[0] if row else "")
        return Position(gtid, self._gtid_seq(gtid))

    def _gtid_seq(self, gtid: str) -> int:
        return mariadb_gtid_seq(gtid, 0) if self._mariadb else mysql_gtid_seq(gtid)

    def _snapshot(self) -> tuple[Position, list[OutboxRow]]:
        """Unpublished outbox rows and the binlog position of the same consistent snapshot (no global lock)."""
        dsn = self.s.relay_mysql
        with connect(dsn, dsn.database) as conn, conn.cursor() as cur:
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
                # MySQL has no snapshot status: hold a global read lock for the instant it takes to open the
                # snapshot and read gtid_executed (needs RELOAD).
                cur.execute("FLUSH TABLES WITH READ LOCK")
                try:
                    cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                    cur.execute("SELECT @@global.gtid_executed")
                    row = cur.fetchone()
                    gtid = str(row[0] or "") if row else ""
                finally:
                    cur.execute("UNLOCK TABLES")
            cur.execute(f"{SELECT_UNPUBLISHED} LIMIT %s", (self.s.relay_backfill_max_rows + 1,))
            rows = cur.fetchall()
            cur.execute("COMMIT")
        if len(rows) > self.s.relay_backfill_max_rows:
            raise CdcError(
                f"more than {self.s.relay_backfill_max_rows} unpublished outbox rows: raise "
                "TENDERHUB_RELAY_BACKFILL_MAX_ROWS (they are published in one Kafka transaction)"
            )
        seq = self._gtid_seq(gtid)
        # Backfilled rows were committed at or before the snapshot; streamed rows come after it. They take the
        # snapshot transaction's seq slot, in id order (their exact commit order is not recoverable).
        return Position(gtid, seq), _outbox_rows(rows, seq)

    async def _backfill(self, publisher: TransactionalPublisher) -> Position:
        position, rows = await asyncio.to_thread(self._snapshot)
        records = [to_record(r, self.topics) for r in rows]
        log.info(
            "backfill: publishing %d unpublished outbox rows, then streaming from %s", len(records), position.describe()
        )
        await publisher.publish(records, position)
        self._committed(records, position)
        return position

    # -- streaming -------------------------------------------------------------------------------------------

    async def _stream(self, publisher: TransactionalPublisher, position: Position) -> None:
        if self.s.relay_mode == "polling":
            await self._poll(publisher, position)
            return
        source = BinlogSource(
            self.s.relay_mysql, position, self.s.relay_server_id, self.s.relay_heartbeat_s, mariadb=self._mariadb
        )
        source.start()
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
                    if isinstance(item, OutboxRow):
                        batch.append(to_record(item, self.topics))
                        pending = Position(pending.gtid, pending.seq, item.txn_seq, item.row_index + 1)
                        if len(batch) >= self.s.relay_batch_rows:
                            await self._publish(publisher, batch, pending)
                            position, batch, last_flush = pending, [], time.monotonic()
                    elif isinstance(item, TxnEnd):
                        pending = Position(item.gtid_state, item.seq)
                if self._lock_lost.is_set():
                    raise CdcError("the leader lock was lost")
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

    # -- polling mode (servers without binlog access) ----------------------------------------------------------

    async def _poll(self, publisher: TransactionalPublisher, position: Position) -> None:
        """SELECT ... FOR UPDATE SKIP LOCKED a batch, publish it in a Kafka transaction whose position lists the
        batch's ids, mark it published, then commit MySQL. Order follows visibility, which follows commit order
        between batches; inside a batch rows go in id order."""
        conn = await asyncio.to_thread(_transactional_connection, self.s.relay_mysql)
        # The first poll waits for row locks instead of skipping them: a relay killed mid-batch may still hold
        # some (until the server notices its connection is gone), and skipping them would publish later rows of
        # the same aggregate first. After that only uncommitted app inserts hold locks, and those are skipped.
        skip_locked = False
        try:
            while not self._stop.is_set():
                rows = await asyncio.to_thread(self._poll_lock_batch, conn, position.seq + 1, skip_locked)
                skip_locked = True
                if not rows:
                    await asyncio.to_thread(conn.rollback)
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), self.s.relay_poll_interval_ms / 1000)
                    continue
                records = [to_record(r, self.topics) for r in rows]
                ids = tuple(r.id for r in rows)
                new = Position("", position.seq + 1, last_ids=ids)
                await publisher.publish(records, new)
                await asyncio.to_thread(self._poll_mark_and_commit, conn, ids)
                self._committed(records, new, mark=False)
                position = new
        finally:
            await asyncio.to_thread(conn.close)

    def _poll_lock_batch(self, conn: Any, batch_no: int, skip_locked: bool) -> list[OutboxRow]:
        with conn.cursor() as cur:
            cur.execute(
                f"{SELECT_UNPUBLISHED} LIMIT %s FOR UPDATE" + (" SKIP LOCKED" if skip_locked else ""),
                (self.s.relay_batch_rows,),
            )
            rows = cur.fetchall()
        return _outbox_rows(rows, batch_no)

    def _poll_mark_and_commit(self, conn: Any, ids: tuple[int, ...]) -> None:
        with conn.cursor() as cur:
            cur.execute(
                f"UPDATE {OUTBOX_TABLE} SET published = TRUE, published_at = NOW(3) "
                f"WHERE id IN ({','.join(['%s'] * len(ids))})",
                ids,
            )
        conn.commit()

    def _poll_conn_mark(self, ids: list[int]) -> None:
        PublishedMarker(self.s)._mark(ids)

    async def _publish(self, publisher: TransactionalPublisher, batch: list[Record], position: Position) -> None:
        with self.metrics.commit_seconds.time():
            await publisher.publish(batch, position)
        self._committed(batch, position)

    def _committed(self, records: list[Record], position: Position, mark: bool = True) -> None:
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
        if mark and self._marker is not None and records:
            self._marker.add(r.event_id for r in records)
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


def _transactional_connection(dsn: MysqlDsn) -> Any:
    conn = pymysql.connect(**dsn.pymysql_kwargs(), database=dsn.database, autocommit=False, charset="utf8mb4")
    with conn.cursor() as cur:
        # No gap locks: a polling batch held open across the Kafka commit must not stall the app's inserts.
        cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
    return conn


SELECT_UNPUBLISHED = (
    f"SELECT id, event_type, aggregate_type, aggregate_id, schema_version, payload, created_at "
    f"FROM {OUTBOX_TABLE} WHERE published = FALSE ORDER BY id"
)


def _outbox_rows(rows: Any, txn_seq: int) -> list[OutboxRow]:
    """Rows read from the table (backfill, polling) in id order, numbered inside one seq slot."""
    return [
        OutboxRow(
            int(r[0]), str(r[1]), str(r[2]), str(r[3]), int(r[4]), _text(r[5]), r[6], txn_seq, i, source_seq(txn_seq, i)
        )
        for i, r in enumerate(rows)
    ]


def _text(value: Any) -> str:
    # A JSON column arrives as str; a polling source on a TEXT/BLOB column may hand bytes.
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def delete_published(settings: Settings, chunk: int = 10_000) -> int:
    """Delete published outbox rows older than the retention, in chunks (short locks)."""
    cutoff = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(hours=settings.relay_retention_hours)
    total = 0
    dsn = settings.relay_mysql
    with connect(dsn, dsn.database) as conn, conn.cursor() as cur:
        while True:
            n = cur.execute(
                f"DELETE FROM {OUTBOX_TABLE} WHERE published = TRUE AND created_at < %s LIMIT %s", (cutoff, chunk)
            )
            total += n
            if n < chunk:
                return total


class PublishedMarker:
    """Sets published/published_at on outbox rows after Kafka committed them, in batches, off the hot path.
    The flags are bookkeeping for first starts, resnapshots and the janitor; the Kafka position is the truth."""

    def __init__(self, settings: Settings, max_pending: int = 1_000_000) -> None:
        self.s = settings
        self._ids: list[int] = []
        self._max_pending = max_pending
        self._wake = asyncio.Event()
        self._conn: Any = None

    def add(self, ids: Any) -> None:
        self._ids.extend(ids)
        if len(self._ids) > self._max_pending:
            dropped = len(self._ids) - self._max_pending
            log.warning(
                "mark-published backlog over %d: %d oldest marks dropped (rows stay published=FALSE)",
                self._max_pending,
                dropped,
            )
            del self._ids[:dropped]
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.5)
            self._wake.clear()
            if self._ids:
                ids, self._ids = self._ids, []
                try:
                    await asyncio.to_thread(self._mark, ids)
                except pymysql.MySQLError as exc:
                    log.warning("marking %d rows published failed (will retry): %s", len(ids), exc)
                    self._ids[:0] = ids
                    await asyncio.sleep(1)
            if stop.is_set() and not self._ids:
                if self._conn is not None:
                    await asyncio.to_thread(self._conn.close)
                return

    def _mark(self, ids: list[int], chunk: int = 2000) -> None:
        # One long-lived connection: connecting per batch cost more than the UPDATE itself.
        if self._conn is None:
            self._conn = _transactional_connection(self.s.relay_mysql)
            self._conn.autocommit(True)
        try:
            self._update(self._conn, ids, chunk)
        except pymysql.MySQLError:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):
                conn.close()
            raise

    @staticmethod
    def _update(conn: Any, ids: list[int], chunk: int) -> None:
        with conn.cursor() as cur:
            for i in range(0, len(ids), chunk):
                part = ids[i : i + chunk]
                marks = ",".join(["%s"] * len(part))
                cur.execute(
                    f"UPDATE {OUTBOX_TABLE} SET published = TRUE, published_at = NOW(3) "
                    f"WHERE id IN ({marks}) AND published = FALSE",
                    part,
                )


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
