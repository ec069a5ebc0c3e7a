"""What the worker closes at stop (WorkerContext.aclose): the agents' own resources registered with `on_stop`, in
reverse order, each even when another fails, before the shared clients; and a handler's own close() is registered
by the pipeline without any wiring in the agent."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest

from schema.settings import Settings
from streams.batch import Incoming
from streams.context import WorkerContext
from tests.unit.offline import offline_settings


def settings() -> Settings:
    return offline_settings()


@pytest.mark.asyncio
async def test_closers_run_in_reverse_order_sync_or_async_and_one_failure_stops_none(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ctx = WorkerContext(settings())
    closed: list[str] = []

    async def pool() -> None:
        closed.append("pool")

    def broken() -> None:
        closed.append("broken")
        raise RuntimeError("cannot close")

    ctx.on_stop(pool)
    ctx.on_stop(broken, name="model")
    ctx.on_stop(lambda: closed.append("last"))
    with caplog.at_level(logging.ERROR):
        await ctx.aclose()
    assert closed == ["last", "broken", "pool"]
    assert "closing model at worker stop failed" in caplog.text
    await ctx.aclose()
    assert closed == ["last", "broken", "pool"], "a second aclose closes nothing twice"


@pytest.mark.asyncio
async def test_clients_opened_by_the_context_are_closed_and_forgotten() -> None:
    ctx = WorkerContext(settings())
    mongo, redis, engine = ctx.mongo, ctx.redis, ctx.engine
    _ = ctx.spend
    order: list[str] = []
    ctx.on_stop(lambda: order.append("agent resource"))
    real_mongo_close, real_dispose = mongo.close, engine.dispose

    async def mongo_close() -> None:
        order.append("mongo")
        await real_mongo_close()

    def dispose(close: bool = True) -> None:
        order.append("engine")
        real_dispose(close)

    mongo.close = mongo_close  # type: ignore[method-assign]
    engine.dispose = dispose  # type: ignore[method-assign]
    await ctx.aclose()
    assert order == ["agent resource", "mongo", "engine"]
    assert ctx._mongo is None and ctx._redis is None and ctx._engine is None and ctx._spend is None
    assert ctx.redis is not redis, "a context used again after stop opens new clients, never a closed one"
    await ctx.aclose()


class _Handler:
    def __init__(self) -> None:
        self.closed = False

    async def __call__(self, items: Sequence[Incoming]) -> None:
        return None

    def close(self) -> None:
        self.closed = True


@pytest.mark.asyncio
async def test_a_handler_with_close_is_closed_at_stop_without_wiring(monkeypatch: pytest.MonkeyPatch) -> None:
    import streams.app
    from streams.spec import AgentSpec

    handler = _Handler()
    probe = AgentSpec("probe", "a probe", ("activity",), frozenset({"user.activity"}), lambda ctx: handler)
    monkeypatch.setattr(streams.app, "registry", lambda: {"probe": probe})
    pipeline = streams.app.build_pipeline(settings(), agents=["probe"])
    assert not handler.closed
    await pipeline.ctx.aclose()
    assert handler.closed
