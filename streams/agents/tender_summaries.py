"""Scenario 2, summaries: tender.created / tender.updated -> a summary in MongoDB `tender_summaries` and the tender
card `tender:{id}:metadata` in Redis (owned here); tender.closed drops the card.

Pure core: `summary_input` (event -> the text to summarise) and `metadata` (the card). Wrapper: unchanged text
(same content hash) is never summarised again; a Redis lock (SET NX EX, released in finally) keeps two workers off
the same tender; the summariser runs in one worker thread, off the event loop, a batch at a time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import secrets
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import faust

from schema.events import TenderClosedV1, TenderV1
from schema.mongo import TENDER_SUMMARIES
from schema.redis_keys import SUMMARY_LOCK, TENDER_METADATA
from schema.settings import Settings
from sinks.errors import PermanentSinkError, TransientSinkError
from sinks.mongo import VersionedDoc
from streams.batch import BatchRunner, Incoming, refused_event
from streams.context import WorkerContext
from streams.records import Event
from streams.summaries.base import BriefingSession, Summariser, SummariserConfig, SummaryInput, content_hash
from streams.summaries.factory import load_summariser
from streams.wiring import RunnerFactory, batch_agent

log = logging.getLogger(__name__)

AGENT = "tender_summaries"
SAST = dt.timezone(dt.timedelta(hours=2), "SAST")


def summariser_config(settings: Settings) -> SummariserConfig:
    if settings.summary_backend == "extractive":
        return SummariserConfig(backend="extractive", sentences=settings.summary_sentences)
    return SummariserConfig(
        backend="transformers",
        model=settings.summary_model,
        max_input_tokens=settings.summary_max_input_tokens,
        max_summary_tokens=settings.summary_max_tokens,
        num_beams=settings.summary_num_beams,
        batch_size=settings.summary_batch_size,
    )


def summary_input(payload: TenderV1) -> SummaryInput:
    """What a summary is made of: the tender's text and the facts a bidder needs."""
    briefing = None
    if payload.briefing_compulsory is not None or payload.briefing_at is not None or payload.briefing_venue:
        briefing = BriefingSession(
            compulsory=bool(payload.briefing_compulsory), date=payload.briefing_at, venue=payload.briefing_venue
        )
    # Event datetimes are naive UTC; bidders read South African time.
    closing = payload.closing_at
    if closing is not None and closing.tzinfo is None:
        closing = closing.replace(tzinfo=dt.UTC).astimezone(SAST)
    briefing_at = briefing.date if briefing is not None else None
    if briefing is not None and briefing_at is not None and briefing_at.tzinfo is None:
        briefing = BriefingSession(
            compulsory=briefing.compulsory,
            date=briefing_at.replace(tzinfo=dt.UTC).astimezone(SAST),
            venue=briefing.venue,
        )
    return SummaryInput(
        tender_id=payload.tender_id,
        title=payload.tender_number or payload.title,
        description=payload.description or payload.title,
        special_conditions=payload.special_conditions,
        category=payload.category,
        buyer=payload.buyer,
        closing_at=closing,
        briefing=briefing,
    )


def metadata(payload: TenderV1, summary: str, model_used: str) -> dict[str, str]:
    """The tender card readers get from Redis (strings only; empty fields left out)."""
    card = {
        "title": payload.title,
        "tender_number": payload.tender_number or "",
        "buyer": payload.buyer or "",
        "category": payload.category or "",
        "province": payload.province or "",
        "status": payload.status,
        "closing_at": payload.closing_at.isoformat() if payload.closing_at else "",
        "published_at": payload.published_at.isoformat() if payload.published_at else "",
        "summary": summary,
        "model_used": model_used,
    }
    return {k: v for k, v in card.items() if v}


@dataclass(frozen=True)
class _Work:
    event: Event
    payload: TenderV1
    text: str
    hash: str


