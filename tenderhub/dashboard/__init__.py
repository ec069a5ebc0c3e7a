"""The pipeline dashboard, in the worker's Faust web view (`tenderhub worker`):

    GET /dashboard/              one HTML page (no build step): charts drawn in the browser, updated live
    GET /dashboard/status.json   what it draws: the latest sample and the history of the last minutes

A sample is `tenderhub status` (the relay's position and lag in ms, the workers' consumer lag per partition, the DLQ
count with the latest reasons, every store's health) plus what this worker knows (events handled per agent), the
topics' end offsets (events/s per topic) and the read service's cache hits and misses, read from its `/metrics`. A
sample is taken only when someone asks and the last one is older than `TENDERHUB_DASHBOARD_REFRESH_S` (one at a
time): a worker nobody watches does no dashboard work. Rates are the differences between consecutive samples.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import ssl
import time
from collections import deque
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import aiohttp

from schema.settings import Settings
from streams.app import Pipeline
from tenderhub.status import Status, gather_status

log = logging.getLogger(__name__)

HISTORY = 120  # samples kept (10 minutes at the default refresh)
PAGE = "/dashboard/"
STATUS = "/dashboard/status.json"
_API_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Sample:
    at: float  # unix time
    status: Status
    agent_events: dict[str, int]
    agent_dead_letters: dict[str, int]
    topic_ends: dict[str, int]
    api: dict[str, Any]


@dataclass
class Dashboard:
    settings: Settings
    pipeline: Pipeline | None = None  # None: no agents of this process (agent rates are then left out)
    samples: deque[Sample] = field(default_factory=lambda: deque(maxlen=HISTORY))
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def status(self) -> dict[str, Any]:
        async with self._lock:
            if not self.samples or time.time() - self.samples[-1].at >= self.settings.dashboard_refresh_s:
                self.samples.append(await self._sample())
        return self.payload()

    async def _sample(self) -> Sample:
        status, api = await asyncio.gather(gather_status(self.settings), read_service_counts(self.settings))
        runners = self.pipeline.runners if self.pipeline is not None else {}
        ends: dict[str, int] = {}
        for p in status.consumer_lag:
            ends[p.topic] = ends.get(p.topic, 0) + p.end
        return Sample(
            time.time(),
            status,
            {name: r.stats.events for name, r in runners.items()},
            {name: r.stats.dead_letters for name, r in runners.items()},
            ends,
            api,
        )

    def payload(self) -> dict[str, Any]:
        latest = self.samples[-1]
        points = [_point(before, after) for before, after in zip(self.samples, list(self.samples)[1:], strict=False)]
        return {
            "at": dt.datetime.fromtimestamp(latest.at, dt.UTC).isoformat(timespec="seconds"),
            "refresh_s": self.settings.dashboard_refresh_s,
            "status": latest.status.to_dict(),
            "agents": {
                name: {"events": n, "dead_letters": latest.agent_dead_letters.get(name, 0)}
                for name, n in latest.agent_events.items()
            },
            "read_service": latest.api,
            "rates": points[-1] if points else None,
            "history": points,
        }


def _point(before: Sample, after: Sample) -> dict[str, Any]:
    """Rates between two samples, and the gauges of the later one."""
    seconds = max(after.at - before.at, 1e-3)

    def rate(new: dict[str, int], old: dict[str, int]) -> dict[str, float]:
        return {k: round(max(v - old.get(k, v), 0) / seconds, 2) for k, v in sorted(new.items())}

    relay = after.status.relay
    ratio = None
    if all(isinstance(x.api.get(k), float) for x in (before, after) for k in ("cache_hits", "cache_misses")):
        hits = after.api["cache_hits"] - before.api["cache_hits"]
        reads = hits + after.api["cache_misses"] - before.api["cache_misses"]
        ratio = round(hits / reads, 4) if reads > 0 else None
    return {
        "t": round(after.at, 3),
        "relay_lag_ms": None if relay is None else relay.lag_ms,
        "relay_unpublished": None if relay is None else relay.unpublished,
        "consumer_lag": after.status.consumer_lag_total,
        "dlq": after.status.dlq_count,
        "topics_eps": rate(after.topic_ends, before.topic_ends),
        "agents_eps": rate(after.agent_events, before.agent_events),
        "cache_hit_ratio": ratio,
        "cache_hit_ratio_total": after.api.get("hit_ratio"),
    }


def api_metrics_url(settings: Settings) -> str:
    if settings.dashboard_api_metrics_url:
        return settings.dashboard_api_metrics_url
    scheme = "https" if settings.api_tls_cert else "http"
    return f"{scheme}://{settings.api_host}:{settings.api_port}/metrics"


async def read_service_counts(settings: Settings) -> dict[str, Any]:
    """The read service's cache hits and misses and its refusals (from its Prometheus text), or why not."""
    url = api_metrics_url(settings)
    context = ssl.create_default_context(cafile=settings.api_tls_cert) if url.startswith("https") else None
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=_API_TIMEOUT_S)) as session,
            session.get(url, ssl=context if context is not None else True) as resp,
        ):
            resp.raise_for_status()
            text = (await resp.read()).decode("utf-8", errors="replace")
    except (aiohttp.ClientError, TimeoutError, ssl.SSLError, OSError) as exc:
        return {"url": url, "reachable": False, "error": f"{type(exc).__name__}: {str(exc)[:160]}"}
    return {"url": url, "reachable": True, **service_counts(text)}


_COUNTS = {
    f"tenderhub_api_{key}_total": key for key in ("cache_hits", "cache_misses", "redis_fallbacks", "quota_refusals")
}


def service_counts(text: str) -> dict[str, Any]:
    """The counters the page shows, from Prometheus text (a sample may carry a timestamp after its value); a value
    that is not a finite number is left out, so the page's JSON stays valid."""
    counts: dict[str, Any] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        key = _COUNTS.get(name)
        fields = rest.split()
        if key is None or not fields:
            continue
        try:
            value = float(fields[0])
        except ValueError:
            continue
        if math.isfinite(value):
            counts[key] = value
    total = counts.get("cache_hits", 0.0) + counts.get("cache_misses", 0.0)
    counts["hit_ratio"] = round(counts.get("cache_hits", 0.0) / total, 4) if total > 0 else None
    return counts


def page_html() -> str:
    return resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8")


def install(settings: Settings, pipeline: Pipeline) -> Dashboard:
    """Add the dashboard's two pages to the pipeline's Faust web view."""
    dashboard = Dashboard(settings, pipeline)
    html = page_html()

    async def page(web: Any, request: Any) -> Any:
        return web.html(html)

    async def status(web: Any, request: Any) -> Any:
        return web.json(await dashboard.status())

    pipeline.app.page(PAGE)(page)
    pipeline.app.page(STATUS)(status)
    return dashboard
