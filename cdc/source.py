"""`BinlogSource`: python-mysql-replication behind one small typed adapter.

A thread tails the binlog (GTID auto-position) for inserts into `integration_outbox` and hands the event loop
`OutboxRow`s and `TxnEnd` markers in commit order. `TxnMachine` (pure) enforces the resume rule: a row of a
transaction already published, or among the rows already sent of the partly published one, is skipped. That one
rule covers a resume in the middle of a transaction AND the library's silent reconnects, which replay from the last
auto-position it was given.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pymysql
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import (
    GtidEvent,
    HeartbeatLogEvent,
    MariadbGtidEvent,
    QueryEvent,
    XAPrepareEvent,
    XidEvent,
)
from pymysqlreplication.row_event import WriteRowsEvent

from cdc import fastrows
from cdc.envelope import OutboxRow
from cdc.errors import PositionPurgedError, SourceConfigError, SourceSeqRegressionError
from cdc.mysql_json import json_text
from cdc.position import (
    MAX_ROWS_PER_TXN,
    Epoch,
    Position,
    SourceSeqError,
    mariadb_gtid_seq,
    mysql_gtid_add,
    mysql_gtid_contains,
    replace_domain,
)
from schema.mysql import OUTBOX_TABLE
from schema.settings import MysqlDsn

log = logging.getLogger(__name__)

# 1236: ER_MASTER_FATAL_ERROR_READING_BINLOG (position purged, or GTID not in the binlog).
PURGED_CODES = {1236}


@dataclass(frozen=True, slots=True)
class TxnEnd:
    """A transaction finished: everything up to `gtid_state` is read."""

    gtid_state: str
    seq: int


@dataclass(frozen=True, slots=True)
class Idle:
    """No binlog traffic for a heartbeat period (lets the relay flush and check its stop flag)."""


@dataclass(frozen=True, slots=True)
class EpochStarted:
    """The rows that follow belong to a new epoch of the source_seq clock (e.g. a MySQL failover)."""

    epoch: Epoch


Item = OutboxRow | TxnEnd | Idle | EpochStarted | BaseException


class BinlogSource:
    """Tails the outbox table's inserts from `position` on a background thread."""

    def __init__(
        self,
        dsn: MysqlDsn,
        position: Position,
        server_id: int,
        heartbeat_s: float,
        mariadb: bool = True,
        domain: int = 0,
        max_pending: int = 2000,
    ) -> None:
        self.mariadb = mariadb
        self.dsn = dsn
        self.position = position
        self.server_id = server_id
        self.heartbeat_s = heartbeat_s
        self.domain = domain
        self.max_pending = max_pending
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stream: BinLogStreamReader | None = None
        # Hand-off to the event loop: the thread appends; the loop is woken only when it is waiting (one wake-up
        # per burst, not per row: per-row call_soon_threadsafe cost more than the decoding).
        self._buf: collections.deque[Item] = collections.deque()
        self._waiting = False
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sync_wake = threading.Event()  # the same hand-off to a thread instead of an event loop (`take`)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.start_thread()

    def start_thread(self) -> None:
        """Start tailing; read with `take` (no event loop) or, after `start`, with `get_many`."""
        self._thread = threading.Thread(target=self._run, name="binlog-source", daemon=True)
        self._thread.start()

    async def ready(self, timeout: float) -> None:
        """Until the source is reading (a thread is at once)."""

    def take(self, timeout: float) -> list[Item]:
        """`get_many` for a thread: waits up to `timeout` for the first item."""
        if not self._buf:
            self._sync_wake.clear()
            self._waiting = True
            if not self._buf:
                self._sync_wake.wait(timeout)
            self._waiting = False
        return [self._buf.popleft() for _ in range(len(self._buf))]

    async def get_many(self, timeout: float) -> list[Item]:
        """Everything the thread has read so far; waits up to `timeout` for the first item ([] on timeout)."""
        if not self._buf:
            self._wake.clear()
            self._waiting = True
            if not self._buf:  # re-check: the thread may have appended before it saw the flag
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
            self._waiting = False
        items = []
        for _ in range(len(self._buf)):
            items.append(self._buf.popleft())
        return items

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _put(self, item: Item) -> bool:
        # Back-pressure: Kafka is slower than the binlog right now. The relay and its decoder process each hold this
        # many rows: with ~1 KB rows (bench/debezium_bench.py, 200,000 rows in 1,000-row transactions) 2,000 keep the
        # two at 165 MB RSS in all and 20.9-21.9k rows/s, 5,000 at 203-208 MB and 22.5-23.2k, 20,000 past 230 MB. A
        # transaction larger than the buffer streams through it.
        while len(self._buf) >= self.max_pending:
            if self._stop.is_set():
                return False
            time.sleep(0.001)
        if self._stop.is_set():
            return False
        self._buf.append(item)
        if self._waiting:
            self._waiting = False
            if self._loop is None:
                self._sync_wake.set()
            else:
                self._loop.call_soon_threadsafe(self._wake.set)
        return True

    def _open(self, gtid_state: str) -> BinLogStreamReader:
        fastrows.install()
        return BinLogStreamReader(
            # Both timeouts: a server that stops answering mid-read or mid-TLS-handshake ends the connection.
            connection_settings={
                **self.dsn.pymysql_kwargs(),
                "read_timeout": max(10, int(self.heartbeat_s * 4)),
                "write_timeout": max(10, int(self.heartbeat_s * 4)),
                "connect_timeout": 10,
            },
            server_id=self.server_id,
            only_events=[
                MariadbGtidEvent if self.mariadb else GtidEvent,
                XidEvent,
                XAPrepareEvent,
                QueryEvent,
                fastrows.FastWriteRowsEvent,
                fastrows.CachedTableMapEvent,
                fastrows.CompressedEvent,
                HeartbeatLogEvent,
            ],
            only_schemas=[self.dsn.database],
            only_tables=[OUTBOX_TABLE],
            # Always an explicit GTID position: MariaDB resumes after this state (file/pos would be ignored with
            # is_mariadb); MySQL sends what is not in this set. With no position the library would run
            # SHOW MASTER STATUS, which MySQL 8.4 removed.
            auto_position=gtid_state or ("" if self.mariadb else None),
            is_mariadb=self.mariadb,
            blocking=True,
            slave_heartbeat=self.heartbeat_s,
            enable_logging=False,
        )

    def _run(self) -> None:
        try:
            self._tail()
        except pymysql.err.OperationalError as exc:
            code = exc.args[0] if exc.args else None
            if code in PURGED_CODES:
                self._put(
                    PositionPurgedError(
                        f"the binlog no longer holds the relay position {self.position.describe()}: "
                        f"server said {exc.args[1] if len(exc.args) > 1 else exc}. Remedy: "
                        "`tenderhub cdc run --resnapshot` republishes the unpublished outbox rows and "
                        "restarts from a consistent binlog position."
                    )
                )
            else:
                self._put(exc)
        except BaseException as exc:  # noqa: BLE001 - handed to the event loop, which decides (retry or stop)
            self._put(exc)

    def _tail(self) -> None:
        machine = TxnMachine(self.position, self.mariadb, self.domain, database=self.dsn.database)
        stream = self._stream = self._open(machine.resume_state())
        try:
            while not self._stop.is_set():
                event: Any = stream.fetchone()
                if event is None:
                    continue
                if isinstance(event, MariadbGtidEvent | GtidEvent):
                    # Table ids are per server run: after a restart, failover or RESET MASTER another table gets
                    # the outbox's old id. The library keeps its id -> table cache across that (it clears it only on
                    # a timestamped rotate) and skips the TABLE_MAP events of filtered tables, so a row event of
                    # another table would be decoded with the outbox's columns. Every transaction maps its tables
                    # again after its GTID event, so nothing older than the transaction is ever needed.
                    stream.table_map.clear()
                for item in machine.feed(event):
                    if not self._put(item):
                        return
                # The library reconnects from its auto_position: keep it at the resume point (the last finished
                # transaction, or before the oldest XA transaction that is prepared but not yet committed).
                stream.auto_position = machine.resume_state()
        finally:
            stream.close()


