"""`tenderhub verify` without services: the payloads it rebuilds from MySQL rows are the ones the application
publishes, its reports count and render drift, and each family's comparison, run against in-memory stores, finds no
drift when the stores hold the recompute and exactly one, naming the id, when a single stored value differs."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import fnmatch
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any, cast

import pytest
import redis
import sqlalchemy as sa
from pymongo.database import Database

from schema.events import CompanyUpdatedV1, ContractError, Envelope, TenderTexts, TenderV1, UserActivityV1, decode_event
from schema.events import tender_payload as contract_tender_payload
from schema.mongo import READINESS_SCORES, TENDER_SUMMARIES, USER_ACTIVITY_LOGS
from schema.redis_keys import (
    SPEND_BY_BUYER,
    SPEND_BY_BUYER_WINDOW,
    SPEND_TOTALS,
    SPEND_WINDOW_TOTALS,
    TEAM_TOP_TENDERS,
    TENDER_METADATA,
)
from schema.settings import Settings
from streams import verify as verify_module
from streams.agents.readiness import _Entry, eligible, is_open, score_document, top_k
from streams.agents.tender_summaries import metadata, summary_input
from streams.readiness.scoring import FactsError, ReadinessWeights, score
from streams.summaries.base import content_hash
from streams.verify import (
    _TENDER_COLUMNS,
    ROWS_AT,
    FamilyReport,
    VerifyError,
    VerifyReport,
    _facts_entries,
    _Stores,
    _verify_activity,
    _verify_cards,
    _verify_readiness,
    _verify_spend,
    _verify_summaries,
    company_payload,
    event,
    tender_events,
    tender_payload,
)
from tenderhub import cli
from tenderhub import companies as companies_module
from tenderhub import loader as loader_module
from tenderhub.companies import read_profiles, upsert_company
from tenderhub.loader import read_releases, tender_row, upsert_tender_event
from tests.unit.offline import offline_settings

PREFIX = "t1:"
MODEL = "extractive-3"
EXAMPLES = 5
AS_OF = dt.datetime(2025, 9, 25, 23, 59, 59, tzinfo=dt.UTC)  # the sample tenders close in October 2025
WEIGHTS = ReadinessWeights()
TOP_K = 3


def settings(**overrides: Any) -> Settings:
    return offline_settings(**overrides)


# -- the application's writes, recorded without MySQL ----------------------------------------------------------


@dataclasses.dataclass
class _Result:
    lastrowid: int | None = None

    def scalar(self) -> None:
        return None  # every SELECT ... FOR UPDATE finds nothing: each write is an insert


@dataclasses.dataclass
class RecordingConnection:
    """Stands in for the application's connection: keeps each statement's parameters (what MySQL would store)."""

    statements: list[tuple[str, dict[str, Any]]] = dataclasses.field(default_factory=list)
    next_id: int = 1

    def execute(self, statement: sa.TextClause, params: Mapping[str, Any]) -> _Result:
        sql = str(statement)
        self.statements.append((sql, dict(params)))
        if not sql.startswith("INSERT"):
            return _Result()
        self.next_id += 1
        return _Result(lastrowid=self.next_id - 1)

    def inserted(self, table: str) -> list[dict[str, Any]]:
        return [p for sql, p in self.statements if sql.startswith(f"INSERT INTO {table} ")]


def recorded_events(monkeypatch: pytest.MonkeyPatch, module: Any) -> list[tuple[str, int, dict[str, Any]]]:
    """The events `module` hands to the outbox writer, in order."""
    events: list[tuple[str, int, dict[str, Any]]] = []

    def write_event(conn: Any, event_type: str, aggregate_id: int, payload: dict[str, Any]) -> int:
        events.append((event_type, aggregate_id, payload))
        return len(events)

    monkeypatch.setattr(module, "write_event", write_event)
    return events


def application_tenders(monkeypatch: pytest.MonkeyPatch, limit: int = 5) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Real eTenders releases written by the loader: (the tenders row as MySQL keeps it, the payload published)."""
    events = recorded_events(monkeypatch, loader_module)
    conn = RecordingConnection()
    out = []
    for release in read_releases(limit=limit):
        tender_id, _, _ = upsert_tender_event(cast(sa.Connection, conn), tender_row(release))
        row = {"id": tender_id, **conn.inserted("tenders")[-1]}
        out.append((row, events[-1][2]))
    return out


