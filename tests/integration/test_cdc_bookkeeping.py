"""Relay bookkeeping and the edges of the source against the real MariaDB and Kafka: marks that survive crashes,
a source_seq that never goes backwards, per-row defects, GTID domains, least privilege, paused polling leaders."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pymysql
import pytest
import sqlalchemy as sa

from cdc.connections import polling_connection, relay_connection
from cdc.marker import PublishedMarker
from cdc.outbox import write_event, write_events
from cdc.position import id_ranges
from schema.mysql import connect, migrate
from schema.settings import Settings
from tenderhub.processes import RelayEnv, RelayProcess
from tenderhub.smoke import binlog_bytes
from tests.integration.relay_harness import consume, run
from tests.integration.test_cdc_relay import activity, assert_exactly_once_in_order, insert_activities, mine


def _published(settings: Settings, ids: list[int]) -> set[int]:
    """The ids the operator's view shows as published (row flags or recorded runs), as the reader account."""
    with connect(settings.mysql_reader, settings.mysql.database) as conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT id FROM integration_outbox_status WHERE published AND published_at IS NOT NULL "
            f"AND id IN ({','.join(map(str, ids))})"
        )
        return {int(r[0]) for r in cur.fetchall()}


def wait_all_published(settings: Settings, ids: list[int], timeout: float = 20) -> set[int]:
    deadline = time.monotonic() + timeout
    while True:
        done = _published(settings, ids)
        if done == set(ids) or time.monotonic() > deadline:
            return done
        time.sleep(0.2)


def assert_resnapshot_adds_nothing(renv: RelayEnv, uid: str, ids: list[int]) -> None:
    """A `--resnapshot` after everything was committed publishes none of these events again."""
    relay = RelayProcess(renv, "--resnapshot").start()
    try:
        relay.wait_committed(timeout=60)
        assert relay.terminate() == 0, relay.tail()
    finally:
        relay.kill()
    records = mine(
        run(consume(renv.settings.kafka_bootstrap, [f"{renv.prefix}activity"], len(ids), timeout=90, settle_s=3)), uid
    )
    assert_exactly_once_in_order(records, ids)


@contextmanager
def relay_cannot_mark(settings: Settings) -> Iterator[None]:
    """Take the relay account's INSERT and UPDATE on the published runs away (its records fail, Kafka commits go
    on); `migrate` then restores exactly the declared grants."""
    account = f"'{settings.relay_mysql.user}'@'{settings.mysql_grant_host}'"
    with connect(settings.mysql_admin) as conn, conn.cursor() as cur:
        cur.execute(f"REVOKE INSERT, UPDATE ON `{settings.mysql.database}`.integration_outbox_published FROM {account}")
    try:
        yield
    finally:
        migrate(settings)


def test_sigkill_between_commit_and_marking_heals_on_restart_and_resnapshot_adds_nothing(
    renv: RelayEnv, engine: sa.Engine, settings: Settings, uid: str
) -> None:
    relay = RelayProcess(renv, "--from-now").start()
    try:
        relay.wait_committed()
        with relay_cannot_mark(settings):
            ids = insert_activities(engine, uid, [40, 1, 25])
            records = mine(run(consume(settings.kafka_bootstrap, [f"{renv.prefix}activity"], len(ids))), uid)
            assert_exactly_once_in_order(records, ids)  # Kafka holds them ...
            assert _published(settings, ids) == set()  # ... MySQL does not say so yet
            relay.kill()  # the in-memory marks die here
        relay.start()
        assert wait_all_published(settings, ids) == set(ids), relay.tail()
        assert relay.terminate() == 0, relay.tail()
    finally:
        relay.kill()
    assert_resnapshot_adds_nothing(renv, uid, ids)


