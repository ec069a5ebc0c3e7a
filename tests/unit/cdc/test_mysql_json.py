"""MySQL 8's binary JSON column through python-mysql-replication's own parser, then `json_text`: the library hands
bytes keys and values (json.dumps refuses them); json_text gives JSON text equal in meaning to what was written."""

from __future__ import annotations

import datetime as dt
import json
import struct
from decimal import Decimal
from typing import Any

import pytest

from cdc.mysql_json import json_text
from tests.unit.cdc.mysql_binlog import (
    JSONB_INT16,
    JSONB_INT32,
    JSONB_INT64,
    JSONB_LARGE_ARRAY,
    JSONB_LARGE_OBJECT,
    JSONB_SMALL_OBJECT,
    JSONB_UINT16,
    JSONB_UINT32,
    JSONB_UINT64,
    MYSQL_TYPE_BLOB,
    MYSQL_TYPE_TIMESTAMP,
    JsonInt,
    JsonOpaque,
    JsonRawString,
    datetime_packed,
    json_binary,
    outbox_row,
    parse_events,
    table_map,
    write_rows,
)

TENDER = {"tender_id": 12, "title": "Bridge", "tags": ["a", "b"], "budget": 1.5, "nested": {"x": None, "y": True}}


def through_parser(value: Any) -> Any:
    """The payload column's value as the library decodes it from a WRITE_ROWS event (`value` is a JSON value, or a
    binary JSON document as bytes)."""
    row = outbox_row(1, json_binary(value) if not isinstance(value, bytes) else value)
    _, rows = parse_events([table_map(), write_rows([row])])
    return rows.rows[0]["values"]["payload"]


def plain(value: Any) -> Any:
    """What a JSON value reads back as from JSON text (markers replaced by their numbers)."""
    if isinstance(value, JsonInt):
        return value.value
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def nested(depth: int, kind: str) -> Any:
    value: Any = "leaf"
    for i in range(depth - 1):
        value = [value] if kind == "array" else {f"k{i}": value}
    return value


def test_the_library_decodes_mysql_json_to_bytes_that_json_dumps_rejects() -> None:
    # The defect: every MySQL 8 outbox row breaks a relay that encodes the decoded value as JSON.
    value = through_parser({**TENDER, "title": "Brücke 🌉"})
    assert value[b"title"] == "Brücke 🌉".encode() and value[b"tags"] == [b"a", b"b"]
    with pytest.raises(TypeError):
        json.dumps(value)


def test_json_text_of_the_parsed_payload_is_the_payload_in_mysql_key_order() -> None:
    text = json_text(through_parser(TENDER))
    # MySQL stores keys by length, then bytes.
    assert text == '{"tags":["a","b"],"title":"Bridge","budget":1.5,"nested":{"x":null,"y":true},"tender_id":12}'
    assert json.loads(text) == TENDER


SHAPES: list[tuple[str, Any]] = [
    ("tender", TENDER),
    ("empty object", {}),
    ("empty array", []),
    ("empty inside", {"a": {}, "b": [], "c": [{}, []]}),
    ("top-level string", "just text"),
    ("top-level empty string", ""),
    ("top-level int", 42),
    ("top-level negative", -7),
    ("top-level double", 2.5),
    ("top-level true", True),
    ("top-level false", False),
    ("unicode", {"ключ": "значение", "zh": "招标公告", "emoji 🚧": "𝄞 music 😀", "mix": "aé中\U0010ffff"}),
    ("escapes", {"q": 'say "hi" \\ /', "ctl": "\n\t\r\b\f\x00\x1f\x7f", "html": "</script>", "bom": "\ufeff"}),
    ("string lengths", {str(n): "s" * n for n in (0, 1, 127, 128, 16383, 16384, 70000)}),
    ("same-length keys", {k: i for i, k in enumerate(["bb", "ab", "ba", "aa", "b", "a", "é", "z"])}),
    ("doubles", [0.1, -0.0, 1e308, -1e308, 5e-324, 2.2250738585072014e-308, 123456789.125, 1.5e-7]),
    ("literals in arrays", [None, True, False, [None], {"n": None}]),
    (
        "default integer types",
        [0, 1, -1, 32767, 32768, -32768, -32769, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**32 - 1, 2**32],
    ),
    ("64-bit integers", [2**63 - 1, 2**63, 2**64 - 1, -(2**63)]),
    (
        "every integer type at its bounds",
        [
            JsonInt(v, t)
            for t, lo, hi in (
                (JSONB_INT16, -(2**15), 2**15 - 1),
                (JSONB_UINT16, 0, 2**16 - 1),
                (JSONB_INT32, -(2**31), 2**31 - 1),
                (JSONB_UINT32, 0, 2**32 - 1),
                (JSONB_INT64, -(2**63), 2**63 - 1),
                (JSONB_UINT64, 0, 2**64 - 1),
            )
            for v in (lo, hi, 0)
        ],
    ),
    ("deep arrays", nested(100, "array")),
    ("deep objects", nested(100, "object")),
    ("mixed", {"items": [{"id": i, "score": i / 4, "ok": i % 2 == 0, "name": f"n{i}"} for i in range(50)]}),
]


@pytest.mark.parametrize(("shape", "value"), SHAPES, ids=[s for s, _ in SHAPES])
def test_json_text_round_trips_through_the_real_parser(shape: str, value: Any) -> None:
    text = json_text(through_parser(value))
    assert json.loads(text) == plain(value)
    # Compact, and the same text JSON itself would write for the parsed meaning.
    assert text == json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)


