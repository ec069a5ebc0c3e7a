"""What the relay's bookkeeping costs the source (issue 16, item 2): MariaDB CPU seconds and binlog bytes per million
outbox rows for the inserts themselves, for the relay draining them with and without its published bookkeeping, and
for the janitor deleting them. Prints figures; asserts nothing.

    .venv/bin/python -m bench.bookkeeping_bench --rows 200000

Needs the stack (`tenderhub stack up && tenderhub migrate`); reads MariaDB's CPU from /proc (the stack's server on this
machine). Each phase runs alone, so the server's CPU over the phase is the phase's cost (plus its idle background
work, measured first and subtracted).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from bench.args import positive
from bench.relay_bench import wait_events
from cdc.bookkeeping import delete_published, drop_published_partitions, partitions, published_runs
from cdc.connections import relay_connection
from cdc.outbox import make_engine, write_events
from schema.mysql import ADD_PARTITION_PROC, OUTBOX_TABLE, connect, drop_database, migrate
from schema.settings import Settings, load_settings
from tenderhub.faults.namespace import fault_namespace
from tenderhub.processes import RelayEnv, RelayProcess
from tenderhub.smoke import binlog_bytes

PAYLOAD_TEXT = 900  # characters of text per row: about 1 KB payloads, as in the peer benchmark
_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


@dataclass
class Cost:
    cpu_s: float
    binlog_bytes: int
    seconds: float


class Source:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pid = _mysql_pid()

    @contextmanager
    def measure(self, out: list[Cost]) -> Iterator[None]:
        cpu, binlog, start = _cpu_s(self.pid), binlog_bytes(self.settings), time.monotonic()
        yield
        out.append(Cost(_cpu_s(self.pid) - cpu, binlog_bytes(self.settings) - binlog, time.monotonic() - start))


def _mysql_pid() -> int:
    path = os.path.join(os.environ.get("TENDERHUB_STACK_DIR", ".stack"), "mysql.pid")
    return int(Path(path).read_text().split()[0])


def insert(engine: sa.Engine, rows: int, tag: str, txn: int = 1000) -> None:
    text = ("x" * PAYLOAD_TEXT)[:PAYLOAD_TEXT]
    with engine.connect() as conn:
        for done in range(0, rows, txn):
            n = min(txn, rows - done)
            with conn.begin():
                write_events(
                    conn,
                    [
                        (
                            "user.activity",
                            (done + i) % 1000 + 1,
                            {
                                "user_id": (done + i) % 1000 + 1,
                                "team_id": 1,
                                "action": "tender.viewed",
                                "details": {"b": tag, "n": done + i, "t": text},
                            },
                        )
                        for i in range(n)
                    ],
                )


def idle_cpu_per_s(source: Source, seconds: float = 5.0) -> float:
    costs: list[Cost] = []
    with source.measure(costs):
        time.sleep(seconds)
    return costs[0].cpu_s / costs[0].seconds


def _tagged(settings: Settings, tag: str) -> int:
    with connect(settings.mysql_admin, settings.mysql.database) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT COUNT(*) FROM {OUTBOX_TABLE} WHERE JSON_VALUE(payload, '$.details.b') = %s", (tag,))
        row = cur.fetchone()
        return int(row[0]) if row else 0


def _partitions_for(settings: Settings, rows: int, size: int) -> None:
    """Empty partitions for the rows about to be inserted (what the janitor keeps ready ahead when it runs often
    enough), so the janitor phase measures only the drops."""
    with connect(settings.mysql_admin, settings.mysql.database) as conn, conn.cursor() as cur:
        parts = partitions(cur)
        if parts is None:
            raise SystemExit("the outbox is not partitioned: run `tenderhub migrate` (migration 0003)")
        highest = max((b for _, b in parts if b is not None), default=0)
        cur.execute(f"SELECT COALESCE(MAX(id), 0) + 1 FROM {OUTBOX_TABLE}")
        row = cur.fetchone()
        nxt = max(int(row[0]) if row else 1, highest)
        for bound in range((nxt // size + 1) * size, nxt + rows + 2 * size, size):
            if bound > highest:
                cur.execute(f"CALL {ADD_PARTITION_PROC}(%s)", (bound,))


def run(
    settings: Settings, engine: sa.Engine, rows: int, janitor: str | None, wait_done: Callable[[str], None]
) -> None:
    """One run: inserts, the relay's drain (with bookkeeping unless `janitor` is None), then the janitor by
    "rows" (DELETE) or by "partitions" (DROP PARTITION, `rows // 10` ids a partition)."""
    source = Source(settings)
    idle = idle_cpu_per_s(source)
    renv = RelayEnv(uuid.uuid4().hex[:10], settings)
    asyncio.run(renv.create_topics())
    extra = {
        "TENDERHUB_RELAY_MARK_PUBLISHED": "false" if janitor is None else "true",
        "TENDERHUB_MYSQL_URL": settings.mysql_url.get_secret_value(),
        "TENDERHUB_RELAY_MYSQL_URL": settings.relay_mysql_url.get_secret_value(),
        "TENDERHUB_RELAY_PARTITION_IDS": str(max(100, rows // 10)),
    }
    relay = RelayProcess(renv, "--from-now", **extra).start()
    costs: list[Cost] = []
    tag = renv.uid
    size = max(100, rows // 10)
    removed = 0
    try:
        relay.wait_committed(60)
        relay.terminate()
        _partitions_for(settings, rows, size)
        with source.measure(costs):
            insert(engine, rows, tag)
        with source.measure(costs):
            relay.start()
            wait_events(relay, rows, 900, [])
            if janitor is not None:
                wait_done(tag)
            relay.terminate()
        if janitor is not None:
            with relay_connection(settings.relay_mysql) as conn, source.measure(costs):
                if janitor == "rows":
                    delete_published(conn, 1e-9)
                else:
                    cur = conn.cursor()
                    parts = partitions(cur)
                    assert parts is not None
                    drop_published_partitions(cur, parts, 1e-9)
            removed = rows - _tagged(settings, tag)
    finally:
        relay.kill()
        asyncio.run(renv.delete_topics())
        with connect(settings.mysql_admin, settings.mysql.database) as conn, conn.cursor() as cur:
            # Leave nothing of the run for a later backfill (rows without bookkeeping stay unpublished).
            cur.execute(f"DELETE FROM {OUTBOX_TABLE} WHERE JSON_VALUE(payload, '$.details.b') = %s", (tag,))
    names = [
        "inserts",
        "relay drain" + (" (no bookkeeping)" if janitor is None else " + bookkeeping"),
        f"janitor by {janitor} ({removed:,} rows removed)",
    ]
    for name, cost, per in zip(names, costs, (rows, rows, max(removed, 1)), strict=False):
        cpu = max(0.0, cost.cpu_s - idle * cost.seconds) * 1_000_000 / per
        print(
            f"  {name:<44} MariaDB CPU {cpu:>7.2f} s/M rows | "
            f"binlog {cost.binlog_bytes * 1_000_000 / per / 2**20:>8.1f} MB/M rows | {cost.seconds:>6.1f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=positive, default=100_000)
    args = parser.parse_args()
    # A database of its own (accounts and grants as `migrate` makes them): the partitions and rows of the deployment's
    # outbox stay out of the figures, and the run leaves nothing behind.
    ns = fault_namespace(load_settings(), f"bk{uuid.uuid4().hex[:8]}")
    settings = ns.settings
    migrate(settings)
    engine = make_engine(settings, pool_size=2)

    def wait_recorded(tag: str, timeout: float = 300) -> None:
        """Until recorded runs cover every row of this run (row flags never get set in binlog mode)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with connect(settings.mysql_admin, settings.mysql.database) as conn, conn.cursor() as cur:
                cur.execute(f"SELECT id FROM {OUTBOX_TABLE} WHERE JSON_VALUE(payload, '$.details.b') = %s", (tag,))
                ids = sorted(int(r[0]) for r in cur.fetchall())
                runs = published_runs(cur)
            starts = [first for first, _ in runs]
            left = [i for i in ids if (k := bisect.bisect_right(starts, i) - 1) < 0 or runs[k][1] < i]
            if not left:
                return
            time.sleep(0.5)
        raise TimeoutError("bookkeeping did not finish")

    print(f"MariaDB cost per million outbox rows (~1 KB payloads, 1,000-row transactions, {args.rows:,} rows a run):")
    try:
        for janitor in (None, "rows", "partitions"):
            run(settings, engine, args.rows, janitor, wait_recorded)
    finally:
        engine.dispose()
        drop_database(settings)


if __name__ == "__main__":
    main()
