"""Samples of the run's processes and backlogs, and the judgement of a soak: memory without an upward trend, lag
bounded. Each sample: RSS of every relay and worker, the relay's backlog (outbox rows not yet published), and the
workers' backlog (records between the consumer group's committed offsets and the topics' last stable offsets: commit
markers count, so an idle group can show a few)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from schema.kafka_client import kafka_options
from schema.settings import Settings
from schema.topics import TopicNames
from tenderhub.faults.audit import unpublished
from tenderhub.faults.fleet import Fleet
from tenderhub.stack import rss_mb

log = logging.getLogger(__name__)
Say = Callable[[str], None]

RSS_TREND_LIMIT_PCT = 10.0
LAG_BOUND_S = 30.0  # a backlog is bounded while it stays under this many seconds of load


@dataclass
class Sample:
    at_s: float
    rss_mb: dict[str, float | None]
    relay_backlog: int | None
    worker_backlog: int | None


async def group_backlog(settings: Settings) -> int:
    names = TopicNames.from_settings(settings)
    admin = AIOKafkaAdminClient(**kafka_options(settings), request_timeout_ms=15_000)
    consumer = AIOKafkaConsumer(**kafka_options(settings), isolation_level="read_committed")
    await admin.start()
    try:
        await consumer.start()
    except BaseException:
        await consumer.stop()
        await admin.close()
        raise
    try:
        committed = await admin.list_consumer_group_offsets(settings.worker_group)
        # From the admin's metadata: a consumer that subscribed to nothing knows no partitions.
        described = await admin.describe_topics(sorted(set(names.data.values())))
        partitions = [TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]]
        if not partitions:
            raise RuntimeError(f"no partitions found for {sorted(set(names.data.values()))}")
        ends = await consumer.end_offsets(partitions)
        return sum(max(0, ends[tp] - (committed[tp].offset if tp in committed else 0)) for tp in partitions)
    finally:
        await consumer.stop()
        await admin.close()


class Sampler(threading.Thread):
    def __init__(self, settings: Settings, engine: sa.Engine, fleet: Fleet, every_s: float, say: Say) -> None:
        super().__init__(name="faults-sampler", daemon=True)
        self.settings, self.engine, self.fleet, self.every_s, self.say = settings, engine, fleet, every_s, say
        self.samples: list[Sample] = []
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join(60)

    def sample(self) -> Sample:
        rss = {m.name: (rss_mb(m.pid, with_children=True) if m.pid else None) for m in self.fleet.members}
        try:
            relay_backlog: int | None = unpublished(self.engine)
        except sa.exc.SQLAlchemyError as exc:
            log.warning("sample: MySQL did not answer: %s", exc)
            relay_backlog = None
        try:
            worker_backlog: int | None = asyncio.run(group_backlog(self.settings))
        except Exception as exc:  # noqa: BLE001 - any broker error means "no figure this minute", which is reported
            log.warning("sample: Kafka did not answer: %s", exc)
            worker_backlog = None
        return Sample(time.monotonic() - self.fleet.t0, rss, relay_backlog, worker_backlog)

    def run(self) -> None:
        while not self._halt.wait(self.every_s):
            s = self.sample()
            self.samples.append(s)
            rss = ", ".join(f"{k} {v:.0f}" if v is not None else f"{k} -" for k, v in s.rss_mb.items())
            self.say(
                f"  sample {len(self.samples)} at {s.at_s / 60:.1f} min: RSS MB {rss}; backlog relay "
                f"{s.relay_backlog}, workers {s.worker_backlog}"
            )


def trend_pct(points: Sequence[tuple[float, float]]) -> float:
    """The least-squares line through (time, value), from its value at the first time to the last, in % of the
    first. A flat or falling series gives <= 0; fewer than 3 points, 0 (no trend can be told)."""
    if len(points) < 3:
        return 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    slope = sum((t - mean_t) * (v - mean_v) for t, v in points) / var
    first, last = points[0][0], points[-1][0]
    start = mean_v + slope * (first - mean_t)
    if start <= 0:
        return 0.0
    return slope * (last - first) / start * 100


@dataclass
class SoakVerdict:
    rss_trend_pct: dict[str, float] = field(default_factory=dict)
    max_relay_backlog: int = 0
    max_worker_backlog: int = 0
    backlog_bound: int = 0
    missing_samples: int = 0

    @property
    def passed(self) -> bool:
        return (
            all(t <= RSS_TREND_LIMIT_PCT for t in self.rss_trend_pct.values())
            and self.max_relay_backlog <= self.backlog_bound
            and self.max_worker_backlog <= self.backlog_bound
            and self.missing_samples == 0
        )


def judge(samples: Sequence[Sample], rate_per_s: float, warmup: int) -> SoakVerdict:
    """RSS trend per process over the samples after `warmup` (start-up allocation is not a leak); backlogs over
    every sample, against LAG_BOUND_S of load."""
    verdict = SoakVerdict(backlog_bound=max(100, int(rate_per_s * LAG_BOUND_S)))
    steady = list(samples[warmup:])
    names = sorted({name for s in samples for name in s.rss_mb})
    for name in names:
        points = [(s.at_s, v) for s in steady if (v := s.rss_mb.get(name)) is not None]
        verdict.rss_trend_pct[name] = trend_pct(points)
    verdict.max_relay_backlog = max((s.relay_backlog or 0 for s in samples), default=0)
    verdict.max_worker_backlog = max((s.worker_backlog or 0 for s in samples), default=0)
    verdict.missing_samples = sum(
        1 for s in samples if s.relay_backlog is None or s.worker_backlog is None or None in s.rss_mb.values()
    )
    return verdict