def test_integers_are_exact_in_the_text() -> None:
    value = {"max_u64": 2**64 - 1, "min_i64": -(2**63), "i32": JsonInt(-(2**31), JSONB_INT32)}
    text = json_text(through_parser(value))
    assert '"max_u64":18446744073709551615' in text and '"min_i64":-9223372036854775808' in text
    assert '"i32":-2147483648' in text


def test_a_large_object_over_64_kib_uses_the_large_format_and_round_trips() -> None:
    value: dict[str, Any] = {f"key{i:05}": f"value {i} " * 3 for i in range(3000)}
    # int32 values are inlined in the large format only; small containers nested in a large one.
    value.update({"int32": 2**31 - 1, "uint32": JsonInt(2**32 - 1, JSONB_UINT32), "small": {"a": [1, 2]}})
    doc = json_binary(value)
    assert len(doc) > 65535 and doc[0] == JSONB_LARGE_OBJECT
    assert json.loads(json_text(through_parser(doc))) == plain(value)


def test_a_large_array_over_64_kib_round_trips() -> None:
    value = [f"item {i} " * 5 for i in range(3000)] + [-(2**31), 70000, None, 1.25]
    doc = json_binary(value)
    assert len(doc) > 65535 and doc[0] == JSONB_LARGE_ARRAY
    assert json.loads(json_text(through_parser(doc))) == value


def test_an_object_just_under_64_kib_stays_small_and_round_trips() -> None:
    value = {"blob": "x" * 65000}
    doc = json_binary(value)
    assert doc[0] == JSONB_SMALL_OBJECT
    assert json.loads(json_text(through_parser(doc))) == value


def test_top_level_null_reads_as_json_null() -> None:
    assert json_text(through_parser(json_binary(None))) == "null"


def test_decimals_keep_every_digit_as_json_numbers() -> None:
    values = [Decimal("1.50"), Decimal("-12345678901234567890.123456789012"), Decimal("0.5"), Decimal("100")]
    values += [Decimal("-0.001"), Decimal("999999999.999999999")]
    text = json_text(through_parser({"amounts": values}))
    assert json.loads(text, parse_float=Decimal, parse_int=Decimal) == {"amounts": values}
    assert '"amounts":[1.50,' in text


def test_dates_and_times_become_mysql_text() -> None:
    # MySQL prints temporal JSON values with six fractional digits. The library returns a DATE as a datetime at
    # midnight, so a DATE reads as that midnight.
    value = {
        "at": dt.datetime(2026, 1, 5, 10, 0, 0, 123456),
        "t": dt.time(23, 59, 58, 5),
        "d": dt.date(2026, 1, 5),
    }
    got = json.loads(json_text(through_parser(value)))
    assert got == {"d": "2026-01-05 00:00:00.000000", "t": "23:59:58.000005", "at": "2026-01-05 10:00:00.123456"}


@pytest.mark.parametrize(
    "opaque",
    [
        JsonOpaque(MYSQL_TYPE_TIMESTAMP, struct.pack("<q", datetime_packed(dt.datetime(2026, 1, 5, 10, 0)))),
        JsonOpaque(MYSQL_TYPE_BLOB, b"\xff\xfe binary"),
    ],
    ids=["timestamp", "binary string"],
)
def test_opaque_values_the_library_decodes_lossily_are_refused(opaque: JsonOpaque) -> None:
    # The library turns these into text with undecodable bytes dropped: the meaning is gone, so no JSON for it.
    with pytest.raises(ValueError, match="opaque"):
        json_text(through_parser({"v": opaque}))


def test_strings_and_keys_that_are_not_utf8_are_refused() -> None:
    with pytest.raises(ValueError, match="UTF-8"):
        json_text(through_parser({"title": JsonRawString(b"caf\xe9")}))
    with pytest.raises(ValueError, match="UTF-8"):
        json_text(through_parser({b"k\xff": 1}))
    with pytest.raises(ValueError, match="UTF-8"):
        json_text(through_parser(JsonRawString(b"\xc3")))


def test_mariadb_text_passes_through_unchanged() -> None:
    # MariaDB stores JSON as text and the library hands it as str: the relay publishes it byte for byte.
    text = '{"b": 1,  "a": [true, null]}'
    assert json_text(text) is text


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (float("nan"), "finite"),
        ({b"x": float("inf")}, "finite"),
        (Decimal("NaN"), "finite"),
        ({b"k": {1, 2}}, "set"),
        ([object()], "object"),
        ({b"t": "text"}, "opaque"),
        ({b"a": 1, "a": 2}, "twice"),
        ({1: b"x"}, "key"),
        (dt.datetime(2026, 1, 5, tzinfo=dt.UTC), "time zone"),
    ],
)
def test_values_without_a_faithful_json_form_are_refused_with_the_reason(value: Any, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        json_text(value)


def test_values_as_the_library_hands_them_without_the_parser() -> None:
    assert json_text(b"plain") == '"plain"'
    assert json_text(None) == "null"
    assert json_text(True) == "true" and json_text(0) == "0"
    assert json_text({b"a": [b"x", 1, 2.5, None, False]}) == '{"a":["x",1,2.5,null,false]}'
    assert json_text({"already": b"str key"}) == '{"already":"str key"}'
    assert json_text((b"t", 1)) == '["t",1]'


def test_nesting_deeper_than_python_allows_is_a_value_error() -> None:
    value: Any = b"leaf"
    for _ in range(5000):
        value = [value]
    with pytest.raises(ValueError, match="deep"):
        json_text(value)
