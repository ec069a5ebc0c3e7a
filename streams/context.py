"""What agents share (arq-style `ctx`): settings, topic names, sinks and stores, created on first use, and closed
with whatever the agents registered (`on_stop`) when the worker stops."""

from __future__ import annotations

import datetime as dt
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from schema.engines import mysql_engine
from schema.redis_keys import CATALOGUE, KeyFamily
from schema.settings import Settings
from schema.topics import TopicNames
from sinks.mongo import AsyncMongoSink
from sinks.redis import RedisSink
from sinks.retry import RetryPolicy, StoreSensor
from sinks.spend_store import SpendStore

log = logging.getLogger(__name__)

# What an agent registers to release its own resources at stop (a thread pool, a loaded model): sync or async.
Closer = Callable[[], Awaitable[None] | None]


@dataclass
class WorkerContext:
    settings: Settings
    _mongo: AsyncMongoSink | None = field(default=None, repr=False)
    _redis: RedisSink | None = field(default=None, repr=False)
    _spend: SpendStore | None = field(default=None, repr=False)
    _engine: sa.Engine | None = field(default=None, repr=False)
    extras: dict[str, Any] = field(default_factory=dict)
    # The Redis key families the agents may write: the catalogue, plus those installed agents declare in their specs
    # (set by the app from the registry before any agent is made).
    key_families: tuple[KeyFamily, ...] = CATALOGUE
    # Told of every store call of the context's sinks (the worker's Prometheus metrics); set before any sink is made.
    store_sensor: StoreSensor | None = None
    _closers: list[tuple[str, Closer]] = field(default_factory=list, repr=False)

    @property
    def topics(self) -> TopicNames:
        return TopicNames.from_settings(self.settings)

    @property
    def retry_policy(self) -> RetryPolicy:
        # A few quick retries inside the sink; the batch runner then backs off for as long as the store is down.
        return RetryPolicy(attempts=3, base_delay_s=0.05, max_delay_s=1.0)

    @property
    def mongo(self) -> AsyncMongoSink:
        """MongoDB on pymongo's asyncio client: agents await its calls (no thread per call)."""
        if self._mongo is None:
            self._mongo = AsyncMongoSink.from_settings(
                self.settings, retry_policy=self.retry_policy, sensor=self.store_sensor
            )
        return self._mongo

    @property
    def redis(self) -> RedisSink:
        if self._redis is None:
            self._redis = RedisSink.from_settings(
                self.settings,
                key_prefix=self.settings.redis_key_prefix,
                retry_policy=self.retry_policy,
                families=self.key_families,
                sensor=self.store_sensor,
            )
        return self._redis

    @property
    def spend(self) -> SpendStore:
        if self._spend is None:
            self._spend = SpendStore(self.redis, self.settings.spend_window_days)
        return self._spend

    @property
    def engine(self) -> sa.Engine:
        """The application's MySQL (read-only use: the nightly spend recompute)."""
        if self._engine is None:
            self._engine = mysql_engine(self.settings.mysql_url)
        return self._engine

    def as_of(self) -> dt.date:
        return self.settings.today()

    def on_stop(self, closer: Closer, name: str | None = None) -> None:
        """Have `closer` called when the worker stops, after the agents' last batch and before the shared clients
        close (so it may still use them). Closers run in reverse order of registration."""
        self._closers.append((name or str(getattr(closer, "__qualname__", None) or repr(closer)), closer))

    async def aclose(self) -> None:
        """Close what the agents registered, then every client this context opened. Safe to call twice."""
        redis, mongo, engine = self._redis, self._mongo, self._engine
        self._redis = self._mongo = self._engine = self._spend = None
        steps = list(reversed(self._closers))
        self._closers.clear()
        if redis is not None:
            steps.append(("Redis client", redis.aclose))
        if mongo is not None:
            steps.append(("MongoDB client", mongo.close))
        if engine is not None:
            steps.append(("MySQL engine", engine.dispose))
        for name, close in steps:
            try:
                result = close()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                # One resource that fails to close must not keep the others open.
                log.exception("closing %s at worker stop failed; closing the rest", name)
