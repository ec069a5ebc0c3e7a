"""`TxnMachine` on MySQL 8.4 event sequences built to MySQL's byte formats and read back by python-mysql-replication's
own parser (tests/unit/cdc/mysql_binlog.py): binary JSON payloads, XA, a failover to a new server UUID, rotation."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pymysqlreplication.event import GtidEvent, QueryEvent, XAPrepareEvent, XidEvent
from pymysqlreplication.row_event import WriteRowsEvent

from cdc.envelope import OutboxRow, to_record
from cdc.errors import SourceSeqRegressionError
from cdc.position import ROW_BITS, Epoch, Position
from cdc.source import EpochStarted, TxnEnd, TxnMachine
from schema.events import AGGREGATE_TYPES
from schema.topics import TopicNames
from tests.unit.cdc.mysql_binlog import (
    binlog_rotation,
    mysql_ddl,
    mysql_txn,
    mysql_xa_commit,
    mysql_xa_one_phase,
    mysql_xa_prepare,
    mysql_xa_rollback,
    outbox_row,
    parse_events,
)

A = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
B = "4f22fa47-71ca-11e1-9e33-c80aa9429563"
ONLY = [GtidEvent, XidEvent, XAPrepareEvent, QueryEvent, WriteRowsEvent]
TOPICS = TopicNames({a: f"t.{a}" for a in AGGREGATE_TYPES}, "t.dlq", "t.relay.position")


def run(machine: TxnMachine, raw: list[Any]) -> list[Any]:
    out: list[Any] = []
    for ev in parse_events(raw, only_events=ONLY, only_schemas=["tenderhub"], only_tables=["integration_outbox"]):
        out.extend(machine.feed(ev))
    return out


def rows_of(items: list[Any]) -> list[OutboxRow]:
    return [i for i in items if isinstance(i, OutboxRow)]


def test_binary_json_payloads_become_valid_envelopes() -> None:
    payload = {"tender_id": 12, "ocid": "ocds-1", "title": "Bridge ✓ 𝄞", "budget": 1.5, "currency": "ZAR"}
    m = TxnMachine(Position("", 0, epoch=Epoch(0, 0, A)), mariadb=False)
    row = rows_of(run(m, mysql_txn(A, 7, [outbox_row(1, payload, aggregate_id="12")])))[0]
    assert row.defect is None and json.loads(row.payload) == payload
    record = to_record(row, TOPICS)
    assert record.dlq_reason is None, record.value
    assert json.loads(record.value)["payload"] == payload


def test_xa_rows_are_published_at_commit_never_after_rollback_and_one_phase_at_once() -> None:
    m = TxnMachine(Position(f"{A}:1-6", 6, epoch=Epoch(0, 0, A)), mariadb=False)
    items = run(
        m,
        [
            *mysql_xa_prepare(A, 7, "trx1", [outbox_row(1), outbox_row(2)]),
            *mysql_xa_prepare(A, 8, "trx2", [outbox_row(3)]),
            *mysql_txn(A, 9, [outbox_row(4)]),
            *mysql_xa_commit(A, 10, "trx1"),
            *mysql_xa_rollback(A, 11, "trx2"),
            *mysql_xa_one_phase(A, 12, "trx3", [outbox_row(5)]),
        ],
    )
    rows = rows_of(items)
    assert [r.id for r in rows] == [4, 1, 2, 5]
    # XA rows take the commit's slot: source_seq follows commit order.
    assert [r.source_seq >> ROW_BITS for r in rows] == [9, 10, 10, 12]
    assert m.resume_state() == f"{A}:1-12"


def test_a_prepared_xa_transaction_stays_out_of_the_resume_set_until_it_commits() -> None:
    m = TxnMachine(Position(f"{A}:1-6", 6, epoch=Epoch(0, 0, A)), mariadb=False)
    run(m, [*mysql_xa_prepare(A, 7, "x", [outbox_row(1)]), *mysql_txn(A, 8, [outbox_row(2)])])
    # A restart from here gets the prepare again (its GTID is not in the set), so its rows are not lost.
    assert m.resume_state() == f"{A}:1-6:8"


def test_failover_to_a_new_server_uuid_starts_an_epoch_and_loses_nothing() -> None:
    last = (90_000 << ROW_BITS) | 3
    m = TxnMachine(Position(f"{A}:1-90000", 90_000, epoch=Epoch(0, 0, A), last_source_seq=last), mariadb=False)
    items = run(m, [*mysql_txn(B, 1, [outbox_row(1)]), *mysql_txn(B, 2, [outbox_row(2), outbox_row(3)])])
    rows = rows_of(items)
    assert [r.id for r in rows] == [1, 2, 3]  # the old code took gno 1 for "already sent" and lost them
    assert rows[0].source_seq == last + 1 and rows[1].source_seq > rows[0].source_seq
    assert any(isinstance(i, EpochStarted) and i.epoch.space == B for i in items)
    assert [i for i in items if isinstance(i, TxnEnd)][-1].gtid_state == f"{A}:1-90000,{B}:1-2"


def test_transactions_in_the_set_are_skipped_and_a_partial_one_resumes_after_its_sent_rows() -> None:
    position = Position(f"{A}:1-7", 7, txn_seq=8, rows_done=1, epoch=Epoch(0, 0, A), last_source_seq=8 << ROW_BITS)
    m = TxnMachine(position, mariadb=False)
    items = run(m, [*mysql_txn(A, 7, [outbox_row(1)]), *mysql_txn(A, 8, [outbox_row(2), outbox_row(3)])])
    assert [r.id for r in rows_of(items)] == [3]


def test_rotation_and_ddl_keep_the_stream_going() -> None:
    m = TxnMachine(Position("", 0, epoch=Epoch(0, 0, A)), mariadb=False)
    items = run(
        m,
        [
            *mysql_txn(A, 1, [outbox_row(1)]),
            *mysql_ddl(A, 2, "ALTER TABLE integration_outbox ADD COLUMN note VARCHAR(10) NULL"),
            *binlog_rotation("binlog.000002", previous=f"{A}:1-2"),
            *mysql_txn(A, 3, [outbox_row(2)]),
        ],
    )
    assert [r.id for r in rows_of(items)] == [1, 2]
    assert m.resume_state() == f"{A}:1-3"


def test_a_lower_gno_of_the_same_server_is_a_loud_stop() -> None:
    m = TxnMachine(Position(f"{A}:1-50", 50, epoch=Epoch(0, 0, A), last_source_seq=50 << ROW_BITS), mariadb=False)
    with pytest.raises(SourceSeqRegressionError, match="--resnapshot"):
        run(m, mysql_txn(A, 60, [outbox_row(1)]) + mysql_txn(A, 55, [outbox_row(2)]))
