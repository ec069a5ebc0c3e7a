"""How the relay reads the outbox: one `Source` per `TENDERHUB_RELAY_MODE`, behind one protocol.

- `binlog` (`cdc.modes.binlog`): resume from the committed position, or start from a consistent snapshot (backfill)
  or from now; then tail the binlog (decoded in a process of its own or a thread).
- `polling` (`cdc.modes.polling`): for servers whose binlog the relay may not read; lock a batch of unpublished rows,
  publish it, mark it, commit.

The relay (`cdc.relay.Relay`) owns what is common and hands it to the source as its `Host`: the leader lock, the
Kafka publisher, publishing a batch with its position (and its bookkeeping), the metrics and the stop request. A
source never commits a position itself; it calls `host.publish` (or, for a position a source committed through its
own transaction, `host.committed`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from typing import Protocol

from cdc.envelope import Record
from cdc.position import Position
from cdc.publisher import TransactionalPublisher, max_published_source_seq
from schema.settings import Settings
from schema.topics import TopicNames

log = logging.getLogger(__name__)


@dataclass
class StartOptions:
    from_now: bool = False  # no backfill: start at the current binlog position
    resnapshot: bool = False  # ignore the committed position: backfill unpublished rows, restart from a snapshot


class Host(Protocol):
    """What a source may use of the relay."""

    s: Settings
    topics: TopicNames
    options: StartOptions
    stop: asyncio.Event  # set when the relay is asked to stop: flush, then return
    lock_lost: asyncio.Event  # set when the leader lock is lost: stop publishing at once

    async def publish(self, publisher: TransactionalPublisher, batch: list[Record], position: Position) -> None:
        """Publish `batch` with `position` in one Kafka transaction (with the binlog bookkeeping), then count it."""

    def committed(self, records: list[Record], position: Position) -> None:
        """Count a transaction the source committed itself."""

    def check(self) -> None:
        """Raise when the relay must not go on (the leader lock lost, a background task dead)."""


class Source(Protocol):
    async def start(self, publisher: TransactionalPublisher, committed: Position | None, first: bool) -> Position:
        """The position to stream from: `committed` (the last committed in Kafka, None if there is none) healed into
        the bookkeeping, or a fresh start (`first`: the process's first connection, when start options apply)."""

    async def stream(self, publisher: TransactionalPublisher, position: Position) -> None:
        """Publish outbox rows from `position` on until the host asks to stop; raise on any failure (the relay then
        reconnects from the last committed position)."""


def source_for(host: Host) -> Source:
    from cdc.modes.binlog import BinlogMode
    from cdc.modes.polling import PollingMode

    return PollingMode(host) if host.s.relay_mode == "polling" else BinlogMode(host)


async def fresh_position(host: Host) -> Position:
    """A start without a committed position: if the topics already hold events (the position topic was lost or its
    source renamed), numbering continues above the highest source_seq they hold."""
    topics = [*host.topics.data.values(), host.topics.dlq]
    highest = await max_published_source_seq(host.s, topics)
    if highest >= 0:
        log.warning(
            "no committed position, but the topics hold events up to source_seq %d: numbering continues above it",
            highest,
        )
    return replace(Position("", 0), last_source_seq=highest)
