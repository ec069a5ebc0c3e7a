"""Scenario 2, summaries: tender events -> a summary document in MongoDB `tender_summaries` and the tender card
`tender:<id>:metadata` in Redis (owned here).

Pure core: `fold_events` (a batch's events of each tender, applied in order over the stored version), `summary_input`
(the text to summarise), `document_fields` and `card` (what the stores hold). Every event counts, in order, so the
stored result never depends on where the batches were cut: `tender.closed` and a cancellation through
`tender.updated` reach the document (status, version-guarded), and a tender that is not open by status has no card.
The card is always built from the document as stored, so a retry after any failure writes the same card.

Wrapper: unchanged text (same content hash) is never summarised again; the summariser runs in one worker thread, off the
event loop, a batch at a time. `lock:summary:<id>` keeps two workers off one tender from the read of its stored document
to the write of its card (the old and the new owner of a partition overlap during a rebalance): a lease (`lock_lease_s`)
renewed while the batch runs, whose value names its holder, taken in tender-id order. A killed holder's lease runs out;
a live holder is waited for; a key that is no lease (no TTL, or a longer one) is passed by after twice the lease,
logged; a batch that lost its lease stops before its next write. `aclose()` shuts the summariser's thread down at worker
stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import secrets
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from redis.commands.core import AsyncScript

from schema.events import OPEN_STATUSES, Envelope, TenderClosedV1, TenderV1
from schema.mongo import TENDER_SUMMARIES
from schema.redis_keys import SUMMARY_LOCK, TENDER_METADATA
from schema.settings import Settings
from sinks.errors import PermanentSinkError, SinkError, TransientSinkError
from sinks.mongo import VersionedDoc, storable_text
from sinks.reader import SUMMARY_FIELDS
from sinks.redis import text
from streams.batch import Incoming, refused_event
from streams.context import WorkerContext
from streams.spec import AgentSpec
from streams.summaries.base import BriefingSession, Summariser, SummariserConfig, SummaryInput, content_hash
from streams.summaries.factory import load_summariser

log = logging.getLogger(__name__)

AGENT = "tender_summaries"
SAST = dt.timezone(dt.timedelta(hours=2), "SAST")
# A summariser holds its tenders' locks for this long and renews them every third of it while it runs: a killed
# holder's lock is gone within one lease. Below the key family's TTL (the catalogue's upper bound).
LOCK_LEASE_S = 15.0
# How long one attempt polls a lock held by someone else before the batch backs off (the runner retries it).
_LOCK_POLL_S = 2.0


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
    # Envelope[Any] datetimes are naive UTC; bidders read South African time.
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


def stored_datetime(value: dt.datetime | None) -> dt.datetime | None:
    """A datetime as MongoDB gives it back: naive UTC, whole milliseconds. Documents and cards are built from this
    form, so a card built from the stored document after a retry equals the one built before the write."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def document_fields(payload: TenderV1, summary: str, model_used: str, hash_: str) -> dict[str, Any]:
    """The summary document's content for a full tender event (created/updated): every field the card and the
    readers' fallbacks need (status and closing date included)."""
    return {
        "summary": storable_text(summary),
        "model_used": model_used,
        "content_hash": hash_,
        "title": storable_text(payload.title),
        "tender_number": storable_text(payload.tender_number),
        "buyer": storable_text(payload.buyer),
        "category": storable_text(payload.category),
        "province": storable_text(payload.province),
        "status": payload.status,
        "closing_at": stored_datetime(payload.closing_at),
        "published_at": stored_datetime(payload.published_at),
        "closed_reason": None,
    }


def card(doc: Mapping[str, Any]) -> dict[str, str] | None:
    """The tender card readers get from Redis, built from a summary document; None when the tender must have no
    card (not open by status, or no full tender event seen yet: a close may arrive first)."""
    if doc.get("status") not in OPEN_STATUSES or not doc.get("title"):
        return None
    return _card_values(doc)


def metadata(payload: TenderV1, summary: str, model_used: str) -> dict[str, str]:
    """The card content of one full tender event, whatever its status (`card` gives a card to open tenders only)."""
    return _card_values(document_fields(payload, summary, model_used, ""))


def _card_values(doc: Mapping[str, Any]) -> dict[str, str]:
    # Strings only, empty fields left out; datetimes as stored (naive UTC).
    out: dict[str, str] = {}
    for name in _CARD_FIELDS:
        value = doc.get(name)
        if isinstance(value, dt.datetime):
            out[name] = value.isoformat()
        elif value is not None and value != "":
            out[name] = str(value)
    return out