@dataclass(slots=True)
class _Txn:
    gtid: str
    space: str  # sequence space of `seq` (MySQL server UUID; "" for MariaDB's relay domain)
    seq: int
    relay_domain: bool  # MariaDB: in the relay's GTID domain (MySQL: always)
    done: bool  # already fully published before (a replay after a reconnect or restart)
    standalone: bool  # ends with its own query (DDL), no BEGIN/COMMIT
    rows: int = 0  # outbox rows seen so far
    xa: str | None = None  # XA transaction id between XA START and its prepare
    held: list[dict[str, Any]] | None = None  # rows of that XA transaction, published when it commits
    # Rows after a SAVEPOINT, published when the group commits: the server logs ROLLBACK TO instead of dropping
    # them when the transaction also changed a non-transactional table.
    pending: list[dict[str, Any]] | None = None
    marks: dict[str, int] = field(default_factory=dict)  # savepoint -> rows pending before it


# MariaDB Gtid_log_event flags (sql/log_event.h).
_FL_STANDALONE = 0x01
_FL_PREPARED_XA = 0x40


class TxnMachine:
    """Turns binlog events into outbox rows and transaction boundaries, in commit order. Pure (no I/O), so real
    MySQL and MariaDB event sequences can drive it in unit tests.

    Rules: a row is emitted once (rows of finished transactions and the first `rows_done` rows of the partly
    published one are skipped, which covers restarts and the library's silent reconnects); rows of an XA transaction
    are held from XA START to its XA COMMIT (published in the commit's slot, in commit order) or XA ROLLBACK
    (dropped), and the resume point stays before a prepared XA transaction until it commits; transactions of other
    MariaDB GTID domains are tracked in the position but may carry no outbox row.
    """

    def __init__(self, position: Position, mariadb: bool, domain: int = 0, database: str | None = None) -> None:
        self.mariadb = mariadb
        self.domain = domain
        self.database = database  # the outbox's schema (None: any, in unit tests)
        self.read_state = position.gtid  # MariaDB: GTID state read so far; MySQL: GTID set read so far
        self.done_seq = position.seq
        self.clock = position.clock()
        # The partly published transaction, identified in its sequence space, and how many of its rows went out.
        self.partial: tuple[str, int, int] | None = (
            (position.epoch.space, position.txn_seq, position.rows_done) if position.txn_seq is not None else None
        )
        self.cur: _Txn | None = None
        self.held: dict[str, tuple[list[dict[str, Any]], str]] = {}  # xid -> (rows, resume state before it)

    def resume_state(self) -> str:
        if not self.held:
            return self.read_state
        if self.mariadb:
            return min((before for _, before in self.held.values()), key=lambda st: mariadb_gtid_seq(st, self.domain))
        return self.read_state  # MySQL: prepared GTIDs are added to the set only when their XA commits

    # -- events ----------------------------------------------------------------------------------------------

    def feed(self, event: Any) -> list[Item]:
        if isinstance(event, HeartbeatLogEvent):
            return [Idle()]
        if isinstance(event, fastrows.CompressedEvent):
            where = self.cur.gtid if self.cur is not None else f"after {self.read_state}"
            raise SourceConfigError(
                f"a compressed binlog event (type {event.event_type}) in {where}: the relay cannot read compressed "
                "events, and skipping one would lose the outbox rows inside. Remedy: SET GLOBAL log_bin_compress=OFF "
                "(MariaDB) or binlog_transaction_compression=OFF (MySQL, every session too), and in the server's "
                "config; then `tenderhub cdc run --resnapshot` starts past the compressed events."
            )
        if isinstance(event, MariadbGtidEvent):
            relay_domain = event.domain_id == self.domain
            self.cur = _Txn(
                gtid=event.gtid,
                space="",
                seq=event.gtid_seq_no,
                relay_domain=relay_domain,
                done=relay_domain and event.gtid_seq_no <= self.done_seq,
                # FL_STANDALONE: a DDL (or similar) with no Xid/COMMIT after it; its query ends it.
                standalone=bool(event.flags & _FL_STANDALONE),
            )
            if event.flags & _FL_PREPARED_XA:
                # MariaDB writes XA START into the GTID event itself (no query): the group is an XA transaction's
                # prepare, ended by an XA_PREPARE event that names the xid.
                self.cur.standalone, self.cur.xa, self.cur.held = False, "", []
            return []
        if isinstance(event, GtidEvent):
            gtid = str(event.gtid).lower()
            uuid, gno = gtid.rsplit(":", 1)
            # MySQL opens DML transactions with a BEGIN query; a GTID not followed by BEGIN is a DDL.
            self.cur = _Txn(gtid, uuid, int(gno), True, mysql_gtid_contains(self.read_state, gtid), True)
            return []
        cur = self.cur
        if cur is None:
            return []
        if isinstance(event, WriteRowsEvent):
            images = [row["values"] for row in event.rows]
            if images and not images[0].keys() >= _OUTBOX_COLUMNS:
                raise SourceConfigError(
                    f"transaction {cur.gtid}: the binlog names the outbox's columns {sorted(images[0])[:8]}, not "
                    f"{sorted(_OUTBOX_COLUMNS)}: its table maps carry no column names (binlog_row_metadata is not "
                    "FULL, now or when they were written) or a column was renamed. Remedy: SET GLOBAL "
                    "binlog_row_metadata=FULL (and in the server's config), then restart the relay; for events "
                    "written before that, `tenderhub cdc run --resnapshot` starts past them."
                )
            return self._rows(cur, images)
        if isinstance(event, QueryEvent):
            return self._query(cur, _query_text(event), getattr(event, "schema", None))
        if isinstance(event, XAPrepareEvent):
            if event.one_phase:  # MySQL: XA COMMIT ... ONE PHASE ends an ordinary transaction
                rows, cur.held, cur.xa = cur.held or [], None, None
                return [*self._rows(cur, rows), *self._end(cur)]
            return self._prepared(cur, xid_key(event.xid_gtrid, event.xid_bqual))
        if isinstance(event, XidEvent):
            return [*self._release(cur), *self._end(cur)]
        return []

    def _query(self, cur: _Txn, query: str, schema: object = None) -> list[Item]:
        upper = query.upper()
        if upper == "BEGIN":
            cur.standalone = False
        elif upper.startswith("SAVEPOINT "):
            if cur.pending is None:
                cur.pending = []
            cur.marks[_savepoint_name(query, "SAVEPOINT ")] = len(cur.pending)
        elif upper.startswith("ROLLBACK TO "):
            name = _savepoint_name(re.sub(r"(?i)^ROLLBACK\s+(WORK\s+)?TO\s+(SAVEPOINT\s+)?", "", query), "")
            if cur.pending is not None and name in cur.marks:
                del cur.pending[cur.marks[name] :]
        elif upper.startswith("RELEASE SAVEPOINT "):
            pass
        elif upper == "ROLLBACK":
            # The group was rolled back (it also changed a non-transactional table): its rows never existed.
            if cur.rows:
                log.error(
                    "transaction %s was rolled back after %d of its outbox rows were read: they were published "
                    "(a rollback is logged only when a non-transactional table is in the transaction)",
                    cur.gtid,
                    cur.rows,
                )
            cur.pending, cur.marks = None, {}
            return self._end(cur)
        elif cur.standalone and self._resets_outbox(query, schema):
            raise SourceConfigError(
                f"transaction {cur.gtid} resets the outbox ({query[:80]!r}): new rows would reuse published event "
                "ids, and consumers drop a reused id as a redelivery. Remedy: ALTER TABLE integration_outbox "
                "AUTO_INCREMENT = (a number above the last published id), then `tenderhub cdc run --resnapshot`."
            )
        elif upper.startswith("XA START") or upper.startswith("XA BEGIN"):
            cur.standalone, cur.xa, cur.held = False, _xid_of(query), []
        elif upper.startswith("XA END"):
            pass
        elif upper.startswith("XA PREPARE"):  # MariaDB logs the prepare as a query ending the group
            return self._prepared(cur, _xid_of(query))
        elif upper.startswith("XA COMMIT") and upper.endswith("ONE PHASE"):
            rows, cur.held, cur.xa = cur.held or [], None, None
            return [*self._rows(cur, rows), *self._end(cur)]
        elif upper.startswith("XA COMMIT") or upper.startswith("XA ROLLBACK"):
            xid = _xid_of(query)
            if xid not in self.held and upper.startswith("XA COMMIT"):
                # Prepared before the relay's start position (a snapshot or --from-now taken meanwhile), or an XA
                # transaction without outbox rows: nothing of it is held here.
                log.warning(
                    "XA COMMIT %s in %s: its prepare was not read with outbox rows (prepared before the relay's start "
                    "position, or it had none); if it wrote outbox rows, they are not published",
                    xid[:80],
                    cur.gtid,
                )
            rows, before = self.held.pop(xid, ([], ""))
            if upper.startswith("XA COMMIT"):
                out = self._rows(cur, rows)
                if not self.mariadb and before:
                    self.read_state = mysql_gtid_add(self.read_state, before)  # the prepare's GTID, now final
                return [*out, *self._end(cur)]
            if not self.mariadb and before:
                self.read_state = mysql_gtid_add(self.read_state, before)
            return self._end(cur)
        elif cur.standalone or upper == "COMMIT":
            # A standalone GTID (DDL) ends with its query; a transaction on a non-transactional table ends with
            # COMMIT. Other queries inside a transaction (SAVEPOINT ...) do not end it.
            return [*self._release(cur), *self._end(cur)]
        return []

    def _resets_outbox(self, query: str, schema: object) -> bool:
        """Does this DDL truncate, drop or rename the relay's outbox (its own schema's, not a same-named table of
        another database)?"""
        found = _OUTBOX_RESET.match(query)
        if found is None:
            return False
        if self.database is None:
            return True
        qualifier = (found.group(4) or "").strip("`.")
        current = schema.decode("utf-8", "replace") if isinstance(schema, bytes) else str(schema or "")
        return (qualifier or current) == self.database

    def _prepared(self, cur: _Txn, xid: str) -> list[Item]:
        """An XA transaction is prepared: its rows wait for XA COMMIT. MariaDB resumes from before it until then;
        MySQL keeps its GTID out of the resume set (and remembers it here) until then."""
        rows = cur.held or []
        cur.held, cur.xa = None, None
        if not rows:
            # Nothing to publish when it commits (another application's XA): it must not hold the resume point,
            # which an orphaned prepared transaction would do for good.
            return self._end(cur)
        # MariaDB: resume from the state before this group. A group read again (the library's silent reconnect
        # resumes from before it) keeps the point it was first held at, never the state read since.
        before = self.held[xid][1] if xid in self.held else (self.read_state if self.mariadb else cur.gtid)
        self.held[xid] = (rows, before)
        self.cur = None
        if self.mariadb:
            self.read_state = replace_domain(self.read_state, cur.gtid)
            if cur.relay_domain and cur.seq > self.done_seq:
                self.done_seq = cur.seq
        return [TxnEnd(self.resume_state(), self.done_seq)]

    def _release(self, cur: _Txn) -> list[Item]:
        """The rows held since a savepoint, published as the group commits."""
        rows, cur.pending, cur.marks = cur.pending or [], None, {}
        return self._rows(cur, rows)

    def _rows(self, cur: _Txn, rows: list[dict[str, Any]]) -> list[Item]:
        if cur.xa is not None and cur.held is not None:
            cur.held.extend(rows)
            return []
        if cur.pending is not None:
            cur.pending.extend(rows)
            return []
        if not rows:
            return []
        if not cur.relay_domain:
            raise SourceConfigError(
                f"an outbox row was written in GTID domain {cur.gtid.split('-', 1)[0]} (transaction {cur.gtid}); "
                f"the relay orders events by domain {self.domain} only. Remedy: write outbox rows with "
                f"gtid_domain_id={self.domain} (other domains may carry any other change), or set "
                "TENDERHUB_RELAY_GTID_DOMAIN to the domain the application writes in."
            )
        out: list[Item] = []
        for values in rows:
            idx = cur.rows
            cur.rows += 1
            if cur.done:
                continue  # published before a restart or a reconnect
            partial = self.partial
            if partial is not None and partial[0] == cur.space and partial[1] == cur.seq and idx < partial[2]:
                continue
            before = self.clock.epoch
            out.append(self._row(values, cur, idx))
            if self.clock.epoch != before:
                out.insert(len(out) - 1, EpochStarted(self.clock.epoch))
            self.partial = (cur.space, cur.seq, idx + 1)
        return out

    def _row(self, values: dict[str, Any], cur: _Txn, idx: int) -> OutboxRow:
        defect: str | None = None
        if idx >= MAX_ROWS_PER_TXN:
            # No room in this transaction's slot of the clock: the row is recorded in the DLQ, under the last
            # number given out, instead of stopping the stream.
            seq = self.clock.last
            defect = f"transaction {cur.gtid} has more than {MAX_ROWS_PER_TXN} outbox rows; row {idx} has no source_seq"
        else:
            try:
                seq = self.clock.assign(cur.space, cur.seq, idx, may_start_epoch=False)
            except SourceSeqError as exc:
                raise SourceSeqRegressionError(
                    f"{exc}. The binlog's transaction numbers went backwards without a new server UUID (RESET "
                    "MASTER, a restored backup, or a server that reuses old numbers). Publishing would make every "
                    "version guard downstream drop these events. Remedy: `tenderhub cdc run --resnapshot` starts a "
                    "new epoch above the last published source_seq."
                ) from exc
        return outbox_row_from_values(values, cur.seq, idx, seq, defect)

    def _end(self, cur: _Txn) -> list[Item]:
        self.cur = None
        if self.mariadb:
            self.read_state = replace_domain(self.read_state, cur.gtid)
        else:
            self.read_state = mysql_gtid_add(self.read_state, cur.gtid)
        if not cur.relay_domain:
            # Another domain's transaction (no outbox rows): only the resume state moves.
            return [TxnEnd(self.resume_state(), self.done_seq)]
        if cur.done:
            return []  # a replayed transaction: the relay's position is already past it
        self.done_seq = cur.seq
        self.partial = None
        return [TxnEnd(self.resume_state(), cur.seq)]


