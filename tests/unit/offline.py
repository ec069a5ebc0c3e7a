"""Settings that point every client nowhere (nothing listens on port 1): for unit tests that must not need, or
reach, a service. Clients open lazily, so building them connects to nothing."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from schema.settings import Settings

OFFLINE: dict[str, Any] = {
    "mysql_url": SecretStr("mysql+pymysql://u:p@127.0.0.1:1/db"),
    "relay_mysql_url": SecretStr("mysql+pymysql://r:p@127.0.0.1:1/db"),
    "kafka_bootstrap": "127.0.0.1:1",
    "mongo_url": SecretStr("mongodb://127.0.0.1:1/"),
    "redis_url": SecretStr("redis://127.0.0.1:1/0"),
}


def offline_settings(**overrides: Any) -> Settings:
    return Settings(_env_file=None, **{**OFFLINE, **overrides})
