"""`lock:summary:<id>` against the real Redis, and the summariser's shutdown (issue 10, item 9): a lock left by a
killed summariser never stalls the tenders behind it, a live summariser keeps its lock while it works, and the
worker's stop shuts the summariser's thread down."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence

import pytest

from schema.events import decode_event
from schema.redis_keys import SUMMARY_LOCK
from schema.settings import Settings
from sinks.errors import TransientSinkError
from streams.agents.tender_summaries import TenderSummaryHandler
from streams.app import build_pipeline
from streams.batch import Incoming
from streams.context import WorkerContext
from streams.summaries.extractive import ExtractiveSummariser
from tests.integration.store_faults import FaultPlan, LostUpdateMongo, Namespace, envelope, run_batches, snapshot
from tests.integration.test_summaries_closes import summaries_handler, tender

pytestmark = pytest.mark.asyncio


@pytest.fixture
def namespace(settings: Settings) -> Iterator[Namespace]:
    ns = Namespace.fresh(settings, "lk:")
    yield ns
    ns.drop()


def _incoming_for_tests(values: list[bytes]) -> list[Incoming]:
    return [Incoming(decode_event(v), "sf.tender", 0, n) for n, v in enumerate(values)]


def _lock_key(ns: Namespace, tender_id: int) -> str:
    return ns.settings.redis_key_prefix + SUMMARY_LOCK.key(id=tender_id)


async def test_a_lock_a_killed_summariser_left_for_its_whole_ttl_is_passed_by_and_the_batch_goes_on(
    namespace: Namespace,
) -> None:
    import redis as sync_redis

    client = sync_redis.Redis.from_url(namespace.settings.redis_url.get_secret_value())
    try:
        # What a summariser killed mid-batch leaves behind with the catalogue's TTL (10 min): nobody releases it.
        client.set(_lock_key(namespace, 2), "summariser@gone:4242:dead", ex=SUMMARY_LOCK.ttl_s)
        batch = [envelope(n, "tender.created", n, tender(n)) for n in (1, 2, 3)]
        started = time.monotonic()
        # run_batches raises NoProgress if the runner keeps retrying (20 back-offs, no sleeping).
        dead = await run_batches(namespace.settings, FaultPlan(), summaries_handler, [batch])
        elapsed = time.monotonic() - started
        assert dead.event_ids() == []
        state = snapshot(namespace.settings)
        assert len(state["mongo:tender_summaries"]) == 3
        assert {k for k in state if k.endswith(":metadata")} == {f"redis:<ns>tender:{n}:metadata" for n in (1, 2, 3)}
        # Bounded by twice the lease (1 s here), not by the dead holder's TTL; generous against the ~2 s measured.
        assert elapsed < 10
    finally:
        client.close()


async def test_a_summariser_keeps_its_lease_while_it_works_and_releases_it_after(namespace: Namespace) -> None:
    class Slow(ExtractiveSummariser):
        def summarise_batch(self, texts: Sequence[str]) -> list[str]:
            time.sleep(2.0)
            return super().summarise_batch(texts)

    ctx = WorkerContext(namespace.settings)
    handler = TenderSummaryHandler(ctx, Slow(sentences=2), lock_lease_s=0.6)
    client = ctx.redis.client()
    key = _lock_key(namespace, 1)
    try:
        work = asyncio.ensure_future(handler(_incoming_for_tests([envelope(1, "tender.created", 1, tender(1))])))
        seen = []
        for _ in range(6):  # 1.8 s: three leases; without renewal the lock would be gone after 0.6 s
            await asyncio.sleep(0.3)
            seen.append(((await client.get(key)) or b"").decode())
        await work
        assert seen == [handler.holder] * 6
        assert not await client.exists(key)
    finally:
        await handler.aclose()
        await ctx.aclose()


async def test_another_summarisers_live_lock_makes_the_batch_back_off_then_its_release_lets_it_through(
    namespace: Namespace,
) -> None:
    ctx = WorkerContext(namespace.settings)
    handler = TenderSummaryHandler(ctx, ExtractiveSummariser(sentences=2), lock_lease_s=5.0)
    client = ctx.redis.client()
    key = _lock_key(namespace, 1)
    items = _incoming_for_tests([envelope(1, "tender.created", 1, tender(1))])
    try:
        await client.set(key, "summariser@other:1:live", px=5000)

        with pytest.raises(TransientSinkError, match="summariser@other:1:live"):
            await handler(items)
        await client.delete(key)
        await handler(items)
        assert handler.summarised == 1 and handler.locks_passed == 0
    finally:
        await handler.aclose()
        await ctx.aclose()


async def test_worker_stop_shuts_the_summarisers_thread_down(namespace: Namespace) -> None:
    pipeline = build_pipeline(namespace.settings, agents=["tender_summaries"])
    handler = pipeline.runners["tender_summaries"].handler
    assert isinstance(handler, TenderSummaryHandler)
    await handler(_incoming_for_tests([envelope(1, "tender.created", 1, tender(1))]))

    def threads() -> list[str]:
        return [t.name for t in threading.enumerate() if t.name.startswith(handler.thread_name_prefix)]

    assert threads()  # the summary ran in the handler's own thread
    await pipeline.ctx.aclose()
    assert handler.closed and threads() == []
    with pytest.raises(RuntimeError):
        await handler(_incoming_for_tests([envelope(2, "tender.created", 2, tender(2))]))


@pytest.mark.parametrize("changes", ["text", "status"])
async def test_an_old_owners_write_never_lands_over_the_new_owners_newer_document(
    namespace: Namespace, changes: str
) -> None:
    """A rebalance hands a tender's partition over while the old owner's batch is still in flight: the new owner
    handles the redelivered events and a newer one. On a store whose guarded update is not atomic (FerretDB 1.x) the
    old owner's older document could land over the newer one; the tender's lock, held from the read of the stored
    document to the write, keeps the two apart, and the new owner's batch goes through once it is released."""
    ctx_old, ctx_new = WorkerContext(namespace.settings), WorkerContext(namespace.settings)
    old = TenderSummaryHandler(ctx_old, ExtractiveSummariser(sentences=2), lock_lease_s=5.0)
    new = TenderSummaryHandler(ctx_new, ExtractiveSummariser(sentences=2), lock_lease_s=5.0)
    created = envelope(11, "tender.created", 1, tender(1))
    updated = envelope(12, "tender.updated", 1, tender(1, title="Community hall, phase 2"))
    newer = (
        envelope(13, "tender.updated", 1, tender(1, title="Community hall, phase 3"))
        if changes == "text"
        else envelope(13, "tender.closed", 1, {"tender_id": 1, "status": "complete"})
    )
    second: list[asyncio.Task[None]] = []

    async def meanwhile() -> None:
        second.append(asyncio.create_task(new(_incoming_for_tests([updated, newer]))))
        await asyncio.wait(second, timeout=3.0)  # longer than a lock is polled before the batch backs off

    try:
        await new(_incoming_for_tests([created]))
        lost = LostUpdateMongo(ctx_old.mongo, namespace.settings, meanwhile)
        ctx_old._mongo = lost  # type: ignore[assignment]
        await old(_incoming_for_tests([updated]))
        assert lost.fired

        try:
            await second[0]
        except TransientSinkError:
            await new(_incoming_for_tests([updated, newer]))  # the runner's retry
        fields = ["source_seq", "title", "status"]
        (doc,) = await ctx_new.mongo.find_by_ids("tender_summaries", "tender_id", [1], fields)
        assert doc["source_seq"] == 13
        expected = (
            ("Community hall, phase 3", "active") if changes == "text" else ("Community hall, phase 2", "complete")
        )
        assert (doc["title"], doc["status"]) == expected
    finally:
        for handler in (old, new):
            await handler.aclose()
        await ctx_old.aclose()
        await ctx_new.aclose()


