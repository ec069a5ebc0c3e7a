"""Settings: every option from TENDERHUB_* variables; bad values fail with the variable's name and a fix."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from schema.settings import SettingsError, describe_options, load_settings, load_stack_settings

GOOD = {
    "TENDERHUB_MYSQL_URL": "mysql+pymysql://app:s3cret@127.0.0.1:13306/tenderhub",
    "TENDERHUB_RELAY_MYSQL_URL": "mysql+pymysql://relay:r%40lay@127.0.0.1:13306/tenderhub",
    "TENDERHUB_KAFKA_BOOTSTRAP": "127.0.0.1:19092",
    "TENDERHUB_MONGO_URL": "mongodb://127.0.0.1:37017/",
    "TENDERHUB_REDIS_URL": "redis://:pw@127.0.0.1:16379/0",
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in list(__import__("os").environ):
        if key.startswith("TENDERHUB_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("TENDERHUB_ENV_FILE", "/nonexistent/tenderhub.env")
    for key, value in GOOD.items():
        monkeypatch.setenv(key, value)
    return monkeypatch


def test_loads_valid_environment(env: pytest.MonkeyPatch) -> None:
    s = load_settings()
    assert s.relay_mysql.user == "relay"
    assert s.relay_mysql.password == "r@lay"  # percent-decoded
    assert s.mysql.port == 13306 and s.mysql.database == "tenderhub"
    assert s.relay_mode == "binlog"


def test_missing_url_names_variable_and_fix(env: pytest.MonkeyPatch) -> None:
    env.delenv("TENDERHUB_MYSQL_URL")
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert "TENDERHUB_MYSQL_URL is not set" in str(err.value)
    assert "tenderhub stack up" in str(err.value)


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("TENDERHUB_MYSQL_URL", "postgres://u:p@h/db"),
        ("TENDERHUB_MYSQL_URL", "mysql+pymysql://u:p@h:1/"),
        ("TENDERHUB_KAFKA_BOOTSTRAP", "localhost"),
        ("TENDERHUB_MONGO_URL", "http://x"),
        ("TENDERHUB_REDIS_URL", "memcached://x"),
        ("TENDERHUB_AS_OF", "30/11/2026"),
        ("TENDERHUB_RELAY_MODE", "trigger"),
        ("TENDERHUB_TOPIC_PREFIX", "bad topic/"),
        ("TENDERHUB_API_TRUSTED_PROXIES", "10.0.0.0/8,proxy.local"),
    ],
)
def test_invalid_value_names_variable(env: pytest.MonkeyPatch, var: str, value: str) -> None:
    env.setenv(var, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert f"{var} is invalid" in str(err.value)


def test_secrets_never_printed(env: pytest.MonkeyPatch) -> None:
    s = load_settings()
    assert "s3cret" not in repr(s) and "s3cret" not in str(s.mysql)


def test_as_of_sets_today(env: pytest.MonkeyPatch) -> None:
    env.setenv("TENDERHUB_AS_OF", "2025-09-18")
    assert load_settings().today() == dt.date(2025, 9, 18)


def test_real_clock_when_as_of_empty(env: pytest.MonkeyPatch) -> None:
    assert load_settings().today() == dt.datetime.now(dt.UTC).date()


def test_env_file_is_read_and_environment_wins(env: pytest.MonkeyPatch, tmp_path: pytest.TempPathFactory) -> None:
    env_file = tmp_path / "t.env"  # type: ignore[operator]
    env_file.write_text("TENDERHUB_MONGO_DB=fromfile\nTENDERHUB_LOG_LEVEL=DEBUG\n")
    env.setenv("TENDERHUB_ENV_FILE", str(env_file))
    env.setenv("TENDERHUB_LOG_LEVEL", "ERROR")
    s = load_settings()
    assert s.mongo_db == "fromfile" and s.log_level == "ERROR"


def test_admin_url_required_only_for_migrations(env: pytest.MonkeyPatch) -> None:
    s = load_settings()
    with pytest.raises(SettingsError, match="TENDERHUB_MYSQL_ADMIN_URL"):
        _ = s.mysql_admin


def test_stack_binds_loopback_only(env: pytest.MonkeyPatch) -> None:
    env.setenv("TENDERHUB_STACK_HOST", "0.0.0.0")  # noqa: S104 - the value under test
    with pytest.raises(SettingsError, match="TENDERHUB_STACK_HOST is invalid"):
        load_stack_settings()


def test_stack_ports_default_to_non_default_ports(env: pytest.MonkeyPatch) -> None:
    s = load_stack_settings()
    assert {s.mysql_port, s.kafka_port, s.mongo_port, s.redis_port}.isdisjoint({3306, 9092, 27017, 6379})


def test_every_option_is_documented() -> None:
    rows = describe_options()
    assert len(rows) > 20
    assert all(doc for _, _, _, doc in rows), [var for var, _, _, doc in rows if not doc]


def test_topic_map_from_json_environment(env: pytest.MonkeyPatch) -> None:
    env.setenv("TENDERHUB_TOPIC_MAP", '{"tender": "prod.tenders"}')
    assert load_settings().topic_map == {"tender": "prod.tenders"}
    env.setenv("TENDERHUB_TOPIC_MAP", '{"tender": "bad topic"}')
    with pytest.raises(SettingsError, match="TENDERHUB_TOPIC_MAP is invalid"):
        load_settings()


def test_a_copy_with_other_urls_parses_its_own_urls_not_the_originals(env: pytest.MonkeyPatch) -> None:
    # The parsed DSNs are cached per object; a copy made after they were read must not inherit the old ones.
    from pydantic import SecretStr

    env.setenv("TENDERHUB_MYSQL_ADMIN_URL", "mysql+pymysql://admin:a@127.0.0.1:13306/tenderhub")
    s = load_settings()
    before = (s.mysql.database, s.relay_mysql.database, s.mysql_admin.database)
    other = "mysql+pymysql://u2:p2@127.0.0.1:13306/other_db"
    copy = s.model_copy(
        update={"mysql_url": SecretStr(other), "relay_mysql_url": SecretStr(other), "mysql_admin_url": SecretStr(other)}
    )
    assert (copy.mysql.database, copy.relay_mysql.database, copy.mysql_admin.database) == ("other_db",) * 3
    assert copy.mysql.user == "u2"
    assert (s.mysql.database, s.relay_mysql.database, s.mysql_admin.database) == before
    assert s.model_copy().mysql.database == before[0]


@pytest.mark.parametrize("url", ["redis://:pw@127.0.0.1:16379/2", "unix:///run/redis.sock"])
def test_a_redis_cluster_url_must_be_database_0_over_tcp(env: pytest.MonkeyPatch, url: str) -> None:
    env.setenv("TENDERHUB_REDIS_CLUSTER", "true")
    env.setenv("TENDERHUB_REDIS_URL", url)
    with pytest.raises(SettingsError, match="TENDERHUB_REDIS_CLUSTER"):
        load_settings()
    env.setenv("TENDERHUB_REDIS_URL", "rediss://:pw@127.0.0.1:16379/0")
    assert load_settings().redis_cluster is True


def test_more_redis_cluster_nodes_are_host_port_pairs(env: pytest.MonkeyPatch) -> None:
    env.setenv("TENDERHUB_REDIS_CLUSTER_NODES", "10.0.0.2:6379,redis-3:7000,[::1]:6380")
    assert load_settings().redis_startup_nodes == [("10.0.0.2", 6379), ("redis-3", 7000), ("::1", 6380)]
    for bad in ("redis-3", "redis-3:70000", "a:1,,b:2", "a:1 b:2"):
        env.setenv("TENDERHUB_REDIS_CLUSTER_NODES", bad)
        with pytest.raises(SettingsError, match="TENDERHUB_REDIS_CLUSTER_NODES"):
            load_settings()


# -- bad values an operator meets (a review's findings, each failing before the fix) --------------------------------


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("TENDERHUB_RELAY_MYSQL_URL", "mysql+pymysql://r:S3CRET/x@127.0.0.1:1/t"),  # a "/" in the password
        ("TENDERHUB_MYSQL_URL", "mysql+pymysql://u:S3CRET#x@127.0.0.1:13306/t"),
        ("TENDERHUB_REDIS_URL", "redis://:S3CRET?x@127.0.0.1:1/0"),
        ("TENDERHUB_MONGO_URL", "mongodb://u:S3CRET/x@127.0.0.1:1/"),
        ("TENDERHUB_MYSQL_URL", "mysql+pymysql://u:Sec[S3CRET]Pw@h:3306/db"),
    ],
)
def test_a_password_that_breaks_the_url_is_refused_without_repeating_it(
    env: pytest.MonkeyPatch, var: str, value: str
) -> None:
    env.setenv(var, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert f"{var} is invalid" in str(err.value) and "S3CRET" not in str(err.value)
    assert "percent-encode" in str(err.value)


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("TENDERHUB_MYSQL_URL", "mysql+pymysql://u:p@127.0.0.1:105537/t"),  # wraps to another port in getaddrinfo
        ("TENDERHUB_MYSQL_URL", "mysql+pymysql://u:p@127.0.0.1:0/t"),
        ("TENDERHUB_REDIS_URL", "redis://:pw@/0"),
        ("TENDERHUB_REDIS_URL", "redis://:pw@127.0.0.1:70000/0"),
        ("TENDERHUB_MONGO_URL", "mongodb://@/"),
        ("TENDERHUB_MONGO_URL", "mongodb://127.0.0.1:99999/"),
        ("TENDERHUB_KAFKA_BOOTSTRAP", "127.0.0.1:99999"),
        ("TENDERHUB_KAFKA_BOOTSTRAP", "127.0.0.1:0"),
        ("TENDERHUB_MYSQL_URL", "mysql+pymysql://u:pa\udcffss@127.0.0.1:13306/t"),
    ],
)
def test_urls_need_a_host_a_port_in_range_and_encodable_text(env: pytest.MonkeyPatch, var: str, value: str) -> None:
    env.setenv(var, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert f"{var} is invalid" in str(err.value)


def test_an_empty_variable_unsets_a_setting_that_may_be_unset_and_keeps_an_empty_text(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for var in ("TENDERHUB_AS_OF", "TENDERHUB_MYSQL_READER_URL", "TENDERHUB_API_TLS_CERT", "TENDERHUB_TOPIC_PREFIX"):
        env.setenv(var, "")
    s = load_settings()
    assert (s.as_of, s.mysql_reader_url, s.api_tls_cert) == (None, None, None)
    assert s.topic_prefix == "", "an empty prefix means topics without one"
    env.setenv("TENDERHUB_STACK_TLS_DIR", "")
    assert load_stack_settings().stack_tls_dir is None
    # An empty variable still wins over the env file.
    file = tmp_path / "x.env"
    file.write_text("TENDERHUB_KAFKA_SSL_CAFILE=/etc/ssl/certs/ca-certificates.crt\n")
    env.setenv("TENDERHUB_ENV_FILE", str(file))
    env.setenv("TENDERHUB_KAFKA_SSL_CAFILE", "")
    assert load_settings().kafka_ssl_cafile is None


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("TENDERHUB_RELAY_RETENTION_HOURS", "inf"),
        ("TENDERHUB_RELAY_RETENTION_HOURS", "1e308"),
        ("TENDERHUB_READINESS_SWEEP_S", "inf"),
        ("TENDERHUB_HEALTH_TIMEOUT_S", "nan"),
        ("TENDERHUB_SPEND_WINDOW_REFRESH_S", "1e300"),
    ],
)
def test_numbers_must_be_finite_and_bounded(env: pytest.MonkeyPatch, var: str, value: str) -> None:
    env.setenv(var, value)
    with pytest.raises(SettingsError) as err:
        (load_stack_settings if var == "TENDERHUB_HEALTH_TIMEOUT_S" else load_settings)()
    assert f"{var} is invalid" in str(err.value)


@pytest.mark.parametrize("value", ['{"tender": "x"', "[1, 2", "not json"])
def test_malformed_json_in_a_setting_is_a_settings_error_naming_it(env: pytest.MonkeyPatch, value: str) -> None:
    env.setenv("TENDERHUB_TOPIC_MAP", value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert "TENDERHUB_TOPIC_MAP" in str(err.value) and "JSON" in str(err.value)


def test_an_env_file_that_is_not_utf8_is_a_settings_error_naming_it(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bad = tmp_path / "bad.env"
    bad.write_bytes(b"TENDERHUB_MONGO_DB=ab\xffc\n")
    env.setenv("TENDERHUB_ENV_FILE", str(bad))
    for load in (load_settings, load_stack_settings):
        with pytest.raises(SettingsError) as err:
            load()
        assert str(bad) in str(err.value) and "UTF-8" in str(err.value)


def test_the_dev_stacks_env_file_filling_in_for_exported_urls_is_named(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from schema.settings import mixed_sources

    (tmp_path / ".stack").mkdir()
    (tmp_path / ".stack" / "tenderhub.env").write_text(
        "# dev stack\nTENDERHUB_MYSQL_URL=mysql+pymysql://dev@127.0.0.1:13306/t\nTENDERHUB_MYSQL_ADMIN_URL=x\n"
    )
    env.chdir(tmp_path)
    env.delenv("TENDERHUB_ENV_FILE")
    assert mixed_sources() == ["TENDERHUB_MYSQL_ADMIN_URL"]  # the MySQL URL itself came from the environment
    env.setenv("TENDERHUB_ENV_FILE", str(tmp_path / ".stack" / "tenderhub.env"))
    assert mixed_sources() == []  # asked for by name: not a surprise
    env.delenv("TENDERHUB_ENV_FILE")
    for var in GOOD:
        env.delenv(var)
    assert mixed_sources() == []  # nothing exported: the file is the one source
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "tenderhub_mysql_url").write_text("mysql+pymysql://prod@db:3306/t")
    env.setenv("TENDERHUB_SECRETS_DIR", str(secrets))
    assert mixed_sources() == ["TENDERHUB_MYSQL_ADMIN_URL", "TENDERHUB_MYSQL_URL"]  # the file wins over secrets


@pytest.mark.parametrize(
    ("var", "value"),
    [
        (
            "TENDERHUB_MYSQL_URL",
            "mysql+pymysql://app:s3cret@127.0.0.1:13306/tenderhub?ssl_ca=/etc/ssl/certs/ca-certificates.crt",
        ),
        ("TENDERHUB_MYSQL_URL", "mysql+pymysql://app:s3cret@[::1]:13306/tenderhub"),
        ("TENDERHUB_MYSQL_URL", "mysql+pymysql://app:s3cret@127.0.0.1:13306/tenderhub\n"),
        ("TENDERHUB_MONGO_URL", "mongodb+srv://u:p@cluster0.example.org/?retryWrites=true"),
        ("TENDERHUB_MONGO_URL", "mongodb://u:p@h1:27017,h2:27017,[::1]:27018/?replicaSet=rs0"),
        ("TENDERHUB_MONGO_URL", "mongodb://h1,h2/"),
        ("TENDERHUB_REDIS_URL", "rediss://:pw@[2001:db8::1]:6380/0"),
        ("TENDERHUB_REDIS_URL", "unix:///run/redis/redis.sock?db=0"),
        ("TENDERHUB_KAFKA_BOOTSTRAP", "[::1]:9092,kafka-2.internal:9093"),
    ],
)
def test_production_shaped_urls_are_accepted(env: pytest.MonkeyPatch, var: str, value: str) -> None:
    env.setenv(var, value)
    load_settings()
