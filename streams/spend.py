"""Pure core of spend by buyer: spend per buyer and currency (all time and over a rolling window of published dates),
kept exact under tender events by retracting each tender's old contribution and adding its new one. The agent that
folds events with it into Redis is `streams/agents/spend.py`."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import ConfigDict, Field, NaiveDatetime
from pydantic.dataclasses import dataclass as pydantic_dataclass

from schema.checked import whole
from schema.events import ContractError, Envelope, TenderClosedV1, TenderV1, envelope_of

log = logging.getLogger(__name__)

# Currency bucket of tenders without a budget (and of a budget that names no currency).
NO_CURRENCY = "none"
WINDOW_DAYS = 30
# Cancelled or withdrawn tenders leave spend; closed ones (complete, unsuccessful) stay in it.
LEAVING_STATUSES = frozenset({"cancelled", "withdrawn"})
TENDER_EVENTS = frozenset({"tender.created", "tender.updated", "tender.closed"})


@pydantic_dataclass(frozen=True, config=ConfigDict(strict=True))
class TenderSpendState:
    """What one tender contributes to spend, and the `source_seq` of the event that set it (stored as JSON in the
    spend state hash; its annotations are the checks a stored value must pass)."""

    buyer: str | None
    currency: str | None
    # Exact: a float would already have drifted (0.1 + 0.2).
    budget: Annotated[Decimal, Field(ge=0, allow_inf_nan=False)] | None
    status: str
    # Naive UTC, like the tenders.published_at DATETIME column, so events and MySQL rows fall in the same window.
    published_at: NaiveDatetime | None
    source_seq: Annotated[int, Field(ge=0)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form for the Faust table: Decimal as a string (no float drift), datetime as ISO 8601."""
        return {
            "buyer": self.buyer,
            "currency": self.currency,
            "budget": None if self.budget is None else str(self.budget),
            "status": self.status,
            "published_at": None if self.published_at is None else self.published_at.isoformat(),
            "source_seq": self.source_seq,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TenderSpendState:
        published = data["published_at"]
        if published is not None and not isinstance(published, str):
            raise ValueError(f"published_at must be an ISO 8601 string or None, got {published!r}")
        return cls(
            buyer=data["buyer"],
            currency=data["currency"],
            budget=_decimal(data["budget"]),
            status=data["status"],
            published_at=None if published is None else _naive_utc(dt.datetime.fromisoformat(published)),
            source_seq=data["source_seq"],
        )


@dataclass(frozen=True)
class Contribution:
    """One counted tender's share of its buyer's spend."""

    buyer: str
    currency: str  # ISO 4217 code, or NO_CURRENCY
    amount: Decimal
    without_budget: int  # 1 when the tender has no budget: counted, not summed
    published_at: dt.datetime | None


@dataclass(frozen=True)
class Delta:
    """A change to one (buyer, currency) total; negative numbers retract an old contribution."""

    buyer: str
    currency: str
    amount: Decimal
    tenders: int
    without_budget: int


@dataclass(frozen=True)
class BuyerSpend:
    """The totals of one (buyer, currency): summed budgets, tenders counted, and how many of those had no budget."""

    amount: Decimal
    tenders: int
    without_budget: int


_ZERO = BuyerSpend(Decimal(0), 0, 0)


def contribution(state: TenderSpendState) -> Contribution | None:
    """The tender's share of spend, or None when it does not count (cancelled, withdrawn, or no buyer)."""
    if state.status in LEAVING_STATUSES or state.buyer is None or not state.buyer.strip():
        return None
    if state.budget is None:
        # The tenders table allows a currency only with a budget; ignoring a stray one keeps an event and the
        # nightly recompute from MySQL in the same bucket.
        return Contribution(state.buyer, NO_CURRENCY, Decimal(0), 1, state.published_at)
    return Contribution(state.buyer, state.currency or NO_CURRENCY, state.budget, 0, state.published_at)


TenderEnvelope = Envelope[TenderV1 | TenderClosedV1]


def checked(event: Envelope[Any] | Mapping[str, Any]) -> TenderEnvelope:
    """A tender event, checked against the contract once. A decoded envelope (`schema.events.decode_event`) was
    checked when it was read from Kafka and is used as it is; an event held in Python (a dict whose payload may hold
    Decimal and datetime values) is checked as if read from Kafka."""
    if not isinstance(event, Envelope) and event.get("event_type") not in TENDER_EVENTS:
        raise ContractError(f"spend handles tender events only, not {event.get('event_type')!r}")
    env = event if isinstance(event, Envelope) else envelope_of(event)
    if env.event_type not in TENDER_EVENTS:
        raise ContractError(f"spend handles tender events only, not {env.event_type!r}")
    return env


def apply_event(
    previous: TenderSpendState | None, envelope: Envelope[Any] | Mapping[str, Any]
) -> tuple[TenderSpendState, list[Delta]]:
    """Fold one tender event into the tender's state; return the new state and the deltas for the totals.

    A duplicate or stale event (source_seq <= the stored one) returns (previous, []). An event that breaks the
    contract, or is not a tender event, raises ContractError (a ValueError): the wrapper sends it to the DLQ.
    """
    env = checked(envelope)
    payload = env.payload
    if previous is not None and env.source_seq <= previous.source_seq:
        return previous, []
    if isinstance(payload, TenderV1):
        # created and updated carry the whole tender, so the new state does not depend on the one it replaces.
        new = TenderSpendState(
            buyer=payload.buyer,
            currency=payload.currency,
            budget=payload.budget,
            status=payload.status,
            published_at=_naive_utc(payload.published_at),
            source_seq=env.source_seq,
        )
    elif previous is None:
        # tender.closed carries only the status: buyer and budget come from the stored state, which is right
        # because all events of one tender share a partition (key = tender id) and arrive in commit order.
        log.warning(
            "tender.closed for tender %s without a stored state (event %s, source_seq %s): it counts for "
            "nothing until a full tender event or the nightly recompute",
            env.aggregate_id,
            env.event_id,
            env.source_seq,
        )
        new = TenderSpendState(None, None, None, payload.status, None, env.source_seq)
    else:
        new = dataclasses.replace(previous, status=payload.status, source_seq=env.source_seq)
    old = None if previous is None else contribution(previous)
    return new, _deltas(old, contribution(new))


class SpendTotals:
    """Spend per (buyer, currency), changed only through deltas; an entry back at zero on every figure is dropped."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], BuyerSpend] = {}

    def apply(self, deltas: Iterable[Delta]) -> None:
        """Apply deltas all or nothing: a figure that would go negative means totals and states are out of step."""
        staged: dict[tuple[str, str], BuyerSpend] = {}
        for d in deltas:
            key = (d.buyer, d.currency)
            cur = staged[key] if key in staged else self._entries.get(key, _ZERO)
            staged[key] = BuyerSpend(
                cur.amount + d.amount, cur.tenders + d.tenders, cur.without_budget + d.without_budget
            )
        for key, e in staged.items():
            if e.amount < 0 or e.tenders < 0 or e.without_budget < 0:
                raise ValueError(f"spend of {key} would go negative ({e}): totals and tender states are out of step")
        for key, e in staged.items():
            if e.amount == 0 and e.tenders == 0 and e.without_budget == 0:
                self._entries.pop(key, None)
            else:
                self._entries[key] = e

    def get(self, buyer: str, currency: str) -> BuyerSpend | None:
        return self._entries.get((buyer, currency))

    def items(self) -> Iterator[tuple[tuple[str, str], BuyerSpend]]:
        return iter(sorted(self._entries.items()))

    def to_zset_members(self) -> dict[str, float]:
        """Members and scores for `analytics:{spend_by_buyer}` (and its windows): 'CURRENCY|buyer' -> amount.

        The currency comes first because it never contains '|', so a buyer name that does still splits cleanly."""
        return {f"{currency}|{buyer}": float(e.amount) for (buyer, currency), e in self._entries.items()}

    def __len__(self) -> int:
        return len(self._entries)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SpendTotals):
            return NotImplemented
        return self._entries == other._entries

    def __repr__(self) -> str:
        return f"SpendTotals({dict(self.items())!r})"


def in_window(published_at: dt.datetime | None, as_of: dt.date, days: int = WINDOW_DAYS) -> bool:
    """True when the published date lies in the `days` days ending on `as_of`, both ends included.

    A tender without a published date is in no window (it still counts all time)."""
    if isinstance(as_of, dt.datetime) or not isinstance(as_of, dt.date):
        raise TypeError(f"as_of must be a date, got {type(as_of).__name__}")
    if days < 1:
        raise ValueError(f"window must be at least 1 day, got {days}")
    if published_at is None:
        return False
    return as_of - dt.timedelta(days=days) < published_at.date() <= as_of


def totals_from_states(states: Iterable[TenderSpendState]) -> SpendTotals:
    """All-time totals from per-tender states (e.g. to rebuild totals from the Faust table)."""
    return _sum(contribution(s) for s in states)


def window_totals(states: Iterable[TenderSpendState], as_of: dt.date, days: int = WINDOW_DAYS) -> SpendTotals:
    """Totals over tenders published in the window ending on `as_of`.

    Computed from the states, not incrementally: a tender leaves the window when the as-of date moves, with no
    event to say so."""
    return _sum(c for s in states if (c := contribution(s)) is not None and in_window(c.published_at, as_of, days))


def recompute(rows: Iterable[Mapping[str, Any]]) -> SpendTotals:
    """All-time totals from MySQL `tenders` rows (buyer, budget, currency, status, published_at): the nightly check,
    equal to folding every event of those tenders."""
    return totals_from_states(_row_state(r) for r in rows)


def recompute_window(rows: Iterable[Mapping[str, Any]], as_of: dt.date, days: int = WINDOW_DAYS) -> SpendTotals:
    """Windowed totals from MySQL `tenders` rows, equal to `window_totals` over the folded states."""
    return window_totals((_row_state(r) for r in rows), as_of, days)


def _deltas(old: Contribution | None, new: Contribution | None) -> list[Delta]:
    # Netted per (buyer, currency): an event that changes nothing for the totals (a title edit, active ->
    # complete) yields no delta at all.
    net: dict[tuple[str, str], BuyerSpend] = {}
    for c, sign in ((old, -1), (new, 1)):
        if c is None:
            continue
        cur = net.get((c.buyer, c.currency), _ZERO)
        net[(c.buyer, c.currency)] = BuyerSpend(
            cur.amount + sign * c.amount, cur.tenders + sign, cur.without_budget + sign * c.without_budget
        )
    return [
        Delta(buyer, currency, e.amount, e.tenders, e.without_budget)
        for (buyer, currency), e in net.items()
        if e.amount != 0 or e.tenders != 0 or e.without_budget != 0
    ]


def _sum(contributions: Iterable[Contribution | None]) -> SpendTotals:
    totals = SpendTotals()
    totals.apply(Delta(c.buyer, c.currency, c.amount, 1, c.without_budget) for c in contributions if c is not None)
    return totals


def _row_state(row: Mapping[str, Any]) -> TenderSpendState:
    published = row["published_at"]
    if published is not None and not isinstance(published, dt.datetime):
        raise ValueError(f"tenders.published_at must be a datetime or None, got {published!r}")
    # A row has no source_seq; 0 is below every event's, which is what a freshly seeded state needs.
    return TenderSpendState(
        buyer=row["buyer"],
        currency=row["currency"],
        budget=_decimal(row["budget"]),
        status=row["status"],
        published_at=_naive_utc(published),
        source_seq=0,
    )


def _decimal(value: object) -> Decimal | None:
    if value is None or isinstance(value, Decimal):
        return value
    if whole(value):
        return Decimal(value)
    if isinstance(value, str):
        try:
            return Decimal(value)
        except InvalidOperation as exc:
            raise ValueError(f"budget {value!r} is not a decimal number") from exc
    # A float has already drifted (0.1 + 0.2); refusing it keeps every total exact.
    raise ValueError(f"budget must be a Decimal, int or decimal string, got {type(value).__name__} {value!r}")


def _naive_utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(dt.UTC).replace(tzinfo=None)


# -- batch fold for the Redis-backed wrapper ---------------------------------------------------------------------


@dataclass(frozen=True)
class CentsDelta:
    """A delta in integer cents (what the store adds atomically), for the all-time totals or the window."""

    window: bool
    member: str  # 'CUR|buyer', as in SpendTotals.to_zset_members
    cents: int
    tenders: int
    without_budget: int


@dataclass(frozen=True)
class FoldResult:
    """What one batch changes: the new state of each tender it touched, and the netted deltas."""

    states: dict[int, TenderSpendState]
    deltas: list[CentsDelta]
    ignored: int  # duplicate or stale events: no effect
    event_ids: dict[int, int] = dataclasses.field(default_factory=dict)  # the event that set each new state


def to_cents(amount: Decimal) -> int:
    """Cents of an amount, rounded half up like MySQL's DECIMAL(18,2) column, so events and rows agree."""
    return int(amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP) * 100)


