"""Peer benchmark: the relay against Debezium's MariaDB connector with the outbox EventRouter on Kafka Connect
standalone, on the same MariaDB, the same Kafka broker and the same outbox rows. Not part of the test suite.

    .venv/bin/python -m bench.debezium_bench                          # 3 interleaved runs of both shapes (~20 min)
    .venv/bin/python -m bench.debezium_bench --runs 1 --bulk-rows 20000 --single-rows 5000   # smoke (~4 min)

Needs the stack (`tenderhub stack up && tenderhub migrate`), Java 17, and the jars: Kafka Connect 4.1.1 and
`io.debezium:debezium-connector-mariadb:3.5.0.Final` (the newest MariaDB connector release on Maven Central), fetched
with Maven into the tenderhub cache on first use (`bench/debezium/pom.xml`; Debezium's parent POM also names a
repository that only its vendor serves: set MAVEN_MIRROR_URL to a Maven Central mirror if Maven cannot reach it).

Rows: ~1 KB JSON payloads, 60 % `user.activity`, 25 % `tender.created`, 15 % `company.updated`, written through
`cdc.outbox.write_events` (durable commits). Shapes: a backlog in 1,000-row transactions from 2 writers, and a backlog
of single-row commits from 8 writers.

Method, identical for both sides, each run on fresh topics and a fresh start position:
1. start the side (the relay with --from-now; Connect with snapshot.mode=no_data) and commit one warm-up row; the
   side is tailing once an independent read_committed consumer (its own process) has received it;
2. stop the side (SIGTERM: the relay commits its position, Connect its offsets), insert the backlog;
3. start the side again; it drains the backlog from where it stopped. The consumer counts the backlog's records
   and their distinct event ids (the relay's `event_id` header, the EventRouter's `id` header). The rate runs from
   the first backlog record received to the last, so JVM and Python start-up are not counted; CPU (user + system,
   the side's whole process tree) and RSS are sampled every 50 ms and taken over the same interval.
Both sides publish with acks=all and idempotence; the relay also in Kafka transactions (Debezium does not).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.args import positive
from bench.probes import measuring_consumer
from cdc.outbox import make_engine, write_events
from schema.settings import Settings, StackSettings, load_settings
from tenderhub.processes import RelayEnv, RelayProcess, free_port
from tenderhub.stack import child_pids, rss_mb

HERE = Path(__file__).parent / "debezium"
KAFKA_VERSION = "4.1.1"
DEBEZIUM_VERSION = "3.5.0.Final"
AGGREGATES = ("activity", "tender", "company")
PARTITIONS = 3  # as the relay's test topics (tests.integration.relay_harness.RelayEnv)
WARMUP_TIMEOUT_S = 180
TEXT = (
    "Appointment of a service provider for the maintenance and repair of municipal water reticulation, sewer pump "
    "stations and associated civil works, including the supply of materials, plant and labour, for a period of "
    "thirty-six months as and when required. "
)


def _pad(n: int, size: int) -> str:
    return (TEXT * (size // len(TEXT) + 1))[:size] + f" #{n}"


def event(n: int, tag: str) -> tuple[str, int, dict[str, Any]]:
    """Row `n` of the mix: 60 % activity, 25 % tender, 15 % company; each payload about 1 KB of JSON."""
    kind = n % 20
    if kind < 12:
        user = n % 1000 + 1
        details = {"bench": tag, "query": _pad(n, 820)}
        return "user.activity", user, {"user_id": user, "team_id": 1, "action": "tender.viewed", "details": details}
    if kind < 17:
        tender = 9_100_000_000 + n
        payload = {
            "tender_id": tender,
            "ocid": f"ocds-bench-{tag}-{n}",
            "title": f"Bench {tag} tender {n}",
            "buyer": "City of Tshwane Metropolitan Municipality",
            "budget": "1250000.00",
            "currency": "ZAR",
            "status": "active",
            "province": "Gauteng",
            "description": _pad(n, 620),
        }
        return "tender.created", tender, payload
    team = n % 500 + 1
    payload = {
        "team_id": team,
        "company_id": team,
        "company_name": f"Bench {tag} Construction (Pty) Ltd",
        "sectors": ["construction", "water"],
        "provinces": ["Gauteng", "Limpopo"],
        "experience_years": 12,
        "bbbee_level": 2,
        "cidb": [{"class_of_works": "CE", "grade": 6}],
        "description": _pad(n, 640),
    }
    return "company.updated", team, payload


def insert(engine: sa.Engine, first: int, rows: int, txn_size: int, writers: int, tag: str) -> float:
    """Insert rows first..first+rows-1 of the mix; return the source's rate (rows/s)."""

    def work(w: int) -> None:
        with engine.connect() as conn:
            for start in range(first + w * txn_size, first + rows, writers * txn_size):
                with conn.begin():
                    write_events(conn, [event(n, tag) for n in range(start, min(start + txn_size, first + rows))])

    began = time.perf_counter()
    threads = [threading.Thread(target=work, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return rows / (time.perf_counter() - began)


def warm_up_row(engine: sa.Engine, tag: str) -> int:
    with engine.begin() as conn:
        return write_events(conn, [event(0, tag)])[0]


# -- the independent consumer ----------------------------------------------------------------------------------------


async def _count(bootstrap: str, topics: list[str], id_header: str, conn: Connection) -> None:
    consumer = measuring_consumer(bootstrap, *topics, from_start=True)
    await consumer.start()
    try:
        conn.send("ready")
        while True:
            expect = conn.recv()  # ("count", n, timeout, min_id); "stop" to end
            if expect == "stop":
                return
            n, timeout, min_id = expect[1], expect[2], expect[3]
            ids: set[bytes] = set()
            seen, first, last = 0, 0.0, 0.0
            deadline = time.monotonic() + timeout
            while seen < n and time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=100)
                now = time.time()
                for records in batch.values():
                    for r in records:
                        event_id = next((v for k, v in r.headers if k == id_header), b"0").strip(b'"')
                        if int(event_id) < min_id:
                            continue  # a warm-up row published late
                        first = first or now
                        last = now
                        seen += 1
                        ids.add(event_id)
            conn.send((seen, len(ids), first, last))
    finally:
        await consumer.stop()


def _consumer_main(bootstrap: str, topics: list[str], id_header: str, conn: Connection) -> None:
    asyncio.run(_count(bootstrap, topics, id_header, conn))


class Counter:
    """The consumer process: counts what arrives on the side's topics after each request."""

    def __init__(self, bootstrap: str, topics: list[str], id_header: str) -> None:
        ctx = get_context("spawn")
        self.here, there = ctx.Pipe()
        self.proc = ctx.Process(target=_consumer_main, args=(bootstrap, topics, id_header, there), daemon=True)
        self.proc.start()
        if not self.here.poll(60) or self.here.recv() != "ready":
            raise TimeoutError("the counting consumer did not start")

    def request(self, n: int, timeout: float, min_id: int = 0) -> None:
        self.here.send(("count", n, timeout, min_id))

    def result(self, timeout: float) -> tuple[int, int, float, float]:
        if not self.here.poll(timeout):
            raise TimeoutError("the counting consumer sent no result")
        seen, distinct, first, last = self.here.recv()
        return int(seen), int(distinct), float(first), float(last)

    def close(self) -> None:
        if self.proc.is_alive():
            self.here.send("stop")
            self.proc.join(15)
        if self.proc.is_alive():
            self.proc.kill()


# -- the two sides ---------------------------------------------------------------------------------------------------


class Side:
    name = ""
    id_header = ""

    def topics(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def pid(self) -> int:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class RelaySide(Side):
    name, id_header = "relay", "event_id"

    def __init__(self, settings: Settings, uid: str) -> None:
        self.env = RelayEnv(uid, settings)
        asyncio.run(self.env.create_topics())
        self.relay = RelayProcess(self.env, "--from-now")
        self.started = False

    def topics(self) -> list[str]:
        return [self.env.prefix + a for a in AGGREGATES]

    def start(self) -> None:
        self.relay.start()
        if not self.started:
            self.relay.wait_committed(60)
            self.relay.wait_tailing(60)
            self.started = True

    def stop(self) -> None:
        code = self.relay.terminate()
        if code != 0:
            raise RuntimeError(f"the relay exited with {code} on SIGTERM:\n{self.relay.tail()}")

    def pid(self) -> int:
        assert self.relay.proc is not None
        return self.relay.proc.pid

    def close(self) -> None:
        self.relay.kill()
        asyncio.run(self.env.delete_topics())


def ensure_jars() -> tuple[Path, Path]:
    """The Connect classpath directory and the plugin path, fetched with Maven when missing."""
    cache = StackSettings().cache_dir
    connect = cache / f"connect-{KAFKA_VERSION}"
    plugins = cache / f"debezium-{DEBEZIUM_VERSION}"
    targets = {"connect": connect, "debezium": plugins / "debezium-connector-mariadb"}
    for profile, target in targets.items():
        if (target / ".complete").exists() or (target.is_dir() and any(target.glob("*.jar"))):
            continue
        print(f"  fetching the {profile} jars with Maven into {target} (first use)", flush=True)
        cmd = ["mvn", "-q", "-B", "-f", str(HERE / "pom.xml"), f"-P{profile}", "dependency:copy-dependencies"]
        cmd.append(f"-DoutputDirectory={target}")
        with tempfile.TemporaryDirectory() as tmp:
            mirror = os.environ.get("MAVEN_MIRROR_URL")
            if mirror:
                settings_xml = Path(tmp) / "settings.xml"
                settings_xml.write_text(
                    "<settings><mirrors><mirror><id>bench-mirror</id><mirrorOf>*</mirrorOf>"
                    f"<url>{mirror}</url></mirror></mirrors></settings>"
                )
                cmd[1:1] = ["-s", str(settings_xml)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(
                f"Maven could not fetch the {profile} jars (exit {proc.returncode}); if a repository was unreachable, "
                f"set MAVEN_MIRROR_URL to a Maven Central mirror:\n{(proc.stdout + proc.stderr)[-2000:]}"
            )
        (target / ".complete").write_text(profile)
    return connect, plugins


class DebeziumSide(Side):
    name, id_header = "debezium", "id"

    def __init__(self, settings: Settings, uid: str, admin: sa.Engine, jars: tuple[Path, Path]) -> None:
        self.settings, self.uid, self.admin = settings, uid, admin
        self.prefix = f"bench.dbz.{uid}."
        self.dir = Path(tempfile.mkdtemp(prefix=f"dbz-bench-{uid}-"))
        self.user, password = f"dbz_bench_{uid[:8]}", secrets.token_urlsafe(18)
        self.proc: subprocess.Popen[bytes] | None = None
        self.killed = 0
        self.connect_jars, self.plugins = jars
        url = sa.engine.make_url(settings.mysql_url.get_secret_value())
        host = settings.mysql_grant_host
        with admin.begin() as conn:
            conn.execute(sa.text(f"CREATE USER '{self.user}'@'{host}' IDENTIFIED BY :pw"), {"pw": password})
            conn.execute(sa.text(f"GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO '{self.user}'@'{host}'"))
            conn.execute(sa.text(f"GRANT SELECT ON `{url.database}`.integration_outbox TO '{self.user}'@'{host}'"))
        self.rest_port = free_port()
        worker = {
            "bootstrap.servers": settings.kafka_bootstrap,
            "key.converter": "org.apache.kafka.connect.json.JsonConverter",
            "key.converter.schemas.enable": "false",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter.schemas.enable": "false",
            "offset.storage.file.filename": str(self.dir / "connect.offsets"),
            "offset.flush.interval.ms": "1000",
            "plugin.path": str(self.plugins),
            "listeners": f"http://127.0.0.1:{self.rest_port}",
            "producer.acks": "all",
            "producer.enable.idempotence": "true",
            "producer.max.in.flight.requests.per.connection": "5",
        }
        connector = {
            "name": f"dbz-bench-{uid}",
            "connector.class": "io.debezium.connector.mariadb.MariaDbConnector",
            "tasks.max": "1",
            "database.hostname": url.host or "127.0.0.1",
            "database.port": str(url.port or 3306),
            "database.user": self.user,
            "database.password": password,
            "database.ssl.mode": "disable",
            "database.server.id": str(5_400_000 + int(uid[:6], 16) % 90_000),
            "topic.prefix": f"dbzbench{uid}",
            "database.include.list": str(url.database),
            "table.include.list": f"{url.database}.integration_outbox",
            "snapshot.mode": "no_data",
            "snapshot.locking.mode": "none",
            "schema.history.internal": "io.debezium.storage.file.history.FileSchemaHistory",
            "schema.history.internal.file.filename": str(self.dir / "schema-history.dat"),
            "schema.history.internal.store.only.captured.tables.ddl": "true",
            "schema.history.internal.store.only.captured.databases.ddl": "true",
            "include.schema.changes": "false",
            "tombstones.on.delete": "false",
            "skipped.operations": "u,d,t",
            "bigint.unsigned.handling.mode": "long",
            "transforms": "outbox",
            "transforms.outbox.type": "io.debezium.transforms.outbox.EventRouter",
            "transforms.outbox.table.field.event.id": "id",
            "transforms.outbox.table.field.event.key": "aggregate_id",
            "transforms.outbox.table.field.event.payload": "payload",
            "transforms.outbox.table.expand.json.payload": "true",
            "transforms.outbox.table.fields.additional.placement": "event_type:header:event_type",
            "transforms.outbox.route.by.field": "aggregate_type",
            "transforms.outbox.route.topic.regex": "(?<routedByValue>.*)",
            "transforms.outbox.route.topic.replacement": self.prefix + "${routedByValue}",
            "transforms.outbox.route.tombstone.on.empty.payload": "false",
        }
        self.worker_file, self.connector_file = self.dir / "worker.properties", self.dir / "connector.properties"
        for path, props in ((self.worker_file, worker), (self.connector_file, connector)):
            path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
            path.chmod(0o600)
        (self.dir / "log4j2.properties").write_text(
            "status = warn\nappender.file.type = File\nappender.file.name = FILE\n"
            f"appender.file.fileName = {self.dir / 'connect.log'}\n"
            "appender.file.layout.type = PatternLayout\nappender.file.layout.pattern = [%d{ISO8601}] %p %m (%c)%n\n"
            "rootLogger.level = info\nrootLogger.appenderRef.file.ref = FILE\n"
            "logger.clients.name = org.apache.kafka.clients\nlogger.clients.level = warn\n"
        )
        asyncio.run(self._topics(create=True))

    async def _topics(self, create: bool) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap)
        await admin.start()
        try:
            if create:
                await admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in self.topics()])
            else:
                names = [t for t in await admin.list_topics() if t.startswith((self.prefix, f"dbzbench{self.uid}"))]
                if names:
                    await admin.delete_topics(names)
        finally:
            await admin.close()

    def topics(self) -> list[str]:
        return [self.prefix + a for a in AGGREGATES]

    def start(self) -> None:
        cmd = [
            "java",
            "-Xms1g",
            "-Xmx2g",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile=file:{self.dir / 'log4j2.properties'}",
            "-cp",
            f"{self.connect_jars}/*",
            "org.apache.kafka.connect.cli.ConnectStandalone",
            str(self.worker_file),
            str(self.connector_file),
        ]
        with open(self.dir / "stdout.log", "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        """SIGTERM; Connect 4.1.1 with this connector sometimes never exits after its shutdown hook ran (Jetty
        'Unable to destroy ... STARTED'), so after 20 s it is killed. Offsets are flushed every second anyway, and
        what a kill replays is a warm-up row, which the count ignores."""
        proc = self.proc
        if proc is None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            self.killed += 1

    def log_tail(self) -> str:
        text = ""
        for name in ("connect.log", "stdout.log"):
            path = self.dir / name
            if path.exists():
                text += path.read_text(errors="replace")[-3000:]
        return text

    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        with self.admin.begin() as conn:
            conn.execute(sa.text(f"DROP USER IF EXISTS '{self.user}'@'{self.settings.mysql_grant_host}'"))
        asyncio.run(self._topics(create=False))
        shutil.rmtree(self.dir, ignore_errors=True)


# -- one measured drain ----------------------------------------------------------------------------------------------


def _tree_cpu_s(pid: int) -> float:
    total = 0.0
    for p in (pid, *child_pids(pid)):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


@dataclass(frozen=True)
class Result:
    rate: float
    cpu_us: float
    rss_mb: float
    seen: int
    distinct: int
    insert_rate: float


def measure(side: Side, engine: sa.Engine, settings: Settings, rows: int, txn: int, writers: int, tag: str) -> Result:
    counter = Counter(settings.kafka_bootstrap, side.topics(), side.id_header)
    try:
        side.start()
        # A row committed before the side reads the binlog is never published (both start at the current end):
        # one warm-up row every 5 s until one arrives.
        deadline, last_id = time.monotonic() + WARMUP_TIMEOUT_S, 0
        while True:
            last_id = warm_up_row(engine, tag)
            counter.request(1, 5)
            if counter.result(30)[0] >= 1:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{side.name} published no warm-up row in {WARMUP_TIMEOUT_S} s")
        side.stop()
        insert_rate = insert(engine, 1, rows, txn, writers, tag)
        counter.request(rows, 1800, last_id + 1)
        side.start()
        samples: list[tuple[float, float, float]] = []  # (unix time, cpu s, rss MB)
        while not counter.here.poll(0.05):
            samples.append((time.time(), _tree_cpu_s(side.pid()), rss_mb(side.pid(), with_children=True) or 0.0))
        seen, distinct, first, last = counter.result(10)
        side.stop()
    finally:
        counter.close()
    if seen < rows:
        raise RuntimeError(f"{side.name}: {seen:,} of {rows:,} records arrived")

    def cpu_at(t: float) -> float:
        before = [s for s in samples if s[0] <= t]
        return before[-1][1] if before else samples[0][1]

    during = [s for s in samples if first <= s[0] <= last] or samples
    cpu = cpu_at(last) - cpu_at(first)
    return Result(
        rate=(rows - 1) / max(last - first, 1e-9),
        cpu_us=cpu / max(rows - 1, 1) * 1e6,
        rss_mb=max(s[2] for s in during),
        seen=seen,
        distinct=distinct,
        insert_rate=insert_rate,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=positive, default=3, help="interleaved runs per shape")
    parser.add_argument(
        "--bulk-rows", type=positive, default=200_000, help="backlog of the 1,000-row transaction shape"
    )
    parser.add_argument("--single-rows", type=positive, default=50_000, help="backlog of the single-row commit shape")
    parser.add_argument("--shapes", default="bulk,single")
    args = parser.parse_args()
    settings = load_settings()
    if settings.mysql_admin_url is None:
        raise SystemExit("TENDERHUB_MYSQL_ADMIN_URL is needed to create the Debezium user (tenderhub stack up sets it)")
    jars = ensure_jars()
    engine = make_engine(settings, pool_size=8)
    admin = sa.create_engine(
        sa.engine.make_url(settings.mysql_admin_url.get_secret_value()).set(drivername="mysql+pymysql")
    )
    shapes = {"bulk": (args.bulk_rows, 1000, 2), "single": (args.single_rows, 1, 8)}
    table: dict[str, dict[str, list[Result]]] = {}
    try:
        for shape in (s.strip() for s in args.shapes.split(",") if s.strip()):
            rows, txn, writers = shapes[shape]
            print(f"{shape}: {rows:,} rows in {txn}-row transactions from {writers} writers, {args.runs} run(s)")
            for run in range(args.runs):
                order: list[Callable[[str], Side]] = [
                    lambda uid: RelaySide(settings, uid),
                    lambda uid: DebeziumSide(settings, uid, admin, jars),
                ]
                for make in order if run % 2 == 0 else order[::-1]:
                    uid = uuid.uuid4().hex[:10]
                    side = make(uid)
                    try:
                        r = measure(side, engine, settings, rows, txn, writers, uid)
                    finally:
                        side.close()
                    table.setdefault(shape, {}).setdefault(side.name, []).append(r)
                    print(
                        f"  run {run + 1} {side.name:>8}: {r.rate:>8,.0f} rows/s | CPU {r.cpu_us:6.1f} us/row | RSS "
                        f"{r.rss_mb:5.0f} MB | {r.seen:,} records, {r.distinct:,} distinct ids | source insert "
                        f"{r.insert_rate:,.0f} rows/s",
                        flush=True,
                    )
    finally:
        engine.dispose()
        admin.dispose()
    print(
        "\n| shape | relay rows/s | Debezium rows/s | ratio | CPU us/row relay / Debezium | RSS MB relay / Debezium |"
    )
    print("|---|---|---|---|---|---|")
    for shape, sides in table.items():
        if len(sides) < 2:
            continue

        def med(name: str, field: str, results: dict[str, list[Result]] = sides) -> float:
            return statistics.median(getattr(r, field) for r in results[name])

        relay, dbz = med("relay", "rate"), med("debezium", "rate")
        print(
            f"| {shapes[shape][0]:,} rows, {shape} (median of {len(sides['relay'])}) | {relay:,.0f} | {dbz:,.0f} | "
            f"{relay / dbz:.2f} | {med('relay', 'cpu_us'):.0f} / {med('debezium', 'cpu_us'):.0f} | "
            f"{med('relay', 'rss_mb'):.0f} / {med('debezium', 'rss_mb'):.0f} |"
        )


if __name__ == "__main__":
    main()
