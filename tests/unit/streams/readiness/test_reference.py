"""Reference tables: the packaged copy matches the repository's data file and is validated when loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streams.readiness.reference import ReferenceDataError, load_reference_tables, reference_tables

REPO_TABLES = Path(__file__).resolve().parents[4] / "data" / "za_reference_tables.json"
PACKAGED = Path(__file__).resolve().parents[4] / "streams" / "readiness" / "reference_tables.json"


def test_packaged_tables_are_a_copy_of_the_repository_data_file() -> None:
    assert json.loads(PACKAGED.read_text("utf-8")) == json.loads(REPO_TABLES.read_text("utf-8")), (
        "data/za_reference_tables.json changed: copy it to streams/readiness/reference_tables.json"
    )


def test_packaged_tables_hold_classes_provinces_and_levels() -> None:
    tables = reference_tables()
    assert list(tables.cidb_classes)[:5] == ["CE", "GB", "EB", "EP", "ME"]
    assert "SQ" in tables.cidb_classes
    assert len(tables.provinces) == 9
    assert tables.bbbee_levels == (1, 2, 3, 4, 5, 6, 7, 8)
    kzn = next(p for p in tables.provinces if p.abbr == "KZN")
    assert kzn.name == "KwaZulu-Natal"


def test_malformed_tables_fail_with_the_source(tmp_path: Path) -> None:
    broken = tmp_path / "tables.json"
    broken.write_text('{"cidb_classes": {"CE": "Civil"}, "provinces": [], "bbbee_levels": []}', "utf-8")
    with pytest.raises(ReferenceDataError, match=r"tables.json: expected the 9 South African provinces, found 0"):
        load_reference_tables(broken)
    broken.write_text("{not json", "utf-8")
    with pytest.raises(ReferenceDataError, match="not valid JSON"):
        load_reference_tables(broken)
    with pytest.raises(ReferenceDataError, match="cannot read the reference tables"):
        load_reference_tables(tmp_path / "missing.json")
