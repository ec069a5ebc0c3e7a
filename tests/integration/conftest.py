"""Integration fixtures: the real stack from `tenderhub stack up`. A missing service fails the test, never skips."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest
import redis
import sqlalchemy as sa
from pydantic import SecretStr
from pymongo import MongoClient
from pymongo.database import Database

from cdc.outbox import make_engine, write_event
from schema.mysql import apply_migrations, connect
from schema.settings import Settings, load_settings
from tenderhub.companies import load_companies, read_profiles
from tenderhub.loader import read_releases, tender_row, upsert_tender
from tenderhub.processes import PipelineEnv, RelayEnv, kill_started
from tests.integration.relay_harness import run


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.path):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _no_leftover_relays() -> Iterator[None]:
    yield
    kill_started()


@pytest.fixture(scope="session")
def settings() -> Settings:
    # Raises SettingsError (an error, not a skip) when `tenderhub stack up` has not written the env file.
    return load_settings()


@pytest.fixture
def uid() -> str:
    """A unique suffix so each test owns its topics, databases and keys."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def app_db(settings: Settings) -> Iterator[pymysql.connections.Connection[Any]]:
    with connect(settings.mysql, settings.mysql.database) as conn:
        yield conn


@pytest.fixture
def admin_db(settings: Settings) -> Iterator[pymysql.connections.Connection[Any]]:
    with connect(settings.mysql_admin) as conn:
        yield conn


@pytest.fixture
def mongo(settings: Settings) -> Iterator[MongoClient[dict[str, Any]]]:
    client: MongoClient[dict[str, Any]] = MongoClient(
        settings.mongo_url.get_secret_value(), serverSelectionTimeoutMS=5000
    )
    client.admin.command("ping")
    yield client
    client.close()


@pytest.fixture
def scratch_mongo_db(mongo: MongoClient[dict[str, Any]], uid: str) -> Iterator[Database[dict[str, Any]]]:
    name = f"test_{uid}"
    yield mongo[name]
    mongo.drop_database(name)


@pytest.fixture
def redis_client(settings: Settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.redis_url.get_secret_value(), socket_timeout=5)
    client.ping()
    yield client
    client.close()


@pytest.fixture
def renv(settings: Settings, uid: str) -> Iterator[RelayEnv]:
    """A relay environment of the test's own: topics under a unique prefix, its own source name."""
    env = RelayEnv(uid, settings)
    run(env.create_topics())
    yield env
    run(env.delete_topics())


@pytest.fixture
def engine(settings: Settings) -> Iterator[sa.Engine]:
    """The application's SQLAlchemy engine (app user)."""
    eng = make_engine(settings, pool_size=4)
    yield eng
    eng.dispose()


@pytest.fixture
def penv(renv: RelayEnv, mongo: MongoClient[dict[str, Any]], redis_client: redis.Redis) -> Iterator[PipelineEnv]:
    """A relay + worker environment of the test's own: topics, consumer group, MongoDB database, Redis keys."""
    env = PipelineEnv(renv)
    yield env
    mongo.drop_database(env.mongo_db)
    keys = list(redis_client.scan_iter(match=f"{env.redis_prefix}*", count=1000))
    keys += list(redis_client.scan_iter(match=f"{{{env.redis_prefix}*", count=1000))
    if keys:
        redis_client.delete(*keys)


SOURCE_AS_OF = "2025-09-25"  # the date `source` treats as today


@dataclasses.dataclass
class Source:
    settings: Settings
    engine: sa.Engine
    url: str
    tenders: list[int]

    @property
    def env(self) -> dict[str, str]:
        """The CLI's environment for this database (the admin account reads and writes it here)."""
        return {"TENDERHUB_MYSQL_URL": self.url, "TENDERHUB_MYSQL_READER_URL": self.url}


@pytest.fixture
def source(penv: PipelineEnv, settings: Settings) -> Iterator[Source]:
    """A MySQL database of the test's own with 30 real eTenders tenders, the demo companies and 5 activities."""
    assert settings.mysql_admin_url is not None
    admin = settings.mysql_admin_url.get_secret_value()
    base, _, _ = admin.rpartition("/")
    name = f"verify_{penv.uid}"
    with connect(settings.mysql_admin) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    with connect(settings.mysql_admin, name) as conn:
        apply_migrations(conn)
    url = f"{base}/{name}"
    penv.as_of = SOURCE_AS_OF
    test_settings = penv.settings(mysql_url=SecretStr(url), mysql_reader_url=SecretStr(url))
    engine = sa.create_engine(url)
    tenders = []
    for release in read_releases(limit=30):
        with engine.begin() as conn:
            tenders.append(upsert_tender(conn, tender_row(release))[0])
    load_companies(engine, read_profiles())
    with engine.begin() as conn:
        for n in range(5):
            write_event(
                conn, "user.activity", 1, {"user_id": 1, "team_id": 1, "action": "tender.viewed", "tender_id": n + 1}
            )
    try:
        yield Source(test_settings, engine, url, tenders)
    finally:
        engine.dispose()
        with connect(settings.mysql_admin) as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE `{name}`")
