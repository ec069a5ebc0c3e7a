"""The read service (`tenderhub api`): cache-first reads over HTTP, team-scoped by bearer token, with quotas.

    GET /healthz                                        no token
    GET /metrics                                        no token: Prometheus metrics of the service
    GET /v1/tenders/{tender_id}                         public: the tender's card and summary, `open` as of today
    GET /v1/spend?window_days=&currency=&top=           public: spend by buyer (all time, or a rolling window)
    GET /v1/search?q=&province=&status=&closes_after=&closes_before=&limit=&offset=
                                                        public: tender search, cached (sinks/search.py)
    GET /v1/teams/{team_id}/top?k=                      the team's best open tenders with their checklists
    GET /v1/teams/{team_id}/tenders/{tender_id}/score   the team's score for one tender, with its checklist
    GET /v1/users/{user_id}/activity?limit=             the user's latest activity

Every answer is JSON: `{"data": ..., "source": "redis" | "mongodb" | "mysql", "cached": bool}`, or `{"error": ...}`
with 401 (no or bad token), 403 (another team's or user's data), 404, 422 (an id or parameter that is not valid,
said how), 429 (quota; Retry-After), 503 (the stores that could answer are down). Ids and parameters are checked
before they become a key, a filter or SQL; nothing a client sends reaches a store unchecked.

Reads go through `sinks.reader.CacheFirstReader` (the one implementation): Redis first, MongoDB when Redis has
nothing or cannot answer. Spend lives in Redis only: when Redis cannot answer it is recomputed from MySQL (the read-only
account) with the spend agent's own pure functions. The service never writes a cache back: every Redis key family
has one owning agent, and a write-back could land after the owner dropped the key. Search is the one exception, and
keeps that rule: it fills `search:*` only through the owner's guarded script, which refuses a result read before the
owner's last drop (sinks/search.py). Concurrent requests that miss the cache for the same thing share one fallback
read (`SingleFlight`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import asdict, is_dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from schema.checked import digits_within
from schema.events import MAX_ID
from schema.heap import watch_gc
from schema.settings import Settings
from sinks.errors import SinkError, TransientSinkError
from sinks.reader import BuyerSpend, CacheFirstReader, Read
from sinks.search import InvalidSearchError, SearchQuery, TenderSearch
from streams.readiness.coverage import resolve_province
from streams.spend import recompute, recompute_window
from tenderhub.api.quotas import Quotas, Verdict
from tenderhub.api.tokens import Principal, TokenStore

log = logging.getLogger(__name__)

PRINCIPAL = web.RequestKey("principal", object)
MAX_TOP = 100
MAX_ACTIVITY = 200
MAX_SPEND_ROWS = 500
_PUBLIC_PREFIXES = ("/v1/tenders/", "/v1/spend", "/v1/search")
_TENDER_ROWS_SQL = "SELECT id, buyer, currency, budget, status, published_at FROM tenders"


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, dict(headers or {})


class SingleFlight:
    """Concurrent calls for the same key share one running call."""

    def __init__(self) -> None:
        self._running: dict[tuple[Any, ...], asyncio.Future[Any]] = {}

    async def run(self, key: tuple[Any, ...], call: Callable[[], Awaitable[Any]]) -> Any:
        running = self._running.get(key)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[Any] = asyncio.ensure_future(call())
        self._running[key] = future
        try:
            return await asyncio.shield(future)
        finally:
            if future.done():
                self._running.pop(key, None)
            else:
                future.add_done_callback(lambda _: self._running.pop(key, None))


def positive_id(name: str, raw: str) -> int:
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19 or raw.startswith("0") or int(raw) > MAX_ID:
        raise ApiError(422, f"{name} must be a positive integer of at most 2^63-1, got {raw[:40]!r}")
    return int(raw)


def bounded_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    value = digits_within(raw, low, high)
    if value is None:
        raise ApiError(422, f"{name} must be an integer from {low} to {high}, got {raw[:40]!r}")
    return value


def _json_default(value: object) -> object:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _finite(value: object) -> object:
    """`value` with every non-finite float as None (JSON has no NaN or Infinity)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if is_dataclass(value) and not isinstance(value, type):
        return _finite(asdict(value))
    return value


