"""The Faust app of the stream workers: typed topics from the event contract, one module per agent, the web view.

`tenderhub worker` runs it (or `faust -A streams.app worker`; the module attribute `app` is built on first access
from the settings). Consumers read with isolation level read_committed: events of relay transactions that
aborted (a relay killed mid-batch) are never seen. Faust itself only does that under exactly_once; here the
worker consumer is created read_committed while processing stays at-least-once with idempotent agents.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from schema.settings import Settings, load_settings
from schema.topics import DLQ_MAX_MESSAGE_BYTES
from streams.agents import registry
from streams.batch import BatchRunner, DeadLetter, Handler
from streams.context import WorkerContext
from streams.spec import AgentSpec
from streams.wiring import wire

log = logging.getLogger(__name__)

ISOLATION_LEVEL = "read_committed"
# The producer's largest request: a record the DLQ topic takes, plus headers and batch framing. Faust's default
# (1,000,000 bytes) is below even the data topics' 1 MiB, so a dead letter of a large event could never be sent.
PRODUCER_MAX_REQUEST_BYTES = DLQ_MAX_MESSAGE_BYTES + 64 * 1024


class ReadCommittedConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka keeps the level in this attribute until start() builds its Fetcher; fail loudly if that changes
        # rather than silently reading uncommitted (tests/unit/streams/test_worker_consumer.py checks the level is
        # set; tests/integration/test_kafka.py shows the aborted records a read_uncommitted consumer would see).
        if getattr(consumer, "_isolation_level", None) not in ("read_uncommitted", "read_committed"):
            raise RuntimeError("aiokafka consumer has no _isolation_level: cannot set read_committed")
        consumer._isolation_level = ISOLATION_LEVEL
        # Faust hard-codes a 1,500 ms fetch long-poll. The broker holds a fetch that found nothing committed until
        # data or this deadline, and a relay transaction committing meanwhile does not always end the wait: an agent
        # then pauses up to the whole wait (bench/worker_bench.py saw 1.4-1.5 s pauses at 1,000 events/s).
        if not isinstance(getattr(consumer, "_fetch_max_wait_ms", None), int):
            raise RuntimeError("aiokafka consumer has no _fetch_max_wait_ms: cannot bound the fetch wait")
        consumer._fetch_max_wait_ms = cast(TenderhubApp, self.app).fetch_max_wait_ms
        return consumer


class ReadCommittedConsumer(faust_aiokafka.Consumer):
    """Commits past offsets a read_committed consumer never receives (transaction markers, aborted records).

    Faust finds the offset to commit by walking acknowledged offsets up to the first hole and patches the holes it
    notices while fetching; it misses some (a hole right after offset 0 or right at the committed offset: seen
    here as a SIGTERM committing 84 of 1,000 processed events, the rest redelivered). Messages of a partition reach
    the agents in offset order, so every offset below the lowest one still in flight was either acknowledged or
    skipped by the fetcher: that lowest in-flight offset (or the highest acknowledged + 1) is safe to commit.
    """

    def _new_offset(self, tp: Any) -> int | None:
        acked = self._acked[tp]
        if not acked:
            return None
        in_flight = [m.offset for m in list(self._unacked_messages) if m.tp == tp and not m.acked]
        limit = min(in_flight) if in_flight else None
        done = sorted(o for o in acked if limit is None or o < limit)
        if not done:
            return None
        acked[:] = sorted(o for o in acked if limit is not None and o >= limit)
        self._acked_index[tp].difference_update(done)
        gap = self._gap.get(tp)
        if gap:
            gap.chop(0, done[-1] + 1)
        return int(done[-1]) + 1

    def _new_consumer_thread(self) -> ReadCommittedConsumerThread:
        return ReadCommittedConsumerThread(self, loop=self.loop, beacon=self.beacon)


class ReadCommittedTransport(faust_aiokafka.Transport):
    Consumer = ReadCommittedConsumer


class TenderhubApp(faust.App):
    def __init__(self, *args: Any, fetch_max_wait_ms: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.closers: list[Callable[[], Awaitable[None]]] = []
        self.fetch_max_wait_ms = fetch_max_wait_ms

    def _new_transport(self) -> Any:
        return ReadCommittedTransport(self.conf.broker_consumer, self)

    async def on_shutdown(self) -> None:
        # mode stops a service in this order: on_stop (Faust stops the consumer), its children (agents, whose batch
        # in flight finishes first, the producer, the web server), its futures (timers), then on_shutdown: the
        # first moment nothing uses the stores any more.
        await super().on_shutdown()
        while self.closers:
            close = self.closers.pop()
            try:
                await close()
            except Exception:
                log.exception("closing %r at worker stop failed; closing the rest", close)


class FaustDeadLetters:
    """Sends dead letters to the DLQ topic and waits for the broker's acknowledgement."""

    def __init__(self, topic: Any) -> None:
        self._topic = topic

    async def send(self, letter: DeadLetter) -> None:
        headers = [
            ("dlq_reason", letter.reason[:200].encode()),
            ("dlq_agent", letter.agent.encode()),
            ("dlq_origin", f"{letter.topic}[{letter.partition}]@{letter.offset}".encode()),
        ]
        pending = await self._topic.send(key=letter.record_key(), value=letter.to_json(), headers=headers)
        await pending


