"""`tenderhub doctor`: check, as the relay user, that the MySQL/MariaDB source is set up the way the relay needs,
and say how to fix each problem (the my.cnf line, the GRANT or REVOKE statement)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from itertools import pairwise
from typing import Any, Literal

import pymysql

from schema.mysql import OUTBOX_TABLE, RelayMode, connect, is_mariadb, relay_grants
from schema.settings import ENV_PREFIX, MysqlDsn, Settings

log = logging.getLogger(__name__)

Status = Literal["ok", "warn", "fail"]

RELAY_URL_VAR = f"{ENV_PREFIX}RELAY_MYSQL_URL"
# Every column the relay reads (backfill, binlog rows) or writes (mark published, janitor).
OUTBOX_COLUMNS = (
    "id",
    "event_type",
    "aggregate_type",
    "aggregate_id",
    "schema_version",
    "payload",
    "published",
    "created_at",
    "published_at",
)
MIN_RETENTION_HOURS = 24.0
SUGGESTED_RETENTION_S = 7 * 24 * 3600
VARIABLES = (
    "log_bin",
    "binlog_format",
    "binlog_row_image",
    "binlog_row_metadata",
    "server_id",
    "gtid_strict_mode",
    "gtid_binlog_pos",
    "gtid_domain_id",
    "gtid_mode",
    "enforce_gtid_consistency",
    "binlog_expire_logs_seconds",
    "expire_logs_days",
)
# The relay follows one MariaDB GTID domain (cdc.source.BinlogSource's default).

# Error numbers (pymysql maps them to different exception classes, so compare numbers).
ER_ACCESS_DENIED = 1045
ER_DBACCESS_DENIED = 1044
ER_BAD_DB = 1049
ER_PARSE = 1064
ER_TABLEACCESS_DENIED = 1142
ER_NO_SUCH_TABLE = 1146
ER_SPECIFIC_ACCESS_DENIED = 1227
CONNECTION_LOST = frozenset({0, 2006, 2013, 2055})


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    value: str
    fix: str = ""


# -- grants ------------------------------------------------------------------------------------------------------


class GrantParseError(ValueError):
    """A SHOW GRANTS line this module does not understand."""


@dataclass(frozen=True)
class GrantTarget:
    """What a privilege is granted on: `*.*`, `db`.* (db may hold LIKE wildcards), `db`.`table`, or a routine
    or proxy account (`kind`)."""

    database: str
    table: str
    kind: str = ""

    def sql(self) -> str:
        if self.kind == "PROXY":
            return self.table
        db = "*" if self.database == "*" else quote_ident(self.database)
        table = "*" if self.table == "*" else quote_ident(self.table)
        return f"{self.kind} {db}.{table}" if self.kind else f"{db}.{table}"

    def covers(self, other: GrantTarget) -> bool:
        if self.kind != other.kind:
            # A global or database-wide grant (EXECUTE ON db.*) also covers that database's routines.
            routine = other.kind in ("PROCEDURE", "FUNCTION") and not self.kind and self.table == "*"
            if not routine:
                return False
            return self.database == "*" or (other.database != "*" and _db_like(self.database, other.database))
        if self.database == "*":
            return True
        if other.database == "*":
            return False
        if self.table == "*":
            return _db_like(self.database, other.database)
        return (self.database, self.table) == (other.database, other.table)


@dataclass(frozen=True)
class Privilege:
    name: str  # upper case, aliases resolved: "SELECT", "REPLICATION SLAVE", "ALL PRIVILEGES", "GRANT OPTION"
    target: GrantTarget
    columns: frozenset[str] = frozenset()  # empty: the whole target

    def sql(self) -> str:
        if not self.columns:
            return self.name
        return f"{self.name} ({', '.join(quote_ident(c) for c in sorted(self.columns))})"

    def describe(self) -> str:
        return f"{self.sql()} ON {self.target.sql()}"


@dataclass(frozen=True)
class Grants:
    """The privileges of one account as SHOW GRANTS prints them; never holds a password or its hash."""

    privileges: frozenset[Privilege] = frozenset()
    roles: tuple[str, ...] = ()
    unparsed: tuple[str, ...] = ()  # the part of each line before " TO ", for the report


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<bq>`(?:[^`]|``)*`)
      | (?P<sq>'(?:[^'\\]|\\.|'')*')
      | (?P<dq>"(?:[^"\\]|\\.|"")*")
      | (?P<punct>[(),.@*;=])
      | (?P<word>[^\s`'"(),.@*;=]+)
    )""",
    re.VERBOSE,
)
_ALIASES = {
    "ALL": "ALL PRIVILEGES",
    "REPLICATION REPLICA": "REPLICATION SLAVE",
    "REPLICA MONITOR": "SLAVE MONITOR",
}
# MariaDB >= 10.5.2 kept REPLICATION CLIENT as an alias of BINLOG MONITOR; MySQL has no BINLOG MONITOR.
_MARIADB_ALIASES = {"REPLICATION CLIENT": "BINLOG MONITOR"}
_OBJECT_KINDS = ("TABLE", "FUNCTION", "PROCEDURE", "PACKAGE")


