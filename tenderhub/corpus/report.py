"""The corpus run as a table, a summary and a markdown report (bench/reports/corpus-<date>.md)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from tenderhub.corpus.runner import CorpusResult

_CELL = 110


def _cell(text: str) -> str:
    flat = " ".join(text.split()).replace("|", "\\|")
    return flat if len(flat) <= _CELL else flat[: _CELL - 1] + "…"


def table(result: CorpusResult) -> list[str]:
    rows = ["| case | way | sent by | expected | observed | pass |", "|---|---|---|---|---|---|"]
    for s in result.sends:
        expect = s.case.expect(s.way)
        assert expect is not None
        rows.append(
            f"| {s.case.id} | {s.way.value} | {s.sent_by} | {_cell(expect.text())} | {_cell(s.seen.text())} | "
            f"{'yes' if s.problem is None else 'NO: ' + _cell(s.problem)} |"
        )
    return rows


def summary(result: CorpusResult) -> list[str]:
    outcomes = Counter(f"{s.way.value} {s.case.expect(s.way).outcome.value}" for s in result.sends)  # type: ignore[union-attr]
    lines = [
        f"result: {'PASS' if result.passed else 'FAIL'} (run {result.run}, {result.started:%Y-%m-%d %H:%M} UTC, "
        f"{result.duration_s:.0f} s)",
        f"cases: {len({s.case.id for s in result.sends})}, sends: {len(result.sends)} "
        f"({', '.join(f'{n} {k}' for k, n in sorted(outcomes.items()))})",
        f"sends not where expected: {len(result.mismatches)}",
        f"crashes: {len(result.crashes)}; stalls: {len(result.stalls)}; harmful writes: {len(result.harmful)}",
        f"worst worker event-loop lag (web-view latency, {result.lag_samples} samples every 100 ms, measured from "
        f"outside: the worker has no loop-lag gauge): {result.worst_lag_ms:.0f} ms",
        f"dead letters of other producers' outbox rows seen in the namespace (shared outbox): {result.foreign_letters}",
    ]
    lines += [f"  crash: {c}" for c in result.crashes]
    lines += [f"  stall: {c}" for c in result.stalls]
    lines += [f"  harmful: {h}" for h in result.harmful[:50]]
    lines += [f"  mismatch: {s.case.id} ({s.way.value}): {s.problem}" for s in result.mismatches]
    return lines


def groups(result: CorpusResult) -> list[str]:
    rows = ["| group | sends | canaries | flowed | canary wait (s) | worst lag (ms) |", "|---|---|---|---|---|---|"]
    rows += [
        f"| {g.name} | {g.sends} | {g.canaries} | {'yes' if g.flowed else 'NO'} | {g.canary_wait_s:.1f} | "
        f"{g.worst_lag_ms:.0f} |"
        for g in result.groups
    ]
    return rows


def agents(result: CorpusResult) -> list[str]:
    names = ["batches", "events", "dead_letters", "store_retries", "error_retries"]
    rows = ["| agent | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    rows += [
        f"| {agent} | " + " | ".join(f"{stats.get(n, 0):.0f}" for n in names) + " |"
        for agent, stats in sorted(result.agent_stats.items())
    ]
    return rows


def markdown(result: CorpusResult) -> str:
    parts = [
        f"# Bad-input corpus, {result.started:%Y-%m-%d %H:%M} UTC",
        "",
        "`tenderhub corpus`: every case sent through the real outbox (application account) and/or straight onto "
        "the data topics (a plain producer past the relay), against a relay and a worker running every agent in a "
        "namespace of their own. Pass = 0 crashes, 0 stalls, 0 harmful writes, every send where its case says.",
        "",
        "## Summary",
        "",
        *[f"- {line.strip()}" for line in summary(result)],
        "",
        "## Flow per group (a canary through the outbox and one on every partition of every data topic)",
        "",
        *groups(result),
        "",
        "## Agents at the end",
        "",
        *agents(result),
        "",
        "## Cases",
        "",
        *table(result),
        "",
    ]
    return "\n".join(parts)


def write_report(result: CorpusResult, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"corpus-{result.started:%Y-%m-%d}.md"
    path.write_text(markdown(result))
    return path
