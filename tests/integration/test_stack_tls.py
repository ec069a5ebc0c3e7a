"""The pipeline over TLS: a stack of its own (temporary folder, free ports) started with TENDERHUB_STACK_TLS_DIR
pointing at a CA and a server certificate this test makes with openssl. Every service then speaks TLS only (Kafka
SASL_SSL with SCRAM users, MariaDB requiring secure transport, FerretDB and Redis on TLS ports), and the settings the
stack writes reach every client through the code's own TLS and SASL settings: migrate, the smoke checks (the relay
user's binlog, a Kafka transaction, MongoDB, Redis) and a relay and a worker carrying an event end to end. Plaintext
clients are refused. Never the dev stack's services.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import SecretStr
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from cdc.outbox import make_engine
from schema.kafka_client import kafka_options
from schema.settings import Settings, load_stack_settings
from schema.topics import TopicNames
from tenderhub.cli import run_migrate
from tenderhub.kafka_acls import apply_acls, pipeline_acls, relay_transactional_id
from tenderhub.processes import PipelineEnv, RelayEnv, RelayProcess, WorkerProcess, free_port
from tenderhub.smoke import run_all
from tenderhub.stack import KAFKA_PIPELINE_USERS, Stack
from tests.integration.test_cdc_relay import insert_activities
from tests.integration.worker_harness import wait_for


def make_tls_material(folder: Path) -> Path:
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it (ca.pem, server.pem, server.key)."""
    folder.mkdir(parents=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=60)

    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=tenderhub test CA", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"
    )
    (folder / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
    )
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "server.ext",
    )  # fmt: skip
    (folder / "ca.key").unlink()  # nothing more is signed
    return folder


def _as_user(stack: Stack, user: str) -> dict[str, str]:
    return {
        "TENDERHUB_KAFKA_SASL_USERNAME": user,
        "TENDERHUB_KAFKA_SASL_PASSWORD": stack.secrets[KAFKA_PIPELINE_USERS[user]],
    }


def _env_values(stack: Stack) -> dict[str, str]:
    lines = stack.env_file.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


@pytest.fixture(scope="module")
def tls_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Settings, dict[str, str]]]:
    root = tmp_path_factory.mktemp("tls-stack")
    cfg = load_stack_settings(
        stack_dir=root / "stack",
        stack_tls_dir=make_tls_material(root / "tls"),
        ferretdb_backend="sqlite",  # FerretDB's storage is not what this tests
        mysql_port=free_port(),
        kafka_port=free_port(),
        kafka_controller_port=free_port(),
        mongo_port=free_port(),
        ferretdb_debug_port=free_port(),
        redis_port=free_port(),
        postgresql_port=free_port(),
    )
    stack = Stack(cfg)
    try:
        stack.up()
        env = _env_values(stack)
        # Only what the stack wrote: explicit values win over the dev stack's TENDERHUB_* in this environment.
        settings = Settings(_env_file=None, **{k.removeprefix("TENDERHUB_").lower(): v for k, v in env.items()})
        run_migrate(settings)
        yield stack, settings, env
    finally:
        stack.down(purge=True)


