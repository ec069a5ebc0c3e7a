"""Doctor: grant parsing and comparison, server variables, retention and output, without a server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pymysql
import pytest

from cdc.doctor import (
    OUTBOX_COLUMNS,
    Check,
    GrantTarget,
    Privilege,
    evaluate_outbox_columns,
    evaluate_privileges,
    evaluate_retention,
    evaluate_server,
    evaluate_variables,
    exit_code,
    parse_grants,
    render,
    required_privileges,
    run_checks,
    sql_account,
)
from cdc.doctor import run as doctor_run
from schema.mysql import RelayMode
from schema.settings import Settings

HASH = "*FCF74C1B5CC3C29D00DCE5BF95CAC270F7B351BF"
ACCOUNT = "'tenderhub_relay'@'127.0.0.1'"
OUTBOX = GrantTarget("tenderhub", "integration_outbox")
PUBLISHED = GrantTarget("tenderhub", "integration_outbox_published")
PROCEDURES = ("tenderhub_outbox_add_partition", "tenderhub_outbox_drop_partition")
GLOBAL = GrantTarget("*", "*")

# Exactly what MariaDB 10.11 prints for the relay user `tenderhub migrate` creates (column list reversed,
# UPDATE moved between SELECT and DELETE, the password hash on the global line).
MARIADB_RELAY = [
    f"GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO `tenderhub_relay`@`127.0.0.1` IDENTIFIED BY PASSWORD '{HASH}'",
    "GRANT SELECT, UPDATE (`published_at`, `published`), DELETE ON `tenderhub`.`integration_outbox` "
    "TO `tenderhub_relay`@`127.0.0.1`",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON `tenderhub`.`integration_outbox_published` "
    "TO `tenderhub_relay`@`127.0.0.1`",
    "GRANT EXECUTE ON PROCEDURE `tenderhub`.`tenderhub_outbox_add_partition` TO `tenderhub_relay`@`127.0.0.1`",
    "GRANT EXECUTE ON PROCEDURE `tenderhub`.`tenderhub_outbox_drop_partition` TO `tenderhub_relay`@`127.0.0.1`",
]
MYSQL_RELAY = [
    "GRANT RELOAD, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO `tenderhub_relay`@`%`",
    "GRANT SELECT, DELETE, UPDATE (`published`, `published_at`) ON `tenderhub`.`integration_outbox` "
    "TO `tenderhub_relay`@`%`",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON `tenderhub`.`integration_outbox_published` TO `tenderhub_relay`@`%`",
    "GRANT EXECUTE ON PROCEDURE `tenderhub`.`tenderhub_outbox_add_partition` TO `tenderhub_relay`@`%`",
    "GRANT EXECUTE ON PROCEDURE `tenderhub`.`tenderhub_outbox_drop_partition` TO `tenderhub_relay`@`%`",
]
MARIADB_VARS = {
    "log_bin": "ON",
    "binlog_format": "ROW",
    "binlog_row_image": "FULL",
    "binlog_row_metadata": "FULL",
    "server_id": "1",
    "gtid_strict_mode": "ON",
    "gtid_domain_id": "0",
    "gtid_binlog_pos": "0-1-2330",
    "binlog_expire_logs_seconds": "604800",
    "expire_logs_days": "7.000000",
}
MYSQL_VARS = {
    "log_bin": "ON",
    "binlog_format": "ROW",
    "binlog_row_image": "FULL",
    "binlog_row_metadata": "FULL",
    "server_id": "1",
    "gtid_mode": "ON",
    "enforce_gtid_consistency": "ON",
    "binlog_expire_logs_seconds": "2592000",
}


def required(mode: RelayMode = "binlog", mariadb: bool = True) -> frozenset[Privilege]:
    return required_privileges(mode, "tenderhub", mariadb)


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def privileges(lines: list[str], mode: RelayMode = "binlog", mariadb: bool = True) -> dict[str, Check]:
    granted = parse_grants(lines, mariadb)
    return by_name(evaluate_privileges(granted, required(mode, mariadb), ACCOUNT, mode))


# -- grant parsing -------------------------------------------------------------------------------------------------


def test_parses_mariadb_grants_into_normal_form() -> None:
    granted = parse_grants(MARIADB_RELAY, mariadb=True)
    assert granted.privileges == {
        Privilege("REPLICATION SLAVE", GLOBAL),
        Privilege("BINLOG MONITOR", GLOBAL),
        Privilege("SELECT", OUTBOX),
        Privilege("DELETE", OUTBOX),
        Privilege("UPDATE", OUTBOX, frozenset({"published", "published_at"})),
        *(Privilege(p, PUBLISHED) for p in ("SELECT", "INSERT", "UPDATE", "DELETE")),
        *(Privilege("EXECUTE", GrantTarget("tenderhub", p, "PROCEDURE")) for p in PROCEDURES),
    }
    assert granted.roles == () and granted.unparsed == ()


def test_mariadb_and_mysql_spellings_match_what_relay_grants_asks_for() -> None:
    # Backticks, column order and privilege order differ from schema.mysql.relay_grants' text; the sets do not.
    assert parse_grants(MARIADB_RELAY, mariadb=True).privileges == required(mariadb=True)
    assert parse_grants(MYSQL_RELAY, mariadb=False).privileges == required(mariadb=False)


def test_relay_as_migrated_is_ok_on_both_flavors() -> None:
    for lines, mariadb in ((MARIADB_RELAY, True), (MYSQL_RELAY, False)):
        checks = privileges(lines, mariadb=mariadb)
        assert checks["privileges"].status == "ok"
        assert checks["excess privileges"].status == "ok"


def test_password_hash_never_reaches_the_report() -> None:
    lines = [
        f"GRANT ALL PRIVILEGES ON *.* TO `tenderhub_relay`@`127.0.0.1` IDENTIFIED BY PASSWORD '{HASH}' "
        "WITH GRANT OPTION",
        "GRANT USAGE ON *.* TO `x`@`%` IDENTIFIED VIA ed25519 USING 'c2VjcmV0IEdSQU5UIE9QVElPTg' OR unix_socket",
        f"GRANT SELECT ON weird syntax here TO `x`@`%` IDENTIFIED BY PASSWORD '{HASH}'",
    ]
    granted = parse_grants(lines, mariadb=True)
    report = render(evaluate_privileges(granted, required(), ACCOUNT, "binlog"))
    assert HASH not in report and HASH[1:] not in report and "c2VjcmV0" not in report
    assert "not understood: GRANT SELECT ON weird syntax here ..." in report


def test_grant_option_is_read_from_keywords_not_from_quoted_strings() -> None:
    line = "GRANT USAGE ON *.* TO `x`@`%` IDENTIFIED VIA ed25519 USING 'WITH GRANT OPTION'"
    assert parse_grants([line], mariadb=True).privileges == {Privilege("USAGE", GLOBAL)}
    with_option = parse_grants([MARIADB_RELAY[0] + " WITH GRANT OPTION"], mariadb=True)
    assert Privilege("GRANT OPTION", GLOBAL) in with_option.privileges


def test_parses_mysql_dynamic_privileges_proxy_and_roles() -> None:
    lines = [
        "GRANT SELECT, INSERT, SUPER, REPLICATION SLAVE ON *.* TO `root`@`localhost` WITH GRANT OPTION",
        "GRANT APPLICATION_PASSWORD_ADMIN,AUDIT_ABORT_EXEMPT,BINLOG_ADMIN ON *.* TO `root`@`localhost`",
        "GRANT PROXY ON ``@`` TO `root`@`localhost` WITH GRANT OPTION",
        "GRANT `relay_role`@`%` TO `tenderhub_relay`@`%`",
    ]
    granted = parse_grants(lines, mariadb=False)
    names = {p.name for p in granted.privileges if p.target == GLOBAL}
    assert names == {
        "SELECT",
        "INSERT",
        "SUPER",
        "REPLICATION SLAVE",
        "GRANT OPTION",
        "APPLICATION_PASSWORD_ADMIN",
        "AUDIT_ABORT_EXEMPT",
        "BINLOG_ADMIN",
    }
    assert Privilege("PROXY", GrantTarget("", "``@``", "PROXY")) in granted.privileges
    assert granted.roles == ("`relay_role`@`%`",)


def test_mariadb_alias_replication_client_is_binlog_monitor() -> None:
    line = "GRANT REPLICATION REPLICA, REPLICATION CLIENT ON *.* TO `r`@`%`"
    assert parse_grants([line], mariadb=True).privileges == {
        Privilege("REPLICATION SLAVE", GLOBAL),
        Privilege("BINLOG MONITOR", GLOBAL),
    }
    assert Privilege("REPLICATION CLIENT", GLOBAL) in parse_grants([line], mariadb=False).privileges


def test_routine_grants_keep_their_kind() -> None:
    line = "GRANT EXECUTE ON PROCEDURE `tenderhub`.`integration_outbox` TO `r`@`%`"
    (priv,) = parse_grants([line], mariadb=True).privileges
    assert priv.target == GrantTarget("tenderhub", "integration_outbox", "PROCEDURE")
    assert not priv.target.covers(OUTBOX)


def test_sql_account_quotes_user_and_host() -> None:
    assert sql_account("tenderhub_relay@127.0.0.1") == ACCOUNT
    assert sql_account("relay@%") == "'relay'@'%'"
    assert sql_account("o'brien@host") == "'o''brien'@'host'"


# -- missing and excess privileges ---------------------------------------------------------------------------------


def test_missing_replication_slave_fails_with_the_grant_that_fixes_it() -> None:
    lines = [
        "GRANT BINLOG MONITOR ON *.* TO `tenderhub_relay`@`127.0.0.1`",
        MARIADB_RELAY[1],
    ]
    check = privileges(lines)["privileges"]
    assert check.status == "fail"
    assert "REPLICATION SLAVE ON *.*" in check.value
    assert f"GRANT REPLICATION SLAVE ON *.* TO {ACCOUNT};" in check.fix.splitlines()
    assert "tenderhub migrate" in check.fix


def test_missing_column_is_granted_alone() -> None:
    lines = [
        MARIADB_RELAY[0],
        "GRANT SELECT, DELETE, UPDATE (`published`) ON `tenderhub`.`integration_outbox` TO `tenderhub_relay`@`%`",
    ]
    check = privileges(lines)["privileges"]
    assert check.status == "fail"
    assert check.fix.splitlines()[0] == (
        f"GRANT UPDATE (`published_at`) ON `tenderhub`.`integration_outbox` TO {ACCOUNT};"
    )


def test_missing_outbox_and_monitor_privileges_are_grouped_per_object() -> None:
    check = privileges(["GRANT REPLICATION SLAVE ON *.* TO `r`@`%`"], mariadb=False)["privileges"]
    assert check.status == "fail"
    assert check.fix.splitlines()[:2] == [
        f"GRANT RELOAD, REPLICATION CLIENT ON *.* TO {ACCOUNT};",
        f"GRANT DELETE, SELECT, UPDATE (`published`, `published_at`) ON `tenderhub`.`integration_outbox` TO {ACCOUNT};",
    ]


def test_all_privileges_covers_the_needs_but_warns_as_excess() -> None:
    lines = [f"GRANT ALL PRIVILEGES ON *.* TO `r`@`%` IDENTIFIED BY PASSWORD '{HASH}' WITH GRANT OPTION"]
    checks = privileges(lines)
    assert checks["privileges"].status == "ok"
    excess = checks["excess privileges"]
    assert excess.status == "warn"
    assert "ALL PRIVILEGES, GRANT OPTION ON *.*" in excess.value
    fixes = excess.fix.splitlines()
    assert fixes[0] == f"REVOKE ALL PRIVILEGES, GRANT OPTION ON *.* FROM {ACCOUNT};"
    # Revoking ALL takes the relay's own privileges too: the fix grants them back.
    assert f"GRANT BINLOG MONITOR, REPLICATION SLAVE ON *.* TO {ACCOUNT};" in fixes


def test_super_and_writes_on_business_tables_are_excess() -> None:
    lines = [
        *MARIADB_RELAY,
        "GRANT SUPER ON *.* TO `tenderhub_relay`@`127.0.0.1`",
        "GRANT INSERT, UPDATE ON `tenderhub`.`tenders` TO `tenderhub_relay`@`127.0.0.1`",
    ]
    checks = privileges(lines)
    assert checks["privileges"].status == "ok"
    excess = checks["excess privileges"]
    assert excess.status == "warn"
    assert "SUPER ON *.*" in excess.value and "INSERT, UPDATE ON `tenderhub`.`tenders`" in excess.value
    assert f"REVOKE INSERT, UPDATE ON `tenderhub`.`tenders` FROM {ACCOUNT};" in excess.fix.splitlines()
    assert f"REVOKE SUPER ON *.* FROM {ACCOUNT};" in excess.fix.splitlines()


def test_table_wide_update_is_excess_where_two_columns_suffice() -> None:
    lines = [
        MARIADB_RELAY[0],
        "GRANT SELECT, UPDATE, DELETE ON `tenderhub`.`integration_outbox` TO `r`@`%`",
        *MARIADB_RELAY[2:],
    ]
    checks = privileges(lines)
    assert checks["privileges"].status == "ok"
    excess = checks["excess privileges"]
    assert excess.status == "warn"
    assert excess.value.endswith("UPDATE ON `tenderhub`.`integration_outbox`")
    assert excess.fix.splitlines()[:2] == [
        f"REVOKE UPDATE ON `tenderhub`.`integration_outbox` FROM {ACCOUNT};",
        f"GRANT UPDATE (`published`, `published_at`) ON `tenderhub`.`integration_outbox` TO {ACCOUNT};",
    ]


def test_extra_update_column_is_excess_alone() -> None:
    lines = [
        MARIADB_RELAY[0],
        "GRANT SELECT, DELETE, UPDATE (`payload`, `published`, `published_at`) ON `tenderhub`.`integration_outbox` "
        "TO `r`@`%`",
    ]
    excess = privileges(lines)["excess privileges"]
    assert excess.status == "warn"
    assert f"REVOKE UPDATE (`payload`) ON `tenderhub`.`integration_outbox` FROM {ACCOUNT};" in excess.fix


def test_database_wide_select_with_wildcards_covers_the_outbox_and_is_excess() -> None:
    lines = [
        MARIADB_RELAY[0],
        "GRANT SELECT, DELETE ON `tender%`.* TO `r`@`%`",
        "GRANT UPDATE (`published`, `published_at`) ON `tenderhub`.`integration_outbox` TO `r`@`%`",
        "GRANT INSERT, UPDATE ON `tenderhub`.`integration_outbox_published` TO `r`@`%`",
        *MARIADB_RELAY[3:],
    ]
    checks = privileges(lines)
    assert checks["privileges"].status == "ok"
    assert checks["excess privileges"].status == "warn"
    assert "DELETE, SELECT ON `tender%`.*" in checks["excess privileges"].value
    # `_` escaped is literal: `tender\_%` does not match `tenderhub`.
    assert not GrantTarget("tender\\_%", "*").covers(OUTBOX)
    assert GrantTarget("tender%", "*").covers(OUTBOX)
    assert GrantTarget("tender_ub", "*").covers(GrantTarget("tenderhub", "*"))
    assert GrantTarget("a\\_b", "*").covers(GrantTarget("a_b", "*"))
    assert not GrantTarget("a\\_b", "*").covers(GrantTarget("axb", "*"))


def test_polling_mode_needs_no_replication_and_only_warns_about_it() -> None:
    checks = privileges(MARIADB_RELAY, mode="polling")
    assert checks["privileges"].status == "ok"
    assert "REPLICATION" not in checks["privileges"].value
    excess = checks["excess privileges"]
    assert excess.status == "warn"
    assert "BINLOG MONITOR, REPLICATION SLAVE ON *.*" in excess.value
    assert excess.fix.splitlines()[0] == f"REVOKE BINLOG MONITOR, REPLICATION SLAVE ON *.* FROM {ACCOUNT};"


def test_polling_mode_without_replication_is_clean() -> None:
    checks = privileges(MARIADB_RELAY[1:], mode="polling")
    assert checks["privileges"].status == checks["excess privileges"].status == "ok"


def test_role_grants_are_warned_about_and_not_trusted() -> None:
    lines = ["GRANT `relay_role` TO `tenderhub_relay`@`%`", "SET DEFAULT ROLE `relay_role` FOR `tenderhub_relay`@`%`"]
    checks = privileges(lines)
    assert checks["privileges"].status == "fail"
    assert checks["excess privileges"].status == "warn"
    assert f"REVOKE `relay_role` FROM {ACCOUNT};" in checks["excess privileges"].fix


# -- server and variables ------------------------------------------------------------------------------------------


def test_server_versions_and_status_statement() -> None:
    maria = evaluate_server("10.11.19-MariaDB-0+deb12u1-log", mariadb=True)
    assert maria.status == "ok" and "MariaDB" in maria.value and "SHOW MASTER STATUS" in maria.value
    mysql84 = evaluate_server("8.4.3", mariadb=False)
    assert mysql84.status == "ok" and "MySQL" in mysql84.value and "SHOW BINARY LOG STATUS" in mysql84.value
    assert "SHOW MASTER STATUS" in evaluate_server("8.0.40-0ubuntu0.22.04.1", mariadb=False).value
    assert evaluate_server("10.4.34-MariaDB", mariadb=True).status == "fail"
    assert evaluate_server("5.7.44-log", mariadb=False).status == "fail"


def test_good_mariadb_and_mysql_variables_are_all_ok() -> None:
    for variables, mariadb in ((MARIADB_VARS, True), (MYSQL_VARS, False)):
        checks = evaluate_variables(variables, mariadb=mariadb, mode="binlog", relay_server_id=4_200_001)
        assert [c.status for c in checks] == ["ok"] * 8, checks
    gtid = by_name(evaluate_variables(MARIADB_VARS, mariadb=True, mode="binlog", relay_server_id=9))["gtid"]
    assert "gtid_binlog_pos=0-1-2330" in gtid.value and "gtid_domain_id=0" in gtid.value


def test_statement_binlog_format_fails_with_the_cnf_line() -> None:
    variables = {**MARIADB_VARS, "binlog_format": "STATEMENT"}
    check = by_name(evaluate_variables(variables, mariadb=True, mode="binlog", relay_server_id=9))["binlog_format"]
    assert check.status == "fail"
    assert "STATEMENT" in check.value
    assert "binlog_format = ROW" in check.fix


def test_binlog_problems_only_warn_in_polling_mode() -> None:
    variables = {**MARIADB_VARS, "binlog_format": "MIXED", "log_bin": "OFF"}
    checks = by_name(evaluate_variables(variables, mariadb=True, mode="polling", relay_server_id=9))
    assert checks["binlog_format"].status == checks["log_bin"].status == "warn"
    assert "RELAY_MODE=binlog" in checks["log_bin"].fix


def test_row_image_metadata_and_server_id() -> None:
    variables = {**MYSQL_VARS, "binlog_row_image": "MINIMAL", "server_id": "0"}
    del variables["binlog_row_metadata"]
    checks = by_name(evaluate_variables(variables, mariadb=False, mode="binlog", relay_server_id=9))
    assert checks["binlog_row_image"].status == "fail" and "binlog_row_image = FULL" in checks["binlog_row_image"].fix
    assert checks["binlog_row_metadata"].status == "fail"
    assert checks["binlog_row_metadata"].value == "not reported by this server"
    assert checks["server_id"].status == "fail" and "server_id = 1" in checks["server_id"].fix
    clash = by_name(evaluate_variables(MYSQL_VARS, mariadb=False, mode="binlog", relay_server_id=1))["server_id"]
    assert clash.status == "fail" and "TENDERHUB_RELAY_SERVER_ID" in clash.fix


def test_gtid_rules_per_flavor() -> None:
    def gtid(variables: dict[str, str], mariadb: bool) -> Check:
        return by_name(evaluate_variables(variables, mariadb=mariadb, mode="binlog", relay_server_id=9))["gtid"]

    loose = gtid({**MARIADB_VARS, "gtid_strict_mode": "OFF"}, True)
    assert loose.status == "warn" and "gtid_strict_mode = ON" in loose.fix
    assert gtid({**MARIADB_VARS, "gtid_domain_id": "3"}, True).status == "fail"
    # A DBA's out-of-band domain is fine: tracked, and said so.
    other = gtid({**MARIADB_VARS, "gtid_binlog_pos": "0-1-2330,7-1-4"}, True)
    assert other.status == "ok" and "other domains 7 are tracked" in other.value
    moved = by_name(
        evaluate_variables(
            {**MARIADB_VARS, "gtid_domain_id": "3"}, mariadb=True, mode="binlog", relay_server_id=9, relay_domain=3
        )
    )["gtid"]
    assert moved.status == "ok"
    off = gtid({**MYSQL_VARS, "gtid_mode": "OFF_PERMISSIVE"}, False)
    assert off.status == "fail"
    assert "gtid_mode = ON" in off.fix and "enforce_gtid_consistency = ON" in off.fix
    assert gtid({**MYSQL_VARS, "enforce_gtid_consistency": "WARN"}, False).status == "fail"


def test_retention() -> None:
    never = evaluate_retention({"binlog_expire_logs_seconds": "0", "expire_logs_days": "0.000000"}, mariadb=True)
    assert never.status == "warn" and "never" in never.value and "binlog_expire_logs_seconds = 604800" in never.fix
    short = evaluate_retention({"binlog_expire_logs_seconds": "43200"}, mariadb=False)
    assert short.status == "warn" and "12.0 h" in short.value
    week = evaluate_retention({"binlog_expire_logs_seconds": "604800", "expire_logs_days": "7.000000"}, mariadb=True)
    assert week.status == "ok" and week.value.startswith("168.0 h")
    # MySQL 8.0 falls back to expire_logs_days when the seconds are 0.
    days = evaluate_retention({"binlog_expire_logs_seconds": "0", "expire_logs_days": "3"}, mariadb=False)
    assert days.status == "ok" and days.value.startswith("72.0 h")
    # MariaDB 10.5 has only expire_logs_days: the fix names that.
    old = evaluate_retention({"expire_logs_days": "0"}, mariadb=True)
    assert old.status == "warn" and "expire_logs_days = 7" in old.fix
    assert evaluate_retention({"binlog_expire_logs_seconds": "43200"}, mariadb=False, mode="polling").status == "ok"


def test_outbox_columns() -> None:
    assert evaluate_outbox_columns([c.upper() for c in OUTBOX_COLUMNS], "x").status == "ok"
    check = evaluate_outbox_columns([c for c in OUTBOX_COLUMNS if c != "published_at"], "x")
    assert check.status == "fail" and "published_at" in check.value and "tenderhub migrate" in check.fix


# -- output --------------------------------------------------------------------------------------------------------


def test_render_indents_fixes_under_non_ok_checks_only() -> None:
    checks = [
        Check("log_bin", "ok", "ON", fix="never shown"),
        Check("binlog retention", "warn", "0 h", "line one\nline two"),
        Check("privileges", "fail", "lacks X", "GRANT X ON *.* TO 'r'@'%';"),
    ]
    lines = render(checks).splitlines()
    assert lines[0].split() == ["ok", "log_bin", "ON"]
    assert lines[1].startswith("WARN  binlog retention")
    assert lines[2].lstrip() == "fix: line one" and lines[2].startswith(" " * 8)
    assert lines[3].lstrip() == "line two" and lines[3].index("line two") == lines[2].index("line one")
    assert lines[4].startswith("FAIL  privileges")
    assert lines[5].lstrip() == "fix: GRANT X ON *.* TO 'r'@'%';"
    assert lines[-1] == "1 ok, 1 warn, 1 fail"
    assert "never shown" not in render(checks)


def test_exit_code() -> None:
    assert exit_code([Check("a", "ok", ""), Check("b", "warn", "")]) == 0
    assert exit_code([Check("a", "ok", ""), Check("b", "fail", "")]) == 1
    assert exit_code([]) == 0


# -- run_checks against a fake server ------------------------------------------------------------------------------


def settings(mode: RelayMode = "binlog") -> Settings:
    return Settings(
        _env_file=None,
        mysql_url="mysql+pymysql://app:pw@127.0.0.1:3306/tenderhub",
        relay_mysql_url="mysql+pymysql://tenderhub_relay:relay-secret@127.0.0.1:3306/tenderhub",
        kafka_bootstrap="127.0.0.1:9092",
        mongo_url="mongodb://127.0.0.1:27017/",
        redis_url="redis://127.0.0.1:6379/0",
        relay_mode=mode,
    )


class FakeCursor:
    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.rows: list[tuple[Any, ...]] = []
        self.description: tuple[tuple[str, ...], ...] | None = None

    def __enter__(self) -> FakeCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def execute(self, sql: str, args: object = None) -> int:
        self.server.executed.append(sql)
        for prefix, answer in self.server.answers.items():
            if sql.startswith(prefix):
                if isinstance(answer, BaseException):
                    raise answer
                self.rows = list(answer)
                return len(self.rows)
        raise AssertionError(f"unexpected query {sql}")

    def fetchone(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self.rows


class FakeServer:
    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.executed: list[str] = []

    def cursor(self) -> FakeCursor:
        return FakeCursor(self)


def mysql84(**overrides: Any) -> FakeServer:
    answers: dict[str, Any] = {
        "SELECT VERSION(), CURRENT_USER()": [("8.4.3", "tenderhub_relay@%")],
        "SELECT VERSION()": [("8.4.3",)],
        "SHOW BINARY LOG STATUS": [("binlog.000003", 157, "", "", "")],
        "SHOW GLOBAL VARIABLES": list(MYSQL_VARS.items()),
        "SHOW GRANTS": [(line,) for line in MYSQL_RELAY],
        "SELECT 1 FROM": [(1,)],
        "SELECT COLUMN_NAME": [(c,) for c in OUTBOX_COLUMNS],
    }
    return FakeServer({**answers, **overrides})


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[FakeServer]]:
    servers: list[FakeServer] = []

    @contextmanager
    def fake_connect(dsn: Any, database: str | None = None) -> Iterator[FakeServer]:
        assert dsn.user == "tenderhub_relay" and database == "tenderhub"
        yield servers[0]

    monkeypatch.setattr(doctor_run, "connect", fake_connect)
    yield servers


def test_run_checks_on_mysql_84_uses_the_new_status_statement(fake: list[FakeServer]) -> None:
    fake.append(mysql84())
    checks = run_checks(settings())
    assert [c.status for c in checks] == ["ok"] * len(checks), render(checks)
    assert by_name(checks)["binlog status"].value == "binlog.000003:157 (SHOW BINARY LOG STATUS)"
    assert "SHOW MASTER STATUS" not in fake[0].executed


def test_run_checks_falls_back_to_show_master_status(fake: list[FakeServer]) -> None:
    syntax = pymysql.err.ProgrammingError(1064, "You have an error in your SQL syntax near 'LOG STATUS'")
    fake.append(
        mysql84(
            **{
                "SELECT VERSION(), CURRENT_USER()": [("10.11.19-MariaDB-log", "tenderhub_relay@127.0.0.1")],
                "SELECT VERSION()": [("10.11.19-MariaDB-log",)],
                "SHOW BINARY LOG STATUS": syntax,
                "SHOW MASTER STATUS": [("mariadb-bin.000002", 60362242, "", "")],
                "SHOW GLOBAL VARIABLES": list(MARIADB_VARS.items()),
                "SHOW GRANTS": [(line,) for line in MARIADB_RELAY],
            }
        )
    )
    checks = by_name(run_checks(settings()))
    assert checks["binlog status"].value == "mariadb-bin.000002:60362242 (SHOW MASTER STATUS)"
    assert all(c.status == "ok" for c in checks.values())


def test_denied_binlog_status_fails_with_the_grant(fake: list[FakeServer]) -> None:
    denied = pymysql.err.OperationalError(1227, "Access denied; you need the REPLICATION CLIENT privilege")
    fake.append(mysql84(**{"SHOW BINARY LOG STATUS": denied}))
    check = by_name(run_checks(settings()))["binlog status"]
    assert check.status == "fail"
    assert check.fix.splitlines()[0] == "GRANT REPLICATION CLIENT ON *.* TO 'tenderhub_relay'@'%';"


def test_unreadable_outbox_fails_with_the_grant(fake: list[FakeServer]) -> None:
    denied = pymysql.err.OperationalError(1142, "SELECT command denied to user 'tenderhub_relay'@'%'")
    fake.append(mysql84(**{"SELECT 1 FROM": denied}))
    checks = by_name(run_checks(settings()))
    assert checks["outbox readable"].status == "fail"
    assert "GRANT SELECT ON `tenderhub`.`integration_outbox` TO 'tenderhub_relay'@'%';" in checks["outbox readable"].fix
    assert checks["outbox columns"].status == "fail"


def test_columns_fall_back_to_the_result_header(fake: list[FakeServer]) -> None:
    server = mysql84(**{"SELECT COLUMN_NAME": [], "SELECT * FROM": []})
    fake.append(server)
    original = FakeCursor.execute

    def execute(self: FakeCursor, sql: str, args: object = None) -> int:
        n = original(self, sql, args)
        if sql.startswith("SELECT * FROM"):
            self.description = tuple((c,) for c in OUTBOX_COLUMNS)
        return n

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(FakeCursor, "execute", execute)
        check = by_name(run_checks(settings()))["outbox columns"]
    assert check.status == "ok" and "LIMIT 0" in check.value


def test_unexpected_server_error_fails_that_check_only(fake: list[FakeServer]) -> None:
    fake.append(mysql84(**{"SHOW GRANTS": pymysql.err.OperationalError(1290, "read only")}))
    checks = by_name(run_checks(settings()))
    assert checks["privileges"].status == "fail" and "1290" in checks["privileges"].value
    assert checks["outbox columns"].status == "ok"


def test_connection_failure_is_one_fail_check_without_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    @contextmanager
    def refuse(dsn: Any, database: str | None = None) -> Iterator[None]:
        raise pymysql.err.OperationalError(1045, "Access denied for user 'tenderhub_relay'@'127.0.0.1'")
        yield

    monkeypatch.setattr(doctor_run, "connect", refuse)
    checks = run_checks(settings())
    assert len(checks) == 1
    (check,) = checks
    assert check.status == "fail" and check.name == "connection"
    assert "Access denied" in check.value and "1045" in check.value
    assert "TENDERHUB_RELAY_MYSQL_URL" in check.fix and "tenderhub migrate" in check.fix
    assert "relay-secret" not in render(checks)
    assert exit_code(checks) == 1


def test_unreachable_server_fix_names_host_and_port(monkeypatch: pytest.MonkeyPatch) -> None:
    @contextmanager
    def refuse(dsn: Any, database: str | None = None) -> Iterator[None]:
        raise pymysql.err.OperationalError(2003, "Can't connect to MySQL server on '127.0.0.1' ([Errno 111])")
        yield

    monkeypatch.setattr(doctor_run, "connect", refuse)
    (check,) = run_checks(settings())
    assert check.status == "fail" and "2003" in check.value
    assert "host and port in TENDERHUB_RELAY_MYSQL_URL" in check.fix


def test_database_wide_execute_covers_the_partition_procedures() -> None:
    lines = [*MARIADB_RELAY[:3], "GRANT EXECUTE ON `tenderhub`.* TO `r`@`%`"]
    checks = privileges(lines)
    assert checks["privileges"].status == "ok", checks["privileges"].value
    assert not GrantTarget("other", "*").covers(GrantTarget("tenderhub", "tenderhub_outbox_add_partition", "PROCEDURE"))


@pytest.mark.parametrize(("mariadb", "name"), [(True, "log_bin_compress"), (False, "binlog_transaction_compression")])
def test_a_compressed_binlog_fails_the_check_with_the_fix(mariadb: bool, name: str) -> None:
    base = MARIADB_VARS if mariadb else MYSQL_VARS
    assert by_name(evaluate_variables(base, mariadb=mariadb, mode="binlog", relay_server_id=9))[name].status == "ok"
    check = by_name(evaluate_variables({**base, name: "ON"}, mariadb=mariadb, mode="binlog", relay_server_id=9))[name]
    assert check.status == "fail" and f"{name} = OFF" in check.fix
