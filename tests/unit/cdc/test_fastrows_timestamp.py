"""TIMESTAMP2 values as the relay's row decoder reads them: past 2038 (MariaDB 11.5 stores them to 2106, unsigned),
and the zero date (0 seconds), which the relay then dead-letters instead of publishing as 1970-01-01."""

from __future__ import annotations

import datetime as dt

from cdc import fastrows
from cdc.source import outbox_row_from_values


def _read(seconds: int, fsp: int = 0, frac: bytes = b"") -> dt.datetime:
    value, pos = fastrows._timestamp2(fsp)(seconds.to_bytes(4, "big") + frac, 0)
    assert pos == 4 + len(frac)
    return value


def test_a_timestamp_past_2038_is_read_as_itself_not_as_1903() -> None:
    when = dt.datetime(2040, 1, 1)
    assert _read(int(when.replace(tzinfo=dt.UTC).timestamp())) == when
    assert _read(1_767_610_800, 3, (123 * 10).to_bytes(2, "big")) == dt.datetime(2026, 1, 5, 11, 0, 0, 123000)


def test_the_zero_date_becomes_a_dead_letter_not_an_event_of_1970() -> None:
    values = {"id": 1, "event_type": "user.activity", "aggregate_type": "activity", "aggregate_id": "1"}
    row = outbox_row_from_values({**values, "payload": "{}", "created_at": _read(0)}, 5, 0, 5 << 16)
    assert row.defect == "created_at is the zero date" and row.created_at is None
