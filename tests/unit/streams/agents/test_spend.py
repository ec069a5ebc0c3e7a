"""Spend by buyer: every tender event is an exact retraction plus addition, guarded by source_seq."""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest

from schema.events import ContractError, decode_event
from streams.spend import (
    NO_CURRENCY,
    BuyerSpend,
    Delta,
    SpendTotals,
    TenderSpendState,
    apply_event,
    contribution,
    in_window,
    recompute,
    recompute_window,
    totals_from_states,
    window_totals,
)

HEALTH = "Department of Health"
WATER = "Department of Water and Sanitation"


def tender_event(
    seq: int,
    tender_id: int = 7,
    event_type: str = "tender.updated",
    *,
    buyer: str | None = HEALTH,
    budget: str | None = "100.00",
    currency: str | None = "ZAR",
    status: str = "active",
    published_at: str | None = "2025-03-10T09:00:00",
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "tender_id": tender_id,
        "ocid": f"ocds-9t57fa-{tender_id}",
        "title": f"Tender {tender_id}",
        "buyer": buyer,
        "budget": budget,
        "currency": currency,
        "status": status,
        "published_at": published_at,
    }
    return envelope(seq, tender_id, event_type, payload)


def closed_event(seq: int, tender_id: int = 7, status: str = "complete") -> dict[str, Any]:
    return envelope(seq, tender_id, "tender.closed", {"tender_id": tender_id, "status": status, "reason": "test"})


def envelope(seq: int, aggregate_id: int, event_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": 1000 + seq,
        "event_type": event_type,
        "aggregate_type": "tender",
        "aggregate_id": str(aggregate_id),
        "occurred_at": "2025-03-10T09:00:00.000Z",
        "schema_version": 1,
        "source_seq": seq,
        "payload": payload,
    }


@dataclass
class Agent:
    """What the Faust wrapper will do: per-tender states stored as JSON, and all-time totals."""

    states: dict[str, str] = field(default_factory=dict)
    totals: SpendTotals = field(default_factory=SpendTotals)

    def feed(self, env: Mapping[str, Any]) -> list[Delta]:
        key = str(env["aggregate_id"])
        stored = self.states.get(key)
        previous = None if stored is None else TenderSpendState.from_dict(json.loads(stored))
        new, deltas = apply_event(previous, env)
        self.states[key] = json.dumps(new.to_dict())
        self.totals.apply(deltas)
        return deltas

    def state(self, tender_id: int) -> TenderSpendState:
        return TenderSpendState.from_dict(json.loads(self.states[str(tender_id)]))

    def all_states(self) -> list[TenderSpendState]:
        return [TenderSpendState.from_dict(json.loads(s)) for s in self.states.values()]


def test_budget_change_retracts_the_old_budget_exactly() -> None:
    agent = Agent()
    agent.feed(tender_event(1, event_type="tender.created", budget="100.10"))
    deltas = agent.feed(tender_event(2, budget="250.25"))
    assert deltas == [Delta(HEALTH, "ZAR", Decimal("150.15"), 0, 0)]
    assert agent.totals.get(HEALTH, "ZAR") == BuyerSpend(Decimal("250.25"), 1, 0)


def test_sums_stay_exact_where_floats_drift() -> None:
    agent = Agent()
    agent.feed(tender_event(1, tender_id=1, budget="0.10"))
    agent.feed(tender_event(2, tender_id=2, budget="0.20"))
    spend = agent.totals.get(HEALTH, "ZAR")
    assert spend is not None and spend.amount == Decimal("0.30") and 0.1 + 0.2 != 0.3
    assert agent.totals.to_zset_members() == {f"ZAR|{HEALTH}": 0.3}


def test_buyer_change_moves_the_amount_between_buyers() -> None:
    agent = Agent()
    agent.feed(tender_event(1, event_type="tender.created", budget="5000.00"))
    deltas = agent.feed(tender_event(2, buyer=WATER, budget="5000.00"))
    assert deltas == [
        Delta(HEALTH, "ZAR", Decimal("-5000.00"), -1, 0),
        Delta(WATER, "ZAR", Decimal("5000.00"), 1, 0),
    ]
    assert agent.totals.get(HEALTH, "ZAR") is None
    assert agent.totals.get(WATER, "ZAR") == BuyerSpend(Decimal("5000.00"), 1, 0)


