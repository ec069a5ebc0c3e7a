"""Doctor against the running stack: the migrated relay user passes; a wrong password is one clear failure."""

from __future__ import annotations

import uuid
from urllib.parse import quote, urlsplit

from pydantic import SecretStr

from cdc.doctor import exit_code, render, run_checks
from schema.settings import Settings


def test_running_stack_has_no_failures(settings: Settings) -> None:
    checks = run_checks(settings)
    report = render(checks)
    assert exit_code(checks) == 0, report
    assert all(c.status in ("ok", "warn") for c in checks), report
    by_name = {c.name: c for c in checks}
    # Every check ran: nothing was skipped on the way.
    for name in (
        "connection",
        "server",
        "binlog status",
        "log_bin",
        "binlog_format",
        "binlog_row_image",
        "binlog_row_metadata",
        "server_id",
        "gtid",
        "binlog retention",
        "privileges",
        "excess privileges",
        "outbox readable",
        "outbox columns",
    ):
        assert name in by_name, report
    privileges = by_name["privileges"]
    assert privileges.status == "ok", report
    assert "lacks" not in privileges.value and privileges.fix == ""
    assert settings.relay_mysql.password not in report
    assert "IDENTIFIED" not in report


def test_wrong_relay_password_is_one_fail_check(settings: Settings) -> None:
    parts = urlsplit(settings.relay_mysql_url.get_secret_value())
    wrong = f"wrong-{uuid.uuid4().hex}"
    url = f"{parts.scheme}://{quote(parts.username or '', safe='')}:{wrong}@{parts.hostname}:{parts.port}{parts.path}"
    # A fresh Settings, not model_copy: the copy would keep an already cached `relay_mysql`.
    bad = Settings(_env_file=None, **{**settings.model_dump(), "relay_mysql_url": SecretStr(url)})
    assert bad.relay_mysql.password == wrong
    checks = run_checks(bad)
    assert len(checks) == 1, render(checks)
    (check,) = checks
    assert check.name == "connection" and check.status == "fail"
    assert "1045" in check.value and "Access denied" in check.value
    assert "TENDERHUB_RELAY_MYSQL_URL" in check.fix
    assert wrong not in render(checks)
    assert exit_code(checks) == 1
