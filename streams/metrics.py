"""Prometheus metrics of a worker, next to the relay's (cdc/metrics.py), served by its web view at `/metrics`.

The per-agent counters are read from the batch runners' own stats when Prometheus scrapes (nothing is added to the
hot path); batch durations are observed by the runners' sensor (`BatchRunner(on_batch=...)`, a no-op by default);
the consumer's lag per partition and its commits come from the batch consumer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from schema.heap import watch_gc
from streams.batch import BatchRunner

# Batch durations: from a few events in milliseconds to a store's retry stretching one batch over minutes.
# Store calls: from a Redis round trip (under a millisecond) to a call retried while its store was down.
STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0)
BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)


Lag = Callable[[], Mapping[tuple[str, int], int]]


class _RunnerCollector(Collector):
    def __init__(self, runners: Mapping[str, BatchRunner], lag: Lag, commits: Callable[[], int]) -> None:
        self._runners = runners
        self._lag = lag
        self._commits = commits

    def collect(self) -> Iterator[Metric]:
        counters = {
            "events": "Events handed to the agent (taken, skipped or dead-lettered)",
            "batches": "Batches the agent handled",
            "dead_letters": "Events the agent sent to the DLQ",
            "skipped": "Events of types the agent does not take",
            "store_retries": "Retries of a batch while a store was down",
            "error_retries": "Retries of a batch after an error nobody classified",
        }
        for field, doc in counters.items():
            family = CounterMetricFamily(f"tenderhub_worker_{field}", doc, labels=["agent"])
            for name, runner in self._runners.items():
                family.add_metric([name], float(getattr(runner.stats, field)))
            yield family
        in_flight = GaugeMetricFamily(
            "tenderhub_worker_in_flight_events", "Events of the batch in flight", labels=["agent"]
        )
        last = GaugeMetricFamily("tenderhub_worker_last_batch_seconds", "Duration of the last batch", labels=["agent"])
        for name, runner in self._runners.items():
            in_flight.add_metric([name], float(runner.stats.in_flight))
            last.add_metric([name], runner.stats.last_batch_s)
        yield in_flight
        yield last
        lag = GaugeMetricFamily(
            "tenderhub_worker_consumer_lag",
            "Events between the committed offset and the partition's last stable offset",
            labels=["topic", "partition"],
        )
        for (topic, partition), behind in sorted(self._lag().items()):
            lag.add_metric([topic, str(partition)], float(behind))
        yield lag
        commits = CounterMetricFamily("tenderhub_worker_offset_commits", "Offset commits of the batch consumer")
        commits.add_metric([], float(self._commits()))
        yield commits


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.batch_seconds = Histogram(
            "tenderhub_worker_batch_seconds",
            "Time one agent took for one batch (decode, handle, retries, dead letters)",
            ["agent"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )

        self.store_seconds = Histogram(
            "tenderhub_worker_store_seconds",
            "Time of one store call of the agents' sinks, its retries included (ok: whether it succeeded)",
            ["store", "operation", "ok"],
            buckets=STORE_BUCKETS,
            registry=self.registry,
        )
        watch_gc(self.registry)

    def watch(self, runners: Mapping[str, BatchRunner], lag: Lag, commits: Callable[[], int]) -> None:
        self.registry.register(_RunnerCollector(runners, lag, commits))

    def on_batch(self, agent: str, events: int, seconds: float) -> None:
        """The runners' sensor."""
        self.batch_seconds.labels(agent).observe(seconds)

    def on_store_call(self, store: str, operation: str, seconds: float, ok: bool) -> None:
        """The sinks' sensor (`WorkerContext.store_sensor`)."""
        self.store_seconds.labels(store, operation, "true" if ok else "false").observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
