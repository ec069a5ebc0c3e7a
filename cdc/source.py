"""`BinlogSource`: python-mysql-replication behind one small typed adapter.

A thread tails the binlog (GTID auto-position) for inserts into `integration_outbox` and hands the event loop
`OutboxRow`s and `TxnEnd` markers in commit order. It enforces the resume rule: every row carries
(transaction seq, row index); a row at or before the last one already published is skipped. That one rule covers
a resume in the middle of a transaction AND the library's silent reconnects, which replay from the last
auto-position it was given.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import pymysql
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import GtidEvent, HeartbeatLogEvent, MariadbGtidEvent, QueryEvent, XidEvent
from pymysqlreplication.row_event import WriteRowsEvent

from cdc.envelope import OutboxRow
from cdc.errors import CdcError, PositionPurgedError
from cdc.position import MAX_ROWS_PER_TXN, Position, mysql_gtid_add, replace_domain, source_seq
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


Item = OutboxRow | TxnEnd | Idle | BaseException


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
        max_pending: int = 20_000,
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

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="binlog-source", daemon=True)
        self._thread.start()

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
        while len(self._buf) >= self.max_pending:  # back-pressure: Kafka is slower than the binlog right now
            if self._stop.is_set():
                return False
            time.sleep(0.001)
        if self._stop.is_set():
            return False
        self._buf.append(item)
        if self._waiting:
            self._waiting = False
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._wake.set)
        return True

    def _open(self, gtid_state: str) -> BinLogStreamReader:
        return BinLogStreamReader(
            connection_settings={**self.dsn.pymysql_kwargs(), "read_timeout": max(10, int(self.heartbeat_s * 4))},
            server_id=self.server_id,
            only_events=[
                MariadbGtidEvent if self.mariadb else GtidEvent,
                XidEvent,
                QueryEvent,
                WriteRowsEvent,
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
        gtid_state = self.position.gtid
        last_sent = self.position.last_sent()
        stream = self._stream = self._open(gtid_state)
        cur_gtid: str | None = None
        cur_seq, row_index, standalone = -1, 0, False
        done_seq = self.position.seq
        try:
            while not self._stop.is_set():
                event: Any = stream.fetchone()
                if event is None:
                    continue
                if isinstance(event, HeartbeatLogEvent):
                    if not self._put(Idle()):
                        return
                elif isinstance(event, MariadbGtidEvent):
                    if event.domain_id != self.domain:
                        raise CdcError(
                            f"GTID domain {event.domain_id} in the binlog; the relay orders events by domain "
                            f"{self.domain} only (set gtid_domain_id consistently)"
                        )
                    cur_gtid, cur_seq, row_index = event.gtid, event.gtid_seq_no, 0
                    # FL_STANDALONE: a DDL (or similar) with no Xid/COMMIT after it; its query ends it.
                    standalone = bool(event.flags & 0x01)
                elif isinstance(event, GtidEvent):
                    cur_gtid, cur_seq, row_index = event.gtid, event.gno, 0
                    # MySQL opens DML transactions with a BEGIN query; a GTID not followed by BEGIN is a DDL.
                    standalone = True
                elif isinstance(event, QueryEvent) and str(event.query).strip().upper() == "BEGIN":
                    standalone = False
                elif isinstance(event, WriteRowsEvent):
                    for row in event.rows:
                        idx = row_index
                        row_index += 1
                        if (cur_seq, idx) <= last_sent:
                            continue  # published before a restart or a reconnect
                        if not self._put(self._to_row(row["values"], cur_seq, idx)):
                            return
                        last_sent = (cur_seq, idx)
                elif cur_gtid is not None and (
                    isinstance(event, XidEvent) or (isinstance(event, QueryEvent) and _ends_txn(event, standalone))
                ):
                    gtid_state = (
                        replace_domain(gtid_state, cur_gtid) if self.mariadb else mysql_gtid_add(gtid_state, cur_gtid)
                    )
                    # The library reconnects from its auto_position: keep it at the last finished transaction.
                    stream.auto_position = gtid_state
                    cur_gtid = None
                    if cur_seq <= done_seq:
                        continue  # a replayed transaction: the relay's position is already past it
                    done_seq = cur_seq
                    last_sent = max(last_sent, (cur_seq, MAX_ROWS_PER_TXN))
                    if not self._put(TxnEnd(gtid_state, cur_seq)):
                        return
        finally:
            stream.close()

    def _to_row(self, v: dict[str, Any], txn_seq: int, idx: int) -> OutboxRow:
        payload = v["payload"]
        return OutboxRow(
            id=int(v["id"]),
            event_type=str(v["event_type"]),
            aggregate_type=str(v["aggregate_type"]),
            aggregate_id=str(v["aggregate_id"]),
            schema_version=int(v.get("schema_version") or 1),
            payload=payload if isinstance(payload, str) else _as_text(payload),
            created_at=v["created_at"],
            txn_seq=txn_seq,
            row_index=idx,
            source_seq=source_seq(txn_seq, idx),
        )


def _as_text(payload: Any) -> str:
    if isinstance(payload, bytes):
        return payload.decode("utf-8", errors="replace")
    return json.dumps(payload)


def _ends_txn(event: Any, standalone: bool) -> bool:
    # A standalone GTID (DDL) ends with its query; a transaction on a non-transactional table ends with COMMIT.
    # Other queries inside a transaction (SAVEPOINT ...) do not end it.
    return standalone or str(getattr(event, "query", "")).strip().upper() == "COMMIT"
