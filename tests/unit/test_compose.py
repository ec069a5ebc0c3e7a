"""docker-compose.yml is valid for a real compose parser and declares the production stack as designed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SECRETS = {
    "MYSQL_ROOT_PASSWORD": "root-pw",
    "TENDERHUB_APP_PASSWORD": "app-pw",
    "TENDERHUB_RELAY_PASSWORD": "relay-pw",
    "REDIS_PASSWORD": "redis-pw",
}


def _compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    assert binary, (
        "docker-compose (Debian package) is needed to validate docker-compose.yml; scripts/test.sh installs it"
    )
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return subprocess.run(
        [binary, "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        env={**clean, **env},
        check=False,
        timeout=60,
    )


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    proc = _compose_config(SECRETS)
    assert proc.returncode == 0, proc.stderr
    return dict(yaml.safe_load(proc.stdout))


def test_services_and_named_volumes(config: dict[str, Any]) -> None:
    assert set(config["services"]) == {"mysql", "kafka", "mongodb", "redis", "migrate", "relay", "worker"}
    assert set(config["volumes"]) == {"mysql-data", "kafka-data", "mongo-data", "redis-data"}


def test_every_long_running_service_has_a_healthcheck(config: dict[str, Any]) -> None:
    for name, svc in config["services"].items():
        if name != "migrate":
            assert svc.get("healthcheck", {}).get("test"), name


def test_mysql_84_with_row_binlog_and_gtid(config: dict[str, Any]) -> None:
    mysql = config["services"]["mysql"]
    assert mysql["image"] == "mysql:8.4"
    flags = set(mysql["command"])
    for flag in (
        "--binlog-format=ROW",
        "--binlog-row-image=FULL",
        "--binlog-row-metadata=FULL",
        "--gtid-mode=ON",
        "--enforce-gtid-consistency=ON",
        "--sync-binlog=1",
        "--character-set-server=utf8mb4",
    ):
        assert flag in flags


def test_kafka_kraft_single_node_transactions(config: dict[str, Any]) -> None:
    env = config["services"]["kafka"]["environment"]
    assert config["services"]["kafka"]["image"].startswith("apache/kafka:4.")
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert str(env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"]) == "1"
    assert str(env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"]) == "1"


def test_app_services_wait_for_migrations_and_get_settings_from_env(config: dict[str, Any]) -> None:
    for name in ("relay", "worker"):
        svc = config["services"][name]
        assert svc["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert svc["environment"]["TENDERHUB_RELAY_MYSQL_URL"].startswith("mysql+pymysql://tenderhub_relay:relay-pw@")


def test_refuses_to_start_without_secrets() -> None:
    proc = _compose_config({})
    assert proc.returncode != 0
    assert "MYSQL_ROOT_PASSWORD" in proc.stderr or "PASSWORD" in proc.stderr


def test_every_tenderhub_variable_in_compose_is_a_declared_setting(config: dict[str, Any]) -> None:
    from schema.settings import ENV_PREFIX, Settings, StackSettings

    declared = {f"{ENV_PREFIX}{name.upper()}" for cls in (Settings, StackSettings) for name in cls.model_fields}
    declared.add(f"{ENV_PREFIX}ENV_FILE")
    for name, svc in config["services"].items():
        for var in svc.get("environment") or {}:
            if var.startswith(ENV_PREFIX):
                assert var in declared, f"{name}: {var} is not a tenderhub setting (typo?)"