@dataclass
class Pipeline:
    """The app and what tests and the CLI need to reach: the context and each agent's runner."""

    app: Any
    ctx: WorkerContext
    agents: dict[str, Any] = field(default_factory=dict)
    runners: dict[str, BatchRunner] = field(default_factory=dict)


def build_pipeline(
    settings: Settings,
    *,
    agents: Sequence[str] | None = None,
    ctx: WorkerContext | None = None,
    group: str | None = None,
) -> Pipeline:
    """A Faust app with the chosen agents (all by default). `group` overrides the consumer group (tests)."""
    ctx = ctx or WorkerContext(settings)
    app = TenderhubApp(
        group or settings.worker_group,
        broker=[f"kafka://{server.strip()}" for server in settings.kafka_bootstrap.split(",")],
        autodiscover=False,
        key_serializer="raw",
        value_serializer="raw",
        # Data topics are declared by `tenderhub migrate` (schema.topics) with partitions and configs; Faust only
        # creates its own internal topics (the leader topic for crontabs and timers on_leader).
        topic_partitions=6,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        producer_acks=-1,
        producer_max_request_size=PRODUCER_MAX_REQUEST_BYTES,
        stream_wait_empty=False,
        web_enabled=True,
        web_bind=settings.worker_web_host,
        web_host=settings.worker_web_host,
        web_port=settings.worker_web_port,
        web_in_thread=False,
        store="memory://",
        # Faust makes a data folder even for in-memory tables; under the temp folder, not the working directory.
        datadir=str(Path(tempfile.gettempdir()) / "tenderhub-faust-{conf.name}"),
        loghandlers=[],
        fetch_max_wait_ms=settings.worker_fetch_max_wait_ms,
    )
    names = ctx.topics
    dlq = FaustDeadLetters(app.topic(names.dlq, key_type=bytes, value_type=bytes))

    def runner_factory(spec: AgentSpec, handler: Handler) -> BatchRunner:
        return BatchRunner(
            spec.name,
            handler,
            dlq,
            store_retry_max_s=settings.worker_store_retry_max_s,
            event_types=spec.event_types,
        )

    pipeline = Pipeline(app=app, ctx=ctx)
    specs = registry()
    chosen = list(specs) if agents is None else list(agents)
    unknown = sorted(set(chosen) - set(specs))
    if unknown:
        raise ValueError(f"unknown agents {unknown}; known: {sorted(specs)}")
    for name in chosen:
        agent, runner = wire(app, ctx, specs[name], runner_factory)
        pipeline.agents[name] = agent
        pipeline.runners[name] = runner
        # A handler that owns resources (a thread pool, a model) says so with aclose() or close(): closed at stop,
        # after its last batch. Anything else an agent opens it registers itself with ctx.on_stop.
        closer = getattr(runner.handler, "aclose", None) or getattr(runner.handler, "close", None)
        if callable(closer):
            ctx.on_stop(closer, name=f"{name} handler")

    @app.page("/tenderhub/agents/")
    async def agent_stats(web: Any, request: Any) -> Any:
        body = {
            name: {
                "batches": r.stats.batches,
                "events": r.stats.events,
                "dead_letters": r.stats.dead_letters,
                "skipped": r.stats.skipped,
                "store_retries": r.stats.store_retries,
                "error_retries": r.stats.error_retries,
                "last_batch_ms": round(r.stats.last_batch_s * 1000, 3),
                "in_flight": r.stats.in_flight,
                "in_flight_s": round(time.monotonic() - r.stats.in_flight_since, 3)
                if r.stats.in_flight_since is not None
                else 0.0,
            }
            for name, r in pipeline.runners.items()
        }
        return web.json(body)

    async def on_started() -> None:
        log.info(
            "worker %s started: agents %s, topics %s, isolation %s, web view http://%s:%d/",
            app.conf.id,
            chosen,
            json.dumps(names.data),
            ISOLATION_LEVEL,
            settings.worker_web_host,
            settings.worker_web_port,
        )

    app.task(on_started)
    app.closers.append(ctx.aclose)
    return pipeline


_pipeline: Pipeline | None = None


def get_pipeline() -> Pipeline:
    global _pipeline
    if _pipeline is None:
        _pipeline = build_pipeline(load_settings())
    return _pipeline


def __getattr__(name: str) -> Any:
    # `faust -A streams.app worker` reads `streams.app.app`; building it on first access keeps imports free of I/O.
    if name == "app":
        return get_pipeline().app
    raise AttributeError(name)
