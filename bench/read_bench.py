"""Read-service benchmark: latency of `tenderhub api serve` under 200 concurrent clients on loopback, for reads the
cache answers (a tender's card, a repeated search, in Redis) and reads it does not (a closed tender's document in
MongoDB, a team's score for one tender, which lives in MongoDB only, and a search not asked before: MySQL full
text). Prints figures; asserts nothing, but every answer must be a 200 from the expected source or the run says so.

    .venv/bin/python -m bench.read_bench                     # ~1 minute: 200 clients x 20 s per kind
    .venv/bin/python -m bench.read_bench --clients 50 --seconds 10

The stores are filled by the real agents (streams.testing.AgentHarness) with 500 tenders (400 open, 100 cancelled)
and one team, in a MongoDB database and Redis prefix of the run's own, removed at the end; the same tenders go into
MySQL for search (a word of the run's own in each title; deleted at the end); the service runs as its own process
(tenderhub.processes) with a token issued for the run (revoked and deleted at the end).
Targets (issue 13): cached p99 < 10 ms, uncached p99 < 50 ms on this 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import redis as sync_redis
import sqlalchemy as sa
from pymongo import MongoClient

from bench.args import positive, positive_float
from cdc.outbox import make_engine
from schema.settings import Settings, load_settings
from streams.agents import registry
from streams.testing import AgentHarness, event
from tenderhub.api.tokens import issue
from tenderhub.processes import Child

AS_OF = dt.date(2025, 9, 25)
WARM_UP_S = 1.0
TENDERS = 500
CANCELLED = 100


def tender(tender_id: int) -> dict[str, Any]:
    return {
        "tender_id": tender_id,
        "ocid": f"ocds-bench-{tender_id}",
        "title": f"Construction of a community hall {tender_id}",
        "description": "Construction of a community hall in Soshanguve; CIDB grading of 4GB or higher. " * 5,
        "buyer": f"Municipality {tender_id % 40}",
        "budget": f"{100_000 + tender_id * 1000}.00",
        "currency": "ZAR",
        "province": "Gauteng",
        "category": "Construction",
        "published_at": "2025-09-20T09:00:00",
        "closing_at": "2025-10-20T10:00:00",
    }


async def fill(settings: Settings, team: int) -> None:
    events = [
        event(
            "company.updated",
            {
                "team_id": team,
                "company_id": team,
                "company_name": "Bench Civils",
                "sectors": ["Construction"],
                "provinces": ["Gauteng"],
                "experience_years": 6,
                "bbbee_level": 2,
                "cidb": [{"class_of_works": "GB", "grade": 5}],
            },
            seq=1,
        )
    ]
    events += [event("tender.created", tender(t), seq=t + 1) for t in range(1, TENDERS + 1)]
    events += [
        event("tender.closed", {"tender_id": t, "status": "cancelled"}, seq=TENDERS + t + 1)
        for t in range(TENDERS - CANCELLED + 1, TENDERS + 1)
    ]
    for spec in registry().values():
        async with AgentHarness(spec, settings, own_namespace=False) as h:
            for start in range(0, len(events), 200):
                await h.send(*events[start : start + 200])
            if h.dead_letters:
                raise SystemExit(f"{spec.name} dead-lettered {len(h.dead_letters)} events: {h.dead_letters[0].reason}")


def add_search_rows(engine: sa.Engine, word: str) -> None:
    """The bench's tenders in MySQL (what search reads), each title holding `word`."""
    rows = [
        {
            "o": f"ocds-bench-{word}-{t}",
            "t": f"{tender(t)['title']} {word}",
            "d": tender(t)["description"],
            "b": tender(t)["buyer"],
            "s": "cancelled" if t > TENDERS - CANCELLED else "active",
            "p": "Gauteng",
        }
        for t in range(1, TENDERS + 1)
    ]
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO tenders (ocid, title, description, buyer, status, closing_at, province) "
                "VALUES (:o, :t, :d, :b, :s, '2025-10-20 10:00:00', :p)"
            ),
            rows,
        )