def test_lost_polling_position_numbers_above_what_the_topics_hold(renv: RelayEnv, engine: sa.Engine, uid: str) -> None:
    first = insert_activities(engine, uid, [30, 5])
    relay = RelayProcess(renv, TENDERHUB_RELAY_MODE="polling").start()
    try:
        relay.wait_committed()
        run(consume(renv.settings.kafka_bootstrap, [f"{renv.prefix}activity"], len(first)))
        assert relay.terminate() == 0, relay.tail()
    finally:
        relay.kill()
    second = insert_activities(engine, uid, [10])
    # Same topics, another source name: the committed position is gone (its batch numbers would restart at 1).
    lost = RelayProcess(renv, TENDERHUB_RELAY_MODE="polling", TENDERHUB_RELAY_SOURCE_NAME=f"{renv.source}lost").start()
    try:
        records = mine(
            run(consume(renv.settings.kafka_bootstrap, [f"{renv.prefix}activity"], len(first) + len(second))), uid
        )
        assert lost.terminate() == 0, lost.tail()
    finally:
        lost.kill()
    assert_exactly_once_in_order(records, first + second)
    seq = {r.value["event_id"]: r.value["source_seq"] for r in records}
    assert min(seq[i] for i in second) > max(seq[i] for i in first)


def _insert_zero_date_row(settings: Settings, uid: str) -> int:
    with connect(settings.mysql_admin, settings.mysql.database) as conn, conn.cursor() as cur:
        cur.execute("SET SESSION sql_mode = ''")  # what a lenient server or an old import lets through
        cur.execute(
            "INSERT INTO integration_outbox (event_type, aggregate_type, aggregate_id, schema_version, payload, "
            "created_at) VALUES ('user.activity', 'activity', '7', 1, %s, '0000-00-00 00:00:00')",
            (json.dumps(activity(uid, 7, -1)),),
        )
        return int(cur.lastrowid)


@pytest.mark.parametrize("mode", ["polling", "backfill"])
def test_zero_created_at_goes_to_the_dlq_and_the_stream_flows(
    mode: str, renv: RelayEnv, engine: sa.Engine, settings: Settings, uid: str
) -> None:
    before = insert_activities(engine, uid, [3])
    bad = _insert_zero_date_row(settings, uid)
    after = insert_activities(engine, uid, [4])
    extra = {"TENDERHUB_RELAY_MODE": "polling"} if mode == "polling" else {}
    relay = RelayProcess(renv, **extra).start()  # binlog mode without a position: backfill
    try:
        records = run(consume(settings.kafka_bootstrap, [f"{renv.prefix}activity", f"{renv.prefix}dlq"], 8, timeout=60))
        good = mine([r for r in records if r.topic.endswith("activity")], uid)
        assert_exactly_once_in_order(good, before + after)
        dead = [r for r in records if r.topic.endswith("dlq") and r.value.get("event_id") == bad]
        assert len(dead) == 1 and "created_at" in dead[0].value["reason"], [r.value for r in records][-3:]
        assert relay.proc is not None and relay.proc.poll() is None, relay.tail()
        assert relay.terminate() == 0, relay.tail()
    finally:
        relay.kill()


def _processlist_ids(settings: Settings) -> dict[int, int]:
    with connect(settings.mysql_admin) as conn, conn.cursor() as cur:
        cur.execute("SELECT ID, TIME FROM information_schema.PROCESSLIST WHERE USER = %s", (settings.relay_mysql.user,))
        return {int(i): int(t) for i, t in cur.fetchall()}


def test_outbox_row_in_another_gtid_domain_stops_the_relay_and_other_domains_are_tracked(
    renv: RelayEnv, engine: sa.Engine, settings: Settings, uid: str
) -> None:
    relay = RelayProcess(renv, "--from-now").start()
    try:
        relay.wait_tailing()
        with connect(settings.mysql_admin, settings.mysql.database) as conn, conn.cursor() as cur:
            # A DBA's out-of-band change in a domain of its own: no outbox row, nothing to relay.
            cur.execute("SET SESSION gtid_domain_id = 7")
            cur.execute("CREATE TABLE IF NOT EXISTS dba_probe (id INT PRIMARY KEY, note VARCHAR(20))")
            cur.execute("REPLACE INTO dba_probe VALUES (1, %s)", (uid,))
        ids = insert_activities(engine, uid, [5])
        records = mine(run(consume(settings.kafka_bootstrap, [f"{renv.prefix}activity"], len(ids))), uid)
        assert_exactly_once_in_order(records, ids)
        errors = sum(v for k, v in relay.metrics().items() if k.startswith("tenderhub_relay_errors_total"))
        assert errors == 0, relay.tail()
        # An outbox row in that domain cannot be ordered against the relay's domain: stop with the remedy.
        with connect(settings.mysql_admin, settings.mysql.database) as conn, conn.cursor() as cur:
            cur.execute("SET SESSION gtid_domain_id = 7")
            cur.execute(
                "INSERT INTO integration_outbox (event_type, aggregate_type, aggregate_id, payload) "
                "VALUES ('user.activity', 'activity', '7', %s)",
                (json.dumps(activity(uid, 7, -2)),),
            )
        assert relay.proc is not None
        assert relay.proc.wait(60) == 2, relay.tail()
        assert "GTID domain 7" in relay.tail(10) and "TENDERHUB_RELAY_GTID_DOMAIN" in relay.tail(10)
    finally:
        relay.kill()
        with connect(settings.mysql_admin, settings.mysql.database) as conn, conn.cursor() as cur:
            # Leave no domain-7 outbox row for later relays that backfill: mark it as handled.
            cur.execute(
                "UPDATE integration_outbox SET published = TRUE, published_at = NOW(3) WHERE JSON_VALUE(payload, "
                "'$.details.test') = %s AND NOT published",
                (uid,),
            )