def outbox_row_from_values(v: dict[str, Any], txn_seq: int, idx: int, seq: int, defect: str | None = None) -> OutboxRow:
    """An `OutboxRow` from a binlog row image. A value that cannot be decoded makes the row a defect (it goes to
    the DLQ with the reason) instead of stopping the stream."""
    payload: str = ""
    try:
        payload = json_text(v.get("payload"))
    except ValueError as exc:
        defect = defect or f"payload is not representable as JSON text: {exc}"
    created = v.get("created_at")
    if not isinstance(created, dt.datetime):
        defect = defect or f"created_at is not a valid timestamp: {created!r}"
        created = None
    elif created == _EPOCH:
        # A TIMESTAMP stores the zero date ('0000-00-00 00:00:00', accepted without NO_ZERO_DATE) as 0 seconds,
        # which decodes to the epoch: no row of the pipeline was written then.
        defect = defect or "created_at is the zero date"
        created = None
    try:
        raw = v.get("schema_version")
        # The column defaults to 1; a stored 0 is a version the contract does not know (DLQ), never "1".
        version = 1 if raw is None else int(raw)
    except (TypeError, ValueError):
        version, defect = 0, defect or f"schema_version is not a number: {v.get('schema_version')!r}"
    return OutboxRow(
        id=int(v["id"]),
        event_type=_str(v.get("event_type")),
        aggregate_type=_str(v.get("aggregate_type")),
        aggregate_id=_str(v.get("aggregate_id")),
        schema_version=version,
        payload=payload,
        created_at=created,
        txn_seq=txn_seq,
        row_index=idx,
        source_seq=seq,
        defect=defect,
    )