@dataclass(frozen=True)
class _Token:
    kind: str  # "ident" (backticked or bare word), "string", "punct"
    text: str  # unquoted
    word: bool = False  # a bare word, which can be a keyword

    def kw(self, *words: str) -> bool:
        return self.word and self.text.upper() in words


def _tokens(line: str) -> list[_Token]:
    out: list[_Token] = []
    pos, end = 0, len(line.rstrip())
    while pos < end:
        m = _TOKEN.match(line, pos)
        if not m or m.end() == pos:
            raise GrantParseError(f"unexpected character at {pos}")
        pos = m.end()
        if m["bq"]:
            out.append(_Token("ident", m["bq"][1:-1].replace("``", "`")))
        elif m["sq"] or m["dq"]:
            raw = m["sq"] or m["dq"]
            out.append(_Token("string", raw[1:-1].replace(raw[0] * 2, raw[0])))
        elif m["punct"]:
            out.append(_Token("punct", m["punct"]))
        else:
            out.append(_Token("ident", m["word"], word=True))
    return out


def _split_top(tokens: list[_Token]) -> list[list[_Token]]:
    """Split at the commas outside parentheses."""
    parts: list[list[_Token]] = [[]]
    depth = 0
    for tok in tokens:
        if tok.kind == "punct" and tok.text == "(":
            depth += 1
        elif tok.kind == "punct" and tok.text == ")":
            depth -= 1
        if depth == 0 and tok.kind == "punct" and tok.text == ",":
            parts.append([])
        else:
            parts[-1].append(tok)
    return [p for p in parts if p]


def _privilege_name(words: list[str], mariadb: bool) -> str:
    name = " ".join(w.upper() for w in words)
    name = _ALIASES.get(name, name)
    return _MARIADB_ALIASES.get(name, name) if mariadb else name


def _account_text(tokens: list[_Token]) -> str:
    parts = []
    for tok in tokens:
        if tok.kind == "punct":
            parts.append(tok.text)
        else:
            parts.append(quote_ident(tok.text))
    return "".join(parts)


def _target(tokens: list[_Token], proxy: bool) -> GrantTarget:
    if proxy:
        return GrantTarget("", _account_text(tokens), "PROXY")
    kind = ""
    if len(tokens) > 1 and tokens[0].kw(*_OBJECT_KINDS) and not (tokens[1].kind == "punct" and tokens[1].text == "."):
        kind = tokens[0].text.upper()
        tokens = tokens[1:]
        if kind == "PACKAGE" and tokens and tokens[0].kw("BODY"):
            kind, tokens = "PACKAGE BODY", tokens[1:]
    if kind == "TABLE":
        kind = ""  # ON TABLE db.t is the same object as ON db.t
    if len(tokens) != 3 or tokens[1].text != "." or tokens[1].kind != "punct":
        raise GrantParseError("expected db.table after ON")
    db, table = tokens[0], tokens[2]
    return GrantTarget(db.text, table.text, kind)


