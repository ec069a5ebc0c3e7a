"""`tenderhub status`: the pipeline at a glance, from the services themselves (no process of the pipeline needs to
run): the relay's committed position and how far MySQL is ahead of it, the workers' consumer lag per partition, the
DLQ with its latest reasons, and the health of every store.

Every part is probed on its own with a time limit: a store that is down is reported as down (and makes the command
exit 1), never a traceback, and the other parts are still shown.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import redis
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from pymongo import MongoClient

from cdc.publisher import load_position_record, max_published_header
from schema.kafka_client import kafka_options
from schema.mysql import OUTBOX_TABLE, connect
from schema.settings import Settings
from schema.topics import TopicNames, topic_partitions
from sinks.redis import sync_client

T = TypeVar("T")

# Each probe's time limit: a service that does not answer within it is down as far as an operator is concerned.
PROBE_TIMEOUT_S = 15.0
LAG_PART = "consumer lag"
# Dead letters quoted with their reasons.
LATEST_DEAD_LETTERS = 5
_REASON_CHARS = 160


@dataclass(frozen=True)
class StoreHealth:
    name: str
    ok: bool
    detail: str
    ms: float


@dataclass(frozen=True)
class RelayStatus:
    position: str | None  # the committed position (None: the relay never committed one)
    committed_at: str | None  # when it was committed (UTC, ISO 8601)
    last_event_id: int  # the highest outbox id in Kafka (-1: none)
    # Outbox rows above that id, and the age of the oldest of them in ms (0: none). Outbox ids grow in insert
    # order, not quite in commit order, so this is what an operator needs, not an exact count.
    unpublished: int | None
    lag_ms: float | None


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int | None  # the workers' committed offset (None: the group never committed on this partition)
    end: int  # the last stable offset (read_committed)
    lag: int


@dataclass(frozen=True)
class DeadLetterSummary:
    offset: int
    at: str
    stage: str  # "relay" (the outbox row broke the contract or was too large) or "worker"
    agent: str | None
    event_id: int | None
    reason: str


@dataclass
class Status:
    stores: list[StoreHealth] = field(default_factory=list)
    relay: RelayStatus | None = None
    consumer_lag: list[PartitionLag] = field(default_factory=list)
    dlq_count: int | None = None
    dlq_latest: list[DeadLetterSummary] = field(default_factory=list)
    # Parts that could not be read, with the reason (their store is down, or a timeout).
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return all(s.ok for s in self.stores) and not self.errors

    @property
    def consumer_lag_total(self) -> int | None:
        """The workers' lag in events, or None when it could not be read (never a 0 an alert would take for "none")."""
        return None if LAG_PART in self.errors else sum(p.lag for p in self.consumer_lag)

    def to_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "stores": [asdict(s) for s in self.stores],
            "relay": None if self.relay is None else asdict(self.relay),
            "consumer_lag": {
                "total": self.consumer_lag_total,
                "partitions": [asdict(p) for p in self.consumer_lag],
            },
            "dlq": {"count": self.dlq_count, "latest": [asdict(d) for d in self.dlq_latest]},
            "errors": self.errors,
        }

    def render(self) -> str:
        out = ["stores:"]
        for s in self.stores:
            out.append(f"  {s.name:<8} {'ok  ' if s.ok else 'DOWN'} {s.ms:7.1f} ms  {s.detail}")
        out.append("relay:")
        if self.relay is not None:
            r = self.relay
            out.append(f"  position       {r.position or '(none committed yet)'}")
            out.append(f"  committed at   {r.committed_at or '-'}")
            out.append(f"  last event id  {r.last_event_id if r.last_event_id >= 0 else '(none in Kafka)'}")
            if r.unpublished is not None:
                lag = f"{r.lag_ms:,.0f} ms" if r.lag_ms is not None else "-"
                out.append(f"  behind         {r.unpublished:,} outbox rows, the oldest waiting {lag}")
        total = self.consumer_lag_total
        out.append(f"consumer lag (workers): {'unknown (see ERROR)' if total is None else f'{total:,} events'}")
        for p in self.consumer_lag:
            committed = "never committed" if p.committed is None else f"committed {p.committed:,}"
            out.append(f"  {p.topic}[{p.partition}]  lag {p.lag:,}  ({committed}, end {p.end:,})")
        out.append(f"DLQ: {'-' if self.dlq_count is None else f'{self.dlq_count:,}'} dead letters")
        for d in self.dlq_latest:
            who = d.stage + (f"/{d.agent}" if d.agent else "")
            out.append(f"  @{d.offset} {d.at} {who} event {d.event_id}: {d.reason}")
        for part, reason in self.errors.items():
            out.append(f"ERROR {part}: {reason}")
        out.append("healthy" if self.healthy else "NOT HEALTHY")
        return "\n".join(out)