class TenderSummaryHandler:
    def __init__(self, ctx: WorkerContext, summariser: Summariser) -> None:
        self._ctx = ctx
        self.summariser = summariser
        # One thread: generate() is CPU-bound and the model is shared; the event loop stays free for Kafka.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="summariser")
        self.summarised = 0
        self.skipped_unchanged = 0

    async def __call__(self, items: Sequence[Incoming]) -> None:
        last: dict[int, Event] = {}
        for i in items:
            if i.event.event_type.startswith("tender."):
                t = int(i.event.aggregate_id)
                if t not in last or i.event.source_seq > last[t].source_seq:
                    last[t] = i.event
        closed = [e for e in last.values() if isinstance(e.payload, TenderClosedV1)]
        current = [e for e in last.values() if isinstance(e.payload, TenderV1)]
        for e in closed:
            await self._ctx.redis.cas_delete_hash(
                TENDER_METADATA.key(id=int(e.aggregate_id)), "source_seq", e.source_seq
            )
        if current:
            await self._summarise(current)

    async def _summarise(self, events: Sequence[Event]) -> None:
        model_used = self.summariser.model_used
        work = []
        for e in events:
            text = summary_input(e.payload).text()
            work.append(_Work(e, e.payload, text, content_hash(text, model_used)))
        stored = await asyncio.to_thread(self._stored, [w.payload.tender_id for w in work])
        todo = [w for w in work if stored.get(w.payload.tender_id, {}).get("content_hash") != w.hash]
        self.skipped_unchanged += len(work) - len(todo)
        summaries = {t: str(doc.get("summary", "")) for t, doc in stored.items()}
        if todo:
            summaries.update(await self._locked_summaries(todo))
        docs = [
            VersionedDoc(
                key={"tender_id": w.payload.tender_id},
                fields={
                    "summary": summaries[w.payload.tender_id],
                    "model_used": model_used,
                    "content_hash": w.hash,
                    "title": w.payload.title,
                    "buyer": w.payload.buyer,
                    "status": w.payload.status,
                },
                versions={"source_seq": w.event.source_seq},
                event_id=w.event.event_id,
            )
            for w in work
        ]
        try:
            await asyncio.to_thread(self._ctx.mongo.upsert_versioned, TENDER_SUMMARIES.name, docs)
        except PermanentSinkError as exc:
            # Documents follow `work` (the batch collapsed per tender), not the batch: isolate per event instead.
            raise refused_event(exc, None) from exc
        for w in work:
            card = metadata(w.payload, summaries[w.payload.tender_id], model_used)
            card["event_id"] = str(w.event.event_id)
            await self._ctx.redis.cas_hash(
                TENDER_METADATA.key(id=w.payload.tender_id),
                card,
                "source_seq",
                w.event.source_seq,
                TENDER_METADATA.ttl_s,
            )

    def _stored(self, tender_ids: Sequence[int]) -> dict[int, Mapping[str, Any]]:
        found = self._ctx.mongo.find_by_ids(TENDER_SUMMARIES.name, "tender_id", tender_ids, ["summary", "content_hash"])
        return {int(d["tender_id"]): d for d in found}

    async def _locked_summaries(self, todo: Sequence[_Work]) -> dict[int, str]:
        token = secrets.token_hex(8)
        redis = self._ctx.redis
        held: list[str] = []
        try:
            for w in todo:
                key = SUMMARY_LOCK.key(id=w.payload.tender_id)
                if not await redis.lock(key, token, SUMMARY_LOCK.ttl_s):
                    raise TransientSinkError(f"tender {w.payload.tender_id} is being summarised by another worker")
                held.append(key)
            loop = asyncio.get_running_loop()
            texts = [w.text for w in todo]
            results = await loop.run_in_executor(self._pool, self.summariser.summarise_batch, texts)
            self.summarised += len(results)
            return {w.payload.tender_id: s for w, s in zip(todo, results, strict=True)}
        finally:
            for key in held:
                await redis.unlock(key, token)


def register(app: faust.App, ctx: WorkerContext, runner_factory: RunnerFactory) -> tuple[Any, BatchRunner]:
    # Loaded at start-up: a configured model that cannot load stops the worker here, with the loader's message.
    summariser = load_summariser(summariser_config(ctx.settings))
    handler = TenderSummaryHandler(ctx, summariser)
    return batch_agent(app, ctx, AGENT, [ctx.topics.data["tender"]], handler, runner_factory)
