"""The relay's decoding (cdc/fastrows.py) gives the library's answers: the same binlog range read by a reader with
the library's own event classes and by one with the relay's, row for row, over seeded random values of every column
type the fast path handles (NULLs, limits, multi-byte text, long text, fractional timestamps), multi-row events, the
outbox itself, and a table with a type it leaves to the library (DECIMAL). Read twice, so the second read decodes
every table map from the cache."""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pymysql
import pytest
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import MariadbGtidEvent, QueryEvent, XidEvent
from pymysqlreplication.row_event import TableMapEvent, WriteRowsEvent

from cdc import fastrows
from schema.settings import Settings

if TYPE_CHECKING:
    Conn = pymysql.connections.Connection[Any]

COLUMNS = """
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    ti TINYINT NULL, tu TINYINT UNSIGNED NULL, si SMALLINT NULL, su SMALLINT UNSIGNED NULL,
    mi MEDIUMINT NULL, mu MEDIUMINT UNSIGNED NULL, ii INT NULL, iu INT UNSIGNED NULL, bi BIGINT NULL,
    short_text VARCHAR(20) NULL, long_text VARCHAR(400) NULL,
    body TEXT NULL, big LONGTEXT NULL, doc JSON NULL,
    t0 TIMESTAMP NULL, t1 TIMESTAMP(1) NULL, t3 TIMESTAMP(3) NULL, t6 TIMESTAMP(6) NULL
"""

LIMITS = {
    "ti": (-128, 127),
    "tu": (0, 255),
    "si": (-32768, 32767),
    "su": (0, 65535),
    "mi": (-8388608, 8388607),
    "mu": (0, 16777215),
    "ii": (-(2**31), 2**31 - 1),
    "iu": (0, 2**32 - 1),
    "bi": (-(2**63), 2**63 - 1),
}

TEXTS = ["", "a", "Tshwane ✓ é ß 漢字 🚒", "x" * 19, 'O\'Brien \\ "q"', "\u0000nul"]