def _parse_line(line: str, mariadb: bool) -> tuple[list[Privilege], list[str]]:
    """(privileges, roles) of one GRANT line; raise GrantParseError for anything else."""
    toks = _tokens(line)
    if not toks or not toks[0].kw("GRANT"):
        raise GrantParseError("not a GRANT statement")
    on_at: int | None = None
    to_at = len(toks)
    depth = 0
    for i, tok in enumerate(toks[1:], start=1):
        if tok.kind == "punct" and tok.text in ("(", ")"):
            depth += 1 if tok.text == "(" else -1
        elif depth == 0 and tok.kw("ON") and on_at is None:
            on_at = i
        elif depth == 0 and tok.kw("TO"):
            to_at = i
            break
    if on_at is None:
        # GRANT `role` TO `user`@`host`: privileges come through the role.
        return [], [_account_text(part) for part in _split_top(toks[1:to_at])]
    privs: list[tuple[str, frozenset[str]]] = []
    for part in _split_top(toks[1:on_at]):
        words = [t.text for t in part if t.word]
        if "(" in (t.text for t in part if t.kind == "punct"):
            open_at = next(i for i, t in enumerate(part) if t.kind == "punct" and t.text == "(")
            words = [t.text for t in part[:open_at] if t.word]
            cols = frozenset(t.text.lower() for t in part[open_at:] if t.kind == "ident")
        else:
            cols = frozenset()
        if not words:
            raise GrantParseError("empty privilege")
        privs.append((_privilege_name(words, mariadb), cols))
    proxy = any(name == "PROXY" for name, _ in privs)
    target = _target(toks[on_at + 1 : to_at], proxy)
    out = [Privilege(name, target, cols) for name, cols in privs]
    rest = toks[to_at + 1 :]
    # Only bare words count: a quoted password hash or auth string can never look like a keyword.
    # PROXY ... WITH GRANT OPTION lives in the proxy row itself: REVOKE PROXY removes both.
    if not proxy and any(a.kw("GRANT") and b.kw("OPTION") for a, b in pairwise(rest)):
        out.append(Privilege("GRANT OPTION", target))
    return out, []


def _safe_prefix(line: str) -> str:
    """The part of a grant line before its grantee: never the IDENTIFIED BY ... hash that may follow."""
    head = re.split(r"\s+TO\s+", line, maxsplit=1, flags=re.IGNORECASE)[0]
    head = re.split(r"\s+IDENTIFIED\s+", head, maxsplit=1, flags=re.IGNORECASE)[0]
    return head[:200]


def parse_grants(lines: Iterable[str], mariadb: bool) -> Grants:
    """Normalise SHOW GRANTS output: quoting, privilege order, column order and case, aliases."""
    privileges: set[Privilege] = set()
    roles: list[str] = []
    unparsed: list[str] = []
    for line in lines:
        if re.match(r"\s*SET\s+DEFAULT\s+ROLE\b", line, re.IGNORECASE):
            continue  # names a role already listed by its own GRANT line
        try:
            privs, granted_roles = _parse_line(line, mariadb)
        except GrantParseError as exc:
            log.debug("grant line not understood (%s): %s", exc, _safe_prefix(line))
            unparsed.append(_safe_prefix(line))
            continue
        privileges.update(privs)
        roles.extend(granted_roles)
    return Grants(frozenset(privileges), tuple(roles), tuple(unparsed))


def required_privileges(mode: RelayMode, database: str, mariadb: bool) -> frozenset[Privilege]:
    """What `schema.mysql.relay_grants` grants the relay, in the same normal form as `parse_grants`."""
    return parse_grants((f"GRANT {g}" for g in relay_grants(mode, database, mariadb)), mariadb).privileges


def _order(p: Privilege) -> tuple[str, bool, str, str, str, tuple[str, ...]]:
    t = p.target
    return (t.kind, t.database != "*", t.database, t.table, p.name, tuple(sorted(p.columns)))


