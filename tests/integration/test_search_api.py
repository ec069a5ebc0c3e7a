"""Tender search over real HTTP against the real MariaDB full-text index and Redis: results, filters, bad input, the
cache (filled once, served from Redis, dropped by the `search_cache` agent when a tender in it changes, never filled
with results read before a drop), the daily search quota, and Redis down (answers from MySQL)."""

from __future__ import annotations

import datetime as dt
import random
import string
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import redis as sync_redis
import sqlalchemy as sa
from pydantic import SecretStr

from schema.settings import Settings
from sinks.redis import RedisSink
from sinks.search import STOPWORDS, SearchCache, SearchQuery, TenderSearch
from streams.agents.search_cache import SPEC
from streams.readiness.coverage import resolve_province
from streams.testing import AgentHarness, event
from tenderhub.api.tokens import issue
from tenderhub.processes import free_port
from tests.integration.test_read_api import client_for, get

AS_OF = dt.date(2025, 9, 25)


class Tenders:
    """Four tenders in MySQL whose texts hold a word no other row has (`self.word`), and a token."""

    def __init__(self, settings: Settings, engine: sa.Engine) -> None:
        uid = uuid.uuid4().hex[:10]
        self.word = "zq" + "".join(chr(ord("a") + int(c, 16) % 26) for c in uid)  # letters only: one full-text word
        self.settings = settings.model_copy(update={"redis_key_prefix": f"test:search{uid}:", "as_of": AS_OF})
        self.engine = engine
        rows = [
            ("Construction of a community hall", "Gauteng", "active", "2025-10-20 10:00:00", "City of Tshwane"),
            ("Construction of a clinic", "Western Cape", "active", "2025-10-21 10:00:00", "City of Cape Town"),
            ("Supply of road construction materials", "Gauteng", "active", "2025-09-01 10:00:00", "Gauteng Roads"),
            ("Cleaning services", "Gauteng", "cancelled", "2025-11-01 10:00:00", "City of Tshwane"),
        ]
        self.ids: list[int] = []
        with engine.begin() as conn:
            for n, (title, province, status, closing, buyer) in enumerate(rows):
                self.ids.append(
                    int(
                        conn.execute(
                            sa.text(
                                "INSERT INTO tenders (ocid, title, description, buyer, status, closing_at, province) "
                                "VALUES (:o, :t, :d, :b, :s, :c, :p)"
                            ),
                            {
                                "o": f"ocds-search-{uid}-{n}",
                                "t": f"{title} {self.word}",
                                "d": f"Tender {n} of the search test; CIDB 4GB",
                                "b": buyer,
                                "s": status,
                                "c": closing,
                                "p": province,
                            },
                        ).lastrowid
                        or 0
                    )
                )
            team = conn.execute(sa.text("INSERT INTO teams (name) VALUES (:n)"), {"n": f"search-{uid}"}).lastrowid
            user = conn.execute(
                sa.text("INSERT INTO users (team_id, email, display_name) VALUES (:t, :e, 'Searcher')"),
                {"t": team, "e": f"search-{uid}@example.org"},
            ).lastrowid
        self.team, self.user = int(team or 0), int(user or 0)
        self.token = issue(engine, self.user, self.team, "search test")[1]

    def drop(self, redis_client: sync_redis.Redis) -> None:
        keys = list(redis_client.scan_iter(match=f"{self.settings.redis_key_prefix}*"))
        if keys:
            redis_client.delete(*keys)
        with self.engine.begin() as conn:
            expand = sa.bindparam("i", expanding=True)
            conn.execute(sa.text("DELETE FROM tenders WHERE id IN :i").bindparams(expand), {"i": self.ids})
            conn.execute(sa.text("DELETE FROM api_tokens WHERE user_id = :u"), {"u": self.user})
            conn.execute(sa.text("DELETE FROM users WHERE id = :u"), {"u": self.user})
            conn.execute(sa.text("DELETE FROM teams WHERE id = :t"), {"t": self.team})


@pytest_asyncio.fixture
async def tenders(settings: Settings, engine: sa.Engine, redis_client: sync_redis.Redis) -> AsyncIterator[Tenders]:
    t = Tenders(settings, engine)
    try:
        yield t
    finally:
        t.drop(redis_client)


def titles(body: dict[str, Any]) -> list[str]:
    return [r["title"].rsplit(" ", 1)[0] for r in body["data"]]


