"""The run's markdown report: parameters, what was written, the faults, the checks, verify per family, samples."""

from __future__ import annotations

import platform
from pathlib import Path

from tenderhub.faults.runner import FaultResult


def _table(head: tuple[str, ...], rows: list[tuple[object, ...]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(str(c).replace("|", "/") for c in row) + " |" for row in rows]
    return out


def render(result: FaultResult) -> str:
    o = result.options
    kind = "Soak" if o.soak else "Fault"
    verdict = "PASS" if result.passed else "FAIL"
    lines = [
        f"# {kind} run {result.run}: {verdict}",
        "",
        f"Started {result.started:%Y-%m-%d %H:%M} UTC on {platform.node() or 'this machine'} "
        f"({platform.machine()}, Python {platform.python_version()}); {result.duration_s / 60:.1f} min in all.",
        f"Command: `tenderhub faults --events {o.events} --faults {o.faults} --minutes {o.load_s / 60:g} "
        f"--max-outage-s {o.max_outage_s:g} --seed {result.seed}{' --soak' if o.soak else ''}`. "
        "Real MariaDB binlog, Kafka (KRaft), FerretDB and Redis of `tenderhub stack`; two relays of one source "
        "(HA pair) and two workers of one consumer group running every agent, in a namespace of the run's own.",
        "",
        "## Checks",
        "",
        *_table(("check", "figure", "pass"), [(w, f, "yes" if ok else "**NO**") for w, f, ok in result.checks()]),
        "",
        "## Load",
        "",
        f"{sum(result.load.done.values())} events in {result.load.transactions} transactions over "
        f"{(result.load.finished - result.load.started) / 60:.1f} min; {result.load.retries} transactions retried "
        "while MariaDB was away. Committed events are read back from the outbox, not counted by the writer.",
        "",
        *_table(
            ("write", "planned", "done"),
            [(k, n, result.load.done.get(k, 0)) for k, n in sorted(result.planned.items())],
        ),
        "",
        *_table(("outbox event type", "committed"), sorted(result.committed_by_type.items())),
        "",
    ]
    if result.faults:
        lines += [
            f"## Faults ({len(result.faults)}, {result.faults_during_load} while the load ran)",
            "",
            *_table(
                ("#", "at (s)", "fault", "target", "down (s)", "took (s)", "error"),
                [
                    (n, f"{f.at_s:.0f}", f.kind, f.target, f"{f.down_s:.1f}", f"{f.took_s:.1f}", f.error or "")
                    for n, f in enumerate(result.faults, 1)
                ],
            ),
            "",
        ]
    lines += ["## Exits nobody asked for", ""]
    if result.exits:
        rows: list[tuple[object, ...]] = [(e.process, e.code, f"{e.at_s:.0f}") for e in result.exits]
        lines += _table(("process", "exit code", "at (s)"), rows)
        lines += ["", "The fleet restarted each (as a supervisor would). Codes 2 and 78 need an operator: they fail."]
    else:
        lines.append("None: every process stopped only when the run killed it.")
    lines.append("")
    q = result.quiescence
    if q and q.report:
        lines += [
            "## Derived data at quiescence (`tenderhub verify`)",
            "",
            *_table(
                ("family", "expected", "present", "extra", "duplicated", "drift", "examples"),
                [
                    (
                        f.family,
                        f.expected,
                        f.present,
                        f.extra,
                        _dup(result, f.family),
                        f.drift,
                        "; ".join(f.examples[:2]),
                    )
                    for f in q.report.families
                ],
            ),
            "",
            "Cards are a cache (made on read): none is expected, and each present one must match MySQL. "
            "Duplicates are counted by scanning each collection by its natural key.",
            "",
        ]
    k = result.kafka
    if k.examples:
        lines += ["## Kafka examples", "", *[f"- {e}" for e in k.examples], ""]
    if result.samples:
        names = sorted({n for s in result.samples for n in s.rss_mb})
        lines += [
            f"## Samples (every {o.sample_s:g} s)",
            "",
            *_table(
                ("at (min)", *[f"{n} RSS MB" for n in names], "relay backlog", "worker backlog"),
                [
                    (
                        f"{s.at_s / 60:.1f}",
                        *[f"{v:.0f}" if (v := s.rss_mb.get(n)) is not None else "-" for n in names],
                        s.relay_backlog if s.relay_backlog is not None else "-",
                        s.worker_backlog if s.worker_backlog is not None else "-",
                    )
                    for s in result.samples
                ],
            ),
            "",
            "Backlogs: relay = outbox rows not yet published; workers = records between the consumer group's "
            "committed offsets and the topics' last stable offsets (transaction markers count, so a few remain idle).",
            "",
        ]
        if result.soak is not None:
            lines += [
                "RSS trend (least-squares line over the samples after warm-up, end vs start): "
                + ", ".join(f"{n} {t:+.1f} %" for n, t in sorted(result.soak.rss_trend_pct.items())),
                "",
            ]
    lines += ["## Logs", "", *[f"- `{p}`" for p in result.logs], ""]
    return "\n".join(lines)


def _dup(result: FaultResult, family: str) -> str:
    names = {"summaries": "tender_summaries", "readiness": "readiness_scores", "activity": "user_activity_logs"}
    name = names.get(family)
    return str(result.duplicated.get(name, "")) if name else "n/a"


def write_report(result: FaultResult, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    kind = "soak" if result.options.soak else "faults"
    path = folder / f"{kind}-{result.started:%Y-%m-%d}-{result.run}.md"
    path.write_text(render(result), encoding="utf-8")
    return path
