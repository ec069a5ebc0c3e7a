"""The event contract: envelope, event types and their versioned payload schemas, declared once.

Apps write events through the outbox; the relay validates every row against this contract (bad rows go to the
DLQ with the reason) and wraps it in an `Envelope`; agents decode it back with `decode_event`, in one pass that
checks the envelope and the payload its event type selects.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Generic, Literal, TypeVar, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    model_validator,
)

# --- bounds ------------------------------------------------------------------------------------------------------
# Every value an agent stores or parses is bounded here, so one event cannot poison a store or stall a parser. The
# free-text limits were chosen against the real data (data/*.jsonl and the 4,294 eTenders + 200 UK releases of the
# shared data set, through tenderhub.loader's payloads): the longest real value is noted next to each limit, which
# is the MySQL column's size where there is one, and a comfortable multiple of the longest real value otherwise.

# Ids are stored as signed 64-bit integers everywhere (MySQL BIGINT, BSON int64, Redis integer replies).
MAX_ID = 2**63 - 1
# Dates: 1900-01-01 up to 2199-12-31 (UTC; a naive value is UTC, as the loader and the MySQL columns write it). The
# real data spans 2016-2030. Far enough from datetime's year 1 and 9999 that no time-zone conversion (SAST for
# bidders, any offset up to 14 h) overflows, and inside what MySQL DATETIME and BSON dates hold. The readiness
# facts check (streams.readiness.scoring) refuses the same range.
EARLIEST_DATE = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)
LATEST_DATE = dt.datetime(2200, 1, 1, tzinfo=dt.UTC)  # exclusive
# Budgets: up to one trillion (10^12, in any currency; the largest real one is 543,000,000 GBP and the largest South
# African contracts are in the tens of billions of rand). In integer cents that is 10^14, so the spend totals, signed
# 64-bit cents (9.2 * 10^18), can sum more than 90,000 budgets at the bound before they overflow.
MAX_BUDGET = Decimal(10**12)
# Free text. Longest real values: buyer 101 (column 500), category 106 (column 255), province 13 (column 64).
BUYER_MAX_CHARS = 500
TENDER_NUMBER_MAX_CHARS = 255
DESCRIPTION_MAX_CHARS = 20_000
SPECIAL_CONDITIONS_MAX_CHARS = 50_000
BRIEFING_VENUE_MAX_CHARS = 1000
CATEGORY_MAX_CHARS = 255
PROVINCE_MAX_CHARS = 64
REASON_MAX_CHARS = 1000  # a close or cancellation reason: a sentence or two
COMPANY_NAME_MAX_CHARS = 300  # the company_profiles column
# A company profile (the demo's longest sector label has 24 characters, the most sectors one profile lists is 4):
# a sector label is a few words, a province a name from the reference tables (or an alias), and there are 20 CIDB
# classes of works, each held at one grade.
SECTOR_MAX_CHARS = 200
SECTORS_MAX_ITEMS = 50
PROVINCES_MAX_ITEMS = 20  # nine provinces plus "National", each possibly also under an alias
CIDB_MAX_ITEMS = 20
# user.activity details are a small JSON object the log keeps verbatim (real ones hold a source, a query, a count):
# at most 16 KiB of compact JSON (UTF-8) nested at most 8 levels deep (the details object itself is level 1).
DETAILS_MAX_BYTES = 16 * 1024
DETAILS_MAX_DEPTH = 8
# Fields the contract does not declare are allowed (producers add fields first) but no agent reads them; the data
# topics' max.message.bytes (schema.topics) bounds them with the whole event.


class ContractError(ValueError):
    """An event breaks the contract; `reason` says how (it goes to the DLQ with the event)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _in_calendar(value: dt.datetime) -> dt.datetime:
    moment = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    if not EARLIEST_DATE <= moment < LATEST_DATE:
        last_day = (LATEST_DATE - dt.timedelta(days=1)).date()
        raise ValueError(f"must lie between {EARLIEST_DATE.date()} and {last_day} (UTC)")
    return value


