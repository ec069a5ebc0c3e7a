"""The application's side of the outbox: write a business change and its event in ONE MySQL transaction.

    engine = make_engine(settings)
    with engine.begin() as conn:                      # one transaction
        tender_id = conn.execute(insert_tender).lastrowid
        write_event(conn, "tender.created", tender_id, {...})

The payload is checked against the event contract before the insert, so an application bug fails in the
application (where it can be fixed) instead of reaching the relay's DLQ.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from schema.engines import mysql_engine
from schema.events import EVENT_TYPES, ContractError, json_default, validate_payload
from schema.settings import Settings


def make_engine(settings: Settings, **kwargs: Any) -> sa.Engine:
    """A SQLAlchemy engine for the application user (schema.engines: pymysql, utf8mb4, pool pre-ping)."""
    return mysql_engine(settings.mysql_url, **kwargs)


def encode_payload(payload: dict[str, Any]) -> str:
    return json.dumps(payload, default=json_default, ensure_ascii=False, separators=(",", ":"))


def write_event(
    conn: sa.Connection,
    event_type: str,
    aggregate_id: int | str,
    payload: dict[str, Any],
    schema_version: int = 1,
) -> int:
    """Append one event to the outbox inside the caller's transaction; return its event id (outbox id)."""
    return write_events(conn, [(event_type, aggregate_id, payload)], schema_version)[0]


def write_events(
    conn: sa.Connection,
    events: list[tuple[str, int | str, dict[str, Any]]],
    schema_version: int = 1,
    chunk: int = 500,
) -> list[int]:
    """Append many events in the caller's transaction with multi-row INSERTs; return their event ids in order.

    One statement per `chunk` rows means one binlog table map per chunk instead of per row: the relay decodes
    bulk writes several times faster, and the database commits them faster too."""
    if not conn.in_transaction():
        raise ContractError("write_events must run inside the transaction that makes the business change")
    rows = []
    for event_type, aggregate_id, payload in events:
        spec = EVENT_TYPES.get(event_type)
        if spec is None:
            raise ContractError(f"unknown event type {event_type!r}")
        text = encode_payload(payload)
        validate_payload(event_type, schema_version, spec.aggregate_type, str(aggregate_id), text)
        rows.append((event_type, spec.aggregate_type, str(aggregate_id), schema_version, text))
    ids: list[int] = []
    for i in range(0, len(rows), chunk):
        part = rows[i : i + chunk]
        params: dict[str, Any] = {}
        values = []
        for j, row in enumerate(part):
            values.append(f"(:t{j}, :a{j}, :i{j}, :v{j}, :p{j})")
            params.update({f"t{j}": row[0], f"a{j}": row[1], f"i{j}": row[2], f"v{j}": row[3], f"p{j}": row[4]})
        result = conn.execute(
            sa.text(
                "INSERT INTO integration_outbox (event_type, aggregate_type, aggregate_id, schema_version, payload) "
                "VALUES " + ", ".join(values)
            ),
            params,
        )
        # InnoDB hands a multi-row INSERT consecutive ids (innodb_autoinc_lock_mode 1 or 2 with one statement
        # of known size), and LAST_INSERT_ID() is the first of them.
        if result.rowcount != len(part):
            raise RuntimeError(f"outbox insert wrote {result.rowcount} rows, expected {len(part)}")
        first = int(result.lastrowid)
        ids.extend(range(first, first + len(part)))
    return ids
