"""The garbage collector in the long-running processes (the relay, its binlog decoder, the workers, the read service).

CPython's full collection (generation 2) walks every object the collector tracks. After start-up a worker holds about
135,000 of them (imported modules, pydantic models, Faust, aiokafka, an agent's handlers), and on the 2 shared cores a
full pass over them took 70-230 ms: every event in flight waited, and one such pause in a 20-second run at 1,000
events/s set that run's p99 (bench/README.md, "Stream worker"). What a process builds at start-up lives as long as it
does, so each process freezes it once it is up (`gc.freeze`: moved to a permanent generation that no collection walks,
still freed by reference counting); a full pass then walks only what was made since (2.7 ms measured).

The pauses of every collection are measured for Prometheus (`tenderhub_gc_pause_seconds{generation}`) next to the
count of frozen objects (`tenderhub_gc_frozen_objects`), in the relay's, the workers' and the read service's `/metrics`.
"""

from __future__ import annotations

import bisect
import gc
import logging
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

log = logging.getLogger(__name__)

# From a young collection (well under a millisecond) to a full pass over a large heap on a busy machine.
PAUSE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
GENERATIONS = (0, 1, 2)


def freeze_startup_heap(process: str) -> int:
    """Collect once, then move every object alive now out of the collector's reach (`gc.freeze`). Call it when the
    process has built what it keeps for its life. Returns the number of objects frozen so far."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("%s: %d start-up objects frozen out of the garbage collector's passes", process, frozen)
    return frozen


class _Pauses:
    """Per generation: how many collections fell in each bucket, and their total seconds. Written only by the
    collector's callback (collections never overlap: the GIL is held throughout), read by scrapes. No lock: a lock
    taken while reading could be wanted again by a collection that the reading itself triggers."""

    def __init__(self) -> None:
        self.counts = {g: [0] * (len(PAUSE_BUCKETS) + 1) for g in GENERATIONS}
        self.sums = dict.fromkeys(GENERATIONS, 0.0)
        self._started = 0.0

    def callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        elapsed = time.perf_counter() - self._started
        generation = info.get("generation", 2)
        if generation not in self.counts:
            return
        self.counts[generation][bisect.bisect_left(PAUSE_BUCKETS, elapsed)] += 1
        self.sums[generation] += elapsed


_PAUSES = _Pauses()


class _GcCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        pauses = HistogramMetricFamily(
            "tenderhub_gc_pause_seconds", "Garbage-collector pauses of this process", labels=["generation"]
        )
        for generation in GENERATIONS:
            counts, total = list(_PAUSES.counts[generation]), _PAUSES.sums[generation]
            cumulative, buckets = 0, []
            for bound, count in zip((*map(str, PAUSE_BUCKETS), "+Inf"), counts, strict=True):
                cumulative += count
                buckets.append((bound, float(cumulative)))
            pauses.add_metric([str(generation)], buckets, sum_value=total)
        yield pauses
        yield GaugeMetricFamily(
            "tenderhub_gc_frozen_objects",
            "Objects frozen at start-up, out of the garbage collector's passes",
            value=float(gc.get_freeze_count()),
        )


def watch_gc(registry: CollectorRegistry) -> None:
    """Measure this process's collections (once per process) and report them through `registry`."""
    if _PAUSES.callback not in gc.callbacks:
        gc.callbacks.append(_PAUSES.callback)
    registry.register(_GcCollector())
