"""MySQL 8.4 binlog events built to MySQL's formats (tests/unit/cdc/mysql_binlog.py) read back by python-mysql-
replication's own reader as what was built: the ground the relay's MySQL tests stand on."""

from __future__ import annotations

import datetime as dt
import struct
import uuid
from typing import Any

import pytest
from pymysqlreplication.event import (
    GtidEvent,
    PreviousGtidsEvent,
    QueryEvent,
    RotateEvent,
    XAPrepareEvent,
    XidEvent,
)
from pymysqlreplication.row_event import TableMapEvent, WriteRowsEvent

from tests.unit.cdc.mysql_binlog import (
    MYSQL_TYPE_LONG,
    OUTBOX_COLUMNS,
    ROW_EVENT_MAX_SIZE,
    STMT_END_F,
    Column,
    FakeMySQLServer,
    RawEvent,
    binlog_rotation,
    binlog_start,
    gtid,
    mysql_ddl,
    mysql_txn,
    mysql_xa_commit,
    mysql_xa_one_phase,
    mysql_xa_prepare,
    mysql_xa_rollback,
    outbox_row,
    parse_events,
    query,
    stream_reader,
    table_map,
    varchar,
    write_rows,
    xa_prepare,
    xid,
)

A = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
B = "9c2b8f10-5d3e-11ef-8a61-0242ac120002"
RELAY_EVENTS = [GtidEvent, XidEvent, XAPrepareEvent, QueryEvent, WriteRowsEvent]


def kinds(events: list[Any]) -> list[str]:
    return [type(e).__name__ for e in events]


def test_gtid_event_reads_back_server_uuid_number_and_logical_clock() -> None:
    (ev,) = parse_events([gtid(A, 2**40 + 7, last_committed=5, sequence_number=6, transaction_length=900)])
    assert isinstance(ev, GtidEvent)
    assert ev.gtid == f"{A}:{2**40 + 7}"
    assert ev.sid == uuid.UUID(A).bytes and ev.gno == 2**40 + 7
    assert (ev.last_committed, ev.sequence_number) == (5, 6)
    assert ev.commit_flag is False  # a row-only transaction since 8.0.2
    assert ev.mysql_version == (8, 4, 3)  # taken from the dump's FORMAT_DESCRIPTION_EVENT


def test_gtid_event_with_original_timestamp_and_server_version_reads_back() -> None:
    # A transaction replicated from a 8.0 primary: both original fields are written (top bits set).
    events = [
        gtid(A, 3, commit_us=1_767_607_200_000_001, original_commit_us=1_767_607_100_000_000),
        gtid(A, 4, original_server_version=80036, commit_us=1_767_607_200_000_001, original_commit_us=1),
        gtid(A, 5, transaction_length=2**40),  # a 9-byte length field
    ]
    assert [e.gtid for e in parse_events(events)] == [f"{A}:3", f"{A}:4", f"{A}:5"]
    (ddl,) = parse_events(mysql_ddl(A, 6, "CREATE TABLE t (id INT PRIMARY KEY)"), only_events=[GtidEvent])
    assert ddl.commit_flag is True  # DDL is logged as a statement


def test_query_events_read_back_their_text_and_status_variables() -> None:
    texts = [
        "BEGIN",
        "COMMIT",
        "XA START X'74',X'',1",
        "XA END X'74',X'',1",
        "XA COMMIT X'74',X'',1",
        "XA ROLLBACK X'74',X'',1",
        "INSERT INTO t VALUES ('naïve ✓ 𝄞')",
    ]
    events = parse_events([query(t) for t in texts])
    assert [e.query for e in events] == texts
    assert all(e.schema == b"tenderhub" and e.sql_mode and e.character_set_client == 255 for e in events)
    (ddl,) = parse_events([query("ALTER TABLE integration_outbox ADD x INT", ddl=True, ddl_xid=77)])
    assert ddl.query == "ALTER TABLE integration_outbox ADD x INT"
    assert ddl.ddl_xid == 77 and ddl.mts_accessed_db_names == [b"tenderhub"]
    assert ddl.default_collation_for_utf8mb4_number == 255


def test_table_map_carries_outbox_column_names_types_signedness_and_key() -> None:
    (ev,) = parse_events([table_map()])
    assert isinstance(ev, TableMapEvent)
    assert (ev.schema, ev.table, ev.table_id) == ("tenderhub", "integration_outbox", 91)
    assert [c.name for c in ev.columns] == [c.name for c in OUTBOX_COLUMNS]
    assert [c.unsigned for c in ev.columns] == [True, False, False, False, True, False, False, False, False]
    assert ev.table_obj.primary_key == "id"
    assert [c.max_length for c in ev.columns[1:4]] == [256, 128, 256]
    assert ev.columns[5].length_size == 4 and ev.columns[7].fsp == 3
    assert {c.character_set_name for c in ev.columns[1:4]} == {"utf8"}