@pytest.mark.asyncio
async def test_search_finds_by_words_and_filters_and_is_cached_until_a_tender_in_it_changes(
    tenders: Tenders, engine: sa.Engine
) -> None:
    client = await client_for(tenders.settings)
    token, w = tenders.token, tenders.word
    try:
        status, body, _ = await get(client, f"/v1/search?q=construct+{w}", token)
        assert status == 200 and body["source"] == "mysql" and body["cached"] is False, body
        assert sorted(titles(body)) == [
            "Construction of a clinic",
            "Construction of a community hall",
            "Supply of road construction materials",
        ]
        assert all(r["relevance"] > 0 for r in body["data"])
        # The same meaning (case, stopwords, word order, repeats) is the same cache entry.
        status, again, _ = await get(client, f"/v1/search?q={w.upper()}+the+CONSTRUCT+of+{w}", token)
        assert status == 200 and again["source"] == "redis" and again["cached"] is True
        assert again["data"] == body["data"]

        # Filters: province by name or alias, open as of today (the road tender closed on 1 September), dates.
        status, body, _ = await get(client, f"/v1/search?q={w}&province=GP&status=open", token)
        assert titles(body) == ["Construction of a community hall"] and body["data"][0]["open"] is True
        status, body, _ = await get(client, f"/v1/search?q={w}&status=cancelled", token)
        assert titles(body) == ["Cleaning services"] and body["data"][0]["open"] is False
        status, body, _ = await get(client, f"/v1/search?q={w}&closes_after=2025-10-21&closes_before=2025-10-31", token)
        assert titles(body) == ["Construction of a clinic"]
        status, body, _ = await get(client, f"/v1/search?q={w}&limit=2&offset=3", token)
        assert len(body["data"]) == 1

        # The hall is cancelled in MySQL, and its event reaches the owning agent: every cached search holding it is
        # dropped, and the next search reads MySQL again.
        hall = tenders.ids[0]
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE tenders SET status = 'cancelled' WHERE id = :i"), {"i": hall})
        status, cached, _ = await get(client, f"/v1/search?q=construct+{w}", token)
        assert cached["source"] == "redis"  # the change has not reached the agent yet
        async with AgentHarness(SPEC, tenders.settings, own_namespace=False) as agent:
            await agent.send(event("tender.closed", {"tender_id": hall, "status": "cancelled"}, seq=1))
        status, body, _ = await get(client, f"/v1/search?q=construct+{w}", token)
        assert body["source"] == "mysql"
        assert {r["id"]: r["status"] for r in body["data"]}[hall] == "cancelled"
        status, body, _ = await get(client, f"/v1/search?q={w}&province=Gauteng&status=open", token)
        assert body["source"] == "mysql" and body["data"] == []
        # A search that did not hold the hall is still cached.
        status, body, _ = await get(client, f"/v1/search?q={w}&status=cancelled", token)
        assert body["source"] == "redis"
    finally:
        await client.close()


@pytest.mark.asyncio
async def test_a_search_read_before_a_drop_is_not_cached(tenders: Tenders, engine: sa.Engine) -> None:
    redis = RedisSink.from_settings(tenders.settings, key_prefix=tenders.settings.redis_key_prefix)
    cache = SearchCache(redis)
    searcher = TenderSearch(cache, engine, lambda: AS_OF)
    query = SearchQuery.parse({"q": tenders.word}, resolve_province)
    digest = query.digest(AS_OF)
    try:
        rows, epoch = await cache.get(digest)
        assert rows is None
        stale = searcher._select(query, AS_OF)  # the search reads MySQL ...
        assert await cache.drop([tenders.ids[1]]) == 0  # ... a tender changes meanwhile, and its agent drops ...
        assert await cache.fill(digest, epoch, stale) is False  # ... so what the search read is not cached
        assert (await cache.get(digest))[0] is None
        # Read again after the drop: cached, and dropped with any of its tenders.
        rows, epoch = await cache.get(digest)
        assert await cache.fill(digest, epoch, searcher._select(query, AS_OF)) is True
        assert (await cache.get(digest))[0] is not None
        assert await cache.drop([tenders.ids[3]]) == 1
        assert (await cache.get(digest))[0] is None
        assert await cache.drop([tenders.ids[3]]) == 0  # idempotent
        # An entry that is not what fill writes (another writer's, a corrupted one) is a miss, and the next fill
        # replaces it.
        await redis.client().set(redis.full_key(f"search:{{cache}}:{digest}", "string"), b"\xff not json")
        rows, epoch = await cache.get(digest)
        assert rows is None
        assert await cache.fill(digest, epoch, searcher._select(query, AS_OF)) is True
        assert (await cache.get(digest))[0] is not None
    finally:
        await redis.aclose()