async def gather_status(settings: Settings) -> Status:
    """Probe every part at once; each within PROBE_TIMEOUT_S."""
    status = Status()
    topics = TopicNames.from_settings(settings)
    stores, relay, lag, dlq = await asyncio.gather(
        _stores(settings),
        _part(status, "relay", _relay(settings, topics)),
        _part(status, LAG_PART, _consumer_lag(settings, topics)),
        _part(status, "dlq", _dlq(settings, topics)),
    )
    status.stores = stores
    status.relay = relay
    status.consumer_lag = lag or []
    if dlq is not None:
        status.dlq_count, status.dlq_latest = dlq
    return status


async def _part(status: Status, name: str, probe: Awaitable[T]) -> T | None:
    try:
        return await asyncio.wait_for(probe, PROBE_TIMEOUT_S)
    except TimeoutError:
        status.errors[name] = f"no answer within {PROBE_TIMEOUT_S:.0f} s"
    except Exception as exc:  # noqa: BLE001 - reported in the output and the exit status, never hidden
        status.errors[name] = f"{type(exc).__name__}: {str(exc)[:300]}"
    return None


# -- stores ---------------------------------------------------------------------------------------------------------


async def _stores(settings: Settings) -> list[StoreHealth]:
    probes: list[tuple[str, Callable[[], Awaitable[str]]]] = [
        ("mysql", lambda: asyncio.to_thread(_mysql, settings)),
        ("kafka", lambda: _kafka(settings)),
        ("mongodb", lambda: asyncio.to_thread(_mongo, settings)),
        ("redis", lambda: asyncio.to_thread(_redis, settings)),
    ]
    return list(await asyncio.gather(*(_health(name, probe) for name, probe in probes)))


async def _health(name: str, probe: Callable[[], Awaitable[str]]) -> StoreHealth:
    started = time.perf_counter()
    try:
        detail = await asyncio.wait_for(probe(), PROBE_TIMEOUT_S)
        ok = True
    except TimeoutError:
        detail, ok = f"no answer within {PROBE_TIMEOUT_S:.0f} s", False
    except Exception as exc:  # noqa: BLE001 - a store that is down is what this probe reports
        detail, ok = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}", False
    return StoreHealth(name, ok, detail, (time.perf_counter() - started) * 1000)


def _mysql(settings: Settings) -> str:
    with connect(settings.relay_mysql, connect_timeout=PROBE_TIMEOUT_S) as conn, conn.cursor() as cur:
        cur.execute("SELECT VERSION()")
        row = cur.fetchone()
    return f"server {row[0] if row else '?'}"


async def _kafka(settings: Settings) -> str:
    admin = AIOKafkaAdminClient(**kafka_options(settings), request_timeout_ms=10_000)
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
    finally:
        await admin.close()
    return f"{len(cluster.get('brokers', []))} broker(s), controller {cluster.get('controller_id')}"


def _mongo(settings: Settings) -> str:
    client: MongoClient[dict[str, Any]] = MongoClient(
        settings.mongo_url.get_secret_value(), serverSelectionTimeoutMS=int(PROBE_TIMEOUT_S * 1000)
    )
    try:
        info = client.admin.command("buildInfo")
    finally:
        client.close()
    return f"server {info.get('version', '?')}"