def missing_privileges(granted: Grants, required: Iterable[Privilege]) -> list[Privilege]:
    """Each required privilege (narrowed to the columns still lacking) that no grant covers."""
    missing = []
    for need in sorted(required, key=_order):
        whole = False
        have_cols: set[str] = set()
        for g in granted.privileges:
            if g.name not in (need.name, "ALL PRIVILEGES") or not g.target.covers(need.target):
                continue
            if g.columns:
                have_cols |= g.columns
            else:
                whole = True
        if whole:
            continue
        if not need.columns:
            missing.append(need)
        elif lacking := need.columns - have_cols:
            missing.append(replace(need, columns=frozenset(lacking)))
    return missing


def excess_privileges(granted: Grants, required: Iterable[Privilege]) -> list[Privilege]:
    """Each granted privilege (narrowed to the extra columns) beyond exactly what the relay needs."""
    needed = list(required)
    excess = []
    for g in sorted(granted.privileges, key=_order):
        if g.name == "USAGE":
            continue
        same = [r for r in needed if r.name == g.name and r.target == g.target]
        if not same:
            excess.append(g)
            continue
        need_cols = frozenset[str]().union(*(r.columns for r in same))
        if any(not r.columns for r in same) or not need_cols:
            continue
        if not g.columns:
            excess.append(g)  # the whole table where a few columns suffice
        elif extra := g.columns - need_cols:
            excess.append(replace(g, columns=frozenset(extra)))
    return excess


def quote_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def sql_account(current_user: str) -> str:
    """'user'@'host' from CURRENT_USER()'s user@host."""
    user, at, host = current_user.rpartition("@")
    if not at:
        user, host = current_user, "%"

    def q(s: str) -> str:
        return "'" + s.replace("\\", "\\\\").replace("'", "''") + "'"

    return f"{q(user)}@{q(host)}"


def _by_target(privs: Iterable[Privilege]) -> dict[GrantTarget, list[Privilege]]:
    by_target: dict[GrantTarget, list[Privilege]] = {}
    for p in sorted(privs, key=_order):
        by_target.setdefault(p.target, []).append(p)
    return by_target


def describe_privileges(privs: Iterable[Privilege]) -> str:
    """'A, B ON x; C (`col`) ON y': one clause per target."""
    return "; ".join(f"{', '.join(p.sql() for p in ps)} ON {t.sql()}" for t, ps in _by_target(privs).items())


def _statements(verb: Literal["GRANT", "REVOKE"], privs: Iterable[Privilege], account: str) -> list[str]:
    joiner = "TO" if verb == "GRANT" else "FROM"
    return [
        f"{verb} {', '.join(p.sql() for p in ps)} ON {target.sql()} {joiner} {account};"
        for target, ps in _by_target(privs).items()
    ]


def grant_statements(privs: Iterable[Privilege], account: str) -> list[str]:
    return _statements("GRANT", privs, account)


def revoke_statements(privs: Iterable[Privilege], account: str) -> list[str]:
    return _statements("REVOKE", privs, account)


_MIGRATE_HINT = "or run `tenderhub migrate` (admin URL), which sets the relay user's grants to exactly this set"


def evaluate_privileges(granted: Grants, required: Iterable[Privilege], account: str, mode: RelayMode) -> list[Check]:
    """Two checks: what the relay lacks (fail), and what it holds beyond its needs (warn)."""
    needed = sorted(required, key=_order)
    missing = missing_privileges(granted, needed)
    if missing:
        privileges = Check(
            "privileges",
            "fail",
            f"{account} lacks (for {mode} mode): {describe_privileges(missing)}",
            "\n".join([*grant_statements(missing, account), _MIGRATE_HINT]),
        )
    else:
        privileges = Check(
            "privileges",
            "ok",
            f"{account} has all the relay needs in {mode} mode: {describe_privileges(needed)}",
        )
    excess = excess_privileges(granted, needed)
    notes = [describe_privileges(excess)] if excess else []
    notes += [f"role {r} (its privileges are not examined)" for r in granted.roles]
    notes += [f"not understood: {u} ..." for u in granted.unparsed]
    if not notes:
        return [privileges, Check("excess privileges", "ok", f"none beyond what {mode} mode needs")]
    fixes = revoke_statements(excess, account)
    fixes += [f"REVOKE {r} FROM {account};" for r in granted.roles]
    # A REVOKE can take needed privileges (or their column grants) with it: grant those again.
    regrant = [
        p for p in needed if any(x.name in (p.name, "ALL PRIVILEGES") and x.target.covers(p.target) for x in excess)
    ]
    if regrant:
        fixes += grant_statements(regrant, account)
    fixes.append(_MIGRATE_HINT)
    return [
        privileges,
        Check("excess privileges", "warn", f"beyond what {mode} mode needs: " + "; ".join(notes), "\n".join(fixes)),
    ]


