"""The CDC relay against the real MariaDB binlog and Kafka: envelope, DLQ, backfill, crash safety, SIGTERM."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import defaultdict
from typing import Any

import pytest
import sqlalchemy as sa

from cdc.outbox import write_event
from schema.events import ContractError
from schema.mysql import connect
from schema.settings import Settings
from tenderhub.processes import RelayEnv, RelayProcess
from tests.integration.relay_harness import Consumed, Writer, consume, kill_repeatedly, run


def activity(uid: str, user_id: int, n: int) -> dict[str, Any]:
    return {"user_id": user_id, "team_id": 1, "action": "tender.viewed", "details": {"test": uid, "n": n}}


def insert_activities(engine: sa.Engine, uid: str, sizes: list[int], users: int = 50) -> list[int]:
    """Insert user.activity events in transactions of the given sizes; return the event ids in commit order."""
    ids: list[int] = []
    n = 0
    for size in sizes:
        with engine.begin() as conn:
            for _ in range(size):
                ids.append(write_event(conn, "user.activity", n % users + 1, activity(uid, n % users + 1, n)))
                n += 1
    return ids


def mine(records: list[Consumed], uid: str) -> list[Consumed]:
    return [r for r in records if r.value.get("payload", {}).get("details", {}).get("test") == uid]


def assert_exactly_once_in_order(records: list[Consumed], expected_ids: list[int]) -> None:
    got = [r.value["event_id"] for r in records]
    missing = set(expected_ids) - set(got)
    duplicates = len(got) - len(set(got))
    assert not missing, f"{len(missing)} missing, e.g. {sorted(missing)[:10]}"
    assert duplicates == 0, f"{duplicates} duplicates"
    by_key: dict[tuple[str, int], list[int]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
        assert r.key is not None and r.key.decode() == r.value["aggregate_id"]
        by_key[(r.value["aggregate_id"], r.partition)].append(r.value["source_seq"])
    for key, seqs in by_key.items():
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), f"order broken for aggregate {key}"


def test_writer_rejects_contract_violations_before_insert(engine: sa.Engine) -> None:
    with pytest.raises(ContractError, match="action"), engine.begin() as conn:
        write_event(conn, "user.activity", 3, {"user_id": 3, "team_id": 1, "action": "Bad Action"})
    with pytest.raises(ContractError, match="does not match"), engine.begin() as conn:
        write_event(conn, "user.activity", 4, {"user_id": 3, "team_id": 1, "action": "x"})


def test_writer_event_rolls_back_with_the_business_change(engine: sa.Engine, settings: Settings, uid: str) -> None:
    with pytest.raises(RuntimeError), engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO teams (name) VALUES (:n)"), {"n": f"rollback-{uid}"})
        event_id = write_event(conn, "user.activity", 1, activity(uid, 1, 0))
        raise RuntimeError("the business change failed")
    with connect(settings.mysql_admin, settings.mysql.database) as admin, admin.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM integration_outbox WHERE id = %s", (event_id,))
        assert cur.fetchone() == (0,)
        cur.execute("SELECT COUNT(*) FROM teams WHERE name = %s", (f"rollback-{uid}",))
        assert cur.fetchone() == (0,)


def test_relay_publishes_envelopes_keyed_by_aggregate(renv: RelayEnv, engine: sa.Engine, uid: str) -> None:
    relay = RelayProcess(renv, "--from-now").start()
    try:
        relay.wait_committed()
        ids = insert_activities(engine, uid, [1, 3, 1])
        records = mine(run(consume(renv.settings.kafka_bootstrap, [f"{renv.prefix}activity"], len(ids))), uid)
        assert_exactly_once_in_order(records, ids)
        first = next(r for r in records if r.value["event_id"] == ids[0])
        env = first.value
        assert env["event_type"] == "user.activity" and env["aggregate_type"] == "activity"
        assert env["schema_version"] == 1 and env["payload"]["user_id"] == 1
        assert env["occurred_at"].endswith("Z") and "." in env["occurred_at"]
        assert first.headers["event_id"] == str(ids[0]).encode()
        assert first.headers["event_type"] == b"user.activity"
        assert first.headers["source_seq"] == str(env["source_seq"]).encode()
        # source_seq grows with commit order, across and within transactions.
        seqs = [r.value["source_seq"] for r in sorted(records, key=lambda r: r.value["event_id"])]
        assert seqs == sorted(seqs)
        metrics = relay.metrics()
        assert metrics[f'tenderhub_relay_events_total{{topic="{renv.prefix}activity"}}'] >= len(ids)
        assert metrics["tenderhub_relay_lag_ms"] >= 0
        # What the relay built at start-up is out of the collector's full passes (schema/heap.py), whose pauses are
        # measured: a full pass over the whole heap stalled every event in flight.
        assert metrics["tenderhub_gc_frozen_objects"] > 10_000
        assert metrics['tenderhub_gc_pause_seconds_count{generation="0"}'] >= 1
        assert relay.terminate() == 0
    finally:
        relay.kill()


def test_contract_violations_and_oversized_rows_go_to_the_dlq(
    renv: RelayEnv, settings: Settings, engine: sa.Engine, uid: str
) -> None:
    relay = RelayProcess(renv, "--from-now").start()
    try:
        relay.wait_committed()
        bad = [
            ("tender.exploded", "tender", "5", 1, json.dumps({"tender_id": 5, "test": uid}), "unknown event type"),
            ("user.activity", "activity", "6", 7, json.dumps({"user_id": 6, "test": uid}), "schema_version 7"),
            (
                "user.activity",
                "activity",
                "7",
                1,
                json.dumps({"user_id": "7", "team_id": 1, "action": "a", "test": uid}),
                "user_id",
            ),
            ("user.activity", "activity", "", 1, json.dumps({"user_id": 7, "test": uid}), "aggregate_id"),
        ]
        # Undeclared fields are unbounded (the details object holds at most 16 KiB): only the broker limit stops it.
        huge = json.dumps({**activity(uid, 8, 0), "blob": "x" * 2_000_000})
        with connect(settings.mysql, settings.mysql.database) as conn, conn.cursor() as cur:
            for event_type, agg, agg_id, version, payload, _ in bad:
                cur.execute(
                    "INSERT INTO integration_outbox (event_type, aggregate_type, aggregate_id, schema_version, "
                    "payload) VALUES (%s, %s, %s, %s, %s)",
                    (event_type, agg, agg_id, version, payload),
                )
            cur.execute(
                "INSERT INTO integration_outbox (event_type, aggregate_type, aggregate_id, payload) "
                "VALUES ('user.activity', 'activity', '8', %s)",
                (huge,),
            )
            huge_id = cur.lastrowid
        good = insert_activities(engine, uid, [1])  # the stream keeps flowing after bad rows
        dlq = run(consume(settings.kafka_bootstrap, [f"{renv.prefix}dlq"], len(bad) + 1))
        reasons = [r.value["reason"] for r in dlq]
        for *_, expected in bad:
            assert any(expected in reason for reason in reasons), (expected, reasons)
        contract = [r for r in dlq if r.value["reason"] != "oversized"]
        assert all(r.value["row"]["payload"] and r.value["event_id"] for r in contract)
        oversized = next(r.value for r in dlq if r.value["reason"] == "oversized")
        assert oversized["event_id"] == huge_id and oversized["size"] > 2_000_000
        assert len(oversized["sha256"]) == 64 and 0 < len(oversized["sample"]) <= 2048
        records = mine(run(consume(settings.kafka_bootstrap, [f"{renv.prefix}activity"], 1)), uid)
        assert [r.value["event_id"] for r in records] == good
        assert relay.terminate() == 0
    finally:
        relay.kill()


def test_first_start_backfills_unpublished_rows_without_gap_or_duplicate(
    renv: RelayEnv, engine: sa.Engine, uid: str
) -> None:
    before = insert_activities(engine, uid, [500, 1, 1, 200])
    during: list[int] = []
    stop = threading.Event()

    def keep_inserting() -> None:
        n = 0
        while not stop.is_set() and n < 400:
            during.extend(insert_activities(engine, uid, [random.randint(1, 20)]))
            n += 1

    writer = threading.Thread(target=keep_inserting)
    writer.start()
    relay = RelayProcess(renv).start()  # no position yet: backfill, then stream
    try:
        relay.wait_committed()
        time.sleep(1.0)
        stop.set()
        writer.join()
        expected = before + during
        records = mine(
            run(consume(renv.settings.kafka_bootstrap, [f"{renv.prefix}activity"], len(expected), timeout=90)), uid
        )
        assert_exactly_once_in_order(records, expected)
        assert relay.terminate() == 0
    finally:
        stop.set()
        relay.kill()


def test_published_rows_are_marked_after_commit(
    renv: RelayEnv, engine: sa.Engine, settings: Settings, uid: str
) -> None:
    relay = RelayProcess(renv, "--from-now").start()
    try:
        relay.wait_committed()
        ids = insert_activities(engine, uid, [10])
        run(consume(settings.kafka_bootstrap, [f"{renv.prefix}activity"], len(ids)))
        deadline = time.monotonic() + 10
        with connect(settings.mysql_admin, settings.mysql.database) as conn, conn.cursor() as cur:
            while True:
                cur.execute(
                    f"SELECT COUNT(*) FROM integration_outbox_status WHERE published AND published_at IS NOT NULL "
                    f"AND id IN ({','.join(map(str, ids))})"
                )
                row = cur.fetchone()
                if (row and row[0] == len(ids)) or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        assert row == (len(ids),)
        assert relay.terminate() == 0
    finally:
        relay.kill()


def test_sigkill_at_random_moments_loses_and_duplicates_nothing(renv: RelayEnv, engine: sa.Engine, uid: str) -> None:
    """>= 20 SIGKILLs while 50,000 rows (some in 1,000-row transactions) are inserted: 0 missing, 0 duplicates,
    per-aggregate order kept, for a read_committed consumer."""
    rng = random.Random(uid)
    sizes = [1000] * 20
    while sum(sizes) < 50_000:
        sizes.append(rng.choice([1, 1, 1, 2, 5, 10, 50, 200]))
    sizes[-1] -= sum(sizes) - 50_000
    rng.shuffle(sizes)
    relay = RelayProcess(renv, "--from-now").start()
    relay.wait_committed()  # the from-now position exists before the first insert: every later start resumes
    ids: list[int] = []
    writer = threading.Thread(target=lambda: ids.extend(insert_activities(engine, uid, sizes)))
    writer.start()
    try:
        kills = kill_repeatedly(relay, rng, writer, at_least=20, pause_s=(0.2, 2.5))
        writer.join()
        assert len(ids) == 50_000 and kills >= 20
        records = mine(
            run(consume(renv.settings.kafka_bootstrap, [f"{renv.prefix}activity"], len(ids), timeout=180, settle_s=3)),
            uid,
        )
        assert_exactly_once_in_order(records, ids)
        # SIGTERM: flush, commit, exit 0.
        assert relay.terminate() == 0, relay.tail()
        print(f"sigkill test: {kills} kills, {len(ids)} rows, {len(records)} received, 0 missing, 0 duplicates")
    finally:
        relay.kill()
    from tests.integration.test_cdc_bookkeeping import assert_resnapshot_adds_nothing, wait_all_published

    # Marks survived every kill (the committed positions listed the unmarked ids), so a resnapshot finds nothing
    # of these to publish again.
    unmarked = set(ids) - wait_all_published(renv.settings, ids)
    assert not unmarked, f"{len(unmarked)} committed rows never marked published, e.g. {sorted(unmarked)[:5]}"
    assert_resnapshot_adds_nothing(renv, uid, ids)


def test_polling_mode_survives_sigkills_exactly_once(renv: RelayEnv, engine: sa.Engine, uid: str) -> None:
    """Polling mode (no binlog access): SKIP LOCKED batches, marked in the same MySQL transaction; a kill between
    the Kafka commit and the MySQL commit is repaired from the position's batch ids, never republished."""
    rng = random.Random(uid)
    relay = RelayProcess(renv, TENDERHUB_RELAY_MODE="polling", TENDERHUB_RELAY_BATCH_ROWS="200").start()
    sizes = [rng.choice([1, 3, 20, 100]) for _ in range(200)]
    try:
        relay.wait_serving()
        writer = Writer(lambda: insert_activities(engine, uid, sizes))
        writer.start()
        kills = kill_repeatedly(relay, rng, writer, at_least=8, pause_s=(0.3, 1.5))
        ids: list[int] = writer.result()
        assert len(ids) == sum(sizes)
        records = mine(
            run(consume(renv.settings.kafka_bootstrap, [f"{renv.prefix}activity"], len(ids), timeout=120, settle_s=3)),
            uid,
        )
        assert_exactly_once_in_order(records, ids)
        assert relay.terminate() == 0, relay.tail()
        print(f"polling: {kills} kills, {len(ids)} rows, 0 missing, 0 duplicates")
    finally:
        relay.kill()


