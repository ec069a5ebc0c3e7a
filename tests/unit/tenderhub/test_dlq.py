"""What `tenderhub dlq replay` would send for each kind of dead letter (tenderhub/dlq.py), before any I/O."""

from __future__ import annotations

import datetime as dt
import json

from cdc.envelope import OutboxRow, to_record
from schema.events import AGGREGATE_TYPES, decode_event
from schema.topics import TopicNames
from streams.batch import DeadLetter
from tenderhub.dlq import parse_letter, plan_replay

TOPICS = TopicNames({a: f"th.{a}" for a in AGGREGATE_TYPES}, "th.dlq", "th.relay.position")
AT = 1_767_607_200_000  # 2026-01-05T10:00:00Z
GOOD = json.dumps({"user_id": 7, "team_id": 2, "action": "tender.viewed"})


def relay_letter(written: str, **row: object) -> bytes:
    """The relay's letter of an outbox row whose payload text was `written`; `row` edits the row in the letter."""
    outbox = OutboxRow(41, "user.activity", "activity", "7", 1, written, dt.datetime(2026, 1, 5, 10), 9, 0, 9 << 20)
    record = to_record(outbox, TOPICS)
    assert record.dlq_reason is not None
    body = json.loads(record.value)
    body["row"].update(row)
    return json.dumps(body).encode()


def test_a_worker_letter_goes_back_to_its_topic_with_its_key_and_value() -> None:
    value = b'{"any": "value as it came"}'
    letter = DeadLetter("activity_logs", "why", "th.activity", 2, 17, b"7", value, event_id=5).to_json()
    parsed = parse_letter(3, AT, b"7", letter)
    assert (parsed.stage, parsed.agent, parsed.event_id, parsed.reason) == ("worker", "activity_logs", 5, "why")
    assert parsed.at == "2026-01-05T10:00:00.000+00:00"
    plan = plan_replay(parsed, TOPICS)
    assert (plan.refused, plan.topic, plan.key, plan.value) == (None, "th.activity", b"7", value)
    assert ("replayed_from_dlq", b"3") in plan.headers


def test_a_worker_letter_of_bytes_that_are_not_utf8_is_replayed_byte_for_byte() -> None:
    value = b"\xff\xfe not utf-8"
    letter = DeadLetter("spend", "value is not JSON", "th.tender", 0, 1, b"9", value).to_json()
    assert plan_replay(parse_letter(0, AT, b"9", letter), TOPICS).value == value


def test_a_compact_letter_or_a_foreign_origin_cannot_be_replayed() -> None:
    compact = DeadLetter("spend", "big", "th.tender", 0, 1, b"9", b"x" * 100).compacted().to_json()
    assert "size, hash and a sample" in str(plan_replay(parse_letter(0, AT, b"9", compact), TOPICS).refused)
    foreign = DeadLetter("spend", "why", "someone.elses.topic", 0, 1, b"9", b"{}").to_json()
    assert "not a data topic" in str(plan_replay(parse_letter(0, AT, b"9", foreign), TOPICS).refused)


def test_a_relay_letter_is_checked_again_and_published_as_the_relay_would_once_it_passes() -> None:
    broken = relay_letter(json.dumps({"user_id": 7, "team_id": "x", "action": "a"}))
    plan = plan_replay(parse_letter(4, AT, b"41", broken), TOPICS)
    assert plan.refused is not None and plan.refused.startswith("the row still breaks the contract: payload breaks")
    # The same row with the payload a fixed producer (or a widened contract) accepts: the relay's own envelope.
    fixed = plan_replay(parse_letter(4, AT, b"41", relay_letter("{}", payload=GOOD)), TOPICS)
    assert fixed.refused is None and fixed.topic == "th.activity" and fixed.key == b"7"
    event = decode_event(fixed.value)
    assert (event.event_id, event.source_seq, event.occurred_at) == (41, 9 << 20, "2026-01-05T10:00:00.000Z")


def test_a_relay_letter_whose_payload_was_cut_or_that_only_hashes_the_row_is_not_replayed() -> None:
    cut = relay_letter("{}", payload=GOOD, payload_truncated=True)
    assert "cut at 64 KiB" in str(plan_replay(parse_letter(0, AT, None, cut), TOPICS).refused)
    oversized = json.dumps({"reason": "oversized", "event_id": 41, "size": 2_000_000, "sha256": "ab"}).encode()
    assert "size, hash and a sample" in str(plan_replay(parse_letter(0, AT, None, oversized), TOPICS).refused)


def test_a_letter_that_is_not_json_is_listed_with_why_and_not_replayed() -> None:
    letter = parse_letter(0, AT, None, b"\x00garbage")
    assert letter.stage == "relay" and letter.reason.startswith("Expecting value")
    assert plan_replay(letter, TOPICS).refused is not None
