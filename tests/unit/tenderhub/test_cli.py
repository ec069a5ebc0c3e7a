"""CLI behaviour that needs no services: JSON logs, and settings errors that say what to fix."""

from __future__ import annotations

import json
import logging

import pytest

from tenderhub.cli import JsonFormatter, main


def test_json_log_lines_parse_and_carry_the_message() -> None:
    record = logging.LogRecord(
        "cdc.relay", logging.INFO, __file__, 1, "committed %d events at %s", (5, "gtid 0-1-9"), None
    )
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "committed 5 events at gtid 0-1-9"
    assert entry["level"] == "INFO" and entry["logger"] == "cdc.relay" and entry["time"].endswith("Z")


def test_missing_settings_exit_2_with_the_fix(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TENDERHUB_ENV_FILE", "/nonexistent.env")
    for var in ("MYSQL_URL", "RELAY_MYSQL_URL", "KAFKA_BOOTSTRAP", "MONGO_URL", "REDIS_URL"):
        monkeypatch.delenv(f"TENDERHUB_{var}", raising=False)
    assert main(["doctor"]) == 2
    err = capsys.readouterr().err
    assert "TENDERHUB_MYSQL_URL is not set" in err and "tenderhub stack up" in err


def test_cdc_run_refuses_contradictory_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENDERHUB_ENV_FILE", "/nonexistent.env")
    assert main(["cdc", "run", "--from-now", "--resnapshot"]) == 2
