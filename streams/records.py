"""The decoded event (envelope and typed payload), and the one decoder every agent uses on raw Kafka values.

Topics are consumed as raw bytes and decoded here, not by Faust's serializer: a value Faust cannot decode is logged
and skipped by Faust itself, while here it becomes a `ContractError` that the batch runner sends to the DLQ.
Anything can be written straight to a topic, so every way a value can fail (bad UTF-8, nesting past the
interpreter's recursion limit, numbers past 64 bits, NaN) is a `ContractError` with a short reason, never another
exception that would take the rest of the batch with it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from schema.events import EVENT_TYPES, ContractError, Envelope, validate_payload

_ENVELOPE_FIELDS = frozenset(Envelope.__dataclass_fields__)
# Ids and versions are stored as signed 64-bit integers (BSON int64, Redis' integer replies, MySQL BIGINT).
_INT64_MAX = 2**63 - 1
# An ISO 8601 time is ASCII and short; the limit also keeps lone surrogates (which no store can encode) out.
_OCCURRED_AT_MAX_CHARS = 64
# Reasons quote a little of what was wrong, never the value itself (it is in the dead letter already).
_REASON_CHARS = 200


def _no_constant(name: str) -> Any:
    # json.loads accepts NaN and Infinity by default; they are not JSON and no store keeps them faithfully.
    raise ValueError(name)


@dataclass(frozen=True)
class Event:
    """A decoded, contract-checked event: the envelope and its typed payload (a schema.events model)."""

    record: Envelope
    payload: Any

    @property
    def event_id(self) -> int:
        return int(self.record.event_id)

    @property
    def event_type(self) -> str:
        return str(self.record.event_type)

    @property
    def source_seq(self) -> int:
        return int(self.record.source_seq)

    @property
    def aggregate_id(self) -> str:
        return str(self.record.aggregate_id)

    def envelope(self) -> Envelope:
        return dataclasses.replace(self.record, payload=dict(self.record.payload))


def decode(raw: bytes | str | None) -> Event:
    """Parse and check one Kafka value; raise ContractError with the reason (the caller sends it to the DLQ)."""
    if raw is None:
        raise ContractError("empty value (tombstone) on an event topic")
    try:
        data = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise ContractError("value nests too deeply to decode (past the interpreter's recursion limit)") from None
    except ValueError as exc:  # includes UnicodeDecodeError and integers of more than 4300 digits
        raise ContractError(f"value is not JSON: {str(exc)[:_REASON_CHARS]}") from None
    if not isinstance(data, dict):
        raise ContractError(f"envelope must be a JSON object, got {type(data).__name__}")
    missing = _ENVELOPE_FIELDS - data.keys()
    if missing:
        raise ContractError(f"envelope lacks {sorted(missing)}")
    for name in ("event_id", "schema_version", "source_seq"):
        value = data[name]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _INT64_MAX:
            raise ContractError(f"envelope {name} must be a non-negative 64-bit integer, got {str(value)[:40]!r}")
    for name in ("event_type", "aggregate_type", "aggregate_id", "occurred_at"):
        if not isinstance(data[name], str):
            raise ContractError(f"envelope {name} must be a string, got {type(data[name]).__name__}")
    if not _is_iso_time(data["occurred_at"]):
        raise ContractError(f"envelope occurred_at must be an ISO 8601 time, got {data['occurred_at'][:40]!r}")
    if not isinstance(data["payload"], dict):
        raise ContractError("envelope payload must be a JSON object")
    if data["event_type"] not in EVENT_TYPES:
        raise ContractError(f"unknown event type {data['event_type']!r}")
    payload = validate_payload(
        data["event_type"],
        data["schema_version"],
        data["aggregate_type"],
        data["aggregate_id"],
        json.dumps(data["payload"]),
    )
    # Every field was checked above: a plain dataclass (a Faust record re-validated them, ~20 % of the decode).
    record = Envelope(**{k: data[k] for k in _ENVELOPE_FIELDS})
    return Event(record=record, payload=payload)


def _is_iso_time(text: str) -> bool:
    if len(text) > _OCCURRED_AT_MAX_CHARS or not text.isascii():
        return False
    try:
        dt.datetime.fromisoformat(text)
    except ValueError:
        return False
    return True
