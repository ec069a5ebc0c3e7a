"""The stream workers' Kafka consumer as `build_pipeline` creates it: read_committed, and a fetch long-poll no
longer than the setting. Faust hard-codes 1,500 ms; the broker then holds a fetch that found nothing committed for
up to that long, even once the relay's transaction commits: measured as 1.4-1.5 s pauses of an agent at 1,000
events/s (bench/worker_bench.py), which made commit -> visible p99 1.7-1.9 s."""

from __future__ import annotations

from typing import Any

import pytest

import streams.app
from streams.app import ISOLATION_LEVEL
from tests.unit.streams.test_batch_shutdown import settings


def _consumer(**overrides: Any) -> Any:
    pipeline = streams.app.build_pipeline(settings().model_copy(update=overrides), agents=["activity_logs"])
    return pipeline.app.consumer._thread._create_worker_consumer(pipeline.app.transport)


@pytest.mark.asyncio
async def test_worker_consumer_reads_committed_with_the_configured_fetch_wait() -> None:
    consumer = _consumer()
    assert consumer._isolation_level == ISOLATION_LEVEL
    assert consumer._fetch_max_wait_ms == settings().worker_fetch_max_wait_ms
    assert consumer._fetch_max_wait_ms <= 100, "the default fetch wait bounds the idle pause of an agent"


@pytest.mark.asyncio
async def test_fetch_wait_is_a_setting() -> None:
    assert _consumer(worker_fetch_max_wait_ms=250)._fetch_max_wait_ms == 250