def test_the_stack_writes_tls_settings_for_every_client_and_refuses_plaintext(
    tls_stack: tuple[Stack, Settings, dict[str, str]],
) -> None:
    stack, settings, env = tls_stack
    assert settings.kafka_security_protocol == "SASL_SSL" and settings.kafka_sasl_mechanism == "SCRAM-SHA-512"
    for name in ("TENDERHUB_MYSQL_URL", "TENDERHUB_RELAY_MYSQL_URL", "TENDERHUB_MYSQL_READER_URL"):
        assert "?ssl_ca=" in env[name], name
    assert env["TENDERHUB_REDIS_URL"].startswith("rediss://") and "tls=true" in env["TENDERHUB_MONGO_URL"]
    host = stack.cfg.stack_host
    # MariaDB: a TCP client without TLS is turned away (the relay's account, its right password). PyMySQL would try
    # TLS unasked (without checking the certificate), so plaintext must be forced.
    dsn = settings.relay_mysql
    with pytest.raises(pymysql.err.OperationalError) as refused:
        pymysql.connect(
            host=host, port=dsn.port, user=dsn.user, password=dsn.password, connect_timeout=5, ssl_disabled=True
        )
    # MariaDB answers "access denied" (1045) to plaintext under require_secure_transport; the same account and
    # password get in over TLS, with the settings' CA checking the server.
    assert refused.value.args[0] == 1045, refused.value
    with pymysql.connect(**dsn.pymysql_kwargs(), connect_timeout=5) as conn, conn.cursor() as cur:
        cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        row = cur.fetchone()
    assert row is not None and row[1], row
    # Redis: no plaintext port; FerretDB: no plaintext listener; Kafka: the listener speaks only SASL_SSL.
    plain_redis = settings.redis_url.get_secret_value().replace("rediss://", "redis://").split("?")[0]
    with pytest.raises(redis.exceptions.ConnectionError):
        redis.Redis.from_url(plain_redis, socket_timeout=3, socket_connect_timeout=3).ping()
    plain_mongo: MongoClient[dict[str, Any]] = MongoClient(
        f"mongodb://{host}:{stack.cfg.mongo_port}/", serverSelectionTimeoutMS=2000
    )
    with pytest.raises(PyMongoError):
        plain_mongo.admin.command("ping")
    plain_mongo.close()

    async def plaintext_kafka() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=f"{host}:{stack.cfg.kafka_port}", request_timeout_ms=3000)
        try:
            await admin.start()
            await admin.list_topics()
        finally:
            await admin.close()

    with pytest.raises(Exception) as kafka_refused:  # aiokafka raises several kinds for a failed start
        asyncio.run(asyncio.wait_for(plaintext_kafka(), 20))
    assert type(kafka_refused.value).__name__ in ("KafkaConnectionError", "TimeoutError", "NodeNotReadyError")
    # The SCRAM passwords are in no command line `ps` shows, and the broker's config holding its own is 0600.
    kafka = next(s for s in stack.services if s.name == "kafka")
    pid = kafka.running_pid()
    assert pid is not None
    cmdline = Path(f"/proc/{pid}/cmdline").read_text()
    assert stack.secrets["kafka_broker_password"] not in cmdline
    assert stack.secrets["kafka_client_password"] not in cmdline
    assert (kafka.dir / "server.properties").stat().st_mode & 0o077 == 0


def test_every_client_works_over_tls(tls_stack: tuple[Stack, Settings, dict[str, str]]) -> None:
    """The smoke checks, each with the component's own account and the code's TLS and SASL settings."""
    _, settings, _ = tls_stack
    results = run_all(settings, lambda _: None)
    assert [r.name for r in results] == ["mysql binlog", "kafka transaction", "ferretdb capped", "redis ttl"]


