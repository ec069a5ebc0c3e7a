"""A run's own namespace: a MySQL database with its own application, relay and reader accounts (least privilege,
as `tenderhub migrate` grants them), topics, consumer group, MongoDB database, Redis prefix and relay source. Nothing of
the default deployment is read or written, and verify sees only this run's rows."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import secrets
from dataclasses import dataclass
from urllib.parse import quote

from pydantic import SecretStr
from pymongo import MongoClient

from schema.mongo import ensure_collections
from schema.mysql import drop_database, migrate
from schema.settings import Settings
from schema.topics import delete_topics, ensure_topics, topic_specs
from sinks.redis import delete_namespace, sync_client
from tenderhub.demo import namespace_env

log = logging.getLogger(__name__)

# The real eTenders slice was advertised in September 2025: "now" for the run, so tenders are open and get scored.
AS_OF = dt.date(2025, 9, 25)


@dataclass(frozen=True)
class FaultNamespace:
    run: str
    settings: Settings

    @property
    def database(self) -> str:
        return self.settings.mysql.database

    def env(self) -> dict[str, str]:
        """What a relay or worker subprocess needs to live in this namespace (secrets only in its environment)."""
        return {
            **namespace_env(self.settings),
            "TENDERHUB_MYSQL_URL": self.settings.mysql_url.get_secret_value(),
            "TENDERHUB_RELAY_MYSQL_URL": self.settings.relay_mysql_url.get_secret_value(),
            "TENDERHUB_TOPIC_MAP": "{}",
        }


def fault_namespace(base: Settings, run: str) -> FaultNamespace:
    if not run.isalnum() or len(run) > 16:
        raise ValueError(f"run id {run!r}: letters and digits, at most 16")
    admin = base.mysql_admin
    database = f"faults_{run}"

    def url(user: str, password: str) -> SecretStr:
        return SecretStr(f"mysql+pymysql://{user}:{quote(password, safe='')}@{admin.host}:{admin.port}/{database}")

    settings = base.model_copy(
        update={
            "mysql_url": url(f"fapp_{run}", secrets.token_urlsafe(18)),
            "relay_mysql_url": url(f"frel_{run}", secrets.token_urlsafe(18)),
            "mysql_reader_url": url(f"frd_{run}", secrets.token_urlsafe(18)),
            "mysql_admin_url": url(admin.user, admin.password),
            "topic_prefix": f"faults.{run}.",
            "topic_map": {},
            "mongo_db": f"faults_{run}",
            "redis_key_prefix": f"faults:{run}:",
            "worker_group": f"tenderhub-faults-{run}",
            "relay_source_name": f"faults-{run}",
            "relay_server_id": 4_700_000 + int(run, 36) % 200_000,
            "as_of": AS_OF,
        }
    )
    return FaultNamespace(run, settings)


def create(ns: FaultNamespace) -> None:
    """Database, migrations and the two accounts; MongoDB collections; topics."""
    migrate(ns.settings)
    client: MongoClient[dict[str, object]] = MongoClient(
        ns.settings.mongo_url.get_secret_value(), serverSelectionTimeoutMS=10_000
    )
    try:
        ensure_collections(client[ns.settings.mongo_db], ns.settings)
    finally:
        client.close()
    asyncio.run(ensure_topics(ns.settings, topic_specs(ns.settings)))


def drop(ns: FaultNamespace) -> None:
    """Everything `create` and the run made: topics (Faust's own too), stores, database and accounts."""
    asyncio.run(delete_topics(ns.settings, [ns.settings.topic_prefix, f"{ns.settings.worker_group}-"]))
    client: MongoClient[dict[str, object]] = MongoClient(
        ns.settings.mongo_url.get_secret_value(), serverSelectionTimeoutMS=10_000
    )
    try:
        client.drop_database(ns.settings.mongo_db)
    finally:
        client.close()
    r = sync_client(ns.settings, socket_timeout=30)
    try:
        delete_namespace(r, ns.settings.redis_key_prefix)
    finally:
        r.close()
    drop_database(ns.settings)
