"""How one case becomes an outbox row or a Kafka record (pure: no service is touched here)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from schema.events import EVENT_TYPES, ContractError, validate_payload
from tenderhub.corpus.cases import Case, CaseIds, Way

# Ids of the run: aggregates get base + STRIDE * case index + the way's offset, so that the cases that name a
# neighbouring id on purpose (cases.MISMATCH) never hit another case's aggregate.
STRIDE = 10
WAY_OFFSET = {Way.OUTBOX: 0, Way.TOPIC: 1}
OCCURRED_AT = "2026-01-05T10:00:00.000Z"


@dataclass(frozen=True)
class OutboxRow:
    """One integration_outbox row as the application account writes it."""

    event_type: str
    aggregate_type: str
    aggregate_id: str
    schema_version: int
    payload: str

    def contract_allows(self) -> bool:
        """Whether the application's writer (cdc.outbox) would take it; the others are written with a raw INSERT."""
        try:
            validate_payload(self.event_type, self.schema_version, self.aggregate_type, self.aggregate_id, self.payload)
        except (ContractError, ValueError):
            return False
        return True


@dataclass(frozen=True)
class TopicRecord:
    """One record written straight to a data topic."""

    aggregate_type: str  # whose data topic receives it
    key: bytes
    value: bytes | None
    event_id: int
    source_seq: int


def case_ids(case_index: int, way: Way, base: int, marker: str) -> CaseIds:
    return CaseIds(entity=base + STRIDE * case_index + WAY_OFFSET[way], marker=marker)


def aggregate_type_of(case: Case) -> str:
    if case.aggregate_type is not None:
        return case.aggregate_type
    spec = EVENT_TYPES.get(case.event_type)
    if spec is None:
        raise ValueError(f"case {case.id}: event type {case.event_type!r} is unknown, so name its aggregate_type")
    return spec.aggregate_type


def outbox_row(case: Case, ids: CaseIds) -> OutboxRow:
    aggregate_id = case.aggregate_id(ids) if case.aggregate_id is not None else str(ids.entity)
    return OutboxRow(case.event_type, aggregate_type_of(case), aggregate_id, case.schema_version, case.payload(ids))


def topic_record(case: Case, ids: CaseIds, event_id: int, source_seq: int) -> TopicRecord:
    """The envelope the relay would have written for the case's row, then forged as the case says, or its raw bytes.

    A payload that is no JSON is spliced in as text, as a careless producer would."""
    row = outbox_row(case, ids)
    topic_of = case.topic_of or row.aggregate_type
    key = row.aggregate_id.encode("utf-8", "surrogatepass")
    if case.raw is not None:
        return TopicRecord(topic_of, key, case.raw(ids), event_id, source_seq)
    head = {
        "event_id": event_id,
        "event_type": row.event_type,
        "aggregate_type": row.aggregate_type,
        "aggregate_id": row.aggregate_id,
        "occurred_at": OCCURRED_AT,
        "schema_version": row.schema_version,
        "source_seq": source_seq,
    }
    if case.envelope is not None:
        envelope = case.envelope(ids, head | {"payload": json.loads(row.payload)})
        # ASCII escapes: a lone surrogate a case forges stays JSON text instead of failing to encode.
        return TopicRecord(topic_of, key, json.dumps(envelope).encode(), event_id, source_seq)
    text = json.dumps(head, ensure_ascii=False, separators=(",", ":"))[:-1] + ',"payload":' + row.payload + "}"
    return TopicRecord(topic_of, key, text.encode("utf-8", "surrogatepass"), event_id, source_seq)
