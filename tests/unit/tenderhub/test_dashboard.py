"""The dashboard's rates: differences between two samples, per topic and per agent, and the cache hit ratio of the
interval (none when the read service was not reachable or nothing was read)."""

from __future__ import annotations

import json

from tenderhub.dashboard import Sample, _point, service_counts
from tenderhub.status import PartitionLag, RelayStatus, Status


def sample(at: float, ends: dict[str, int], events: dict[str, int], api: dict[str, object]) -> Sample:
    status = Status(
        relay=RelayStatus(position="gtid x", committed_at=None, last_event_id=9, unpublished=3, lag_ms=120.0),
        consumer_lag=[PartitionLag("t.activity", 0, 5, 9, 4), PartitionLag("t.tender", 1, None, 2, 2)],
        dlq_count=1,
    )
    return Sample(at, status, events, {}, ends, api)


def test_rates_are_differences_over_the_interval_and_never_negative() -> None:
    before = sample(100.0, {"t.activity": 10, "t.tender": 4}, {"spend": 7}, {"cache_hits": 10.0, "cache_misses": 10.0})
    after = sample(102.0, {"t.activity": 30, "t.tender": 4}, {"spend": 17}, {"cache_hits": 16.0, "cache_misses": 12.0})
    point = _point(before, after)
    assert point["topics_eps"] == {"t.activity": 10.0, "t.tender": 0.0}
    assert point["agents_eps"] == {"spend": 5.0}
    assert point["cache_hit_ratio"] == 0.75  # 6 hits of 8 reads in the interval
    assert point["relay_lag_ms"] == 120.0 and point["consumer_lag"] == 6 and point["dlq"] == 1
    # A restarted worker (counters back to zero) shows no negative rate; an unreachable read service no ratio.
    restarted = sample(104.0, {"t.activity": 30, "t.tender": 4}, {"spend": 2}, {"reachable": False})
    point = _point(after, restarted)
    assert point["agents_eps"] == {"spend": 0.0} and point["cache_hit_ratio"] is None


def test_the_read_services_counters_are_read_with_timestamps_and_anything_not_a_number_left_out() -> None:
    text = "\n".join(
        [
            "# HELP tenderhub_api_cache_hits_total hits",
            "tenderhub_api_cache_hits_total 30 1700000000000",
            "tenderhub_api_cache_misses_total 10",
            "tenderhub_api_redis_fallbacks_total NaN",
            "tenderhub_api_quota_refusals_total +Inf",
            "tenderhub_api_cache_misses_total_other 5",
            "tenderhub_api_cache_hits_total",
            "tenderhub_api_redis_fallbacks_total twelve",
        ]
    )
    counts = service_counts(text)
    assert counts == {"cache_hits": 30.0, "cache_misses": 10.0, "hit_ratio": 0.75}
    json.dumps(counts, allow_nan=False)
    assert service_counts("tenderhub_api_cache_hits_total 0\ntenderhub_api_cache_misses_total 0")["hit_ratio"] is None


def test_a_consumer_lag_that_could_not_be_read_is_unknown_not_zero() -> None:
    status = Status(errors={"consumer lag": "KafkaConnectionError: unreachable"})
    assert status.to_dict()["consumer_lag"]["total"] is None and not status.healthy
    assert "consumer lag (workers): unknown" in status.render()
    down = Sample(1.0, status, {}, {}, {}, {})
    assert _point(down, down)["consumer_lag"] is None
    fine = Status(consumer_lag=[PartitionLag("t.activity", 0, 5, 9, 4)])
    assert fine.to_dict()["consumer_lag"]["total"] == 4