def test_duplicate_event_changes_nothing() -> None:
    event = tender_event(4, event_type="tender.created", budget="900.00")
    first, _ = apply_event(None, event)
    again, deltas = apply_event(first, event)
    assert again is first and deltas == []
    agent = Agent()
    agent.feed(event)
    assert agent.feed(event) == []
    assert agent.totals.get(HEALTH, "ZAR") == BuyerSpend(Decimal("900.00"), 1, 0)


def test_stale_event_after_a_newer_one_changes_nothing() -> None:
    agent = Agent()
    agent.feed(tender_event(1, event_type="tender.created", budget="100.00"))
    agent.feed(tender_event(5, budget="300.00", buyer=WATER))
    assert agent.feed(tender_event(3, budget="200.00")) == []
    assert agent.feed(tender_event(1, event_type="tender.created", budget="100.00")) == []
    assert agent.state(7).source_seq == 5 and agent.state(7).budget == Decimal("300.00")
    assert list(agent.totals.items()) == [((WATER, "ZAR"), BuyerSpend(Decimal("300.00"), 1, 0))]


@pytest.mark.parametrize("status", ["cancelled", "withdrawn"])
def test_cancelled_or_withdrawn_tender_leaves_spend_and_can_come_back(status: str) -> None:
    agent = Agent()
    agent.feed(tender_event(1, event_type="tender.created", budget="750.00"))
    assert agent.feed(closed_event(2, status=status)) == [Delta(HEALTH, "ZAR", Decimal("-750.00"), -1, 0)]
    assert len(agent.totals) == 0
    # The stored buyer and budget survive the cancellation, so a reopened tender returns exactly.
    agent.feed(tender_event(3, budget="750.00"))
    assert agent.totals.get(HEALTH, "ZAR") == BuyerSpend(Decimal("750.00"), 1, 0)
    agent.feed(tender_event(4, budget="750.00", status=status))
    assert len(agent.totals) == 0


@pytest.mark.parametrize("status", ["complete", "unsuccessful"])
def test_closed_tender_stays_in_spend(status: str) -> None:
    agent = Agent()
    agent.feed(tender_event(1, event_type="tender.created", budget="1200.00"))
    assert agent.feed(closed_event(2, status=status)) == []
    state = agent.state(7)
    assert (state.buyer, state.budget, state.status, state.source_seq) == (HEALTH, Decimal("1200.00"), status, 2)
    assert agent.totals.get(HEALTH, "ZAR") == BuyerSpend(Decimal("1200.00"), 1, 0)


def test_closed_without_stored_state_counts_nothing_and_blocks_older_events(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="streams.spend"):
        state, deltas = apply_event(None, closed_event(9, status="complete"))
    assert deltas == [] and state.buyer is None and state.status == "complete" and state.source_seq == 9
    assert "without a stored state" in caplog.text and "source_seq 9" in caplog.text
    assert apply_event(state, tender_event(8, budget="10.00")) == (state, [])


def test_tender_without_budget_is_counted_not_summed() -> None:
    agent = Agent()
    agent.feed(tender_event(1, tender_id=1, budget=None, currency=None))
    agent.feed(tender_event(2, tender_id=2, budget="40.00"))
    assert agent.totals.get(HEALTH, NO_CURRENCY) == BuyerSpend(Decimal(0), 1, 1)
    assert agent.totals.get(HEALTH, "ZAR") == BuyerSpend(Decimal("40.00"), 1, 0)
    # The budget arrives later: the tender moves from the no-budget bucket to its currency.
    agent.feed(tender_event(3, tender_id=1, budget="60.00"))
    assert agent.totals.get(HEALTH, NO_CURRENCY) is None
    assert agent.totals.get(HEALTH, "ZAR") == BuyerSpend(Decimal("100.00"), 2, 0)


def test_currency_without_budget_lands_in_the_no_budget_bucket_like_the_mysql_row() -> None:
    # The tenders table stores no currency without a budget, so the nightly recompute sees "none" too.
    state, deltas = apply_event(None, tender_event(1, budget=None, currency="ZAR"))
    assert deltas == [Delta(HEALTH, NO_CURRENCY, Decimal(0), 1, 1)]
    row = {"buyer": HEALTH, "budget": None, "currency": None, "status": "active", "published_at": state.published_at}
    assert totals_from_states([state]) == recompute([row])