# Compact JSON of a parsed value is at most this many times the bytes of the JSON text it was parsed from: only a
# number grows ("9e15," -> "9000000000000000.0,", 3.8x); strings, literals and structure never do, whitespace and
# escapes only shrink. A payload text this small cannot hold details past DETAILS_MAX_BYTES.
_MAX_REENCODE_GROWTH = 5


def _finite(values: Iterable[Any]) -> bool:
    """False if a number JSON cannot carry (1e400 parses as infinity; NaN) is among `values` or inside them: it would
    be stored, then served back as `Infinity`, which strict JSON readers refuse. Iterative: depth is bounded
    elsewhere."""
    stack = list(values)
    while stack:
        node = stack.pop()
        if type(node) is float:
            if not math.isfinite(node):
                return False
        elif isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return True


_NOT_FINITE = "holds a number JSON cannot carry (infinite or NaN)"


def _small_details(value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
    # Depth before size, level by level without recursion: a deep value fails here instead of in json.dumps. The same
    # walk sees every leaf once: a number JSON cannot carry is refused on the way.
    level: list[Any] = [value]
    for _ in range(DETAILS_MAX_DEPTH):
        level = [c for node in level for c in (node.values() if isinstance(node, dict) else node)]
        if not _finite(c for c in level if type(c) is float):
            raise ValueError(_NOT_FINITE)
        level = [c for c in level if isinstance(c, dict | list)]
        if not level:
            break
    else:
        raise ValueError(f"nests deeper than {DETAILS_MAX_DEPTH} levels")
    text_bytes = (info.context or {}).get("payload_bytes")
    if isinstance(text_bytes, int) and text_bytes * _MAX_REENCODE_GROWTH <= DETAILS_MAX_BYTES:
        return value  # the relay's hot path: no re-serialisation needed to know the bound holds
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    if size > DETAILS_MAX_BYTES:
        raise ValueError(f"is {size} bytes of JSON, more than {DETAILS_MAX_BYTES}")
    return value


Id = Annotated[int, Field(ge=1, le=MAX_ID)]
Date = Annotated[dt.datetime, AfterValidator(_in_calendar)]


class Payload(BaseModel):
    """Base of every payload model. Strict: "12" is not an id. Unknown extra fields are allowed so producers can add
    fields first."""

    # Strict: "12" is not an id. Unknown extra fields are allowed so producers can add fields first.
    model_config = ConfigDict(strict=True, extra="allow", frozen=True)

    @model_validator(mode="after")
    def _finite_extras(self) -> Payload:
        if self.model_extra and not _finite(self.model_extra.values()):
            raise ValueError(f"an extra field {_NOT_FINITE}")
        return self


Status = Literal["planning", "planned", "active", "cancelled", "unsuccessful", "complete", "withdrawn"]
# Statuses of a tender still open for bids; the others are closed for good (readers, readiness, summaries).
OPEN_STATUSES: frozenset[str] = frozenset({"active", "planned", "planning"})


class TenderV1(Payload):
    tender_id: Id
    ocid: str = Field(min_length=1, max_length=128)  # longest real: 48
    title: str = Field(min_length=1, max_length=1000)  # the column; the loader cuts real titles there
    buyer: str | None = Field(None, max_length=BUYER_MAX_CHARS)
    # Whole cents are what spend keeps; six places leave room for any currency's and no room for megabytes of digits.
    budget: Decimal | None = Field(None, ge=0, le=MAX_BUDGET, decimal_places=6)
    currency: str | None = Field(None, pattern=r"^[A-Z]{3}$")
    status: Status = "active"
    published_at: Date | None = None
    closing_at: Date | None = None
    province: str | None = Field(None, max_length=PROVINCE_MAX_CHARS)
    category: str | None = Field(None, max_length=CATEGORY_MAX_CHARS)
    # The tender's text, for summaries and readiness (optional: older producers sent only the fields above).
    # Longest real: tender number 179, description 5,721, special conditions 747, briefing venue 101.
    tender_number: str | None = Field(None, max_length=TENDER_NUMBER_MAX_CHARS)
    description: str | None = Field(None, max_length=DESCRIPTION_MAX_CHARS)
    special_conditions: str | None = Field(None, max_length=SPECIAL_CONDITIONS_MAX_CHARS)
    briefing_compulsory: bool | None = None
    briefing_at: Date | None = None
    briefing_venue: str | None = Field(None, max_length=BRIEFING_VENUE_MAX_CHARS)


class TenderClosedV1(Payload):
    tender_id: Id
    status: Status
    reason: str | None = Field(None, max_length=REASON_MAX_CHARS)


CidbClass = Literal[
    "CE",
    "GB",
    "EB",
    "EP",
    "ME",
    "SO",
    "SB",
    "SC",
    "SD",
    "SE",
    "SF",
    "SG",
    "SH",
    "SI",
    "SJ",
    "SK",
    "SL",
    "SM",
    "SN",
    "SQ",
]


class CidbGradingV1(Payload):
    class_of_works: CidbClass
    grade: int = Field(ge=1, le=9)
    potentially_emerging: bool = False


class CompanyUpdatedV1(Payload):
    team_id: Id
    company_id: Id
    # The whole profile (event-carried state): readiness scores from it without reading MySQL, so a replay
    # rebuilds the same scores. None = an ids-only event from an older producer: readiness cannot use it.
    company_name: str | None = Field(None, max_length=COMPANY_NAME_MAX_CHARS)
    sectors: list[Annotated[str, Field(max_length=SECTOR_MAX_CHARS)]] | None = Field(None, max_length=SECTORS_MAX_ITEMS)
    provinces: list[Annotated[str, Field(max_length=PROVINCE_MAX_CHARS)]] | None = Field(
        None, max_length=PROVINCES_MAX_ITEMS
    )
    experience_years: int | None = Field(None, ge=0, le=200)
    bbbee_level: int | None = Field(None, ge=1, le=8)
    cidb: list[CidbGradingV1] | None = Field(None, max_length=CIDB_MAX_ITEMS)


class UserActivityV1(Payload):
    user_id: Id
    team_id: Id
    action: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_.]*$")
    tender_id: Id | None = None
    details: Annotated[dict[str, Any], AfterValidator(_small_details)] = Field(default_factory=dict)


