"""Relay benchmark: relay throughput against the source's own maximum insert rate, commit-to-consumer latency at
a steady rate, and relay memory over a long run. Prints figures; asserts nothing.

    .venv/bin/python -m bench.relay_bench                 # quick: 20k rows per workload, 20 s latency run
    .venv/bin/python -m bench.relay_bench --rows 100000 --soak 1000000

Needs the stack (`tenderhub stack up && tenderhub migrate`). Each run uses its own topics and relay source.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import multiprocessing
import statistics
import threading
import time
import uuid
from multiprocessing.connection import Connection

import sqlalchemy as sa

from bench.args import non_negative, positive, positive_list
from bench.probes import cpu_pressure_seconds, measuring_consumer, tree_cpu_seconds, tree_run_queue_seconds
from cdc.outbox import make_engine, write_event, write_events
from schema.settings import Settings, load_settings
from tenderhub.processes import RelayEnv, RelayProcess
from tenderhub.stack import rss_mb


def _activity(user: int, n: int, tag: str) -> dict[str, object]:
    return {"user_id": user, "team_id": 1, "action": "tender.viewed", "details": {"b": tag, "n": n}}


def _users(writer: int, done: int, n: int) -> list[tuple[int, int]]:
    """(row index, user id): 1,000 aggregates, spread over the writers."""
    return [(i, (writer * 7919 + done + i) % 1000 + 1) for i in range(n)]


def insert_rows(engine: sa.Engine, rows: int, txn_size: int, writers: int, tag: str) -> float:
    """Insert `rows` through the outbox writer as fast as the server commits them; return rows/s (durable:
    sync_binlog=1, innodb_flush_log_at_trx_commit=1). Bulk transactions use multi-row INSERTs."""
    per_writer = rows // writers

    def work(w: int) -> None:
        done = 0
        with engine.connect() as conn:
            while done < per_writer:
                n = min(txn_size, per_writer - done)
                with conn.begin():
                    write_events(
                        conn, [("user.activity", u, _activity(u, done + i, tag)) for i, u in _users(w, done, n)]
                    )
                done += n

    start = time.perf_counter()
    threads = [threading.Thread(target=work, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return per_writer * writers / (time.perf_counter() - start)


def wait_events(relay: RelayProcess, target: float, timeout: float, samples: list[tuple[float, float, float]]) -> None:
    """Poll the relay's metrics until `target` events are committed; record (time, events, rss)."""
    deadline = time.monotonic() + timeout
    assert relay.proc is not None
    while time.monotonic() < deadline:
        try:
            m = relay.metrics()
        except OSError:  # the restarted relay is not serving metrics yet
            time.sleep(0.05)
            continue
        events = sum(v for k, v in m.items() if k.startswith("tenderhub_relay_events_total"))
        samples.append((time.monotonic(), events, rss_mb(relay.proc.pid, with_children=True) or 0.0))
        if events >= target:
            return
        time.sleep(0.05)
    raise TimeoutError(f"relay committed {samples[-1][1]:.0f} of {target:.0f} events in {timeout:.0f} s")


def drain_rate(samples: list[tuple[float, float, float]], start_events: float) -> float:
    moving = [s for s in samples if s[1] > start_events]
    first, last = moving[0], moving[-1]
    if last[1] - first[1] < last[1] / 2:
        # The backlog fit in one or two commits: measure from the relay's first metrics answer instead.
        first = (samples[0][0], start_events, 0.0)
    return (last[1] - first[1]) / max(last[0] - first[0], 1e-9)


