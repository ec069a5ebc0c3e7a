"""`tenderhub rebuild`: recompute the derived stores from MySQL alone (no Kafka history) and write them through the
agents' own handlers and version-guarded sinks, so the stream hands over without a gap or a stale overwrite.

Which version a rebuilt document carries: `source_seq` is not in MySQL (the relay derives it from the binlog), so
each rebuilt document gets the relay's high-water mark H: the largest `source_seq` among the last committed records
of every data topic partition, read BEFORE the MySQL rows. The relay publishes in commit order and an event reaches
Kafka only after its transaction committed, so every event with `source_seq` <= H is already reflected in the rows
read afterwards: the version guards refuse it as older (no stale overwrite). Every event above H is either newer
than the rows (it must apply, and does: H < its `source_seq`) or committed before the read but not yet published; the
latter carries its aggregate's whole state at that commit and is followed, in partition order, by every later event
of that aggregate, so the store converges to the rows again (no gap). A stored document already above H was written
by such a newer event and is kept by the same guards (a rebuild never makes a newer document look older). Spend
keeps its own rule (states at source_seq 0 from the rows, `streams.agents.spend.rebuild_from_mysql`). Log documents
are insert-once by event id: the outbox rows still present are inserted, existing ones are kept.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer

from schema.checked import whole
from schema.events import Envelope
from schema.kafka_client import kafka_options
from schema.settings import Settings
from streams.batch import Incoming
from streams.context import WorkerContext
from streams.replay import data_partitions
from streams.verify import (
    CHUNK,
    FAMILIES,
    ROWS_AT,
    VerifyError,
    activity_rows,
    company_rows,
    event,
    latest_event_ids,
    reader_engine,
    tender_events,
    tender_rows,
)

log = logging.getLogger(__name__)

# The agents that own each family (a rebuild writes whole owners: cards come with summaries, lists with scores).
OWNERS = {
    "summaries": "tender_summaries",
    "cards": "tender_summaries",
    "readiness": "readiness",
    "top_lists": "readiness",
    "spend": "spend",
    "activity": "activity_logs",
}
# Records read back from the end of each partition to find the last data record (transaction markers take offsets).
_TAIL = 64


@dataclass
class RebuildReport:
    version: int
    written: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


async def high_water(settings: Settings, timeout_s: float = 30.0) -> int:
    """The largest `source_seq` among the last committed records of every data topic partition (0: none)."""
    tps = await data_partitions(settings)
    consumer = AIOKafkaConsumer(**kafka_options(settings), enable_auto_commit=False, isolation_level="read_committed")
    await consumer.start()
    best = 0
    try:
        consumer.assign(tps)
        first = await consumer.beginning_offsets(tps)
        end = await consumer.end_offsets(tps)
        pending = {tp for tp in tps if end[tp] > first[tp]}
        for tp in pending:
            consumer.seek(tp, max(first[tp], end[tp] - _TAIL))
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise VerifyError(f"could not read the tail of {sorted(map(str, pending))[:5]} in {timeout_s:.0f} s")
            batches = await consumer.getmany(*pending, timeout_ms=1000)
            for records in batches.values():
                for rec in records:
                    best = max(best, _source_seq(rec.value))
            for tp in list(pending):
                if await consumer.position(tp) >= end[tp]:
                    pending.discard(tp)
    finally:
        await consumer.stop()
    return best


def _source_seq(value: bytes | None) -> int:
    # Anything may be written to a data topic (other producers): what is not an envelope with an integer
    # source_seq is not the relay's and says nothing about its clock.
    try:
        seq = json.loads(value or b"").get("source_seq")
    except (ValueError, AttributeError):
        return 0
    return seq if whole(seq, 0, 2**63 - 1) else 0


def _items(events: Sequence[Envelope[Any]]) -> list[Incoming[Any]]:
    return [Incoming(e, "mysql:rebuild", 0, n) for n, e in enumerate(events)]


async def rebuild(
    settings: Settings, families: Sequence[str] = FAMILIES, say: Callable[[str], None] = log.info
) -> RebuildReport:
    from streams.agents.activity_logs import ActivityLogHandler
    from streams.agents.readiness import ReadinessHandler
    from streams.agents.spend import rebuild_from_mysql
    from streams.agents.tender_summaries import TenderSummaryHandler, summariser_config
    from streams.summaries.factory import load_summariser

    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise VerifyError(f"unknown families {unknown}: choose from {', '.join(FAMILIES)}")
    owners = {OWNERS[f] for f in families}
    start = time.monotonic()
    # Before any MySQL read: see the module docstring.
    version = max(await high_water(settings), 1)
    say(f"rebuilt documents carry source_seq {version} (the relay's high-water mark on the data topics)")
    report = RebuildReport(version)
    engine = reader_engine(settings)
    ctx = WorkerContext(settings)
    try:
        if owners & {"tender_summaries", "readiness"}:
            ids = latest_event_ids(engine, "tender")
            chunks = list(tender_rows(engine))
            for rows in chunks:
                tender_events(rows, ids, version)
            events = [row["_event"] for rows in chunks for row in rows]
            if "tender_summaries" in owners:
                summaries = TenderSummaryHandler(ctx, load_summariser(summariser_config(settings)))
                try:
                    for n in range(0, len(events), CHUNK):
                        await summaries(_items(events[n : n + CHUNK]))
                finally:
                    await summaries.aclose()
                report.written["tender_summaries"] = len(events)
                say(f"tender_summaries: {len(events)} tenders (documents and cards)")
            if "readiness" in owners:
                team_ids = latest_event_ids(engine, "company")
                companies = [
                    event(
                        "company.updated",
                        int(p["team_id"]),
                        p,
                        event_id=team_ids.get(int(p["team_id"]), 1),
                        source_seq=version,
                        at=ROWS_AT,
                    )
                    for p in company_rows(engine)
                ]
                await ReadinessHandler(ctx)(_items([*events, *companies]))
                report.written["readiness"] = len(events) * len(companies)
                say(f"readiness: {len(events)} tenders x {len(companies)} teams, top lists")
        if "spend" in owners:
            result = await rebuild_from_mysql(ctx, "tenderhub rebuild")
            report.written["spend"] = result.tenders
            say(f"spend: {result.tenders} tenders, {result.members} buyer/currency members")
        if "activity_logs" in owners:
            rows = activity_rows(engine, settings.activity_log_max_docs)
            logs = [
                event(
                    "user.activity",
                    int(r["aggregate_id"]),
                    json.loads(r["payload"]),
                    event_id=int(r["id"]),
                    source_seq=version,
                    at=r["created_at"].isoformat(timespec="milliseconds") + "Z",
                )
                for r in reversed(rows)
            ]
            handler = ActivityLogHandler(ctx)
            for n in range(0, len(logs), CHUNK):
                await handler(_items(logs[n : n + CHUNK]))
            report.written["activity_logs"] = handler.inserted
            say(f"activity_logs: {handler.inserted} inserted, {handler.redelivered} already present")
    finally:
        engine.dispose()
        await ctx.aclose()
    report.seconds = time.monotonic() - start
    return report
