"""`tenderhub doctor`: check, as the relay user, that the MySQL/MariaDB source is set up the way the relay needs,
and say how to fix each problem (the my.cnf line, the GRANT or REVOKE statement).

Layers: `checks` (what a check is), `grants` (privileges), `server` (settings), `run` (against the server),
`output` (the report).
"""

from __future__ import annotations

from cdc.doctor.checks import (
    CONNECTION_LOST,
    ER_ACCESS_DENIED,
    ER_BAD_DB,
    ER_DBACCESS_DENIED,
    ER_NO_SUCH_TABLE,
    ER_PARSE,
    ER_SPECIFIC_ACCESS_DENIED,
    ER_TABLEACCESS_DENIED,
    MIN_RETENTION_HOURS,
    OUTBOX_COLUMNS,
    RELAY_URL_VAR,
    SUGGESTED_RETENTION_S,
    VARIABLES,
    Check,
    Status,
)
from cdc.doctor.grants import (
    GrantParseError,
    Grants,
    GrantTarget,
    Privilege,
    describe_privileges,
    evaluate_privileges,
    excess_privileges,
    grant_statements,
    missing_privileges,
    parse_grants,
    quote_ident,
    required_privileges,
    revoke_statements,
    sql_account,
)
from cdc.doctor.output import exit_code, render
from cdc.doctor.run import connection_failure, run_checks
from cdc.doctor.server import (
    binlog_status_statement,
    evaluate_outbox_columns,
    evaluate_retention,
    evaluate_server,
    evaluate_variables,
)

__all__ = [
    "CONNECTION_LOST",
    "ER_ACCESS_DENIED",
    "ER_BAD_DB",
    "ER_DBACCESS_DENIED",
    "ER_NO_SUCH_TABLE",
    "ER_PARSE",
    "ER_SPECIFIC_ACCESS_DENIED",
    "ER_TABLEACCESS_DENIED",
    "MIN_RETENTION_HOURS",
    "OUTBOX_COLUMNS",
    "RELAY_URL_VAR",
    "SUGGESTED_RETENTION_S",
    "VARIABLES",
    "Check",
    "GrantParseError",
    "GrantTarget",
    "Grants",
    "Privilege",
    "Status",
    "binlog_status_statement",
    "connection_failure",
    "describe_privileges",
    "evaluate_outbox_columns",
    "evaluate_privileges",
    "evaluate_retention",
    "evaluate_server",
    "evaluate_variables",
    "excess_privileges",
    "exit_code",
    "grant_statements",
    "missing_privileges",
    "parse_grants",
    "quote_ident",
    "render",
    "required_privileges",
    "revoke_statements",
    "run_checks",
    "sql_account",
]