_CARD_FIELDS = (
    "title",
    "tender_number",
    "buyer",
    "category",
    "province",
    "status",
    "closing_at",
    "published_at",
    "summary",
    "model_used",
    "event_id",
)


@dataclass(frozen=True)
class TenderChange:
    """What one batch changes in one tender's summary document: the newest event (its version, id and status) and,
    when a full tender event (created/updated) came after the stored version, the newest of those."""

    tender_id: int
    source_seq: int
    event_id: int
    status: str
    closed_reason: str | None
    full: TenderV1 | None


def fold_events(stored_seq: Mapping[int, int], events: Iterable[Envelope[Any]]) -> dict[int, TenderChange]:
    """Apply a batch's tender events in order over the stored versions (`stored_seq`: tender id -> source_seq of
    its document; absent = none). An event at or below the version reached so far is a duplicate or stale and
    changes nothing, exactly as the version-guarded write would refuse it one event at a time."""
    changes: dict[int, TenderChange] = {}
    for event in events:
        payload = event.payload
        if not isinstance(payload, TenderV1 | TenderClosedV1):
            continue
        tender_id = int(event.aggregate_id)
        current = changes.get(tender_id)
        reached = current.source_seq if current is not None else stored_seq.get(tender_id, -1)
        if event.source_seq <= reached:
            continue
        if isinstance(payload, TenderV1):
            changes[tender_id] = TenderChange(
                tender_id, event.source_seq, event.event_id, payload.status, None, payload
            )
        else:
            changes[tender_id] = TenderChange(
                tender_id,
                event.source_seq,
                event.event_id,
                payload.status,
                payload.reason,
                None if current is None else current.full,
            )
    return changes


def document(change: TenderChange, summary: str, model_used: str, hash_: str) -> VersionedDoc:
    """The version-guarded write of one tender's change: the whole document after a full tender event, only the
    status (and the reason of a close) when the batch brought nothing else; the summary and content hash are those
    of the change's full event (unused without one)."""
    if change.full is not None:
        fields = document_fields(change.full, summary, model_used, hash_)
        fields["status"] = change.status
        fields["closed_reason"] = storable_text(change.closed_reason)
    else:
        fields = {"status": change.status, "closed_reason": storable_text(change.closed_reason)}
    return VersionedDoc(
        key={"tender_id": change.tender_id},
        fields=fields,
        versions={"source_seq": change.source_seq},
        event_id=change.event_id,
    )


@dataclass(frozen=True)
class _Work:
    tender_id: int
    text: str
    hash: str


