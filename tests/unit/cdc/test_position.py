"""Relay positions: source_seq follows commit order; resume skips exactly the rows already published."""

from __future__ import annotations

import pytest

from cdc.position import (
    MAX_ROWS_PER_TXN,
    Position,
    mariadb_gtid_seq,
    mysql_gtid_add,
    mysql_gtid_seq,
    replace_domain,
    source_seq,
)


def test_source_seq_orders_by_transaction_then_row() -> None:
    assert source_seq(10, 999) < source_seq(11, 0) < source_seq(11, 1)


def test_source_seq_refuses_rows_beyond_the_index_space() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        source_seq(1, MAX_ROWS_PER_TXN)


def test_gtid_seq_of_a_domain() -> None:
    assert mariadb_gtid_seq("0-1-560", 0) == 560
    assert mariadb_gtid_seq("0-1-560,1-2-7", 1) == 7
    assert mariadb_gtid_seq("", 0) == 0
    with pytest.raises(ValueError):
        mariadb_gtid_seq("3E11FA47-71CA:1-5", 0)


def test_replace_domain_keeps_other_domains() -> None:
    assert replace_domain("0-1-5,1-2-7", "0-1-6") == "0-1-6,1-2-7"
    assert replace_domain("", "0-1-1") == "0-1-1"


def test_last_sent_at_a_boundary_skips_the_whole_finished_transaction() -> None:
    p = Position("0-1-100", 100)
    assert p.last_sent() == (100, MAX_ROWS_PER_TXN)
    assert (100, 5) <= p.last_sent() < (101, 0)


def test_last_sent_mid_transaction_skips_only_published_rows() -> None:
    p = Position("0-1-100", 100, txn_seq=101, rows_done=300)
    assert p.last_sent() == (101, 299)
    assert (101, 299) <= p.last_sent() < (101, 300)


def test_position_round_trips_as_json() -> None:
    p = Position("0-1-100", 100, 101, 3)
    assert Position.from_json(p.to_json()) == p
    assert "3 rows of txn 101" in p.describe()


U1 = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
U2 = "4f22fa47-71ca-11e1-9e33-c80aa9429563"


def test_mysql_gtid_add_extends_and_merges_intervals() -> None:
    assert mysql_gtid_add("", f"{U1}:1") == f"{U1}:1"
    assert mysql_gtid_add(f"{U1}:1-5", f"{U1}:6") == f"{U1}:1-6"
    assert mysql_gtid_add(f"{U1}:1-5:7-9", f"{U1}:6") == f"{U1}:1-9"
    assert mysql_gtid_add(f"{U1}:1-5", f"{U1}:8") == f"{U1}:1-5:8"
    assert mysql_gtid_add(f"{U1}:1-5", f"{U1}:3") == f"{U1}:1-5"
    assert mysql_gtid_add(f"{U2}:1-2", f"{U1.upper()}:1") == f"{U1}:1,{U2}:1-2"


def test_mysql_gtid_seq_needs_one_source() -> None:
    assert mysql_gtid_seq(f"{U1}:1-5:7-9") == 9
    assert mysql_gtid_seq("") == 0
    with pytest.raises(ValueError, match="several source uuids"):
        mysql_gtid_seq(f"{U1}:1-5,{U2}:1-3")