async def test_a_live_holders_lease_is_never_passed_by_however_long_it_works(namespace: Namespace) -> None:
    """Passing a lock by is for keys that are no lease (no TTL, or a longer one): a holder that keeps renewing its
    lease is waited for, however long it takes, so two workers never write one tender at once."""
    ctx = WorkerContext(namespace.settings)
    handler = TenderSummaryHandler(ctx, ExtractiveSummariser(sentences=2), lock_lease_s=1.0)
    client = ctx.redis.client()
    key = _lock_key(namespace, 1)
    items = _incoming_for_tests([envelope(1, "tender.created", 1, tender(1))])
    stop = asyncio.Event()

    async def live_holder() -> None:
        while not stop.is_set():
            await client.set(key, "summariser@other:1:live", px=1000)
            await asyncio.sleep(0.3)

    holder = asyncio.create_task(live_holder())
    try:
        await asyncio.sleep(0.1)
        started = time.monotonic()
        while time.monotonic() - started < 3.5:  # well past twice the lease
            with pytest.raises(TransientSinkError, match="summariser@other:1:live"):
                await handler(items)
        assert handler.locks_passed == 0
        assert await ctx.mongo.find_by_ids("tender_summaries", "tender_id", [1], ["source_seq"]) == []
        stop.set()
        await holder
        await client.delete(key)
        await handler(items)
        assert handler.summarised == 1
    finally:
        stop.set()
        await holder
        await handler.aclose()
        await ctx.aclose()


class _SlowSummariser(ExtractiveSummariser):
    def summarise_batch(self, texts: Sequence[str]) -> list[str]:
        time.sleep(1.5)
        return super().summarise_batch(texts)


async def test_a_lock_lost_while_the_batch_runs_stops_the_batch_before_it_writes(namespace: Namespace) -> None:
    """The lease ran out and another worker took the tender while this batch was summarising: it must not write
    (its write could land over the other's on FerretDB); it backs off, and the retry writes under a fresh lock."""
    ctx = WorkerContext(namespace.settings)
    handler = TenderSummaryHandler(ctx, _SlowSummariser(sentences=2), lock_lease_s=1.0)
    client = ctx.redis.client()
    key = _lock_key(namespace, 1)
    items = _incoming_for_tests([envelope(1, "tender.created", 1, tender(1))])
    try:
        task = asyncio.create_task(handler(items))
        await asyncio.sleep(0.3)
        await client.set(key, "summariser@other:2:took-over", px=5000)  # what a lease run out lets happen
        with pytest.raises(TransientSinkError, match="lost"):
            await task
        assert await ctx.mongo.find_by_ids("tender_summaries", "tender_id", [1], ["source_seq"]) == []
        assert await client.get(key) == b"summariser@other:2:took-over"  # never released by the loser
        await client.delete(key)
        await handler(items)
        (doc,) = await ctx.mongo.find_by_ids("tender_summaries", "tender_id", [1], ["source_seq"])
        assert doc["source_seq"] == 1
    finally:
        await handler.aclose()
        await ctx.aclose()
