"""FerretDB on the stack's own PostgreSQL: the backend it really runs on, least privilege, and what a guarded update
of a score document costs at both ends of a 20,000-document collection (reported, never asserted).

Runs a PostgreSQL and a FerretDB of their own (temporary stack folder, free ports), never the dev stack's.
"""

from __future__ import annotations

import json
import shutil
import socket
import statistics
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from bson.son import SON
from pymongo import ASCENDING, MongoClient

from schema.settings import load_stack_settings
from tenderhub.stack import (
    FERRETDB_DATABASE,
    FERRETDB_ROLE,
    PG_STATISTICS_TARGET,
    STACK_MARKER,
    FerretDB,
    PostgreSQL,
    Stack,
    StackError,
    _proc_start_time,
)

S = TypeVar("S")
DOCS = 20_000
PROBES = 40  # guarded updates timed at each end of the collection


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def pg_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # pytest's temporary folders are mode 0700: as root, the cluster must live where the `postgres` user can reach.
    root = tmp_path_factory.mktemp("ferretdb-pg")
    cfg = load_stack_settings(
        stack_dir=root / "stack",
        ferretdb_backend="postgresql",
        postgresql_port=_free_port(),
        mongo_port=_free_port(),
        ferretdb_debug_port=_free_port(),
    )
    stack = Stack(cfg)
    pg, ferretdb = _service(stack, PostgreSQL), _service(stack, FerretDB)
    try:
        for svc in (pg, ferretdb):
            svc.ensure_installed()  # cached FerretDB build, installed PostgreSQL: no network
            svc.start()
            svc.wait_healthy(60)
            svc.after_start()
        started = [(pid, _proc_start_time(pid)) for pid in (pg.running_pid(), ferretdb.running_pid()) if pid]
        assert len(started) == 2, started
        yield stack
    finally:
        stack.down(purge=True)
    # `down` stopped both (FerretDB first), and --purge removed the cluster's data, wherever it lived, with the rest.
    # The very processes, by PID and start time (the stack's own check; it also reaps an exited child of ours).
    still = [(pid, since) for pid, since in started if _proc_start_time(pid) == since]
    assert not still, (still, [(pid, Path(f"/proc/{pid}/status").read_text()[:300]) for pid, _ in still])
    assert not cfg.stack_dir.exists()
    assert not pg.home.exists(), pg.home


def _service(stack: Stack, kind: type[S]) -> S:
    return next(s for s in stack.services if isinstance(s, kind))


def _mongo(stack: Stack) -> MongoClient[dict[str, Any]]:
    return MongoClient(stack.mongo_url(), serverSelectionTimeoutMS=5000)


def test_ferretdb_runs_on_the_stacks_postgresql(pg_stack: Stack) -> None:
    ferretdb, pg = _service(pg_stack, FerretDB), _service(pg_stack, PostgreSQL)
    assert [s.name for s in pg_stack.services] == ["mysql", "kafka", "postgresql", "ferretdb", "redis"]
    assert ferretdb.running_backend() == "postgresql"
    debug = f"http://{pg_stack.cfg.stack_host}:{pg_stack.cfg.ferretdb_debug_port}/debug/vars"
    with urllib.request.urlopen(debug, timeout=5) as reply:
        cmdline = json.load(reply)["cmdline"]
    assert "--handler=postgresql" in cmdline, cmdline
    # The role's password reaches FerretDB through its environment, never a command line `ps` shows.
    password = pg_stack.secrets["postgresql_ferretdb_password"]
    for svc in (ferretdb, pg):
        pid = svc.running_pid()
        assert pid is not None
        assert password not in Path(f"/proc/{pid}/cmdline").read_text(), svc.name
    # What a MongoDB client writes lands in FerretDB's tables in the stack's PostgreSQL.
    db_name = f"t_backend_{uuid.uuid4().hex[:8]}"
    client = _mongo(pg_stack)
    try:
        client[db_name]["probe"].insert_many([{"n": n} for n in range(10)])
        tables = pg._psql(
            f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{db_name}' ORDER BY 1;",
            database=FERRETDB_DATABASE,
        ).split()
        assert any(t.startswith("probe_") for t in tables), tables
    finally:
        client.drop_database(db_name)
        client.close()


