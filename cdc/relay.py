"""The CDC relay: outbox -> Kafka, exactly once for read_committed consumers, crash-safe.

Loop: as leader (`cdc.leader`), load the committed position, let the mode's source (`cdc.modes`: the binlog, or
polling) start from it and stream outbox rows, mapped to records (`cdc.envelope`); each batch goes out together
with the position after its last row in one Kafka transaction (`publish`, which also does the binlog mode's
bookkeeping, `cdc.marker`). Only a committed transaction moves the position.
Any failure (MySQL or Kafka down, a commit with an unknown outcome) tears down source and producer, backs off,
reloads the committed position from Kafka and resumes there: nothing is lost and nothing is sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace

import pymysql
from aiokafka.errors import KafkaError

from cdc.envelope import Record
from cdc.errors import CdcError, FencedError, PositionPurgedError, SourceConfigError, SourceSeqRegressionError
from cdc.leader import LeaderLock
from cdc.marker import PublishedMarker, delete_published
from cdc.metrics import RelayMetrics
from cdc.modes import StartOptions, source_for
from cdc.position import MAX_UNMARKED_RANGES, IdRanges, Position, id_ranges
from cdc.publisher import TransactionalPublisher, load_position
from schema.retry import backoff_delay
from schema.settings import Settings
from schema.topics import TopicNames, missing_topics, topic_specs

log = logging.getLogger(__name__)

BACKOFF_START_S, BACKOFF_MAX_S = 0.5, 10.0
PROGRESS_LOG_S = 10.0


class Relay:
    def __init__(
        self, settings: Settings, options: StartOptions | None = None, metrics: RelayMetrics | None = None
    ) -> None:
        self.s = settings
        self.options = options or StartOptions()
        self.metrics = metrics or RelayMetrics()
        self.topics = TopicNames.from_settings(settings)
        self.position_topic = self.topics.position
        self.transactional_id = f"tenderhub-relay-{settings.relay_source_name}"
        self.stop = asyncio.Event()
        self.lock_lost = asyncio.Event()
        # Binlog mode records runs of published ids after the Kafka commit; polling mode marks rows inside its own
        # transaction.
        self._marker = (
            PublishedMarker(settings) if settings.relay_mark_published and settings.relay_mode == "binlog" else None
        )
        self._marker_task: asyncio.Task[None] | None = None
        self.position: Position | None = None
        self._since_log, self._last_log = 0, time.monotonic()
        self.on_commit: Callable[[list[Record], Position], None] | None = None

    def check(self) -> None:
        if self.lock_lost.is_set():
            raise CdcError("the leader lock was lost")
        task = self._marker_task
        if task is not None and task.done() and not task.cancelled() and task.exception() is not None:
            # Its marks are safe (the committed position lists them); crash loudly rather than let them pile up.
            raise CdcError(f"the mark-published task died: {task.exception()!r}") from task.exception()

    def request_stop(self) -> None:
        log.info("stop requested: flushing the current batch, then exiting")
        self.stop.set()

    # -- start-up --------------------------------------------------------------------------------------------

    async def run(self) -> None:
        lock = LeaderLock(self.s)
        await lock.acquire(self.stop)
        if self.stop.is_set():
            return
        janitor = asyncio.create_task(self._janitor_loop(), name="outbox-janitor")
        marker = asyncio.create_task(self._marker.run(self.stop), name="mark-published") if self._marker else None
        self._marker_task = marker
        failures = 0
        first = True
        source = source_for(self)
        try:
            while not self.stop.is_set():
                await lock.ensure(self.stop)
                if self.stop.is_set():
                    break
                self.lock_lost.clear()
                watcher = asyncio.create_task(lock.watch(self.lock_lost), name="leader-lock-watch")
                publisher = TransactionalPublisher(
                    self.s,
                    self.transactional_id,
                    self.position_topic,
                    self.s.relay_source_name,
                    self.s.relay_transaction_timeout_ms,
                )
                try:
                    await self._check_topics()
                    await publisher.start()
                    committed = await load_position(self.s, self.position_topic, self.s.relay_source_name)
                    position = await source.start(publisher, committed, first)
                    self.position = position
                    first = False
                    await source.stream(publisher, position)
                    failures = 0
                except (FencedError, PositionPurgedError, SourceConfigError, SourceSeqRegressionError):
                    raise
                except (TimeoutError, OSError, pymysql.MySQLError, CdcError, KafkaError) as exc:
                    # Transient: a service restarting, a commit with an unknown outcome. Anything else is a bug
                    # and crashes the relay rather than retrying forever.
                    self._note_error(exc)
                finally:
                    watcher.cancel()
                    await publisher.stop()
                if not self.stop.is_set():
                    failures += 1
                    delay = backoff_delay(failures, BACKOFF_START_S, BACKOFF_MAX_S)
                    log.info("reconnecting in %.1f s from the last committed position", delay)
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self.stop.wait(), delay)
        finally:
            janitor.cancel()
            if marker is not None:
                self.stop.set()
                await asyncio.shield(marker)
            lock.release()

    async def _check_topics(self) -> None:
        """Topics are declared by `tenderhub migrate`, never auto-created: a missing one is a setup error."""
        missing = await missing_topics(self.s, topic_specs(self.s))
        if missing:
            raise SourceConfigError(
                f"Kafka topics {missing} do not exist. Fix: run `tenderhub migrate` (it declares them)."
            )

    def _note_error(self, exc: BaseException) -> None:
        pos = self.position.describe() if self.position else "(none)"
        log.warning("relay error at %s: %s: %s", pos, type(exc).__name__, exc)
        self.metrics.error(exc)

    async def publish(self, publisher: TransactionalPublisher, batch: list[Record], position: Position) -> None:
        marker = self._marker
        new_ranges: IdRanges = ()
        if marker is not None:
            new_ranges = id_ranges([r.event_id for r in batch])
            # Never drop a mark: past the bound, wait for the marker (MySQL may be slow) instead of publishing on.
            await marker.wait_below(MAX_UNMARKED_RANGES - len(new_ranges), self.stop)
            position = replace(position, unmarked=marker.unmarked() + new_ranges)
        with self.metrics.commit_seconds.time():
            await publisher.publish(batch, position)
        if marker is not None and new_ranges:
            marker.add(new_ranges)
        self.committed(batch, position)

    def committed(self, records: list[Record], position: Position) -> None:
        self.position = position
        self.metrics.committed(records, position)
        self._since_log += len(records)
        now = time.monotonic()
        if now - self._last_log >= PROGRESS_LOG_S:
            log.info(
                "committed %d events in %.0f s (%.0f/s), position %s, lag %.0f ms",
                self._since_log,
                now - self._last_log,
                self._since_log / (now - self._last_log),
                position.describe(),
                self.metrics.last_lag_ms,
            )
            self._since_log, self._last_log = 0, now
        if self.on_commit is not None:
            self.on_commit(records, position)

    async def _janitor_loop(self, every_s: float = 300.0) -> None:
        while True:
            try:
                deleted = await asyncio.to_thread(delete_published, self.s)
                if deleted:
                    log.info(
                        "janitor: deleted %d published outbox rows older than %.0f h",
                        deleted,
                        self.s.relay_retention_hours,
                    )
            except pymysql.MySQLError as exc:
                log.warning("janitor failed (will retry): %s", exc)
            except Exception:
                # Anything else is a bug, but it must not end the clean-up for the relay's whole life.
                log.exception("janitor pass failed (will retry in %.0f s)", every_s)
            await asyncio.sleep(every_s)