def _redis(settings: Settings) -> str:
    client = sync_client(settings, socket_timeout=PROBE_TIMEOUT_S, socket_connect_timeout=PROBE_TIMEOUT_S)
    try:
        if isinstance(client, redis.RedisCluster):
            node = client.get_default_node()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
            info: dict[str, Any] = client.info("server", target_nodes=node)
            cluster = client.cluster_info(target_nodes=node)
            return (
                f"server {info.get('redis_version', '?')}, cluster {cluster.get('cluster_state', '?')}: "
                f"{cluster.get('cluster_size', '?')} masters, {cluster.get('cluster_known_nodes', '?')} nodes"
            )
        info = client.info("server")
    finally:
        client.close()
    return f"server {info.get('redis_version', '?')}"


# -- relay ----------------------------------------------------------------------------------------------------------


async def _relay(settings: Settings, topics: TopicNames) -> RelayStatus:
    position, at_ms = await load_position_record(settings, topics.position, settings.relay_source_name)
    # Every outbox row ends on a data topic or the DLQ, each record carrying its outbox id as the event_id header.
    last = await max_published_header(settings, [*sorted(set(topics.data.values())), topics.dlq], "event_id", tail=16)
    unpublished, lag_ms = await asyncio.to_thread(_outbox_after, settings, last)
    committed_at = (
        None if at_ms is None else dt.datetime.fromtimestamp(at_ms / 1000, dt.UTC).isoformat(timespec="milliseconds")
    )
    return RelayStatus(
        position=None if position is None else position.describe(),
        committed_at=committed_at,
        last_event_id=last,
        unpublished=unpublished,
        lag_ms=lag_ms,
    )


def _outbox_after(settings: Settings, last_id: int) -> tuple[int, float | None]:
    """Outbox rows above `last_id`, and how long the first of them (by id: insert order) has waited in ms (0: no row
    waits; None: its created_at is no valid time, which the relay dead-letters)."""
    with connect(settings.relay_mysql, settings.relay_mysql.database) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT COUNT(*) FROM `{OUTBOX_TABLE}` WHERE id > %s", (max(last_id, 0),))
        row = cur.fetchone()
        count = int(row[0]) if row else 0
        if not count:
            return 0, 0.0
        cur.execute(
            f"SELECT created_at, TIMESTAMPDIFF(MICROSECOND, created_at, CURRENT_TIMESTAMP(3)) "
            f"FROM `{OUTBOX_TABLE}` WHERE id > %s ORDER BY id LIMIT 1",
            (max(last_id, 0),),
        )
        first = cur.fetchone()
    if first is None or first[0] is None or first[1] is None:
        return count, None
    return count, max(float(first[1]), 0.0) / 1000


# -- the workers' consumer lag ------------------------------------------------------------------------------------


async def _consumer_lag(settings: Settings, topics: TopicNames) -> list[PartitionLag]:
    admin = AIOKafkaAdminClient(**kafka_options(settings), request_timeout_ms=10_000)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(settings.worker_group)
    finally:
        await admin.close()
    tps = await topic_partitions(settings, sorted(set(topics.data.values())))
    consumer = AIOKafkaConsumer(**kafka_options(settings), isolation_level="read_committed", enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps) if tps else {}
        begins = await consumer.beginning_offsets(tps) if tps else {}
    finally:
        await consumer.stop()
    out = []
    for tp in sorted(tps):
        meta = committed.get(tp)
        offset = meta.offset if meta is not None and meta.offset >= 0 else None
        lag = ends[tp] - (offset if offset is not None else begins[tp])
        out.append(PartitionLag(tp.topic, tp.partition, offset, ends[tp], max(lag, 0)))
    return out


# -- the DLQ --------------------------------------------------------------------------------------------------------


async def _dlq(settings: Settings, topics: TopicNames) -> tuple[int, list[DeadLetterSummary]]:
    from tenderhub.dlq import DlqReader  # the DLQ's reader lives with its command

    async with DlqReader(settings, topics.dlq) as reader:
        count = await reader.count()
        letters = await reader.read(last=LATEST_DEAD_LETTERS)
    return count, [
        DeadLetterSummary(
            offset=letter.offset,
            at=letter.at,
            stage=letter.stage,
            agent=letter.agent,
            event_id=letter.event_id,
            reason=letter.reason[:_REASON_CHARS],
        )
        for letter in letters
    ]


def render_json(status: Status) -> str:
    return json.dumps(status.to_dict(), indent=2, ensure_ascii=False)
