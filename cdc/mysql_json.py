"""JSON text for a JSON column value as python-mysql-replication 1.0.17 hands it: MariaDB's text as is, MySQL 8's
decoded binary JSON (bytes keys and strings, which json.dumps refuses) as canonical JSON text."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
from collections.abc import Mapping
from typing import Any

# Strings as JSON writes them, without escaping non-ASCII (the envelope is UTF-8, like MySQL's utf8mb4 strings).
_quote = json.JSONEncoder(ensure_ascii=False).encode


def json_text(value: Any) -> str:
    """Canonical JSON text (compact, UTF-8 characters unescaped) equal in meaning to the JSON value written.

    What the library hands, and its JSON:
    - str at the top: MariaDB's JSON column is text the server already checked; returned unchanged, so the relay
      publishes the bytes the application wrote and a replay yields the same record.
    - MySQL's binary JSON as the library decodes it: dict (bytes keys) and list, bytes for strings (UTF-8, as
      utf8mb4 stores them), int (int16 .. uint64), float, bool, None (JSON null, also an empty document). Key order
      is kept: MySQL stores keys by length, then bytes.
    - MySQL's opaque values: Decimal as a JSON number with every digit, datetime / date / time as MySQL prints them
      ("2026-01-05 10:00:00.000000", "10:00:00.000000"). The library returns a DATE as a datetime at midnight and
      drops a negative TIME's sign; those are its answers, not recoverable here.

    Raises ValueError, with the reason, for what has no faithful JSON form: bytes that are not UTF-8, a non-finite
    number, an aware datetime, a key twice, a type JSON does not have, nesting deeper than Python can follow, and a
    str inside a MySQL document. The library hands MySQL strings as bytes and turns only opaque values it does not
    know (TIMESTAMP, binary strings, BIT, YEAR, geometry) into str, dropping undecodable bytes: their meaning is lost.
    """
    if isinstance(value, str):
        return value
    out: list[str] = []
    try:
        _emit(value, out)
    except RecursionError:
        raise ValueError("JSON value nested too deep to convert") from None
    return "".join(out)


def _emit(value: Any, out: list[str]) -> None:
    # bool before int: True is an int to Python.
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, bytes):
        out.append(_quote(_utf8(value, "string")))
    elif isinstance(value, int):
        out.append(int.__repr__(value))
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"JSON numbers are finite, got {value!r}")
        out.append(float.__repr__(value))
    elif isinstance(value, Mapping):
        _emit_object(value, out)
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _emit(item, out)
        out.append("]")
    elif isinstance(value, decimal.Decimal):
        if not value.is_finite():
            raise ValueError(f"JSON numbers are finite, got Decimal {value}")
        # Plain notation, every digit kept (MySQL prints its DECIMAL values so).
        out.append(format(value, "f"))
    elif isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            raise ValueError(f"a MySQL JSON datetime has no time zone, got {value.isoformat()}")
        out.append(_quote(value.isoformat(sep=" ", timespec="microseconds")))
    elif isinstance(value, dt.date):
        out.append(_quote(value.isoformat()))
    elif isinstance(value, dt.time):
        out.append(_quote(value.isoformat(timespec="microseconds")))
    elif isinstance(value, str):
        raise ValueError(
            "a string inside a MySQL JSON document arrived as text: python-mysql-replication hands JSON strings as "
            "bytes and turns only opaque values it does not know (TIMESTAMP, binary strings, BIT, YEAR, geometry) "
            f"into text, dropping undecodable bytes, so the value written is lost: {value[:80]!r}"
        )
    else:
        raise ValueError(f"no JSON form for a {type(value).__name__} in a JSON column value")


def _emit_object(value: Mapping[Any, Any], out: list[str]) -> None:
    out.append("{")
    seen: set[str] = set()
    for i, (raw_key, item) in enumerate(value.items()):
        if isinstance(raw_key, bytes):
            key = _utf8(raw_key, "key")
        elif isinstance(raw_key, str):
            key = raw_key
        else:
            raise ValueError(f"a JSON object key is a string, got {type(raw_key).__name__} {raw_key!r}")
        if key in seen:
            raise ValueError(f"JSON object has the key {key!r} twice")
        seen.add(key)
        if i:
            out.append(",")
        out.append(_quote(key))
        out.append(":")
        _emit(item, out)
    out.append("}")


def _utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"JSON {what} is not UTF-8 ({exc.reason} at byte {exc.start}): {data[:80]!r}") from None
