"""The event contract: envelope, event types and their versioned payload schemas, declared once.

Apps write events through the outbox; the relay validates every row against this contract (bad rows go to the
DLQ with the reason) and wraps it in an `Envelope`; agents parse the envelope back with `Envelope.from_json`.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

_ID = r"[1-9][0-9]{0,19}"


class ContractError(ValueError):
    """An event breaks the contract; `reason` says how (it goes to the DLQ with the event)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Payload(BaseModel):
    # Strict: "12" is not an id. Unknown extra fields are allowed so producers can add fields first.
    model_config = ConfigDict(strict=True, extra="allow", frozen=True)


Status = Literal["planning", "planned", "active", "cancelled", "unsuccessful", "complete", "withdrawn"]


class TenderV1(_Payload):
    tender_id: int = Field(ge=1)
    ocid: str = Field(min_length=1, max_length=128)
    title: str = Field(min_length=1, max_length=1000)
    buyer: str | None = None
    budget: Decimal | None = Field(None, ge=0)
    currency: str | None = Field(None, pattern=r"^[A-Z]{3}$")
    status: Status = "active"
    published_at: dt.datetime | None = None
    closing_at: dt.datetime | None = None
    province: str | None = None
    category: str | None = None
    # The tender's text, for summaries and readiness (optional: older producers sent only the fields above).
    tender_number: str | None = Field(None, max_length=255)
    description: str | None = Field(None, max_length=20_000)
    special_conditions: str | None = Field(None, max_length=50_000)
    briefing_compulsory: bool | None = None
    briefing_at: dt.datetime | None = None
    briefing_venue: str | None = Field(None, max_length=1000)


class TenderClosedV1(_Payload):
    tender_id: int = Field(ge=1)
    status: Status
    reason: str | None = None


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


class CidbGradingV1(_Payload):
    class_of_works: CidbClass
    grade: int = Field(ge=1, le=9)
    potentially_emerging: bool = False


class CompanyUpdatedV1(_Payload):
    team_id: int = Field(ge=1)
    company_id: int = Field(ge=1)
    # The whole profile (event-carried state): readiness scores from it without reading MySQL, so a replay
    # rebuilds the same scores. None = an ids-only event from an older producer: readiness cannot use it.
    company_name: str | None = Field(None, max_length=300)
    sectors: list[str] | None = None
    provinces: list[str] | None = None
    experience_years: int | None = Field(None, ge=0, le=200)
    bbbee_level: int | None = Field(None, ge=1, le=8)
    cidb: list[CidbGradingV1] | None = None


class UserActivityV1(_Payload):
    user_id: int = Field(ge=1)
    team_id: int = Field(ge=1)
    action: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_.]*$")
    tender_id: int | None = Field(None, ge=1)
    details: dict[str, Any] = Field(default_factory=dict)


class HeartbeatV1(_Payload):
    origin: str = Field(min_length=1, max_length=64)
    marker: str = Field(min_length=1, max_length=128)


@dataclass(frozen=True)
class EventType:
    name: str
    aggregate_type: str
    # Payload field that must equal the outbox aggregate_id (None: the aggregate has no id in its payload).
    id_field: str | None
    versions: dict[int, type[_Payload]]


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


def validate_payload(
    event_type: str, schema_version: int, aggregate_type: str, aggregate_id: str, payload_json: str
) -> _Payload:
    """Check one outbox row against the contract; raise ContractError with a readable reason."""
    spec = EVENT_TYPES.get(event_type)
    if spec is None:
        raise ContractError(f"unknown event type {event_type!r}")
    model = spec.versions.get(schema_version)
    if model is None:
        raise ContractError(f"unknown schema_version {schema_version} for {event_type}")
    if aggregate_type != spec.aggregate_type:
        raise ContractError(f"{event_type} belongs to aggregate {spec.aggregate_type!r}, not {aggregate_type!r}")
    if not re.fullmatch(_ID, aggregate_id or ""):
        raise ContractError(f"aggregate_id {aggregate_id!r} is not a positive integer id")
    try:
        payload = model.model_validate_json(payload_json)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "payload"
        raise ContractError(f"payload breaks {event_type} v{schema_version}: {where}: {first['msg']}") from None
    if spec.id_field is not None and str(getattr(payload, spec.id_field)) != aggregate_id:
        raise ContractError(f"payload {spec.id_field} does not match aggregate_id {aggregate_id}")
    return payload


@dataclass(frozen=True)
class Envelope:
    """The Kafka value of every event (JSON). `source_seq` grows in commit order; the event id does not."""

    event_id: int
    event_type: str
    aggregate_type: str
    aggregate_id: str
    occurred_at: str
    schema_version: int
    source_seq: int
    payload: dict[str, Any]

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> Envelope:
        try:
            data = json.loads(raw)
            return cls(**data)
        except (ValueError, TypeError) as exc:
            raise ContractError(f"not an event envelope: {exc}") from None
