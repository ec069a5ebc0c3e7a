"""The one SQLAlchemy engine factory for MySQL: the app, the worker's recomputes, verify and rebuild all use it.

The settings accept `mysql://` and `mysql+pymysql://` URLs; pymysql is the only MySQL driver tenderhub installs,
so every engine is forced onto it, with utf8mb4 (tender texts hold 4-byte characters) and a pool that survives a
server restart (pre-ping) and MySQL's idle timeout (recycle).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from pydantic import SecretStr

POOL_RECYCLE_S = 3600


def mysql_engine(url: SecretStr | str, **kwargs: Any) -> sa.Engine:
    raw = url.get_secret_value() if isinstance(url, SecretStr) else url
    parsed = sa.engine.make_url(raw).set(drivername="mysql+pymysql").update_query_dict({"charset": "utf8mb4"})
    options: dict[str, Any] = {"pool_pre_ping": True, "pool_recycle": POOL_RECYCLE_S, **kwargs}
    return sa.create_engine(parsed, **options)
