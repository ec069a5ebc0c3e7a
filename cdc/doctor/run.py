"""The doctor's run against the server, as the relay user: connect, read what the checks need, and turn a connection
or permission failure into a check with its fix instead of a traceback."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pymysql

from cdc.doctor.checks import (
    CONNECTION_LOST,
    ER_ACCESS_DENIED,
    ER_BAD_DB,
    ER_DBACCESS_DENIED,
    ER_NO_SUCH_TABLE,
    ER_PARSE,
    ER_SPECIFIC_ACCESS_DENIED,
    ER_TABLEACCESS_DENIED,
    RELAY_URL_VAR,
    VARIABLES,
    Check,
)
from cdc.doctor.grants import (
    _MIGRATE_HINT,
    evaluate_privileges,
    parse_grants,
    quote_ident,
    required_privileges,
    sql_account,
)
from cdc.doctor.server import _cnf, _for_mode, evaluate_outbox_columns, evaluate_server, evaluate_variables
from schema.mysql import OUTBOX_TABLE, RelayMode, connect, is_mariadb
from schema.settings import MysqlDsn, Settings

log = logging.getLogger(__name__)

# -- the server run ------------------------------------------------------------------------------------------------


def _errno(exc: BaseException) -> int:
    code = exc.args[0] if exc.args else 0
    return code if isinstance(code, int) else 0


def _message(exc: BaseException) -> str:
    if isinstance(exc, pymysql.MySQLError) and len(exc.args) > 1:
        return f"({exc.args[0]}) {exc.args[1]}"
    return str(exc) or type(exc).__name__


def _lost(exc: pymysql.MySQLError) -> bool:
    return isinstance(exc, pymysql.err.InterfaceError) or _errno(exc) in CONNECTION_LOST


def connection_failure(dsn: MysqlDsn, exc: BaseException) -> Check:
    """One failed check for a relay that cannot even connect, with the server's message and the fix."""
    code = _errno(exc)
    where = f"{dsn.user}@{dsn.host}:{dsn.port}/{dsn.database}"
    if code == ER_ACCESS_DENIED:
        fix = (
            f"check the user and password in {RELAY_URL_VAR} (the dev stack writes it to .stack/tenderhub.env), "
            "or run `tenderhub migrate`, which (re)creates the relay user with the password from that URL"
        )
    elif code in (ER_BAD_DB, ER_DBACCESS_DENIED):
        fix = (
            f"run `tenderhub migrate` (creates the database and grants the relay user), "
            f"and check the database name in {RELAY_URL_VAR}"
        )
    else:
        fix = (
            f"is the server up (`tenderhub stack status`)? check host and port in {RELAY_URL_VAR}; "
            "then run `tenderhub migrate` if the relay user does not exist yet"
        )
    return Check("connection", "fail", f"cannot connect as {where}: {_message(exc)}", fix)


def run_checks(settings: Settings) -> list[Check]:
    """Connect as the relay does (its least-privilege user and database) and run every check."""
    dsn = settings.relay_mysql
    checks: list[Check] = []
    try:
        with connect(dsn, dsn.database) as conn:
            _collect(conn, settings, checks)
    except (pymysql.MySQLError, OSError) as exc:
        if not checks:
            return [connection_failure(dsn, exc)]
        log.warning("connection lost during the checks: %s", _message(exc))
        checks.append(
            Check(
                "connection",
                "fail",
                f"lost during the checks: {_message(exc)}",
                "run `tenderhub doctor` again; if it keeps failing, check the server log",
            )
        )
    return checks


def _guard(name: str, probe: Callable[[], list[Check]]) -> list[Check]:
    """Run a probe; an unexpected server error fails that check only, a lost connection ends the run."""
    try:
        return probe()
    except pymysql.MySQLError as exc:
        if _lost(exc):
            raise
        log.debug("check %s failed", name, exc_info=True)
        return [Check(name, "fail", f"server error: {_message(exc)}", "see the server's message; check the server log")]


def _collect(conn: pymysql.connections.Connection[Any], settings: Settings, checks: list[Check]) -> None:
    dsn = settings.relay_mysql
    mode: RelayMode = settings.relay_mode
    mariadb = is_mariadb(conn)
    with conn.cursor() as cur:
        cur.execute("SELECT VERSION(), CURRENT_USER()")
        row = cur.fetchone()
    version, current = (str(row[0]), str(row[1])) if row else ("?", f"{dsn.user}@{settings.mysql_grant_host}")
    account = sql_account(current)
    checks.append(Check("connection", "ok", f"{current} on {dsn.host}:{dsn.port}/{dsn.database}"))
    checks.append(evaluate_server(version, mariadb))
    checks.extend(_guard("binlog status", lambda: [_binlog_status(conn, mariadb, mode, account)]))
    checks.extend(_guard("server variables", lambda: _variable_checks(conn, mariadb, settings)))
    checks.extend(_guard("privileges", lambda: _privilege_checks(conn, mariadb, mode, dsn.database, account)))
    checks.extend(_guard("outbox readable", lambda: _outbox_checks(conn, dsn.database, account)))