def tender_rows(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The rows verify reads, each with the event it rebuilds for it (`_event`), as `verify` prepares them."""
    rows = [row for row, _ in application_tenders(monkeypatch)]
    tender_events(rows, {int(r["id"]): 100 + int(r["id"]) for r in rows}, 1)
    return rows


# -- in-memory stores: only what verify calls ------------------------------------------------------------------


class FakeCollection:
    def __init__(self, docs: Iterable[dict[str, Any]] = ()) -> None:
        self.docs = [dict(d) for d in docs]

    def find(
        self, filter: Mapping[str, Any], projection: Mapping[str, int] | None = None, batch_size: int = 0
    ) -> Iterator[dict[str, Any]]:
        for doc in self.docs:
            if all(self._matches(doc.get(k), cond) for k, cond in filter.items()):
                yield self._project(doc, projection)

    @staticmethod
    def _matches(value: Any, cond: Any) -> bool:
        if isinstance(cond, dict):
            assert set(cond) == {"$in"}, f"fake supports only $in, got {cond}"
            return value in cond["$in"]
        return bool(value == cond)

    @staticmethod
    def _project(doc: dict[str, Any], projection: Mapping[str, int] | None) -> dict[str, Any]:
        # Inclusion projections, as MongoDB applies them: a field verify did not ask for is not there.
        if not projection:
            return dict(doc)
        keep = {k for k, v in projection.items() if v} | ({"_id"} if projection.get("_id", 1) else set())
        return {k: v for k, v in doc.items() if k in keep}


class FakeDatabase:
    def __init__(self, collections: Mapping[str, Iterable[dict[str, Any]]] | None = None) -> None:
        self.collections = {name: FakeCollection(docs) for name, docs in (collections or {}).items()}

    def __getitem__(self, name: str) -> FakeCollection:
        return self.collections.setdefault(name, FakeCollection())


@dataclasses.dataclass
class FakeRedis:
    hashes: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    zsets: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)

    def scan_iter(self, match: str, count: int) -> Iterator[str]:
        return iter([k for k in [*self.hashes, *self.zsets] if fnmatch.fnmatchcase(k, match)])

    def hgetall(self, key: str) -> dict[str, str]:
        return dict(self.hashes.get(key, {}))

    def zrange(self, key: str, start: int, end: int, withscores: bool = False) -> list[tuple[str, float]]:
        assert (start, end, withscores) == (0, -1, True), "verify reads whole sorted sets with their scores"
        return sorted(self.zsets.get(key, {}).items(), key=lambda item: (item[1], item[0]))


def stores(db: FakeDatabase | None = None, r: FakeRedis | None = None) -> _Stores:
    return _Stores(cast("Database[dict[str, Any]]", db or FakeDatabase()), cast(redis.Redis, r or FakeRedis()), PREFIX)


# -- payloads: what the application wrote ----------------------------------------------------------------------


def test_tender_payload_of_a_loaded_row_is_the_payload_the_loader_published(monkeypatch: pytest.MonkeyPatch) -> None:
    written = application_tenders(monkeypatch)
    assert len(written) == 5
    for row, published in written:
        assert set(row) == {c.strip() for c in _TENDER_COLUMNS.split(",")}  # the columns verify selects
        assert tender_payload(row) == published
    # The texts come from raw_ocds: the description column joins description and special conditions.
    row, published = written[0]
    assert published["special_conditions"] and published["special_conditions"] in row["description"]
    assert published["description"] != row["description"]


def test_tender_payload_without_raw_ocds_takes_the_text_from_the_description_column() -> None:
    row = {
        "id": 7,
        "ocid": "ocds-x-7",
        "tender_number": "RFQ 7",
        "title": "Cleaning services",
        "description": "Cleaning of the district offices for 12 months",
        "buyer": "Dept of Works",
        "budget": None,
        "currency": None,
        "status": "active",
        "published_at": dt.datetime(2025, 9, 1, 8, 0),
        "closing_at": dt.datetime(2025, 10, 1, 9, 0),
        "province": "Gauteng",
        "category": "Services",
        "raw_ocds": None,
    }
    payload = tender_payload(row)
    assert payload == contract_tender_payload(
        7,
        ocid="ocds-x-7",
        title="Cleaning services",
        tender_number="RFQ 7",
        buyer="Dept of Works",
        budget=None,
        currency=None,
        status="active",
        published_at=dt.datetime(2025, 9, 1, 8, 0),
        closing_at=dt.datetime(2025, 10, 1, 9, 0),
        province="Gauteng",
        category="Services",
        texts=TenderTexts(text="Cleaning of the district offices for 12 months"),
    )
    assert payload["budget"] is None and payload["closing_at"] == "2025-10-01T09:00:00"
    # A release without a tender object (or not an object at all) falls back the same way.
    for raw in ("", "null", "[]", json.dumps({"ocid": "ocds-x-7"}), json.dumps({"tender": "x"})):
        assert tender_payload(row | {"raw_ocds": raw}) == payload
    ocds = json.dumps({"tender": {"description": "From the release", "specialConditions": "CIDB 3GB"}})
    from_release = tender_payload(row | {"raw_ocds": ocds, "budget": Decimal("1500.50"), "currency": "ZAR"})
    assert from_release["description"] == "From the release" and from_release["special_conditions"] == "CIDB 3GB"
    assert from_release["budget"] == "1500.50"
    decoded = event("tender.updated", 7, from_release, event_id=1, source_seq=1, at=ROWS_AT).payload
    assert isinstance(decoded, TenderV1) and decoded.budget == Decimal("1500.50")


def test_a_row_whose_raw_ocds_is_not_json_is_read_from_its_columns_instead_of_stopping_verify() -> None:
    # One corrupt row must not stop the nightly check of every other row: its texts come from the description
    # column (as for a row without a release), and if that is not what was published, its summary shows as drift.
    row = dict.fromkeys(c.strip() for c in _TENDER_COLUMNS.split(",")) | {
        "id": 1,
        "ocid": "ocds-x-1",
        "title": "A tender",
        "description": "What the column says",
        "status": "active",
    }
    assert tender_payload(row | {"raw_ocds": "{not json"}) == tender_payload(row | {"raw_ocds": None})
    assert tender_payload(row | {"raw_ocds": b"\xff\xfe"})["description"] == "What the column says"


def _by_class(gradings: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(gradings, key=lambda g: str(g["class_of_works"]))


def test_company_payload_of_stored_rows_is_the_payload_the_application_published(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events = recorded_events(monkeypatch, companies_module)
    profiles = read_profiles()
    for profile in profiles:
        conn = RecordingConnection()
        team_id, company_id, _ = upsert_company(cast(sa.Connection, conn), profile)
        row = {"id": company_id, **conn.inserted("company_profiles")[-1]}
        assert isinstance(row["sectors"], str)  # JSON text, as the column returns it
        # As company_rows reads them: ordered by class_of_works; TINYINT flags come back as 0/1.
        gradings = _by_class(
            [
                {"class_of_works": g["cls"], "grade": g["grade"], "potentially_emerging": int(g["pe"])}
                for g in conn.inserted("company_cidb_gradings")
            ]
        )
        published = events[-1][2]
        rebuilt = company_payload(row, gradings)

        # MySQL returns the gradings by class of works, not in the profile's order: scores and pass/fail do not
        # depend on it (a checklist reason naming the grading held can).
        assert rebuilt | {"cidb": _by_class(rebuilt["cidb"])} == published | {"cidb": _by_class(published["cidb"])}
        assert all(type(g["potentially_emerging"]) is bool for g in rebuilt["cidb"])
        assert rebuilt["team_id"] == team_id
    assert len(events) == len(profiles) >= 2


def test_company_payload_takes_list_columns_as_json_text_or_lists() -> None:
    row = {
        "id": 4,
        "team_id": 2,
        "company_name": "Acme",
        "sectors": '["Construction"]',
        "provinces": ["Gauteng", "Limpopo"],
        "experience_years": None,
        "bbbee_level": 1,
    }
    payload = company_payload(row, [{"class_of_works": "GB", "grade": "5", "potentially_emerging": 1}])
    assert payload == {
        "team_id": 2,
        "company_id": 4,
        "company_name": "Acme",
        "sectors": ["Construction"],
        "provinces": ["Gauteng", "Limpopo"],
        "experience_years": None,
        "bbbee_level": 1,
        "cidb": [{"class_of_works": "GB", "grade": 5, "potentially_emerging": True}],
    }
    assert company_payload(row | {"sectors": b'["Mining"]'}, [])["sectors"] == ["Mining"]
    decoded = event("company.updated", 2, payload, event_id=1, source_seq=1, at=ROWS_AT).payload
    assert isinstance(decoded, CompanyUpdatedV1) and decoded.cidb is not None and decoded.cidb[0].grade == 5


# -- events as the agents decode them --------------------------------------------------------------------------


def test_event_is_the_envelope_the_agents_decoder_makes(monkeypatch: pytest.MonkeyPatch) -> None:
    row, published = application_tenders(monkeypatch, limit=1)[0]
    e = event("tender.updated", 3, published | {"tender_id": 3}, event_id=9, source_seq=77, at=ROWS_AT)
    raw = {
        "event_id": 9,
        "event_type": "tender.updated",
        "aggregate_type": "tender",
        "aggregate_id": "3",
        "occurred_at": ROWS_AT,
        "schema_version": 1,
        "source_seq": 77,
        "payload": published | {"tender_id": 3},
    }
    same = decode_event(json.dumps(raw).encode())
    assert e == same and e.payload == same.payload
    assert isinstance(e.payload, TenderV1) and e.payload.title == row["title"]
    assert (e.event_id, e.source_seq, e.aggregate_id) == (9, 77, "3")


def test_event_names_user_events_activity_and_keeps_the_contracts_checks() -> None:
    e = event(
        "user.activity",
        5,
        {"user_id": 5, "team_id": 1, "action": "tender.viewed"},
        event_id=1,
        source_seq=2,
        at=ROWS_AT,
    )
    assert isinstance(e, Envelope) and e.aggregate_type == "activity"
    assert isinstance(e.payload, UserActivityV1)
    with pytest.raises(ContractError, match="does not match aggregate_id"):
        event("company.updated", 2, {"team_id": 3, "company_id": 1}, event_id=1, source_seq=1, at=ROWS_AT)


def test_facts_entries_carry_the_event_id_and_source_seq_a_worker_would_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = tender_rows(monkeypatch)
    company = event(
        "company.updated",
        2,
        company_payload(
            {
                "id": 8,
                "team_id": 2,
                "company_name": "Acme",
                "sectors": '["Construction"]',
                "provinces": '["KwaZulu-Natal"]',
                "experience_years": 5,
                "bbbee_level": 2,
            },
            [{"class_of_works": "GB", "grade": 5, "potentially_emerging": 0}],
        ),
        event_id=55,
        source_seq=9,
        at=ROWS_AT,
    )
    tenders, companies = _facts_entries({int(r["id"]): r["_event"] for r in rows}, {2: company}, AS_OF, WEIGHTS)
    assert sorted(tenders) == [int(r["id"]) for r in rows]
    first = tenders[int(rows[0]["id"])]
    assert first.version == 1 and first.value["event_id"] == 100 + int(rows[0]["id"])
    assert first.facts.tender_id == int(rows[0]["id"]) and first.value["title"] == rows[0]["title"]
    assert companies[2].version == 9 and companies[2].value["event_id"] == 55 and companies[2].facts.team_id == 2


def test_facts_the_rules_cannot_use_leave_out_their_row_not_the_whole_verify(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # As the agent refuses such an event (DLQ) and stores nothing for it: verify compares without it.
    rows = tender_rows(monkeypatch)
    poisoned = int(rows[0]["id"])
    check = verify_module.check_tender_facts

    def refuse_one(value: Any, *args: Any) -> Any:
        if value["tender_id"] == poisoned:
            raise FactsError("the rules cannot score these facts: KeyError: 'fi̇ve'")
        return check(value, *args)

    monkeypatch.setattr(verify_module, "check_tender_facts", refuse_one)
    tenders, _ = _facts_entries({int(r["id"]): r["_event"] for r in rows}, {}, AS_OF, WEIGHTS)
    assert sorted(tenders) == sorted(int(r["id"]) for r in rows[1:])
    assert f"tender {poisoned} left out" in caplog.text


# -- reports ---------------------------------------------------------------------------------------------------


def test_family_report_counts_every_drift_and_keeps_at_most_limit_examples() -> None:
    fam = FamilyReport("cards")
    for n in range(4):
        fam.add(f"tender {n}: wrong", 2)
    assert fam.drift == 4 and fam.examples == ["tender 0: wrong", "tender 1: wrong"]
    none = FamilyReport("spend")
    none.add("x", 0)
    assert none.drift == 1 and none.examples == []


def test_verify_report_totals_drift_and_renders_json_and_lines() -> None:
    ok = FamilyReport("summaries", checked=3, seconds=0.12345)
    bad = FamilyReport("cards", checked=2)
    bad.add("tender 3: card title 'a' != MySQL 'b'", 5)
    report = VerifyReport([ok, bad], 1.23456)
    assert report.drift == 1
    data = report.to_json()
    assert data["drift"] == 1 and data["seconds"] == 1.235
    assert data["families"]["summaries"].items() >= {"checked": 3, "drift": 0, "examples": [], "seconds": 0.123}.items()
    assert data["families"]["cards"]["examples"] == ["tender 3: card title 'a' != MySQL 'b'"]
    json.dumps(data)
    lines = report.lines()
    assert lines[0].startswith("summaries ") and lines[0].split()[1] == "3" and " ok " in lines[0]
    assert lines[1].startswith("cards ") and "DRIFT 1" in lines[1]
    assert lines[2] == "    tender 3: card title 'a' != MySQL 'b'"
    assert lines[-1] == "1 drifted in 1.23 s"
    assert VerifyReport([ok], 0.5).lines()[-1] == "no drift in 0.50 s"


@pytest.mark.parametrize(("drift", "code"), [(0, 0), (2, 1), (None, 2)])
def test_cmd_verify_exits_0_without_drift_1_with_drift_2_when_verify_cannot_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], drift: int | None, code: int
) -> None:
    async def fake_verify(_: Settings, families: Sequence[str], examples: int) -> VerifyReport:
        assert list(families) == ["spend"] and examples == 5
        if drift is None:
            raise VerifyError("unknown families ['x']")
        return VerifyReport([FamilyReport("spend", checked=4, drift=drift)], 0.1)

    monkeypatch.setattr(cli, "load_settings", settings)
    monkeypatch.setattr(verify_module, "verify", fake_verify)
    args = argparse.Namespace(examples=5, json=True, family=["spend"])
    assert cli.cmd_verify(args) == code
    out, err = capsys.readouterr()
    if drift is None:
        assert "tenderhub verify: unknown families" in err and out == ""
    else:
        assert json.loads(out)["drift"] == drift


# -- comparison per family -------------------------------------------------------------------------------------


def _summary_docs(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "tender_id": int(r["id"]),
            "content_hash": content_hash(summary_input(r["_event"].payload).text(), MODEL),
            "status": r["status"],
            "summary": "What the summariser wrote.",
        }
        for r in rows
    ]


def test_summaries_match_when_each_tender_has_its_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = tender_rows(monkeypatch)
    fam = FamilyReport("summaries")
    db = FakeDatabase({TENDER_SUMMARIES.name: _summary_docs(rows)})
    _verify_summaries(stores(db), [rows[:2], rows[2:]], MODEL, fam, EXAMPLES)
    assert (fam.checked, fam.drift, fam.examples) == (5, 0, [])


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda d: d | {"content_hash": "0" * 64}, "content hash 000000000000 != "),
        (lambda d: d | {"status": "cancelled"}, "summary status 'cancelled' != MySQL 'active'"),
        (lambda d: None, "no summary document"),
    ],
)
def test_summaries_drift_names_the_tender(
    monkeypatch: pytest.MonkeyPatch, change: Callable[[dict[str, Any]], dict[str, Any] | None], says: str
) -> None:
    rows = tender_rows(monkeypatch)
    docs = _summary_docs(rows)
    tid = docs[2]["tender_id"]
    changed = change(docs[2])
    docs = [d for d in docs if d["tender_id"] != tid] + ([changed] if changed else [])
    fam = FamilyReport("summaries")
    _verify_summaries(stores(FakeDatabase({TENDER_SUMMARIES.name: docs})), [rows], MODEL, fam, EXAMPLES)
    assert fam.drift == 1 and fam.checked == 5
    assert fam.examples[0].startswith(f"tender {tid}: ") and says in fam.examples[0]


def test_summaries_hash_depends_on_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = tender_rows(monkeypatch)
    fam = FamilyReport("summaries")
    _verify_summaries(stores(FakeDatabase({TENDER_SUMMARIES.name: _summary_docs(rows)})), [rows], "other", fam, 2)
    assert fam.drift == 5 and len(fam.examples) == 2


def _cards(rows: Sequence[Mapping[str, Any]]) -> FakeRedis:
    r = FakeRedis()
    for row in rows:
        card = metadata(row["_event"].payload, "What the summariser wrote.", MODEL)
        r.hashes[PREFIX + TENDER_METADATA.key(id=int(row["id"]))] = card
    return r


def test_cards_match_the_rows_and_other_prefixes_are_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = tender_rows(monkeypatch)
    r = _cards(rows)
    r.hashes["other:" + TENDER_METADATA.key(id=1)] = {"title": "someone else's"}
    r.hashes[PREFIX + "tender:abc:metadata"] = {"title": "not a tender id"}
    r.zsets[PREFIX + TEAM_TOP_TENDERS.key(id=1)] = {"1": 50.0}
    fam = FamilyReport("cards")
    _verify_cards(stores(r=r), {int(row["id"]): row for row in rows}, fam, EXAMPLES)
    assert (fam.checked, fam.drift, fam.examples) == (5, 0, [])


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ("title", "card title 'An older title' != MySQL "),
        ("unknown", "card for a tender MySQL does not have"),
        ("closed", "card for a tender that is cancelled in MySQL"),
    ],
)
def test_cards_drift_names_the_tender(monkeypatch: pytest.MonkeyPatch, change: str, says: str) -> None:
    rows = tender_rows(monkeypatch)
    by_id = {int(row["id"]): row for row in rows}
    r = _cards(rows)
    tid = int(rows[1]["id"])
    key = PREFIX + TENDER_METADATA.key(id=tid)
    if change == "title":
        r.hashes[key]["title"] = "An older title"
    elif change == "unknown":
        tid = 99
        r.hashes[PREFIX + TENDER_METADATA.key(id=tid)] = {"title": "gone"}
    else:
        by_id[tid] = by_id[tid] | {"status": "cancelled"}
    fam = FamilyReport("cards")
    _verify_cards(stores(r=r), by_id, fam, EXAMPLES)
    assert fam.drift == 1
    assert fam.examples[0].startswith(f"tender {tid}: ") and says in fam.examples[0]


def _readiness_inputs(
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[dict[int, _Entry], dict[int, _Entry], FakeDatabase, FakeRedis]:
    """Facts of the real tenders and demo companies, and stores holding exactly what the agent would write."""
    rows = tender_rows(monkeypatch)
    company_events = {}
    for team, profile in enumerate(read_profiles(), start=1):
        row = {
            "id": 10 + team,
            "team_id": team,
            "company_name": profile.company_name,
            "sectors": json.dumps(profile.sectors),
            "provinces": json.dumps(profile.provinces),
            "experience_years": profile.experience_years,
            "bbbee_level": profile.bbbee_level,
        }
        payload = company_payload(row, profile.cidb)
        company_events[team] = event("company.updated", team, payload, event_id=200 + team, source_seq=1, at=ROWS_AT)
    tenders, companies = _facts_entries({int(r["id"]): r["_event"] for r in rows}, company_events, AS_OF, WEIGHTS)
    docs, r = [], FakeRedis()
    for team, company in companies.items():
        ranked = {}
        for tid, tender in tenders.items():
            result = score(tender.facts, company.facts, AS_OF, WEIGHTS)
            written = score_document(result, tender, company)
            docs.append({**written.key, **written.fields})
            if is_open(tender.value, AS_OF) and eligible(result):
                ranked[tid] = result.score
        if ranked:
            r.zsets[PREFIX + TEAM_TOP_TENDERS.key(id=team)] = {str(t): s for t, s in top_k(ranked, TOP_K).items()}
    return tenders, companies, FakeDatabase({READINESS_SCORES.name: docs}), r


def _run_readiness(
    tenders: Mapping[int, _Entry], companies: Mapping[int, _Entry], db: FakeDatabase, r: FakeRedis, **wanted: bool
) -> tuple[FamilyReport, FamilyReport]:
    fams = (FamilyReport("readiness"), FamilyReport("top_lists"))
    flags = {"scores_wanted": True, "tops_wanted": True} | wanted
    _verify_readiness(stores(db, r), tenders, companies, AS_OF, WEIGHTS, TOP_K, fams, EXAMPLES, **flags)
    return fams


def test_readiness_and_top_lists_match_what_the_agent_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    tenders, companies, db, r = _readiness_inputs(monkeypatch)
    # The data must exercise the lists: some teams have a full (cut) list, some none.
    assert any(len(z) == TOP_K for z in r.zsets.values()) and len(r.zsets) < len(companies)
    scores_fam, tops_fam = _run_readiness(tenders, companies, db, r)
    assert (scores_fam.checked, scores_fam.drift) == (len(tenders) * len(companies), 0)
    assert (tops_fam.checked, tops_fam.drift) == (len(companies), 0)
    # A stored score that differs by float noise only is not drift.
    doc = db[READINESS_SCORES.name].docs[0]
    doc["score"] += 1e-12
    assert _run_readiness(tenders, companies, db, r)[0].drift == 0


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("score", 12.5, "score 12.5 != "),
        ("biddable", None, "biddable None != "),
        ("tender_status", "complete", "tender_status 'complete' != 'active'"),
        ("rules_version", "old", "rules_version 'old' != "),
        (None, None, "no score document"),
    ],
)
def test_readiness_drift_names_team_and_tender(
    monkeypatch: pytest.MonkeyPatch, field: str | None, value: Any, says: str
) -> None:
    tenders, companies, db, r = _readiness_inputs(monkeypatch)
    docs = db[READINESS_SCORES.name].docs
    target = docs[7]
    team, tid = target["team_id"], target["tender_id"]
    if field is None:
        docs.remove(target)
    else:
        target[field] = value
    scores_fam, tops_fam = _run_readiness(tenders, companies, db, r)
    assert scores_fam.drift == 1 and tops_fam.drift == 0
    assert scores_fam.examples[0].startswith(f"team {team} tender {tid}: ") and says in scores_fam.examples[0]


@pytest.mark.parametrize("where", ["before", "after"])
def test_a_score_of_an_older_profile_still_stored_is_drift_and_the_current_one_is_checked(
    monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """A profile change inserts the team's new generation, then deletes the older one: a document of an older
    generation left over is drift (whichever comes first in storage order), and never read as the current score."""
    tenders, companies, db, r = _readiness_inputs(monkeypatch)
    docs = db[READINESS_SCORES.name].docs
    target = docs[7]
    stale = target | {"team_seq": target["team_seq"] - 1, "score": 1.0, "biddable": not target["biddable"]}
    docs.insert(0 if where == "before" else len(docs), stale)
    scores_fam, tops_fam = _run_readiness(tenders, companies, db, r)
    assert (scores_fam.drift, scores_fam.extra, tops_fam.drift) == (1, 1, 0)
    assert scores_fam.examples == [f"team {target['team_id']}: 1 score documents of an older profile not yet deleted"]


@pytest.mark.parametrize("change", ["score", "member", "missing"])
def test_top_list_drift_names_the_team(monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    tenders, companies, db, r = _readiness_inputs(monkeypatch)
    key, top = next((k, z) for k, z in r.zsets.items() if len(z) == TOP_K)
    team = int(key.split(":")[2].strip("{}"))
    if change == "score":
        first = next(iter(top))
        top[first] -= 0.5
    elif change == "member":
        top.pop(next(iter(top)))
        top["999"] = 1.0
    else:
        del r.zsets[key]
    scores_fam, tops_fam = _run_readiness(tenders, companies, db, r)
    assert scores_fam.drift == 0 and tops_fam.drift == 1
    assert tops_fam.examples[0].startswith(f"team {team}: top list ")


def test_top_lists_alone_do_not_read_the_scores(monkeypatch: pytest.MonkeyPatch) -> None:
    tenders, companies, _, r = _readiness_inputs(monkeypatch)
    scores_fam, tops_fam = _run_readiness(tenders, companies, FakeDatabase(), r, scores_wanted=False)
    assert (scores_fam.checked, scores_fam.drift) == (0, 0)
    assert (tops_fam.checked, tops_fam.drift) == (len(companies), 0)


# Spend: budgets on the real tenders, totals written out by hand (cents per tender, summed per 'CUR|buyer').
SPEND_AS_OF = dt.date(2025, 9, 25)
_BUDGETS = {1: None, 2: Decimal("250000.00"), 3: Decimal("1000.00"), 4: Decimal("2500.50"), 5: None}
_ALL = {
    "none|Eastern Cape - Agriculture": (0, 1, 1),
    "ZAR|Onderstepoort Biological Products Limited": (25_000_000, 1, 0),
    "ZAR|Msinga Local Municipality": (350_050, 2, 0),
    "none|Msinga Local Municipality": (0, 1, 1),
}
# Tender 4 was published in January: outside the 30 days ending on the as-of date.
_WINDOW = _ALL | {"ZAR|Msinga Local Municipality": (100_000, 1, 0)}


def _spend_rows(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    rows = [row for row, _ in application_tenders(monkeypatch)]
    for row in rows:
        budget = _BUDGETS[int(row["id"])]
        row.update(budget=budget, currency="ZAR" if budget is not None else None)
    rows[3]["published_at"] = dt.datetime(2025, 1, 10)
    return rows


def _spend_store(all_time: Mapping[str, tuple[int, int, int]], window: Mapping[str, tuple[int, int, int]]) -> FakeRedis:
    r = FakeRedis()
    for key, totals in ((SPEND_TOTALS.key(), all_time), (SPEND_WINDOW_TOTALS.key(window="30d"), window)):
        fields = {"__as_of": "20250925"}
        for m, (cents, tenders, without) in totals.items():
            fields |= {f"c:{m}": str(cents), f"t:{m}": str(tenders), f"w:{m}": str(without)}
        r.hashes[PREFIX + key] = fields
    r.zsets[PREFIX + SPEND_BY_BUYER.key()] = {m: t[0] / 100 for m, t in all_time.items()}
    r.zsets[PREFIX + SPEND_BY_BUYER_WINDOW.key(window="30d")] = {m: t[0] / 100 for m, t in window.items()}
    return r


def test_spend_matches_totals_and_sorted_sets_counted_by_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = _spend_rows(monkeypatch)
    assert {int(r["id"]): r["buyer"] for r in rows}[3] == "Msinga Local Municipality"
    fam = FamilyReport("spend")
    _verify_spend(stores(r=_spend_store(_ALL, _WINDOW)), rows, settings(), SPEND_AS_OF, fam, EXAMPLES)
    assert (fam.checked, fam.drift, fam.examples) == (16, 0, [])


@pytest.mark.parametrize(
    ("where", "says"),
    [
        ("totals", "totals ZAR|Msinga Local Municipality: store (350050, 3, 0) != MySQL (350050, 2, 0)"),
        ("window zset", "30d sorted set ZAR|Msinga Local Municipality: store 1000.01 != MySQL 1000.0"),
        ("extra member", "sorted set ZAR|Nobody: store 5.0 != MySQL None"),
    ],
)
def test_spend_drift_names_the_member(monkeypatch: pytest.MonkeyPatch, where: str, says: str) -> None:
    r = _spend_store(_ALL, _WINDOW)
    member = "ZAR|Msinga Local Municipality"
    if where == "totals":
        r.hashes[PREFIX + SPEND_TOTALS.key()][f"t:{member}"] = "3"
    elif where == "window zset":
        r.zsets[PREFIX + SPEND_BY_BUYER_WINDOW.key(window="30d")][member] = 1000.01
    else:
        r.zsets[PREFIX + SPEND_BY_BUYER.key()]["ZAR|Nobody"] = 5.0
    fam = FamilyReport("spend")
    _verify_spend(stores(r=r), _spend_rows(monkeypatch), settings(), SPEND_AS_OF, fam, EXAMPLES)
    assert fam.drift == 1 and fam.examples[0].startswith(says)


@pytest.mark.parametrize(("missing", "drift"), [(None, 0), (8, 1)])
def test_activity_finds_each_outbox_event_in_the_log(
    monkeypatch: pytest.MonkeyPatch, missing: int | None, drift: int
) -> None:
    asked: list[int] = []

    def activity_rows(engine: sa.Engine, newest: int) -> list[dict[str, Any]]:
        asked.append(newest)
        return [{"id": i, "aggregate_id": "1", "payload": "{}", "created_at": None} for i in (9, 8, 7)]

    monkeypatch.setattr(verify_module, "activity_rows", activity_rows)
    monkeypatch.setattr(verify_module, "CHUNK", 2)  # two chunks
    logs = [{"_id": i, "action": "tender.viewed"} for i in (6, 7, 8, 9) if i != missing]
    fam = FamilyReport("activity")
    engine = cast(sa.Engine, object())  # only handed to activity_rows
    _verify_activity(
        stores(FakeDatabase({USER_ACTIVITY_LOGS.name: logs})), engine, settings(activity_log_max_docs=3), fam, 5
    )
    assert asked == [3]
    assert (fam.checked, fam.drift) == (3, drift)
    assert fam.examples == (
        [] if missing is None else [f"event {missing}: user.activity in the outbox, no log document"]
    )


def test_verify_refuses_unknown_families_and_negative_examples() -> None:
    with pytest.raises(VerifyError, match="unknown families \\['tops'\\]"):
        asyncio.run(verify_module.verify(settings(), ["spend", "tops"]))
    with pytest.raises(VerifyError, match="--examples must be >= 0"):
        asyncio.run(verify_module.verify(settings(), ["spend"], -1))