class HeartbeatV1(Payload):
    origin: str = Field(min_length=1, max_length=64)
    marker: str = Field(min_length=1, max_length=128)


@dataclass(frozen=True)
class EventType:
    name: str
    aggregate_type: str
    # Payload field that must equal the outbox aggregate_id (None: the aggregate has no id in its payload).
    id_field: str | None
    versions: dict[int, type[Payload]]


EVENT_TYPES: dict[str, EventType] = {
    e.name: e
    for e in (
        EventType("tender.created", "tender", "tender_id", {1: TenderV1}),
        EventType("tender.updated", "tender", "tender_id", {1: TenderV1}),
        EventType("tender.closed", "tender", "tender_id", {1: TenderClosedV1}),
        EventType("company.updated", "company", "team_id", {1: CompanyUpdatedV1}),
        EventType("user.activity", "activity", "user_id", {1: UserActivityV1}),
        # Written by smoke runs and monitors: proves the path end to end and measures lag when apps are idle.
        EventType("system.heartbeat", "system", None, {1: HeartbeatV1}),
    )
}
AGGREGATE_TYPES = sorted({e.aggregate_type for e in EVENT_TYPES.values()})


def json_default(value: object) -> object:
    """`json.dumps(default=...)` for payloads held in Python: Decimal as its digits, dates and times in ISO 8601 (how
    the contract's strict models read them from JSON)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def validate_payload(
    event_type: str, schema_version: int, aggregate_type: str, aggregate_id: str, payload_json: str
) -> Payload:
    """Check one outbox row against the contract; raise ContractError with a readable reason."""
    spec = EVENT_TYPES.get(event_type)
    if spec is None:
        raise ContractError(f"unknown event type {event_type!r}")
    model = spec.versions.get(schema_version)
    if model is None:
        raise ContractError(f"unknown schema_version {schema_version} for {event_type}")
    check_aggregate(spec, aggregate_type, aggregate_id)
    try:
        size = len(payload_json.encode("utf-8", "surrogatepass"))
        payload = model.model_validate_json(payload_json, context={"payload_bytes": size})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "payload"
        raise ContractError(f"payload breaks {event_type} v{schema_version}: {where}: {first['msg']}") from None
    check_payload_id(spec, aggregate_id, payload)
    return payload


def _is_id_text(text: str) -> bool:
    # ASCII digits only (str.isdigit also takes "²" and Arabic-Indic digits), no leading zero, and within MAX_ID;
    # the length check keeps int() away from a megabyte of digits.
    return (
        isinstance(text, str)
        and 0 < len(text) <= len(str(MAX_ID))
        and text.isascii()
        and text.isdigit()
        and text[0] != "0"
        and int(text) <= MAX_ID
    )


# -- the envelope: one model, decoded once ----------------------------------------------------------------------

# An ISO 8601 time is ASCII and short; the limit also keeps odd text out of the log documents.
_OCCURRED_AT_MAX_CHARS = 64
# Reasons quote a little of what was wrong, never the value itself (it is in the dead letter already).
_REASON_CHARS = 200
_INT_FIELDS = ("event_id", "schema_version", "source_seq")
_STR_FIELDS = ("event_type", "aggregate_type", "aggregate_id", "occurred_at")


def _iso_time(text: str) -> str:
    if len(text) > _OCCURRED_AT_MAX_CHARS or not text.isascii():
        raise ValueError("not an ISO 8601 time")
    dt.datetime.fromisoformat(text)  # ValueError: not one
    return text


Seq = Annotated[int, Field(ge=0, le=MAX_ID)]
P = TypeVar("P", bound=Payload)


class Envelope(BaseModel, Generic[P]):
    """The Kafka value of every event (JSON), with its payload as the model its event type and schema version select.
    `source_seq` grows in commit order; the event id does not. Fields the envelope does not declare are ignored."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")

    event_id: Seq
    event_type: str
    aggregate_type: str
    aggregate_id: str
    occurred_at: Annotated[str, AfterValidator(_iso_time)]
    schema_version: Seq
    source_seq: Seq
    payload: P

    @model_validator(mode="after")
    def _ids_agree(self) -> Envelope[P]:
        spec = EVENT_TYPES[self.event_type]
        check_aggregate(spec, self.aggregate_type, self.aggregate_id)
        check_payload_id(spec, self.aggregate_id, self.payload)
        return self

    def to_json(self) -> bytes:
        """The envelope as it was sent (fields left at their defaults are not written)."""
        return self.model_dump_json(exclude_unset=True).encode()


