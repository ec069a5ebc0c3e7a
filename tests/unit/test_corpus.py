"""The bad-input corpus as data: enough named cases in every required family, and each expectation agrees with the
pure checks it depends on (the relay's row check, the worker's decoder), so a run's failures are the pipeline's."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter

import pytest

from cdc.envelope import OutboxRow as RelayRow
from cdc.envelope import to_record
from schema.events import ContractError, decode_event
from schema.settings import load_settings
from schema.topics import DATA_MAX_MESSAGE_BYTES, TopicNames
from tenderhub.corpus.cases import CASES, DOTTED, MISMATCH, MYSQL_JSON_CHECK, NUL_TEXT, OPERATOR, Case, Outcome, Way
from tenderhub.corpus.sending import case_ids, outbox_row, topic_record

# Reasons that come from a store or an agent, after decoding: no pure check can confirm them.
STORE_REASONS = (OPERATOR, NUL_TEXT, DOTTED, "unknown province")
FAMILIES = {
    "json",
    "types",
    "fields",
    "size",
    "nesting",
    "unicode",
    "operators",
    "redis-keys",
    "numbers",
    "dates",
    "types-versions",
    "forged",
    "hostile-text",
}
BASE = 6_000_000_000_000


def _reject(name: str) -> None:
    raise ValueError(name)


def _ways(way: Way) -> list[tuple[int, Case]]:
    return [(i, c) for i, c in enumerate(CASES) if c.expect(way) is not None]


def test_corpus_has_at_least_60_uniquely_named_cases_covering_every_family_both_ways() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) >= 60 and len(set(ids)) == len(ids)
    assert {c.group for c in CASES} == FAMILIES
    assert all(c.outbox is not None or c.topic is not None for c in CASES)
    assert all(c.description for c in CASES)
    counts = Counter((way, c.expect(way).outcome) for way in Way for _, c in _ways(way))  # type: ignore[union-attr]
    assert counts[(Way.OUTBOX, Outcome.DLQ)] >= 30 and counts[(Way.TOPIC, Outcome.DLQ)] >= 40
    assert counts[(Way.OUTBOX, Outcome.STORED)] >= 10 and counts[(Way.TOPIC, Outcome.STORED)] >= 10


def test_every_dead_letter_expectation_names_a_reason_and_every_stored_one_what_must_be_true() -> None:
    for way in Way:
        for _, case in _ways(way):
            expect = case.expect(way)
            assert expect is not None
            if expect.outcome is Outcome.STORED:
                assert expect.stored is not None, case.id
            else:
                assert expect.reason, case.id


@pytest.mark.parametrize(("index", "case"), _ways(Way.TOPIC), ids=lambda v: v.id if isinstance(v, Case) else "")
def test_topic_way_expectation_agrees_with_the_worker_decoder(index: int, case: Case) -> None:
    expect = case.expect(Way.TOPIC)
    assert expect is not None
    record = topic_record(case, case_ids(index, Way.TOPIC, BASE, "m"), event_id=10**12, source_seq=10**12)
    if expect.outcome is Outcome.REFUSED:
        assert record.value is not None and len(record.value) > DATA_MAX_MESSAGE_BYTES
        return
    if expect.outcome is Outcome.DLQ and not any(r in expect.reason for r in STORE_REASONS):
        with pytest.raises(ContractError) as exc:
            decode_event(record.value)
        assert expect.reason in exc.value.reason
    else:
        decode_event(record.value)  # reaches the agents


@pytest.mark.parametrize(("index", "case"), _ways(Way.OUTBOX), ids=lambda v: v.id if isinstance(v, Case) else "")
def test_outbox_way_expectation_agrees_with_the_relay_row_check(index: int, case: Case) -> None:
    expect = case.expect(Way.OUTBOX)
    assert expect is not None
    row = outbox_row(case, case_ids(index, Way.OUTBOX, BASE, "m"))
    if expect.outcome is Outcome.REFUSED:
        assert expect.reason == MYSQL_JSON_CHECK
        # MariaDB's json_valid refuses what a strict parser refuses: no NaN, no lone surrogate, no 100,000 levels.
        with pytest.raises((ValueError, RecursionError)):
            json.dumps(json.loads(row.payload, parse_constant=_reject), ensure_ascii=False).encode()
        return
    relay_row = RelayRow(
        id=7,
        event_type=row.event_type,
        aggregate_type=row.aggregate_type,
        aggregate_id=row.aggregate_id,
        schema_version=row.schema_version,
        payload=row.payload,
        created_at=dt.datetime(2026, 1, 5, 10),
        txn_seq=1,
        row_index=0,
        source_seq=1 << 20,
    )
    record = to_record(relay_row, TopicNames.from_settings(load_settings()))
    if expect.outcome is Outcome.DLQ and not any(r in expect.reason for r in STORE_REASONS):
        assert record.dlq_reason is not None and expect.reason in record.dlq_reason, record.dlq_reason
    else:
        assert record.dlq_reason is None, record.dlq_reason
        assert decode_event(record.value).event_id == 7


def test_each_way_and_case_gets_its_own_aggregate_id_and_mismatch_neighbours_stay_unused() -> None:
    seen = {case_ids(i, way, BASE, "m").entity for i in range(len(CASES)) for way in Way}
    assert len(seen) == 2 * len(CASES)
    assert not {e + MISMATCH for e in seen} & seen


def test_topic_record_keeps_the_payload_text_as_the_producer_wrote_it_and_the_hostile_key() -> None:
    index, case = next((i, c) for i, c in enumerate(CASES) if c.id == "json-truncated")
    ids = case_ids(index, Way.TOPIC, BASE, "m")
    record = topic_record(case, ids, event_id=5, source_seq=6)
    assert record.value is not None and record.value.endswith(case.payload(ids).encode() + b"}")
    index, case = next((i, c) for i, c in enumerate(CASES) if c.id == "key-id-crlf")
    record = topic_record(case, case_ids(index, Way.TOPIC, BASE, "m"), event_id=5, source_seq=6)
    assert record.key == b"1\r\nFLUSHALL\r\n" and record.aggregate_type == "tender"
