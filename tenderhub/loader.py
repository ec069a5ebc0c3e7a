"""Load OCDS tender releases the way the application writes them: the `tenders` row and its `tender.created` /
`tender.updated` event in one MySQL transaction (through the outbox writer)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from cdc.outbox import write_event

log = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
SAMPLE_TENDERS = DATA_DIR / "za_etenders_portal_200.ocds.jsonl"
OCDS_STATUSES = {"planning", "planned", "active", "cancelled", "unsuccessful", "complete", "withdrawn"}


class ReleaseError(ValueError):
    """An OCDS release lacks what a tender row needs (ocid, title)."""


@dataclass(frozen=True)
class TenderRow:
    ocid: str
    tender_number: str | None
    title: str
    description: str | None
    buyer: str | None
    budget: Decimal | None
    currency: str | None
    status: str
    published_at: dt.datetime | None
    closing_at: dt.datetime | None
    province: str | None
    category: str | None
    raw_ocds: str
    # The tender's own texts for the event (summaries, readiness); the description column joins them.
    text: str | None = None
    special_conditions: str | None = None
    briefing_compulsory: bool | None = None
    briefing_at: dt.datetime | None = None
    briefing_venue: str | None = None


def _utc(value: str | None) -> dt.datetime | None:
    """OCDS dates carry an offset (+02:00 for eTenders); MySQL DATETIME columns hold naive UTC."""
    if not value:
        return None
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return parsed


def tender_row(release: dict[str, Any]) -> TenderRow:
    tender = release.get("tender") or {}
    ocid = release.get("ocid")
    if not ocid:
        raise ReleaseError("release has no ocid")
    number = tender.get("title")
    # eTenders puts the tender number in title and the real title in description.
    title = (tender.get("description") or number or "").strip()
    if not title:
        raise ReleaseError(f"{ocid}: tender has neither title nor description")
    details = [tender.get("description"), tender.get("specialConditions")]
    value = tender.get("value") or {}
    amount, currency = value.get("amount"), value.get("currency")
    if amount in (0, "0", 0.0):
        # The eTenders API publishes {"amount": 0} when no estimate was published: unknown, not free.
        amount = None
    status = str(tender.get("status")) if tender.get("status") in OCDS_STATUSES else "active"
    period = tender.get("tenderPeriod") or {}
    buyer = (release.get("buyer") or tender.get("procuringEntity") or {}).get("name")
    session = tender.get("briefingSession") or {}
    briefing = bool(session.get("isSession"))
    return TenderRow(
        ocid=ocid,
        tender_number=number,
        title=title[:1000],
        description="\n\n".join(d.strip() for d in details if d and d.strip()) or None,
        buyer=buyer,
        budget=Decimal(str(amount)) if amount is not None and currency else None,
        currency=currency if amount is not None and currency else None,
        status=status,
        published_at=_utc(period.get("startDate") or release.get("date")),
        closing_at=_utc(period.get("endDate")),
        province=tender.get("province"),
        category=tender.get("category"),
        raw_ocds=json.dumps(release, ensure_ascii=False),
        text=(tender.get("description") or "").strip() or None,
        special_conditions=(tender.get("specialConditions") or "").strip() or None,
        briefing_compulsory=bool(session.get("compulsory")) if briefing else None,
        briefing_at=_utc(session.get("date")) if briefing else None,
        briefing_venue=(session.get("venue") or None) if briefing else None,
    )


def with_award_value(row: TenderRow, release: dict[str, Any]) -> TenderRow:
    """The row with the release's awarded total as its budget (UK Contracts Finder publishes award values; spend by
    buyer sums what was awarded). Unchanged when the release has no award value or mixes currencies."""
    values = [a["value"] for a in release.get("awards") or [] if a.get("value") and a["value"].get("amount")]
    currencies = {v.get("currency") for v in values}
    if not values or len(currencies) != 1 or None in currencies:
        return row
    total = sum((Decimal(str(v["amount"])) for v in values), Decimal(0)).quantize(Decimal("0.01"))
    return dataclasses.replace(row, budget=total, currency=currencies.pop())


def read_releases(path: Path = SAMPLE_TENDERS, limit: int | None = None) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f):
            if limit is not None and n >= limit:
                return
            if line.strip():
                yield json.loads(line)


def _payload(tender_id: int, row: TenderRow) -> dict[str, Any]:
    return {
        "tender_id": tender_id,
        "ocid": row.ocid,
        "title": row.title,
        "buyer": row.buyer,
        "budget": str(row.budget) if row.budget is not None else None,
        "currency": row.currency,
        "status": row.status,
        "published_at": row.published_at.isoformat() if row.published_at else None,
        "closing_at": row.closing_at.isoformat() if row.closing_at else None,
        "province": row.province,
        "category": row.category,
        "tender_number": row.tender_number[:255] if row.tender_number else None,
        "description": row.text[:20_000] if row.text and row.text != row.title else None,
        "special_conditions": row.special_conditions[:50_000] if row.special_conditions else None,
        "briefing_compulsory": row.briefing_compulsory,
        "briefing_at": row.briefing_at.isoformat() if row.briefing_at else None,
        "briefing_venue": row.briefing_venue[:1000] if row.briefing_venue else None,
    }


_COLUMNS = (
    "tender_number",
    "title",
    "description",
    "buyer",
    "budget",
    "currency",
    "status",
    "published_at",
    "closing_at",
    "province",
    "category",
    "raw_ocds",
)


def upsert_tender(conn: sa.Connection, row: TenderRow) -> tuple[int, str]:
    """Insert or update one tender and append its event, in the caller's transaction. Returns (id, event type)."""
    tender_id, event_type, _ = upsert_tender_event(conn, row)
    return tender_id, event_type


def upsert_tender_event(conn: sa.Connection, row: TenderRow) -> tuple[int, str, int]:
    """`upsert_tender`, also returning the event id (outbox id)."""
    existing = conn.execute(sa.text("SELECT id FROM tenders WHERE ocid = :ocid FOR UPDATE"), {"ocid": row.ocid})
    found = existing.scalar()
    values = {c: getattr(row, c) for c in _COLUMNS}
    if found is None:
        cols = ", ".join(("ocid", *_COLUMNS))
        params = ", ".join(f":{c}" for c in ("ocid", *_COLUMNS))
        result = conn.execute(sa.text(f"INSERT INTO tenders ({cols}) VALUES ({params})"), {"ocid": row.ocid, **values})
        tender_id, event_type = int(result.lastrowid), "tender.created"
    else:
        sets = ", ".join(f"{c} = :{c}" for c in _COLUMNS)
        conn.execute(sa.text(f"UPDATE tenders SET {sets} WHERE id = :id"), {"id": found, **values})
        tender_id, event_type = int(found), "tender.updated"
    event_id = write_event(conn, event_type, tender_id, _payload(tender_id, row))
    return tender_id, event_type, event_id


def load_tenders(engine: sa.Engine, releases: Iterable[dict[str, Any]]) -> list[tuple[int, str, TenderRow]]:
    """Each tender in its own transaction, as an application would write them."""
    done = []
    for release in releases:
        row = tender_row(release)
        with engine.begin() as conn:
            tender_id, event_type = upsert_tender(conn, row)
        done.append((tender_id, event_type, row))
    return done