def test_ferretdb_role_owns_only_its_database(pg_stack: Stack) -> None:
    pg = _service(pg_stack, PostgreSQL)
    role = pg._psql(
        "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls FROM pg_roles "
        f"WHERE rolname = '{FERRETDB_ROLE}';"
    ).strip()
    assert role == "f|f|f|f|f", role
    owned = pg._psql(
        f"SELECT datname FROM pg_database WHERE datdba = (SELECT oid FROM pg_roles WHERE rolname = '{FERRETDB_ROLE}');"
    ).split()
    assert owned == [FERRETDB_DATABASE]
    # Only FerretDB's role, only its database, only over TCP on the stack's address: nothing else is let in.
    hba = [
        line.split()
        for line in (pg.datadir / "pg_hba.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert hba == [
        ["local", "all", pg.os_user, "peer"],
        ["host", FERRETDB_DATABASE, FERRETDB_ROLE, f"{pg_stack.cfg.stack_host}/32", "scram-sha-256"],
    ]
    assert pg.run_dir.stat().st_mode & 0o777 == 0o700


def test_switching_backend_needs_a_stack_down(pg_stack: Stack) -> None:
    sqlite_cfg = pg_stack.cfg.model_copy(update={"ferretdb_backend": "sqlite"})
    other = Stack(sqlite_cfg)
    assert "postgresql" not in [s.name for s in other.services]
    # The running PostgreSQL still shows (and `down` would stop it), though this configuration does not use it.
    assert "postgresql" in [row.name for row in other.status()]
    with pytest.raises(StackError) as err:
        _service(other, FerretDB).start()
    assert "TENDERHUB_FERRETDB_BACKEND" in str(err.value) and "stack down" in str(err.value)


def test_guarded_update_costs_about_the_same_at_both_ends_of_the_collection(pg_stack: Stack) -> None:
    """The readiness agent's guarded upsert (MongoSink's statement) against the first and the last documents of a
    20,000-document collection. FerretDB's SQLite backend decodes the documents stored before the match, so there the
    end costs hundreds of times the start; here PostgreSQL filters the rows (a scan in SQL, not in FerretDB)."""
    db_name = f"t_guard_{uuid.uuid4().hex[:8]}"
    client = _mongo(pg_stack)
    try:
        db = client[db_name]
        coll = db["scores"]
        coll.create_index([("team_id", ASCENDING), ("tender_id", ASCENDING)], unique=True, name="uq_team_tender")
        base = {"score": 71.5, "biddable": True, "rules_version": "3", "tender_status": "active", "blocked_by": []}
        started = time.perf_counter()
        for start in range(0, DOCS, 1000):
            coll.insert_many(
                [
                    {"team_id": 1 + n // 5000, "tender_id": n, **base, "tender_seq": 10, "team_seq": 10, "event_id": 1}
                    for n in range(start, start + 1000)
                ]
            )
        insert_s = time.perf_counter() - started

        def guarded(n: int) -> tuple[float, dict[str, Any]]:
            statement = {
                "q": {"team_id": 1 + n // 5000, "tender_id": n, "tender_seq": {"$lte": 11}, "team_seq": {"$lte": 11}},
                "u": {"$set": {**base, "score": 72.0, "tender_seq": 11, "team_seq": 11, "event_id": 2}},
                "upsert": True,
            }
            began = time.perf_counter()
            reply = db.command(SON([("update", "scores"), ("updates", [statement]), ("ordered", False)]))
            return time.perf_counter() - began, reply

        first = [guarded(n) for n in range(PROBES)]
        last = [guarded(n) for n in range(DOCS - PROBES, DOCS)]
        first_ms = statistics.median(t for t, _ in first) * 1000
        last_ms = statistics.median(t for t, _ in last) * 1000
        figures = (
            f"{DOCS:,} documents inserted in {insert_s:.1f} s; guarded update, median of {PROBES}: first documents "
            f"{first_ms:.1f} ms, last documents {last_ms:.1f} ms"
        )
        print(figures)
        # Each probe matched its one stored document and changed it (no upsert: the guard found the key).
        assert all(r["n"] == 1 and r["nModified"] == 1 and "upserted" not in r for _, r in first + last), figures
        assert coll.count_documents({"tender_seq": 11}) == 2 * PROBES, figures
        assert coll.count_documents({}) == DOCS, figures
    finally:
        client.drop_database(db_name)
        client.close()


NO_PENDING_LIST = "WITH (fastupdate=off)"


def _twins(pg: PostgreSQL, schema: str) -> dict[str, str]:
    """The GIN twins in a FerretDB database's schema: index name -> its definition."""
    rows = pg._psql(
        f"SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = '{schema}' "
        "AND indexname LIKE 'tenderhub_gin_%' ORDER BY 1;",
        database=FERRETDB_DATABASE,
    )
    return dict(line.split("|", 1) for line in rows.splitlines() if line)


def test_every_index_gets_a_gin_twin_that_serves_equality_filters(pg_stack: Stack) -> None:
    """FerretDB pushes `{field: value}` down as `_jsonb -> 'field' @> value`, which its own btree indexes cannot
    answer; the stack gives each index a GIN twin (ascending keys only), made and dropped with it, and PostgreSQL
    then answers the filter through the twin rather than by reading the table. The twins take no pending list
    (fastupdate off): every search would read it through, so a lookup would cost more with each write since the
    last vacuum."""
    pg = _service(pg_stack, PostgreSQL)
    db_name = f"t_twin_{uuid.uuid4().hex[:8]}"
    client = _mongo(pg_stack)
    try:
        db = client[db_name]
        coll = db["scores"]
        coll.insert_many([{"team_id": 1 + n % 50, "tender_id": n, "score": n % 100} for n in range(3000)])
        coll.create_index([("team_id", ASCENDING), ("tender_id", ASCENDING)], unique=True, name="uq_team_tender")
        coll.create_index([("team_id", ASCENDING), ("score", -1)], name="ix_team_score")
        coll.create_index([("nested.field", ASCENDING)], name="ix_nested")
        twins = sorted(_twins(pg, db_name).values())
        assert sorted(t.split("USING ", 1)[1] for t in twins) == [
            f"gin (((_jsonb -> '_id'::text))) {NO_PENDING_LIST}",
            f"gin (((_jsonb -> 'team_id'::text))) {NO_PENDING_LIST}",
            f"gin (((_jsonb -> 'team_id'::text)), ((_jsonb -> 'tender_id'::text))) {NO_PENDING_LIST}",
        ], twins  # the dotted path has none: FerretDB filters it with #>, which these do not serve
        pg._psql(f"ANALYZE {twins[0].split(' ON ', 1)[1].split(' ', 1)[0]};", database=FERRETDB_DATABASE)
        plan = json.dumps(db.command("explain", {"find": "scores", "filter": {"team_id": 7, "tender_id": 1006}}))
        assert "tenderhub_gin_" in plan and "Seq Scan" not in plan, plan
        assert coll.find_one({"team_id": 7, "tender_id": 1006}, {"_id": 0}) == {
            "team_id": 7,
            "tender_id": 1006,
            "score": 6,
        }
        # Dropped with their index; and an index made while the triggers were away gets one at the next start.
        coll.drop_index("ix_team_score")
        assert len(_twins(pg, db_name)) == 2
        pg._psql(
            f'DROP EVENT TRIGGER tenderhub_index_created; DROP INDEX "{db_name}".{sorted(_twins(pg, db_name))[0]};',
            database=FERRETDB_DATABASE,
        )
        coll.create_index([("score", ASCENDING)], name="ix_score")
        assert len(_twins(pg, db_name)) == 1
        # A twin made by an older stack, with a pending list, loses it at the next start.
        pg._psql(
            f'ALTER INDEX "{db_name}".{sorted(_twins(pg, db_name))[0]} RESET (fastupdate);', database=FERRETDB_DATABASE
        )
        assert NO_PENDING_LIST not in next(iter(_twins(pg, db_name).values()))
        pg.after_start()  # what every `stack up` runs
        assert sorted(t.split("USING ", 1)[1] for t in _twins(pg, db_name).values()) == [
            f"gin (((_jsonb -> '_id'::text))) {NO_PENDING_LIST}",
            f"gin (((_jsonb -> 'score'::text))) {NO_PENDING_LIST}",
            f"gin (((_jsonb -> 'team_id'::text)), ((_jsonb -> 'tender_id'::text))) {NO_PENDING_LIST}",
        ]
    finally:
        client.drop_database(db_name)
        client.close()
    assert _twins(pg, db_name) == {}


def test_the_capped_clean_ups_statistics_sample_a_tenth_of_the_default(pg_stack: Stack) -> None:
    """FerretDB refreshes a capped collection's statistics (ANALYZE) twice per clean-up round, with a VACUUM ANALYZE
    between, every few seconds: at PostgreSQL's default target each samples 30,000 rows and an activity log's
    clean-up took a third of a core while the worker wrote. The stack's PostgreSQL keeps 10 buckets, not 100, and the
    twins still serve an equality on a skewed field."""
    pg = _service(pg_stack, PostgreSQL)
    db_name = f"t_stats_{uuid.uuid4().hex[:8]}"
    client = _mongo(pg_stack)
    try:
        db = client[db_name]
        db.create_collection("logs", capped=True, size=64 * 1024 * 1024)
        db["logs"].create_index([("user_id", ASCENDING)], name="ix_user")
        # One busy user among many quiet ones: the shape an equality estimate can get wrong.
        db["logs"].insert_many([{"_id": n, "user_id": 1 if n % 3 == 0 else n, "n": n} for n in range(1, 6001)])
        db.command("collStats", "logs")  # FerretDB's own refresh: what the clean-up round calls
        rows = pg._psql(
            "SELECT tablename, attname, coalesce(array_length(histogram_bounds::text::text[], 1), 0), "
            f"coalesce(array_length(most_common_freqs, 1), 0) FROM pg_stats WHERE schemaname = '{db_name}' "
            "AND tablename LIKE 'logs%';",
            database=FERRETDB_DATABASE,
        )
        sizes = [tuple(line.split("|")) for line in rows.splitlines() if line]
        assert sizes, rows  # the table's and the index expressions' statistics exist
        assert all(
            int(hist) <= PG_STATISTICS_TARGET + 1 and int(mcv) <= PG_STATISTICS_TARGET for *_, hist, mcv in sizes
        )
        assert any(int(hist) > 1 for *_, hist, _ in sizes), sizes  # and are not empty
        plan = json.dumps(db.command("explain", {"find": "logs", "filter": {"user_id": 4}}))
        assert "tenderhub_gin_" in plan and "Seq Scan" not in plan, plan
        assert [d["n"] for d in db["logs"].find({"user_id": 4})] == [4]
    finally:
        client.drop_database(db_name)
        client.close()


def test_clusters_of_deleted_stack_folders_are_removed_and_others_kept(pg_stack: Stack, tmp_path: Path) -> None:
    pg = _service(pg_stack, PostgreSQL)
    if pg.home == pg.dir:  # not root: the cluster lives in the stack folder and goes with it
        assert not (pg.home / STACK_MARKER).exists()
        return
    assert (pg.home / STACK_MARKER).read_text().strip() == str(pg_stack.root)
    gone, kept, unmarked = (pg.home.parent / f"t-{uuid.uuid4().hex[:8]}" for _ in range(3))
    try:
        for folder, root in ((gone, tmp_path / "deleted-clone"), (kept, tmp_path)):
            (folder / "data").mkdir(parents=True)
            (folder / STACK_MARKER).write_text(f"{root}\n")
        (unmarked / "data").mkdir(parents=True)
        pg.initialise()  # what every `up` runs
        assert not gone.exists()
        assert kept.exists() and unmarked.exists() and pg.datadir.exists()
    finally:
        for folder in (gone, kept, unmarked):
            shutil.rmtree(folder, ignore_errors=True)
