"""MySQL schema: versioned migrations and the least-privilege users that the app and the CDC relay run as.

`migrate()` is idempotent: it creates the database if missing, applies each `migrations/NNNN_*.sql` once (a
checksum guards against editing an applied file), then (re)creates the users and sets exactly their grants.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

import pymysql
import pymysql.cursors

from schema.settings import MysqlDsn, Settings, SettingsError

log = logging.getLogger(__name__)

RelayMode = Literal["binlog", "polling"]

BUSINESS_TABLES = ("teams", "users", "company_profiles", "company_cidb_gradings", "tenders", "api_tokens")
OUTBOX_TABLE = "integration_outbox"
PUBLISHED_TABLE = "integration_outbox_published"  # binlog mode: runs of ids committed to Kafka (migration 0002)
# Definer procedures (created by `migrate` as the admin account) through which the relay's janitor splits off and
# drops partitions of the outbox (migration 0003) without ALTER or DROP of its own. Each takes an integer bound and
# names the partition after it, so nothing the caller passes becomes SQL text.
ADD_PARTITION_PROC = "tenderhub_outbox_add_partition"
DROP_PARTITION_PROC = "tenderhub_outbox_drop_partition"
_PARTITION_PROCS = {
    ADD_PARTITION_PROC: "CONCAT('ALTER TABLE {table} REORGANIZE PARTITION pmax INTO (PARTITION p', bound, "
    "' VALUES LESS THAN (', bound, '), PARTITION pmax VALUES LESS THAN MAXVALUE)')",
    DROP_PARTITION_PROC: "CONCAT('ALTER TABLE {table} DROP PARTITION p', bound)",
}
_IDENT = re.compile(r"[A-Za-z0-9_]{1,64}")


class MigrationError(Exception):
    """A migration cannot be applied (edited after it was applied, or failed on the server)."""


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def statements(self) -> list[str]:
        body = "\n".join(line for line in self.sql.splitlines() if not line.lstrip().startswith("--"))
        return [s.strip() for s in re.split(r";\s*$", body, flags=re.MULTILINE) if s.strip()]


def load_migrations() -> list[Migration]:
    """The packaged migrations, in version order."""
    found = []
    for entry in resources.files("schema").joinpath("migrations").iterdir():
        m = re.fullmatch(r"(\d{4})_([a-z0-9_]+)\.sql", entry.name)
        if m:
            found.append(Migration(m.group(1), m.group(2), entry.read_text(encoding="utf-8")))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migrations share a version number: {sorted(versions)}")
    return sorted(found, key=lambda m: m.version)


def _ident(name: str) -> str:
    if not _IDENT.fullmatch(name):
        raise SettingsError(f"{name!r} is not a valid MySQL identifier (letters, digits, underscore)")
    return f"`{name}`"


def _account(user: str, host: str) -> str:
    if not _IDENT.fullmatch(user) or not re.fullmatch(r"[A-Za-z0-9.%_:\-]{1,255}", host):
        raise SettingsError(f"invalid MySQL account {user!r}@{host!r}")
    return f"'{user}'@'{host}'"


def relay_grants(mode: RelayMode, database: str, mariadb: bool, snapshot_lock: bool = True) -> list[str]:
    """Exactly the privileges the relay needs in `mode` (see DESIGN.md: measured on MariaDB)."""
    outbox = f"{_ident(database)}.{_ident(OUTBOX_TABLE)}"
    # Backfill reads the outbox; polling mode marks rows published (two columns); binlog mode records runs of
    # published ids in their own table; the janitor deletes old rows and runs.
    published = f"{_ident(database)}.{_ident(PUBLISHED_TABLE)}"
    grants = [
        f"SELECT, DELETE, UPDATE (published, published_at) ON {outbox}",
        f"SELECT, INSERT, UPDATE, DELETE ON {published}",
        *(f"EXECUTE ON PROCEDURE {_ident(database)}.{_ident(name)}" for name in sorted(_PARTITION_PROCS)),
    ]
    if mode == "binlog":
        # MariaDB >= 10.5 split REPLICATION CLIENT: SHOW BINARY LOGS / MASTER STATUS need BINLOG MONITOR.
        # MySQL has no snapshot status: a first-start backfill takes a brief FLUSH TABLES WITH READ LOCK (RELOAD),
        # unless the operator turned snapshots off (the relay then starts with --from-now only).
        extra = "BINLOG MONITOR" if mariadb else "REPLICATION CLIENT" + (", RELOAD" if snapshot_lock else "")
        grants.insert(0, f"REPLICATION SLAVE, {extra} ON *.*")
    return grants


# What an application may set on an outbox row. Not `id` (a reused id makes an event look like a redelivery),
# `created_at` (lag and retention trust it), nor `published`/`published_at` (a row inserted as published is never
# relayed by a backfill or polling): those belong to the server and the relay.
APP_OUTBOX_COLUMNS = ("event_type", "aggregate_type", "aggregate_id", "schema_version", "payload")


def app_grants(database: str) -> list[str]:
    """The application writes business rows and appends events; it never rewrites or reads the outbox."""
    db = _ident(database)
    tables = [f"SELECT, INSERT, UPDATE, DELETE ON {db}.{_ident(t)}" for t in BUSINESS_TABLES]
    columns = ", ".join(APP_OUTBOX_COLUMNS)
    return [*tables, f"INSERT ({columns}) ON {db}.{_ident(OUTBOX_TABLE)}"]


def reader_grants(database: str) -> list[str]:
    """verify and rebuild compare the derived stores with every table, the outbox included; they change nothing."""
    return [f"SELECT ON {_ident(database)}.*"]


class BoundedConnection(pymysql.connections.Connection):
    """A PyMySQL connection whose handshake (the server's greeting, authentication, the session's first statements)
    gives up after `connect_timeout`. PyMySQL reads the handshake under `read_timeout`, None by default, so a server
    that accepts the connection and never answers (frozen, a load balancer with no backend, a URL pointing at another
    service's port) held the caller for ever. Reads after the handshake keep the `read_timeout` asked for."""

    def connect(self, sock: Any = None) -> None:
        # Reads and writes both: the TLS handshake (a server that offers TLS, or ssl_* in the URL) runs under the
        # write timeout PyMySQL set last.
        keep: tuple[float | None, float | None] = (self._read_timeout, self._write_timeout)  # type: ignore[has-type]
        self._read_timeout = keep[0] if keep[0] is not None else self.connect_timeout
        self._write_timeout = keep[1] if keep[1] is not None else self.connect_timeout
        try:
            super().connect(sock)
        finally:
            # The next read or write sets the socket's timeout back (PyMySQL compares the two).
            self._read_timeout, self._write_timeout = keep


@contextmanager
def connect(
    dsn: MysqlDsn, database: str | None = None, connect_timeout: float = 10
) -> Iterator[pymysql.connections.Connection]:
    conn = BoundedConnection(
        **dsn.pymysql_kwargs(),
        database=database,
        charset="utf8mb4",
        autocommit=True,
        connect_timeout=connect_timeout,
        cursorclass=pymysql.cursors.Cursor,
    )
    try:
        yield conn
    finally:
        conn.close()


def is_mariadb(conn: pymysql.connections.Connection) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT VERSION()")
        row = cur.fetchone()
    return row is not None and "mariadb" in str(row[0]).lower()


def apply_migrations(conn: pymysql.connections.Connection) -> list[str]:
    """Apply pending migrations on the current database; return the versions applied now."""
    with conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version VARCHAR(16) NOT NULL PRIMARY KEY, name VARCHAR(200) NOT NULL,"
            " checksum CHAR(64) NOT NULL, applied_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)"
            ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        )
        cur.execute("SELECT version, checksum FROM schema_migrations")
        applied = {str(v): str(c) for v, c in cur.fetchall()}
    done = []
    for mig in load_migrations():
        if mig.version in applied:
            if applied[mig.version] != mig.checksum:
                raise MigrationError(
                    f"migration {mig.version}_{mig.name} was edited after it was applied "
                    "(checksum differs). Fix: revert the edit and add a new migration instead."
                )
            continue
        log.info("applying migration %s_%s", mig.version, mig.name)
        with conn.cursor() as cur:
            for stmt in mig.statements():
                try:
                    cur.execute(stmt)
                except pymysql.MySQLError as exc:
                    raise MigrationError(f"migration {mig.version}_{mig.name} failed: {exc}\n{stmt[:300]}") from exc
            cur.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                (mig.version, mig.name, mig.checksum),
            )
        done.append(mig.version)
    return done


