"""`tenderhub replay --to`: what it accepts, and which plans move the group forward."""

from __future__ import annotations

import datetime as dt

import pytest
from aiokafka import TopicPartition

from streams.replay import ReplayError, Target, moved_forward


@pytest.mark.parametrize("text", ["offset:²", "offset:-1", "offset:", "offset:1e3", "offset:١٢"])
def test_an_offset_is_ascii_digits(text: str) -> None:
    with pytest.raises(ReplayError, match="offset:N"):
        Target.parse(text)


def test_targets_parse_and_describe_themselves() -> None:
    assert Target.parse("offset:12").describe() == "offset:12"
    assert Target.parse("earliest").describe() == "earliest"
    when = Target.parse("2026-01-05T10:00:00")
    assert when.time == dt.datetime(2026, 1, 5, 10, tzinfo=dt.UTC)


def test_only_partitions_moved_past_the_groups_position_are_forward() -> None:
    a, b = TopicPartition("t", 0), TopicPartition("t", 1)
    assert moved_forward({a: 5, b: 10}, {a: 5, b: 12}) == []
    assert moved_forward({a: 6, b: 10}, {a: 5, b: 12}) == ["t[0] 5 -> 6"]
