"""Errors that are not the events' fault never dead-letter them: a store that refuses the worker's credentials
stops it (exit 78, the store and the fix named) without acknowledging anything, at start-up or when the
credentials are revoked while it runs; a worker with working credentials then processes every event."""

from __future__ import annotations

import json
import secrets
import urllib.parse
from collections.abc import Iterator

import pytest
import redis
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from streams.batch import EXIT_STORE_REFUSED
from tenderhub.processes import PipelineEnv, WorkerProcess
from tests.integration.relay_harness import consume, run
from tests.integration.worker_harness import run_cli, wait_for

BUDGET = 100


def tender_event(tender_id: int, uid: str) -> tuple[bytes, bytes]:
    payload = {
        "tender_id": tender_id,
        "ocid": f"ocds-{uid}-{tender_id}",
        "title": f"Tender {tender_id}",
        "buyer": f"Buyer {uid}",
        "budget": f"{BUDGET}.00",
        "currency": "GBP",
        "published_at": "2025-01-10T09:00:00",
    }
    value = {
        "event_id": tender_id,
        "event_type": "tender.created",
        "aggregate_type": "tender",
        "aggregate_id": str(tender_id),
        "occurred_at": "2025-01-10T09:00:00.000Z",
        "schema_version": 1,
        "source_seq": tender_id << 20,
        "payload": payload,
    }
    return str(tender_id).encode(), json.dumps(value).encode()


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def committed(bootstrap: str, group: str, topic: str) -> int:
    """How many records of `topic` the group has committed (sum of committed offsets)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset > 0)


def spend(redis_client: redis.Redis, penv: PipelineEnv) -> float:
    score = redis_client.zscore(f"{penv.redis_prefix}analytics:{{spend_by_buyer}}", f"GBP|Buyer {penv.uid}")
    return float(score or 0)


def with_credentials(url: str, user: str, password: str) -> str:
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{urllib.parse.quote(user)}:{urllib.parse.quote(password)}@{host}:{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


@pytest.fixture
def redis_user(penv: PipelineEnv, redis_client: redis.Redis) -> Iterator[tuple[str, str]]:
    """A Redis ACL user of the test's own, limited to its key prefix, removed afterwards."""
    user, password = f"tenderhub-test-{penv.uid}", secrets.token_hex(16)
    prefix = penv.redis_prefix
    keys = [f"{prefix}*", "{" + f"{prefix}*"]  # temporary keys are "{full key}:tmp:..."
    redis_client.acl_setuser(
        user, enabled=True, reset=True, passwords=[f"+{password}"], keys=keys, categories=["+@all"]
    )
    yield user, password
    redis_client.acl_deluser(user)


def test_worker_with_a_wrong_redis_password_stops_acknowledging_nothing_then_the_right_one_does_all(
    penv: PipelineEnv, redis_client: redis.Redis
) -> None:
    bootstrap = penv.renv.settings.kafka_bootstrap
    topic = f"{penv.renv.prefix}tender"
    run(produce(bootstrap, topic, [tender_event(n, penv.uid) for n in range(1, 21)]))
    wrong = with_credentials(penv.renv.settings.redis_url.get_secret_value(), "default", "not-the-password")

    proc = run_cli(penv, "worker", "--agents", "spend", timeout=120, TENDERHUB_REDIS_URL=wrong)

    assert proc.returncode == EXIT_STORE_REFUSED, proc.stderr[-2000:]
    assert "Redis refused the worker" in proc.stderr and "TENDERHUB_REDIS_URL" in proc.stderr, proc.stderr[-2000:]
    assert "not-the-password" not in proc.stderr + proc.stdout, "the message must not print the secret"
    assert run(committed(bootstrap, penv.group, topic)) == 0
    assert spend(redis_client, penv) == 0

    worker = WorkerProcess(penv, "--agents", "spend").start()
    worker.wait_ready()
    wait_for(lambda: spend(redis_client, penv) == 20 * BUDGET, 60, "every event counted once")
    assert worker.terminate() == 0, worker.tail()
    assert not run(consume(bootstrap, [f"{penv.renv.prefix}dlq"], until=1, timeout=3)), "nothing dead-lettered"


def test_credentials_revoked_while_running_stop_the_worker_unacknowledged_and_a_fixed_worker_catches_up(
    penv: PipelineEnv, redis_client: redis.Redis, redis_user: tuple[str, str]
) -> None:
    bootstrap = penv.renv.settings.kafka_bootstrap
    topic = f"{penv.renv.prefix}tender"
    user, password = redis_user
    url = with_credentials(penv.renv.settings.redis_url.get_secret_value(), user, password)
    worker = WorkerProcess(penv, "--agents", "spend", TENDERHUB_REDIS_URL=url).start()
    worker.wait_ready()
    run(produce(bootstrap, topic, [tender_event(n, penv.uid) for n in range(1, 11)]))
    wait_for(lambda: spend(redis_client, penv) == 10 * BUDGET, 60, "the first ten counted")
    wait_for(lambda: run(committed(bootstrap, penv.group, topic)) == 10, 30, "the first ten committed")

    # A credential rotation that forgot this worker: its user may no longer run any command.
    redis_client.acl_setuser(user, enabled=True, categories=["-@all"])
    run(produce(bootstrap, topic, [tender_event(n, penv.uid) for n in range(11, 21)]))
    assert worker.proc is not None
    code = worker.proc.wait(60)

    log = worker.log_text()[worker.offset :]
    assert code == EXIT_STORE_REFUSED, worker.tail()
    assert "Redis refused the worker (NoPermissionError" in log and "TENDERHUB_REDIS_URL" in log, worker.tail()
    assert "not acknowledged" in log, worker.tail()
    assert run(committed(bootstrap, penv.group, topic)) == 10, "events the worker could not apply were committed"
    assert spend(redis_client, penv) == 10 * BUDGET

    redis_client.acl_setuser(user, enabled=True, categories=["+@all"])
    worker = WorkerProcess(penv, "--agents", "spend", TENDERHUB_REDIS_URL=url).start()
    # The stopped worker left without leaving its consumer group (it must not commit): the group takes the partitions
    # back only when its session times out (TENDERHUB_WORKER_SESSION_TIMEOUT_MS, 10 s in tests); wait_ready waits
    # past that.
    worker.wait_ready()
    wait_for(lambda: spend(redis_client, penv) == 20 * BUDGET, 60, "the rest counted once after the fix")
    assert worker.terminate() == 0, worker.tail()
    assert not run(consume(bootstrap, [f"{penv.renv.prefix}dlq"], until=1, timeout=3)), "nothing dead-lettered"
