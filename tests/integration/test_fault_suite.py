"""The small version of `tenderhub faults`: 6,000 outbox events of every type through two relays (HA pair) and two
workers (every agent) while 8 random faults hit (every kind at least once: relay and worker SIGKILLs, Kafka and
MariaDB restarts, FerretDB crashed and Redis frozen), then the quiescence audit. Pass = every figure zero: nothing
missing or duplicated in Kafka, nothing unpublished, no extra or duplicated derived document, no verify drift."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from schema.settings import Settings
from tenderhub.faults.injector import KINDS
from tenderhub.faults.report import write_report
from tenderhub.faults.runner import Options, run_faults

log = logging.getLogger(__name__)


def test_six_thousand_events_and_eight_faults_end_with_every_figure_zero(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fleet's workers hand a killed worker's partitions on after 10 s, not the default 60 s (`tenderhub faults`
    # keeps the operator's setting); the long run is the command (README, "Fault run and soak").
    monkeypatch.setenv("TENDERHUB_WORKER_SESSION_TIMEOUT_MS", "10000")
    options = Options(events=6_000, faults=8, load_s=90, max_outage_s=8, seed=20261204, sample_s=30, settle_s=300)
    result = run_faults(settings, options, log.info, tmp_path)
    report = write_report(result, tmp_path)
    failing = [f"{what}: {figure}" for what, figure, ok in result.checks() if not ok]
    log.info("fault report %s", report)
    assert result.passed, "\n".join(failing) + "\n\n" + report.read_text()

    assert {f.kind for f in result.faults} == set(KINDS)
    assert result.faults_during_load >= 6
    assert result.kafka.committed >= 6_000 and result.kafka.once == result.kafka.committed
    kinds = set(result.committed_by_type)
    assert {"tender.created", "tender.updated", "tender.closed", "company.updated", "user.activity"} <= kinds
    assert result.quiescence is not None and result.quiescence.report is not None
    families = {f.family: f for f in result.quiescence.report.families}
    for name in ("summaries", "readiness", "top_lists", "spend", "activity"):
        assert families[name].expected > 0 and families[name].present == families[name].expected, families[name]
    assert "PASS" in report.read_text().splitlines()[0]
