"""The janitor on a partitioned outbox (migration 0003, issue 16 item 2): partitions kept ready ahead of the ids in
use, whole partitions dropped once every row of them was published more than the retention ago (a DDL statement in
the binlog instead of a row image per deleted row), rows not yet published or too young kept, and the relay streaming
on across the DDL. In a database of its own, with 100 ids a partition."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from cdc.bookkeeping import AHEAD, partitions, published_runs
from cdc.marker import delete_published
from cdc.outbox import make_engine
from schema.mysql import connect, drop_database, migrate
from schema.settings import Settings
from tenderhub.faults.namespace import FaultNamespace, fault_namespace
from tenderhub.processes import RelayEnv, RelayProcess
from tests.integration.relay_harness import consume, run
from tests.integration.test_cdc_bookkeeping import binlog_bytes, wait_all_published
from tests.integration.test_cdc_relay import assert_exactly_once_in_order, insert_activities, mine

SIZE = 100


@pytest.fixture
def ns(settings: Settings, uid: str) -> Iterator[FaultNamespace]:
    space = fault_namespace(settings, f"p{uid[:8]}")
    space = FaultNamespace(space.run, space.settings.model_copy(update={"relay_partition_ids": SIZE}))
    migrate(space.settings)
    try:
        yield space
    finally:
        drop_database(space.settings)


def _parts(settings: Settings) -> list[tuple[str, int | None]]:
    with connect(settings.relay_mysql, settings.mysql.database) as conn, conn.cursor() as cur:
        found = partitions(cur)
    assert found is not None, "the outbox is not partitioned"
    return found


def test_janitor_drops_whole_partitions_of_rows_published_past_retention(ns: FaultNamespace, uid: str) -> None:
    s = ns.settings
    renv = RelayEnv(uid, s)
    asyncio.run(renv.create_topics())
    mysql_env = {
        "TENDERHUB_MYSQL_URL": s.mysql_url.get_secret_value(),
        "TENDERHUB_RELAY_MYSQL_URL": s.relay_mysql_url.get_secret_value(),
        "TENDERHUB_RELAY_PARTITION_IDS": str(SIZE),
    }
    engine = make_engine(s, pool_size=1)
    relay = RelayProcess(renv, "--from-now", **mysql_env).start()
    try:
        relay.wait_committed()
        # The janitor runs at start: empty partitions ready ahead of the first id.
        deadline = time.monotonic() + 20
        while [b for _, b in _parts(s)] != [100 * (k + 1) for k in range(AHEAD + 1)] + [
            None
        ] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [b for _, b in _parts(s)] == [100 * (k + 1) for k in range(AHEAD + 1)] + [None], relay.tail()
        ids = insert_activities(engine, uid, [50, 50, 50, 50, 50])  # ids 1..250, over three partitions
        records = mine(run(consume(s.kafka_bootstrap, [f"{renv.prefix}activity"], len(ids), timeout=60)), uid)
        assert_exactly_once_in_order(records, ids)
        assert wait_all_published(s, ids) == set(ids), relay.tail()
        assert relay.terminate() == 0, relay.tail()
        unpublished = insert_activities(engine, uid, [3])  # the relay is stopped: never published yet
        janitor = s.model_copy(update={"relay_retention_hours": 1.0})
        with connect(s.mysql_admin, s.mysql.database) as conn, conn.cursor() as cur:
            cur.execute("UPDATE integration_outbox SET created_at = NOW(3) - INTERVAL 2 HOUR WHERE id <= 200")
        # Rows below 200 are two hours old, but their runs were recorded just now: nothing goes yet.
        assert delete_published(janitor) == 0
        assert [b for _, b in _parts(s)][:2] == [100, 200]
        with connect(s.mysql_admin, s.mysql.database) as conn, conn.cursor() as cur:
            cur.execute("UPDATE integration_outbox_published SET published_at = NOW(3) - INTERVAL 2 HOUR")
            # MySQL forgets that ids 1..50 were published (as after a `--from-now` start skipped them): the
            # partition below 100 is blocked by them, and only its published rows may go, row by row.
            cur.execute("DELETE FROM integration_outbox_published WHERE first_id <= 50")
            cur.execute(
                "INSERT INTO integration_outbox_published (relay_source, first_id, last_id, published_at) "
                "VALUES ('edited', 51, 250, NOW(3) - INTERVAL 2 HOUR)"
            )
        before = binlog_bytes(s)
        removed = delete_published(janitor)
        janitor_binlog = binlog_bytes(s) - before
        bounds = [b for _, b in _parts(s)]
        assert bounds[:3] == [100, 300, 400] and bounds[-1] is None, bounds  # p200 dropped
        with connect(s.mysql_admin, s.mysql.database) as conn, conn.cursor() as cur:
            cur.execute("SELECT id FROM integration_outbox")
            left = sorted(int(r[0]) for r in cur.fetchall())
            runs = published_runs(cur)
        assert left == [i for i in ids if i <= 50 or i >= 200] + unpublished
        assert runs == ((51, 250),) or all(first >= 51 for first, _ in runs), runs
        assert 49 <= removed <= 250
        # 49 rows deleted one by one (their images in the binlog), 100 dropped with one DDL statement.
        assert janitor_binlog < 49 * 600 + 5_000, janitor_binlog
        # The relay reads on across the DDL in the binlog: the unpublished rows, then new ones, exactly once.
        relay.start()
        later = insert_activities(engine, uid, [20])
        records = mine(
            run(consume(s.kafka_bootstrap, [f"{renv.prefix}activity"], len(ids) + 23, timeout=60, settle_s=2)), uid
        )
        assert_exactly_once_in_order(records, ids + unpublished + later)
        assert relay.terminate() == 0, relay.tail()
    finally:
        relay.kill()
        engine.dispose()
        asyncio.run(renv.delete_topics())