def test_zero_budget_is_a_budget() -> None:
    agent = Agent()
    agent.feed(tender_event(1, budget="0"))
    assert agent.totals.get(HEALTH, "ZAR") == BuyerSpend(Decimal(0), 1, 0)
    assert agent.totals.to_zset_members() == {f"ZAR|{HEALTH}": 0.0}


def test_tender_without_buyer_is_not_counted() -> None:
    assert contribution(TenderSpendState(None, "ZAR", Decimal(5), "active", None, 1)) is None
    assert contribution(TenderSpendState("  ", "ZAR", Decimal(5), "active", None, 1)) is None


def test_currencies_are_kept_apart() -> None:
    agent = Agent()
    agent.feed(tender_event(1, tender_id=1, budget="1000.00", currency="ZAR"))
    agent.feed(tender_event(2, tender_id=2, budget="1000.00", currency="GBP"))
    agent.feed(tender_event(3, tender_id=3, budget="0.50", currency="GBP"))
    assert agent.totals.to_zset_members() == {f"ZAR|{HEALTH}": 1000.0, f"GBP|{HEALTH}": 1000.5}
    agent.feed(tender_event(4, tender_id=2, budget="1000.00", currency="ZAR"))
    assert agent.totals.to_zset_members() == {f"ZAR|{HEALTH}": 2000.0, f"GBP|{HEALTH}": 0.5}


def test_zset_member_puts_currency_first_so_a_pipe_in_the_name_splits_cleanly() -> None:
    agent = Agent()
    agent.feed(tender_event(1, buyer="Eskom | Generation", budget="3.00"))
    [(member, score)] = agent.totals.to_zset_members().items()
    assert member.split("|", 1) == ["ZAR", "Eskom | Generation"] and score == 3.0


def test_thirty_day_window_at_an_as_of_date() -> None:
    as_of = dt.date(2025, 3, 31)
    published = {
        1: "2025-03-31T23:59:59",  # the as-of day itself: inside
        2: "2025-03-02T00:00:00",  # 29 days before: the window's first day
        3: "2025-03-01T23:59:59",  # 30 days before: outside
        4: "2025-04-01T00:00:00",  # after the as-of date: not yet
        5: "2025-03-01T23:30:00-02:00",  # 2025-03-02 01:30 UTC: inside
        6: None,  # no published date: all time only
    }
    agent = Agent()
    for tender_id, when in published.items():
        agent.feed(tender_event(tender_id, tender_id=tender_id, budget=f"{tender_id}.00", published_at=when))
    window = window_totals(agent.all_states(), as_of)
    assert window.get(HEALTH, "ZAR") == BuyerSpend(Decimal("8.00"), 3, 0)
    assert agent.totals.get(HEALTH, "ZAR") == BuyerSpend(Decimal("21.00"), 6, 0)
    assert window_totals(agent.all_states(), dt.date(2025, 4, 1), days=1).get(HEALTH, "ZAR") == BuyerSpend(
        Decimal("4.00"), 1, 0
    )
    assert len(window_totals(agent.all_states(), dt.date(2025, 5, 31))) == 0


def test_window_rejects_a_datetime_as_of_and_an_empty_window() -> None:
    with pytest.raises(TypeError, match="as_of must be a date"):
        in_window(dt.datetime(2025, 3, 1), dt.datetime(2025, 3, 1))
    with pytest.raises(ValueError, match="at least 1 day"):
        in_window(dt.datetime(2025, 3, 1), dt.date(2025, 3, 1), days=0)


def test_envelope_object_and_in_process_values_are_accepted() -> None:
    raw = tender_event(3, budget="12.34")
    from_dict, _ = apply_event(None, raw)
    from_object, _ = apply_event(None, decode_event(json.dumps(raw)))
    payload = {**raw["payload"], "budget": Decimal("12.34"), "published_at": dt.datetime(2025, 3, 10, 9)}
    in_process, _ = apply_event(None, {**raw, "payload": payload})
    assert from_dict == from_object == in_process
    assert from_dict.published_at == dt.datetime(2025, 3, 10, 9)


