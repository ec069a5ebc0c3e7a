"""What an agent is, declared in one place: `AgentSpec`. An agent module exports one spec named `SPEC`; the registry
(`streams.agents.registry`) lists the built-in ones and those of installed packages (entry point group
`tenderhub.agents`), and the app (`streams.app.build_pipeline`) wires each spec the same way:

- a Faust agent over the data topics of `aggregates`, run by a `BatchRunner` (`streams/batch.py`) that decodes every
  record, dead-letters what cannot be decoded, and gives the handler the events of `event_types` only (the others
  are acknowledged untouched);
- the handler, made once per worker by `handler(ctx)`; it owns what it opens and closes it with `aclose()` or
  `close()` (called at stop, after its last batch);
- its timers (`Timer`), run on the leader only, each failure logged and retried at its next tick;
- what it owns: the Redis key families and MongoDB collections it alone writes and deletes. A test checks that every
  family of `schema.redis_keys.CATALOGUE` and every collection of `schema.mongo.COLLECTIONS` has exactly one owner.

README.md, "Adding an agent", walks through a new one.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from schema.events import EVENT_TYPES
from schema.mongo import CollectionSpec
from schema.redis_keys import KeyFamily
from schema.settings import Settings
from streams.batch import Handler
from streams.context import WorkerContext

_NAME = re.compile(r"[a-z][a-z0-9_]{0,48}")

Job = Callable[[], Awaitable[Any]]


@dataclass(frozen=True)
class Timer:
    """A periodic job on the leader worker: every `every_s(settings)` seconds, or on the crontab `cron(settings)`.
    `job(ctx, handler)` returns the coroutine function to run (the handler is the agent's own, for jobs that share
    its state)."""

    name: str
    job: Callable[[WorkerContext, Handler], Job]
    every_s: Callable[[Settings], float] | None = None
    cron: Callable[[Settings], str] | None = None

    def __post_init__(self) -> None:
        if (self.every_s is None) == (self.cron is None):
            raise ValueError(f"timer {self.name!r}: give exactly one of every_s and cron")


@dataclass(frozen=True)
class AgentSpec:
    name: str
    doc: str
    aggregates: tuple[str, ...]  # the data topics it reads, by aggregate type (schema.topics)
    event_types: frozenset[str]  # the events its handler is given
    handler: Callable[[WorkerContext], Handler]
    key_families: tuple[KeyFamily, ...] = ()
    collections: tuple[CollectionSpec, ...] = ()
    timers: tuple[Timer, ...] = ()

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"agent name {self.name!r} must be lower-case letters, digits and _ (at most 49)")
        if not self.aggregates or not self.event_types:
            raise ValueError(f"agent {self.name!r} reads no topic or takes no event type")
        unknown = sorted(self.event_types - EVENT_TYPES.keys())
        if unknown:
            raise ValueError(f"agent {self.name!r}: unknown event types {unknown}")
        elsewhere = sorted(t for t in self.event_types if EVENT_TYPES[t].aggregate_type not in self.aggregates)
        if elsewhere:
            raise ValueError(f"agent {self.name!r}: event types {elsewhere} are not on the topics it reads")

    @property
    def owner(self) -> str:
        """The Faust agent's name, as logs and the web view show it."""
        return f"streams.agents.{self.name}"
