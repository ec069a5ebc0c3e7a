"""Row -> record mapping: the envelope on the aggregate's topic, or a DLQ record that says why."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import random

from cdc.envelope import OutboxRow, to_record
from cdc.position import source_seq
from schema.events import AGGREGATE_TYPES, decode_event, validate_payload
from schema.topics import TopicNames

TOPICS = TopicNames({a: f"tenderhub.{a}" for a in AGGREGATE_TYPES}, "tenderhub.dlq", "tenderhub.relay.position")

CREATED = dt.datetime(2025, 9, 18, 10, 0, 0, 123000)


def row(**kw: object) -> OutboxRow:
    base: dict[str, object] = {
        "id": 41,
        "event_type": "user.activity",
        "aggregate_type": "activity",
        "aggregate_id": "7",
        "schema_version": 1,
        "payload": json.dumps({"user_id": 7, "team_id": 2, "action": "tender.viewed", "tender_id": 9}),
        "created_at": CREATED,
        "txn_seq": 560,
        "row_index": 3,
        "source_seq": source_seq(560, 3),
    }
    base.update(kw)
    return OutboxRow(**base)  # type: ignore[arg-type]


def test_valid_row_becomes_envelope_on_aggregate_topic() -> None:
    rec = to_record(row(), TOPICS)
    assert rec.topic == "tenderhub.activity" and rec.key == b"7" and rec.dlq_reason is None
    env = json.loads(rec.value)
    assert env == {
        "event_id": 41,
        "event_type": "user.activity",
        "aggregate_type": "activity",
        "aggregate_id": "7",
        "occurred_at": "2025-09-18T10:00:00.123Z",
        "schema_version": 1,
        "source_seq": source_seq(560, 3),
        "payload": {"user_id": 7, "team_id": 2, "action": "tender.viewed", "tender_id": 9},
    }
    assert decode_event(rec.value).payload.tender_id == 9
    headers = dict(rec.headers)
    assert headers["event_id"] == b"41" and headers["event_type"] == b"user.activity"
    assert headers["source_seq"] == str(source_seq(560, 3)).encode()


def test_contract_violation_goes_to_dlq_with_reason_and_original_row() -> None:
    rec = to_record(row(event_type="user.exploded"), TOPICS)
    assert rec.topic == "tenderhub.dlq" and rec.dlq_reason is not None
    body = json.loads(rec.value)
    assert "unknown event type" in body["reason"]
    assert body["row"]["payload"] == row().payload and body["event_id"] == 41


def test_oversized_event_is_recorded_by_id_size_hash_and_sample() -> None:
    big = json.dumps({"user_id": 7, "team_id": 2, "action": "x", "details": {"blob": "y" * 5000}})
    rec = to_record(row(payload=big), TOPICS, max_bytes=4096)
    body = json.loads(rec.value)
    assert rec.topic == "tenderhub.dlq" and body["reason"] == "oversized"
    full = to_record(row(payload=big), TOPICS).value
    assert body["size"] == len(full) and body["sha256"] == hashlib.sha256(full).hexdigest()
    assert len(body["sample"]) == 2048 and body["event_id"] == 41


def _random_payload(rng: random.Random, event_type: str, aggregate_id: int) -> dict[str, object]:
    text = "".join(rng.choice(["a", "Z", " ", '"', "\\", "\n", "é", "€", "𝄞", "\u202e", "/", "\t"]) for _ in range(40))
    if event_type == "user.activity":
        details = {text[:10]: [rng.randint(-(2**63), 2**63 - 1), rng.random(), None, True, {"q": text}]}
        return {
            "user_id": aggregate_id,
            "team_id": rng.randint(1, 2**63 - 1),
            "action": "tender.viewed",
            "details": details,
        }
    if event_type == "tender.closed":
        return {"tender_id": aggregate_id, "status": rng.choice(["complete", "cancelled"]), "reason": text}
    return {
        "tender_id": aggregate_id,
        "ocid": "ocds-" + str(aggregate_id),
        "title": text.strip() or "t",
        "buyer": text,
        "budget": f"{rng.randint(0, 10**12 - 1)}.{rng.randint(0, 99):02d}",
        "currency": "ZAR",
        "published_at": "2025-09-18T10:00:00+02:00",
        "extra_from_a_newer_producer": {"nested": [text]},
    }


def test_the_relays_byte_level_envelope_decodes_to_the_contract_model() -> None:
    """The relay splices the payload text into an envelope it writes by hand (no re-serialisation); whatever it writes,
    the one envelope model reads back with the same fields and the payload the contract validated."""
    rng = random.Random(20261205)
    for n in range(400):
        event_type = rng.choice(["user.activity", "tender.created", "tender.updated", "tender.closed"])
        aggregate = "activity" if event_type == "user.activity" else "tender"
        aggregate_id = rng.choice([1, 7, 2**63 - 1, rng.randint(1, 2**63 - 1)])
        payload = _random_payload(rng, event_type, aggregate_id)
        ensure_ascii = rng.random() < 0.5
        text = json.dumps(payload, ensure_ascii=ensure_ascii, indent=rng.choice([None, 1]))
        created = CREATED + dt.timedelta(milliseconds=rng.randint(0, 10**9))
        r = row(id=n + 1, event_type=event_type, aggregate_type=aggregate, aggregate_id=str(aggregate_id))
        r = dataclasses.replace(r, payload=text, created_at=created, source_seq=source_seq(600 + n, n % 7))
        rec = to_record(r, TOPICS)
        assert rec.dlq_reason is None, rec.dlq_reason
        env = decode_event(rec.value)
        assert (env.event_id, env.event_type, env.aggregate_type, env.aggregate_id) == (
            n + 1,
            event_type,
            aggregate,
            str(aggregate_id),
        )
        assert (env.schema_version, env.source_seq) == (1, r.source_seq)
        assert dt.datetime.fromisoformat(env.occurred_at).replace(tzinfo=None) == created
        assert env.payload == validate_payload(event_type, 1, aggregate, str(aggregate_id), text)
        assert json.loads(env.to_json()) == json.loads(rec.value)


def test_a_lone_surrogate_anywhere_in_a_row_still_gives_a_record_that_encodes() -> None:
    # JSON text may escape a lone surrogate (MariaDB's JSON check takes it); a reason quoting it must still encode.
    lone = "\\ud800"
    payloads = [
        '{"user_id":7,"team_id":2,"action":"' + "a" * 300 + lone + '"}',
        '{"user_id":7,"team_id":2,"action":"tender.viewed","' + "k" * 300 + lone + '":1}',
        '{"user_id":"' + "7" * 300 + lone + '","team_id":2,"action":"x"}',
        '{"user_id":7,"team_id":2,"action":"x","details":{"' + lone + '":"' + lone + '"}}',
    ]
    for n, payload in enumerate(payloads):
        for event_type in ("user.activity", "user." + "y" * 300 + "\ud800"):
            rec = to_record(row(payload=payload, event_type=event_type), TOPICS)
            assert rec.topic == "tenderhub.dlq", n
            json.loads(rec.value)
            for _, value in rec.headers:
                value.decode()