def check_aggregate(spec: EventType, aggregate_type: str, aggregate_id: str) -> None:
    """An event's aggregate type and id against its event type (ContractError: how they differ)."""
    if aggregate_type != spec.aggregate_type:
        raise ContractError(f"{spec.name} belongs to aggregate {spec.aggregate_type!r}, not {aggregate_type!r}")
    if not _is_id_text(aggregate_id):
        raise ContractError(f"aggregate_id {aggregate_id[:40]!r} is not a positive integer id of at most 2^63-1")


def check_payload_id(spec: EventType, aggregate_id: str, payload: Payload) -> None:
    if spec.id_field is not None and str(getattr(payload, spec.id_field)) != aggregate_id:
        raise ContractError(f"payload {spec.id_field} does not match aggregate_id {aggregate_id}")


def _tag(value: Any) -> str | None:
    if isinstance(value, dict):
        event_type, version = value.get("event_type"), value.get("schema_version")
    else:
        event_type, version = getattr(value, "event_type", None), getattr(value, "schema_version", None)
    return f"{event_type}@{version}" if isinstance(event_type, str) and type(version) is int else None


# The event type and schema version select the envelope's payload model: one tagged union, validated by pydantic in
# one pass over the JSON text.
_TAGGED: Any = Annotated[
    Union[  # noqa: UP007 - built at run time from the contract's table
        tuple(
            Annotated[Envelope[model], Tag(f"{e.name}@{version}")]  # type: ignore[valid-type]
            for e in EVENT_TYPES.values()
            for version, model in e.versions.items()
        )
    ],
    Discriminator(_tag),
]
_ENVELOPES: TypeAdapter[Envelope[Any]] = TypeAdapter(_TAGGED)