async def load(
    base: str, token: str, paths: list[str], source: str, clients: int, seconds: float, rate: float | None = None
) -> dict[str, Any]:
    """`clients` connections each sending its next request when the last is answered (closed loop), or, with `rate`,
    on a schedule of `rate` requests per second spread over them (open loop: latency without self-queueing)."""
    latencies: list[float] = []
    wrong: list[str] = []
    # The first second (200 connections opened, pools filled) is run but not counted.
    counted_from = time.perf_counter() + WARM_UP_S
    deadline = counted_from + seconds
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(base, connector=connector, headers={"Authorization": f"Bearer {token}"}) as s:

        async def client(n: int) -> None:
            i = n
            gap = clients / rate if rate else 0.0
            due = time.perf_counter() + (n / rate if rate else 0.0)
            while time.perf_counter() < deadline:
                if rate:
                    await asyncio.sleep(max(0.0, due - time.perf_counter()))
                    due += gap
                path = paths[i % len(paths)]
                i += clients
                started = time.perf_counter()
                async with s.get(path) as resp:
                    body = await resp.json()
                if started >= counted_from:
                    latencies.append(time.perf_counter() - started)
                if resp.status != 200 or body.get("source") != source:
                    wrong.append(f"{path}: {resp.status} {str(body)[:120]}")

        await asyncio.gather(*(client(n) for n in range(clients)))
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "rps": len(ordered) / seconds,
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[int(len(ordered) * 0.99) - 1] * 1000,
        "max_ms": ordered[-1] * 1000,
        "wrong": wrong[:3],
        "wrong_count": len(wrong),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=positive, default=200)
    parser.add_argument("--seconds", type=positive_float, default=20.0)
    parser.add_argument("--rate", type=positive_float, help="open loop: requests per second over all clients")
    args = parser.parse_args()
    base_settings = load_settings()
    uid = uuid.uuid4().hex[:10]
    settings = base_settings.model_copy(
        update={"mongo_db": f"bench_api_{uid}", "redis_key_prefix": f"bench:api{uid}:", "as_of": AS_OF}
    )
    engine = make_engine(base_settings)
    with engine.begin() as conn:
        team = int(conn.execute(sa.text("INSERT INTO teams (name) VALUES (:n)"), {"n": f"bench-{uid}"}).lastrowid or 0)
        user = conn.execute(
            sa.text("INSERT INTO users (team_id, email, display_name) VALUES (:t, :e, 'Bench')"),
            {"t": team, "e": f"bench-{uid}@example.org"},
        ).lastrowid
    _, token = issue(engine, int(user or 0), team, "read bench")
    word = "zqbench" + "".join(chr(ord("a") + int(c, 16)) for c in uid)  # letters: one full-text word
    env = {
        **os.environ,
        "TENDERHUB_MONGO_DB": settings.mongo_db,
        "TENDERHUB_REDIS_KEY_PREFIX": settings.redis_key_prefix,
        "TENDERHUB_AS_OF": AS_OF.isoformat(),
        "TENDERHUB_API_REQUESTS_PER_MINUTE": "1000000",
        "TENDERHUB_API_SEARCHES_PER_DAY": "100000000",
        "TENDERHUB_LOG_LEVEL": "WARNING",
    }
    log_path = Path(tempfile.gettempdir()) / f"read-bench-{uid}.log"
    service = Child("read service", ["api", "serve"], env, log_path, "TENDERHUB_API_PORT")
    try:
        started = time.perf_counter()
        asyncio.run(fill(settings, team))
        add_search_rows(engine, word)
        took = time.perf_counter() - started
        print(f"filled: {TENDERS} tenders ({CANCELLED} cancelled), 1 team, by the agents in {took:.1f} s")
        service.start().wait_until(lambda: service.get("/healthz") is not None, 30, "serving")
        base = f"http://127.0.0.1:{service.port}"
        open_ids = range(1, TENDERS - CANCELLED + 1)
        closed_ids = range(TENDERS - CANCELLED + 1, TENDERS + 1)
        # Searches: 50 asked once before the run (then cached), and ones never asked twice (limit x offset).
        repeated = [f"/v1/search?q={word}+hall&status=open&limit=10&offset={n}" for n in range(50)]
        for path in repeated:
            service.get(path, {"Authorization": f"Bearer {token}"}, timeout=10)
        fresh = [f"/v1/search?q={word}+community&limit={1 + n % 50}&offset={n // 50}" for n in range(50_000)]
        kinds = [
            ("cached: tender card (Redis)", [f"/v1/tenders/{t}" for t in open_ids], "redis"),
            ("cached: a search asked before (Redis)", repeated, "redis"),
            ("uncached: a new search (MySQL)", fresh, "mysql"),
            ("uncached: closed tender (MongoDB)", [f"/v1/tenders/{t}" for t in closed_ids], "mongodb"),
            ("uncached: team score (MongoDB)", [f"/v1/teams/{team}/tenders/{t}/score" for t in open_ids], "mongodb"),
        ]
        pace = f"{args.rate:,.0f} requests/s (open loop)" if args.rate else "each as fast as answered (closed loop)"
        print(f"read service on {base}, {args.clients} concurrent clients, {pace}, {args.seconds:.0f} s per kind")
        for name, paths, source in kinds:
            r = asyncio.run(load(base, token, paths, source, args.clients, args.seconds, args.rate))
            print(
                f"  {name:<38} {r['requests']:>7,} requests, {r['rps']:>7,.0f}/s, p50 {r['p50_ms']:6.1f} ms, "
                f"p99 {r['p99_ms']:6.1f} ms, max {r['max_ms']:7.1f} ms"
                + (f"  ({r['wrong_count']} WRONG answers, e.g. {r['wrong']})" if r["wrong_count"] else "")
            )
    finally:
        service.stop(30)
        client: MongoClient[dict[str, Any]] = MongoClient(settings.mongo_url.get_secret_value())
        client.drop_database(settings.mongo_db)
        client.close()
        r = sync_redis.Redis.from_url(settings.redis_url.get_secret_value())
        keys = list(r.scan_iter(match=f"{settings.redis_key_prefix}*")) + list(
            r.scan_iter(match=f"{{{settings.redis_key_prefix}*")
        )
        if keys:
            r.delete(*keys)
        r.close()
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM tenders WHERE ocid LIKE :o"), {"o": f"ocds-bench-{word}-%"})
            conn.execute(sa.text("DELETE FROM api_tokens WHERE team_id = :t"), {"t": team})
            conn.execute(sa.text("DELETE FROM users WHERE team_id = :t"), {"t": team})
            conn.execute(sa.text("DELETE FROM teams WHERE id = :t"), {"t": team})
        engine.dispose()


if __name__ == "__main__":
    main()
