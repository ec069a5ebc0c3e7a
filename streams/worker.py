"""`tenderhub worker`: run the Faust app with the chosen agents until SIGTERM / Ctrl-C."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import faust
from pymongo import MongoClient

from schema.mongo import ensure_collections
from schema.settings import Settings, SettingsError
from schema.topics import missing_topics, topic_specs
from streams.app import build_pipeline

log = logging.getLogger(__name__)


def prepare(settings: Settings) -> None:
    """Start-up checks: declared topics exist (never auto-created) and MongoDB collections exist (capped logs)."""
    missing = asyncio.run(missing_topics(settings.kafka_bootstrap, topic_specs(settings)))
    if missing:
        raise SettingsError(f"Kafka topics {missing} do not exist. Fix: run `tenderhub migrate` (declares them).")
    client: MongoClient[dict[str, object]] = MongoClient(
        settings.mongo_url.get_secret_value(), serverSelectionTimeoutMS=10000
    )
    try:
        created = ensure_collections(client[settings.mongo_db], settings)
    finally:
        client.close()
    if created:
        log.info("created MongoDB collections %s", created)


def run_worker(settings: Settings, agents: Sequence[str] | None = None, loglevel: str = "INFO") -> int:
    prepare(settings)
    pipeline = build_pipeline(settings, agents=agents)
    worker = faust.Worker(pipeline.app, loglevel=loglevel, quiet=True, override_logging=False)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
