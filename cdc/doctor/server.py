"""The server's settings as the relay needs them: version, binlog format and row image, GTIDs, server id, binlog
retention, the outbox's columns; each with the my.cnf line or statement that fixes it."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import replace

from cdc.doctor.checks import MIN_RETENTION_HOURS, OUTBOX_COLUMNS, SUGGESTED_RETENTION_S, Check
from schema.mysql import OUTBOX_TABLE, RelayMode
from schema.settings import ENV_PREFIX

# -- server settings ----------------------------------------------------------------------------------------------


def _version_tuple(version: str) -> tuple[int, int, int] | None:
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", version)
    return (int(m[1]), int(m[2]), int(m[3] or 0)) if m else None


def binlog_status_statement(version: str, mariadb: bool) -> str:
    """MySQL 8.2 renamed SHOW MASTER STATUS and 8.4 removed the old name; MariaDB keeps it."""
    v = _version_tuple(version)
    if not mariadb and v is not None and v >= (8, 2, 0):
        return "SHOW BINARY LOG STATUS"
    return "SHOW MASTER STATUS"


def evaluate_server(version: str, mariadb: bool) -> Check:
    flavor = "MariaDB" if mariadb else "MySQL"
    value = f"{flavor} {version}; binlog status via {binlog_status_statement(version, mariadb)}"
    v = _version_tuple(version)
    if v is None:
        return Check("server", "warn", value + " (version not understood)", "check the server is MariaDB or MySQL")
    # binlog_row_metadata and BINLOG MONITOR arrived in MariaDB 10.5; MySQL has the metadata since 8.0.1.
    minimum = (10, 5, 0) if mariadb else (8, 0, 1)
    if v < minimum:
        need = ".".join(map(str, minimum[:2]))
        return Check(
            "server",
            "fail",
            value,
            f"upgrade to {flavor} >= {need}: older servers lack binlog_row_metadata, which the relay needs",
        )
    return Check("server", "ok", value)


def _cnf(line: str, restart: bool = True) -> str:
    tail = ", then restart the server" if restart else ""
    return f"in my.cnf under [mysqld]: {line}{tail}"


def _require(variables: Mapping[str, str], name: str, want: str, fix: str) -> Check:
    got = variables.get(name)
    if got is None:
        return Check(name, "fail", "not reported by this server", fix)
    if got.upper() != want and not (want == "ON" and got == "1"):
        return Check(name, "fail", f"{got} (the relay needs {want})", fix)
    return Check(name, "ok", got)


def _for_mode(check: Check, mode: RelayMode) -> Check:
    """Polling mode reads the table, not the binlog: binlog problems cannot stop it."""
    if mode == "polling" and check.status == "fail":
        return replace(
            check,
            status="warn",
            fix=f"only needed for {ENV_PREFIX}RELAY_MODE=binlog (this relay polls); {check.fix}",
        )
    return check


def evaluate_variables(
    variables: Mapping[str, str], *, mariadb: bool, mode: RelayMode, relay_server_id: int, relay_domain: int = 0
) -> list[Check]:
    """Checks from SHOW GLOBAL VARIABLES (names lower-case): binlog on, ROW format, FULL image and metadata,
    server_id, GTID and binlog retention."""
    basename = "mariadb-bin" if mariadb else "mysql-bin"
    checks = [
        _require(variables, "log_bin", "ON", _cnf(f"log_bin = {basename}")),
        _require(variables, "binlog_format", "ROW", _cnf("binlog_format = ROW")),
        _require(variables, "binlog_row_image", "FULL", _cnf("binlog_row_image = FULL")),
        _require(
            variables,
            "binlog_row_metadata",
            "FULL",
            _cnf("binlog_row_metadata = FULL") + " (needs MariaDB >= 10.5 or MySQL >= 8.0.1)",
        ),
        _server_id(variables, relay_server_id),
        _gtid(variables, mariadb, relay_domain),
        _uncompressed(variables, mariadb),
    ]
    return [*(_for_mode(c, mode) for c in checks), evaluate_retention(variables, mariadb, mode)]


def _uncompressed(variables: Mapping[str, str], mariadb: bool) -> Check:
    """The relay cannot read compressed binlog events (it stops on one, rather than lose the rows inside)."""
    name = "log_bin_compress" if mariadb else "binlog_transaction_compression"
    got = variables.get(name)
    if got is None:
        return Check(name, "ok", "not supported by this server (never compressed)")
    if got.upper() in ("ON", "1"):
        return Check(name, "fail", f"{got} (the relay reads no compressed events)", _cnf(f"{name} = OFF"))
    return Check(name, "ok", got)


def _server_id(variables: Mapping[str, str], relay_server_id: int) -> Check:
    raw = variables.get("server_id", "")
    try:
        server_id = int(raw)
    except ValueError:
        return Check("server_id", "fail", raw or "not reported", _cnf("server_id = 1"))
    if server_id == 0:
        return Check("server_id", "fail", "0 (a server with server_id 0 refuses replicas)", _cnf("server_id = 1"))
    if server_id == relay_server_id:
        return Check(
            "server_id",
            "fail",
            f"{server_id}, the same id the relay registers with",
            f"set {ENV_PREFIX}RELAY_SERVER_ID to an id no server or replica uses",
        )
    return Check("server_id", "ok", f"{server_id} (the relay registers as {relay_server_id})")


def _gtid(variables: Mapping[str, str], mariadb: bool, relay_domain: int) -> Check:
    if mariadb:
        strict = variables.get("gtid_strict_mode", "")
        domain = variables.get("gtid_domain_id", "")
        pos = variables.get("gtid_binlog_pos", "")
        value = f"gtid_strict_mode={strict or '?'}, gtid_domain_id={domain or '?'}, gtid_binlog_pos={pos or '(empty)'}"
        if domain and domain != str(relay_domain):
            # The application's sessions write in the server's default domain: outbox rows there would stop the
            # relay (it orders events by one domain).
            return Check(
                "gtid",
                "fail",
                value + f" (the relay follows domain {relay_domain}: TENDERHUB_RELAY_GTID_DOMAIN)",
                _cnf(f"gtid_domain_id = {relay_domain}") + f", or set TENDERHUB_RELAY_GTID_DOMAIN={domain}",
            )
        others = sorted({p.split("-", 1)[0] for p in pos.split(",") if p.strip()} - {str(relay_domain)})
        if others:
            value += (
                f"; other domains {', '.join(others)} are tracked in the relay position and may carry no outbox row"
            )
        if strict.upper() not in ("ON", "1"):
            # Without strict mode an out-of-order GTID is logged, and the relay's position ordering breaks.
            return Check("gtid", "warn", value, _cnf("gtid_strict_mode = ON"))
        return Check("gtid", "ok", value)
    mode = variables.get("gtid_mode", "")
    enforce = variables.get("enforce_gtid_consistency", "")
    value = f"gtid_mode={mode or '?'}, enforce_gtid_consistency={enforce or '?'}"
    if mode.upper() != "ON" or enforce.upper() != "ON":
        return Check(
            "gtid",
            "fail",
            value,
            "in my.cnf under [mysqld]:\ngtid_mode = ON\nenforce_gtid_consistency = ON\nthen restart the server "
            "(a running server goes OFF -> OFF_PERMISSIVE -> ON_PERMISSIVE -> ON one SET GLOBAL at a time)",
        )
    return Check("gtid", "ok", value)


def evaluate_retention(variables: Mapping[str, str], mariadb: bool, mode: RelayMode = "binlog") -> Check:
    """How long binlogs are kept: 0 means never purged (the disk fills), under a day loses a stopped relay's
    position."""
    raw_s = variables.get("binlog_expire_logs_seconds")
    raw_d = variables.get("expire_logs_days")
    shown = ", ".join(f"{k}={v}" for k, v in (("binlog_expire_logs_seconds", raw_s), ("expire_logs_days", raw_d)) if v)
    # MariaDB < 10.6 only has expire_logs_days; MySQL 8.4 only has binlog_expire_logs_seconds.
    line = (
        f"binlog_expire_logs_seconds = {SUGGESTED_RETENTION_S}"
        if raw_s is not None or not mariadb
        else f"expire_logs_days = {SUGGESTED_RETENTION_S // 86400}"
    )
    fix = _cnf(f"{line}  # 7 days; keep it above the longest relay outage you plan for", restart=False)
    try:
        seconds = float(raw_s or 0)
        days = float(raw_d or 0)
    except ValueError:
        return Check("binlog retention", "warn", f"not understood ({shown})", fix)
    # MySQL 8.0 uses expire_logs_days only when binlog_expire_logs_seconds is 0; MariaDB keeps them in step.
    effective = seconds if seconds > 0 else days * 86400
    hours = effective / 3600
    if effective <= 0:
        return Check("binlog retention", "warn", f"0 h: binlogs never expire, the disk fills up ({shown})", fix)
    value = f"{hours:.1f} h ({shown})"
    if hours < MIN_RETENTION_HOURS and mode == "binlog":
        return Check(
            "binlog retention",
            "warn",
            f"{value}: a relay stopped for longer than {hours:.1f} h finds its position purged "
            "(then only `tenderhub cdc run --resnapshot` resumes it)",
            fix,
        )
    return Check("binlog retention", "ok", value)


def evaluate_outbox_columns(found: Iterable[str], source: str) -> Check:
    present = {c.lower() for c in found}
    missing = [c for c in OUTBOX_COLUMNS if c not in present]
    if missing:
        return Check(
            "outbox columns",
            "fail",
            f"{OUTBOX_TABLE} lacks {', '.join(missing)} (seen via {source})",
            "run `tenderhub migrate`: its migrations create the outbox with every column the relay reads",
        )
    return Check("outbox columns", "ok", f"all {len(OUTBOX_COLUMNS)} relay columns present (via {source})")
