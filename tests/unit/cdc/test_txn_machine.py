"""`TxnMachine` on MariaDB event sequences: resume skips exactly what was published, XA rows wait for their commit,
other GTID domains are tracked but may not carry outbox rows, rows without room in the clock go to the DLQ.

Events are the library's own classes with their decoded attributes set (the parsing itself is python-mysql-
replication's; tests/unit/cdc/test_mysql_binlog.py drives MySQL byte sequences through it)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from pymysqlreplication.event import MariadbGtidEvent, QueryEvent, XAPrepareEvent, XidEvent
from pymysqlreplication.row_event import WriteRowsEvent

from cdc.envelope import OutboxRow, to_record
from cdc.errors import SourceConfigError, SourceSeqRegressionError
from cdc.position import MAX_ROWS_PER_TXN, ROW_BITS, Position
from cdc.source import EpochStarted, TxnEnd, TxnMachine
from schema.events import AGGREGATE_TYPES
from schema.topics import TopicNames

NOW = dt.datetime(2026, 1, 5, 10, 0, 0, 123000)


def _event(cls: type, **attrs: Any) -> Any:
    ev = cls.__new__(cls)
    for k, v in attrs.items():
        setattr(ev, k, v)
    return ev


def gtid(seq: int, domain: int = 0, server: int = 1, flags: int = 0) -> Any:
    return _event(
        MariadbGtidEvent,
        domain_id=domain,
        gtid_seq_no=seq,
        flags=flags,
        server_id=server,
        gtid=f"{domain}-{server}-{seq}",
    )


def query(text: str) -> Any:
    return _event(QueryEvent, query=text)


def xid() -> Any:
    return _event(XidEvent, xid=1)


def xa_prepare_group(seq: int, name: str, *ids: int) -> list[Any]:
    """What MariaDB 10.11 writes for XA START .. XA END .. XA PREPARE (read with mariadb-binlog): a GTID flagged
    FL_PREPARED_XA (it carries XA START), the rows, an XA END query, and an XA_PREPARE event with the xid."""
    end = f"XA END X'{name.encode().hex()}',X'',1"
    prepare = _event(XAPrepareEvent, one_phase=False, xid_format_id=1, xid_gtrid=name.encode(), xid_bqual=b"")
    return [gtid(seq, flags=0x40), rows(*ids), query(end), prepare]


def xa_outcome(seq: int, verb: str, name: str) -> list[Any]:
    return [gtid(seq, flags=0x80 | 0x01), query(f"XA {verb} X'{name.encode().hex()}',X'',1")]


def values(i: int) -> dict[str, Any]:
    payload = {"user_id": 1, "team_id": 1, "action": "tender.viewed", "details": {"n": i}}
    return {
        "id": i,
        "event_type": "user.activity",
        "aggregate_type": "activity",
        "aggregate_id": "1",
        "schema_version": 1,
        "payload": json.dumps(payload),
        "created_at": NOW,
    }


def rows(*ids: int) -> Any:
    ev = _event(WriteRowsEvent)
    ev._RowsEvent__rows = [{"values": values(i)} for i in ids]
    return ev


def txn(seq: int, *ids: int, domain: int = 0) -> list[Any]:
    return [gtid(seq, domain), query("BEGIN"), *([rows(*ids)] if ids else []), xid()]


def feed(machine: TxnMachine, events: list[Any]) -> list[Any]:
    out: list[Any] = []
    for ev in events:
        out.extend(machine.feed(ev))
    return out


def ids_of(items: list[Any]) -> list[int]:
    return [i.id for i in items if isinstance(i, OutboxRow)]


def test_resume_mid_transaction_skips_exactly_the_rows_already_sent() -> None:
    m = TxnMachine(Position("0-1-9", 9, txn_seq=10, rows_done=2, last_source_seq=(10 << ROW_BITS) | 1), mariadb=True)
    items = feed(m, [*txn(10, 1, 2, 3, 4), *txn(11, 5)])
    assert ids_of(items) == [3, 4, 5]
    assert [i.source_seq for i in items if isinstance(i, OutboxRow)] == [
        (10 << ROW_BITS) | 2,
        (10 << ROW_BITS) | 3,
        11 << ROW_BITS,
    ]
    assert [i for i in items if isinstance(i, TxnEnd)][-1] == TxnEnd("0-1-11", 11)


def test_replayed_transactions_after_a_reconnect_are_skipped() -> None:
    m = TxnMachine(Position("0-1-0", 0), mariadb=True)
    first = feed(m, [*txn(1, 1, 2), gtid(2), query("BEGIN"), rows(3)])
    # The library reconnects from the last finished transaction: transaction 2 comes again from its start.
    again = feed(m, [gtid(2), query("BEGIN"), rows(3, 4), xid()])
    assert ids_of(first) == [1, 2, 3] and ids_of(again) == [4]


def test_another_domains_transactions_are_tracked_without_rows() -> None:
    m = TxnMachine(Position("0-1-5", 5), mariadb=True)
    # A DBA's change in domain 7, then a DDL there (standalone: ends with its own query).
    items = feed(m, [*txn(40, domain=7), gtid(41, domain=7, flags=0x01), query("CREATE TABLE x (id INT)")])
    items = [i for i in items if isinstance(i, TxnEnd)]
    assert items[-1].gtid_state == "0-1-5,7-1-41" and items[-1].seq == 5
    assert ids_of(feed(m, txn(6, 9))) == [9]


def test_an_outbox_row_in_another_domain_is_a_config_error_with_the_remedy() -> None:
    m = TxnMachine(Position("0-1-5", 5), mariadb=True)
    with pytest.raises(SourceConfigError, match="TENDERHUB_RELAY_GTID_DOMAIN"):
        feed(m, txn(3, 1, domain=1))


def test_xa_rows_wait_for_xa_commit_and_take_the_commits_slot() -> None:
    m = TxnMachine(Position("0-1-5", 5), mariadb=True)
    items = feed(m, xa_prepare_group(6, "trx1", 1, 2))
    assert ids_of(items) == []
    # The resume point stays before the prepared transaction until it commits.
    assert m.resume_state() == "0-1-5"
    items = feed(m, txn(7, 3))
    assert ids_of(items) == [3] and m.resume_state() == "0-1-5"
    items = feed(m, xa_outcome(8, "COMMIT", "trx1"))
    assert ids_of(items) == [1, 2]
    assert [i.source_seq >> ROW_BITS for i in items if isinstance(i, OutboxRow)] == [8, 8]
    assert m.resume_state() == "0-1-8"


def test_xa_rollback_drops_its_rows_and_a_restart_before_commit_holds_them_again() -> None:
    m = TxnMachine(Position("0-1-5", 5), mariadb=True)
    feed(m, xa_prepare_group(6, "a", 1))
    assert ids_of(feed(m, xa_outcome(7, "ROLLBACK", "a"))) == []
    # Restart from the resume point with transaction 7 (a later one) already published.
    m2 = TxnMachine(Position("0-1-5", 9, last_source_seq=9 << ROW_BITS), mariadb=True)
    feed(m2, xa_prepare_group(6, "b", 2))
    assert ids_of(feed(m2, txn(9, 3))) == []  # already published before the restart
    assert ids_of(feed(m2, xa_outcome(10, "COMMIT", "b"))) == [2]


def test_rows_past_the_transactions_slot_become_dlq_records() -> None:
    m = TxnMachine(Position("0-1-5", 5), mariadb=True)
    big = _event(WriteRowsEvent)
    row = {"values": values(1)}
    big._RowsEvent__rows = [row] * (MAX_ROWS_PER_TXN + 2)
    items = feed(m, [gtid(6), query("BEGIN"), big, xid()])
    out = [i for i in items if isinstance(i, OutboxRow)]
    assert len(out) == MAX_ROWS_PER_TXN + 2
    assert out[-3].defect is None and out[-2].defect is not None and out[-1].defect is not None
    topics = TopicNames({a: f"t.{a}" for a in AGGREGATE_TYPES}, "t.dlq", "t.relay.position")
    record = to_record(out[-1], topics)
    assert record.dlq_reason is not None and "more than" in record.dlq_reason


def test_a_sequence_that_goes_back_in_the_same_domain_stops_loudly() -> None:
    m = TxnMachine(Position("0-1-500", 500, last_source_seq=500 << ROW_BITS), mariadb=True)
    # Numbers below the position look published (skipped); a transaction that is new yet numbers lower than the
    # last published event can only come from a rewritten history.
    m.done_seq = 0
    with pytest.raises(SourceSeqRegressionError, match="--resnapshot"):
        feed(m, txn(3, 1))


def test_undecodable_values_make_a_defect_not_a_crash() -> None:
    m = TxnMachine(Position("0-1-5", 5), mariadb=True)
    bad = _event(WriteRowsEvent)
    bad._RowsEvent__rows = [{"values": {**values(1), "created_at": "0000-00-00 00:00:00"}}]
    items = feed(m, [gtid(6), query("BEGIN"), bad, xid()])
    row = next(i for i in items if isinstance(i, OutboxRow))
    assert row.defect is not None and "created_at" in row.defect
    assert not any(isinstance(i, EpochStarted) for i in items)


# -- a review of the relay against binlog situations a production server produces (each failing before its fix) --


def test_a_prepare_group_read_again_after_a_silent_reconnect_keeps_its_resume_point() -> None:
    m = TxnMachine(Position("0-1-5", 5), mariadb=True)
    feed(m, [*xa_prepare_group(6, "trx1", 1), *txn(7, 2)])
    # The library reconnects from the resume point (0-1-5): the prepare group and transaction 7 come again.
    ends = [i for i in feed(m, [*xa_prepare_group(6, "trx1", 1), *txn(7, 2)]) if isinstance(i, TxnEnd)]
    assert all(e.gtid_state == "0-1-5" for e in ends), ends  # never past the prepared transaction
    assert m.resume_state() == "0-1-5"
    assert ids_of(feed(m, xa_outcome(9, "COMMIT", "trx1"))) == [1]


def test_an_xid_that_is_not_utf8_is_held_and_committed_by_its_bytes() -> None:
    m = TxnMachine(Position("0-1-5", 5), mariadb=True)
    gtrid, bqual = b"\x81\xff\x00jta", b"\xfe\x01"
    prepare = _event(XAPrepareEvent, one_phase=False, xid_format_id=131077, xid_gtrid=gtrid, xid_bqual=bqual)
    end = f"XA END X'{gtrid.hex()}',X'{bqual.hex()}',131077"
    assert feed(m, [gtid(6, flags=0x40), rows(1), query(end), prepare]) == [TxnEnd("0-1-5", 6)]
    commit = [gtid(7, flags=0x80 | 0x01), query(f"XA COMMIT X'{gtrid.hex()}',X'{bqual.hex()}',131077")]
    assert ids_of(feed(m, commit)) == [1] and m.resume_state() == "0-1-7"


def test_a_prepared_transaction_without_outbox_rows_does_not_hold_the_resume_point() -> None:
    m = TxnMachine(Position("0-1-5", 5), mariadb=True)
    feed(m, xa_prepare_group(6, "orphan"))  # another application's XA, left prepared by a crashed manager
    ends = [i for i in feed(m, [*txn(7, 1), *txn(8, 2)]) if isinstance(i, TxnEnd)]
    assert ends[-1] == TxnEnd("0-1-8", 8) and m.resume_state() == "0-1-8"
    assert ids_of(feed(m, xa_outcome(9, "COMMIT", "orphan"))) == []


def test_a_commit_of_an_xa_transaction_prepared_before_the_start_position_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Its prepare is before where the relay started (a snapshot or --from-now taken while it was prepared): if it
    # wrote outbox rows they cannot be published, and that must not pass without a word. (It cannot stop the relay:
    # another application's XA without outbox rows is not held either, and commits the same way.)
    m = TxnMachine(Position("0-1-6", 6), mariadb=True)
    assert ids_of(feed(m, xa_outcome(7, "COMMIT", "before"))) == []
    assert "XA COMMIT" in caplog.text and "not published" in caplog.text


def test_rows_rolled_back_to_a_savepoint_are_not_published() -> None:
    m = TxnMachine(Position("0-1-5", 5), mariadb=True)
    events = [gtid(6), query("BEGIN"), rows(1), query("SAVEPOINT `sp1`"), rows(2), query("ROLLBACK TO `sp1`")]
    items = feed(m, [*events, rows(3), xid()])
    assert ids_of(items) == [1, 3]
    # A group the server ends with ROLLBACK (a non-transactional table in it) publishes nothing held since a
    # savepoint; rows read before any savepoint were published already, and the loss of that is logged.
    items = feed(m, [gtid(7), query("BEGIN"), query("SAVEPOINT sp"), rows(4), query("ROLLBACK")])
    assert ids_of(items) == [] and [i for i in items if isinstance(i, TxnEnd)] == [TxnEnd("0-1-7", 7)]
    assert ids_of(feed(m, txn(8, 5))) == [5]
    assert ids_of(
        feed(m, [gtid(9), query("BEGIN"), query("SAVEPOINT a"), rows(6), query("RELEASE SAVEPOINT a"), xid()])
    ) == [6]


def test_a_table_map_without_the_outbox_columns_stops_with_the_remedy() -> None:
    m = TxnMachine(Position("0-1-5", 5), mariadb=True)
    unnamed = _event(WriteRowsEvent)
    unnamed._RowsEvent__rows = [{"values": {f"UNKNOWN_COL{i}": v for i, v in enumerate(values(1).values())}}]
    with pytest.raises(SourceConfigError, match="binlog_row_metadata"):
        feed(m, [gtid(6), query("BEGIN"), unnamed, xid()])


def test_a_zero_or_epoch_created_at_is_a_defect_not_1970() -> None:
    m = TxnMachine(Position("0-1-5", 5), mariadb=True)
    zero = _event(WriteRowsEvent)
    zero._RowsEvent__rows = [{"values": {**values(1), "created_at": dt.datetime(1970, 1, 1)}}]
    out = [i for i in feed(m, [gtid(6), query("BEGIN"), zero, xid()]) if isinstance(i, OutboxRow)]
    assert out[0].defect is not None and "created_at" in out[0].defect


@pytest.mark.parametrize(
    "ddl",
    ["TRUNCATE TABLE integration_outbox", "DROP TABLE `integration_outbox`", "RENAME TABLE integration_outbox TO x"],
)
def test_a_ddl_that_resets_the_outbox_ids_stops_with_the_remedy(ddl: str) -> None:
    m = TxnMachine(Position("0-1-5", 5), mariadb=True)
    feed(m, txn(6, 1))
    with pytest.raises(SourceConfigError, match="AUTO_INCREMENT"):
        feed(m, [gtid(7, flags=0x01), query(ddl)])
    # Other tables' DDL is none of the relay's business, nor is another database's table of the same name.
    m2 = TxnMachine(Position("0-1-5", 5), mariadb=True, database="tenderhub")
    feed(m2, [gtid(6, flags=0x01), query("TRUNCATE TABLE integration_outbox_status_cache")])
    feed(m2, [gtid(7, flags=0x01), _event(QueryEvent, query=ddl, schema=b"scratch_db")])
    feed(
        m2,
        [
            gtid(8, flags=0x01),
            _event(QueryEvent, query=ddl.replace("integration_outbox", "s.integration_outbox"), schema=b"tenderhub"),
        ],
    )
    with pytest.raises(SourceConfigError, match="AUTO_INCREMENT"):
        feed(m2, [gtid(9, flags=0x01), _event(QueryEvent, query=ddl, schema=b"tenderhub")])


@pytest.mark.parametrize("event_type", [40, 165, 166, 169, 171])
def test_a_compressed_binlog_event_stops_the_relay_rather_than_lose_the_rows_inside(event_type: int) -> None:
    from cdc import fastrows

    wrapper_map = fastrows._RelayPacketWrapper._BinLogPacketWrapper__event_map
    assert wrapper_map[event_type] is fastrows.CompressedEvent  # read as one (the library skipped it)
    m = TxnMachine(Position("0-1-5", 5), mariadb=True)
    compressed = _event(fastrows.CompressedEvent, event_type=event_type)
    with pytest.raises(SourceConfigError, match="log_bin_compress=OFF"):
        feed(m, [gtid(6), query("BEGIN"), compressed, xid()])
