"""The contract bounds every id, date, budget and free-text field: each limit is accepted and one past it is refused
(so the relay and the worker send the event to the DLQ), and every real tender and demo company still passes."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from schema.events import (
    BUYER_MAX_CHARS,
    CATEGORY_MAX_CHARS,
    CIDB_MAX_ITEMS,
    COMPANY_NAME_MAX_CHARS,
    DETAILS_MAX_BYTES,
    DETAILS_MAX_DEPTH,
    MAX_BUDGET,
    MAX_ID,
    PROVINCE_MAX_CHARS,
    PROVINCES_MAX_ITEMS,
    REASON_MAX_CHARS,
    SECTOR_MAX_CHARS,
    SECTORS_MAX_ITEMS,
    ContractError,
    decode_event,
    validate_payload,
)
from schema.redis_keys import TEAM_TOP_TENDERS, InvalidKeyError, family_of
from tenderhub.companies import read_profiles
from tenderhub.loader import DATA_DIR, _payload, read_releases, tender_row, with_award_value

TENDER: dict[str, Any] = {"tender_id": 12, "ocid": "ocds-9t57fa-1", "title": "Supply of water meters"}
CLOSED: dict[str, Any] = {"tender_id": 12, "status": "cancelled"}
COMPANY: dict[str, Any] = {"team_id": 12, "company_id": 3, "sectors": [], "provinces": [], "cidb": []}
ACTIVITY: dict[str, Any] = {"user_id": 12, "team_id": 1, "action": "tender.viewed"}
AGGREGATE = {"tender.created": "tender", "tender.closed": "tender", "company.updated": "company"}
AGGREGATE |= {"user.activity": "activity"}


def check(event_type: str, payload: dict[str, Any], aggregate_id: str = "12") -> None:
    validate_payload(event_type, 1, AGGREGATE[event_type], aggregate_id, json.dumps(payload))


def grading(i: int) -> dict[str, Any]:
    return {"class_of_works": "CE", "grade": 1 + i % 9}


def nested(depth: int) -> dict[str, Any]:
    """A details object `depth` levels deep (the object itself is level 1), alternating objects and lists."""
    value: Any = {}
    for level in range(depth - 2):
        value = {"k": value} if level % 2 else [value]
    return {"k": value}


def details_of(size: int) -> dict[str, Any]:
    """Details whose compact JSON is exactly `size` bytes (2-byte characters included)."""
    head = '{"q":"' + "é" * 10
    filler = size - len(head.encode()) - 2
    value: dict[str, Any] = json.loads(head + "y" * filler + '"}')
    assert len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()) == size
    return value


# (what, event type, payload at the limit, payload one past it)
BOUNDS: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
    (
        "tender buyer",
        "tender.created",
        TENDER | {"buyer": "b" * BUYER_MAX_CHARS},
        TENDER | {"buyer": "b" * (BUYER_MAX_CHARS + 1)},
    ),
    (
        "tender category",
        "tender.created",
        TENDER | {"category": "c" * CATEGORY_MAX_CHARS},
        TENDER | {"category": "c" * (CATEGORY_MAX_CHARS + 1)},
    ),
    (
        "tender province",
        "tender.created",
        TENDER | {"province": " " * PROVINCE_MAX_CHARS},
        TENDER | {"province": " " * (PROVINCE_MAX_CHARS + 1)},
    ),
    ("tender title", "tender.created", TENDER | {"title": "t" * 1000}, TENDER | {"title": "t" * 1001}),
    ("tender ocid", "tender.created", TENDER | {"ocid": "o" * 128}, TENDER | {"ocid": "o" * 129}),
    ("tender number", "tender.created", TENDER | {"tender_number": "n" * 255}, TENDER | {"tender_number": "n" * 256}),
    (
        "tender description",
        "tender.created",
        TENDER | {"description": "." * 20_000},
        TENDER | {"description": "." * 20_001},
    ),
    (
        "tender special conditions",
        "tender.created",
        TENDER | {"special_conditions": "." * 50_000},
        TENDER | {"special_conditions": "." * 50_001},
    ),
    (
        "tender briefing venue",
        "tender.created",
        TENDER | {"briefing_venue": "v" * 1000},
        TENDER | {"briefing_venue": "v" * 1001},
    ),
    (
        "tender budget",
        "tender.created",
        TENDER | {"budget": str(MAX_BUDGET), "currency": "ZAR"},
        TENDER | {"budget": str(MAX_BUDGET + Decimal("0.01")), "currency": "ZAR"},
    ),
    ("tender budget floor", "tender.created", TENDER | {"budget": "0"}, TENDER | {"budget": "-0.01"}),
    (
        "close reason",
        "tender.closed",
        CLOSED | {"reason": "r" * REASON_MAX_CHARS},
        CLOSED | {"reason": "r" * (REASON_MAX_CHARS + 1)},
    ),
    (
        "company name",
        "company.updated",
        COMPANY | {"company_name": "n" * COMPANY_NAME_MAX_CHARS},
        COMPANY | {"company_name": "n" * (COMPANY_NAME_MAX_CHARS + 1)},
    ),
    (
        "sector label",
        "company.updated",
        COMPANY | {"sectors": ["s" * SECTOR_MAX_CHARS]},
        COMPANY | {"sectors": ["s" * (SECTOR_MAX_CHARS + 1)]},
    ),
    (
        "sectors listed",
        "company.updated",
        COMPANY | {"sectors": ["Cleaning"] * SECTORS_MAX_ITEMS},
        COMPANY | {"sectors": ["Cleaning"] * (SECTORS_MAX_ITEMS + 1)},
    ),
    (
        "province name",
        "company.updated",
        COMPANY | {"provinces": ["p" * PROVINCE_MAX_CHARS]},
        COMPANY | {"provinces": ["p" * (PROVINCE_MAX_CHARS + 1)]},
    ),
    (
        "provinces listed",
        "company.updated",
        COMPANY | {"provinces": ["GP"] * PROVINCES_MAX_ITEMS},
        COMPANY | {"provinces": ["GP"] * (PROVINCES_MAX_ITEMS + 1)},
    ),
    (
        "CIDB gradings listed",
        "company.updated",
        COMPANY | {"cidb": [grading(i) for i in range(CIDB_MAX_ITEMS)]},
        COMPANY | {"cidb": [grading(i) for i in range(CIDB_MAX_ITEMS + 1)]},
    ),
    (
        "activity details size",
        "user.activity",
        ACTIVITY | {"details": details_of(DETAILS_MAX_BYTES)},
        ACTIVITY | {"details": details_of(DETAILS_MAX_BYTES + 1)},
    ),
    (
        "activity details depth",
        "user.activity",
        ACTIVITY | {"details": nested(DETAILS_MAX_DEPTH)},
        ACTIVITY | {"details": nested(DETAILS_MAX_DEPTH + 1)},
    ),
]


@pytest.mark.parametrize(("what", "event_type", "at_limit", "past_limit"), BOUNDS, ids=[b[0] for b in BOUNDS])
def test_each_free_text_list_and_amount_bound_accepts_its_limit_and_refuses_one_more(
    what: str, event_type: str, at_limit: dict[str, Any], past_limit: dict[str, Any]
) -> None:
    check(event_type, at_limit)
    with pytest.raises(ContractError) as err:
        check(event_type, past_limit)
    assert err.value.reason.startswith(f"payload breaks {event_type} v1: ")


IDS = [
    ("tender.created", TENDER, "tender_id", True),
    ("tender.closed", CLOSED, "tender_id", True),
    ("company.updated", COMPANY, "team_id", True),
    ("company.updated", COMPANY, "company_id", False),
    ("user.activity", ACTIVITY, "user_id", True),
    ("user.activity", ACTIVITY, "team_id", False),
    ("user.activity", ACTIVITY, "tender_id", False),
]


@pytest.mark.parametrize(("event_type", "base", "field", "is_aggregate"), IDS, ids=[f"{i[0]} {i[2]}" for i in IDS])
def test_every_payload_id_fits_a_signed_64_bit_integer(
    event_type: str, base: dict[str, Any], field: str, is_aggregate: bool
) -> None:
    for value, ok in ((MAX_ID, True), (MAX_ID + 1, False), (2**64 - 1, False), (10**20 - 1, False), (0, False)):
        # The aggregate id must equal the payload id; one past the bound fails on either, both say why.
        aggregate_id = str(value) if is_aggregate else "12"
        if ok:
            check(event_type, base | {field: value}, aggregate_id)
            continue
        with pytest.raises(ContractError) as err:
            check(event_type, base | {field: value}, aggregate_id)
        assert field in err.value.reason or "aggregate_id" in err.value.reason


@pytest.mark.parametrize(
    "aggregate_id", [str(MAX_ID + 1), "18446744073709551615", "99999999999999999999", "012", "١٢", "²", "1" * 10_000]
)
def test_aggregate_ids_past_64_bits_or_not_plain_digits_are_refused(aggregate_id: str) -> None:
    with pytest.raises(ContractError) as err:
        check("tender.created", TENDER, aggregate_id)
    assert "aggregate_id" in err.value.reason and len(err.value.reason) < 200


def test_the_largest_id_is_a_valid_aggregate_id() -> None:
    check("tender.created", TENDER | {"tender_id": MAX_ID}, str(MAX_ID))


def test_redis_keys_take_ids_up_to_signed_64_bits_only() -> None:
    assert TEAM_TOP_TENDERS.key(id=MAX_ID) == f"team:{{{MAX_ID}}}:top_tenders"
    assert family_of(TEAM_TOP_TENDERS.key(id=MAX_ID)) is TEAM_TOP_TENDERS
    for bad in (MAX_ID + 1, str(MAX_ID + 1), 10**19, 10**20 - 1):
        with pytest.raises(InvalidKeyError):
            TEAM_TOP_TENDERS.key(id=bad)


DATES = [
    ("1900-01-01T00:00:00", True),
    ("1899-12-31T23:59:59.999999", False),
    ("2199-12-31T23:59:59.999999", True),
    ("2200-01-01T00:00:00", False),
    ("1900-01-01T01:00:00+01:00", True),  # 1900-01-01 00:00 UTC
    ("1900-01-01T00:59:59+01:00", False),
    ("2200-01-01T01:59:59+02:00", True),  # 23:59:59 UTC the day before
    ("2200-01-01T02:00:00+02:00", False),
    ("0001-01-01T00:00:00+05:00", False),  # converting it to UTC would overflow
    ("9999-12-31T23:59:59-05:00", False),
    ("9999-12-31T23:59:59.999999", False),
]


@pytest.mark.parametrize("field", ["published_at", "closing_at", "briefing_at"])
@pytest.mark.parametrize(("value", "ok"), DATES)
def test_tender_dates_lie_between_1900_and_2199(field: str, value: str, ok: bool) -> None:
    if ok:
        check("tender.created", TENDER | {field: value})
        return
    with pytest.raises(ContractError) as err:
        check("tender.created", TENDER | {field: value})
    assert field in err.value.reason and "1900-01-01 and 2199-12-31" in err.value.reason


@pytest.mark.parametrize("budget", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_budgets_that_are_not_finite_amounts_are_refused(budget: str) -> None:
    with pytest.raises(ContractError):
        check("tender.created", TENDER | {"budget": budget, "currency": "ZAR"})


def test_the_budget_bound_keeps_spend_sums_inside_signed_64_bit_cents() -> None:
    cents = int(MAX_BUDGET * 100)
    assert (2**63 - 1) // cents >= 90_000


def test_details_with_a_lone_surrogate_are_refused_not_crashing() -> None:
    with pytest.raises(ContractError):
        check("user.activity", ACTIVITY | {"details": {"q": "\ud800"}})


@pytest.mark.parametrize("name", ["event_id", "source_seq"])
def test_envelope_numbers_fit_a_signed_64_bit_integer(name: str) -> None:
    env = {"event_id": 1, "event_type": "tender.created", "aggregate_type": "tender", "aggregate_id": "12"}
    env |= {"occurred_at": "2026-01-05T10:00:00.000Z", "schema_version": 1, "source_seq": 7, "payload": TENDER}
    assert getattr(decode_event(json.dumps(env | {name: MAX_ID})), name) == MAX_ID
    for bad in (MAX_ID + 1, -1, True, "5"):
        with pytest.raises(ContractError) as err:
            decode_event(json.dumps(env | {name: bad}))
        assert name in err.value.reason


def test_every_real_tender_in_data_passes_the_contract() -> None:
    releases = [
        *read_releases(),
        *read_releases(DATA_DIR / "uk_contracts_finder_spend_sample.jsonl"),
        json.loads((DATA_DIR / "za_etenders_real_ocds_release_165050.json").read_text())["release"],
    ]
    assert len(releases) == 251
    for n, release in enumerate(releases, start=1):
        row = with_award_value(tender_row(release), release)
        check("tender.created", _payload(n, row), str(n))


def test_every_demo_company_passes_the_contract() -> None:
    profiles = read_profiles()
    assert profiles
    for n, p in enumerate(profiles, start=1):
        payload = {
            "team_id": n,
            "company_id": n,
            "company_name": p.company_name,
            "sectors": p.sectors,
            "provinces": p.provinces,
            "experience_years": p.experience_years,
            "bbbee_level": p.bbbee_level,
            "cidb": p.cidb,
        }
        check("company.updated", payload, str(n))


def test_details_within_the_shortcut_bound_are_checked_as_exactly_as_larger_ones() -> None:
    """The size check skips re-serialising details when the payload text is too small to hold too much: the
    worst growth of compact JSON over its text (numbers written with exponents) stays inside that bound."""
    from schema.events import _MAX_REENCODE_GROWTH, validate_payload

    budget = DETAILS_MAX_BYTES // _MAX_REENCODE_GROWTH
    head = json.dumps(ACTIVITY | {"details": {"n": []}}, separators=(",", ":"))[:-3]
    count = (budget - len(head) - 3) // 5
    text = head + ",".join(["9e15"] * count) + "]}}"
    assert len(text.encode()) <= budget
    details = json.loads(text)["details"]
    grown = len(json.dumps(details, separators=(",", ":"), ensure_ascii=False).encode())
    assert grown > 3 * len(text)  # the growth is real
    assert grown <= DETAILS_MAX_BYTES  # and still inside the limit, so the shortcut is sound
    validate_payload("user.activity", 1, "activity", str(ACTIVITY["user_id"]), text)
    # One byte past the shortcut's bound takes the exact path, which refuses details past the limit as before.
    big = json.dumps(ACTIVITY | {"details": details_of(DETAILS_MAX_BYTES + 1)}, ensure_ascii=False)
    with pytest.raises(ContractError):
        validate_payload("user.activity", 1, "activity", str(ACTIVITY["user_id"]), big)


NON_FINITE = ["1e400", "-1e999", "NaN", "Infinity", "-Infinity"]


@pytest.mark.parametrize("number", NON_FINITE)
@pytest.mark.parametrize(
    "where",
    [
        '"details":{{"count":{n}}}',
        '"details":{{"a":[1,{{"b":[{n}]}}]}}',
        '"extra_field":{n}',
        '"extra_field":{{"deep":[{n}]}}',
    ],
)
def test_numbers_json_cannot_carry_are_refused_by_relay_and_worker_alike(number: str, where: str) -> None:
    # 1e400 parses as infinity: it would be stored and served back as `Infinity`, which strict JSON readers refuse.
    payload = '{"user_id":12,"team_id":1,"action":"tender.viewed",' + where.format(n=number) + "}"
    with pytest.raises(ContractError):
        validate_payload("user.activity", 1, "activity", "12", payload)
    envelope = (
        '{"event_id":1,"event_type":"user.activity","aggregate_type":"activity","aggregate_id":"12",'
        '"occurred_at":"2026-01-05T10:00:00Z","schema_version":1,"source_seq":1,"payload":' + payload + "}"
    )
    with pytest.raises(ContractError):
        decode_event(envelope)


def test_large_finite_numbers_in_details_still_pass() -> None:
    check("user.activity", ACTIVITY | {"details": {"big": 1.7e308, "small": -1e-300, "n": 10**18}, "x": 1e300})


def test_a_budget_carries_at_most_six_decimal_places() -> None:
    # A 100,000-digit fraction would be kept verbatim in every store that holds the tender's state.
    check("tender.created", TENDER | {"budget": "1234.567891", "currency": "ZAR"})
    for budget in ("0." + "9" * 7, "0." + "9" * 100_000):
        with pytest.raises(ContractError, match="budget"):
            check("tender.created", TENDER | {"budget": budget, "currency": "ZAR"})
