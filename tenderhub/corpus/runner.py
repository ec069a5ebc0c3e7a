"""Run the corpus against a relay and a worker (every agent) of its own namespace, both ways, and judge it.

Per group of cases: the outbox rows (the application account: the writer where the contract allows the row, a raw
INSERT otherwise), a canary through the outbox, the topic records (a plain producer, past the relay), then a canary
on every partition of every data topic; the group passes its flow check once all canaries are stored. Meanwhile a
thread times the worker's web view (/tenderhub/agents/) every 100 ms: the worker has no loop-lag gauge of its own,
and the view answers from the same event loop as the agents, so its latency bounds how long the loop was held.
At the end: where each send went, the worker's and relay's liveness, and a scan of the namespace's MongoDB database
and Redis keys for anything written where it should not be.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pymongo import MongoClient
from pymongo.database import Database

from cdc.outbox import make_engine, write_event
from schema.kafka_client import kafka_options
from schema.mongo import READINESS_SCORES, TENDER_SUMMARIES, USER_ACTIVITY_LOGS, ensure_collections
from schema.redis_keys import READINESS_COMPANIES
from schema.settings import Settings
from schema.topics import TopicNames, delete_topics, ensure_topics, topic_specs
from sinks.redis import SyncClient, sync_client
from tenderhub.corpus.cases import CASES, MISMATCH, Case, CaseIds, Outcome, Stored, Way, activity, company, tender
from tenderhub.corpus.checks import Letter, Observed, harmful_documents, harmful_keys, verdict
from tenderhub.corpus.sending import OutboxRow, case_ids, outbox_row, topic_record
from tenderhub.demo import namespace_env
from tenderhub.processes import Child, Relay, Worker

log = logging.getLogger(__name__)
Say = Callable[[str], None]

AS_OF = dt.date(2026, 1, 5)
PROBE_INTERVAL_S = 0.1
CANARY_TIMEOUT_S = 120.0
# Dead letters of the last group may land after its canaries (other partitions): this long for the stragglers.
LETTERS_TIMEOUT_S = 60.0
PRODUCER_MAX_REQUEST = 4 * 1024 * 1024  # above the topics' limit: the broker, not the client, refuses


def corpus_namespace(settings: Settings, run: str) -> Settings:
    """Topics, consumer group, MongoDB database, Redis prefix and relay source of this run only."""
    return settings.model_copy(
        update={
            "topic_prefix": f"corpus.{run}.",
            "topic_map": {},
            "mongo_db": f"corpus_{run}",
            "redis_key_prefix": f"corpus:{run}:",
            "worker_group": f"tenderhub-corpus-{run}",
            "relay_source_name": f"corpus-{run}",
            "relay_server_id": 4_500_000 + int(run, 16) % 400_000,
            "as_of": AS_OF,
        }
    )


@dataclass
class Send:
    case: Case
    way: Way
    ids: CaseIds
    sent_by: str
    event_id: int | None = None  # outbox id, or the envelope's event_id on the topic way
    origin: tuple[str, int, int] | None = None  # topic, partition, offset (topic way)
    seen: Observed = field(default_factory=Observed)
    problem: str | None = None


@dataclass
class GroupResult:
    name: str
    sends: int
    canaries: int
    flowed: bool
    canary_wait_s: float
    worst_lag_ms: float


@dataclass
class CorpusResult:
    run: str
    started: dt.datetime
    duration_s: float
    sends: list[Send]
    groups: list[GroupResult]
    crashes: list[str]
    stalls: list[str]
    harmful: list[str]
    worst_lag_ms: float
    lag_samples: int
    agent_stats: dict[str, dict[str, float]]
    foreign_letters: int

    @property
    def mismatches(self) -> list[Send]:
        return [s for s in self.sends if s.problem is not None]

    @property
    def passed(self) -> bool:
        return not (self.crashes or self.stalls or self.harmful or self.mismatches)


class LagProbe(threading.Thread):
    """Times GET /tenderhub/agents/ on the worker every PROBE_INTERVAL_S; an unanswered request counts as its
    timeout."""

    def __init__(self, port: int) -> None:
        super().__init__(name="corpus-lag-probe", daemon=True)
        self.url = f"http://127.0.0.1:{port}/tenderhub/agents/"
        self.samples: list[tuple[float, float]] = []  # (monotonic time, latency ms)
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            started = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=10) as resp:  # noqa: S310 - our own local worker
                    resp.read()
            except OSError as exc:
                log.warning("lag probe: %s did not answer: %s", self.url, exc)
            self.samples.append((started, (time.monotonic() - started) * 1000))
            self._stop_event.wait(PROBE_INTERVAL_S)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(15)

    def worst_since(self, since: float) -> float:
        return max((ms for at, ms in self.samples if at >= since), default=0.0)


class CorpusRun:
    def __init__(self, settings: Settings, say: Say, stack_dir: Path, cases: tuple[Case, ...] = CASES) -> None:
        self.run_id = uuid.uuid4().hex[:10]
        self.settings = corpus_namespace(settings, self.run_id)
        self.say = say
        self.stack_dir = stack_dir
        self.cases = cases
        self.names = TopicNames.from_settings(self.settings)
        # Aggregate ids far above real ones and below 2^53; topic-way event ids in a range of their own.
        slot = int(self.run_id, 16) % 10**6
        self.base = 6_000_000_000_000 + slot * 10**4
        self.event_base = 8_000_000_000_000 + slot * 10**4
        self.canary_base = self.base + 9_000
        self.next_canary = 0
        self.sends: list[Send] = []
        self.letters: list[dict[str, Any]] = []
        self.partitions: dict[str, int] = {}

    # -- namespace and processes -------------------------------------------------------------------------------

    async def prepare(self) -> None:
        await ensure_topics(self.settings, topic_specs(self.settings))
        with self._mongo() as client:
            ensure_collections(client[self.settings.mongo_db], self.settings)

    async def cleanup(self) -> None:
        await delete_topics(self.settings, [self.settings.topic_prefix])
        with self._mongo() as client:
            client.drop_database(self.settings.mongo_db)
        r = self._redis()
        try:
            keys = list(r.scan_iter(match=f"{self.settings.redis_key_prefix}*", count=1000))
            for start in range(0, len(keys), 500):
                r.delete(*keys[start : start + 500])
        finally:
            r.close()

    def _mongo(self) -> MongoClient[dict[str, Any]]:
        return MongoClient(self.settings.mongo_url.get_secret_value(), serverSelectionTimeoutMS=10000)

    def _redis(self) -> SyncClient:
        return sync_client(self.settings, socket_timeout=10)

    def _env(self) -> dict[str, str]:
        return {**os.environ, **namespace_env(self.settings), "TENDERHUB_RELAY_HEARTBEAT_S": "1"}

    def start_relay(self) -> Relay:
        relay = Relay("relay", ["--from-now"], self._env(), self.stack_dir / f"corpus-{self.run_id}-relay.log")
        relay.start().wait_tailing(60)
        self.say(f"  relay started (pid {relay.pid}, log {relay.log_path})")
        return relay

    def start_worker(self) -> Worker:
        worker = Worker("worker", [], self._env(), self.stack_dir / f"corpus-{self.run_id}-worker.log")
        worker.start().wait_log("Worker ready", 120)
        self.say(f"  worker started (pid {worker.pid}, log {worker.log_path})")
        return worker

    # -- sending -----------------------------------------------------------------------------------------------

    def send_outbox(self, engine: sa.Engine, index: int, case: Case) -> Send:
        ids = case_ids(index, Way.OUTBOX, self.base, f"{self.run_id}/{case.id}")
        row = outbox_row(case, ids)
        allowed = row.contract_allows()
        send = Send(case, Way.OUTBOX, ids, "outbox writer" if allowed else "raw INSERT (app account)")
        try:
            with engine.begin() as conn:
                if allowed:
                    send.event_id = write_event(
                        conn, row.event_type, row.aggregate_id, json.loads(row.payload), row.schema_version
                    )
                else:
                    send.event_id = _insert_raw(conn, row)
        except sa.exc.DBAPIError as exc:
            send.seen.refused = f"MySQL: {exc.orig}"
        return send

    async def send_topic(self, producer: AIOKafkaProducer, index: int, case: Case) -> Send:
        ids = case_ids(index, Way.TOPIC, self.base, f"{self.run_id}/{case.id}")
        event_id = self.event_base + index
        record = topic_record(case, ids, event_id, source_seq=event_id)
        send = Send(case, Way.TOPIC, ids, "producer (past the relay)", event_id=event_id)
        topic = self.names.data[record.aggregate_type]
        try:
            meta = await producer.send_and_wait(topic, record.value, key=record.key)
        except Exception as exc:  # noqa: BLE001 - the broker's refusal is this case's outcome, recorded
            send.seen.refused = f"Kafka: {type(exc).__name__}: {exc}"
        else:
            send.origin = (topic, meta.partition, meta.offset)
        return send

    # -- canaries ----------------------------------------------------------------------------------------------

    def _canary_ids(self) -> CaseIds:
        self.next_canary += 1
        return CaseIds(self.canary_base + self.next_canary, f"{self.run_id}/canary")

    def outbox_canaries(self, engine: sa.Engine) -> list[tuple[Stored, CaseIds, int]]:
        out = []
        with engine.begin() as conn:
            for kind, event_type, build in _CANARIES:
                ids = self._canary_ids()
                out.append((kind, ids, write_event(conn, event_type, ids.entity, build(ids))))
        return out

    async def topic_canaries(self, producer: AIOKafkaProducer) -> list[tuple[Stored, CaseIds, int]]:
        """One canary on every partition of every data topic the agents read: each partition must flow."""
        out = []
        for kind, event_type, build in _CANARIES:
            aggregate = event_type.split(".")[0] if event_type != "user.activity" else "activity"
            topic = self.names.data[aggregate]
            for partition in range(self.partitions[topic]):
                ids = self._canary_ids()
                event_id = self.event_base + 5_000 + self.next_canary
                envelope = {
                    "event_id": event_id,
                    "event_type": event_type,
                    "aggregate_type": aggregate,
                    "aggregate_id": str(ids.entity),
                    "occurred_at": "2026-01-05T10:00:00.000Z",
                    "schema_version": 1,
                    "source_seq": event_id,
                    "payload": build(ids),
                }
                await producer.send_and_wait(
                    topic, json.dumps(envelope).encode(), key=str(ids.entity).encode(), partition=partition
                )
                out.append((kind, ids, event_id))
        return out

    # -- observing ---------------------------------------------------------------------------------------------

    def is_stored(self, kind: Stored, ids: CaseIds, event_id: int | None) -> tuple[bool, str]:
        with self._mongo() as client:
            db = client[self.settings.mongo_db]
            if kind is Stored.ACTIVITY_LOGGED:
                doc = db[USER_ACTIVITY_LOGS.name].find_one({"_id": event_id}, {"_id": 1, "user_id": 1})
                ok = doc is not None and doc.get("user_id") == ids.entity
                return ok, f"log entry {event_id}" if ok else f"no log entry {event_id}"
            if kind is Stored.TENDER_SUMMARISED:
                doc = db[TENDER_SUMMARIES.name].find_one({"tender_id": ids.entity}, {"summary": 1})
                return doc is not None, "summary" if doc is not None else f"no summary of tender {ids.entity}"
            if kind is Stored.NOTHING:
                return _nothing_about(db, ids.entity), "nothing written"
        r = self._redis()
        try:
            key = self.settings.redis_key_prefix + READINESS_COMPANIES.key()
            ok = bool(r.hexists(key, str(ids.entity)))
        finally:
            r.close()
        return ok, "readiness facts" if ok else f"no readiness facts of team {ids.entity}"

    def wait_canaries(self, canaries: list[tuple[Stored, CaseIds, int]], worker: Child, relay: Child) -> bool:
        deadline = time.monotonic() + CANARY_TIMEOUT_S
        pending = list(canaries)
        while pending and time.monotonic() < deadline and worker.alive() and relay.alive():
            pending = [c for c in pending if not self.is_stored(*c)[0]]
            if pending:
                time.sleep(0.25)
        return not pending

    async def collect_letters(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            self.names.dlq,
            **kafka_options(self.settings),
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
            fetch_max_bytes=16 * 1024 * 1024,
            max_partition_fetch_bytes=16 * 1024 * 1024,
        )
        await consumer.start()
        try:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=300)
                for records in batch.values():
                    for r in records:
                        self.letters.append(json.loads(r.value or b"null") or {})
        finally:
            await consumer.stop()

    def attach_letters(self) -> int:
        """Give every dead letter to its send; return how many belong to nobody here (other producers' rows)."""
        by_event: dict[tuple[bool, Any], Send] = {
            (s.way is Way.OUTBOX, s.event_id): s for s in self.sends if s.event_id is not None
        }
        by_origin: dict[Any, Send] = {s.origin: s for s in self.sends if s.origin is not None}
        for s in self.sends:
            s.seen.letters.clear()
        foreign = 0
        for value in self.letters:
            reason = str(value.get("reason", ""))
            if value.get("stage") == "worker":
                o = value.get("origin") or {}
                send = by_origin.get((o.get("topic"), o.get("partition"), o.get("offset")))
                if send is None:
                    send = by_event.get((True, value.get("event_id")))
                letter = Letter("worker", str(value.get("agent")), reason)
            else:
                send = by_event.get((True, value.get("event_id")))
                letter = Letter("relay", None, reason)
            if send is None:
                foreign += 1
            else:
                send.seen.letters.append(letter)
        return foreign

    def expected_letters_in(self) -> bool:
        return all(
            s.seen.letters
            for s in self.sends
            if s.case.expect(s.way).outcome is Outcome.DLQ and not s.seen.refused  # type: ignore[union-attr]
        )

    def scan_harm(self) -> list[str]:
        forbidden: set[int] = set()
        for s in self.sends:
            expect = s.case.expect(s.way)
            if expect is not None and expect.outcome is not Outcome.STORED:
                forbidden.update((s.ids.entity, s.ids.entity + MISMATCH))  # the id a mismatch case names too
                if s.event_id is not None:
                    forbidden.add(s.event_id)
        problems: list[str] = []
        with self._mongo() as client:
            db = client[self.settings.mongo_db]
            for name in db.list_collection_names():
                problems += harmful_documents(name, db[name].find({}), forbidden)
        prefix = self.settings.redis_key_prefix
        r = self._redis()
        try:
            # The spend store's rebuilds write `{full key}:tmp:...` keys: one left behind is outside the catalogue.
            keys = [_text(k) for k in r.scan_iter(match=f"{prefix}*", count=1000)]
            keys += [_text(k) for k in r.scan_iter(match=f"{{{prefix}*", count=1000)]
            fields = {k: [_text(f) for f in r.hkeys(k)] for k in keys if r.type(k) == b"hash"}
            problems += harmful_keys(prefix, keys, fields, forbidden)
            # Keys anywhere in Redis that an injected id would have made (outside any prefix check).
            for fragment in ("*1:\\**", "*1 2*", "*FLUSHALL*", "*{x}1*"):
                problems += [f"Redis key {_text(k)[:80]!r} in the server" for k in r.scan_iter(match=fragment)]
        finally:
            r.close()
        return problems

    # -- the run -----------------------------------------------------------------------------------------------

    async def execute(self) -> CorpusResult:
        started_at = dt.datetime.now(dt.UTC)
        t0 = time.monotonic()
        await self.prepare()
        relay = self.start_relay()
        worker = self.start_worker()
        probe = LagProbe(worker.port)
        probe.start()
        engine = make_engine(self.settings, pool_size=2)
        producer = AIOKafkaProducer(**kafka_options(self.settings), max_request_size=PRODUCER_MAX_REQUEST, acks="all")
        await producer.start()
        stop = asyncio.Event()
        collector = asyncio.create_task(self.collect_letters(stop))
        groups: list[GroupResult] = []
        stalls: list[str] = []
        crashes: list[str] = []
        try:
            for topic in self.names.data.values():
                self.partitions[topic] = len(await producer.partitions_for(topic))
            order = list(dict.fromkeys(c.group for c in self.cases))
            for group in order:
                g0 = time.monotonic()
                members = [(i, c) for i, c in enumerate(self.cases) if c.group == group]
                canaries: list[tuple[Stored, CaseIds, int]] = []
                for i, case in members:
                    if case.outbox is not None:
                        self.sends.append(await asyncio.to_thread(self.send_outbox, engine, i, case))
                canaries += await asyncio.to_thread(self.outbox_canaries, engine)
                for i, case in members:
                    if case.topic is not None:
                        self.sends.append(await self.send_topic(producer, i, case))
                canaries += await self.topic_canaries(producer)
                c0 = time.monotonic()
                flowed = await asyncio.to_thread(self.wait_canaries, canaries, worker, relay)
                groups.append(
                    GroupResult(
                        group,
                        sum(1 for s in self.sends if s.case.group == group),
                        len(canaries),
                        flowed,
                        time.monotonic() - c0,
                        probe.worst_since(g0),
                    )
                )
                self.say(
                    f"  group {group}: {groups[-1].sends} sends, canaries {'through' if flowed else 'STALLED'} in "
                    f"{groups[-1].canary_wait_s:.1f} s, worst web-view latency {groups[-1].worst_lag_ms:.0f} ms"
                )
                if not flowed:
                    stalls.append(f"group {group}: canaries not stored within {CANARY_TIMEOUT_S:.0f} s")
                if not (worker.alive() and relay.alive()):
                    break
            deadline = time.monotonic() + LETTERS_TIMEOUT_S
            while time.monotonic() < deadline:
                self.attach_letters()
                if self.expected_letters_in():
                    break
                await asyncio.sleep(0.5)
            await asyncio.sleep(2)  # a last look for letters a case should not have had
            stats = worker.stats()
        finally:
            stop.set()
            await collector
            await producer.stop()
            engine.dispose()
            probe.stop()
            for child in (worker, relay):
                if not child.alive():
                    crashes.append(f"the {child.name} exited with code {child.returncode}")
            for child in (worker, relay):
                if child.alive():
                    self.say(f"  stopping the {child.name} (SIGTERM: it finishes what is in flight, then commits)")
                    self.say(f"  {child.name} stopped (exit {child.stop(150)})")
        foreign = self.attach_letters()
        for s in self.sends:
            expect = s.case.expect(s.way)
            assert expect is not None
            if s.seen.refused is None and not s.seen.letters and expect.stored is not None:
                s.seen.stored, s.seen.stored_note = self.is_stored(expect.stored, s.ids, s.event_id)
            elif s.seen.refused is None and not s.seen.letters:
                s.seen.stored, s.seen.stored_note = False, "nothing expected to check"
            s.problem = verdict(expect, s.seen)
        for name, agent in stats.items():
            if agent.get("error_retries", 0):
                stalls.append(f"agent {name} retried unclassified errors {agent['error_retries']:.0f} times")
        return CorpusResult(
            run=self.run_id,
            started=started_at,
            duration_s=time.monotonic() - t0,
            sends=self.sends,
            groups=groups,
            crashes=crashes,
            stalls=stalls,
            harmful=self.scan_harm(),
            worst_lag_ms=max((ms for _, ms in probe.samples), default=0.0),
            lag_samples=len(probe.samples),
            agent_stats=stats,
            foreign_letters=foreign,
        )


def run_corpus(settings: Settings, stack_dir: Path, say: Say, keep: bool = False) -> CorpusResult:
    """Run the whole corpus in a new namespace; its topics, database and keys are removed afterwards unless `keep`."""
    run = CorpusRun(settings, say, stack_dir)
    say(
        f"bad-input corpus: {len(run.cases)} cases, namespace topics {run.settings.topic_prefix}*, MongoDB "
        f"{run.settings.mongo_db!r}, Redis {run.settings.redis_key_prefix}*"
    )
    try:
        return asyncio.run(run.execute())
    finally:
        if not keep:
            asyncio.run(run.cleanup())


# -- helpers -------------------------------------------------------------------------------------------------------

_CANARIES: tuple[tuple[Stored, str, Callable[[CaseIds], dict[str, Any]]], ...] = (
    (Stored.ACTIVITY_LOGGED, "user.activity", activity),
    (Stored.TENDER_SUMMARISED, "tender.created", tender),
    (Stored.COMPANY_KNOWN, "company.updated", company),
)


def _insert_raw(conn: sa.Connection, row: OutboxRow) -> int:
    result = conn.execute(
        sa.text(
            "INSERT INTO integration_outbox (event_type, aggregate_type, aggregate_id, schema_version, payload) "
            "VALUES (:t, :a, :i, :v, :p)"
        ),
        {
            "t": row.event_type,
            "a": row.aggregate_type,
            "i": row.aggregate_id,
            "v": row.schema_version,
            "p": row.payload,
        },
    )
    return int(result.lastrowid)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _nothing_about(db: Database[dict[str, Any]], entity: int) -> bool:
    return all(
        db[name].count_documents({"$or": [{"tender_id": entity}, {"user_id": entity}, {"team_id": entity}]}) == 0
        for name in (TENDER_SUMMARIES.name, READINESS_SCORES.name, USER_ACTIVITY_LOGS.name)
    )
