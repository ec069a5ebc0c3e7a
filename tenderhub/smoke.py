"""A smoke run through every service, as the pipeline's components will use them.

Each check uses the real client library and the least-privileged account that the component will run as, and
raises `SmokeError` with what went wrong. Everything a check creates carries a unique name and is removed after.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pymysql
from pymongo import MongoClient
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.row_event import WriteRowsEvent

from schema.kafka_client import kafka_options
from schema.mysql import connect
from schema.settings import Settings


class SmokeError(Exception):
    """A service did not behave as the pipeline needs."""


@dataclass(frozen=True)
class CheckResult:
    name: str
    detail: str
    seconds: float


def binlog_position(settings: Settings) -> tuple[str, int]:
    """Current binlog file and position, read as the relay user (needs BINLOG MONITOR / REPLICATION CLIENT)."""
    with connect(settings.relay_mysql) as conn, conn.cursor() as cur:
        try:
            cur.execute("SHOW BINARY LOG STATUS")
        except pymysql.err.ProgrammingError:
            # MariaDB 10.11 and MySQL < 8.2 only know the old spelling; MySQL 8.4 removed it.
            cur.execute("SHOW MASTER STATUS")
        row = cur.fetchone()
    if not row:
        raise SmokeError("binary logging is off: the server printed no binlog status")
    return str(row[0]), int(row[1])


def binlog_bytes(settings: Settings) -> int:
    """The size of every binlog file of the server (its admin account): what a change costs the binlog."""
    with connect(settings.mysql_admin) as conn, conn.cursor() as cur:
        cur.execute("SHOW BINARY LOGS")
        return sum(int(row[1]) for row in cur.fetchall())


def check_mysql_binlog(settings: Settings) -> str:
    """Insert an outbox row as the app user and read its WriteRowsEvent back as the relay user."""
    file, pos = binlog_position(settings)
    marker = f"smoke-{uuid.uuid4().hex}"
    with connect(settings.mysql, settings.mysql.database) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO integration_outbox (event_type, aggregate_type, aggregate_id, payload) "
            "VALUES ('system.heartbeat', 'system', '1', %s)",
            (json.dumps({"origin": "smoke", "marker": marker}),),
        )
        row_id = cur.lastrowid
    relay = settings.relay_mysql
    stream = BinLogStreamReader(
        connection_settings={**relay.pymysql_kwargs(), "connect_timeout": 10, "read_timeout": 30, "write_timeout": 30},
        server_id=4_000_000 + (uuid.uuid4().int % 100_000),
        only_events=[WriteRowsEvent],
        only_schemas=[relay.database],
        only_tables=["integration_outbox"],
        log_file=file,
        log_pos=pos,
        resume_stream=True,
        blocking=False,
        # With is_mariadb=True and no GTID auto_position the library sends an empty file name and position 4,
        # i.e. it replays the whole binlog. MariaDB also serves the classic file/position dump, so use that.
        is_mariadb=False,
    )
    try:
        for event in stream:
            for row in event.rows:
                values = row["values"]
                if values["id"] == row_id:
                    payload = values["payload"]
                    text = payload if isinstance(payload, str) else json.dumps(payload)
                    if marker not in text:
                        raise SmokeError(f"binlog row {row_id} has an unexpected payload {text[:200]}")
                    return f"outbox row {row_id} read back from binlog {file}:{pos}+ as {relay.user}"
    finally:
        stream.close()
    raise SmokeError(f"outbox row {row_id} was committed but not found in the binlog after {file}:{pos}")


async def check_kafka_transaction(settings: Settings) -> str:
    """Produce inside a Kafka transaction; a read_committed consumer sees the committed record only."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient

    from schema.topics import TopicSpec, ensure_topics

    topic = f"{settings.topic_prefix}smoke.{uuid.uuid4().hex[:12]}"
    await ensure_topics(settings, [TopicSpec(topic, 1)])
    producer = AIOKafkaProducer(
        **kafka_options(settings),
        transactional_id=f"tenderhub-smoke-{uuid.uuid4().hex}",
        enable_idempotence=True,
    )
    consumer = AIOKafkaConsumer(
        topic,
        **kafka_options(settings),
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await producer.start()
    try:
        await producer.begin_transaction()
        await producer.send_and_wait(topic, b"aborted", key=b"k")
        await producer.abort_transaction()
        await producer.begin_transaction()
        await producer.send_and_wait(topic, b"committed", key=b"k")
        await producer.commit_transaction()
    finally:
        await producer.stop()
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=10_000)
        values = [r.value for records in batch.values() for r in records]
    finally:
        await consumer.stop()
        admin = AIOKafkaAdminClient(**kafka_options(settings))
        await admin.start()
        try:
            await admin.delete_topics([topic])
        finally:
            await admin.close()
    if values != [b"committed"]:
        raise SmokeError(f"read_committed consumer saw {values!r}, expected only the committed record")
    return "transactional produce -> read_committed consume: aborted record hidden, committed record seen"


def check_mongo_capped(settings: Settings) -> str:
    """Create a capped collection on the MongoDB-wire store, write and read it back."""
    client: MongoClient[dict[str, object]] = MongoClient(
        settings.mongo_url.get_secret_value(), serverSelectionTimeoutMS=5000
    )
    name = f"smoke_{uuid.uuid4().hex[:12]}"
    db = client[settings.mongo_db]
    try:
        coll = db.create_collection(name, capped=True, size=1024 * 1024, max=100)
        coll.insert_many([{"_id": i, "n": i} for i in range(10)])
        if not coll.options().get("capped"):
            raise SmokeError(f"collection {name} was created but is not capped: {coll.options()}")
        docs = list(coll.find({}, sort=[("_id", 1)]))
        if [d["n"] for d in docs] != list(range(10)):
            raise SmokeError(f"capped collection {name} returned {docs!r}")
        version = client.server_info().get("version")
        return f"capped collection written and read back (server reports MongoDB {version})"
    finally:
        db.drop_collection(name)
        client.close()


def check_redis_ttl(settings: Settings) -> str:
    from sinks.redis import sync_client

    client = sync_client(settings, socket_timeout=5)
    key = f"smoke:{uuid.uuid4().hex}"
    try:
        client.set(key, "ok", ex=60)
        value, ttl = client.get(key), client.ttl(key)
        if value != b"ok" or not 0 < int(ttl) <= 60:
            raise SmokeError(f"redis returned value={value!r} ttl={ttl!r} for {key}")
        return f"SET EX 60 -> GET ok, TTL {ttl}s"
    finally:
        client.delete(key)
        client.close()


def run_all(settings: Settings, progress: Callable[[str], None]) -> list[CheckResult]:
    checks: list[tuple[str, Callable[[], str]]] = [
        ("mysql binlog", lambda: check_mysql_binlog(settings)),
        ("kafka transaction", lambda: asyncio.run(check_kafka_transaction(settings))),
        ("ferretdb capped", lambda: check_mongo_capped(settings)),
        ("redis ttl", lambda: check_redis_ttl(settings)),
    ]
    results = []
    for name, check in checks:
        start = time.monotonic()
        detail = check()
        results.append(CheckResult(name, detail, time.monotonic() - start))
        progress(f"  ok  {name:<18} {detail} ({time.monotonic() - start:.2f} s)")
    return results
