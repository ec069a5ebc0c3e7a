"""What the source holds now: the server's flavour, its current binlog position, and a consistent snapshot of the
unpublished outbox rows with the binlog position of the same instant (a first start's backfill, `--resnapshot`).
Rows read from the table (backfill, polling) become `OutboxRow`s numbered inside one seq slot (`outbox_rows`)."""

from __future__ import annotations

from typing import Any

from cdc.bookkeeping import select_unpublished
from cdc.connections import relay_connection
from cdc.envelope import OutboxRow
from cdc.errors import CdcError, SourceConfigError
from cdc.position import MAX_ROWS_PER_TXN, Position, SeqClock, mariadb_gtid_seq, mysql_gtid_seq
from cdc.source import outbox_row_from_values
from schema.mysql import connect, is_mariadb
from schema.settings import Settings

COLUMNS = ("id", "event_type", "aggregate_type", "aggregate_id", "schema_version", "payload", "created_at")


def detect_flavor(settings: Settings) -> bool:
    """True for MariaDB."""
    with connect(settings.relay_mysql) as conn:
        return is_mariadb(conn)


def gtid_seq(settings: Settings, mariadb: bool, gtid: str, space: str) -> int:
    return mariadb_gtid_seq(gtid, settings.relay_gtid_domain) if mariadb else mysql_gtid_seq(gtid, space)


def current_position(settings: Settings, mariadb: bool, clock: SeqClock) -> Position:
    """The binlog position now (a `--from-now` start), numbered above everything `clock` has seen."""
    with connect(settings.relay_mysql) as conn, conn.cursor() as cur:
        cur.execute("SELECT @@gtid_binlog_pos, ''" if mariadb else "SELECT @@global.gtid_executed, @@server_uuid")
        row = cur.fetchone()
    gtid, space = (str(row[0] or ""), str(row[1] or "").lower()) if row else ("", "")
    seq = gtid_seq(settings, mariadb, gtid, space)
    clock.prepare(space, seq + 1)
    return Position(gtid, seq, epoch=clock.epoch, last_source_seq=clock.last)


def snapshot(settings: Settings, mariadb: bool, clock: SeqClock) -> tuple[Position, list[OutboxRow]]:
    """Unpublished outbox rows and the binlog position of the same consistent snapshot (no global lock on
    MariaDB)."""
    space = ""
    with relay_connection(settings.relay_mysql) as conn, conn.cursor() as cur:
        cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        if mariadb:
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
            if not settings.relay_mysql_snapshot_lock:
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
        rows = select_unpublished(cur, settings.relay_backfill_max_rows + 1)
        cur.execute("COMMIT")
    if len(rows) > settings.relay_backfill_max_rows:
        raise CdcError(
            f"more than {settings.relay_backfill_max_rows} unpublished outbox rows: raise "
            "TENDERHUB_RELAY_BACKFILL_MAX_ROWS (they are published in one Kafka transaction)"
        )
    seq = gtid_seq(settings, mariadb, gtid, space)
    # Backfilled rows were committed at or before the snapshot; streamed rows come after it. They take the
    # snapshot transaction's seq slot, in id order (their exact commit order is not recoverable).
    clock.prepare(space, seq)
    out = outbox_rows(rows, seq, clock, space)
    clock.prepare(space, seq + 1)
    return Position(gtid, seq, epoch=clock.epoch, last_source_seq=clock.last), out


def outbox_rows(rows: Any, txn_seq: int, clock: SeqClock, space: str) -> list[OutboxRow]:
    """Rows read from the table (backfill, polling) in id order, numbered inside one seq slot. A row that cannot
    become an event (a zero date, no room left in the slot) is kept as a defect for the DLQ."""
    out = []
    for i, r in enumerate(rows):
        values = dict(zip(COLUMNS, r, strict=True))
        if i >= MAX_ROWS_PER_TXN:
            defect: str | None = f"more than {MAX_ROWS_PER_TXN} rows in one batch; row {i} has no source_seq"
            seq = clock.last
        else:
            defect, seq = None, clock.assign(space, txn_seq, i, may_start_epoch=False)
        out.append(outbox_row_from_values(values, txn_seq, i, seq, defect))
    return out
