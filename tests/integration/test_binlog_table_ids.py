"""Table ids in the binlog are per server run: after a restart (or a failover, or RESET MASTER) the id the outbox had
is reused for another table. python-mysql-replication caches id -> table, clears it only on a timestamped rotate,
and skips the TABLE_MAP events of filtered tables, so a row event of `tenders` reusing the outbox's old id was decoded
with the outbox's columns: the relay crashed on it at every start (found by the fault run after a MariaDB restart:
"Result length not requested length", 80 restarts, the pipeline stalled). Reproduced here without a restart by
putting the cache in exactly the state a restart leaves it: the outbox's mapping under the id `tenders` now has."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import sqlalchemy as sa
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import QueryEvent
from pymysqlreplication.row_event import TableMapEvent

from cdc.outbox import write_event
from cdc.position import Position
from cdc.source import BinlogSource, OutboxRow, TxnEnd
from schema.mysql import connect
from schema.settings import Settings
from tests.integration.test_cdc_relay import activity


def _gtid_pos(settings: Settings) -> str:
    with connect(settings.mysql_admin) as conn, conn.cursor() as cur:
        cur.execute("SELECT @@gtid_binlog_pos")
        row = cur.fetchone()
    assert row is not None
    return str(row[0])


def _table_ids(settings: Settings, since: str, tables: set[str]) -> dict[str, int]:
    """The binlog's current table ids of `tables` (this database), read with an unfiltered reader."""
    kwargs = settings.mysql_admin.pymysql_kwargs()
    reader = BinLogStreamReader(
        connection_settings={**kwargs, "passwd": kwargs.pop("password")},
        server_id=4_990_000 + int(time.time()) % 9_000,
        only_events=[TableMapEvent, QueryEvent],
        auto_position=since,
        is_mariadb=True,
        blocking=False,
    )
    found: dict[str, int] = {}
    try:
        for event in reader:
            if isinstance(event, TableMapEvent) and event.schema == settings.mysql.database and event.table in tables:
                found[event.table] = event.table_id
    finally:
        reader.close()
    return found


def _tender(conn: sa.Connection, uid: str, n: int) -> None:
    conn.execute(
        sa.text("INSERT INTO tenders (ocid, title, status) VALUES (:o, :t, 'active')"),
        {"o": f"ocds-ids-{uid}-{n}", "t": f"Table id reuse {n}"},
    )


def test_a_row_event_of_another_table_under_the_outboxs_old_table_id_is_not_decoded_as_the_outbox(
    settings: Settings, engine: sa.Engine, uid: str
) -> None:
    start = _gtid_pos(settings)
    with engine.begin() as conn:
        _tender(conn, uid, 0)  # a tenders-only transaction: its TABLE_MAP gives tenders' table id
        first = write_event(conn, "user.activity", 1, activity(uid, 1, 0))
    ids = _table_ids(settings, start, {"tenders", "integration_outbox"})
    assert ids["tenders"] != ids["integration_outbox"]

    async def tail() -> list[Any]:
        source = BinlogSource(settings.relay_mysql, Position(start, 0), 4_980_000 + int(time.time()) % 9_000, 1.0)
        source.start()
        got: list[Any] = []
        try:
            deadline = time.monotonic() + 30
            while not any(isinstance(i, TxnEnd) for i in got):  # the first transaction: the outbox is mapped now
                got += await source.get_many(1.0)
                assert time.monotonic() < deadline, got
            stream = source._stream
            assert stream is not None and ids["integration_outbox"] in stream.table_map
            # What a restart leaves: the outbox's cached mapping under the id `tenders` has in this server run.
            stream.table_map[ids["tenders"]] = stream.table_map[ids["integration_outbox"]]
            with engine.begin() as conn:
                _tender(conn, uid, 1)  # tenders rows only, under that id
            with engine.begin() as conn:
                _tender(conn, uid, 2)
                last = write_event(conn, "user.activity", 1, activity(uid, 1, 1))
            while not any(isinstance(i, OutboxRow) and i.id == last for i in got):
                got += await source.get_many(1.0)
                errors = [i for i in got if isinstance(i, BaseException)]
                assert not errors, f"the source failed: {errors[0]!r}"
                assert time.monotonic() < deadline + 30, got
            return got
        finally:
            source.stop()
            source.join()

    items = asyncio.run(tail())
    rows = [i for i in items if isinstance(i, OutboxRow)]
    assert len(rows) == 2 and rows[0].id == first
    assert all(r.aggregate_type == "activity" and r.defect is None for r in rows)
