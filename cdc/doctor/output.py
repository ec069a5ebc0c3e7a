"""The doctor's report: one line per check with its fix, and the exit status."""

from __future__ import annotations

from cdc.doctor.checks import Check, Status
from cdc.doctor.grants import Grants, GrantTarget, Privilege, evaluate_privileges, parse_grants, required_privileges
from cdc.doctor.run import run_checks
from cdc.doctor.server import evaluate_outbox_columns, evaluate_retention, evaluate_server, evaluate_variables

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