@pytest.mark.parametrize(
    ("event", "match"),
    [
        ({**tender_event(1), "event_type": "tender.deleted"}, "tender events only"),
        (
            envelope(1, 7, "company.updated", {"team_id": 7, "company_id": 1}) | {"aggregate_type": "company"},
            "tender events only",
        ),
        ({**tender_event(1), "schema_version": 2}, "unknown schema_version 2"),
        (tender_event(1, budget="-1.00"), "budget"),
        (tender_event(1, budget="lots"), "budget"),
        ({**tender_event(1), "aggregate_id": "8"}, "does not match aggregate_id 8"),
        ({**tender_event(1), "source_seq": "1"}, "source_seq"),
        ({k: v for k, v in tender_event(1).items() if k != "source_seq"}, "envelope lacks"),
    ],
)
def test_events_that_break_the_contract_raise_value_error(event: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        apply_event(None, event)
    assert isinstance(info.value, ContractError)


def test_unknown_event_raises_even_when_stale() -> None:
    state, _ = apply_event(None, tender_event(5))
    with pytest.raises(ValueError, match="tender events only"):
        apply_event(state, {**tender_event(1), "event_type": "tender.archived"})


def test_state_round_trips_through_json() -> None:
    state = TenderSpendState(WATER, "ZAR", Decimal("1234567890123456.78"), "complete", dt.datetime(2025, 3, 1, 8), 42)
    assert TenderSpendState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
    empty = TenderSpendState(None, None, None, "planning", None, 0)
    assert TenderSpendState.from_dict(json.loads(json.dumps(empty.to_dict()))) == empty


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"budget": 12.5}, "budget must be a Decimal"),
        ({"budget": "NaN"}, "finite"),
        ({"source_seq": -1}, "source_seq"),
        ({"published_at": 20250301}, "published_at"),
        ({"status": None}, "status"),
    ],
)
def test_bad_stored_state_is_refused(changes: dict[str, Any], match: str) -> None:
    data = {**TenderSpendState(HEALTH, "ZAR", Decimal(1), "active", None, 1).to_dict(), **changes}
    with pytest.raises(ValueError, match=match):
        TenderSpendState.from_dict(data)


def test_totals_refuse_to_go_negative_and_stay_unchanged() -> None:
    totals = SpendTotals()
    totals.apply([Delta(HEALTH, "ZAR", Decimal("10.00"), 1, 0)])
    with pytest.raises(ValueError, match="out of step"):
        totals.apply([Delta(WATER, "ZAR", Decimal("5.00"), 1, 0), Delta(HEALTH, "ZAR", Decimal("-10.00"), -2, 0)])
    assert list(totals.items()) == [((HEALTH, "ZAR"), BuyerSpend(Decimal("10.00"), 1, 0))]


def test_recompute_reads_mysql_rows_and_refuses_float_budgets() -> None:
    rows: list[dict[str, Any]] = [
        {"buyer": HEALTH, "budget": Decimal("10.00"), "currency": "ZAR", "status": "complete", "published_at": None},
        {"buyer": HEALTH, "budget": None, "currency": None, "status": "active", "published_at": None},
        {"buyer": HEALTH, "budget": Decimal("99.00"), "currency": "ZAR", "status": "cancelled", "published_at": None},
    ]
    totals = recompute(rows)
    assert list(totals.items()) == [
        ((HEALTH, "ZAR"), BuyerSpend(Decimal("10.00"), 1, 0)),
        ((HEALTH, NO_CURRENCY), BuyerSpend(Decimal(0), 1, 1)),
    ]
    with pytest.raises(ValueError, match="budget must be a Decimal"):
        recompute([{**rows[0], "budget": 10.0}])


# --- property: folding redelivered, interleaved events equals recomputing from the final MySQL rows ----------

BUYERS = [HEALTH, WATER, "City of Cape Town", "Eskom | Generation", None]
STATUSES = ["planning", "planned", "active", "active", "complete", "unsuccessful", "cancelled", "withdrawn"]
CLOSING = ["complete", "unsuccessful", "cancelled", "withdrawn"]
PARTITIONS = 4


