"""The one SQLAlchemy engine factory for MySQL: the app, the worker's recomputes, verify and rebuild all use it.

The settings accept `mysql://` and `mysql+pymysql://` URLs; pymysql is the only MySQL driver tenderhub installs,
so every engine is forced onto it, with utf8mb4 (tender texts hold 4-byte characters) and a pool that survives a
server restart (pre-ping) and MySQL's idle timeout (recycle). TLS comes from the URL's query, read the same way as
for the relay's PyMySQL connections (`schema.settings.mysql_tls_kwargs`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa
from pydantic import SecretStr

from schema.mysql import BoundedConnection
from schema.settings import MYSQL_TLS_PARAMS, mysql_tls_kwargs

POOL_RECYCLE_S = 3600


def mysql_engine(url: SecretStr | str, **kwargs: Any) -> sa.Engine:
    raw = url.get_secret_value() if isinstance(url, SecretStr) else url
    parsed = sa.engine.make_url(raw)
    tls = mysql_tls_kwargs(urlencode(dict(parsed.query), doseq=True))
    parsed = (
        parsed.set(drivername="mysql+pymysql")
        .difference_update_query(MYSQL_TLS_PARAMS)
        .update_query_dict({"charset": "utf8mb4"})
    )
    options: dict[str, Any] = {"pool_pre_ping": True, "pool_recycle": POOL_RECYCLE_S, **kwargs}
    options["connect_args"] = {"connect_timeout": 10, **tls, **options.get("connect_args", {})}
    engine = sa.create_engine(parsed, **options)

    @sa.event.listens_for(engine, "do_connect")
    def _bounded(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        return BoundedConnection(*cargs, **cparams)  # the handshake gives up after connect_timeout

    return engine