def test_polling_mode_skips_rows_a_binlog_relay_recorded(
    renv: RelayEnv, engine: sa.Engine, settings: Settings, uid: str
) -> None:
    """A deployment that moves from binlog to polling mode: rows a binlog relay recorded as published (runs, not row
    flags) are not published again; the rest are."""
    from cdc.bookkeeping import record_published

    recorded = insert_activities(engine, uid, [5, 1])
    with connect(settings.relay_mysql, settings.relay_mysql.database) as conn:
        record_published(conn, f"b{uid}", [(i, i) for i in recorded])
    fresh = insert_activities(engine, uid, [4])
    relay = RelayProcess(renv, TENDERHUB_RELAY_MODE="polling").start()
    try:
        records = mine(
            run(consume(renv.settings.kafka_bootstrap, [f"{renv.prefix}activity"], len(fresh), settle_s=3)), uid
        )
        assert relay.terminate() == 0, relay.tail()
    finally:
        relay.kill()
    assert_exactly_once_in_order(records, fresh)
    assert not {r.value["event_id"] for r in records} & set(recorded)


def test_missing_topics_stop_the_relay_with_the_fix(settings: Settings, uid: str) -> None:
    relay = RelayProcess(RelayEnv(uid, settings), "--from-now").start()  # topics never declared for this prefix
    assert relay.proc is not None
    assert relay.proc.wait(60) == 2
    assert "do not exist. Fix: run `tenderhub migrate`" in relay.tail(5)


