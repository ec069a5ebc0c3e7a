"""The relay's MySQL sessions, each set up for its job: UTC always; the polling batch's transaction at READ
COMMITTED with bounded lock waits; the marker in autocommit; short-lived sessions for the janitor and snapshots."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from schema.mysql import BoundedConnection
from schema.settings import MysqlDsn, Settings

# Every relay session reads and writes timestamps in UTC: `occurred_at`, lag and the janitor's cut-off must not
# depend on the server's time zone (created_at is a TIMESTAMP, converted to the session's zone on read).
UTC_INIT = "SET time_zone = '+00:00'"


def _utc_connection(dsn: MysqlDsn, autocommit: bool, connect_timeout: float) -> Any:
    """A connection to the relay's database whose session reads timestamps in UTC; its handshake is bounded."""
    return BoundedConnection(
        **dsn.pymysql_kwargs(),
        database=dsn.database,
        autocommit=autocommit,
        charset="utf8mb4",
        init_command=UTC_INIT,
        connect_timeout=connect_timeout,
    )


def transactional_connection(dsn: MysqlDsn, connect_timeout: float = 10) -> Any:
    conn = _utc_connection(dsn, False, connect_timeout)
    with conn.cursor() as cur:
        # No gap locks: a polling batch held open across the Kafka commit must not stall the app's inserts.
        cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
    return conn


def marker_connection(dsn: MysqlDsn, connect_timeout: float = 10) -> Any:
    """Autocommit: each run is recorded in its own statement. The runs never touch outbox rows, so the marker does not
    wait for a transaction the relay read from the binlog before InnoDB committed it."""
    return _utc_connection(dsn, True, connect_timeout)


def polling_connection(settings: Settings) -> Any:
    conn = transactional_connection(settings.relay_mysql)
    with conn.cursor() as cur:
        # A paused leader (SIGSTOP, a frozen VM) must not keep its batch's row locks for the server's default
        # wait_timeout (8 h): the server drops this session, and with it the locks, once it is idle as long as the
        # leader lock's bound. The loop talks to the server at least every poll interval while it is alive.
        cur.execute("SET SESSION wait_timeout = %s", (settings.relay_lock_timeout_s,))
        # The first poll of a new leader waits on the old one's locks at most this long before it retries.
        cur.execute("SET SESSION innodb_lock_wait_timeout = %s", (settings.relay_lock_timeout_s * 2,))
    return conn


@contextlib.contextmanager
def relay_connection(dsn: MysqlDsn, connect_timeout: float = 10) -> Iterator[Any]:
    conn = _utc_connection(dsn, True, connect_timeout)
    try:
        yield conn
    finally:
        conn.close()