def test_write_rows_read_back_every_outbox_column() -> None:
    created = dt.datetime(2026, 1, 5, 10, 0, 1, 999000)
    published = dt.datetime(2026, 1, 5, 10, 0, 2, 5000)
    rows = [
        outbox_row(1, created_at=created),
        outbox_row(
            2**64 - 1,
            ["x"],
            event_type="user.activity",
            aggregate_type="activity",
            aggregate_id="Ünïcödé-𝄞-" + "z" * 40,
            schema_version=65535,
            published=True,
            published_at=published,
        ),
    ]
    events = parse_events([table_map(), write_rows(rows)])
    got = [r["values"] for r in events[1].rows]
    assert got[0] == {**rows[0], "payload": {b"tender_id": 1, b"title": b"Tender 1"}}
    assert got[1] == {**rows[1], "payload": [b"x"]}
    assert events[1].flags & STMT_END_F


def test_big_inserts_are_split_into_rows_events_of_at_most_8_kib() -> None:
    rows = [outbox_row(i, {"text": "y" * 1000}) for i in range(1, 40)]
    events = parse_events(mysql_txn(A, 5, rows), only_events=[WriteRowsEvent])
    assert len(events) > 1 and all(e.event_size < ROW_EVENT_MAX_SIZE + 2000 for e in events)
    assert [bool(e.flags & STMT_END_F) for e in events] == [False] * (len(events) - 1) + [True]
    assert [r["values"]["id"] for e in events for r in e.rows] == list(range(1, 40))


def test_ordinary_transaction_reads_back_in_mysql_order() -> None:
    events = parse_events(mysql_txn(A, 9, [outbox_row(1), outbox_row(2)], per_statement=1))
    assert kinds(events) == [
        "GtidEvent",
        "QueryEvent",
        "TableMapEvent",
        "WriteRowsEvent",
        "TableMapEvent",
        "WriteRowsEvent",
        "XidEvent",
    ]
    assert events[1].query == "BEGIN" and events[-1].xid == 9
    assert [e.rows[0]["values"]["id"] for e in events if isinstance(e, WriteRowsEvent)] == [1, 2]


def test_xa_events_read_back_their_xid_and_phase() -> None:
    prepared = parse_events(mysql_xa_prepare(A, 10, "trx-1", [outbox_row(1)], bqual="b1"), only_events=RELAY_EVENTS)
    assert kinds(prepared) == ["GtidEvent", "QueryEvent", "WriteRowsEvent", "QueryEvent", "XAPrepareEvent"]
    assert prepared[1].query == "XA START X'7472782d31',X'6231',1"
    assert prepared[3].query == "XA END X'7472782d31',X'6231',1"
    last = prepared[-1]
    assert (last.xid, last.xid_gtrid, last.xid_bqual, last.one_phase, last.xid_format_id) == (
        "trx-1b1",
        b"trx-1",
        b"b1",
        False,
        1,
    )
    committed = parse_events(mysql_xa_commit(A, 11, "trx-1", bqual="b1"))
    assert [e.query for e in committed if isinstance(e, QueryEvent)] == ["XA COMMIT X'7472782d31',X'6231',1"]
    assert committed[0].gtid == f"{A}:11"
    rolled_back = parse_events(mysql_xa_rollback(A, 12, "trx-2"))
    assert rolled_back[1].query == "XA ROLLBACK X'7472782d32',X'',1"
    one_phase = parse_events(mysql_xa_one_phase(A, 13, "trx-3", [outbox_row(3)]))
    assert isinstance(one_phase[-1], XAPrepareEvent) and one_phase[-1].one_phase is True
    (single,) = parse_events([xa_prepare("g", one_phase=True, format_id=7)])
    assert (single.xid, single.one_phase, single.xid_format_id) == ("g", True, 7)


def test_xid_event_carries_its_number() -> None:
    (ev,) = parse_events([xid(2**63 + 5)])
    assert isinstance(ev, XidEvent) and ev.xid == 2**63 + 5


def test_rotation_restarts_positions_and_the_next_file_decodes_rows() -> None:
    events = parse_events(
        [
            *binlog_start(f"{A}:1-4", "binlog.000007"),
            *mysql_txn(A, 5, [outbox_row(1)]),
            *binlog_rotation("binlog.000008", f"{A}:1-5"),
            *mysql_txn(A, 6, [outbox_row(2)]),
        ]
    )
    assert isinstance(events[0], RotateEvent) and events[0].next_binlog == "binlog.000007"
    assert events[0].timestamp == 0 and events[0].packet.log_pos == 0  # the dump's artificial rotate
    rot = next(e for e in events[1:] if isinstance(e, RotateEvent))
    assert (rot.next_binlog, rot.position) == ("binlog.000008", 4) and rot.timestamp != 0
    previous = [e for e in events if isinstance(e, PreviousGtidsEvent)]
    assert len(previous) == 2 and A in previous[1]._previous_gtids
    xids = [e for e in events if isinstance(e, XidEvent)]
    # Positions are per file: the same shape of transaction after the same file start ends at the same offset.
    assert xids[0].packet.log_pos == xids[1].packet.log_pos
    rows = [e.rows[0]["values"]["id"] for e in events if isinstance(e, WriteRowsEvent)]
    assert rows == [1, 2]


