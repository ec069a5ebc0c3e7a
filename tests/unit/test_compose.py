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
# The values compose takes from the environment (.env); every other secret is a file under ./secrets.
SECRETS = {"KAFKA_CLUSTER_ID": "4L6g3nShT-eMCtK--X86sw", "KAFKA_BROKER_PASSWORD": "broker-pw"}
APP = ("migrate", "relay", "worker", "api")


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
    assert set(config["services"]) == {
        "mysql", "kafka-1", "kafka-2", "kafka-3", "mongodb", "redis", "kafka-init", "migrate", "relay", "worker", "api"
    }  # fmt: skip
    assert set(config["volumes"]) == {
        "mysql-data", "kafka-1-data", "kafka-2-data", "kafka-3-data", "mongo-data", "redis-data"
    }  # fmt: skip


def test_every_long_running_service_has_a_healthcheck(config: dict[str, Any]) -> None:
    for name, svc in config["services"].items():
        if name not in ("migrate", "kafka-init"):
            assert svc.get("healthcheck", {}).get("test"), name


def test_only_the_read_service_and_the_dashboard_leave_the_internal_network(config: dict[str, Any]) -> None:
    assert config["networks"]["internal"]["internal"] is True
    for name, svc in config["services"].items():
        networks = set(svc["networks"])
        assert "internal" in networks, name
        if name in ("api", "worker"):
            assert networks == {"internal", "edge"}
            assert all(str(p).startswith("127.0.0.1:") for p in svc["ports"]), svc["ports"]
        else:
            assert networks == {"internal"} and not svc.get("ports"), name


def test_mysql_84_with_row_binlog_gtid_and_tls_only(config: dict[str, Any]) -> None:
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
        "--require-secure-transport=ON",
    ):
        assert flag in flags
    assert mysql["environment"] == {"MYSQL_ROOT_PASSWORD_FILE": "/run/secrets/mysql_root_password"}


def test_three_kraft_brokers_sasl_ssl_with_acls_and_three_replicas(config: dict[str, Any]) -> None:
    for n in (1, 2, 3):
        svc = config["services"][f"kafka-{n}"]
        env = {k: str(v) for k, v in svc["environment"].items()}
        assert svc["image"].startswith("apache/kafka:4.")
        assert env["KAFKA_NODE_ID"] == str(n)
        assert env["KAFKA_LISTENERS"] == "SASL_SSL://:9092,CONTROLLER://:9093"
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"SASL_SSL://kafka-{n}:9092"
        assert "PLAINTEXT:" not in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].replace("SASL_PLAINTEXT", "")
        assert env["KAFKA_AUTHORIZER_CLASS_NAME"].endswith("StandardAuthorizer")
        assert env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
        assert env["KAFKA_SUPER_USERS"] == "User:broker;User:admin"
        assert (env["KAFKA_DEFAULT_REPLICATION_FACTOR"], env["KAFKA_MIN_INSYNC_REPLICAS"]) == ("3", "2")
        assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "2"
        assert env["KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE"] == "false"
        assert "broker-pw" in env["KAFKA_LISTENER_NAME_CONTROLLER_PLAIN_SASL_JAAS_CONFIG"]


def test_each_component_logs_in_to_kafka_as_itself(config: dict[str, Any]) -> None:
    services = config["services"]
    users = {name: services[name]["environment"].get("TENDERHUB_KAFKA_SASL_USERNAME") for name in APP}
    assert users == {"migrate": "admin", "relay": "relay", "worker": "worker", "api": None}
    for name in APP:
        env = services[name]["environment"]
        assert env["TENDERHUB_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert env["TENDERHUB_KAFKA_REPLICATION_FACTOR"] == "3"
        assert env["TENDERHUB_SECRETS_DIR"] == "/run/secrets"
    assert "kafka-acls --relay-user relay --worker-user worker" in " ".join(services["migrate"]["command"])
    # Two relays (one stands by), several workers and read services.
    assert services["relay"]["deploy"]["replicas"] == 2
    assert services["worker"]["deploy"]["replicas"] >= 2
    assert services["api"]["deploy"]["replicas"] >= 2


def test_secrets_are_files_and_never_in_the_file_or_on_a_command_line(config: dict[str, Any]) -> None:
    declared = set(config["secrets"])
    for name, svc in config["services"].items():
        for ref in svc.get("secrets", []):
            assert ref["source"] in declared, (name, ref)
        words = [*(svc.get("command") or []), *(svc.get("healthcheck", {}).get("test") or [])]
        for word in " ".join(str(w) for w in words).split():
            assert word not in ("-p", "-a", "--password", "--requirepass", "--pass"), (name, word)
            assert not word.startswith(("--password=", "--requirepass=")), (name, word)
        for var, value in (svc.get("environment") or {}).items():
            if "PASSWORD" in var and not var.endswith("_FILE"):
                raise AssertionError(f"{name}: {var} carries a password in the environment")
            assert "://" not in str(value) or "@" not in str(value), f"{name}: {var} has credentials in a URL"
    text = (ROOT / "docker-compose.yml").read_text()
    assert "password=" not in text.replace('password="${KAFKA_BROKER_PASSWORD', "")
    for mounted in ("deploy/kafka-users.sh", "deploy/mongo-init.js"):
        assert (ROOT / mounted).is_file(), mounted


def test_app_services_wait_for_migrations(config: dict[str, Any]) -> None:
    for name in ("relay", "worker", "api"):
        svc = config["services"][name]
        assert svc["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert config["services"]["migrate"]["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"


def test_refuses_to_start_without_secrets() -> None:
    proc = _compose_config({})
    assert proc.returncode != 0
    assert "KAFKA_CLUSTER_ID" in proc.stderr or "KAFKA_BROKER_PASSWORD" in proc.stderr


def test_every_tenderhub_variable_in_compose_is_a_declared_setting(config: dict[str, Any]) -> None:
    from schema.settings import ENV_PREFIX, Settings, StackSettings

    declared = {f"{ENV_PREFIX}{name.upper()}" for cls in (Settings, StackSettings) for name in cls.model_fields}
    declared |= {f"{ENV_PREFIX}ENV_FILE", f"{ENV_PREFIX}SECRETS_DIR"}
    for name, svc in config["services"].items():
        for var in svc.get("environment") or {}:
            if var.startswith(ENV_PREFIX):
                assert var in declared, f"{name}: {var} is not a tenderhub setting (typo?)"
        # Secret files named like a setting must be one too.
        for ref in svc.get("secrets", []):
            target = ref.get("target") or ref["source"]
            if target.startswith("tenderhub_"):
                assert target.upper() in declared, f"{name}: secret {target} is not a tenderhub setting"
