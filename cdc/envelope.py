"""Map one outbox row to the Kafka record the relay publishes: the event envelope on its aggregate's topic, or a
DLQ record that says why the row could not be published (contract violation, or too large for the broker)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from schema.checked import encodable
from schema.events import MAX_ID, ContractError, validate_payload
from schema.topics import DATA_MAX_MESSAGE_BYTES, TopicNames

# Room for the record's key, headers and batch framing inside the broker's max.message.bytes.
RECORD_OVERHEAD = 4096
DLQ_SAMPLE_CHARS = 2048


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    event_type: str
    aggregate_type: str
    aggregate_id: str
    schema_version: int
    payload: str
    created_at: dt.datetime | None  # naive UTC, millisecond precision (None: the stored value is not a date)
    txn_seq: int
    row_index: int
    source_seq: int
    # Why this row cannot become an event although it was read (undecodable value, no room in its transaction's
    # slot of the source_seq clock): it goes to the DLQ with this reason.
    defect: str | None = None

    def position_text(self) -> str:
        return f"txn {self.txn_seq} row {self.row_index}"


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    event_id: int
    created_at: dt.datetime | None
    source_seq: int
    dlq_reason: str | None = None


def occurred_at(created_at: dt.datetime | None) -> str | None:
    """Millisecond UTC ISO 8601 (created_at is naive UTC, TIMESTAMP(3))."""
    return None if created_at is None else created_at.isoformat(timespec="milliseconds") + "Z"


def _headers(row: OutboxRow, extra: dict[str, str] | None = None) -> list[tuple[str, bytes]]:
    h = {
        "event_id": str(row.id),
        "event_type": row.event_type,
        "source_seq": str(row.source_seq),
        "source_pos": row.position_text(),
        **(extra or {}),
    }
    return [(k, v.encode()) for k, v in h.items()]


def to_record(row: OutboxRow, topics: TopicNames, max_bytes: int = DATA_MAX_MESSAGE_BYTES) -> Record:
    """The data record for `row`, or a DLQ record with the reason. Never raises for bad row content."""
    dlq = topics.dlq
    if row.defect is not None:
        return _dlq_record(row, dlq, row.defect, {"row": _row_dict(row)})
    if row.created_at is None:
        return _dlq_record(row, dlq, "created_at is not a valid timestamp", {"row": _row_dict(row)})
    if not 1 <= row.id <= MAX_ID:
        # The column is BIGINT UNSIGNED, the contract's ids are signed 64-bit: consumers would refuse the event.
        return _dlq_record(row, dlq, f"event id {row.id} is past 2^63-1", {"row": _row_dict(row)})
    try:
        validate_payload(row.event_type, row.schema_version, row.aggregate_type, row.aggregate_id, row.payload)
    except ContractError as exc:
        return _dlq_record(row, dlq, exc.reason, {"row": _row_dict(row)})
    except (ValueError, TypeError, RecursionError) as exc:
        # The row's content defeated the validator itself (e.g. JSON nested deeper than the parser's stack): the
        # row's fault, so the DLQ, never a crash of the whole stream.
        reason = f"payload cannot be validated: {type(exc).__name__}: {exc}"[:500]
        return _dlq_record(row, dlq, reason, {"row": _row_dict(row)})
    value = envelope_bytes(row)
    key = row.aggregate_id.encode()
    if len(value) + len(key) + RECORD_OVERHEAD > max_bytes:
        return _dlq_record(
            row,
            dlq,
            "oversized",
            {
                "size": len(value),
                "max_bytes": max_bytes,
                "sha256": hashlib.sha256(value).hexdigest(),
                "sample": value[:DLQ_SAMPLE_CHARS].decode(errors="replace"),
                "aggregate_type": row.aggregate_type,
                "aggregate_id": row.aggregate_id,
            },
        )
    return Record(topics.data[row.aggregate_type], key, value, _headers(row), row.id, row.created_at, row.source_seq)


def envelope_bytes(row: OutboxRow) -> bytes:
    """The `Envelope` JSON of a VALIDATED row. The payload text is spliced in as the application wrote it (valid
    JSON that passed the contract): no re-serialisation on the hot path, and a replay yields the same bytes.
    The other fields need no escaping once validated: a declared event type, its aggregate type, a digits-only
    aggregate id and integers."""
    return (
        f'{{"event_id":{row.id},"event_type":"{row.event_type}","aggregate_type":"{row.aggregate_type}",'
        f'"aggregate_id":"{row.aggregate_id}","occurred_at":"{occurred_at(row.created_at)}","schema_version":{row.schema_version},'
        f'"source_seq":{row.source_seq},"payload":{row.payload}}}'
    ).encode()


def _row_dict(row: OutboxRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "event_type": encodable(row.event_type),
        "aggregate_type": encodable(row.aggregate_type),
        "aggregate_id": encodable(row.aggregate_id),
        "schema_version": row.schema_version,
        # The original payload text, truncated so the DLQ record itself always fits.
        "payload": encodable(row.payload[: 64 * 1024]),
        "payload_truncated": len(row.payload) > 64 * 1024,
        "created_at": occurred_at(row.created_at),
    }


def _dlq_record(row: OutboxRow, topic: str, reason: str, detail: dict[str, Any]) -> Record:
    # The reason may quote the row's text, and the row's text may hold lone surrogates (JSON escapes): both are
    # written with those escaped (`_row_dict` too), so the record always encodes (never a crash of the stream).
    reason = encodable(reason)
    row = dataclasses.replace(row, event_type=encodable(row.event_type))
    value = json.dumps(
        {"reason": reason, "event_id": row.id, "event_type": row.event_type, "source_seq": row.source_seq, **detail},
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    return Record(
        topic,
        str(row.id).encode(),
        value,
        _headers(row, {"dlq_reason": reason[:200]}),
        row.id,
        row.created_at,
        row.source_seq,
        dlq_reason=reason,
    )
