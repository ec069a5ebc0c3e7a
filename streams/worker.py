"""`tenderhub worker`: run the Faust app with the chosen agents until SIGTERM / Ctrl-C.

Exit status: 0 after a clean stop; 2 for bad settings or a summarisation model that cannot load; 75
(`EXIT_STORE_DOWN_AT_STOP`) when stopped while a store was still down; 78 (`EXIT_STORE_REFUSED`) when a store
refuses the worker's credentials or permissions, at start-up or later (nothing is acknowledged; the message names
the store and the fix).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

import faust
import redis
from pymongo import MongoClient

from schema.heap import freeze_startup_heap
from schema.mongo import ensure_collections
from schema.settings import Settings, SettingsError
from schema.topics import TopicNames, missing_topics, topic_specs
from sinks.errors import store_access_error
from sinks.redis import sync_client
from streams.agents import collections, registry
from streams.app import Pipeline, build_pipeline

log = logging.getLogger(__name__)


def prepare(settings: Settings) -> None:
    """Start-up checks: declared topics exist (never auto-created), MongoDB collections exist (capped logs), and
    MongoDB and Redis accept the worker's credentials. Raises StoreAccessError when a store refuses them."""
    # Only the topics a worker uses: with ACLs it may not even see the relay's position topic.
    position = TopicNames.from_settings(settings).position
    used = [spec for spec in topic_specs(settings) if spec.name != position]
    missing = asyncio.run(missing_topics(settings, used))
    if missing:
        raise SettingsError(f"Kafka topics {missing} do not exist. Fix: run `tenderhub migrate` (declares them).")
    try:
        _check_stores(settings)
    except Exception as exc:
        access = store_access_error(exc)
        if access is None:
            raise
        raise access from exc


def _check_stores(settings: Settings) -> None:
    client: MongoClient[dict[str, object]] = MongoClient(
        settings.mongo_url.get_secret_value(), serverSelectionTimeoutMS=10000
    )
    try:
        created = ensure_collections(client[settings.mongo_db], settings, collections(registry().values()))
    finally:
        client.close()
    if created:
        log.info("created MongoDB collections %s", created)
    r = sync_client(settings, socket_timeout=10, socket_connect_timeout=10)
    try:
        r.ping()
    except redis.ConnectionError as exc:
        if store_access_error(exc) is not None:
            raise
        # A store that is down is not a reason to refuse to start: the agents back off until it is back.
        log.warning("Redis is unreachable at start-up (%s); the agents back off until it answers", exc)
    finally:
        r.close()


def run_worker(
    settings: Settings,
    agents: Sequence[str] | None = None,
    loglevel: str = "INFO",
    extend: Callable[[Pipeline], object] | None = None,
) -> int:
    """`extend(pipeline)`, before the worker starts, adds to it (the CLI's dashboard pages)."""
    prepare(settings)
    pipeline = build_pipeline(settings, agents=agents)
    if extend is not None:
        extend(pipeline)

    async def settled() -> None:
        # Started: the agents' handlers (a summary model among them), Faust's services and the consumer are built and
        # live as long as the worker; out of every full collection from now on (schema/heap.py).
        freeze_startup_heap("worker")

    pipeline.app.task(settled)
    worker = faust.Worker(pipeline.app, loglevel=loglevel, quiet=True, override_logging=False)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
