"""MariaDB runs with the binlog the relay needs, and the relay user can tail outbox inserts and nothing more."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pymysql
import pytest
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.row_event import WriteRowsEvent

from schema.mysql import MigrationError, apply_migrations, connect, load_migrations, migrate
from schema.settings import Settings
from tenderhub.smoke import binlog_position

if TYPE_CHECKING:
    Conn = pymysql.connections.Connection[Any]


@contextmanager
def _denied() -> Iterator[None]:
    """The statement inside must fail for lack of a privilege (1142 table, 1143 column, 1227 global)."""
    with pytest.raises(pymysql.MySQLError) as err:
        yield
    assert err.value.args[0] in (1142, 1143, 1227), err.value


def _variables(conn: Conn) -> dict[str, str]:
    with conn.cursor() as cur:
        cur.execute("SHOW GLOBAL VARIABLES")
        return {str(k).lower(): str(v) for k, v in cur.fetchall()}


def test_binlog_settings_are_what_the_relay_needs(admin_db: Conn) -> None:
    v = _variables(admin_db)
    assert v["log_bin"] == "ON"
    assert v["binlog_format"] == "ROW"
    assert v["binlog_row_image"] == "FULL"
    assert v["binlog_row_metadata"] == "FULL"
    assert v["gtid_strict_mode"] == "ON"
    assert v["log_slave_updates"] == "ON"
    assert v["sync_binlog"] == "1"
    assert int(v["server_id"]) > 0
    assert v["character_set_server"] == "utf8mb4"
    assert v["bind_address"] == "127.0.0.1"


def test_tables_are_utf8mb4(admin_db: Conn, settings: Settings) -> None:
    with admin_db.cursor() as cur:
        cur.execute(
            "SELECT table_name, table_collation FROM information_schema.tables "
            "WHERE table_schema = %s AND table_type = 'BASE TABLE'",
            (settings.mysql.database,),
        )
        rows = dict(cur.fetchall())
    assert {"tenders", "integration_outbox", "company_cidb_gradings"} <= set(rows)
    assert all(str(c).startswith("utf8mb4") for c in rows.values()), rows


def test_relay_user_reads_outbox_insert_from_binlog(settings: Settings, app_db: Conn) -> None:
    file, pos = binlog_position(settings)
    marker = uuid.uuid4().hex
    with app_db.cursor() as cur:
        cur.execute(
            "INSERT INTO integration_outbox (event_type, aggregate_type, aggregate_id, payload) "
            "VALUES ('system.heartbeat', 'system', '1', %s)",
            (json.dumps({"origin": "test", "marker": marker}),),
        )
        row_id = cur.lastrowid
    relay = settings.relay_mysql
    stream = BinLogStreamReader(
        connection_settings=relay.pymysql_kwargs(),
        server_id=4_100_000 + uuid.uuid4().int % 100_000,
        only_events=[WriteRowsEvent],
        only_schemas=[relay.database],
        only_tables=["integration_outbox"],
        log_file=file,
        log_pos=pos,
        resume_stream=True,
        blocking=False,
        is_mariadb=False,
    )
    try:
        rows = [row["values"] for event in stream for row in event.rows]
    finally:
        stream.close()
    # The stream started at the position read before the insert: nothing older arrives.
    assert rows and min(r["id"] for r in rows) >= row_id
    mine = [r for r in rows if r["id"] == row_id]
    assert len(mine) == 1
    values = mine[0]
    # Measured fact (DESIGN.md): JSON arrives as str, TIMESTAMP(3) as a naive datetime with milliseconds.
    assert json.loads(values["payload"])["marker"] == marker
    assert values["aggregate_type"] == "system" and values["published"] == 0
    assert values["created_at"].tzinfo is None


def test_relay_user_has_least_privilege(settings: Settings) -> None:
    with connect(settings.relay_mysql, settings.relay_mysql.database) as conn, conn.cursor() as cur:
        cur.execute("UPDATE integration_outbox SET published = published WHERE id = 0")
        with _denied():
            cur.execute("UPDATE integration_outbox SET payload = '{}' WHERE id = 0")
        with _denied():
            cur.execute("SELECT * FROM tenders LIMIT 1")
        with _denied():
            cur.execute(
                "INSERT INTO integration_outbox (event_type, aggregate_type, aggregate_id, payload) "
                "VALUES ('x', 'x', '1', '{}')"
            )
        cur.execute("SHOW GRANTS")
        grants = " ".join(str(r[0]) for r in cur.fetchall())
    assert "REPLICATION SLAVE" in grants and "BINLOG MONITOR" in grants
    assert "ALL PRIVILEGES" not in grants and "SUPER" not in grants


def test_app_user_appends_to_outbox_but_cannot_read_or_rewrite_it(app_db: Conn) -> None:
    with app_db.cursor() as cur:
        with _denied():
            cur.execute("SELECT * FROM integration_outbox LIMIT 1")
        with _denied():
            cur.execute("UPDATE integration_outbox SET published = TRUE WHERE id = 0")
        with _denied():
            cur.execute("SHOW MASTER STATUS")


def test_schema_constraints_hold(app_db: Conn, uid: str) -> None:
    with app_db.cursor() as cur:
        with pytest.raises(pymysql.err.OperationalError, match="ck_tenders_budget"):
            cur.execute("INSERT INTO tenders (ocid, title, budget) VALUES (%s, 't', 10)", (f"ocds-{uid}",))
        cur.execute("INSERT INTO teams (name) VALUES (%s)", (f"team-{uid}",))
        team_id = cur.lastrowid
        cur.execute(
            "INSERT INTO company_profiles (team_id, company_name, sectors, provinces) VALUES (%s, 'c', '[]', '[]')",
            (team_id,),
        )
        company_id = cur.lastrowid
        with pytest.raises(pymysql.err.OperationalError, match="ck_cidb_grade"):
            cur.execute("INSERT INTO company_cidb_gradings VALUES (%s, 'CE', 10, FALSE)", (company_id,))
        cur.execute("INSERT INTO company_cidb_gradings VALUES (%s, 'CE', 9, FALSE)", (company_id,))
        cur.execute("INSERT INTO company_cidb_gradings VALUES (%s, 'GB', 5, TRUE)", (company_id,))
        cur.execute("DELETE FROM company_cidb_gradings WHERE company_id = %s", (company_id,))
        cur.execute("DELETE FROM company_profiles WHERE id = %s", (company_id,))
        cur.execute("DELETE FROM teams WHERE id = %s", (team_id,))


def test_migrate_is_idempotent(settings: Settings) -> None:
    assert migrate(settings) == []
    assert migrate(settings) == []


def test_edited_migration_is_refused(admin_db: Conn, uid: str) -> None:
    db = f"tenderhub_test_{uid}"
    with admin_db.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{db}`")
    try:
        admin_db.select_db(db)
        assert apply_migrations(admin_db) == [m.version for m in load_migrations()]
        assert len(load_migrations()) >= 3
        assert apply_migrations(admin_db) == []
        with admin_db.cursor() as cur:
            cur.execute("UPDATE schema_migrations SET checksum = REPEAT('0', 64)")
        with pytest.raises(MigrationError, match="edited after it was applied"):
            apply_migrations(admin_db)
    finally:
        with admin_db.cursor() as cur:
            cur.execute(f"DROP DATABASE `{db}`")