def member(buyer: str, currency: str) -> str:
    return f"{currency}|{buyer}"


def encode_state(state: TenderSpendState, event_id: int | None = None) -> str:
    """Canonical JSON of a state (sorted keys) and the event that set it (None: rebuilt from a MySQL row): the same
    state always stores the same bytes."""
    data = {**state.to_dict(), "event_id": event_id}
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def decode_state(raw: str) -> TenderSpendState:
    return TenderSpendState.from_dict(json.loads(raw))


def fold_batch(
    states: Mapping[int, TenderSpendState | None],
    events: Iterable[Envelope[Any] | Mapping[str, Any]],
    as_of: dt.date,
    days: int = WINDOW_DAYS,
) -> FoldResult:
    """Fold a batch of tender events (in partition order) into the stored states of their tenders.

    `states` holds the stored state of every tender in the batch (None = none yet). Deltas are netted per member:
    the all-time ones from each tender's first to last contribution in the batch, the window ones likewise over the
    contributions published in the window ending on `as_of`."""
    first: dict[int, TenderSpendState | None] = {}
    current: dict[int, TenderSpendState | None] = {}
    ignored = 0
    event_ids: dict[int, int] = {}
    for event in events:
        env = checked(event)
        tender_id = int(env.aggregate_id)
        if tender_id not in current:
            if tender_id not in states:
                raise KeyError(f"state of tender {tender_id} was not read before folding its events")
            first[tender_id] = current[tender_id] = states[tender_id]
        previous = current[tender_id]
        new, _ = apply_event(previous, env)
        if new is previous:
            ignored += 1
            continue
        current[tender_id] = new
        event_ids[tender_id] = env.event_id
    changed = {t: s for t, s in current.items() if s is not None and s is not first[t]}
    net: dict[tuple[bool, str], list[int]] = {}
    for tender_id, new_state in changed.items():
        old_state = first[tender_id]
        old_c = None if old_state is None else contribution(old_state)
        new_c = contribution(new_state)
        for window in (False, True):
            before = old_c if not window or (old_c and in_window(old_c.published_at, as_of, days)) else None
            after = new_c if not window or (new_c and in_window(new_c.published_at, as_of, days)) else None
            for c, sign in ((before, -1), (after, 1)):
                if c is None:
                    continue
                acc = net.setdefault((window, member(c.buyer, c.currency)), [0, 0, 0])
                acc[0] += sign * to_cents(c.amount)
                acc[1] += sign
                acc[2] += sign * c.without_budget
    deltas = [
        CentsDelta(window, m, cents, tenders, without)
        for (window, m), (cents, tenders, without) in sorted(net.items())
        if cents or tenders or without
    ]
    return FoldResult(states=changed, deltas=deltas, ignored=ignored, event_ids={t: event_ids[t] for t in changed})


