"""OCDS release -> tenders row, on real eTenders shapes (the verbatim API release and portal rows)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest

from tenderhub.loader import DATA_DIR, ReleaseError, read_releases, tender_row


def test_verbatim_api_release_maps_to_a_tender_row() -> None:
    release = json.loads((DATA_DIR / "za_etenders_real_ocds_release_165050.json").read_text())["release"]
    row = tender_row(release)
    assert row.ocid == "ocds-9t57fa-165050" and row.tender_number == "ZNTM01266W"
    assert row.title == release["tender"]["description"].strip()
    assert row.province == "KwaZulu-Natal" and row.category == "Sewerage" and row.status == "active"
    assert row.description is not None and "Preference points system" in row.description
    assert row.budget is None and row.currency is None


def test_portal_rows_have_utc_dates_and_real_titles() -> None:
    first = next(read_releases(limit=1))
    row = tender_row(first)
    # 2025-10-13T11:00:00+02:00 in the file -> 09:00 UTC in the DATETIME column.
    assert row.closing_at == dt.datetime(2025, 10, 13, 9, 0)
    assert row.title.startswith("Provision of security services")
    assert row.buyer == "Eastern Cape - Agriculture"


def test_all_200_sample_tenders_map() -> None:
    rows = [tender_row(r) for r in read_releases()]
    assert len(rows) == 200 and len({r.ocid for r in rows}) == 200
    assert all(r.closing_at and r.published_at and r.published_at <= r.closing_at for r in rows)


def test_values_become_budget_and_currency() -> None:
    release = {
        "ocid": "ocds-x-1",
        "tender": {"title": "T1", "description": "Roads", "value": {"amount": 1250000.5, "currency": "ZAR"}},
    }
    row = tender_row(release)
    assert row.budget == Decimal("1250000.5") and row.currency == "ZAR"


@pytest.mark.parametrize("release", [{}, {"ocid": "ocds-x-2", "tender": {}}])
def test_releases_without_id_or_title_are_refused(release: dict[str, object]) -> None:
    with pytest.raises(ReleaseError):
        tender_row(release)


@pytest.mark.parametrize(
    "release",
    [
        {"ocid": "o-1", "tender": {"description": "Roads", "value": {"amount": "NaN", "currency": "ZAR"}}},
        {"ocid": "o-2", "tender": {"description": "Roads", "value": {"amount": "Infinity", "currency": "ZAR"}}},
        {"ocid": "o-3", "tender": {"description": "Roads", "value": {"amount": -5, "currency": "ZAR"}}},
        {"ocid": "o-4", "tender": {"description": "Roads", "value": {"amount": "lots", "currency": "ZAR"}}},
        {"ocid": "o-5", "tender": {"description": "Roads", "value": {"amount": [1], "currency": "ZAR"}}},
        {"ocid": 12345, "tender": {"description": "Roads"}},
        {"ocid": "o" * 129, "tender": {"description": "Roads"}},
        {"ocid": "o-6", "tender": {"description": {"text": "Roads"}}},
        {"ocid": "o-7", "tender": ["Roads"]},
    ],
)
def test_releases_a_tender_row_cannot_hold_are_refused_with_the_reason(release: dict[str, object]) -> None:
    with pytest.raises(ReleaseError, match=r"ocid|tender"):
        tender_row(release)


def test_a_truncated_release_file_names_its_path_and_line(tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "releases.jsonl"  # type: ignore[operator]
    path.write_text('{"ocid": "o-1", "tender": {"description": "Roads"}}\n{"ocid": "o-2", "tend\n')
    releases = read_releases(path)
    assert next(releases)["ocid"] == "o-1"
    with pytest.raises(ReleaseError, match=r"releases\.jsonl:2: not a JSON release"):
        next(releases)


@pytest.mark.parametrize("field", ["sectors", "provinces"])
def test_a_company_profile_lists_its_sectors_and_provinces_a_single_string_is_refused(field: str) -> None:
    from tenderhub.companies import CompanyProfile

    data = {"team": "T", "company_name": "C", "sectors": ["Construction"], "provinces": ["Gauteng"]}
    assert CompanyProfile.from_dict(data).sectors == ["Construction"]
    with pytest.raises(ValueError, match=f"{field} must be a list"):
        CompanyProfile.from_dict({**data, field: "construction"})  # was ['c', 'o', 'n', ...]


@pytest.mark.parametrize("amount", [-500, "NaN", "Infinity", "lots"])
def test_award_values_a_budget_cannot_be_are_refused(amount: object) -> None:
    from tenderhub.loader import with_award_value

    row = tender_row({"ocid": "o-1", "tender": {"description": "Roads"}})
    release = {
        "awards": [{"value": {"amount": 100, "currency": "GBP"}}, {"value": {"amount": amount, "currency": "GBP"}}]
    }
    with pytest.raises(ReleaseError, match="amount"):
        with_award_value(row, release)