def dumps(value: object) -> str:
    """Strict JSON: a non-finite number a store gave back is answered as null (and logged), never as NaN."""
    try:
        return json.dumps(value, default=_json_default, allow_nan=False)
    except ValueError:
        log.warning("a non-finite number in an answer was sent as null")
        return json.dumps(_finite(value), default=_json_default, allow_nan=False)


def answer(read: Read, status: int = 200) -> web.Response:
    body = {"data": read.value, "source": read.source, "cached": read.source == "redis"}
    return web.json_response(body, status=status, dumps=dumps)


Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


def client_address(remote: str | None, forwarded_for: str | None, proxies: Networks) -> str:
    """The client a request is counted against: its peer, or, when the peer is a trusted proxy, the last address of
    X-Forwarded-For that is not one (each proxy appends the address it got the request from; anything before the
    first trusted hop could be made up by the client)."""
    if not remote or not proxies or not _trusted(remote, proxies):
        return remote or "unknown"
    for hop in reversed((forwarded_for or "").split(",")):
        hop = hop.strip()
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return remote  # a hop that is not an address: the header cannot be trusted past it
        if not _trusted(hop, proxies):
            return hop
    return remote


def _trusted(address: str, proxies: Networks) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in proxies)


def _within(verdict: Verdict, per: str, what: str = "requests") -> None:
    if not verdict.allowed:
        raise ApiError(
            429,
            f"quota of {verdict.limit} {what} per {per} used; retry in {verdict.retry_after_s} s",
            {"Retry-After": str(verdict.retry_after_s)},
        )


