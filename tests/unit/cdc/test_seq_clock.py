"""The source_seq clock: epochs keep it growing across RESET MASTER, new servers and lost positions; int64 headroom;
positions written before epochs resume above every number they gave out."""

from __future__ import annotations

import json

import pytest

from cdc.position import (
    MAX_ROWS_PER_TXN,
    MAX_SOURCE_SEQ,
    ROW_BITS,
    Epoch,
    Position,
    SeqClock,
    SourceSeqError,
    id_ranges,
    source_seq,
)

U1 = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
U2 = "4f22fa47-71ca-11e1-9e33-c80aa9429563"


def test_gtid_numbers_up_to_2_to_the_43_fit_int64() -> None:
    assert source_seq((1 << 43) - 1, MAX_ROWS_PER_TXN - 1) == MAX_SOURCE_SEQ
    with pytest.raises(SourceSeqError, match="int64"):
        source_seq(1 << 43, 0)


def test_a_lower_number_in_the_same_space_is_refused_unless_the_caller_knows_history_restarted() -> None:
    clock = SeqClock(Epoch(), -1)
    first = clock.assign("", 5000, 0, may_start_epoch=False)
    with pytest.raises(SourceSeqError, match="backwards"):
        clock.assign("", 3, 0, may_start_epoch=False)  # RESET MASTER while tailing: stop, do not publish
    after_reset = clock.assign("", 3, 0, may_start_epoch=True)  # a snapshot after RESET MASTER
    assert after_reset == first + 1 and clock.epoch.number == 1
    assert clock.assign("", 4, 0, may_start_epoch=False) > after_reset


def test_a_new_server_uuid_starts_an_epoch_above_everything_published() -> None:
    clock = SeqClock(Epoch(0, 0, U1), -1)
    old = clock.assign(U1, 90_000, 7, may_start_epoch=False)
    new = clock.assign(U2, 1, 0, may_start_epoch=False)  # failover: the new primary numbers from 1
    assert new == old + 1 and clock.epoch == Epoch(1, new - (1 << ROW_BITS), U2)
    assert clock.assign(U2, 2, 0, may_start_epoch=False) > new


def test_prepare_starts_an_epoch_only_when_the_next_transaction_would_not_number_higher() -> None:
    clock = SeqClock(Epoch(), (100 << ROW_BITS) | 5)
    assert clock.prepare("", 101) == Epoch()  # the source's numbers go on: no epoch
    epoch = clock.prepare("", 1)  # a new server / RESET MASTER: numbers restart
    assert epoch.number == 1 and source_seq(1, 0, epoch.offset) == clock.last + 1


def test_positions_round_trip_with_epoch_and_unmarked_ranges() -> None:
    p = Position("0-1-9", 9, 10, 3, epoch=Epoch(2, -77, U1), last_source_seq=1234, unmarked=((1, 5), (9, 9)))
    assert Position.from_json(p.to_json()) == p


def test_a_position_from_before_epochs_resumes_above_its_old_24_bit_numbers() -> None:
    legacy = json.dumps({"gtid": "0-1-500", "seq": 500, "txn_seq": 501, "rows_done": 3, "last_ids": []}).encode()
    p = Position.from_json(legacy)
    old_last = (501 << 24) | 2
    assert p.last_source_seq == old_last and p.txn_seq == 501 and p.rows_done == 3
    clock = p.clock()
    # The rest of the partly published transaction continues above the old numbering.
    assert clock.assign("", 501, 3, may_start_epoch=False) == old_last + 1
    assert clock.assign("", 502, 0, may_start_epoch=False) > old_last + 1


def test_id_ranges_merge_consecutive_ids() -> None:
    assert id_ranges([5, 1, 2, 3, 9, 10, 7]) == ((1, 3), (5, 5), (7, 7), (9, 10))
    assert id_ranges([]) == ()