@pytest.mark.asyncio
async def test_bad_search_input_gets_a_422_that_says_what_is_wrong(tenders: Tenders) -> None:
    client = await client_for(tenders.settings)
    try:
        for query, word in [
            ("", "give words"),
            ("q=a+of+the", "give words"),  # only short words and stopwords: nothing to search for
            ("q=" + "x" * 201, "at most 200"),
            ("q=" + "+".join(f"word{n}" for n in range(9)), "at most 8"),
            ("q=" + "y" * 90, "longer than 84"),
            ("q=hall&province=Atlantis", "province"),
            ("q=hall&province=" + "G" * 65, "province"),
            ("q=hall&status=closed", "status"),
            ("q=hall&closes_after=2025-13-01", "calendar date"),
            ("q=hall&closes_before=yesterday", "YYYY-MM-DD"),
            ("q=hall&closes_after=2025-10-02&closes_before=2025-10-01", "later than"),
            ("q=hall&limit=51", "limit"),
            ("q=hall&offset=-1", "offset"),
            ("q=hall&sort=price", "unknown parameter"),
            ("q=%22%2B%29%28*%40%3E%3C~", "give words"),  # boolean-mode operators only
        ]:
            status, body, _ = await get(client, f"/v1/search?{query}", tenders.token)
            assert status == 422 and word in body["error"], (query, status, body)
        # Boolean-mode operators around words are dropped, not passed to MySQL: every word is required.
        operators = f"%22{tenders.word}%22+%2Bhall*+%28-community%29"  # "word" +hall* (-community)
        status, body, _ = await get(client, f"/v1/search?q={operators}", tenders.token)
        assert status == 200 and titles(body) == ["Construction of a community hall"]
    finally:
        await client.close()


@pytest.mark.asyncio
async def test_searches_have_a_daily_quota_and_redis_down_still_searches_mysql(tenders: Tenders) -> None:
    client = await client_for(tenders.settings.model_copy(update={"api_searches_per_day": 2}))
    try:
        for _ in range(2):
            status, _, _ = await get(client, f"/v1/search?q={tenders.word}", tenders.token)
            assert status == 200
        status, body, headers = await get(client, f"/v1/search?q={tenders.word}", tenders.token)
        assert status == 429 and "searches per day" in body["error"]
        status, body, _ = await get(client, f"/v1/search?q={tenders.word}")  # public data needs a token by default
        assert status == 401 and "bearer token" in body["error"]
        assert 1 <= int(headers["Retry-After"]) <= 24 * 3600
        status, _, _ = await get(client, "/v1/tenders/1", tenders.token)  # other reads are not searches
        assert status in (200, 404)
    finally:
        await client.close()
    down = tenders.settings.model_copy(update={"redis_url": SecretStr(f"redis://127.0.0.1:{free_port()}/0")})
    client = await client_for(down)
    try:
        status, body, _ = await get(client, f"/v1/search?q={tenders.word}&status=open", tenders.token)
        assert status == 200 and body["source"] == "mysql" and len(body["data"]) == 2
    finally:
        await client.close()


def test_the_stopwords_left_out_of_queries_are_the_servers(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        found = conn.execute(sa.text("SELECT value FROM INFORMATION_SCHEMA.INNODB_FT_DEFAULT_STOPWORD"))
        server = {r[0] for r in found}
    assert server == STOPWORDS


HOSTILE_QUERIES = [
    "q=%ff",
    "q=%00abc",
    "q=" + "%e2%80%ae" * 5 + "road",
    "q=road&q=hall",
    "province=%ff",
    "status=%00",
    "closes_after=2025-02-30",
    "closes_after=%EF%BC%92%EF%BC%90%EF%BC%92%EF%BC%95-01-01",  # full-width digits
    "limit=%EF%BC%95",
    "q=" + "%C3%A9" * 90,
    "q=" + "%E5%AD%97" * 90,
    "q=road%20" + "%F0%9F%8F%97" * 20,
    "q=road&province=",
    "q=road&province=%20",
    "q=%22%22%22",
    "q=road&limit=",
    "q=%2Broad%2A%2A",
    "q=_road_",
    "q=a" + "%20b" * 100,
]


@pytest.mark.asyncio
async def test_hostile_search_input_never_gets_a_5xx(tenders: Tenders) -> None:
    """Malformed UTF-8, NUL, direction marks, full-width digits, emoji, operators and random printable values in
    every parameter: each gets a 200 or a 4xx, never a 5xx."""
    rnd = random.Random(20261205)
    alphabet = string.printable + "\u00e9\u00fc\u5b57\u202e\u0000\U0001f3d7"
    cases = list(HOSTILE_QUERIES)
    for _ in range(150):
        name = rnd.choice(["q", "province", "status", "closes_after", "closes_before", "limit", "offset"])
        value = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 30)))
        cases.append(f"q={tenders.word}&{name}={urllib.parse.quote(value)}")
    settings = tenders.settings.model_copy(update={"api_requests_per_minute": 100_000, "api_searches_per_day": 100_000})
    client = await client_for(settings)
    try:
        statuses = {}
        for case in cases:
            resp = await client.get(f"/v1/search?{case}", headers={"Authorization": f"Bearer {tenders.token}"})
            statuses[case] = resp.status
            assert resp.status < 500, (case, resp.status, await resp.text())
        assert {s for s in statuses.values()} <= {200, 400, 422}, statuses
    finally:
        await client.close()
