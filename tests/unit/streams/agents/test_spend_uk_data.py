"""Spend by buyer on real UK Contracts Finder releases: folded as tender events, they give the plain per-buyer sums."""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from streams.spend import NO_CURRENCY, BuyerSpend, SpendTotals, TenderSpendState, apply_event, recompute, window_totals

# 50 verbatim releases; data/README.md says which, from where, and under which licence.
DATA = Path(__file__).parent / "data" / "uk_contracts_finder_spend_sample.jsonl"
Release = dict[str, Any]


def releases() -> list[Release]:
    with DATA.open(encoding="utf-8") as f:
        # parse_float=Decimal: award values such as 3036.96 must not pass through a float.
        return [json.loads(line, parse_float=Decimal) for line in f]


def budget_of(release: Release) -> tuple[Decimal | None, str | None]:
    """The awarded value when the release has one, else the tender's estimate, else no budget."""
    awarded = [a["value"] for a in release.get("awards", []) if a.get("value")]
    if awarded:
        [currency] = {v["currency"] for v in awarded}
        return sum((Decimal(v["amount"]) for v in awarded), Decimal(0)), currency
    value = release["tender"].get("value")
    if value:
        return Decimal(value["amount"]), value["currency"]
    return None, None


def commit_order(data: list[Release]) -> list[Release]:
    return sorted(data, key=lambda r: (r["date"], r["id"]))


def to_events(data: list[Release]) -> list[dict[str, Any]]:
    """One event per release in commit order (by release date): an ocid's first release creates the tender."""
    ordered = commit_order(data)
    tender_ids: dict[str, int] = {}
    first_date: dict[str, str] = {}
    events = []
    for seq, release in enumerate(ordered, start=1):
        ocid = release["ocid"]
        created = ocid not in tender_ids
        tender_ids.setdefault(ocid, len(tender_ids) + 1)
        first_date.setdefault(ocid, release["date"])
        budget, currency = budget_of(release)
        payload = {
            "tender_id": tender_ids[ocid],
            "ocid": ocid,
            "title": release["tender"]["title"],
            "buyer": release["buyer"]["name"],
            "budget": None if budget is None else str(budget),
            "currency": currency,
            "status": release["tender"]["status"],
            "published_at": first_date[ocid],
        }
        events.append(
            {
                "event_id": seq,
                "event_type": "tender.created" if created else "tender.updated",
                "aggregate_type": "tender",
                "aggregate_id": str(tender_ids[ocid]),
                "occurred_at": release["date"],
                "schema_version": 1,
                "source_seq": seq,
                "payload": payload,
            }
        )
    return events


def fold(events: list[dict[str, Any]]) -> tuple[dict[str, TenderSpendState], SpendTotals, int]:
    states: dict[str, TenderSpendState] = {}
    totals = SpendTotals()
    stale = 0
    for event in events:
        previous = states.get(event["aggregate_id"])
        new, deltas = apply_event(previous, event)
        stale += new is previous
        states[event["aggregate_id"]] = new
        totals.apply(deltas)
    return states, totals, stale


def plain_sums(data: list[Release], published_since: str = "") -> dict[tuple[str, str], BuyerSpend]:
    """The expected figures, straight from the file: each ocid's latest release, summed per buyer and currency."""
    latest: dict[str, Release] = {}
    first: dict[str, str] = {}
    for r in data:
        if r["ocid"] not in latest or (r["date"], r["id"]) > (latest[r["ocid"]]["date"], latest[r["ocid"]]["id"]):
            latest[r["ocid"]] = r
        first[r["ocid"]] = min(first.get(r["ocid"], r["date"]), r["date"])
    sums: dict[tuple[str, str], list[Any]] = defaultdict(lambda: [Decimal(0), 0, 0])
    for ocid, r in latest.items():
        if first[ocid] < published_since:
            continue
        budget, currency = budget_of(r)
        entry = sums[(r["buyer"]["name"], currency or NO_CURRENCY)]
        entry[0] += budget or 0
        entry[1] += 1
        entry[2] += budget is None
    return {key: BuyerSpend(*entry) for key, entry in sums.items()}


@pytest.fixture(scope="module")
def data() -> list[Release]:
    loaded = releases()
    assert len(loaded) == 50 and len({r["ocid"] for r in loaded}) == 40
    return loaded


def test_folded_events_equal_the_plain_sums_per_buyer(data: list[Release]) -> None:
    _, totals, stale = fold(to_events(data))
    expected = plain_sums(data)
    assert dict(totals.items()) == expected
    assert stale == 0
    assert sum(1 for _, spend in totals.items() if spend.without_budget) > 0  # real releases without a value
    assert totals.to_zset_members()["GBP|London Borough of Merton"] == float(
        expected[("London Borough of Merton", "GBP")].amount
    )


def test_corrected_award_values_replace_the_wrong_ones(data: list[Release]) -> None:
    _, totals, _ = fold(to_events(data))
    # Both buyers first published an award 100 times too large and corrected it minutes later.
    assert totals.get("Wirral Borough Council", "GBP") == BuyerSpend(Decimal(188487), 1, 0)
    assert totals.get("Southampton City Council", "GBP") == BuyerSpend(Decimal(109320), 1, 0)
    # An estimate followed by a lower award: the award replaces the estimate.
    assert totals.get("Bath and North East Somerset Council", "GBP") == BuyerSpend(Decimal(75000), 1, 0)


def test_file_order_newest_first_drops_every_older_release(data: list[Release]) -> None:
    event_of = {r["id"]: e for r, e in zip(commit_order(data), to_events(data), strict=True)}
    newest_first = [event_of[r["id"]] for r in data]
    _, totals, stale = fold(newest_first)
    assert stale == 10  # one older release for each of the ten ocids released twice
    assert dict(totals.items()) == plain_sums(data)


def test_recompute_from_the_final_rows_equals_the_fold(data: list[Release]) -> None:
    states, totals, _ = fold(to_events(data))
    rows = [
        {
            "buyer": s.buyer,
            "budget": s.budget,
            "currency": s.currency,
            "status": s.status,
            "published_at": s.published_at,
        }
        for s in states.values()
    ]
    assert recompute(rows) == totals


def test_thirty_day_window_keeps_only_the_march_releases(data: list[Release]) -> None:
    states, totals, _ = fold(to_events(data))
    window = window_totals(states.values(), dt.date(2025, 3, 11))
    assert dict(window.items()) == plain_sums(data, published_since="2025-02-10")
    assert 0 < len(window) < len(totals)
    assert len(window_totals(states.values(), dt.date(2025, 2, 22))) == 0
