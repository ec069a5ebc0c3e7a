"""Every MySQL engine of tenderhub comes from one factory: the settings accept `mysql://` and `mysql+pymysql://`
URLs, and each engine must use the pymysql driver (the only MySQL driver installed) with utf8mb4, whatever the
URL says. Engines connect lazily: nothing here reaches a server."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from cdc.outbox import make_engine
from schema.settings import Settings
from streams.context import WorkerContext
from streams.verify import reader_engine


@pytest.mark.parametrize("scheme", ["mysql", "mysql+pymysql"])
def test_every_engine_uses_pymysql_and_utf8mb4_whatever_the_urls_scheme(scheme: str) -> None:
    settings = Settings(
        _env_file=None,
        mysql_url=SecretStr(f"{scheme}://u:p@127.0.0.1:1/db"),
        mysql_reader_url=SecretStr(f"{scheme}://r:p@127.0.0.1:1/db"),
        relay_mysql_url=SecretStr(f"{scheme}://c:p@127.0.0.1:1/db"),
        kafka_bootstrap="127.0.0.1:1",
        mongo_url=SecretStr("mongodb://127.0.0.1:1/"),
        redis_url=SecretStr("redis://127.0.0.1:1/0"),
    )
    engines = {
        "app": make_engine(settings),
        "worker (nightly spend recompute)": WorkerContext(settings).engine,
        "reader (verify, rebuild)": reader_engine(settings),
    }
    for name, engine in engines.items():
        try:
            assert engine.url.drivername == "mysql+pymysql", name
            assert engine.url.query.get("charset") == "utf8mb4", name
        finally:
            engine.dispose()
