"""The batch fold of the spend wrapper: deltas in integer cents that, applied to the store, always equal the totals
recomputed from the tenders' final states, whatever the batching, duplicates and redeliveries."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from typing import Any

from streams.spend import (
    TenderSpendState,
    decode_state,
    encode_state,
    fold_batch,
    to_cents,
    totals_from_states,
    totals_in_cents,
    window_totals,
)

AS_OF = dt.date(2025, 1, 23)


def event(seq: int, tender_id: int, **payload: Any) -> dict[str, Any]:
    base = {"tender_id": tender_id, "ocid": f"ocds-{tender_id}", "title": "t", "status": "active"}
    return {
        "event_id": seq,
        "event_type": "tender.updated",
        "aggregate_type": "tender",
        "aggregate_id": str(tender_id),
        "occurred_at": "2025-01-01T00:00:00",
        "schema_version": 1,
        "source_seq": seq,
        "payload": base | payload,
    }


def apply(store: dict[str, tuple[int, int, int]], deltas: list[Any], window: bool) -> None:
    for d in deltas:
        if d.window != window:
            continue
        c, t, w = store.get(d.member, (0, 0, 0))
        new = (c + d.cents, t + d.tenders, w + d.without_budget)
        assert min(new) >= 0
        if new == (0, 0, 0):
            store.pop(d.member, None)
        else:
            store[d.member] = new


def test_cents_round_half_up_like_mysql_decimal() -> None:
    assert to_cents(Decimal("10.005")) == 1001 and to_cents(Decimal("3036.96")) == 303696


def test_state_encoding_is_canonical() -> None:
    state = TenderSpendState("Buyer", "GBP", Decimal("12.50"), "active", dt.datetime(2025, 1, 2), 9)
    assert decode_state(encode_state(state)) == state
    assert encode_state(state) == encode_state(decode_state(encode_state(state)))


def test_random_batches_with_duplicates_equal_the_recompute_from_final_states() -> None:
    rng = random.Random(5)
    buyers = ["Leeds City Council", "Ministry of Defence", "NHS Supply Chain"]
    for _ in range(50):
        events = []
        for seq in range(1, 80):
            tender_id = rng.randint(1, 12)
            budget = None if rng.random() < 0.2 else str(Decimal(rng.randint(0, 10**7)) / 100)
            payload: dict[str, Any] = {
                "buyer": rng.choice(buyers),
                "budget": budget,
                "currency": None if budget is None else rng.choice(["GBP", "EUR"]),
                "status": rng.choice(["active", "active", "complete", "cancelled"]),
                "published_at": f"2025-01-{rng.randint(1, 28):02d}T10:00:00",
            }
            events.append(event(seq, tender_id, **payload))
        # Redeliveries: a stretch of events again, as after a crash.
        start = rng.randint(0, 60)
        stream = events + events[start : start + 15]
        states: dict[int, TenderSpendState | None] = {}
        store_all: dict[str, tuple[int, int, int]] = {}
        store_win: dict[str, tuple[int, int, int]] = {}
        i = 0
        while i < len(stream):
            size = rng.randint(1, 20)
            batch = stream[i : i + size]
            i += size
            for e in batch:
                states.setdefault(int(e["aggregate_id"]), None)
            result = fold_batch({t: states[t] for t in {int(e["aggregate_id"]) for e in batch}}, batch, AS_OF)
            apply(store_all, result.deltas, window=False)
            apply(store_win, result.deltas, window=True)
            states.update(result.states)
        finals = [s for s in states.values() if s is not None]
        assert store_all == totals_in_cents(totals_from_states(finals))
        assert store_win == totals_in_cents(window_totals(finals, AS_OF))