def _text(rng: random.Random, limit: int) -> str:
    base = rng.choice(TEXTS)
    return (base * (1 + rng.randrange(limit // max(len(base), 1) + 1)))[:limit] if base else ""


def _timestamp(rng: random.Random, fsp: int) -> str:
    moment = dt.datetime(1970, 1, 2) + dt.timedelta(seconds=rng.randrange(2_000_000_000))
    micro = rng.randrange(1_000_000) // 10 ** (6 - fsp) * 10 ** (6 - fsp) if fsp else 0
    return moment.replace(microsecond=micro).isoformat(sep=" ")


def _row(rng: random.Random) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name, (low, high) in LIMITS.items():
        row[name] = rng.choice([low, high, 0, -1 if low < 0 else 1, rng.randint(low, high)])
    row["short_text"] = _text(rng, 20)
    row["long_text"] = _text(rng, 400)
    row["body"] = _text(rng, 3000)
    row["big"] = "é" * rng.choice([0, 1, 70_000])
    row["doc"] = json.dumps({"k": _text(rng, 50), "n": rng.randint(-(10**9), 10**9), "l": [1, None, True]})
    for fsp in (0, 1, 3, 6):
        row[f"t{fsp}"] = _timestamp(rng, fsp)
    for name in list(row):
        if rng.random() < 0.15:
            row[name] = None
    return row


def _read(settings: Settings, since: str, until: str, fast: bool) -> list[tuple[str, list[dict[str, Any]]]]:
    """Write-row events from after GTID state `since` through the transaction `until` (blocking, as the relay reads:
    MariaDB resets a non-blocking dump of these large events)."""
    if fast:
        fastrows.install()
    events: list[type] = (
        [fastrows.FastWriteRowsEvent, fastrows.CachedTableMapEvent] if fast else [WriteRowsEvent, TableMapEvent]
    )
    kwargs = settings.mysql_admin.pymysql_kwargs()
    reader = BinLogStreamReader(
        connection_settings={**kwargs, "passwd": kwargs.pop("password"), "read_timeout": 30},
        server_id=4_970_000 + uuid.uuid4().int % 9_000,
        only_events=[*events, QueryEvent, MariadbGtidEvent, XidEvent],
        only_schemas=[settings.mysql.database],
        auto_position=since,
        is_mariadb=True,
        blocking=True,
    )
    out = []
    last = ""
    try:
        for event in reader:
            if isinstance(event, MariadbGtidEvent):
                last = event.gtid
            elif last == until and isinstance(event, XidEvent):
                break
            elif isinstance(event, WriteRowsEvent):
                assert isinstance(event, fastrows.FastWriteRowsEvent) == fast
                out.append((event.table, event.rows))
    finally:
        reader.close()
    return out


@pytest.fixture
def scratch_tables(admin_db: Conn, settings: Settings) -> Iterator[tuple[str, str]]:
    suffix = uuid.uuid4().hex[:8]
    typed, decimal = f"fastrows_{suffix}", f"fastrows_dec_{suffix}"
    db = settings.mysql.database
    with admin_db.cursor() as cur:
        cur.execute(f"CREATE TABLE `{db}`.`{typed}` ({COLUMNS}) DEFAULT CHARSET=utf8mb4")
        cur.execute(f"CREATE TABLE `{db}`.`{decimal}` (id INT PRIMARY KEY, amount DECIMAL(18,2) NULL, note TEXT NULL)")
    admin_db.commit()
    try:
        yield typed, decimal
    finally:
        with admin_db.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS `{db}`.`{typed}`, `{db}`.`{decimal}`")
        admin_db.commit()


def test_the_relays_row_and_table_map_decoding_equals_the_librarys(
    admin_db: Conn, settings: Settings, scratch_tables: tuple[str, str]
) -> None:
    typed, decimal = scratch_tables
    db = settings.mysql.database
    with admin_db.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
        cur.execute("SELECT @@gtid_binlog_pos")
        since = str(cur.fetchone()[0])  # type: ignore[index]
        rng = random.Random(20261204)
        names = [*LIMITS, "short_text", "long_text", "body", "big", "doc", "t0", "t1", "t3", "t6"]
        sql = f"INSERT INTO `{db}`.`{typed}` ({', '.join(names)}) VALUES ({', '.join(['%s'] * len(names))})"
        for batch in range(12):
            cur.executemany(sql, [tuple(_row(rng)[n] for n in names) for _ in range(1 + batch * 3)])
            admin_db.commit()
        cur.executemany(
            f"INSERT INTO `{db}`.`{decimal}` VALUES (%s, %s, %s)",
            [(i, None if i % 4 == 0 else f"{i * 1234.5:.2f}", "note") for i in range(1, 30)],
        )
        cur.execute(
            f"INSERT INTO `{db}`.integration_outbox (event_type, aggregate_type, aggregate_id, payload) "
            "VALUES ('system.heartbeat', 'system', '1', %s), ('system.heartbeat', 'system', '22', %s)",
            (json.dumps({"origin": "fastrows ✓"}), json.dumps({"origin": "x" * 5000})),
        )
        admin_db.commit()
        cur.execute("SELECT @@last_gtid")
        until = str(cur.fetchone()[0])  # type: ignore[index]

    library = _read(settings, since, until, fast=False)
    mine = _read(settings, since, until, fast=True)
    again = _read(settings, since, until, fast=True)  # every table map now comes from the cache

    tables = {table for table, _ in library}
    assert {typed, decimal, "integration_outbox"} <= tables
    assert sum(len(rows) for table, rows in library if table == typed) == sum(1 + b * 3 for b in range(12))
    assert mine == library
    assert again == library
    # The fast path decoded the typed table and the outbox itself, and left the DECIMAL table to the library.
    tables = [state["table_obj"] for state in fastrows._TABLE_MAPS.values() if state.get("_processed")]
    compiled = {t.table: t.__dict__["_relay_decoder"] is not None for t in tables if "_relay_decoder" in t.__dict__}
    assert compiled[typed] and compiled["integration_outbox"] and not compiled[decimal]
