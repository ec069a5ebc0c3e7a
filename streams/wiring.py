"""Wiring of an agent spec into the worker: its handler and `BatchRunner`, routed the topics it reads (by the
worker's `BatchConsumer`), and its timers on the leader."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import faust

from sinks.errors import Action, policy_for
from streams.batch import BatchRunner, Handler, Stop, exit_worker
from streams.consumer import Route
from streams.context import WorkerContext
from streams.spec import AgentSpec

log = logging.getLogger(__name__)

RunnerFactory = Callable[[AgentSpec, Handler], BatchRunner]


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


def wire(app: faust.App, ctx: WorkerContext, spec: AgentSpec, runner_factory: RunnerFactory) -> Route:
    """`spec` in the worker: its handler and batch runner, routed the data topics of its aggregates (read by the
    worker's `BatchConsumer`; the runner decodes and keeps the event types the handler takes), and its timers on
    the leader."""
    handler = spec.handler(ctx)
    runner = runner_factory(spec, handler)
    for timer in spec.timers:
        job = periodic(timer.name, timer.job(ctx, handler))
        if timer.every_s is not None:
            app.timer(timer.every_s(ctx.settings), on_leader=True, name=timer.name)(job)
        elif timer.cron is not None:
            app.crontab(timer.cron(ctx.settings), on_leader=True)(job)
    return Route(runner, frozenset(ctx.topics.data[a] for a in spec.aggregates))
