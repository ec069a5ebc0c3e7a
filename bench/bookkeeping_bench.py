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

from bench.relay_bench import wait_events
from cdc.bookkeeping import published_runs
from cdc.outbox import make_engine, write_events
from cdc.relay import delete_published
from schema.mysql import OUTBOX_TABLE, connect
from schema.settings import Settings, load_settings
from tests.integration.relay_harness import RelayEnv, RelayProcess

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

    def binlog_bytes(self) -> int:
        with connect(self.settings.mysql_admin) as conn, conn.cursor() as cur:
            cur.execute("SHOW BINARY LOGS")
            return sum(int(row[1]) for row in cur.fetchall())

    @contextmanager
    def measure(self, out: list[Cost]) -> Iterator[None]:
        cpu, binlog, start = _cpu_s(self.pid), self.binlog_bytes(), time.monotonic()
        yield
        out.append(Cost(_cpu_s(self.pid) - cpu, self.binlog_bytes() - binlog, time.monotonic() - start))


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


def run(settings: Settings, engine: sa.Engine, rows: int, bookkeeping: bool, wait_done: Callable[[str], None]) -> None:
    source = Source(settings)
    idle = idle_cpu_per_s(source)
    renv = RelayEnv(uuid.uuid4().hex[:10], settings)
    asyncio.run(renv.create_topics())
    extra = {"TENDERHUB_RELAY_MARK_PUBLISHED": "true" if bookkeeping else "false"}
    relay = RelayProcess(renv, "--from-now", **extra).start()
    costs: list[Cost] = []
    tag = renv.uid
    try:
        relay.wait_committed(60)
        relay.terminate()
        with source.measure(costs):
            insert(engine, rows, renv.uid)
        with source.measure(costs):
            relay.start()
            wait_events(relay, rows, 900, [])
            if bookkeeping:
                wait_done(renv.uid)
            relay.terminate()
        with source.measure(costs):
            delete_published(renv.test_settings().model_copy(update={"relay_retention_hours": 1e-9}))
    finally:
        relay.stop_quietly()
        asyncio.run(renv.delete_topics())
        with connect(settings.mysql_admin, settings.mysql.database) as conn, conn.cursor() as cur:
            # Rows of a run without bookkeeping stay unpublished: leave nothing for a later backfill.
            cur.execute(f"DELETE FROM {OUTBOX_TABLE} WHERE JSON_VALUE(payload, '$.details.b') = %s", (tag,))
    per_m = 1_000_000 / rows
    names = ("inserts", "relay drain" + (" + bookkeeping" if bookkeeping else " (no bookkeeping)"), "janitor delete")
    for name, cost in zip(names, costs, strict=True):
        cpu = max(0.0, cost.cpu_s - idle * cost.seconds) * per_m
        print(
            f"  {name:<36} MariaDB CPU {cpu:>7.1f} s/M rows | "
            f"binlog {cost.binlog_bytes * per_m / 2**20:>8.0f} MB/M rows | {cost.seconds:>6.1f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    settings = load_settings()
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
    for bookkeeping in (False, True):
        run(settings, engine, args.rows, bookkeeping, wait_recorded)
    engine.dispose()


if __name__ == "__main__":
    main()