def _str(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return "" if value is None else str(value)


def _query_text(event: Any) -> str:
    query = event.query
    if isinstance(query, bytes):
        query = query.decode("utf-8", errors="replace")
    return str(query).strip()


def xid_key(gtrid: bytes, bqual: bytes) -> str:
    """An XA transaction's key: its gtrid and bqual bytes, as hex (a transaction manager's ids are binary)."""
    return (gtrid + bqual).hex()


def _xid_of(query: str) -> str:
    """The key of the xid in `XA <verb> 'gtrid'[,'bqual'[,format]]` (either part quoted text or X'hex'), as
    `xid_key` makes it from the XA prepare event."""
    parts = re.findall(r"'((?:[^'\\]|\\.)*+)'|X'([0-9A-Fa-f]*+)'", query)
    raw = [a.encode() if a or not b else bytes.fromhex(b) for a, b in parts[:2]]
    gtrid, bqual = [*raw, b"", b""][:2]
    return xid_key(gtrid, bqual)


def _savepoint_name(text: str, prefix: str) -> str:
    return text[len(prefix) :].strip().strip("`").strip()


# The columns the relay cannot do without (schema_version and created_at have defaults and their own checks).
_OUTBOX_COLUMNS = frozenset({"id", "event_type", "aggregate_type", "aggregate_id", "payload"})
# DDL after which new outbox rows reuse event ids (a partition dropped by the janitor is not one).
_OUTBOX_RESET = re.compile(
    r"(?is)^\s*(TRUNCATE(\s+TABLE)?|DROP\s+TABLE(\s+IF\s+EXISTS)?|RENAME\s+TABLE)\s+"
    r"(`?\w+`?\.)?`?integration_outbox`?(\s|,|;|$)"
)
_EPOCH = dt.datetime(1970, 1, 1)