class ReadService:
    def __init__(
        self,
        settings: Settings,
        reader: CacheFirstReader,
        tokens: TokenStore,
        quotas: Quotas,
        searcher: TenderSearch,
        mysql: sa.Engine,
    ) -> None:
        self.settings = settings
        self.reader = reader
        self.tokens = tokens
        self.quotas = quotas
        self.searcher = searcher
        self.mysql = mysql
        self.flight = SingleFlight()
        self._proxies = settings.api_proxy_networks
        self.cache_hits = 0
        self.cache_misses = 0
        self.metrics = ApiMetrics(self)

    async def reader_close(self) -> None:
        """Close the clients the service opened."""
        await self.reader.close()
        self.mysql.dispose()

    # -- middleware ---------------------------------------------------------------------------------------------

    def _address(self, request: web.Request) -> str:
        # Every X-Forwarded-For line: a proxy may add a line of its own rather than append to the client's.
        forwarded = ",".join(request.headers.getall("X-Forwarded-For", []))
        return client_address(request.remote, forwarded, self._proxies)

    @web.middleware
    async def guard(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Any:
        """Errors as JSON (never a traceback to the client), the token, the quota; each request timed and counted."""
        started = time.perf_counter()
        response = await self._guarded(request, handler)
        route = request.match_info.route.resource
        self.metrics.observe(
            route.canonical if route is not None else "(no route)", response.status, time.perf_counter() - started
        )
        return response

    async def _guarded(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            if request.path not in _OPEN_PATHS:
                principal = await self._principal(request)
                request[PRINCIPAL] = principal
                _within(
                    await self.quotas.take(principal.token_id if principal else None, self._address(request)), "minute"
                )
            response = await handler(request)
        except ApiError as exc:
            return web.json_response({"error": exc.message}, status=exc.status, headers=exc.headers)
        except web.HTTPException as exc:  # aiohttp's own 404 / 405
            return web.json_response({"error": exc.reason}, status=exc.status)
        except SinkError as exc:
            log.warning("%s %s: the stores cannot answer: %s", request.method, request.path, exc)
            return web.json_response({"error": "the stores that hold this cannot answer now; retry"}, status=503)
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            return web.json_response({"error": "internal error (logged)"}, status=500)
        return response

    async def _principal(self, request: web.Request) -> Principal | None:
        header = request.headers.get("Authorization", "")
        if not header:
            if self.settings.api_public_open and request.path.startswith(_PUBLIC_PREFIXES):
                return None
            raise ApiError(401, "a bearer token is needed (Authorization: Bearer th_...)", _CHALLENGE)
        scheme, _, token = header.partition(" ")

        async def address_not_used_up() -> None:
            # A token never seen valid costs a MySQL query: an address whose invalid tokens used up their quota gets
            # no more such lookups this minute, so made-up tokens cannot flood MySQL.
            _within(await self.quotas.bad_tokens_used_up(self._address(request)), "minute", "invalid tokens")

        principal = (
            await self.tokens.principal(token.strip(), address_not_used_up) if scheme.lower() == "bearer" else None
        )
        if principal is None:
            _within(await self.quotas.take_bad_token(self._address(request)), "minute", "invalid tokens")
            raise ApiError(401, "the bearer token is not valid (unknown, revoked or malformed)", _CHALLENGE)
        return principal

    @staticmethod
    def _own_team(request: web.Request, team_id: int) -> None:
        principal = request.get(PRINCIPAL)
        if not isinstance(principal, Principal) or principal.team_id != team_id:
            raise ApiError(403, f"this token may not read team {team_id}'s data")

    def _count(self, read: Read) -> Read:
        if read.source == "redis":
            self.cache_hits += 1
        elif read.source is not None:
            self.cache_misses += 1
        return read

    # -- handlers -------------------------------------------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def prometheus(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), content_type="text/plain")

    async def tender(self, request: web.Request) -> web.Response:
        tender_id = positive_id("tender_id", request.match_info["tender_id"])
        read = self._count(await self.flight.run(("tender", tender_id), lambda: self.reader.tender_card(tender_id)))
        if read.value is None:
            raise ApiError(404, f"no tender {tender_id}")
        return answer(read)

    async def top(self, request: web.Request) -> web.Response:
        team_id = positive_id("team_id", request.match_info["team_id"])
        self._own_team(request, team_id)
        k = bounded_int(request, "k", self.settings.readiness_top_k, 1, MAX_TOP)
        read = self._count(await self.flight.run(("top", team_id, k), lambda: self.reader.top_tenders(team_id, k)))
        return answer(read)

    async def score(self, request: web.Request) -> web.Response:
        team_id = positive_id("team_id", request.match_info["team_id"])
        tender_id = positive_id("tender_id", request.match_info["tender_id"])
        self._own_team(request, team_id)
        read = self._count(await self.reader.team_score(team_id, tender_id))
        if read.value is None:
            raise ApiError(404, f"team {team_id} has no score for tender {tender_id}")
        return answer(read)

    async def activity(self, request: web.Request) -> web.Response:
        user_id = positive_id("user_id", request.match_info["user_id"])
        principal = request.get(PRINCIPAL)
        if not isinstance(principal, Principal) or principal.user_id != user_id:
            raise ApiError(403, f"this token may not read user {user_id}'s activity")
        limit = bounded_int(request, "limit", 20, 1, MAX_ACTIVITY)
        return answer(self._count(await self.reader.recent_activity(user_id, limit)))

    async def search(self, request: web.Request) -> web.Response:
        try:
            query = SearchQuery.parse(request.query, resolve_province)
        except InvalidSearchError as exc:
            raise ApiError(422, str(exc)) from None
        principal = request.get(PRINCIPAL)
        token_id = principal.token_id if isinstance(principal, Principal) else None
        _within(await self.quotas.take_search(token_id, self._address(request)), "day", "searches")
        as_of = self.settings.today()
        digest = query.digest(as_of)
        read = await self.flight.run(("search", digest), lambda: self.searcher.search(query, as_of, digest))
        return answer(self._count(read))

    async def spend(self, request: web.Request) -> web.Response:
        top = bounded_int(request, "top", 10, 1, MAX_SPEND_ROWS)
        window = bounded_int(request, "window_days", 0, 0, 3650) or None
        if window is not None and window != self.settings.spend_window_days:
            raise ApiError(
                422, f"window_days: spend is kept for a {self.settings.spend_window_days}-day window, not {window}"
            )
        currency = request.query.get("currency")
        if currency is not None and not (len(currency) == 3 and currency.isascii() and currency.isupper()):
            raise ApiError(422, f"currency must be a 3-letter ISO code such as ZAR, got {currency[:40]!r}")

        async def read() -> Read:
            try:
                # All members when filtering by currency: the sorted set mixes currencies.
                got = await self.reader.spend_by_buyer(MAX_SPEND_ROWS * 20 if currency else top, window)
            except SinkError as exc:
                log.warning("spend: Redis cannot answer (%s); recomputing from MySQL", exc)
                # One recompute per window however many tops and currencies are asked for meanwhile.
                rows = await self.flight.run(("spend-mysql", window), lambda: self._spend_from_mysql(window))
                return Read(rows, "mysql")
            return got

        got = self._count(await self.flight.run(("spend", window, currency, top), read))
        rows = [r for r in (got.value or []) if currency is None or r.currency == currency][:top]
        return answer(Read(rows, got.source))

    async def _spend_from_mysql(self, window_days: int | None) -> list[BuyerSpend]:
        try:
            return await asyncio.to_thread(self._recompute_spend, window_days)
        except (sa.exc.OperationalError, sa.exc.TimeoutError) as exc:
            raise TransientSinkError(f"MySQL cannot answer the spend recompute: {str(exc)[:200]}") from exc

    def _recompute_spend(self, window_days: int | None) -> list[BuyerSpend]:
        with self.mysql.connect() as conn:
            rows = [dict(r) for r in conn.execute(sa.text(_TENDER_ROWS_SQL)).mappings()]
        totals = recompute(rows) if window_days is None else recompute_window(rows, self.settings.today(), window_days)
        ranked = sorted(totals.items(), key=lambda item: (item[1].amount, item[0]), reverse=True)
        return [BuyerSpend(buyer, cur, float(e.amount), e.tenders, e.without_budget) for (buyer, cur), e in ranked]

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.guard])
        app.router.add_get("/healthz", self.health)
        app.router.add_get("/metrics", self.prometheus)
        # Any path segment reaches the handler, which says what is wrong with it (aiohttp's default would 404 ids
        # holding braces).
        app.router.add_get("/v1/tenders/{tender_id:[^/]+}", self.tender)
        app.router.add_get("/v1/spend", self.spend)
        app.router.add_get("/v1/search", self.search)
        app.router.add_get("/v1/teams/{team_id:[^/]+}/top", self.top)
        app.router.add_get("/v1/teams/{team_id:[^/]+}/tenders/{tender_id:[^/]+}/score", self.score)
        app.router.add_get("/v1/users/{user_id:[^/]+}/activity", self.activity)
        return app


