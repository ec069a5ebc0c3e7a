"""The relay user's privileges: parse SHOW GRANTS as MySQL 8.4 and MariaDB print it, compare with exactly what the
relay needs in its mode (`schema.mysql.relay_grants`), and say which GRANT or REVOKE fixes the difference."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from itertools import pairwise
from typing import Literal

from cdc.doctor.checks import Check
from schema.mysql import RelayMode, relay_grants

log = logging.getLogger(__name__)

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