def test_a_failover_sequence_reads_back_with_the_new_server_uuid() -> None:
    events = parse_events(
        [
            *mysql_txn(A, 41, [outbox_row(1)]),
            *mysql_xa_prepare(A, 42, "x", [outbox_row(2)]),
            *mysql_txn(B, 1, [outbox_row(3)]),
            *mysql_xa_commit(B, 2, "x"),
        ],
        only_events=RELAY_EVENTS,
    )
    assert [e.gtid for e in events if isinstance(e, GtidEvent)] == [f"{A}:41", f"{A}:42", f"{B}:1", f"{B}:2"]
    assert [r["values"]["id"] for e in events if isinstance(e, WriteRowsEvent) for r in e.rows] == [1, 2, 3]


def test_the_relays_filters_keep_only_outbox_rows() -> None:
    other = (Column("id", MYSQL_TYPE_LONG), varchar("name", 20))
    events = parse_events(
        [
            gtid(A, 3),
            query("BEGIN"),
            table_map(92, other, table="teams"),
            write_rows([{"id": 1, "name": "t"}], 92, other),
            table_map(),
            write_rows([outbox_row(7)]),
            xid(3),
        ],
        only_events=RELAY_EVENTS,
        only_schemas=["tenderhub"],
        only_tables=["integration_outbox"],
    )
    assert kinds(events) == ["GtidEvent", "QueryEvent", "WriteRowsEvent", "XidEvent"]
    assert events[2].table == "integration_outbox" and events[2].rows[0]["values"]["id"] == 7


def test_the_library_asks_the_server_for_the_given_gtid_set_or_position() -> None:
    server = FakeMySQLServer([[*binlog_start(), *mysql_txn(A, 6, [outbox_row(1)])]])
    reader = stream_reader(server, auto_position=f"{A}:1-5,{B}:1-2:4")
    try:
        while reader.fetchone() is not None:
            pass
    finally:
        reader.close()
    assert server.dump_requests == [f"{A}:1-5,{B}:1-2:4"]
    assert any("binlog_checksum" in s.lower() for s in server.statements)
    by_position = FakeMySQLServer([binlog_start()], binlog_status=("binlog.000003", 157))
    reader = stream_reader(by_position, resume_stream=True)
    try:
        assert isinstance(reader.fetchone(), RotateEvent)
    finally:
        reader.close()
    assert by_position.dump_requests == ["binlog.000003:157"]


def test_a_reconnect_asks_again_and_gets_the_next_session() -> None:
    server = FakeMySQLServer([mysql_txn(A, 6, [outbox_row(1)]), mysql_txn(A, 7, [outbox_row(2)])])
    reader = stream_reader(server, auto_position=f"{A}:1-5", only_events=[WriteRowsEvent])
    try:
        first = reader.fetchone()
        assert reader.fetchone() is None  # end of the first session: the library closes the connection
        second = reader.fetchone()  # ... and opens a new one with a new dump command
    finally:
        reader.close()
    assert [first.rows[0]["values"]["id"], second.rows[0]["values"]["id"]] == [1, 2]
    # The library asks again from the set it was given, not from what it read since (the relay must update it).
    assert server.dump_requests == [f"{A}:1-5", f"{A}:1-5"]


def test_a_corrupted_event_fails_its_checksum() -> None:
    framed = bytearray(query("BEGIN").framed(log_pos=200))
    framed[-5] ^= 0x01  # a character of the statement
    with pytest.raises(AssertionError, match="CRC32 mismatch"):
        parse_events([bytes(framed)])


def test_events_are_framed_with_header_v4_and_running_positions() -> None:
    server = FakeMySQLServer([])
    packets = server.frame_session([*binlog_start(), query("BEGIN"), xid(1)])
    sizes, positions, types = [], [], []
    for p in packets:
        assert p[0] == 0  # the OK byte the dump protocol puts in front
        _ts, type_code, _server, size, log_pos, _flags = struct.unpack_from("<IBIIIH", p, 1)
        assert size == len(p) - 1
        sizes.append(size)
        positions.append(log_pos)
        types.append(type_code)
    assert types == [4, 15, 35, 2, 16]
    assert positions[0] == 0  # artificial
    assert positions[1:] == [4 + sum(sizes[1 : i + 2]) for i in range(4)]
    assert isinstance(RawEvent(2, b"").framed(0), bytes)
