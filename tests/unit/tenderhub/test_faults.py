"""The fault command's pure parts: the load mix, the fault schedule, the soak judgement and the report."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from streams.verify import FamilyReport, VerifyReport
from tenderhub.faults.audit import KafkaCheck, Quiescence
from tenderhub.faults.fleet import Exit
from tenderhub.faults.injector import KINDS, FaultRecord, plan
from tenderhub.faults.load import Plan
from tenderhub.faults.report import render
from tenderhub.faults.runner import FaultResult, Options
from tenderhub.faults.soak import Sample, judge, trend_pct


@pytest.mark.parametrize("events", [200, 10_000, 100_000, 123_457])
def test_the_load_plan_writes_exactly_the_events_asked_for_with_every_kind(events: int) -> None:
    p = Plan.for_events(events)
    assert p.events == events
    assert all(n > 0 for n in p.counts.values()), p.counts
    assert p.counts["user.activity"] > events // 2  # activity dominates, as in production


def test_a_load_plan_below_200_events_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 200"):
        Plan.for_events(199)


def test_the_fault_schedule_holds_every_kind_once_it_is_long_enough() -> None:
    rng = random.Random(3)
    kinds = plan(50, rng)
    assert len(kinds) == 50 and set(kinds) == set(KINDS)
    assert sorted(plan(4, random.Random(1))) == sorted(KINDS[:4])
    assert plan(0, rng) == []


def test_trend_of_a_flat_series_is_zero_and_of_a_growing_one_its_growth() -> None:
    flat = [(60.0 * n, 200.0) for n in range(20)]
    assert trend_pct(flat) == 0.0
    growing = [(60.0 * n, 200.0 + 2.0 * n) for n in range(21)]  # 200 -> 240 MB: +20 %
    assert trend_pct(growing) == pytest.approx(20.0)
    falling = [(60.0 * n, 300.0 - n) for n in range(10)]
    assert trend_pct(falling) < 0
    assert trend_pct([(0.0, 1.0), (1.0, 50.0)]) == 0.0  # two points tell no trend


def test_trend_is_not_fooled_by_one_spike() -> None:
    series = [(60.0 * n, 200.0) for n in range(20)]
    series[10] = (600.0, 260.0)
    assert abs(trend_pct(series)) < 1.0


def _sample(at: float, rss: float | None, relay: int | None = 0, workers: int | None = 3) -> Sample:
    return Sample(at, {"relay-a": 80.0, "worker-1": rss}, relay, workers)


def test_soak_verdict_passes_flat_memory_and_small_backlogs() -> None:
    samples = [_sample(60.0 * n, 150.0 + (5 if n < 2 else 0)) for n in range(20)]
    verdict = judge(samples, rate_per_s=50, warmup=2)
    assert verdict.passed, verdict
    assert verdict.backlog_bound == 1500


def test_soak_verdict_fails_a_leak_a_growing_backlog_and_a_missing_sample() -> None:
    leak = [_sample(60.0 * n, 150.0 + 3 * n) for n in range(20)]
    assert not judge(leak, 50, 2).passed
    backlog = [_sample(60.0 * n, 150.0, workers=100 * n) for n in range(20)]
    verdict = judge(backlog, 50, 2)
    assert not verdict.passed and verdict.max_worker_backlog == 1900
    gap = [_sample(60.0 * n, 150.0, relay=None if n == 7 else 0) for n in range(20)]
    assert judge(gap, 50, 2).missing_samples == 1 and not judge(gap, 50, 2).passed


def _result(drift: int = 0, missing: int = 0, exits: list[Exit] | None = None) -> FaultResult:
    fam = FamilyReport("summaries", checked=10, drift=drift, expected=10, present=10 - drift)
    if drift:
        fam.examples.append("tender 7: no summary document")
    result = FaultResult("abc123", Options(events=1000, faults=1), 7, dt.datetime(2026, 12, 4, tzinfo=dt.UTC))
    result.quiescence = Quiescence(drift == 0, 12.0, 1, VerifyReport([fam], 0.5), 0)
    result.kafka = KafkaCheck(committed=1000, records=1000 - missing, once=1000 - missing, missing=missing)
    result.duplicated = {"tender_summaries": 0, "readiness_scores": 0, "user_activity_logs": 0}
    result.faults = [FaultRecord("kafka_restart", "kafka", 30.0, 2.0, 18.0)]
    result.stop_codes = {"worker-1": 0, "relay-a": 0}
    result.exits = exits or []
    return result


def test_a_clean_run_passes_and_its_report_says_so() -> None:
    result = _result()
    assert result.passed, [c for c in result.checks() if not c[2]]
    text = render(result)
    assert text.startswith("# Fault run abc123: PASS")
    assert "| kafka_restart | kafka |" in text.replace("| 1 | 30 | ", "| ")


@pytest.mark.parametrize(
    ("result", "failing"),
    [
        (_result(drift=1), "verify drift at quiescence"),
        (_result(missing=3), "events missing from Kafka"),
        (_result(exits=[Exit("relay-a", 2, 40.0)]), "exits needing an operator (2, 78)"),
    ],
)
def test_any_nonzero_figure_fails_the_run(result: FaultResult, failing: str) -> None:
    assert not result.passed
    assert failing in [what for what, _, ok in result.checks() if not ok]
    assert "FAIL" in render(result).splitlines()[0]


def test_a_self_exit_that_needs_no_operator_is_reported_but_does_not_fail() -> None:
    result = _result(exits=[Exit("worker-2", 1, 40.0)])
    assert result.passed
    assert "| worker-2 | 1 | 40 |" in render(result)


def test_options_refuse_what_cannot_run() -> None:
    with pytest.raises(Exception, match="--max-outage-s"):
        Options(max_outage_s=45).check()
    with pytest.raises(Exception, match="--events"):
        Options(events=10).check()