_ANY_ONE, _ANY_RUN = 1, 2  # LIKE's `_` and `%`; 0 = a literal character


def _db_like(pattern: str, name: str) -> bool:
    """Database-level grants match names with LIKE wildcards (`_`, `%`, backslash escapes).

    Not a regex: one `.*` per `%` backtracks exponentially (`%a%a%a%a%a%a%a%a%b` against 60 letters took 41 s).
    Matching resumes from the last `%` only, so the worst case is len(pattern) * len(name) steps.
    """
    chars: list[str] = []
    kinds: list[int] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            chars.append(pattern[i + 1])
            kinds.append(0)
            i += 2
            continue
        chars.append(ch)
        kinds.append(_ANY_RUN if ch == "%" else _ANY_ONE if ch == "_" else 0)
        i += 1
    p = n = 0
    run_at, resume = -1, 0  # the last `%` seen and where in the name its run ends so far
    while n < len(name):
        if p < len(kinds) and kinds[p] != _ANY_RUN and (kinds[p] == _ANY_ONE or chars[p] == name[n]):
            p, n = p + 1, n + 1
        elif p < len(kinds) and kinds[p] == _ANY_RUN:
            run_at, resume, p = p, n, p + 1
        elif run_at >= 0:
            # The pattern after the last `%` failed here: let that `%` take one more character and try again.
            resume += 1
            p, n = run_at + 1, resume
        else:
            return False
    return all(k == _ANY_RUN for k in kinds[p:])


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
    ]
    return [*(_for_mode(c, mode) for c in checks), evaluate_retention(variables, mariadb, mode)]


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


# -- output --------------------------------------------------------------------------------------------------------

_LABELS: dict[Status, str] = {"ok": "ok", "warn": "WARN", "fail": "FAIL"}


def render(checks: list[Check]) -> str:
    """One line per check (status, name, value); the fix indented under each check that is not ok."""
    if not checks:
        return "no checks ran"
    width = max(len(c.name) for c in checks)
    pad = " " * (4 + 2 + width + 2)
    lines = []
    for c in checks:
        value = c.value.splitlines() or [""]
        lines.append(f"{_LABELS[c.status]:<4}  {c.name:<{width}}  {value[0]}")
        lines.extend(pad + v for v in value[1:])
        if c.status != "ok" and c.fix:
            fix = c.fix.splitlines()
            lines.append(f"{pad}fix: {fix[0]}")
            lines.extend(f"{pad}     {f}" for f in fix[1:])
    counts = {s: sum(c.status == s for c in checks) for s in _LABELS}
    lines.append(f"{counts['ok']} ok, {counts['warn']} warn, {counts['fail']} fail")
    return "\n".join(lines)


def exit_code(checks: list[Check]) -> int:
    """0 when nothing failed (warnings allowed), 1 otherwise."""
    return 1 if any(c.status == "fail" for c in checks) else 0


__all__ = [
    "Check",
    "GrantTarget",
    "Grants",
    "Privilege",
    "evaluate_outbox_columns",
    "evaluate_privileges",
    "evaluate_retention",
    "evaluate_server",
    "evaluate_variables",
    "exit_code",
    "parse_grants",
    "render",
    "required_privileges",
    "run_checks",
]
