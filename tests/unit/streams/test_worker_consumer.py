"""The stream workers' Kafka consumer as the worker creates it (streams/consumer.py): read_committed, offsets
committed by the worker only, and a fetch long-poll no longer than the setting. Faust hard-coded 1,500 ms; the broker
then held a fetch that found nothing committed for up to that long, even once the relay's transaction committed:
measured as 1.4-1.5 s pauses of an agent at 1,000 events/s (bench/worker_bench.py)."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError

import streams.app
from streams.consumer import ISOLATION_LEVEL, BatchConsumer, control_group, make_consumer
from tests.unit.streams.test_batch_shutdown import settings


@pytest.mark.asyncio
async def test_worker_consumer_reads_committed_commits_itself_with_the_configured_fetch_wait() -> None:
    consumer: Any = make_consumer(settings())
    assert consumer._isolation_level == ISOLATION_LEVEL == "read_committed"
    assert consumer._enable_auto_commit is False
    assert consumer._group_id == settings().worker_group
    assert consumer._fetch_max_wait_ms == settings().worker_fetch_max_wait_ms
    assert consumer._fetch_max_wait_ms <= 100, "the default fetch wait bounds the idle pause of an agent"


@pytest.mark.asyncio
async def test_fetch_wait_is_a_setting() -> None:
    consumer: Any = make_consumer(settings().model_copy(update={"worker_fetch_max_wait_ms": 250}))
    assert consumer._fetch_max_wait_ms == 250


@pytest.mark.asyncio
async def test_the_session_timeout_is_a_setting_and_heartbeats_fit_three_times_into_it() -> None:
    default: Any = make_consumer(settings())
    assert (default._session_timeout_ms, default._heartbeat_interval_ms) == (60_000, 3_000)
    assert default._rebalance_timeout_ms == 60_000
    short_settings = settings().model_copy(update={"worker_session_timeout_ms": 6_000})
    short: Any = make_consumer(short_settings)
    assert (short._session_timeout_ms, short._heartbeat_interval_ms) == (6_000, 2_000)
    # Faust's control group (the batch consumer starts once it is assigned) waits for a killed worker as long.
    pipeline = streams.app.build_pipeline(short_settings, agents=["activity_logs"])
    conf = pipeline.app.conf
    assert (conf.broker_session_timeout, conf.broker_rebalance_timeout, conf.broker_heartbeat_interval) == (6, 6, 2)
    await pipeline.ctx.aclose()
    # The longest session the setting takes: Faust's consumer is made with it (it refuses one longer than its
    # request timeout), and the data consumer's requests outlast a rebalance.
    longest = settings().model_copy(update={"worker_session_timeout_ms": 300_000})
    assert make_consumer(longest)._client._request_timeout_ms == 305_000
    pipeline = streams.app.build_pipeline(longest, agents=["activity_logs"])
    faust_consumer = pipeline.app.consumer._thread._create_worker_consumer(pipeline.app.transport)  # raises if refused
    assert faust_consumer._session_timeout_ms == 300_000
    await pipeline.ctx.aclose()


@pytest.mark.asyncio
async def test_the_pipeline_reads_its_agents_topics_and_faust_elects_the_leader_in_a_group_of_its_own() -> None:
    pipeline = streams.app.build_pipeline(settings(), agents=["activity_logs", "readiness"])
    topics = pipeline.ctx.topics.data
    assert pipeline.consumer.topics == sorted({topics["activity"], topics["tender"], topics["company"]})
    assert pipeline.app.conf.id == control_group(settings().worker_group) != settings().worker_group
    await pipeline.ctx.aclose()


class _Rebalanced:
    """A consumer whose group went on without it (its session expired while the coordinator's broker was down):
    every commit is refused."""

    def __init__(self) -> None:
        self.tp = TopicPartition("t.activity", 0)
        self.commits = 0

    def assignment(self) -> set[TopicPartition]:
        return {self.tp}

    async def position(self, tp: TopicPartition) -> int:
        return 42

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits += 1
        raise CommitFailedError("the group has already rebalanced and assigned the partitions to another member")


@pytest.mark.asyncio
async def test_a_refused_commit_does_not_stop_the_worker_the_events_are_redelivered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    consumer = BatchConsumer(settings(), [])
    fake = _Rebalanced()
    await consumer._commit(fake, [fake.tp])  # type: ignore[arg-type]
    assert fake.commits == 1 and consumer._committed == {} and consumer.commits == 0
    assert "redelivered" in caplog.text
    # Revoked partitions are committed the same way, and a refusal there does not break the rebalance either.
    consumer._consumer = fake  # type: ignore[assignment]
    consumer._seen.add(fake.tp)
    await consumer.partitions_revoked([fake.tp])
    assert fake.commits == 2 and fake.tp not in consumer._seen


@pytest.mark.asyncio
async def test_a_commit_refused_for_good_still_stops_the_worker() -> None:
    from aiokafka.errors import GroupAuthorizationFailedError

    class Unauthorized(_Rebalanced):
        async def commit(self, offsets: dict[TopicPartition, int]) -> None:
            raise GroupAuthorizationFailedError()

    fake = Unauthorized()
    with pytest.raises(GroupAuthorizationFailedError):
        await BatchConsumer(settings(), [])._commit(fake, [fake.tp])  # type: ignore[arg-type]
