"""The garbage collector in long-running processes: start-up objects frozen, pauses measured (schema/heap.py)."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import textwrap

from prometheus_client import CollectorRegistry, generate_latest

from schema import heap
from schema.heap import PAUSE_BUCKETS, watch_gc


def _samples(registry: CollectorRegistry) -> dict[str, float]:
    out = {}
    for line in generate_latest(registry).decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_pauses_are_counted_per_generation_in_cumulative_buckets() -> None:
    registry = CollectorRegistry()
    watch_gc(registry)
    watch_gc(CollectorRegistry())  # a second registry in the same process: still one callback
    assert gc.callbacks.count(heap._PAUSES.callback) == 1
    before = _samples(registry)
    for _ in range(3):
        gc.collect(2)
    after = _samples(registry)
    key = 'tenderhub_gc_pause_seconds_count{generation="2"}'
    assert after[key] - before[key] == 3
    total = 'tenderhub_gc_pause_seconds_sum{generation="2"}'
    assert after[total] > before[total]
    buckets = [after[f'tenderhub_gc_pause_seconds_bucket{{generation="2",le="{b}"}}'] for b in PAUSE_BUCKETS]
    assert buckets == sorted(buckets)  # cumulative
    assert after['tenderhub_gc_pause_seconds_bucket{generation="2",le="+Inf"}'] == after[key]
    assert after["tenderhub_gc_frozen_objects"] == gc.get_freeze_count()


def test_freezing_leaves_the_start_up_heap_out_of_full_collections() -> None:
    # In a process of its own: freezing the test runner's heap would keep its garbage cycles for good.
    script = textwrap.dedent(
        """
        import gc, json
        from schema.heap import freeze_startup_heap
        import pydantic, sqlalchemy  # a start-up heap of some size
        tracked_before = len(gc.get_objects())
        frozen = freeze_startup_heap("test")
        print(json.dumps({"frozen": frozen, "tracked_before": tracked_before,
                          "tracked_after": len(gc.get_objects()), "count": gc.get_freeze_count()}))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["frozen"] == figures["count"] > 10_000
    # A full collection walks gc.get_objects(): after the freeze, almost nothing of the start-up heap is left in it.
    assert figures["tracked_after"] < figures["tracked_before"] // 10