class TenderSummaryHandler:
    def __init__(self, ctx: WorkerContext, summariser: Summariser, *, lock_lease_s: float = LOCK_LEASE_S) -> None:
        if not 0 < lock_lease_s <= SUMMARY_LOCK.ttl_s:
            raise ValueError(f"lock_lease_s must be in (0, {SUMMARY_LOCK.ttl_s}], got {lock_lease_s}")
        self._ctx = ctx
        self.summariser = summariser
        nonce = secrets.token_hex(4)
        # Names this handler in every lock it takes: a lock found holding it after a failure is ours to take again,
        # and a lock held by another shows in the logs who holds it.
        self.holder = f"summariser@{socket.gethostname()}:{os.getpid()}:{nonce}"
        # One thread: generate() is CPU-bound and the model is shared; the event loop stays free for Kafka.
        self.thread_name_prefix = f"summariser-{nonce}"
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.thread_name_prefix)
        self._lease_ms = int(lock_lease_s * 1000)
        self._contended: dict[tuple[str, str], float] = {}  # (lock key, holder) -> when first found held
        self.closed = False
        self.summarised = 0
        self.skipped_unchanged = 0
        self.locks_passed = 0

    async def aclose(self) -> None:
        """Stop the summariser's thread (at worker stop, after the agent's last batch). Safe to call twice."""
        if self.closed:
            return
        self.closed = True
        # Waits for a summary still running: the runner drains the batch in flight before closers run.
        await asyncio.to_thread(self._pool.shutdown, wait=True)

    async def __call__(self, items: Sequence[Incoming[TenderV1 | TenderClosedV1]]) -> None:
        if self.closed:
            raise RuntimeError(f"{AGENT}: handler used after aclose()")
        events = [i.event for i in items]
        if not events:
            return
        ids = sorted({int(e.aggregate_id) for e in events})
        # The batch's tenders are locked from the read of their stored documents to the write of their cards: a
        # rebalance can hand a partition over while the old owner's batch is still in flight, and on a store whose
        # guarded update is not atomic (FerretDB 1.x filters, then replaces by _id) the old owner's older document
        # could land over the new owner's newer one.
        held: list[str] = []
        lease = _Lease(self._lease_ms / 1000)
        try:
            await self._acquire([SUMMARY_LOCK.key(id=t) for t in ids], held)
            lease.renewed()
            heartbeat = asyncio.ensure_future(self._renew(held, lease))
            try:
                await self._handle(events, ids, lease)
            finally:
                heartbeat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heartbeat
        finally:
            for key in held:
                await self._ctx.redis.unlock(key, self.holder)

    async def _handle(self, events: Sequence[Envelope[Any]], ids: Sequence[int], lease: _Lease) -> None:
        stored = await self._stored(ids)
        changes = fold_events({t: int(d["source_seq"]) for t, d in stored.items() if "source_seq" in d}, events)
        model_used = self.summariser.model_used
        work: list[_Work] = []
        hashes: dict[int, str] = {}
        summaries: dict[int, str] = {}
        for change in changes.values():
            if change.full is None:
                continue
            body = summary_input(change.full).text()
            hashes[change.tender_id] = content_hash(body, model_used)
            before = stored.get(change.tender_id, {})
            if before.get("content_hash") == hashes[change.tender_id]:
                summaries[change.tender_id] = str(before.get("summary", ""))
                self.skipped_unchanged += 1
            else:
                work.append(_Work(change.tender_id, body, hashes[change.tender_id]))
        if work:
            summaries.update(await self._summarise(work))
        docs = [
            document(c, summaries.get(c.tender_id, ""), model_used, hashes.get(c.tender_id, ""))
            for c in changes.values()
        ]
        if docs:
            lease.check()
            try:
                await self._ctx.mongo.upsert_versioned(TENDER_SUMMARIES.name, docs)
            except PermanentSinkError as exc:
                # A document folds several events of its tender: the runner isolates the event one at a time.
                raise refused_event(exc, None) from exc
        # Cards follow the documents as they now stand, for every tender of the batch: a retry after a failure
        # anywhere above (or a redelivered batch) writes what the clean run wrote.
        written = {int(d.key["tender_id"]): d.fields | d.versions | {"event_id": d.event_id} for d in docs}
        lease.check()
        for tender_id in ids:
            await self._write_card(tender_id, {**stored.get(tender_id, {}), **written.get(tender_id, {})})

    async def _write_card(self, tender_id: int, doc: Mapping[str, Any]) -> None:
        if "source_seq" not in doc:
            return
        version = int(doc["source_seq"])
        key = TENDER_METADATA.key(id=tender_id)
        values = card(doc)
        if values is None:
            await self._ctx.redis.cas_delete_hash(key, "source_seq", version)
        else:
            await self._ctx.redis.cas_hash(key, values, "source_seq", version, TENDER_METADATA.ttl_s)

    async def _stored(self, tender_ids: Sequence[int]) -> dict[int, Mapping[str, Any]]:
        found = await self._ctx.mongo.find_by_ids(TENDER_SUMMARIES.name, "tender_id", tender_ids, SUMMARY_FIELDS)
        return {int(d["tender_id"]): d for d in found}

    # -- locks ----------------------------------------------------------------------------------------------------

    async def _summarise(self, todo: Sequence[_Work]) -> dict[int, str]:
        loop = asyncio.get_running_loop()
        results = await loop.run_in_executor(self._pool, self.summariser.summarise_batch, [w.text for w in todo])
        self.summarised += len(results)
        return {w.tender_id: s for w, s in zip(todo, results, strict=True)}

    async def _acquire(self, keys: Sequence[str], held: list[str]) -> None:
        """Take the locks one by one in the given (tender id) order, so two workers never wait on each other. A lock
        held by a live holder (a lease it renews) is polled for a while, then the batch backs off
        (TransientSinkError) and the runner retries it. A lock that is no lease at all (no TTL, or a TTL longer than
        any lease: a hand-set key, a killed worker of an older version) is passed by once it has blocked this
        tender for twice the lease, logged."""
        wanted = set(keys)
        self._contended = {pair: t for pair, t in self._contended.items() if pair[0] in wanted}
        deadline = time.monotonic() + min(_LOCK_POLL_S, self._lease_ms / 1000)
        for key in keys:
            while True:
                busy = await self._try_lock(key)
                if busy is None:
                    held.append(key)
                    break
                holder, ttl_ms = busy
                now = time.monotonic()
                first = self._contended.setdefault((key, holder), now)
                not_a_lease = ttl_ms == -1 or ttl_ms > self._lease_ms
                if not_a_lease and now - first > 2 * self._lease_ms / 1000:
                    self.locks_passed += 1
                    log.warning(
                        "%s: %s held by %r (TTL %d ms: no lease) for over %.0f s; going on without it",
                        AGENT,
                        key,
                        holder,
                        ttl_ms,
                        now - first,
                    )
                    break
                if now >= deadline:
                    raise TransientSinkError(f"{key} is held by {holder!r} (another worker handling that tender)")
                await asyncio.sleep(min(0.1 * self._lease_ms / 1000, 0.5))
            for pair in [p for p in self._contended if p[0] == key]:
                del self._contended[pair]

    async def _try_lock(self, key: str) -> tuple[str, int] | None:
        """Take `key` (or take it again if it is already ours); None when taken, else its holder and TTL in ms."""
        redis = self._ctx.redis
        full = redis.full_key(key, "string")
        take, _ = self._lock_scripts()

        async def run() -> tuple[str, int] | None:
            reply = await take(keys=[full], args=[self.holder, self._lease_ms])
            if isinstance(reply, int):
                return None
            holder, ttl = reply
            return text(holder), int(ttl)

        return await redis.run(run, f"lock {key}")

    async def _renew(self, keys: Sequence[str], lease: _Lease) -> None:
        """Renew the leases every third of a lease while the batch runs (cancelled when it ends). A renewal that
        fails is tried again at the next beat; a lock found gone (the lease ran out) marks the lease lost, and the
        batch stops before its next write (`_Lease.check`)."""
        _, renew = self._lock_scripts()
        redis = self._ctx.redis
        while True:
            await asyncio.sleep(self._lease_ms / 3000)
            try:
                for key in keys:
                    full = redis.full_key(key, "string")

                    async def run(full: str = full) -> int:
                        return int(await renew(keys=[full], args=[self.holder, self._lease_ms]))

                    if not await redis.run(run, f"renew {key}"):
                        lease.lose(key)
                lease.renewed()
            except SinkError as exc:
                log.warning("%s: could not renew the tender locks (%s); trying again", AGENT, exc)

    def _lock_scripts(self) -> tuple[AsyncScript, AsyncScript]:
        return self._ctx.redis.script(_TAKE_LUA), self._ctx.redis.script(_RENEW_LUA)


