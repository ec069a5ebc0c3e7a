"""The spend-by-buyer agent: tender events folded into the Redis spend store with the pure core of `streams/spend.py`
(read states, fold, apply atomically with a compare-and-set), the leader's window refresh and the nightly recompute
from MySQL."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from schema.events import TenderClosedV1, TenderV1
from schema.redis_keys import (
    SPEND_BY_BUYER,
    SPEND_BY_BUYER_WINDOW,
    SPEND_TENDER_STATE,
    SPEND_TOTALS,
    SPEND_WINDOW_TOTALS,
)
from sinks.errors import PermanentSinkError, TransientSinkError
from sinks.spend_store import EPOCH_MYSQL, MAX_EXACT, StateWrite, Totals, TotalsDelta
from streams.batch import Incoming
from streams.context import WorkerContext
from streams.spec import AgentSpec, Timer
from streams.spend import (
    TENDER_EVENTS,
    TenderSpendState,
    _row_state,
    cents_by_member,
    contribution,
    decode_state,
    encode_state,
    fold_batch,
    member,
    to_cents,
    zset_from_cents,
)

log = logging.getLogger(__name__)

AGENT = "spend"
_CAS_ROUNDS = 5
_RECOMPUTE_ROUNDS = 5
_TENDER_ROWS_SQL = "SELECT id, buyer, currency, budget, status, published_at FROM tenders ORDER BY id"


class SpendHandler:
    """Folds tender events into the Redis spend store: read states, fold (pure), apply atomically with a CAS; a
    store found not whole is rebuilt from MySQL first, a window computed for another date is recomputed first."""

    def __init__(self, ctx: WorkerContext) -> None:
        self._ctx = ctx
        self.ignored = 0
        self.repairs = 0

    async def __call__(self, items: Sequence[Incoming[TenderV1 | TenderClosedV1]]) -> None:
        envelopes = [i.event for i in items]
        if not envelopes:
            return
        store = self._ctx.spend
        ids = sorted({int(e.aggregate_id) for e in envelopes})
        for _ in range(_CAS_ROUNDS):
            raw = await store.read_states(ids)
            stored = {t: None if v is None else decode_state(v) for t, v in raw.items()}
            as_of = self._ctx.as_of()
            result = fold_batch(stored, envelopes, as_of, self._ctx.settings.spend_window_days)
            writes = [
                StateWrite(t, raw[t], encode_state(s, result.event_ids[t])) for t, s in sorted(result.states.items())
            ]
            deltas = [TotalsDelta(d.window, d.member, d.cents, d.tenders, d.without_budget) for d in result.deltas]
            outcome = await store.apply(writes, deltas, as_of=as_of)
            if outcome.status == "ok":
                self.ignored += result.ignored
                return
            if outcome.status == "conflict":
                log.info(
                    "%s: tender states %s changed while folding; reading them again", AGENT, outcome.conflicts[:10]
                )
            elif outcome.status == "as_of":
                log.info("%s: window totals are for %s, not %s: recomputing the window", AGENT, outcome.detail, as_of)
                await refresh_window(self._ctx)
            elif outcome.status == "lost":
                self.repairs += 1
                await rebuild_from_mysql(self._ctx, outcome.detail)
            else:
                raise PermanentSinkError(
                    f"{AGENT}: the spend of {outcome.detail[:80]!r} would pass 2^53 cents; nothing written"
                )
        raise RuntimeError(f"{AGENT}: the spend store kept changing under the batch ({_CAS_ROUNDS} rounds)")


async def refresh_window(ctx: WorkerContext) -> bool:
    """Rebuild the windowed totals from the tender states: tenders age out of the window with no event. A store
    found not whole (an empty one included) is built from MySQL instead."""
    store = ctx.spend
    as_of, days = ctx.as_of(), ctx.settings.spend_window_days
    for _ in range(_RECOMPUTE_ROUNDS):
        snap = await store.snapshot()
        if not snap.whole:
            # Empty too: a first start and a store lost whole look alike, and readers must not wait for the next
            # tender event to see spend again.
            await rebuild_from_mysql(ctx, f"window refresh found the store not whole (markers {snap.epochs})")
            return True
        cents = cents_by_member((decode_state(v) for v in snap.states.values()), as_of, days)
        status = await store.replace(
            generation=snap.generation,
            as_of=as_of,
            window_totals={m: Totals(*v) for m, v in cents.items()},
            window_zset=zset_from_cents(cents),
        )
        if status == "done":
            return True
        if status == "lost":
            await rebuild_from_mysql(ctx, "window refresh found the store not whole")
            return True
    log.warning("%s: window refresh gave way to new batches %d times; the next one retries", AGENT, _RECOMPUTE_ROUNDS)
    return False


async def _read_rows(ctx: WorkerContext) -> list[dict[str, Any]]:
    def read() -> list[dict[str, Any]]:
        with ctx.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.text(_TENDER_ROWS_SQL))]

    return await asyncio.to_thread(read)


@dataclass(frozen=True)
class RecomputeReport:
    tenders: int
    members: int
    window_members: int
    drift: list[str]  # members whose stream totals differed from MySQL (in-flight events, a loss, or a bug)
    rebuilt_state: bool
    replaced: bool
    reason: str = ""  # why the states were rebuilt


async def rebuild_from_mysql(ctx: WorkerContext, reason: str) -> RecomputeReport:
    """Replace the whole store (states, totals, windows, sorted sets) from MySQL's tenders.

    The snapshot's generation is read BEFORE the rows: a batch that lands after the snapshot makes the guarded
    replace give way (and this runs again), while every event applied before it was committed to MySQL before it was
    published, so the rows read afterwards hold it. Events still in flight apply over the rebuilt states (source_seq
    0, below every event's), each replacing its tender's row values with its own."""
    log.warning("%s: rebuilding tender states and totals from MySQL: %s", AGENT, reason)
    store = ctx.spend
    for _ in range(_RECOMPUTE_ROUNDS):
        snap = await store.snapshot()
        rows = await _read_rows(ctx)
        report = await _rebuild(ctx, snap.generation, rows, [], reason)
        if report.replaced:
            return report
    raise TransientSinkError(f"{AGENT}: rebuild from MySQL gave way to incoming batches {_RECOMPUTE_ROUNDS} times")


async def _rebuild(
    ctx: WorkerContext, generation: int, rows: list[dict[str, Any]], drift: list[str], reason: str
) -> RecomputeReport:
    as_of, days = ctx.as_of(), ctx.settings.spend_window_days
    rows, row_states = within_exact(rows)
    all_cents = cents_by_member(row_states)
    window_cents = cents_by_member(row_states, as_of, days)
    status = await ctx.spend.replace(
        generation=generation,
        epoch=EPOCH_MYSQL,
        as_of=as_of,
        states={int(r["id"]): encode_state(state) for r, state in zip(rows, row_states, strict=True)},
        totals={m: Totals(*v) for m, v in all_cents.items()},
        zset=zset_from_cents(all_cents),
        window_totals={m: Totals(*v) for m, v in window_cents.items()},
        window_zset=zset_from_cents(window_cents),
    )
    done = status == "done"
    if done:
        log.info(
            "%s: rebuilt from MySQL: %d tenders, %d members (%d in the %d-day window)",
            AGENT,
            len(rows),
            len(all_cents),
            len(window_cents),
            days,
        )
    return RecomputeReport(len(rows), len(all_cents), len(window_cents), drift, done, done, reason)


def within_exact(rows: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[TenderSpendState]]:
    """The rows (in id order) whose states keep every buyer total exact (below 2^53 cents), as the stream keeps them,
    and those states: a tender that would pass the bound is left out and logged, like its event, which the stream
    refuses alone."""
    totals: dict[str, tuple[int, int, int]] = {}
    kept_rows, kept, refused = [], [], []
    for row in rows:
        state = _row_state(row)
        c = contribution(state)
        if c is not None:
            m = member(c.buyer, c.currency)
            cents, tenders, without = totals.get(m, (0, 0, 0))
            new = (cents + to_cents(c.amount), tenders + 1, without + c.without_budget)
            if max(new) > MAX_EXACT:
                refused.append(int(row["id"]))
                continue
            totals[m] = new
        kept_rows.append(row)
        kept.append(state)
    if refused:
        log.error(
            "%s: %d tenders left out of the rebuild: their buyer's total would pass 2^53 cents (ids %s)",
            AGENT,
            len(refused),
            refused[:20],
        )
    return kept_rows, kept


async def recompute_from_mysql(ctx: WorkerContext) -> RecomputeReport:
    """The nightly job: check the store against itself and against MySQL, and repair it.

    A store that is not whole, was started by the stream alone (versions before 2026-12-07 started an empty store
    from a batch of creations; it may lack tenders older than the stream), or whose totals are not the sum of its
    states, is rebuilt from MySQL; so is one whose totals differ from MySQL's (drift: reported, then repaired). A
    store that agrees gets its sorted sets and window rewritten (TTLs renewed), atomically, only if no batch landed
    meanwhile."""
    store = ctx.spend
    as_of, days = ctx.as_of(), ctx.settings.spend_window_days
    for _ in range(_RECOMPUTE_ROUNDS):
        snap = await store.snapshot()  # before the rows: see rebuild_from_mysql
        rows, row_states = within_exact(await _read_rows(ctx))
        all_cents = cents_by_member(row_states)
        stream = {m: (t.cents, t.tenders, t.without_budget) for m, t in snap.totals.items()}
        drift = sorted(m for m in set(stream) | set(all_cents) if stream.get(m) != all_cents.get(m))
        reason = ""
        if not snap.whole:
            reason = f"the store is not whole (markers {snap.epochs})"
        elif snap.epoch != EPOCH_MYSQL:
            reason = "the store was started by the stream alone"
        elif cents_by_member(decode_state(v) for v in snap.states.values()) != stream:
            reason = "the totals are not the sum of the tender states"
        elif drift:
            log.warning(
                "%s: nightly recompute: %d members differ between the stream and MySQL (events in flight, a loss, "
                "or a bug): %s",
                AGENT,
                len(drift),
                drift[:20],
            )
            reason = f"{len(drift)} members differ from MySQL"
        if reason:
            report = await _rebuild(ctx, snap.generation, rows, drift, reason)
            if report.replaced:
                return report
            continue
        window_cents = cents_by_member(row_states, as_of, days)
        status = await store.replace(
            generation=snap.generation,
            as_of=as_of,
            zset=zset_from_cents(all_cents),
            window_totals={m: Totals(*v) for m, v in window_cents.items()},
            window_zset=zset_from_cents(window_cents),
        )
        if status == "done":
            log.info(
                "%s: nightly recompute: %d tenders agree with MySQL (%d members)", AGENT, len(rows), len(all_cents)
            )
            return RecomputeReport(len(rows), len(all_cents), len(window_cents), [], False, True)
    log.warning("%s: nightly recompute gave way to incoming batches %d times", AGENT, _RECOMPUTE_ROUNDS)
    return RecomputeReport(0, 0, 0, [], False, False)


SPEC = AgentSpec(
    name=AGENT,
    doc="tender events -> spend by buyer and currency in Redis (all time and a rolling window)",
    aggregates=("tender",),
    event_types=TENDER_EVENTS,
    handler=SpendHandler,
    key_families=(SPEND_BY_BUYER, SPEND_BY_BUYER_WINDOW, SPEND_TENDER_STATE, SPEND_TOTALS, SPEND_WINDOW_TOTALS),
    timers=(
        Timer(
            "spend_window_refresh",
            lambda ctx, _handler: lambda: refresh_window(ctx),
            every_s=lambda settings: settings.spend_window_refresh_s,
        ),
        Timer(
            "spend_nightly_recompute",
            lambda ctx, _handler: lambda: recompute_from_mysql(ctx),
            cron=lambda settings: settings.spend_recompute_cron,
        ),
    ),
)
