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
