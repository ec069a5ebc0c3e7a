"""Wiring shared by the agent wrappers: one batch agent over declared topics, run by a `BatchRunner`."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import faust

from sinks.errors import Action, policy_for
from streams.batch import BatchRunner, Handler, Stop, exit_worker
from streams.context import WorkerContext

log = logging.getLogger(__name__)

RunnerFactory = Callable[[str, Handler], BatchRunner]


def periodic(
    name: str, job: Callable[[], Awaitable[Any]], *, stop: Stop = exit_worker
) -> Callable[[], Awaitable[None]]:
    """A timer or crontab body that logs its failure and waits for its next run: an exception escaping a Faust
    timer crashes the whole worker, and a periodic job (a sweep, a recompute) is retried by its next run anyway.
    A store refusing the worker itself stops it, as in the agents (sinks.errors): no later tick can succeed."""

    async def run() -> None:
        try:
            await job()
        except Exception as exc:
            policy = policy_for(exc)
            if policy.action is Action.STOP:
                stop(f"{name}: {policy.reason}")
            log.exception("%s failed; it runs again at its next tick", name)

    run.__name__ = run.__qualname__ = name
    return run


def batch_agent(
    app: faust.App,
    ctx: WorkerContext,
    name: str,
    topics: Sequence[str],
    handler: Handler,
    runner_factory: RunnerFactory,
) -> tuple[Any, BatchRunner]:
    """Register agent `streams.agents.<name>` on `topics` (raw bytes; the runner decodes). Concurrency stays 1:
    with more, Faust can commit offsets past batches still in flight (upstream issue #606)."""
    channel = app.topic(*topics, key_type=bytes, value_type=bytes)
    runner = runner_factory(name, handler)
    size, within = ctx.settings.worker_batch_max, ctx.settings.worker_batch_within_ms / 1000

    async def body(stream: Any) -> None:
        await runner.run(stream.take_events(size, within))

    body.__name__ = body.__qualname__ = name
    agent = app.agent(channel, name=f"streams.agents.{name}", concurrency=1)(body)
    return agent, runner