def delete_rows(settings: Settings, retention_hours: float) -> int:
    """The janitor's row-by-row path (an outbox that is not partitioned), as the relay account."""
    from cdc.bookkeeping import delete_published as delete_published_rows

    with connect(settings.relay_mysql, settings.relay_mysql.database) as conn:
        return delete_published_rows(conn, retention_hours)


def test_janitor_deletes_only_published_rows_past_retention(engine: sa.Engine, settings: Settings, uid: str) -> None:
    old_published = insert_activities(engine, uid, [3])
    unpublished = insert_activities(engine, uid, [2])
    with connect(settings.relay_mysql, settings.relay_mysql.database) as conn, conn.cursor() as cur:
        cur.execute(
            f"UPDATE integration_outbox SET published = TRUE, published_at = NOW(3) "
            f"WHERE id IN ({','.join(map(str, old_published))})"
        )
    time.sleep(1.5)
    fresh_published = insert_activities(engine, uid, [2])
    with connect(settings.relay_mysql, settings.relay_mysql.database) as conn, conn.cursor() as cur:
        cur.execute(
            f"UPDATE integration_outbox SET published = TRUE, published_at = NOW(3) "
            f"WHERE id IN ({','.join(map(str, fresh_published))})"
        )
    # Retention of one second (as the relay user, with its DELETE grant); row by row, as on an unpartitioned outbox.
    assert delete_rows(settings, 1 / 3600) >= len(old_published)
    with connect(settings.mysql_admin, settings.mysql.database) as conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT id FROM integration_outbox WHERE id IN "
            f"({','.join(map(str, old_published + unpublished + fresh_published))})"
        )
        left = {row[0] for row in cur.fetchall()}
    assert left == set(unpublished + fresh_published)


