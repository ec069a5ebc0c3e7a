"""Store-fault injection for agents: fail the Nth store call of a handler, retry as the batch runner does, and check
that the stores end exactly as after a run without the failure (DESIGN.md: "every agent is retry-safe").

How to use it (one call per agent and event mix; see tests/integration/test_agent_retry_safety.py)::

    from tests.integration.store_faults import EnvelopeSpec, assert_retry_safe, envelope

    batches = [[envelope(1, "tender.created", 7, {...}), envelope(2, "company.updated", 3, {...})], [...]]
    report = await assert_retry_safe(settings, ReadinessHandler, batches)
    assert report.clean_calls > 0

`assert_retry_safe(settings, make_handler, batches, *, modes, ignore_fields, max_store_retries)`:
  1. clean run: a fresh namespace (its own MongoDB database and Redis key prefix derived from `settings`), the
     collections created as `tenderhub migrate` does, a `WorkerContext` whose stores count their calls, a handler
     from `make_handler(ctx)` and the real `streams.batch.BatchRunner` (no sleeping) processing `batches` in order.
     Records K = the number of store calls and the final state (`snapshot`): every document of every collection of
     the namespace's database and every Redis key under its prefix, with its value and whether it has a TTL.
  2. for N in 1..K and each mode: a fresh namespace, the same batches, store call N fails once, the runner retries
     as it would in production; then the final state must equal the clean run's, and so must the event ids sent
     to the DLQ. Modes:
       - "before": call N raises `InjectedFault` (a `TransientSinkError`, what a sink raises once its own retries
         are spent) before it reaches the store;
       - "after": the store applies call N, then `InjectedFault` is raised (a reply timeout after a Lua script or a
         bulk write ran);
       - "crash": the store applies call N, then the process "dies" (`SimulatedCrash`, a BaseException that no
         handler or runner catches): the context and the handler are thrown away and a new worker (new context,
         new `make_handler(ctx)`) gets the same batch again, as Kafka redelivers an unacknowledged batch.
  Raises AssertionError naming N, the mode, the failed call and the differing keys/documents. Returns a
  `RetryReport` (K, runs made, the clean state, the calls of the clean run).

Building blocks, usable alone: `FaultPlan` (the call counter and the fault to inject), `faulty_context(settings,
plan)` (a WorkerContext whose `mongo` is a `FaultyMongo`, whose `redis` is a `FaultyRedis`; everything built on the
RedisSink -- `ctx.spend`, `VersionedHash`, `ZsetCas`, locks, CAS hashes -- goes through it, so every Redis round
trip of an agent is one counted call), `Namespace` (settings + clean-up), `snapshot(settings, ignore_fields)`,
`run_batches(ctx, handler, batches)`.

What counts as one store call: each public MongoSink method (`upsert_versioned`, `insert_logs`, `find_by_ids`,
`delete_older`) and each RedisSink operation (`run`, `replace_hash`, `replace_zset`, `cas_hash`, `cas_delete_hash`,
`lock`, `unlock`): exactly what the agent awaits. `ignore_fields` names document fields that legitimately differ between
runs; an ObjectId `_id` is always ignored (documents are then compared as a sorted list), and so are hash fields named
`__gen` (write counters used as concurrency tokens, `TOKEN_FIELDS`; the replay test leaves them out too).
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn, TypeVar

import redis as sync_redis
from bson import ObjectId
from pymongo import MongoClient

from schema.mongo import ensure_collections
from schema.settings import Settings
from sinks.errors import TransientSinkError
from sinks.mongo import AsyncMongoSink, UpsertResult, VersionedDoc
from sinks.redis import HashValue, RedisSink, text
from streams.batch import BatchRunner, DeadLetter, Handler
from streams.context import WorkerContext

Mode = Literal["before", "after", "crash"]
ALL_MODES: tuple[Mode, ...] = ("before", "after", "crash")
T = TypeVar("T")

_TOPIC_OF = {"tender": "tender", "company": "company", "activity": "activity", "system": "system"}
_EVENT_AGGREGATE = {
    "tender.created": "tender",
    "tender.updated": "tender",
    "tender.closed": "tender",
    "company.updated": "company",
    "user.activity": "activity",
}


class InjectedFault(TransientSinkError):
    """The store call failed (before or after the store applied it); the batch runner retries the batch."""


class SimulatedCrash(BaseException):
    """The worker process died at this point: nothing of it may run any more (BaseException: no handler catches it)."""


class NoProgress(BaseException):
    """The runner kept retrying a batch that never succeeds (e.g. a lock nobody will release)."""


class WorkerStopped(BaseException):
    """The runner decided to stop the worker (a store refused it): in production the process exits there."""


def _stop(reason: str) -> NoReturn:
    raise WorkerStopped(reason)


# -- counting stores --------------------------------------------------------------------------------------------


@dataclass
class FaultPlan:
    """Counts store calls across contexts (a crash replaces the context, not the plan) and fails call `fail_at`
    (1-based) once, in `mode`. `fail_at=None` only counts."""

    fail_at: int | None = None
    mode: Mode = "before"
    calls: list[str] = field(default_factory=list)
    fired: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _enter(self, what: str) -> bool:
        """Record the call; True if this is the call to fail."""
        with self._lock:
            self.calls.append(what)
            hit = self.fail_at is not None and self.fired is None and len(self.calls) == self.fail_at
            if hit:
                self.fired = what
            return hit

    def _fail(self, what: str, applied: bool) -> BaseException:
        if self.mode == "crash":
            return SimulatedCrash(f"worker killed after store call {self.fail_at} ({what})")
        when = "after the store applied it" if applied else "before it reached the store"
        return InjectedFault(f"injected fault at store call {self.fail_at} ({what}), {when}")

    async def call(self, what: str, op: Callable[[], Awaitable[T]]) -> T:
        if not self._enter(what):
            return await op()
        if self.mode == "before":
            raise self._fail(what, applied=False)
        await op()
        raise self._fail(what, applied=True)


class FaultyMongo(AsyncMongoSink):
    """An AsyncMongoSink (the worker's) whose public calls go through a FaultPlan."""

    def __init__(self, plan: FaultPlan, url: str, database: str, **options: Any) -> None:
        super().__init__(url, database, **options)
        self.plan = plan

    async def upsert_versioned(
        self, collection: str, docs: Sequence[VersionedDoc], stored: Sequence[Mapping[str, Any]] | None = None
    ) -> UpsertResult:
        return await self.plan.call(
            f"mongo.upsert_versioned {collection} ({len(docs)})",
            lambda: super(FaultyMongo, self).upsert_versioned(collection, docs, stored),
        )

    async def insert_logs(self, collection: str, docs: Sequence[Mapping[str, Any]]) -> int:
        return await self.plan.call(
            f"mongo.insert_logs {collection} ({len(docs)})",
            lambda: super(FaultyMongo, self).insert_logs(collection, docs),
        )

    async def find_by_ids(
        self,
        collection: str,
        field: str,
        ids: Sequence[int],
        fields: Sequence[str],
        *,
        where: Mapping[str, int] | None = None,
    ) -> list[dict[str, Any]]:
        return await self.plan.call(
            f"mongo.find_by_ids {collection}",
            lambda: super(FaultyMongo, self).find_by_ids(collection, field, ids, fields, where=where),
        )

    async def delete_older(self, collection: str, where: Mapping[str, int], field: str, below: int) -> int:
        return await self.plan.call(
            f"mongo.delete_older {collection} {dict(where)} {field} < {below}",
            lambda: super(FaultyMongo, self).delete_older(collection, where, field, below),
        )


class FaultyRedis(RedisSink):
    """A RedisSink whose operations go through a FaultPlan (stores built on it call `run`, counted too)."""

    def __init__(self, plan: FaultPlan, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        self.plan = plan

    async def run(self, op: Callable[[], Awaitable[T]], what: str) -> T:
        return await self.plan.call(f"redis.{what}", lambda: super(FaultyRedis, self).run(op, what))

    async def replace_hash(self, key: str, mapping: Mapping[str, HashValue], ttl_s: int) -> None:
        await self.plan.call(
            f"redis.replace_hash {key}", lambda: super(FaultyRedis, self).replace_hash(key, mapping, ttl_s)
        )

    async def replace_zset(self, key: str, members: Mapping[str, float], ttl_s: int) -> None:
        await self.plan.call(
            f"redis.replace_zset {key}", lambda: super(FaultyRedis, self).replace_zset(key, members, ttl_s)
        )

    async def cas_hash(
        self, key: str, mapping: Mapping[str, HashValue], version_field: str, version: int, ttl_s: int
    ) -> bool:
        return bool(
            await self.plan.call(
                f"redis.cas_hash {key}",
                lambda: super(FaultyRedis, self).cas_hash(key, mapping, version_field, version, ttl_s),
            )
        )

    async def cas_delete_hash(self, key: str, version_field: str, version: int) -> bool:
        return bool(
            await self.plan.call(
                f"redis.cas_delete_hash {key}",
                lambda: super(FaultyRedis, self).cas_delete_hash(key, version_field, version),
            )
        )

    async def lock(self, key: str, token: str, ttl_s: int) -> bool:
        return bool(await self.plan.call(f"redis.lock {key}", lambda: super(FaultyRedis, self).lock(key, token, ttl_s)))

    async def unlock(self, key: str, token: str) -> bool:
        return bool(await self.plan.call(f"redis.unlock {key}", lambda: super(FaultyRedis, self).unlock(key, token)))


def faulty_context(settings: Settings, plan: FaultPlan) -> WorkerContext:
    """A WorkerContext whose MongoDB and Redis sinks (and the spend store built on the latter) count and fail calls."""
    ctx = WorkerContext(settings)
    ctx._mongo = FaultyMongo(
        plan, settings.mongo_url.get_secret_value(), settings.mongo_db, retry_policy=ctx.retry_policy
    )
    ctx._redis = FaultyRedis(
        plan, settings.redis_url.get_secret_value(), key_prefix=settings.redis_key_prefix, retry_policy=ctx.retry_policy
    )
    return ctx


# -- namespaces and state ---------------------------------------------------------------------------------------


@dataclass
class Namespace:
    """Settings with a MongoDB database and Redis key prefix of their own; `drop()` removes both."""

    settings: Settings

    @classmethod
    def fresh(cls, base: Settings, label: str = "") -> Namespace:
        uid = uuid.uuid4().hex[:10]
        settings = base.model_copy(update={"mongo_db": f"test_sf_{uid}", "redis_key_prefix": f"test:sf{uid}:{label}"})
        with _mongo_client(settings) as client:
            ensure_collections(client[settings.mongo_db], settings)
        return cls(settings)

    def drop(self) -> None:
        with _mongo_client(self.settings) as client:
            client.drop_database(self.settings.mongo_db)
        client_r = sync_redis.Redis.from_url(self.settings.redis_url.get_secret_value(), socket_timeout=5)
        try:
            keys = _namespace_keys(client_r, self.settings.redis_key_prefix)
            if keys:
                client_r.delete(*keys)
        finally:
            client_r.close()


def _mongo_client(settings: Settings) -> MongoClient[dict[str, Any]]:
    return MongoClient(settings.mongo_url.get_secret_value(), serverSelectionTimeoutMS=5000)


def _namespace_keys(client: sync_redis.Redis, prefix: str) -> list[bytes]:
    # Temporary keys are `{<full key>}:tmp:...` (hash tag first): a leftover one is part of the state, so a run that
    # leaves one behind differs from the clean run.
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    keys += list(client.scan_iter(match=f"{{{prefix}*", count=1000))
    return sorted(keys)


State = dict[str, Any]


def _canonical(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, ObjectId):
        return "<ObjectId>"
    return value


# Hash fields that count writes (concurrency tokens, e.g. the spend store's and the readiness facts' generation),
# not derived data: a retry may legitimately count differently. The replay test leaves them out too.
TOKEN_FIELDS = frozenset({"__gen"})


def snapshot(
    settings: Settings, ignore_fields: frozenset[str] = frozenset(), ignore_hash_fields: frozenset[str] = TOKEN_FIELDS
) -> State:
    """Everything the namespace holds: `mongo:<collection>` -> documents (sorted, ObjectId `_id` and
    `ignore_fields` removed), `redis:<key without prefix>` -> (type, value, has TTL), hashes without
    `ignore_hash_fields`."""
    state: State = {}
    with _mongo_client(settings) as client:
        db = client[settings.mongo_db]
        for name in sorted(db.list_collection_names()):
            docs = []
            for doc in db[name].find({}):
                if isinstance(doc.get("_id"), ObjectId):
                    doc.pop("_id")
                for ignored in ignore_fields:
                    doc.pop(ignored, None)
                docs.append(json.dumps(_canonical(doc), sort_keys=True, default=str))
            state[f"mongo:{name}"] = sorted(docs)
    client_r = sync_redis.Redis.from_url(settings.redis_url.get_secret_value(), socket_timeout=5)
    prefix = settings.redis_key_prefix
    try:
        for raw_key in _namespace_keys(client_r, prefix):
            key = text(raw_key)
            kind = text(client_r.type(raw_key))
            value: Any
            if kind == "hash":
                fields: Any = client_r.hgetall(raw_key)
                value = {text(k): text(v) for k, v in sorted(fields.items()) if text(k) not in ignore_hash_fields}
            elif kind == "zset":
                members: Any = client_r.zrange(raw_key, 0, -1, withscores=True)
                value = [(text(m), float(s)) for m, s in members]
            elif kind == "string":
                value = text(client_r.get(raw_key))
            elif kind == "set":
                items: Any = client_r.smembers(raw_key)
                value = sorted(text(m) for m in items)
            else:
                value = f"<{kind}>"
            has_ttl = int(client_r.ttl(raw_key)) > 0
            state[f"redis:{key.replace(prefix, '<ns>', 1)}"] = (kind, value, has_ttl)
    finally:
        client_r.close()
    return state


def diff(clean: State, got: State, limit: int = 8) -> list[str]:
    """Human-readable differences between two snapshots (first `limit`)."""
    out = []
    for key in sorted(set(clean) | set(got)):
        a, b = clean.get(key), got.get(key)
        if a == b:
            continue
        if isinstance(a, list) and isinstance(b, list) and key.startswith("mongo:"):
            missing = [d for d in a if d not in b]
            extra = [d for d in b if d not in a]
            out.append(f"{key}: {len(missing)} documents missing {missing[:2]}, {len(extra)} unexpected {extra[:2]}")
        else:
            out.append(f"{key}: clean {str(a)[:300]} != got {str(b)[:300]}")
        if len(out) >= limit:
            break
    return out


# -- envelopes and the runner -----------------------------------------------------------------------------------


def envelope(
    source_seq: int,
    event_type: str,
    aggregate_id: int,
    payload: Mapping[str, Any],
    *,
    event_id: int | None = None,
) -> bytes:
    """One relay envelope (the Kafka value); event id defaults to `source_seq`."""
    return json.dumps(
        {
            "event_id": source_seq if event_id is None else event_id,
            "event_type": event_type,
            "aggregate_type": _EVENT_AGGREGATE[event_type],
            "aggregate_id": str(aggregate_id),
            "occurred_at": "2025-09-20T10:00:00.000",
            "schema_version": 1,
            "source_seq": source_seq,
            "payload": dict(payload),
        }
    ).encode()


@dataclass(frozen=True)
class _Message:
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class _Raw:
    key: bytes | None
    value: bytes
    message: _Message


def raw_batch(values: Sequence[bytes], first_offset: int = 0) -> list[_Raw]:
    """What Faust's take_events() hands the runner, for envelopes built by `envelope` (topic = aggregate type)."""
    out = []
    for n, value in enumerate(values):
        data = json.loads(value)
        aggregate = data.get("aggregate_type", "unknown") if isinstance(data, dict) else "unknown"
        key = str(data.get("aggregate_id", "")).encode() if isinstance(data, dict) else None
        out.append(_Raw(key, value, _Message(f"sf.{_TOPIC_OF.get(aggregate, aggregate)}", 0, first_offset + n)))
    return out


class RecordedDeadLetters:
    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    async def send(self, letter: DeadLetter) -> None:
        self.letters.append(letter)

    def event_ids(self) -> list[int | None]:
        return sorted((letter.event_id for letter in self.letters), key=lambda e: -1 if e is None else e)


async def run_batches(
    settings: Settings,
    plan: FaultPlan,
    make_handler: Callable[[WorkerContext], Handler],
    batches: Sequence[Sequence[bytes]],
    *,
    max_store_retries: int = 20,
) -> RecordedDeadLetters:
    """Process `batches` in order with the real BatchRunner against `settings`' namespace, through `plan`. A
    SimulatedCrash replaces the context and the handler and processes the crashed batch again. Raises NoProgress
    after `max_store_retries` back-offs in one batch, WorkerStopped where the runner would stop the worker."""
    dead = RecordedDeadLetters()
    retries = 0

    async def no_sleep(_: float) -> None:
        nonlocal retries
        retries += 1
        if retries > max_store_retries:
            raise NoProgress(f"{retries} store retries without progress (last fault: {plan.fired})")

    ctx = faulty_context(settings, plan)
    runner = BatchRunner("under-test", make_handler(ctx), dead, sleep=no_sleep, stop=_stop)
    offset = 0
    try:
        for values in batches:
            raws = raw_batch(values, offset)
            offset += len(values)
            retries = 0
            try:
                await runner.process(raws)
            except SimulatedCrash:
                await ctx.aclose()
                ctx = faulty_context(settings, plan)
                runner = BatchRunner("under-test", make_handler(ctx), dead, sleep=no_sleep, stop=_stop)
                await runner.process(raws)
    finally:
        await ctx.aclose()
    return dead


@dataclass
class RetryReport:
    clean_calls: int
    calls: list[str]
    runs: int
    clean_state: State
    clean_dead_letters: list[int | None]


async def assert_retry_safe(
    settings: Settings,
    make_handler: Callable[[WorkerContext], Handler],
    batches: Sequence[Sequence[bytes]],
    *,
    modes: Sequence[Mode] = ALL_MODES,
    ignore_fields: frozenset[str] = frozenset(),
    max_store_retries: int = 20,
) -> RetryReport:
    """The driver described in the module docstring."""
    ns = Namespace.fresh(settings, "clean:")
    try:
        plan = FaultPlan()
        dead = await run_batches(ns.settings, plan, make_handler, batches, max_store_retries=max_store_retries)
        clean = await asyncio.to_thread(snapshot, ns.settings, ignore_fields)
    finally:
        await asyncio.to_thread(ns.drop)
    report = RetryReport(len(plan.calls), list(plan.calls), 0, clean, dead.event_ids())
    failures: list[str] = []
    for n in range(1, report.clean_calls + 1):
        for mode in modes:
            ns = Namespace.fresh(settings, f"f{n}{mode[0]}:")
            plan = FaultPlan(fail_at=n, mode=mode)
            try:
                try:
                    dead = await run_batches(
                        ns.settings, plan, make_handler, batches, max_store_retries=max_store_retries
                    )
                except NoProgress as exc:
                    failures.append(f"call {n} {plan.fired!r}, mode {mode}: {exc}")
                    continue
                got = await asyncio.to_thread(snapshot, ns.settings, ignore_fields)
            finally:
                await asyncio.to_thread(ns.drop)
            report.runs += 1
            problems = diff(clean, got)
            if dead.event_ids() != report.clean_dead_letters:
                problems.append(f"dead letters {dead.event_ids()} != clean run's {report.clean_dead_letters}")
            if problems:
                failures.append(f"call {n} {plan.fired!r}, mode {mode}: " + "; ".join(problems))
    if failures:
        raise AssertionError(
            f"{len(failures)} of {report.clean_calls * len(modes)} faulty runs differ from the clean run "
            f"({report.clean_calls} store calls: {report.calls}):\n" + "\n".join(failures[:20])
        )
    return report


class LostUpdateMongo:
    """An AsyncMongoSink whose first `upsert_versioned` lets `meanwhile` (another worker's whole batch) run to its end
    and then lands over what it wrote: FerretDB 1.x runs an update's filter, then replaces the matched document by `_id`
    in a second step, so a guarded write whose filter matched before a newer write can replace that newer document.
    Modelled here by removing the newer documents before the guarded write goes in."""

    def __init__(self, inner: Any, settings: Settings, meanwhile: Any) -> None:
        self._inner = inner
        self._settings = settings
        self._meanwhile = meanwhile
        self.fired = False

    async def upsert_versioned(self, collection: str, docs: Any, stored: Any = None) -> Any:
        if not self.fired:
            self.fired = True
            await asyncio.wait_for(self._meanwhile(), 60)
            with _mongo_client(self._settings) as client:
                for doc in docs:
                    client[self._settings.mongo_db][collection].delete_one(dict(doc.key))
        return await self._inner.upsert_versioned(collection, docs, stored)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