def random_row(rng: random.Random) -> dict[str, Any]:
    """A tenders row as the application would write it (the CHECK: currency only with a budget)."""
    budget = None if rng.random() < 0.25 else Decimal(rng.randrange(0, 10**9)).scaleb(-2)
    published = None if rng.random() < 0.1 else dt.datetime(2025, 1, 1) + dt.timedelta(minutes=rng.randrange(172_800))
    return {
        "buyer": rng.choice(BUYERS),
        "budget": budget,
        "currency": None if budget is None else rng.choice(["ZAR", "GBP"]),
        "status": rng.choice(STATUSES),
        "published_at": published,
    }


def row_payload(tender_id: int, row: Mapping[str, Any], rng: random.Random) -> dict[str, Any]:
    published = row["published_at"]
    if published is not None:
        # Producers may send naive UTC or an explicit offset; both must land on the same instant.
        published = published.isoformat() if rng.random() < 0.5 else published.isoformat() + "+00:00"
    budget = row["budget"]
    return {
        "tender_id": tender_id,
        "ocid": f"ocds-9t57fa-{tender_id}",
        "title": f"Tender {tender_id}",
        "buyer": row["buyer"],
        "budget": None if budget is None else str(budget),
        "currency": row["currency"],
        "status": row["status"],
        "published_at": published,
    }


def generate(rng: random.Random, tenders: int, steps: int) -> tuple[dict[int, dict[str, Any]], list[dict[str, Any]]]:
    """Commit-ordered events for `tenders` tenders and the tenders rows they leave behind."""
    rows: dict[int, dict[str, Any]] = {}
    events: list[dict[str, Any]] = []
    for seq in range(1, steps + 1):
        tender_id = rng.randrange(1, tenders + 1)
        if tender_id not in rows:
            rows[tender_id] = random_row(rng)
            events.append(envelope(seq, tender_id, "tender.created", row_payload(tender_id, rows[tender_id], rng)))
        elif rng.random() < 0.3:
            rows[tender_id] = {**rows[tender_id], "status": rng.choice(CLOSING)}
            events.append(closed_event(seq, tender_id, rows[tender_id]["status"]))
        else:
            row = random_row(rng)
            if rng.random() < 0.5:  # a budget-only change keeps the buyer and currency
                row = {**rows[tender_id], "budget": row["budget"], "currency": row["currency"]}
            rows[tender_id] = row
            events.append(envelope(seq, tender_id, "tender.updated", row_payload(tender_id, row, rng)))
    return rows, events


def deliver(rng: random.Random, events: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    """Kafka's view: partitions keep each tender's order but interleave freely, and after a crash a partition
    replays a stretch it had already delivered (its committed offset lagged the state)."""
    queues: list[list[dict[str, Any]]] = [[] for _ in range(PARTITIONS)]
    for e in events:
        queues[int(e["aggregate_id"]) % PARTITIONS].append(e)
    offsets = [0] * PARTITIONS
    while any(offsets[p] < len(queues[p]) for p in range(PARTITIONS)):
        p = rng.choice([p for p in range(PARTITIONS) if offsets[p] < len(queues[p])])
        yield queues[p][offsets[p]]
        offsets[p] += 1
        if rng.random() < 0.05:
            start = rng.randrange(0, offsets[p])
            yield from queues[p][start : offsets[p]]


@pytest.mark.parametrize("seed", range(6))
def test_folding_redelivered_events_equals_recompute_from_rows(seed: int) -> None:
    rng = random.Random(seed)
    rows, events = generate(rng, tenders=150, steps=1200)
    agent = Agent()
    replays = 0
    seen: set[int] = set()
    for event in deliver(rng, events):
        deltas = agent.feed(event)
        if event["source_seq"] in seen:
            replays += 1
            assert deltas == []
        seen.add(event["source_seq"])
    assert replays > 50 and seen == {e["source_seq"] for e in events}

    assert agent.totals == recompute(rows.values())
    assert agent.totals == totals_from_states(agent.all_states())
    for as_of in (dt.date(2025, 1, 15), dt.date(2025, 3, 1), dt.date(2025, 4, 30), dt.date(2025, 6, 1)):
        for days in (1, 30, 90):
            assert window_totals(agent.all_states(), as_of, days) == recompute_window(rows.values(), as_of, days)
    assert len(agent.totals) > 5
