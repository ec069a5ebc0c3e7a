"""The whole bad-input corpus against a real relay and worker (every agent): every case sent through the outbox and
straight onto the data topics goes where the case says, with 0 crashes, 0 stalls and 0 harmful writes."""

from __future__ import annotations

import logging
from pathlib import Path

from schema.settings import Settings
from tenderhub.corpus.cases import CASES, Outcome, Way
from tenderhub.corpus.report import summary, write_report
from tenderhub.corpus.runner import run_corpus

log = logging.getLogger(__name__)


def test_the_whole_corpus_both_ways_is_dead_lettered_or_stored_harmlessly_and_the_pipeline_flows(
    settings: Settings, tmp_path: Path
) -> None:
    result = run_corpus(settings, tmp_path, log.info)
    report = write_report(result, tmp_path)
    lines = "\n".join(summary(result))
    log.info("corpus report %s\n%s", report, lines)

    assert result.passed, lines
    assert not (result.crashes or result.stalls or result.harmful), lines
    ways = {(s.way, s.case.expect(s.way).outcome) for s in result.sends}  # type: ignore[union-attr]
    assert {(Way.OUTBOX, Outcome.DLQ), (Way.OUTBOX, Outcome.STORED), (Way.TOPIC, Outcome.DLQ)} <= ways
    assert (Way.TOPIC, Outcome.STORED) in ways
    sent = {s.case.id for s in result.sends}
    assert sent == {c.id for c in CASES} and len(sent) >= 60
    # Every group was followed by canaries on every partition, all stored.
    assert result.groups and all(g.flowed and g.canaries >= 4 for g in result.groups)
    assert result.lag_samples > 100
    assert "| case | way |" in report.read_text()
