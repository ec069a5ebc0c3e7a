"""The Faust app of the stream workers: the agents of the registry (streams/agents), the batch consumer that feeds
them (streams/consumer.py: read_committed, at least once), their timers on the leader, the DLQ producer and the web
view.

`tenderhub worker` runs it (or `faust -A streams.app worker`; the module attribute `app` is built on first access
from the settings).
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

from schema.kafka_client import kafka_options
from schema.settings import Settings, load_settings
from schema.topics import DLQ_MAX_MESSAGE_BYTES
from streams.agents import key_families, registry
from streams.batch import BatchRunner, DeadLetter, Handler
from streams.consumer import ISOLATION_LEVEL, BatchConsumer, control_group, heartbeat_ms
from streams.context import WorkerContext
from streams.metrics import WorkerMetrics
from streams.spec import AgentSpec
from streams.wiring import wire

log = logging.getLogger(__name__)

# The producer's largest request: a record the DLQ topic takes, plus headers and batch framing. Faust's default
# (1,000,000 bytes) is below even the data topics' 1 MiB, so a dead letter of a large event could never be sent.
PRODUCER_MAX_REQUEST_BYTES = DLQ_MAX_MESSAGE_BYTES + 64 * 1024


class TenderhubApp(faust.App):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.closers: list[Callable[[], Awaitable[None]]] = []

    async def on_shutdown(self) -> None:
        # mode stops a service in this order: on_stop, its children (the batch consumer first, whose batch in flight
        # finishes and is committed; the producer; the web server), its futures (timers), then on_shutdown: the
        # first moment nothing uses the stores any more.
        await super().on_shutdown()
        while self.closers:
            close = self.closers.pop()
            try:
                await close()
            except Exception:
                log.exception("closing %r at worker stop failed; closing the rest", close)


def faust_credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    """The Kafka security settings for Faust's own clients (leader election, timers, the DLQ producer), the same
    as every other client's (schema.kafka_client)."""
    options = kafka_options(settings)
    protocol = options["security_protocol"]
    if protocol == "SSL":
        return faust.SSLCredentials(options["ssl_context"])
    if protocol.startswith("SASL_"):
        return faust.SASLCredentials(
            username=options["sasl_plain_username"],
            password=options["sasl_plain_password"],
            ssl_context=options.get("ssl_context"),  # set for SASL_SSL: Faust then speaks SASL_SSL
            mechanism=options["sasl_mechanism"],
        )
    return None


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
    consumer: BatchConsumer
    runners: dict[str, BatchRunner] = field(default_factory=dict)


def build_pipeline(
    settings: Settings,
    *,
    agents: Sequence[str] | None = None,
    ctx: WorkerContext | None = None,
    group: str | None = None,
) -> Pipeline:
    """A Faust app with the chosen agents (all by default). `group` overrides the consumer group (tests)."""
    if group is not None:
        settings = settings.model_copy(update={"worker_group": group})
    specs = registry()
    ctx = ctx or WorkerContext(settings)
    ctx.key_families = key_families(specs.values())
    session_s = settings.worker_session_timeout_ms / 1000
    app = TenderhubApp(
        # Faust's own consumer only elects the leader for the timers: a group of its own, so that the batch
        # consumer's group (the data topics' offsets) has members of one kind.
        control_group(settings.worker_group),
        broker=[f"kafka://{server.strip()}" for server in settings.kafka_bootstrap.split(",")],
        broker_credentials=faust_credentials(settings),
        autodiscover=False,
        key_serializer="raw",
        value_serializer="raw",
        # Data topics are declared by `tenderhub migrate` (schema.topics) with partitions and configs; Faust only
        # creates its own internal topics (the leader topic for crontabs and timers on_leader).
        topic_partitions=6,
        producer_acks=-1,
        producer_max_request_size=PRODUCER_MAX_REQUEST_BYTES,
        # The control group waits for a killed worker as long as the data group does: the batch consumer starts
        # only once Faust's own consumer has its assignment.
        broker_session_timeout=session_s,
        broker_rebalance_timeout=session_s,
        # Faust refuses a session longer than its request timeout (90 s by default).
        broker_request_timeout=max(90.0, session_s + 30),
        broker_heartbeat_interval=heartbeat_ms(settings) / 1000,
        web_enabled=True,
        web_bind=settings.worker_web_host,
        web_host=settings.worker_web_host,
        web_port=settings.worker_web_port,
        web_in_thread=False,
        store="memory://",
        # Faust makes a data folder even for in-memory tables; under the temp folder, not the working directory.
        datadir=str(Path(tempfile.gettempdir()) / "tenderhub-faust-{conf.name}"),
        loghandlers=[],
    )
    names = ctx.topics
    dlq = FaustDeadLetters(app.topic(names.dlq, key_type=bytes, value_type=bytes))

    metrics = WorkerMetrics()
    if ctx.store_sensor is None:
        ctx.store_sensor = metrics.on_store_call

    def runner_factory(spec: AgentSpec, handler: Handler) -> BatchRunner:
        return BatchRunner(
            spec.name,
            handler,
            dlq,
            store_retry_max_s=settings.worker_store_retry_max_s,
            event_types=spec.event_types,
            on_batch=metrics.on_batch,
        )

    chosen = list(specs) if agents is None else list(agents)
    unknown = sorted(set(chosen) - set(specs))
    if unknown:
        raise ValueError(f"unknown agents {unknown}; known: {sorted(specs)}")
    routes = {name: wire(app, ctx, specs[name], runner_factory) for name in chosen}
    consumer = BatchConsumer(settings, list(routes.values()))
    app.service(cast(Any, consumer))  # an instance is started as it is (App._prepare_subservice)
    pipeline = Pipeline(app=app, ctx=ctx, consumer=consumer)
    for name, route in routes.items():
        runner = route.runner
        pipeline.runners[name] = runner
        # A handler that owns resources (a thread pool, a model) says so with aclose() or close(): closed at stop,
        # after its last batch. Anything else an agent opens it registers itself with ctx.on_stop.
        closer = getattr(runner.handler, "aclose", None) or getattr(runner.handler, "close", None)
        if callable(closer):
            ctx.on_stop(closer, name=f"{name} handler")

    metrics.watch(pipeline.runners, consumer.lag, lambda: consumer.commits)

    @app.page("/metrics")
    async def prometheus(web: Any, request: Any) -> Any:
        return web.bytes(metrics.render(), content_type="text/plain; version=0.0.4")

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
            settings.worker_group,
            chosen,
            json.dumps(consumer.topics),
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
