"""The published-marker's pace (cdc/marker.py): the ids Kafka committed are recorded in MySQL in batches, at most
every MARK_INTERVAL_S, so a relay committing a Kafka transaction every few milliseconds does not make a durable MySQL
commit (and a binlog transaction the relay reads back) for each one."""

from __future__ import annotations

import asyncio
import time

import pytest

from cdc import marker as marker_module
from cdc.marker import PublishedMarker
from cdc.position import IdRanges
from schema.settings import load_settings


class _Recording(PublishedMarker):
    def __init__(self) -> None:
        super().__init__(load_settings())
        self.calls: list[IdRanges] = []

    def _mark(self, ranges: IdRanges) -> None:
        self.calls.append(ranges)


@pytest.mark.asyncio
async def test_frequent_commits_are_recorded_in_few_batches_and_none_is_lost() -> None:
    marker, stop = _Recording(), asyncio.Event()
    task = asyncio.create_task(marker.run(stop))
    added = 0
    started = time.monotonic()
    for n in range(100):  # a Kafka commit every 5 ms for half a second
        marker.add(((n * 10 + 1, n * 10 + 5),))
        added += 1
        await asyncio.sleep(0.005)
    elapsed = time.monotonic() - started
    stop.set()
    await asyncio.wait_for(task, 10)
    recorded = [r for call in marker.calls for r in call]
    assert recorded == [(n * 10 + 1, n * 10 + 5) for n in range(added)]  # every run, in order, once
    assert not marker.unmarked()
    # One batch per interval (and the last at stop), not one per commit.
    assert len(marker.calls) <= elapsed / marker_module.MARK_INTERVAL_S + 3, len(marker.calls)


@pytest.mark.asyncio
async def test_the_last_ranges_are_recorded_at_stop_without_waiting_for_the_interval() -> None:
    marker, stop = _Recording(), asyncio.Event()
    task = asyncio.create_task(marker.run(stop))
    marker.add(((1, 3),))
    await asyncio.sleep(0.05)
    marker.add(((4, 9),))
    stop.set()
    started = time.monotonic()
    await asyncio.wait_for(task, 10)
    assert [r for call in marker.calls for r in call] == [(1, 3), (4, 9)]
    assert time.monotonic() - started < marker_module.MARK_INTERVAL_S