@pytest.mark.parametrize(
    ("columns", "values"),
    [
        ("published", "TRUE"),
        ("published_at", "NOW(3)"),
        ("created_at", "'2020-01-01 00:00:00'"),
        ("id", "99999999999"),
    ],
)
def test_app_account_cannot_set_the_relays_outbox_columns(
    columns: str, values: str, settings: Settings, uid: str
) -> None:
    with connect(settings.mysql, settings.mysql.database) as conn, conn.cursor() as cur:
        with pytest.raises(pymysql.err.OperationalError) as err:
            cur.execute(
                f"INSERT INTO integration_outbox (event_type, aggregate_type, aggregate_id, payload, {columns}) "
                f"VALUES ('user.activity', 'activity', '1', %s, {values})",
                (json.dumps(activity(uid, 1, 0)),),
            )
        assert err.value.args[0] == 1143  # ER_COLUMNACCESS_DENIED_ERROR


def test_relay_sessions_read_timestamps_in_utc(settings: Settings) -> None:
    with relay_connection(settings.relay_mysql) as conn, conn.cursor() as cur:
        cur.execute("SELECT @@session.time_zone")
        assert cur.fetchone() == ("+00:00",)
    conn2: Any = polling_connection(settings)
    try:
        with conn2.cursor() as cur:
            cur.execute("SELECT @@session.time_zone, @@session.wait_timeout")
            assert cur.fetchone() == ("+00:00", settings.relay_lock_timeout_s)
    finally:
        conn2.close()


def test_paused_polling_leader_loses_its_session_and_the_standby_publishes(
    renv: RelayEnv, engine: sa.Engine, settings: Settings, uid: str
) -> None:
    bound = {"TENDERHUB_RELAY_MODE": "polling", "TENDERHUB_RELAY_LOCK_TIMEOUT_S": "3"}
    before = set(_processlist_ids(settings))
    leader = RelayProcess(renv, **bound).start()
    standby: RelayProcess | None = None
    try:
        first = insert_activities(engine, uid, [20])
        leader.wait_committed()
        sessions = set(_processlist_ids(settings)) - before
        assert sessions, "the leader holds no MySQL session?"
        assert leader.proc is not None
        leader.proc.send_signal(signal.SIGSTOP)  # paused, not dead: it answers nothing, holds whatever it held
        standby = RelayProcess(renv, **bound).start()
        time.sleep(3 * 3)
        # Without a bound, its polling session (and any row locks) would live for the server's wait_timeout (8 h).
        left = sessions & set(_processlist_ids(settings))
        assert not left, f"sessions of the paused leader still open: {left}"
        second = insert_activities(engine, uid, [15])
        records = mine(
            run(consume(settings.kafka_bootstrap, [f"{renv.prefix}activity"], len(first) + len(second), timeout=60)),
            uid,
        )
        try:
            assert_exactly_once_in_order(records, first + second)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- standby's log:\n{standby.tail(60)}") from None
    finally:
        if leader.proc is not None and leader.proc.poll() is None:
            leader.proc.send_signal(signal.SIGCONT)
        leader.kill()
        if standby is not None:
            standby.kill()


