"""The read service, `tenderhub api serve` (its own process, so reads scale apart from the stream workers): see
`tenderhub.api.app` for the endpoints, `tokens` for access and `quotas` for the limits."""

from __future__ import annotations

import logging
import ssl

from aiohttp import web

from schema.engines import mysql_engine
from schema.heap import freeze_startup_heap
from schema.redis_keys import API_FAMILIES, CATALOGUE
from schema.settings import Settings, SettingsError
from sinks.mongo import MongoSink
from sinks.reader import CacheFirstReader
from sinks.redis import RedisSink
from sinks.retry import RetryPolicy
from sinks.search import SearchCache, TenderSearch
from tenderhub.api.app import ReadService
from tenderhub.api.quotas import Quotas
from tenderhub.api.tokens import TokenStore

log = logging.getLogger(__name__)

# A read waits for a store briefly and falls back rather than queue behind a store that is down.
STORE_TIMEOUT_S = 1.0
ONE_TRY = RetryPolicy(attempts=1, base_delay_s=0.05, max_delay_s=0.05)
# Redis connections of one service process; requests beyond wait for one (up to STORE_TIMEOUT_S).
REDIS_POOL = 64


def build_service(settings: Settings) -> ReadService:
    if settings.mysql_reader_url is None:
        raise SettingsError(
            "TENDERHUB_MYSQL_READER_URL is not set: the read service looks up tokens and recomputes spend with the "
            "read-only MySQL account. Fix: export it (the dev stack writes it to .stack/tenderhub.env)."
        )
    redis = RedisSink.from_settings(
        settings,
        key_prefix=settings.redis_key_prefix,
        retry_policy=ONE_TRY,
        timeout_s=STORE_TIMEOUT_S,
        families=(*CATALOGUE, *API_FAMILIES),
        pool_size=REDIS_POOL,
    )
    mongo = MongoSink.from_settings(settings, retry_policy=ONE_TRY, timeout_s=STORE_TIMEOUT_S, socket_timeout_s=10)
    reader = CacheFirstReader(redis, mongo, settings.today)
    engine = mysql_engine(settings.mysql_reader_url, pool_size=8, pool_timeout=5)
    return ReadService(
        settings,
        reader,
        TokenStore(engine, settings.api_token_cache_s),
        Quotas(redis, settings.api_requests_per_minute, settings.api_searches_per_day),
        TenderSearch(SearchCache(redis), engine, settings.today),
        engine,
    )


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if (settings.api_tls_cert is None) != (settings.api_tls_key is None):
        raise SettingsError("TENDERHUB_API_TLS_CERT and TENDERHUB_API_TLS_KEY go together: set both or neither")
    if settings.api_tls_cert is None or settings.api_tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.api_tls_cert, settings.api_tls_key)
    return context


def serve(settings: Settings) -> None:
    """Serve until SIGTERM or SIGINT, on `api_host:api_port` (localhost by default), HTTPS when TLS is set."""
    service = build_service(settings)
    app = service.app()

    async def close(_: web.Application) -> None:
        await service.reader_close()

    async def settled(_: web.Application) -> None:
        freeze_startup_heap("read service")  # out of every full collection from now on (schema/heap.py)

    app.on_startup.append(settled)
    app.on_cleanup.append(close)
    context = ssl_context(settings)
    scheme = "https" if context else "http"
    log.info("read service on %s://%s:%d/", scheme, settings.api_host, settings.api_port)
    web.run_app(app, host=settings.api_host, port=settings.api_port, ssl_context=context, print=None, access_log=None)
