"""The read service over real HTTP (aiohttp's test server on loopback) against the real stores, filled by the real
agents (streams.testing.AgentHarness): every endpoint, the 401/403/404/422/429 paths, where each answer came from,
and Redis down (answers from MongoDB and MySQL; a closed tender is never served as open)."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import os
import ssl
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import redis as sync_redis
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr
from pymongo import MongoClient

from schema.settings import Settings, load_settings
from streams.agents import registry
from streams.testing import AgentHarness, event
from tenderhub.api import build_service
from tenderhub.api.tokens import issue, revoke
from tenderhub.dashboard import read_service_counts
from tenderhub.processes import Child, free_port
from tests.integration.test_spend_repair import Scratch

AS_OF = dt.date(2025, 9, 25)
OPEN = "2025-10-20T10:00:00"


def tender(tender_id: int, **kw: Any) -> dict[str, Any]:
    return {
        "tender_id": tender_id,
        "ocid": f"ocds-api-{tender_id}",
        "title": f"Construction of a community hall {tender_id}",
        "description": "Construction of a community hall in Soshanguve; CIDB grading of 4GB or higher",
        "buyer": "City of Tshwane",
        "budget": "1500000.00",
        "currency": "ZAR",
        "province": "Gauteng",
        "category": "Construction",
        "published_at": "2025-09-20T09:00:00",
        "closing_at": OPEN,
    } | kw


def company(team_id: int) -> dict[str, Any]:
    return {
        "team_id": team_id,
        "company_id": team_id,
        "company_name": f"Team {team_id} Civils",
        "sectors": ["Construction"],
        "provinces": ["Gauteng"],
        "experience_years": 6,
        "bbbee_level": 2,
        "cidb": [{"class_of_works": "GB", "grade": 5}],
    }


class World:
    """Two teams with a user each, their tokens, and stores filled by the agents."""

    def __init__(self, settings: Settings, engine: sa.Engine) -> None:
        uid = uuid.uuid4().hex[:10]
        self.settings = settings.model_copy(
            update={"mongo_db": f"test_api_{uid}", "redis_key_prefix": f"test:api{uid}:", "as_of": AS_OF}
        )
        with engine.begin() as conn:
            self.teams = []
            self.users = []
            for n in (1, 2):
                team = conn.execute(sa.text("INSERT INTO teams (name) VALUES (:n)"), {"n": f"api-{uid}-{n}"}).lastrowid
                user = conn.execute(
                    sa.text("INSERT INTO users (team_id, email, display_name) VALUES (:t, :e, :d)"),
                    {"t": team, "e": f"api-{uid}-{n}@example.org", "d": f"User {n}"},
                ).lastrowid
                self.teams.append(int(team or 0))
                self.users.append(int(user or 0))
        self.tokens = [issue(engine, u, t, "test")[1] for u, t in zip(self.users, self.teams, strict=True)]
        self.engine = engine
        # The agents' own MySQL: an empty tenders table, so spend (built from MySQL when its store is empty, then
        # folded from the events) holds this world's tenders only, not those other tests left in the shared one.
        self.scratch = Scratch(settings)

    async def fill(self) -> None:
        t1, t2 = self.teams
        events = [
            event("company.updated", company(t1), seq=1),
            event("company.updated", company(t2) | {"provinces": ["Western Cape"]}, seq=2),
            event("tender.created", tender(101), seq=3),
            event("tender.created", tender(102, title="Construction of a clinic"), seq=4),
            event("tender.created", tender(103, budget="250000.00", buyer="Sol Plaatje"), seq=5),
            event("tender.closed", {"tender_id": 103, "status": "cancelled", "reason": "no budget"}, seq=6),
            event("user.activity", {"user_id": self.users[0], "team_id": t1, "action": "tender.viewed"}, seq=7),
            event(
                "user.activity",
                {"user_id": self.users[0], "team_id": t1, "action": "search", "details": {"q": "hall"}},
                seq=8,
                occurred_at="2026-01-05T10:05:00.000Z",
            ),
        ]
        agents = self.settings.model_copy(update={"mysql_url": SecretStr(self.scratch.url)})
        for spec in registry().values():
            async with AgentHarness(spec, agents, own_namespace=False) as h:
                await h.send(*events)
                assert h.dead_letters == [], [d.reason for d in h.dead_letters]

    def drop(self, mongo: MongoClient[dict[str, Any]], redis_client: sync_redis.Redis) -> None:
        self.scratch.drop()
        mongo.drop_database(self.settings.mongo_db)
        keys = list(redis_client.scan_iter(match=f"{self.settings.redis_key_prefix}*"))
        keys += list(redis_client.scan_iter(match=f"{{{self.settings.redis_key_prefix}*"))
        if keys:
            redis_client.delete(*keys)
        with self.engine.begin() as conn:
            conn.execute(
                sa.text("DELETE FROM api_tokens WHERE user_id IN :u").bindparams(sa.bindparam("u", expanding=True)),
                {"u": self.users},
            )
            conn.execute(
                sa.text("DELETE FROM users WHERE id IN :u").bindparams(sa.bindparam("u", expanding=True)),
                {"u": self.users},
            )
            conn.execute(
                sa.text("DELETE FROM teams WHERE id IN :t").bindparams(sa.bindparam("t", expanding=True)),
                {"t": self.teams},
            )


@pytest_asyncio.fixture
async def world(
    settings: Settings, engine: sa.Engine, mongo: MongoClient[dict[str, Any]], redis_client: sync_redis.Redis
) -> AsyncIterator[World]:
    w = World(settings, engine)
    try:
        await w.fill()
        yield w
    finally:
        w.drop(mongo, redis_client)


async def client_for(settings: Settings) -> TestClient:
    service = build_service(settings)
    client = TestClient(TestServer(service.app()))
    await client.start_server()
    client.service = service  # type: ignore[attr-defined]
    return client


async def prometheus(client: TestClient) -> dict[str, float]:
    resp = await client.get("/metrics")
    assert resp.status == 200
    out = {}
    for line in (await resp.text()).splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def get(client: TestClient, path: str, token: str | None = None) -> tuple[int, Any, Any]:
    resp = await client.get(path, headers=bearer(token) if token else {})
    return resp.status, await resp.json(), resp.headers


@pytest.mark.asyncio
async def test_every_endpoint_answers_from_the_cache_first_and_says_so(world: World) -> None:
    client = await client_for(world.settings)
    token, team, user = world.tokens[0], world.teams[0], world.users[0]
    try:
        status, body, _ = await get(client, "/healthz")
        assert status == 200 and body == {"ok": True}

        status, body, _ = await get(client, "/v1/tenders/101", token)
        assert status == 200 and body["source"] == "redis" and body["cached"] is True, body
        assert body["data"]["title"] == "Construction of a community hall 101" and body["data"]["open"] is True
        # A cancelled tender has no card in Redis: its document says why, and it is not open.
        status, body, _ = await get(client, "/v1/tenders/103", token)
        assert status == 200 and body["source"] == "mongodb" and body["cached"] is False
        assert body["data"]["open"] is False and body["data"]["status"] == "cancelled"

        status, body, _ = await get(client, f"/v1/teams/{team}/top", token)
        assert status == 200 and body["source"] == "redis"
        top = body["data"]
        assert {t["tender_id"] for t in top} == {101, 102} and all(t["checklist"] for t in top)

        status, body, _ = await get(client, f"/v1/teams/{team}/tenders/101/score", token)
        assert status == 200 and body["data"]["open"] is True and body["data"]["checklist"]
        assert body["data"]["score"] == next(t["score"] for t in top if t["tender_id"] == 101)

        status, body, _ = await get(client, f"/v1/users/{user}/activity?limit=1", token)
        assert status == 200 and [a["action"] for a in body["data"]] == ["search"]

        status, body, _ = await get(client, "/v1/spend?top=5", token)
        assert status == 200 and body["source"] == "redis"
        assert body["data"] == [
            {"buyer": "City of Tshwane", "currency": "ZAR", "amount": 3_000_000.0, "tenders": 2, "without_budget": 0}
        ]
        status, body, _ = await get(client, "/v1/spend?currency=USD", token)
        assert status == 200 and body["data"] == []
        status, body, _ = await get(client, "/v1/spend?window_days=30&currency=ZAR", token)
        assert status == 200 and body["data"][0]["amount"] == 3_000_000.0

        # What the service did, as Prometheus metrics (no token needed, like /healthz).
        metrics = await prometheus(client)
        assert metrics["tenderhub_api_cache_hits_total"] == 5  # card, top list, three spend reads
        assert metrics["tenderhub_api_cache_misses_total"] == 3  # the cancelled tender, the score, the activity
        assert metrics['tenderhub_api_request_seconds_count{route="/v1/tenders/{tender_id}",status="200"}'] == 2
        assert metrics["tenderhub_api_redis_fallbacks_total"] == 0
    finally:
        await client.close()


@pytest.mark.asyncio
async def test_tokens_teams_and_bad_input_get_the_right_4xx(world: World) -> None:
    client = await client_for(world.settings)
    mine, theirs = world.tokens
    team, other_team = world.teams
    try:
        for path in ("/v1/tenders/101", f"/v1/teams/{team}/top"):
            status, body, headers = await get(client, path)
            assert (
                status == 401 and "bearer token" in body["error"] and headers["WWW-Authenticate"].startswith("Bearer")
            )
        status, body, _ = await get(client, "/v1/tenders/101", "th_" + "x" * 43)
        assert status == 401 and "not valid" in body["error"]
        status, body, _ = await get(client, f"/v1/teams/{other_team}/top", mine)
        assert status == 403 and str(other_team) in body["error"]
        status, body, _ = await get(client, f"/v1/teams/{team}/tenders/101/score", theirs)
        assert status == 403
        status, body, _ = await get(client, f"/v1/users/{world.users[1]}/activity", mine)
        assert status == 403
        status, body, _ = await get(client, "/v1/tenders/999999", mine)
        assert status == 404 and "no tender 999999" in body["error"]
        status, body, _ = await get(client, f"/v1/teams/{team}/tenders/999999/score", mine)
        assert status == 404
        status, body, _ = await get(client, "/v1/nothing/here", mine)
        assert status == 404
        for path, word in [
            ("/v1/tenders/abc", "tender_id"),
            ("/v1/tenders/0", "tender_id"),
            ("/v1/tenders/99999999999999999999", "tender_id"),
            ("/v1/tenders/%7B%22%24gt%22%3A0%7D", "tender_id"),
            (f"/v1/teams/{team}/top?k=1000", "k must be"),
            (f"/v1/teams/{team}/top?k=-1", "k must be"),
            (f"/v1/users/{world.users[0]}/activity?limit=x", "limit"),
            ("/v1/spend?currency=zar", "currency"),
            ("/v1/spend?window_days=7", "30-day window"),
            ("/v1/spend?top=0", "top"),
        ]:
            status, body, _ = await get(client, path, mine)
            assert status == 422 and word in body["error"], (path, status, body)
    finally:
        await client.close()


@pytest.mark.asyncio
async def test_a_revoked_token_and_a_used_up_quota_are_refused(world: World) -> None:
    settings = world.settings.model_copy(update={"api_requests_per_minute": 3, "api_token_cache_s": 0.0})
    client = await client_for(settings)
    try:
        for _ in range(3):
            status, _, _ = await get(client, "/v1/tenders/101", world.tokens[0])
            assert status == 200
        status, body, headers = await get(client, "/v1/tenders/101", world.tokens[0])
        assert status == 429 and 1 <= int(headers["Retry-After"]) <= 60 and "quota" in body["error"]
        # Another token has its own quota.
        status, _, _ = await get(client, "/v1/tenders/101", world.tokens[1])
        assert status == 200
        with world.engine.connect() as conn:
            second = conn.execute(
                sa.text("SELECT id FROM api_tokens WHERE user_id = :u"), {"u": world.users[1]}
            ).scalar_one()
        assert revoke(world.engine, int(second))
        status, body, _ = await get(client, "/v1/tenders/101", world.tokens[1])
        assert status == 401
    finally:
        await client.close()


@pytest.mark.asyncio
async def test_a_top_list_reads_only_its_own_teams_score_documents(world: World) -> None:
    client = await client_for(world.settings)
    mongo = client.service.reader._mongo  # type: ignore[attr-defined]
    real_find = mongo.find_by_ids
    calls: list[tuple[str, str, Any]] = []

    def recorded(collection: str, field: str, ids: Any, fields: Any, *, where: Any = None) -> Any:
        calls.append((collection, field, where))
        return real_find(collection, field, ids, fields, where=where)

    mongo.find_by_ids = recorded
    team = world.teams[0]
    try:
        status, body, _ = await get(client, f"/v1/teams/{team}/top", world.tokens[0])
        assert status == 200 and body["data"]
        # Every team's scores of those tenders would be read (and filtered here) without the team in the query.
        scores = [c for c in calls if c[0] == "readiness_scores"]
        assert scores and all(c[1] == "team_id" or c[2] == {"team_id": team} for c in scores), scores
    finally:
        await client.close()


@pytest.mark.asyncio
async def test_a_token_stops_working_when_its_user_leaves_the_team_it_was_issued_for(world: World) -> None:
    settings = world.settings.model_copy(update={"api_token_cache_s": 0.0})
    client = await client_for(settings)
    team, other_team = world.teams
    mine = world.tokens[0]
    try:
        assert (await get(client, f"/v1/teams/{team}/top", mine))[0] == 200
        with world.engine.begin() as conn:
            conn.execute(sa.text("UPDATE users SET team_id = :t WHERE id = :u"), {"t": other_team, "u": world.users[0]})
        status, body, _ = await get(client, f"/v1/teams/{team}/top", mine)
        assert status == 401 and "not valid" in body["error"], (status, body)
        # Nor does it speak for the new team: a token is bound to the team it was issued for.
        assert (await get(client, f"/v1/teams/{other_team}/top", mine))[0] == 401
    finally:
        await client.close()


@pytest.mark.asyncio
async def test_made_up_tokens_are_counted_against_the_address_before_mysql_is_asked(world: World) -> None:
    # Every lookup goes to MySQL (no cache), so the gate is what keeps a flood from becoming queries.
    settings = world.settings.model_copy(
        update={"api_requests_per_minute": 5, "api_token_cache_s": 0.0, "api_trusted_proxies": "127.0.0.1"}
    )
    client = await client_for(settings)
    lookups = 0
    tokens = client.service.tokens  # type: ignore[attr-defined]
    real_lookup = tokens._lookup

    def counted(digest: str) -> Any:
        nonlocal lookups
        lookups += 1
        return real_lookup(digest)

    async def status(token: str, *forwarded_for: str) -> int:
        headers = [("Authorization", f"Bearer {token}"), *(("X-Forwarded-For", f) for f in forwarded_for)]
        resp = await client.get("/v1/tenders/101", headers=headers)
        return resp.status

    tokens._lookup = counted
    try:
        assert await status(world.tokens[0], "198.51.100.7") == 200  # seen valid from now on
        # A client behind the proxy sends made-up tokens, with a forged first X-Forwarded-For line.
        statuses = [await status(f"th_{n:043d}", "6.6.6.6", "198.51.100.7") for n in range(12)]
        assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}, statuses
        assert lookups == 6, "no lookup once the address used up its quota of invalid tokens"
        # From that address: a token seen valid is looked up and works; one never seen valid waits for the minute.
        assert await status(world.tokens[0], "198.51.100.7") == 200 and lookups == 7
        assert await status(world.tokens[1], "198.51.100.7") == 429 and lookups == 7
        # Another client behind the same proxy is not locked out, and neither is anyone's anonymous quota.
        assert await status(world.tokens[1], "198.51.100.8") == 200 and lookups == 8
    finally:
        await client.close()


@pytest.mark.asyncio
async def test_mysql_down_is_a_503_for_token_lookups_searches_and_spend(world: World) -> None:
    closed = "mysql+pymysql://nobody:nothing@127.0.0.1:1/none"
    settings = world.settings.model_copy(update={"mysql_reader_url": SecretStr(closed), "api_token_cache_s": 0.0})
    client = await client_for(settings)
    try:
        status, body, _ = await get(client, "/v1/tenders/101", world.tokens[0])
        assert status == 503 and "retry" in body["error"], (status, body)
    finally:
        await client.close()
    # Public data needs no token: the search reads MySQL, and spend with Redis down too.
    no_redis = SecretStr(f"redis://127.0.0.1:{free_port()}/0")
    public = settings.model_copy(update={"api_public_open": True, "redis_url": no_redis})
    client = await client_for(public)
    try:
        for path in ("/v1/search?q=hall", "/v1/spend?top=3"):
            status, body, _ = await get(client, path)
            assert status == 503 and "retry" in body["error"], (path, status, body)
    finally:
        await client.close()


@pytest.mark.asyncio
async def test_with_redis_down_reads_come_from_mongodb_and_mysql_and_closed_stays_closed(world: World) -> None:
    down = world.settings.model_copy(update={"redis_url": SecretStr(f"redis://127.0.0.1:{free_port()}/0")})
    client = await client_for(down)
    token, team = world.tokens[0], world.teams[0]
    try:
        status, body, _ = await get(client, "/v1/tenders/101", token)
        assert status == 200 and body["source"] == "mongodb" and body["data"]["open"] is True
        status, body, _ = await get(client, "/v1/tenders/103", token)
        assert status == 200 and body["data"]["open"] is False
        status, body, _ = await get(client, f"/v1/teams/{team}/top", token)
        assert status == 200 and body["source"] == "mongodb" and {t["tender_id"] for t in body["data"]} == {101, 102}
        status, body, _ = await get(client, "/v1/spend?top=3", token)
        assert status == 200 and body["source"] == "mysql" and len(body["data"]) <= 3
        assert all(set(row) == {"buyer", "currency", "amount", "tenders", "without_budget"} for row in body["data"])
        assert client.service.quotas.unchecked >= 4  # type: ignore[attr-defined]
        metrics = await prometheus(client)
        assert (
            metrics["tenderhub_api_redis_fallbacks_total"] >= 2 and metrics["tenderhub_api_quota_unchecked_total"] >= 4
        )
    finally:
        await client.close()


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A CA-less self-signed certificate for 127.0.0.1, made by the test."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "api.crt", folder / "api.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_the_service_serves_https_when_tls_is_set_and_binds_to_localhost(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    env = {**os.environ, "TENDERHUB_API_TLS_CERT": str(cert), "TENDERHUB_API_TLS_KEY": str(key)}
    service = Child("read service", ["api", "serve"], env, tmp_path / "api.log", "TENDERHUB_API_PORT").start()
    try:
        trusted = ssl.create_default_context(cafile=str(cert))
        url = f"https://127.0.0.1:{service.port}/healthz"

        def healthy() -> bool:
            with urllib.request.urlopen(url, context=trusted, timeout=2) as resp:
                return bool(json.loads(resp.read())["ok"])

        service.wait_until(healthy, 60, "serving HTTPS")
        with pytest.raises(urllib.error.URLError):  # an untrusted certificate is refused by a default client
            urllib.request.urlopen(url, context=ssl.create_default_context(), timeout=2)
        assert _listening_addresses(service.port) == {"127.0.0.1"}
        # Its start-up objects are out of the garbage collector's full passes (schema/heap.py).
        with urllib.request.urlopen(f"https://127.0.0.1:{service.port}/metrics", context=trusted, timeout=5) as resp:
            text = resp.read().decode()
        frozen = [line for line in text.splitlines() if line.startswith("tenderhub_gc_frozen_objects ")]
        assert frozen and float(frozen[0].split()[1]) > 10_000, frozen
        # The worker's dashboard reads the service's cache counts over HTTPS, trusting the configured certificate.
        dashboard_view = load_settings(api_port=service.port, api_tls_cert=str(cert), api_tls_key=str(key))
        counts = asyncio.run(read_service_counts(dashboard_view))
        assert counts["reachable"] is True and counts["url"].startswith("https://"), counts
        assert counts["cache_hits"] == 0.0 and counts["hit_ratio"] is None
    finally:
        service.stop(30)


def _listening_addresses(port: int) -> set[str]:
    """The IPv4/IPv6 addresses something listens on at `port` (from /proc/net/tcp*: state 0A is LISTEN)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:
                raw = bytes.fromhex(address)
                if len(raw) == 4:
                    found.add(str(ipaddress.IPv4Address(raw[::-1])))
                else:
                    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                    found.add(str(ipaddress.IPv6Address(words)))
    return found


@pytest.mark.asyncio
async def test_open_public_data_needs_no_token_but_team_data_still_does_and_anonymous_callers_have_a_quota(
    world: World,
) -> None:
    settings = world.settings.model_copy(update={"api_public_open": True, "api_requests_per_minute": 2})
    client = await client_for(settings)
    try:
        for path in ("/v1/tenders/101", "/v1/spend?top=1"):
            status, body, _ = await get(client, path)
            assert status == 200 and body["data"], (path, body)
        status, body, headers = await get(client, "/v1/tenders/102")
        assert status == 429 and int(headers["Retry-After"]) >= 1
        status, body, _ = await get(client, f"/v1/teams/{world.teams[0]}/top")
        assert status == 401
    finally:
        await client.close()
