"""Wiring shared by the agent wrappers: one batch agent over declared topics, run by a `BatchRunner`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import faust

from streams.batch import BatchRunner, Handler
from streams.context import WorkerContext

RunnerFactory = Callable[[str, Handler], BatchRunner]


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
