"""`tenderhub cdc run`: the relay as a process. SIGTERM/SIGINT: flush the batch, commit, exit 0. If the commit
cannot finish within the grace period (Kafka unreachable), or on a second signal, exit 1 without committing:
the next start resumes from the last committed position, so nothing is lost."""

from __future__ import annotations

import asyncio
import logging
import signal

from cdc.errors import FencedError
from cdc.metrics import RelayMetrics
from cdc.modes import StartOptions
from cdc.relay import Relay
from schema.heap import freeze_startup_heap
from schema.settings import Settings

log = logging.getLogger(__name__)

STOP_GRACE_S = 30.0


async def run_relay(settings: Settings, options: StartOptions) -> int:
    metrics = RelayMetrics()
    metrics.serve(settings.relay_metrics_addr)
    log.info("relay metrics on http://%s/metrics", settings.relay_metrics_addr)
    relay = Relay(settings, options, metrics)
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            relay.request_stop()
            loop.call_later(STOP_GRACE_S, task.cancel)
        else:
            task.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    freeze_startup_heap("relay")  # imports and the relay's objects: out of every full collection (schema/heap.py)
    try:
        await relay.run()
    except FencedError as exc:
        log.error("stopping: %s", exc)
        return 3
    except asyncio.CancelledError:
        pos = relay.position.describe() if relay.position else "(none)"
        log.error("stopped without a final commit; the next start resumes from %s", pos)
        return 1
    pos = relay.position.describe() if relay.position else "(none)"
    log.info("relay stopped cleanly at %s", pos)
    return 0