def cents_by_member(
    states: Iterable[TenderSpendState], as_of: dt.date | None = None, days: int = WINDOW_DAYS
) -> dict[str, tuple[int, int, int]]:
    """Totals exactly as the store keeps them: each tender's budget rounded to cents on its own (as `fold_batch`'s
    deltas are), summed per member; with `as_of`, only tenders published in the window ending then. Rounding the sum
    instead could differ by a cent from what the deltas add up to, and a later retraction would then go negative."""
    out: dict[str, list[int]] = {}
    for state in states:
        c = contribution(state)
        if c is None or (as_of is not None and not in_window(c.published_at, as_of, days)):
            continue
        acc = out.setdefault(member(c.buyer, c.currency), [0, 0, 0])
        acc[0] += to_cents(c.amount)
        acc[1] += 1
        acc[2] += c.without_budget
    return {m: (cents, tenders, without) for m, (cents, tenders, without) in sorted(out.items())}


def totals_in_cents(totals: SpendTotals) -> dict[str, tuple[int, int, int]]:
    """SpendTotals as the store keeps them: member -> (cents, tenders, without budget)."""
    return {
        member(buyer, currency): (to_cents(e.amount), e.tenders, e.without_budget)
        for (buyer, currency), e in totals.items()
    }


def zset_from_cents(totals: Mapping[str, tuple[int, int, int]]) -> dict[str, float]:
    """Sorted-set scores from exact cents: the same division the store's Lua script does."""
    return {m: cents / 100 for m, (cents, _, _) in totals.items()}