def _ensure_user(cur: pymysql.cursors.Cursor, dsn: MysqlDsn, host: str, grants: list[str]) -> None:
    account = _account(dsn.user, host)
    # Parameters cannot bind inside CREATE USER; the password is escaped by the driver instead.
    password = cur.connection.escape(dsn.password)
    cur.execute(f"CREATE USER IF NOT EXISTS {account} IDENTIFIED BY {password}")
    cur.execute(f"ALTER USER {account} IDENTIFIED BY {password}")
    # Exactly these grants: drop whatever an older migration or a hand edit left behind.
    cur.execute(f"REVOKE ALL PRIVILEGES, GRANT OPTION FROM {account}")
    for grant in grants:
        cur.execute(f"GRANT {grant} TO {account}")


def migrate(settings: Settings) -> list[str]:
    """Create the database, apply migrations, and set up the app and relay users (and the read-only reader, when
    its URL is set). Idempotent."""
    admin = settings.mysql_admin
    database = settings.mysql.database
    reader = settings.mysql_reader if settings.mysql_reader_url is not None else None
    checked = [("TENDERHUB_RELAY_MYSQL_URL", settings.relay_mysql), ("TENDERHUB_MYSQL_ADMIN_URL", admin)]
    for name, dsn in checked + ([("TENDERHUB_MYSQL_READER_URL", reader)] if reader else []):
        if dsn.database != database:
            raise SettingsError(
                f"{name} names database {dsn.database!r} but TENDERHUB_MYSQL_URL names {database!r}. "
                "Fix: point every MySQL URL at the same database."
            )
    users = [settings.mysql.user, admin.user, settings.relay_mysql.user] + ([reader.user] if reader else [])
    if len(set(users)) != len(users):
        raise SettingsError("the admin, app, relay and reader MySQL URLs must each use a different user")
    with connect(admin) as conn:
        with conn.cursor() as cur:
            cur.execute(
                f"CREATE DATABASE IF NOT EXISTS {_ident(database)} "
                "DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            )
        conn.select_db(database)
        applied = apply_migrations(conn)
        mariadb = is_mariadb(conn)
        with conn.cursor() as cur:
            _ensure_partition_procedures(cur)
            _ensure_user(cur, settings.mysql, settings.mysql_grant_host, app_grants(database))
            _ensure_user(
                cur,
                settings.relay_mysql,
                settings.mysql_grant_host,
                relay_grants(settings.relay_mode, database, mariadb, settings.relay_mysql_snapshot_lock),
            )
            if reader is not None:
                _ensure_user(cur, reader, settings.mysql_grant_host, reader_grants(database))
    return applied


def _ensure_partition_procedures(cur: pymysql.cursors.Cursor) -> None:
    """(Re)create the definer procedures the janitor calls (SQL SECURITY DEFINER: they run as the admin account)."""
    for name, ddl in _PARTITION_PROCS.items():
        cur.execute(f"DROP PROCEDURE IF EXISTS {_ident(name)}")
        cur.execute(
            f"CREATE PROCEDURE {_ident(name)}(IN bound BIGINT UNSIGNED) SQL SECURITY DEFINER "
            f"BEGIN SET @tenderhub_ddl = {ddl.format(table=_ident(OUTBOX_TABLE))}; "
            "PREPARE tenderhub_stmt FROM @tenderhub_ddl; EXECUTE tenderhub_stmt; DEALLOCATE PREPARE tenderhub_stmt; END"
        )


def drop_database(settings: Settings) -> None:
    """Undo `migrate` for a throwaway deployment (a test or fault run of its own): drop its database and its app and
    relay accounts. Never for the default deployment: those accounts may serve others."""
    database = settings.mysql.database
    with connect(settings.mysql_admin) as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {_ident(database)}")
        readers = [settings.mysql_reader] if settings.mysql_reader_url is not None else []
        for dsn in (settings.mysql, settings.relay_mysql, *readers):
            cur.execute(f"DROP USER IF EXISTS {_account(dsn.user, settings.mysql_grant_host)}")