def test_janitor_deletes_the_rows_of_runs_past_retention_and_the_runs(
    engine: sa.Engine, settings: Settings, uid: str
) -> None:
    """Binlog mode's bookkeeping: runs of published ids (`cdc.bookkeeping`). A run past the retention loses its rows,
    then itself; a fresh run and rows no run covers stay."""
    from cdc.bookkeeping import record_published

    old = insert_activities(engine, uid, [4])
    unpublished = insert_activities(engine, uid, [2])
    fresh = insert_activities(engine, uid, [3])
    source = f"j{uid}"
    with connect(settings.relay_mysql, settings.relay_mysql.database) as conn:
        tail = record_published(conn, source, [(old[0], old[1])])
        assert record_published(conn, source, [(old[2], old[3])], tail) == (old[0], old[3])  # extended, one row
        record_published(conn, source, [(fresh[0], fresh[-1])])
    with connect(settings.mysql_admin, settings.mysql.database) as conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE integration_outbox_published SET published_at = NOW(3) - INTERVAL 2 HOUR "
            "WHERE relay_source = %s AND first_id = %s",
            (source, old[0]),
        )
    assert delete_rows(settings, 1) >= len(old)
    with connect(settings.mysql_admin, settings.mysql.database) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT id FROM integration_outbox WHERE id IN ({','.join(map(str, old + unpublished + fresh))})")
        left = {row[0] for row in cur.fetchall()}
        cur.execute("SELECT first_id, last_id FROM integration_outbox_published WHERE relay_source = %s", (source,))
        runs = set(cur.fetchall())
    assert left == set(unpublished + fresh)
    assert runs == {(fresh[0], fresh[-1])}