def throughput(settings: Settings, engine: sa.Engine, rows: int, txn_size: int, writers: int) -> None:
    """Insert a backlog while the relay is stopped (the source's max rate), then let the relay drain it."""
    renv = RelayEnv(uuid.uuid4().hex[:10], settings)
    asyncio.run(renv.create_topics())
    relay = RelayProcess(renv, "--from-now").start()
    try:
        relay.wait_committed(60)
        relay.terminate()
        insert_rate = insert_rows(engine, rows, txn_size, writers, renv.uid)
        relay.start()
        samples: list[tuple[float, float, float]] = []
        wait_events(relay, rows, 600, samples)
        rate = drain_rate(samples, 0)
        print(
            f"  {txn_size:>5}-row txns, {writers} writers: source insert {insert_rate:>9,.0f} rows/s | "
            f"relay binlog->Kafka committed {rate:>9,.0f} rows/s | ratio {rate / insert_rate:.2f} | "
            f"relay RSS {max(s[2] for s in samples):.0f} MB"
        )
        relay.terminate()
    finally:
        relay.kill()
        asyncio.run(renv.delete_topics())


async def _consume_latency(bootstrap: str, topic: str, expect: int, timeout: float, conn: Connection) -> None:
    consumer = measuring_consumer(bootstrap, topic)
    await consumer.start()
    out: list[tuple[int, float, float]] = []  # (event id, received, created_at) as Unix times
    try:
        await consumer.seek_to_end()
        conn.send("ready")
        deadline = time.monotonic() + timeout
        while len(out) < expect and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=100)
            now = time.time()
            for records in batch.values():
                for r in records:
                    envelope = json.loads(r.value or b"{}")
                    created = dt.datetime.strptime(envelope["occurred_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
                    out.append((envelope["event_id"], now, created.replace(tzinfo=dt.UTC).timestamp()))
    finally:
        await consumer.stop()
        conn.send(out)


def _consumer_process(bootstrap: str, topic: str, expect: int, timeout: float, conn: Connection) -> None:
    # Its own process, like a real downstream consumer: the bench's writer threads do not steal its GIL.
    asyncio.run(_consume_latency(bootstrap, topic, expect, timeout, conn))


def latency(settings: Settings, engine: sa.Engine, rate: int, seconds: int, per_commit: int) -> None:
    """Commits of `per_commit` rows at a steady `rate` of rows; latency = receive time at a read_committed consumer
    minus when the writer's COMMIT returned (the target's commit-to-Kafka), and minus the row's created_at (NOW(3) at
    insert: adds the source's own commit, fsyncs included)."""
    renv = RelayEnv(uuid.uuid4().hex[:10], settings)
    asyncio.run(renv.create_topics())
    relay = RelayProcess(renv, "--from-now", TENDERHUB_RELAY_LINGER_MS="2").start()
    expect = rate * seconds
    try:
        relay.wait_committed(60)
        relay.wait_tailing(60)  # steady state: the decoder process is up (its start is not the latency measured)
        ctx = multiprocessing.get_context("spawn")
        here, there = ctx.Pipe()
        consumer = ctx.Process(
            target=_consumer_process,
            args=(settings.kafka_bootstrap, f"{renv.prefix}activity", expect, seconds + 60, there),
        )
        consumer.start()
        if not here.poll(60) or here.recv() != "ready":
            raise TimeoutError("the latency consumer did not start")
        start = time.perf_counter()
        # One connection commits at most ~800 durable rows/s here (fsync per commit): pace several writers.
        pacers = 4

        committed: dict[int, float] = {}  # event id -> when the writer's COMMIT returned

        def pace(w: int) -> None:
            with engine.connect() as conn:
                for first in range(w * per_commit, expect, pacers * per_commit):
                    pause = start + first / rate - time.perf_counter()
                    if pause > 0:
                        time.sleep(pause)
                    rows = [
                        ("user.activity", i % 1000 + 1, _activity(i % 1000 + 1, i, renv.uid))
                        for i in range(first, min(first + per_commit, expect))
                    ]
                    with conn.begin():
                        ids = [write_event(conn, *rows[0])] if per_commit == 1 else write_events(conn, rows)
                    at = time.time()
                    committed.update((i, at) for i in ids)

        assert relay.proc is not None
        before = tree_cpu_seconds(relay.proc.pid), tree_run_queue_seconds(relay.proc.pid), cpu_pressure_seconds()
        threads = [threading.Thread(target=pace, args=(w,)) for w in range(pacers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
        after = tree_cpu_seconds(relay.proc.pid), tree_run_queue_seconds(relay.proc.pid), cpu_pressure_seconds()
        cpu, waited, pressure = ((b - a) / wall * 100 for a, b in zip(before, after, strict=True))
        achieved = expect / wall
        arrivals = here.recv()
        consumer.join()
        from_created = sorted((got - created) * 1000 for _, got, created in arrivals)
        from_commit = sorted((got - committed[i]) * 1000 for i, got, _ in arrivals if i in committed)
        print(f"  steady {achieved:,.0f} rows/s in {per_commit}-row commits for {seconds} s: {len(arrivals)} received")
        for name, lat in (("commit returned", from_commit), ("row created_at (insert)", from_created)):
            q = statistics.quantiles(lat, n=100)
            print(
                f"    {name:>24} -> read_committed consumer: p50 {q[49]:.1f} ms, p99 {q[98]:.1f} ms, "
                f"max {lat[-1]:.1f} ms"
            )
        print(
            f"    relay (with its decoder): CPU {cpu:.0f}% of a core, runnable but waiting for a core {waited:.0f}% of "
            f"the time (summed over threads); machine CPU pressure (some task waiting) {pressure:.0f}%"
        )
        relay.terminate()
    finally:
        relay.kill()
        asyncio.run(renv.delete_topics())


def soak(settings: Settings, engine: sa.Engine, events: int) -> None:
    """Relay RSS while it publishes `events` rows (inserted in 1,000-row transactions while it runs)."""
    renv = RelayEnv(uuid.uuid4().hex[:10], settings)
    asyncio.run(renv.create_topics())
    relay = RelayProcess(renv, "--from-now").start()
    samples: list[tuple[float, float, float]] = []
    try:
        relay.wait_committed(60)
        writer = threading.Thread(target=insert_rows, args=(engine, events, 1000, 2, renv.uid))
        writer.start()
        wait_events(relay, events, 3600, samples)
        writer.join()
        marks = [samples[int(len(samples) * f) - 1] for f in (0.1, 0.25, 0.5, 0.75, 1.0)]
        trace = ", ".join(f"{s[1] / 1e3:,.0f}k: {s[2]:.0f} MB" for s in marks)
        print(f"  {events:,} events: relay RSS at {trace} (max {max(s[2] for s in samples):.0f} MB)")
        relay.terminate()
    finally:
        relay.kill()
        asyncio.run(renv.delete_topics())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=positive, default=20_000, help="rows per throughput workload")
    parser.add_argument(
        "--rates", type=positive_list, default="1000,5000", help="steady insert rates (rows/s) of the latency runs"
    )
    parser.add_argument(
        "--per-commit",
        type=non_negative,
        default=0,
        help="rows per commit in the latency runs (default: one up to 1,000 rows/s, else rate / 1,000: one writer "
        "commits at most ~800 durable transactions/s here)",
    )
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--seconds", type=positive, default=20, help="length of the latency run")
    parser.add_argument("--soak", type=non_negative, default=0, help="events for the RSS soak (0 = skip)")
    args = parser.parse_args()
    settings = load_settings()
    engine = make_engine(settings, pool_size=8)
    if not args.skip_throughput:
        print("relay throughput (backlog drained from the binlog, vs the source's durable insert rate):")
        throughput(settings, engine, args.rows, 1, 8)
        throughput(settings, engine, args.rows, 1000, 2)
    print("latency:")
    for rate in args.rates:
        latency(settings, engine, rate, args.seconds, args.per_commit or max(1, -(-rate // 1000)))
    if args.soak:
        print("memory:")
        soak(settings, engine, args.soak)
    engine.dispose()


if __name__ == "__main__":
    main()
