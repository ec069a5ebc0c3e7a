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
from schema.events import TenderTexts, naive_utc, tender_payload

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


def _amount(ocid: str, raw: object) -> Decimal:
    """A budget: a finite number of at least 0 (NaN, Infinity and negative amounts are refused, as the contract would
    refuse the event made from the row)."""
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ReleaseError(f"{ocid}: tender.value.amount must be a number, got {str(raw)[:40]!r}")
    try:
        amount = Decimal(str(raw))
    except ArithmeticError:
        raise ReleaseError(f"{ocid}: tender.value.amount is not a number: {str(raw)[:40]!r}") from None
    if not amount.is_finite() or amount < 0:
        raise ReleaseError(f"{ocid}: tender.value.amount must be finite and at least 0, got {str(raw)[:40]!r}")
    return amount


def tender_row(release: dict[str, Any]) -> TenderRow:
    tender = release.get("tender") or {}
    ocid = release.get("ocid")
    if not ocid:
        raise ReleaseError("release has no ocid")
    if not isinstance(ocid, str) or len(ocid) > 128:
        raise ReleaseError(f"release ocid must be text of at most 128 characters, got {str(ocid)[:40]!r}")
    if not isinstance(tender, dict):
        raise ReleaseError(f"{ocid}: tender must be an object")
    for name in ("title", "description", "specialConditions"):
        if tender.get(name) is not None and not isinstance(tender[name], str):
            raise ReleaseError(f"{ocid}: tender.{name} must be text")
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
    if amount is not None:
        amount = _amount(ocid, amount)
    status = str(tender.get("status")) if tender.get("status") in OCDS_STATUSES else "active"
    period = tender.get("tenderPeriod") or {}
    buyer = (release.get("buyer") or tender.get("procuringEntity") or {}).get("name")
    texts = TenderTexts.from_ocds(tender)
    return TenderRow(
        ocid=ocid,
        tender_number=number,
        title=title[:1000],
        description="\n\n".join(d.strip() for d in details if d and d.strip()) or None,
        buyer=buyer,
        budget=amount if amount is not None and currency else None,
        currency=currency if amount is not None and currency else None,
        status=status,
        published_at=naive_utc(period.get("startDate") or release.get("date")),
        closing_at=naive_utc(period.get("endDate")),
        province=tender.get("province"),
        category=tender.get("category"),
        raw_ocds=json.dumps(release, ensure_ascii=False),
        text=texts.text,
        special_conditions=texts.special_conditions,
        briefing_compulsory=texts.briefing_compulsory,
        briefing_at=texts.briefing_at,
        briefing_venue=texts.briefing_venue,
    )


def with_award_value(row: TenderRow, release: dict[str, Any]) -> TenderRow:
    """The row with the release's awarded total as its budget (UK Contracts Finder publishes award values; spend by
    buyer sums what was awarded). Unchanged when the release has no award value or mixes currencies."""
    values = [a["value"] for a in release.get("awards") or [] if a.get("value") and a["value"].get("amount")]
    currencies = {v.get("currency") for v in values}
    if not values or len(currencies) != 1 or None in currencies:
        return row
    total = sum((_amount(row.ocid, v["amount"]) for v in values), Decimal(0)).quantize(Decimal("0.01"))
    return dataclasses.replace(row, budget=total, currency=currencies.pop())


def read_releases(path: Path = SAMPLE_TENDERS, limit: int | None = None) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f):
            if limit is not None and n >= limit:
                return
            if line.strip():
                try:
                    release = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ReleaseError(
                        f"{path}:{n + 1}: not a JSON release ({exc.msg} at column {exc.colno})"
                    ) from None
                if not isinstance(release, dict):
                    raise ReleaseError(f"{path}:{n + 1}: a release is a JSON object")
                yield release


def _payload(tender_id: int, row: TenderRow) -> dict[str, Any]:
    texts = TenderTexts(row.text, row.special_conditions, row.briefing_compulsory, row.briefing_at, row.briefing_venue)
    return tender_payload(
        tender_id,
        ocid=row.ocid,
        title=row.title,
        tender_number=row.tender_number,
        buyer=row.buyer,
        budget=row.budget,
        currency=row.currency,
        status=row.status,
        published_at=row.published_at,
        closing_at=row.closing_at,
        province=row.province,
        category=row.category,
        texts=texts,
    )


# The tenders columns an upsert writes besides `ocid` (the key), in TenderRow's field names.
TENDER_COLUMNS = (
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
    values = {c: getattr(row, c) for c in TENDER_COLUMNS}
    if found is None:
        cols = ", ".join(("ocid", *TENDER_COLUMNS))
        params = ", ".join(f":{c}" for c in ("ocid", *TENDER_COLUMNS))
        result = conn.execute(sa.text(f"INSERT INTO tenders ({cols}) VALUES ({params})"), {"ocid": row.ocid, **values})
        tender_id, event_type = int(result.lastrowid), "tender.created"
    else:
        sets = ", ".join(f"{c} = :{c}" for c in TENDER_COLUMNS)
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