def _binlog_status(conn: pymysql.connections.Connection[Any], mariadb: bool, mode: RelayMode, account: str) -> Check:
    with conn.cursor() as cur:
        try:
            statement = "SHOW BINARY LOG STATUS"
            try:
                cur.execute(statement)
            except pymysql.MySQLError as exc:
                # MariaDB and MySQL < 8.2 only know the old spelling; MySQL 8.4 removed it.
                if _errno(exc) != ER_PARSE:
                    raise
                statement = "SHOW MASTER STATUS"
                cur.execute(statement)
            row = cur.fetchone()
        except pymysql.MySQLError as exc:
            if _errno(exc) != ER_SPECIFIC_ACCESS_DENIED:
                raise
            if mode == "polling":
                return Check("binlog status", "ok", "not readable, and not needed in polling mode")
            monitor = "BINLOG MONITOR" if mariadb else "REPLICATION CLIENT"
            return Check(
                "binlog status",
                "fail",
                f"{statement} denied: {_message(exc)}",
                f"GRANT {monitor} ON *.* TO {account};\n{_MIGRATE_HINT}",
            )
    if not row:
        return _for_mode(
            Check(
                "binlog status",
                "fail",
                f"{statement} printed nothing: binary logging is off",
                _cnf(f"log_bin = {'mariadb-bin' if mariadb else 'mysql-bin'}"),
            ),
            mode,
        )
    return Check("binlog status", "ok", f"{row[0]}:{row[1]} ({statement})")


def _variable_checks(conn: pymysql.connections.Connection[Any], mariadb: bool, settings: Settings) -> list[Check]:
    marks = ", ".join(["%s"] * len(VARIABLES))
    with conn.cursor() as cur:
        cur.execute(f"SHOW GLOBAL VARIABLES WHERE Variable_name IN ({marks})", VARIABLES)
        variables = {str(k).lower(): str(v) for k, v in cur.fetchall()}
    return evaluate_variables(
        variables,
        mariadb=mariadb,
        mode=settings.relay_mode,
        relay_server_id=settings.relay_server_id,
        relay_domain=settings.relay_gtid_domain,
    )


def _privilege_checks(
    conn: pymysql.connections.Connection[Any], mariadb: bool, mode: RelayMode, database: str, account: str
) -> list[Check]:
    with conn.cursor() as cur:
        # Plain SHOW GRANTS also lists the active role's grants on MariaDB: the session's effective privileges.
        cur.execute("SHOW GRANTS")
        lines = [str(r[0]) for r in cur.fetchall()]
    granted = parse_grants(lines, mariadb)
    log.debug("SHOW GRANTS: %d lines, %d privileges", len(lines), len(granted.privileges))
    return evaluate_privileges(granted, required_privileges(mode, database, mariadb), account, mode)


def _outbox_checks(conn: pymysql.connections.Connection[Any], database: str, account: str) -> list[Check]:
    table = f"{quote_ident(database)}.{quote_ident(OUTBOX_TABLE)}"
    with conn.cursor() as cur:
        try:
            cur.execute(f"SELECT 1 FROM {table} LIMIT 1")
            has_rows = cur.fetchone() is not None
        except pymysql.MySQLError as exc:
            code = _errno(exc)
            if code == ER_TABLEACCESS_DENIED:
                fix = f"GRANT SELECT ON {table} TO {account};\n{_MIGRATE_HINT}"
            elif code in (ER_NO_SUCH_TABLE, ER_BAD_DB):
                fix = "run `tenderhub migrate`: it creates the outbox table"
            else:
                raise
            return [
                Check("outbox readable", "fail", f"SELECT on {table}: {_message(exc)}", fix),
                Check("outbox columns", "fail", "not checked: the outbox is not readable", fix),
            ]
        readable = Check("outbox readable", "ok", f"SELECT on {table} works ({'has rows' if has_rows else 'empty'})")
        cur.execute(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
            (database, OUTBOX_TABLE),
        )
        found = [str(r[0]) for r in cur.fetchall()]
        source = "information_schema.COLUMNS"
        if not found:
            # information_schema hides what the user holds no privilege on; the result set's header does not.
            cur.execute(f"SELECT * FROM {table} LIMIT 0")
            found = [str(d[0]) for d in cur.description or ()]
            source = "SELECT * ... LIMIT 0"
    return [readable, evaluate_outbox_columns(found, source)]