# KEYS[1] lock; ARGV[1] holder; ARGV[2] lease ms. Returns 1 when the lock is now the holder's, else {holder, its
# TTL in ms (-1: none)}.
_TAKE_LUA = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then return 1 end
return {holder, redis.call('PTTL', KEYS[1])}
"""
# KEYS[1] lock; ARGV[1] holder; ARGV[2] lease ms. Renews only a lock that is still the holder's.
_RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


class _Lease:
    """The batch's hold on its tender locks: lost when a lock was found gone, or when no renewal succeeded for
    most of a lease (Redis unreachable: the locks may have run out). `check` before a write raises then, and the
    runner retries the batch from the start, under fresh locks."""

    def __init__(self, lease_s: float) -> None:
        self._lease_s = lease_s
        self._renewed_at = time.monotonic()
        self.lost: list[str] = []

    def renewed(self) -> None:
        self._renewed_at = time.monotonic()

    def lose(self, key: str) -> None:
        self.lost.append(key)
        log.warning("%s: lost %s while handling its tender (the lease ran out)", AGENT, key)

    def check(self) -> None:
        if self.lost:
            raise TransientSinkError(f"{AGENT}: lost {self.lost[0]} before writing; the batch is retried")
        silent = time.monotonic() - self._renewed_at
        if silent > 0.8 * self._lease_s:
            raise TransientSinkError(
                f"{AGENT}: no lock renewal for {silent:.1f} s before writing; the batch is retried"
            )


def _handler(ctx: WorkerContext) -> TenderSummaryHandler:
    # Loaded at start-up: a configured model that cannot load stops the worker here, with the loader's message.
    return TenderSummaryHandler(ctx, load_summariser(summariser_config(ctx.settings)))


SPEC = AgentSpec(
    name=AGENT,
    doc="tender events -> one summary per tender in MongoDB and the tender's card in Redis",
    aggregates=("tender",),
    event_types=frozenset({"tender.created", "tender.updated", "tender.closed"}),
    handler=_handler,
    key_families=(TENDER_METADATA, SUMMARY_LOCK),
    collections=(TENDER_SUMMARIES,),
)