def test_an_event_crosses_the_pipeline_over_tls(tls_stack: tuple[Stack, Settings, dict[str, str]]) -> None:
    """Outbox (app user, TLS) -> relay (binlog over TLS, Kafka SASL_SSL) -> worker (Faust and its consumer over
    SASL_SSL) -> MongoDB over TLS."""
    stack, settings, env = tls_stack
    uid = uuid.uuid4().hex[:10]
    penv = PipelineEnv(RelayEnv(uid, settings))
    asyncio.run(penv.renv.create_topics())
    # Each process as its own Kafka user, allowed only what `tenderhub kafka-acls` grants.
    names = penv.settings()
    assert asyncio.run(apply_acls(settings, pipeline_acls(names, "relay", "worker"))) > 0
    relay = RelayProcess(penv.renv, "--from-now", **(env | _as_user(stack, "relay"))).start()
    worker = WorkerProcess(penv, "--agents", "activity_logs", **(env | _as_user(stack, "worker"))).start()
    engine = make_engine(settings)
    client: MongoClient[dict[str, Any]] = MongoClient(
        settings.mongo_url.get_secret_value(), serverSelectionTimeoutMS=10_000
    )
    try:
        relay.wait_tailing()
        worker.wait_ready()
        ids = insert_activities(engine, uid, [3, 2], users=3)
        logs = client[penv.mongo_db]["user_activity_logs"]
        wait_for(lambda: logs.count_documents({}) >= len(ids), 90, "every activity logged over TLS")
        assert {d["_id"] for d in logs.find({}, {"_id": 1})} == set(ids)
        assert worker.terminate() == 0, worker.tail()
        assert relay.terminate() == 0, relay.tail()
    finally:
        worker.kill()
        relay.kill()
        engine.dispose()
        client.drop_database(penv.mongo_db)
        client.close()
        asyncio.run(penv.renv.delete_topics())


def test_each_component_gets_only_its_kafka_acls(tls_stack: tuple[Stack, Settings, dict[str, str]]) -> None:
    """The relay writes its topics under its transactional id but may not read the workers' group; a worker reads the
    data topics in its group and writes dead letters but may not publish events; the read service's user may do
    nothing at all."""
    stack, settings, _ = tls_stack
    uid = uuid.uuid4().hex[:10]
    penv = PipelineEnv(RelayEnv(uid, settings))
    asyncio.run(penv.renv.create_topics())
    names = penv.settings()
    asyncio.run(apply_acls(settings, pipeline_acls(names, "relay", "worker")))
    topics = TopicNames.from_settings(names)
    data = topics.data["activity"]

    def user(name: str) -> Settings:
        values = _as_user(stack, name)
        return settings.model_copy(
            update={
                "kafka_sasl_username": values["TENDERHUB_KAFKA_SASL_USERNAME"],
                "kafka_sasl_password": SecretStr(values["TENDERHUB_KAFKA_SASL_PASSWORD"]),
            }
        )

    async def publish(as_user: Settings, topic: str, transactional_id: str | None = None) -> None:
        producer = AIOKafkaProducer(
            **kafka_options(as_user), transactional_id=transactional_id, request_timeout_ms=10_000
        )
        await producer.start()
        try:
            if transactional_id:
                async with producer.transaction():
                    await producer.send_and_wait(topic, b"{}", key=b"1")
            else:
                await producer.send_and_wait(topic, b"{}", key=b"1")
        finally:
            await producer.stop()

    async def read(as_user: Settings, topic: str, group: str) -> None:
        consumer = AIOKafkaConsumer(
            topic, **kafka_options(as_user), group_id=group, auto_offset_reset="earliest", request_timeout_ms=10_000
        )
        await consumer.start()
        try:
            await consumer.getmany(timeout_ms=3000)
            await consumer.commit()
        finally:
            await consumer.stop()

    def refused(coro: Any) -> str:
        with pytest.raises(Exception) as err:  # aiokafka raises its authorization errors, or a timeout on metadata
            asyncio.run(asyncio.wait_for(coro, 30))
        return type(err.value).__name__

    try:
        relay, worker, reader = user("relay"), user("worker"), user("reader")
        asyncio.run(publish(relay, data, relay_transactional_id(names)))
        assert "Authorization" in refused(publish(relay, data, "someone-elses-transaction"))
        assert "Authorization" in refused(read(relay, data, names.worker_group))
        asyncio.run(read(worker, data, names.worker_group))
        asyncio.run(publish(worker, topics.dlq))
        assert "Authorization" in refused(publish(worker, data))
        assert "Authorization" in refused(read(worker, data, "another-group"))
        for coro in (read(reader, data, names.worker_group), publish(reader, topics.dlq)):
            assert "Authorization" in refused(coro)
    finally:
        asyncio.run(penv.renv.delete_topics())