def _xa_insert(settings: Settings, uid: str, xid: str, n: int, outcome: str) -> list[int]:
    """Outbox rows written in an XA transaction (two-phase: prepared, then committed or rolled back)."""
    ids = []
    with connect(settings.mysql, settings.mysql.database) as conn, conn.cursor() as cur:
        cur.execute(f"XA START '{xid}'")
        for i in range(n):
            cur.execute(
                "INSERT INTO integration_outbox (event_type, aggregate_type, aggregate_id, payload) "
                "VALUES ('user.activity', 'activity', '3', %s)",
                (json.dumps(activity(uid, 3, 1000 + i)),),
            )
            ids.append(int(cur.lastrowid))
        cur.execute(f"XA END '{xid}'")
        cur.execute(f"XA PREPARE '{xid}'")
    # XA COMMIT/ROLLBACK of a prepared transaction may come from any session (a transaction manager's recovery).
    with connect(settings.mysql, settings.mysql.database) as conn, conn.cursor() as cur:
        cur.execute(f"XA {outcome} '{xid}'")
    return ids


def test_xa_transactions_are_published_at_commit_and_never_after_rollback(
    renv: RelayEnv, engine: sa.Engine, settings: Settings, uid: str
) -> None:
    relay = RelayProcess(renv, "--from-now").start()
    try:
        relay.wait_tailing()
        before = insert_activities(engine, uid, [2])
        committed = _xa_insert(settings, uid, f"c{uid}", 3, "COMMIT")
        rolled_back = _xa_insert(settings, uid, f"r{uid}", 2, "ROLLBACK")
        after = insert_activities(engine, uid, [2])
        records = mine(
            run(consume(settings.kafka_bootstrap, [f"{renv.prefix}activity"], 7, timeout=60, settle_s=3)), uid
        )
        got = [r.value["event_id"] for r in records]
        assert not set(rolled_back) & set(got)
        assert_exactly_once_in_order(records, before + committed + after)
        assert relay.terminate() == 0, relay.tail()
    finally:
        relay.kill()


def test_a_record_holds_for_a_transaction_the_binlog_shows_before_innodb_commits_it(
    settings: Settings, engine: sa.Engine, uid: str
) -> None:
    # The relay sees a transaction in the binlog before InnoDB has committed it (MariaDB writes the binlog, then
    # commits the engine). Row marks could miss such rows (the fault run once found 15 rows left unpublished); a
    # recorded run of ids does not depend on the rows at all. An open transaction stands in for that window here.
    conn = engine.connect()
    txn = conn.begin()
    ids = [write_event(conn, "user.activity", 1, activity(uid, 1, n)) for n in range(3)]
    marker = PublishedMarker(settings)
    try:
        marker._mark(id_ranges(ids))  # returns at once: nothing waits for the open transaction's rows
        assert _published(settings, ids) == set()  # the rows are not visible yet ...
        txn.commit()
    finally:
        conn.close()
        if marker._conn is not None:
            marker._conn.close()
    assert _published(settings, ids) == set(ids)


def test_bookkeeping_writes_no_second_copy_of_the_payloads_to_the_binlog(
    renv: RelayEnv, engine: sa.Engine, settings: Settings, uid: str
) -> None:
    """Issue 16: marking each row published logged its payload twice more (before and after images). Recorded runs
    of ids cost a few bytes per Kafka commit, whatever the payloads weigh."""
    relay = RelayProcess(renv, "--from-now").start()
    try:
        relay.wait_committed()
        relay.terminate()
        before = binlog_bytes(settings)
        text = "x" * 1000
        with engine.begin() as conn:
            events = [activity(uid, n % 50 + 1, n) for n in range(2000)]
            for event in events:
                event["details"]["text"] = text
            ids = write_events(conn, [("user.activity", e["user_id"], e) for e in events])
        inserted = binlog_bytes(settings) - before
        relay.start()
        run(consume(settings.kafka_bootstrap, [f"{renv.prefix}activity"], len(ids), timeout=60))
        assert wait_all_published(settings, ids) == set(ids), relay.tail()
        assert relay.terminate() == 0, relay.tail()
    finally:
        relay.kill()
    bookkeeping = binlog_bytes(settings) - before - inserted
    print(f"binlog: inserts {inserted:,} bytes, bookkeeping {bookkeeping:,} bytes")
    assert inserted > 2000 * 1000
    assert bookkeeping < inserted * 0.01, (bookkeeping, inserted)
