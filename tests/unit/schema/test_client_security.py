"""TLS and SASL settings reach every client from one place: Kafka (aiokafka and Faust) from the kafka_* settings,
MySQL (PyMySQL, python-mysql-replication, SQLAlchemy) from each URL's query. Bad combinations fail at start-up with
the variables named. Nothing here connects anywhere."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

import schema.engines
from schema.engines import mysql_engine
from schema.kafka_client import kafka_options
from schema.settings import MysqlDsn, Settings, SettingsError, load_settings
from streams.app import faust_credentials
from tests.unit.offline import OFFLINE

BASE: dict[str, Any] = {"_env_file": None, **OFFLINE, "kafka_bootstrap": "broker-1:9093,broker-2:9093"}

LOADED = {k: v for k, v in BASE.items() if k != "_env_file"}


@pytest.fixture
def no_env_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TENDERHUB_ENV_FILE", str(tmp_path / "absent.env"))


@pytest.fixture
def ca(tmp_path: Path) -> str:
    # Any readable PEM bundle will do for building a context; the system's is always there on Debian.
    system = Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")
    path = tmp_path / "ca.pem"
    path.write_bytes(system.read_bytes())
    return str(path)


def test_plaintext_is_the_default_and_carries_no_secrets() -> None:
    options = kafka_options(Settings(**BASE))
    assert options == {"bootstrap_servers": "broker-1:9093,broker-2:9093", "security_protocol": "PLAINTEXT"}
    assert faust_credentials(Settings(**BASE)) is None


def test_sasl_ssl_gives_every_client_scram_over_verified_tls(ca: str) -> None:
    settings = Settings(
        **BASE,
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="relay",
        kafka_sasl_password=SecretStr("s3cret"),
        kafka_ssl_cafile=ca,
    )
    options = kafka_options(settings)
    context = options.pop("ssl_context")
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert options == {
        "bootstrap_servers": "broker-1:9093,broker-2:9093",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "relay",
        "sasl_plain_password": "s3cret",
    }
    credentials = faust_credentials(settings)
    assert type(credentials).__name__ == "SASLCredentials"
    assert (credentials.protocol.value, credentials.mechanism.value) == ("SASL_SSL", "SCRAM-SHA-512")  # type: ignore[union-attr]
    assert "s3cret" not in repr(settings) and "s3cret" not in repr(credentials)


def test_ssl_alone_and_hostname_checks_follow_the_settings(ca: str) -> None:
    settings = Settings(**BASE, kafka_security_protocol="SSL", kafka_ssl_cafile=ca, kafka_ssl_check_hostname=False)
    options = kafka_options(settings)
    assert options["security_protocol"] == "SSL" and "sasl_mechanism" not in options
    assert options["ssl_context"].check_hostname is False
    assert type(faust_credentials(settings)).__name__ == "SSLCredentials"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "TENDERHUB_KAFKA_SASL_USERNAME"),
        ({"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_username": "x"}, "TENDERHUB_KAFKA_SASL_PASSWORD"),
        ({"kafka_security_protocol": "TLS"}, "TENDERHUB_KAFKA_SECURITY_PROTOCOL"),
        ({"kafka_ssl_cafile": "/nonexistent/ca.pem"}, "TENDERHUB_KAFKA_SSL_CAFILE is invalid"),
        ({"kafka_ssl_certfile": "/etc/hostname"}, "kafka_ssl_certfile and kafka_ssl_keyfile go together"),
        ({"kafka_sasl_mechanism": "GSSAPI"}, "TENDERHUB_KAFKA_SASL_MECHANISM"),
    ],
)
def test_bad_kafka_security_settings_fail_at_start_up(
    overrides: dict[str, Any], message: str, no_env_file: None
) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(**{**LOADED, **overrides})
    assert message in str(err.value)


def test_mysql_tls_comes_from_the_url_for_pymysql_and_sqlalchemy_alike(
    ca: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"mysql+pymysql://relay:pw@db.internal:3306/tenderhub?ssl_ca={ca}"
    dsn = MysqlDsn.parse(SecretStr(url))
    assert dsn.pymysql_kwargs() == {
        "host": "db.internal",
        "port": 3306,
        "user": "relay",
        "password": "pw",
        "ssl_ca": ca,
        "ssl_cert": None,
        "ssl_key": None,
        "ssl_verify_cert": True,
        "ssl_verify_identity": True,
    }
    engine = mysql_engine(url.replace("db.internal:3306", "127.0.0.1:1"))
    seen: dict[str, Any] = {}

    class Recorded(schema.engines.BoundedConnection):
        """The connection the engine makes (its own do_connect listener), with the arguments it was given."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            seen.update(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(schema.engines, "BoundedConnection", Recorded)
    try:
        assert "ssl_ca" not in engine.url.query  # not also handed to the dialect's own ssl translation
        with pytest.raises(sa.exc.OperationalError):  # nothing listens on port 1: the arguments are what matter
            engine.connect()
    finally:
        engine.dispose()
    assert {k: seen[k] for k in ("ssl_ca", "ssl_verify_cert", "ssl_verify_identity", "charset")} == {
        "ssl_ca": ca,
        "ssl_verify_cert": True,
        "ssl_verify_identity": True,
        "charset": "utf8mb4",
    }
    relaxed = MysqlDsn.parse(SecretStr(f"{url}&ssl_verify_identity=false"))
    assert relaxed.pymysql_kwargs()["ssl_verify_identity"] is False
    assert MysqlDsn.parse(SecretStr("mysql://u:p@h:1/db")).pymysql_kwargs() == {
        "host": "h",
        "port": 1,
        "user": "u",
        "password": "p",
    }


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("ssl_ca=/nonexistent.pem", "ssl_ca=/nonexistent.pem is not a readable file"),
        ("sslmode=require", "unknown MySQL URL parameter(s) ['sslmode']"),
        ("ssl_cert=/etc/hostname", "ssl_cert and ssl_key go together"),
        ("ssl_ca=/etc/hostname&ssl_verify_identity=maybe", "ssl_verify_identity must be true or false"),
    ],
)
def test_bad_mysql_tls_parameters_fail_at_start_up(query: str, message: str, no_env_file: None) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(**{**LOADED, "relay_mysql_url": SecretStr(f"mysql+pymysql://c:p@127.0.0.1:1/db?{query}")})
    assert "TENDERHUB_RELAY_MYSQL_URL is invalid" in str(err.value) and message in str(err.value)


