"""What every doctor check returns (`Check`), and the facts the checks share: the relay's settings variable, the
outbox columns it uses, the server variables it reads, MySQL error numbers."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from schema.settings import ENV_PREFIX

log = logging.getLogger(__name__)

Status = Literal["ok", "warn", "fail"]

RELAY_URL_VAR = f"{ENV_PREFIX}RELAY_MYSQL_URL"
# Every column the relay reads (backfill, binlog rows) or writes (mark published, janitor).
OUTBOX_COLUMNS = (
    "id",
    "event_type",
    "aggregate_type",
    "aggregate_id",
    "schema_version",
    "payload",
    "published",
    "created_at",
    "published_at",
)
MIN_RETENTION_HOURS = 24.0
SUGGESTED_RETENTION_S = 7 * 24 * 3600
VARIABLES = (
    "log_bin",
    "binlog_format",
    "binlog_row_image",
    "binlog_row_metadata",
    "server_id",
    "gtid_strict_mode",
    "gtid_binlog_pos",
    "gtid_domain_id",
    "gtid_mode",
    "enforce_gtid_consistency",
    "binlog_expire_logs_seconds",
    "expire_logs_days",
)
# The relay follows one MariaDB GTID domain (cdc.source.BinlogSource's default).

# Error numbers (pymysql maps them to different exception classes, so compare numbers).
ER_ACCESS_DENIED = 1045
ER_DBACCESS_DENIED = 1044
ER_BAD_DB = 1049
ER_PARSE = 1064
ER_TABLEACCESS_DENIED = 1142
ER_NO_SUCH_TABLE = 1146
ER_SPECIFIC_ACCESS_DENIED = 1227
CONNECTION_LOST = frozenset({0, 2006, 2013, 2055})


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    value: str
    fix: str = ""
