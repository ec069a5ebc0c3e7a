"""`tenderhub cdc run`: the relay as a process, with SIGTERM/SIGINT handled as flush, commit, exit 0."""

from __future__ import annotations

import asyncio
import logging
import signal

from cdc.errors import FencedError
from cdc.metrics import RelayMetrics
from cdc.relay import Relay, StartOptions
from schema.settings import Settings

log = logging.getLogger(__name__)


async def run_relay(settings: Settings, options: StartOptions) -> int:
    metrics = RelayMetrics()
    metrics.serve(settings.relay_metrics_addr)
    log.info("relay metrics on http://%s/metrics", settings.relay_metrics_addr)
    relay = Relay(settings, options, metrics)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, relay.request_stop)
    try:
        await relay.run()
    except FencedError as exc:
        log.error("stopping: %s", exc)
        return 3
    pos = relay.position.describe() if relay.position else "(none)"
    log.info("relay stopped cleanly at %s", pos)
    return 0
