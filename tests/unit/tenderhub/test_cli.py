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


@pytest.mark.parametrize(
    ("argv", "service", "variable"),
    [
        (["api", "token", "list"], "MySQL", "TENDERHUB_MYSQL"),
        (["verify", "--family", "summaries"], "MySQL", "TENDERHUB_MYSQL"),
        (["dlq", "list"], "Kafka", "TENDERHUB_KAFKA_BOOTSTRAP"),
        (["rebuild", "--yes"], "Kafka", "TENDERHUB_KAFKA_BOOTSTRAP"),
    ],
)
def test_a_service_that_cannot_be_reached_is_one_line_and_exit_69_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    service: str,
    variable: str,
) -> None:
    # Port 1: nothing listens there. Exit 1 already means "drift" (verify) or "cannot replay" (dlq).
    monkeypatch.setenv("TENDERHUB_ENV_FILE", "/nonexistent.env")
    for var in ("MYSQL_URL", "RELAY_MYSQL_URL", "MYSQL_READER_URL"):
        monkeypatch.setenv(f"TENDERHUB_{var}", "mysql+pymysql://u:s3cret@127.0.0.1:1/t")
    monkeypatch.setenv("TENDERHUB_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setenv("TENDERHUB_MONGO_URL", "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=500")
    monkeypatch.setenv("TENDERHUB_REDIS_URL", "redis://:s3cret@127.0.0.1:1/0")
    assert main(argv) == 69
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if x.startswith("tenderhub: "))
    assert f"{service} cannot answer" in line and variable in line and "Traceback" not in err
    assert "s3cret" not in err


@pytest.mark.parametrize(
    ("argv", "env", "says"),
    [
        (["worker", "--agents", "spend,nope"], {}, "unknown agents ['nope']"),
        (["worker", "--agents", "spend,"], {}, "unknown agents ['']"),
        (["worker", "--agents", "readiness"], {"TENDERHUB_READINESS_WEIGHTS": '{"luck": 10}'}, "unknown items"),
        (["worker"], {"TENDERHUB_READINESS_WEIGHTS": '{"sector": 90}'}, "sum to 100"),
        (["worker"], {"TENDERHUB_SPEND_RECOMPUTE_CRON": "not a cron"}, "TENDERHUB_SPEND_RECOMPUTE_CRON is invalid"),
    ],
)
def test_the_worker_checks_its_agents_and_their_settings_before_contacting_any_store(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str], env: dict[str, str], says: str
) -> None:
    monkeypatch.setenv("TENDERHUB_ENV_FILE", "/nonexistent.env")
    for var in ("MYSQL_URL", "RELAY_MYSQL_URL"):
        monkeypatch.setenv(f"TENDERHUB_{var}", "mysql+pymysql://u:p@127.0.0.1:1/t")
    monkeypatch.setenv("TENDERHUB_KAFKA_BOOTSTRAP", "127.0.0.1:1")  # nothing listens: a contact would be exit 69
    monkeypatch.setenv("TENDERHUB_MONGO_URL", "mongodb://127.0.0.1:1/")
    monkeypatch.setenv("TENDERHUB_REDIS_URL", "redis://:p@127.0.0.1:1/0")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(argv) == 2
    assert says in capsys.readouterr().err


@pytest.mark.parametrize("user", ["", "a';touch /tmp/pwned;'", "$(id)", "`id`", "x" * 256, "a\nb"])
def test_kafka_acl_user_names_are_checked_before_they_reach_a_printed_shell_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], user: str
) -> None:
    monkeypatch.setenv("TENDERHUB_ENV_FILE", "/nonexistent.env")
    with pytest.raises(SystemExit) as exit_:
        main(["kafka-acls", "--print", "--worker-user", user])
    assert exit_.value.code == 2 and "SASL user name" in capsys.readouterr().err


def test_a_certificate_dn_is_a_user_and_every_printed_word_is_quoted(capsys: pytest.CaptureFixture[str]) -> None:
    import shlex

    assert main(["kafka-acls", "--print", "--worker-user", "CN=worker,OU=Pipeline,O=Tender Hub"]) == 0
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("kafka-acls.sh")]
    assert lines and all(shlex.split(x)[0] == "kafka-acls.sh" for x in lines)
    assert any("User:CN=worker,OU=Pipeline,O=Tender Hub" in shlex.split(x) for x in lines)


def test_only_client_side_errors_are_an_unreachable_service() -> None:
    import pymysql
    import redis.exceptions
    import sqlalchemy.exc

    from tenderhub.cli import unreachable_service

    refused = pymysql.err.OperationalError(2003, "Can't connect to MySQL server")
    assert unreachable_service(refused) == ("MySQL", "the TENDERHUB_MYSQL*_URL the command uses")
    wrapped = sqlalchemy.exc.OperationalError("SELECT 1", {}, refused)
    assert unreachable_service(wrapped) is not None
    # The server answered: a wrong password, a missing grant or a deadlock is not an outage.
    for code in (1045, 1142, 1213):
        assert unreachable_service(pymysql.err.OperationalError(code, "refused")) is None
    assert unreachable_service(redis.exceptions.AuthenticationError("WRONGPASS")) is None
    assert unreachable_service(redis.exceptions.ConnectionError("refused")) is not None
    # A bug raised while handling an outage is a bug.
    try:
        try:
            raise refused
        except pymysql.err.OperationalError:
            raise KeyError("bug") from None
    except KeyError as bug:
        assert unreachable_service(bug) is None
