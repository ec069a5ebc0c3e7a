"""`tenderhub verify` on nightly volumes: 5,000 tenders x 200 teams, synthetic from the real data's shapes (the
advertised eTenders releases through the loader's `tender_row`, repeated with new ocids to reach the count; company
profiles generated as bench.readiness_bench does), written straight into a MySQL database of the bench's own; the
stores are filled by `tenderhub rebuild` (timed too), then verify is timed. Prints figures; asserts nothing.

    .venv/bin/python -m bench.verify_bench
    .venv/bin/python -m bench.verify_bench --tenders 1000 --teams 50

Isolation: MySQL database, topics, MongoDB database and Redis prefix `bench_verify_<uid>` / `bench.verify.<uid>.` /
`bench:verify:<uid>:`, all removed at the end. Needs the stack (`tenderhub stack up && tenderhub migrate`).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
import logging
import secrets
import time
from typing import Any

import redis
import sqlalchemy as sa
from pydantic import SecretStr
from pymongo import MongoClient

from bench.args import positive
from bench.readiness_bench import ADVERTISED, PORTAL_200, company_payloads
from schema.mysql import apply_migrations, connect
from schema.settings import load_settings
from schema.topics import delete_topics, ensure_topics, topic_specs
from streams.rebuild import rebuild
from streams.verify import verify
from tenderhub.loader import TENDER_COLUMNS, ReleaseError, read_releases, tender_row

AS_OF = dt.date(2025, 9, 18)  # within the advertised data's period: some tenders open, some closed


def _tender_values(count: int) -> list[dict[str, Any]]:
    path = ADVERTISED if ADVERTISED.exists() else PORTAL_200
    rows = []
    for release in read_releases(path):
        try:
            rows.append(tender_row(release))
        except ReleaseError:
            continue  # the loader refuses it too: no tender row in the real pipeline either
    out = []
    for n in range(count):
        row = rows[n % len(rows)]
        values = dataclasses.asdict(row)
        values["ocid"] = f"{row.ocid}-{n}"
        out.append({k: values[k] for k in _COLUMNS})
    return out


_COLUMNS = ("ocid", *TENDER_COLUMNS)


def _fill(engine: sa.Engine, tenders: int, teams: int) -> None:
    values = _tender_values(tenders)
    cols = ", ".join(_COLUMNS)
    params = ", ".join(f":{c}" for c in _COLUMNS)
    categories = sorted({str(v["category"]) for v in values if v["category"]})
    with engine.begin() as conn:
        for start in range(0, len(values), 500):
            conn.execute(sa.text(f"INSERT INTO tenders ({cols}) VALUES ({params})"), values[start : start + 500])
        for p in company_payloads(teams, categories):
            team = conn.execute(sa.text("INSERT INTO teams (name) VALUES (:n)"), {"n": f"team {p['team_id']}"})
            company = conn.execute(
                sa.text(
                    "INSERT INTO company_profiles (team_id, company_name, sectors, provinces, experience_years, "
                    "bbbee_level) VALUES (:t, :name, :sectors, :provinces, :exp, :bbbee)"
                ),
                {
                    "t": team.lastrowid,
                    "name": f"company {p['team_id']}",
                    "sectors": json.dumps(p["sectors"]),
                    "provinces": json.dumps(p["provinces"]),
                    "exp": p["experience_years"],
                    "bbbee": p["bbbee_level"],
                },
            )
            for g in p["cidb"]:
                conn.execute(
                    sa.text(
                        "INSERT INTO company_cidb_gradings (company_id, class_of_works, grade, potentially_emerging) "
                        "VALUES (:c, :cls, :grade, :pe)"
                    ),
                    {
                        "c": company.lastrowid,
                        "cls": g["class_of_works"],
                        "grade": g["grade"],
                        "pe": g["potentially_emerging"],
                    },
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenders", type=positive, default=5000)
    parser.add_argument("--teams", type=positive, default=200)
    args = parser.parse_args()
    logging.basicConfig(level="WARNING")
    base = load_settings()
    uid = secrets.token_hex(4)
    name = f"bench_verify_{uid}"
    admin_url = base.mysql_admin_url.get_secret_value() if base.mysql_admin_url else ""
    url = f"{admin_url.rpartition('/')[0]}/{name}"
    settings = base.model_copy(
        update={
            "mysql_url": SecretStr(url),
            "mysql_reader_url": SecretStr(url),
            "topic_prefix": f"bench.verify.{uid}.",
            "mongo_db": name,
            "redis_key_prefix": f"bench:verify:{uid}:",
            "as_of": AS_OF,
        }
    )
    with connect(base.mysql_admin) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    engine = sa.create_engine(url)
    try:
        with connect(base.mysql_admin, name) as conn:
            apply_migrations(conn)
        asyncio.run(ensure_topics(settings.kafka_bootstrap, topic_specs(settings)))
        start = time.monotonic()
        _fill(engine, args.tenders, args.teams)
        print(f"MySQL filled: {args.tenders} tenders, {args.teams} teams in {time.monotonic() - start:.1f} s")
        report = asyncio.run(rebuild(settings, say=lambda line: print(f"  {line}")))
        print(f"rebuild: {report.seconds:.1f} s")
        result = asyncio.run(verify(settings))
        for line in result.lines():
            print(line)
        print(f"verify: {result.seconds:.1f} s for {args.tenders} tenders x {args.teams} teams (drift {result.drift})")
    finally:
        engine.dispose()
        with connect(base.mysql_admin) as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        client: MongoClient[dict[str, Any]] = MongoClient(base.mongo_url.get_secret_value())
        client.drop_database(name)
        client.close()
        r = redis.Redis.from_url(base.redis_url.get_secret_value())
        keys = list(r.scan_iter(match=f"bench:verify:{uid}:*", count=1000))
        if keys:
            r.delete(*keys)
        r.close()
        asyncio.run(delete_topics(settings.kafka_bootstrap, [settings.topic_prefix]))


if __name__ == "__main__":
    main()
