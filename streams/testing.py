"""A harness for testing one agent against the real stores, as the worker runs it: give it events, then look at what
its handler wrote. Used by the walkthrough in docs/adding-an-agent.md and available to agents of other packages.

    async with AgentHarness(SPEC) as h:
        await h.send(event("tender.created", {"tender_id": 7, ...}, seq=1))
        assert await h.redis_hash(CLOSING_SOON.key()) == {...}

Events go through the worker's own `BatchRunner`: each is encoded as the relay publishes it, decoded and checked
against the contract, filtered by the spec's event types, and handled with the worker's error policy; what would go
to the DLQ is kept in `dead_letters`. The stores are the ones the settings name (the environment, as for
`tenderhub worker`), with a MongoDB database and a Redis key prefix of the harness's own, removed at exit.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Mapping
from types import TracebackType
from typing import Any, NoReturn

from pymongo import MongoClient
from pymongo.database import Database

from schema.events import EVENT_TYPES, json_default
from schema.mongo import ensure_collections
from schema.settings import Settings, load_settings
from sinks.redis import sync_client
from streams.agents import collections, key_families
from streams.batch import BatchRunner, DeadLetter
from streams.context import WorkerContext
from streams.spec import AgentSpec

# Where the harness's records claim to come from (dead letters quote it).
TOPIC = "harness"


class HarnessStopped(RuntimeError):
    """The agent's error policy would stop the worker (a store refusing it): the reason, instead of an exit."""


def event(
    event_type: str,
    payload: Mapping[str, Any],
    *,
    seq: int,
    event_id: int | None = None,
    occurred_at: str = "2026-01-05T10:00:00.000Z",
    schema_version: int = 1,
) -> dict[str, Any]:
    """An envelope as the relay publishes it: the aggregate and its id come from the event type and the payload.
    `seq` is the event's `source_seq` (its place in commit order); the event id defaults to it."""
    spec = EVENT_TYPES[event_type]
    aggregate_id = str(payload[spec.id_field]) if spec.id_field is not None else "1"
    return {
        "event_id": seq if event_id is None else event_id,
        "event_type": event_type,
        "aggregate_type": spec.aggregate_type,
        "aggregate_id": aggregate_id,
        "occurred_at": occurred_at,
        "schema_version": schema_version,
        "source_seq": seq,
        "payload": dict(payload),
    }


class _Record:
    """One record as the batch runner reads it (streams.batch.RawEvent)."""

    def __init__(self, key: bytes | None, value: bytes | None, offset: int) -> None:
        self.key, self.value, self.topic, self.partition, self.offset = key, value, TOPIC, 0, offset

    @property
    def message(self) -> _Record:
        return self


class _Letters:
    """The DLQ of the harness (streams.batch.DeadLetterSink): a list."""

    def __init__(self, letters: list[DeadLetter]) -> None:
        self._letters = letters

    async def send(self, letter: DeadLetter) -> None:
        self._letters.append(letter)


class AgentHarness:
    """One agent's handler, made as the worker makes it, fed through the worker's batch runner."""

    def __init__(
        self, spec: AgentSpec, settings: Settings | None = None, *, own_namespace: bool = True, max_retries: int = 3
    ) -> None:
        """`own_namespace=False`: write into the MongoDB database and Redis prefix `settings` name, and leave them
        there at exit (several agents of one test sharing stores; the caller removes them). `max_retries`: a batch
        the worker would retry (a store down, an error nobody classified) is retried this many times, then `send`
        raises HarnessStopped (the worker retries for as long as it takes; a test should not)."""
        base = settings if settings is not None else load_settings()  # from the environment, as the worker
        uid = secrets.token_hex(5)
        self._own = own_namespace
        self.settings = (
            base.model_copy(update={"mongo_db": f"harness_{spec.name}_{uid}", "redis_key_prefix": f"harness:{uid}:"})
            if own_namespace
            else base
        )
        self.spec = spec
        self.ctx = WorkerContext(self.settings, key_families=key_families([spec]))
        self.dead_letters: list[DeadLetter] = []
        self._offset = 0
        self._mongo: MongoClient[dict[str, Any]] = MongoClient(
            self.settings.mongo_url.get_secret_value(), serverSelectionTimeoutMS=5000
        )
        self._redis: Any = sync_client(self.settings, socket_timeout=5)
        ensure_collections(self.mongo, self.settings, collections([spec]))
        self.handler = spec.handler(self.ctx)
        # Closed with the context, as the worker closes it (streams.app): its aclose() or close(), then the clients.
        closer = getattr(self.handler, "aclose", None) or getattr(self.handler, "close", None)
        if callable(closer):
            self.ctx.on_stop(closer, name=f"{spec.name} handler")
        self.retries = 0
        self._max_retries = max_retries
        self.runner = BatchRunner(
            spec.name,
            self.handler,
            _Letters(self.dead_letters),
            store_retry_max_s=1.0,
            sleep=self._retry_pause,
            stop=self._stop,
            event_types=spec.event_types,
        )

    @property
    def mongo(self) -> Database[dict[str, Any]]:
        """The harness's MongoDB database (what the agent's collections are in)."""
        return self._mongo[self.settings.mongo_db]

    async def send(self, *events: Mapping[str, Any] | bytes | None) -> None:
        """Hand `events` to the agent as one batch: envelopes (see `event`), or raw Kafka values as they are."""
        records = []
        for item in events:
            value = item if isinstance(item, bytes | None) else _encode(item)
            key = None if isinstance(item, bytes | None) else str(item.get("aggregate_id")).encode()
            records.append(_Record(key, value, self._offset))
            self._offset += 1
        await self.runner.process(records)

    async def redis_hash(self, key: str) -> dict[str, str]:
        """A hash of the agent's key families, as stored (the harness's prefix is added here)."""
        full = self.ctx.redis.full_key(key, "hash")
        raw = self._redis.hgetall(full)
        return {k.decode(): v.decode() for k, v in raw.items()}

    async def redis_zset(self, key: str) -> list[tuple[str, float]]:
        """A sorted set of the agent's key families, highest score first."""
        full = self.ctx.redis.full_key(key, "zset")
        return [(m.decode(), float(s)) for m, s in self._redis.zrevrange(full, 0, -1, withscores=True)]

    async def aclose(self) -> None:
        """Close the agent's handler and clients; remove the harness's database and keys."""
        try:
            await self.ctx.aclose()
        finally:
            if self._own:
                self._mongo.drop_database(self.settings.mongo_db)
                prefix = self.settings.redis_key_prefix
                keys = [*self._redis.scan_iter(match=f"{prefix}*"), *self._redis.scan_iter(match=f"{{{prefix}*")]
                if keys:
                    self._redis.delete(*keys)
            self._mongo.close()
            self._redis.close()

    async def __aenter__(self) -> AgentHarness:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def _stop(self, reason: str) -> NoReturn:
        raise HarnessStopped(reason)

    async def _retry_pause(self, seconds: float) -> None:
        self.retries += 1
        if self.retries > self._max_retries:
            raise HarnessStopped(
                f"{self.spec.name}: a batch still failed after {self._max_retries} retries (the reason is logged above)"
            )
        await asyncio.sleep(min(seconds, 0.2))


def _encode(envelope: Mapping[str, Any]) -> bytes:
    return json.dumps(dict(envelope), default=json_default, ensure_ascii=False).encode()