def test_secrets_come_from_files_in_the_secrets_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Container secrets: one file per setting, named like its variable; the environment still wins."""
    monkeypatch.setenv("TENDERHUB_ENV_FILE", str(tmp_path / "absent.env"))
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "tenderhub_kafka_sasl_password").write_text("from-a-file\n")
    (secrets / "tenderhub_relay_mysql_url").write_text("mysql+pymysql://relay:file-pw@db:3306/tenderhub")
    monkeypatch.setenv("TENDERHUB_SECRETS_DIR", str(secrets))
    monkeypatch.delenv("TENDERHUB_RELAY_MYSQL_URL", raising=False)
    monkeypatch.delenv("TENDERHUB_KAFKA_SASL_PASSWORD", raising=False)
    values = {k: v for k, v in LOADED.items() if k != "relay_mysql_url"}
    settings = load_settings(**values, kafka_security_protocol="SASL_SSL", kafka_sasl_username="relay")
    assert settings.kafka_sasl_password is not None
    assert settings.kafka_sasl_password.get_secret_value() == "from-a-file"
    assert settings.relay_mysql.password == "file-pw"
    monkeypatch.setenv("TENDERHUB_SECRETS_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(SettingsError, match="TENDERHUB_SECRETS_DIR"):
        load_settings(**LOADED)
