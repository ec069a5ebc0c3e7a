"""When the binlog relay ends a Kafka transaction: rows as soon as the binlog is idle (or after the linger), never
within the commit gap unless the batch is full, the position alone once a second, everything when stopping."""

from __future__ import annotations

import pytest

from cdc.modes.binlog import IDLE_POSITION_FLUSH_S, flush_due, wait_s

LINGER = 0.005


def due(rows: int = 1, idle: bool = True, since: float = 0.0, gap: float = 0.0, stopping: bool = False) -> bool:
    return flush_due(rows=rows, moved=rows > 0, idle=idle, since=since, linger=LINGER, gap=gap, stopping=stopping)


def test_without_a_gap_rows_go_as_soon_as_the_binlog_is_idle_or_after_the_linger() -> None:
    assert due(idle=True, since=0.0)
    assert not due(idle=False, since=LINGER / 2)
    assert due(idle=False, since=LINGER)


@pytest.mark.parametrize("idle", [True, False])
def test_a_gap_holds_rows_back_until_it_has_passed(idle: bool) -> None:
    gap = 0.010
    assert not due(idle=idle, since=0.0, gap=gap)
    assert not due(idle=idle, since=gap * 0.9, gap=gap)
    assert due(idle=idle, since=gap, gap=gap)


def test_a_linger_longer_than_the_gap_still_waits_for_more_rows_while_they_come() -> None:
    assert not flush_due(rows=3, moved=True, idle=False, since=0.02, linger=0.05, gap=0.01, stopping=False)
    assert flush_due(rows=3, moved=True, idle=True, since=0.02, linger=0.05, gap=0.01, stopping=False)


def test_the_position_alone_goes_once_a_second_and_nothing_goes_with_nothing_to_say() -> None:
    def position_due(since: float) -> bool:
        return flush_due(rows=0, moved=True, idle=True, since=since, linger=LINGER, gap=0.01, stopping=False)

    assert not position_due(IDLE_POSITION_FLUSH_S / 2)
    assert position_due(IDLE_POSITION_FLUSH_S)
    assert not flush_due(rows=0, moved=False, idle=True, since=60, linger=LINGER, gap=0, stopping=True)


def test_stopping_sends_whatever_is_held_at_once_whatever_the_gap() -> None:
    assert due(idle=False, since=0.0, gap=1.0, stopping=True)


def test_the_wait_ends_when_the_gap_does_then_is_the_linger() -> None:
    assert wait_s(rows=0, since=0.0, linger=LINGER, gap=0.01) == IDLE_POSITION_FLUSH_S
    assert wait_s(rows=4, since=0.004, linger=LINGER, gap=0.01) == pytest.approx(0.006)
    assert wait_s(rows=4, since=0.02, linger=LINGER, gap=0.01) == LINGER
    assert wait_s(rows=4, since=0.0, linger=LINGER, gap=0.0) == LINGER