_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="tenderhub"'}
# Liveness and the Prometheus metrics need no token (the service binds to localhost unless told otherwise).
_OPEN_PATHS = ("/healthz", "/metrics")
# Request durations: from a cached read (about a millisecond) to a fallback queued behind a slow store.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ApiMetrics(Collector):
    """The read service's Prometheus metrics: requests by route and status with their durations, and (read at scrape
    time) cache hits and misses, reads Redis could not answer, quota refusals and quotas that could not be counted."""

    def __init__(self, service: ReadService) -> None:
        self._service = service
        self.registry = CollectorRegistry()
        self.seconds = Histogram(
            "tenderhub_api_request_seconds",
            "Time to answer one request",
            ["route", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(self)
        watch_gc(self.registry)

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.seconds.labels(route, str(status)).observe(seconds)

    def collect(self) -> Iterator[Metric]:
        s = self._service
        for name, doc, value in (
            ("cache_hits", "Reads answered from Redis", s.cache_hits),
            ("cache_misses", "Reads answered by a fallback (MongoDB, MySQL)", s.cache_misses),
            ("redis_fallbacks", "Reads Redis could not answer (it was down or too slow)", s.reader.redis_failures),
            ("quota_refusals", "Requests refused with 429", s.quotas.refused),
            ("quota_unchecked", "Requests Redis could not count (counted in this process instead)", s.quotas.unchecked),
        ):
            family = CounterMetricFamily(f"tenderhub_api_{name}", doc)
            family.add_metric([], float(value))
            yield family

    def render(self) -> bytes:
        return generate_latest(self.registry)