def decode_event(raw: bytes | str | None) -> Envelope[Any]:
    """Parse and check one Kafka value in one pass; raise ContractError with the reason (the caller sends it to the
    DLQ). Anything can be written straight to a topic, so every way a value can fail (bad UTF-8, nesting past the
    parser's depth limit, numbers past 64 bits, NaN) is a ContractError with a short reason, never another exception
    that would take the rest of the batch with it."""
    if raw is None:
        raise ContractError("empty value (tombstone) on an event topic")
    if (b"NaN" in raw or b"Infinity" in raw) if isinstance(raw, bytes) else ("NaN" in raw or "Infinity" in raw):
        _refuse_constants(raw)  # pydantic's parser takes them; they are not JSON and no store keeps them faithfully
    try:
        size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))
        return _ENVELOPES.validate_json(raw, context={"payload_bytes": size})
    except ValidationError as exc:
        raise ContractError(_reason(exc, raw)) from None


def envelope_of(fields: Mapping[str, Any]) -> Envelope[Any]:
    """The envelope of an event held in Python (payload values may be Decimal and datetime), checked as if read from
    Kafka: for producers of events in process (verify, rebuild) and tests."""
    try:
        text = json.dumps(dict(fields), default=json_default, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ContractError(f"event is not JSON: {exc}") from None
    return decode_event(text)


def _no_constant(name: str) -> Any:
    raise ValueError(name)


def _refuse_constants(raw: bytes | str) -> None:
    try:
        json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        return  # the model's parser names this one
    except ValueError as exc:
        raise ContractError(f"value is not JSON: {str(exc)[:_REASON_CHARS]}") from None


def _not_json_reason(raw: bytes | str, message: str) -> str:
    """Why pydantic's parser refused `raw`, in the words of Python's (cold path). Python's takes one thing pydantic's
    does not: a lone surrogate escape, which no store can encode. That is named by the field it is in."""
    if "recursion limit" in message:
        return "value nests too deeply to decode (past the parser's depth limit)"
    try:
        data = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        return "value nests too deeply to decode (past the parser's depth limit)"
    except ValueError as exc:  # includes UnicodeDecodeError and integers of more than 4300 digits
        return f"value is not JSON: {str(exc)[:_REASON_CHARS]}"
    if isinstance(data, dict):
        for name in _STR_FIELDS:
            text = data.get(name)
            if isinstance(text, str) and any("\ud800" <= c <= "\udfff" for c in text[:_REASON_CHARS]):
                if name == "occurred_at":
                    return f"envelope occurred_at must be an ISO 8601 time, got {text[:40]!r}"
                return f"envelope {name} holds a lone surrogate, which no store can encode"
        tag = _tag(data)
        if tag is not None and isinstance(data.get("payload"), dict):
            event_type, version = tag.split("@", 1)
            return f"payload breaks {event_type} v{version}: payload: {message[:_REASON_CHARS]}"
    return f"value is not JSON: {message[:_REASON_CHARS]}"


def _reason(exc: ValidationError, raw: bytes | str) -> str:
    """One short reason for the first way a value breaks the contract."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    kind, loc, value = first["type"], first["loc"], first.get("input")
    if kind == "json_invalid":
        return _not_json_reason(raw, first["msg"].removeprefix("Invalid JSON: "))
    if kind in ("union_tag_not_found", "union_tag_invalid"):
        return _untagged_reason(value)
    tag, field = loc[0], loc[1] if len(loc) > 1 else None
    if field is None:  # the envelope as a whole: a ContractError from _ids_agree
        error = (first.get("ctx") or {}).get("error")
        return error.reason if isinstance(error, ContractError) else first["msg"]
    missing = [str(e["loc"][1]) for e in errors if e["type"] == "missing" and len(e["loc"]) == 2]
    if missing:
        return f"envelope lacks {sorted(missing)}"
    if field in _INT_FIELDS:
        return f"envelope {field} must be a non-negative 64-bit integer, got {str(value)[:40]!r}"
    if field == "occurred_at":
        text = value if isinstance(value, str) else repr(value)
        return f"envelope occurred_at must be an ISO 8601 time, got {text[:40]!r}"
    if field in _STR_FIELDS:
        return f"envelope {field} must be a string, got {type(value).__name__}"
    if len(loc) == 2:
        return "envelope payload must be a JSON object"
    event_type, version = str(tag).split("@", 1)
    where = ".".join(str(p) for p in loc[2:])
    return f"payload breaks {event_type} v{version}: {where}: {first['msg']}"[:1000]


def _untagged_reason(value: Any) -> str:
    # Cold path: the event type and schema version could not select a payload model; say which field is at fault.
    if not isinstance(value, dict):
        return f"envelope must be a JSON object, got {_json_type(value)}"
    missing = sorted(set(Envelope.model_fields) - value.keys())
    if missing:
        return f"envelope lacks {missing}"
    event_type, version = value["event_type"], value["schema_version"]
    if not isinstance(event_type, str):
        return f"envelope event_type must be a string, got {_json_type(event_type)}"
    if event_type not in EVENT_TYPES:
        return f"unknown event type {event_type[:80]!r}"
    if type(version) is not int or not 0 <= version <= MAX_ID:
        return f"envelope schema_version must be a non-negative 64-bit integer, got {str(version)[:40]!r}"
    return f"unknown schema_version {version} for {event_type}"


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "str", bool: "bool", int: "int", float: "float"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


# -- the tender payload, built once for every producer (the application's loader, `tenderhub verify`) -------------


def naive_utc(text: str | None) -> dt.datetime | None:
    """An OCDS date (with an offset: +02:00 for eTenders) as naive UTC, what MySQL DATETIME columns hold."""
    if not text:
        return None
    parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed.astimezone(dt.UTC).replace(tzinfo=None) if parsed.tzinfo is not None else parsed


@dataclass(frozen=True)
class TenderTexts:
    """A tender's own texts from its OCDS release; the tenders table keeps them only inside `raw_ocds`."""

    text: str | None = None
    special_conditions: str | None = None
    briefing_compulsory: bool | None = None
    briefing_at: dt.datetime | None = None
    briefing_venue: str | None = None

    @classmethod
    def from_ocds(cls, tender: dict[str, Any]) -> TenderTexts:
        session = tender.get("briefingSession") or {}
        briefing = bool(session.get("isSession"))
        return cls(
            text=(tender.get("description") or "").strip() or None,
            special_conditions=(tender.get("specialConditions") or "").strip() or None,
            briefing_compulsory=bool(session.get("compulsory")) if briefing else None,
            briefing_at=naive_utc(session.get("date")) if briefing else None,
            briefing_venue=(session.get("venue") or None) if briefing else None,
        )


def tender_payload(
    tender_id: int,
    *,
    ocid: str,
    title: str,
    tender_number: str | None,
    buyer: str | None,
    budget: Decimal | None,
    currency: str | None,
    status: str,
    published_at: dt.datetime | None,
    closing_at: dt.datetime | None,
    province: str | None,
    category: str | None,
    texts: TenderTexts,
) -> dict[str, Any]:
    """The `tender.created/updated` payload (`TenderV1`) of a tender: the columns, and its texts cut to the contract's
    lengths (a description equal to the title adds nothing)."""

    def iso(value: dt.datetime | None) -> str | None:
        return value.isoformat() if value else None

    def cut(value: str | None, limit: int) -> str | None:
        return value[:limit] if value else None

    text = texts.text if texts.text and texts.text != title else None
    return {
        "tender_id": tender_id,
        "ocid": ocid,
        "title": title,
        "buyer": buyer,
        "budget": str(budget) if budget is not None else None,
        "currency": currency,
        "status": status,
        "published_at": iso(published_at),
        "closing_at": iso(closing_at),
        "province": province,
        "category": category,
        "tender_number": cut(tender_number, TENDER_NUMBER_MAX_CHARS),
        "description": cut(text, DESCRIPTION_MAX_CHARS),
        "special_conditions": cut(texts.special_conditions, SPECIAL_CONDITIONS_MAX_CHARS),
        "briefing_compulsory": texts.briefing_compulsory,
        "briefing_at": iso(texts.briefing_at),
        "briefing_venue": cut(texts.briefing_venue, BRIEFING_VENUE_MAX_CHARS),
    }
