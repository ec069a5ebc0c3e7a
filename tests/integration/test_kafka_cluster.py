"""The pipeline on a three-broker Kafka (`tenderhub stack up --cluster`'s brokers, started here on free ports in a
folder of their own; MariaDB, MongoDB and Redis are the dev stack's). Topics at replication factor 3 with
min.insync.replicas 2. One broker is SIGKILLed while the relay publishes and two workers consume: every event is in
Kafka exactly once (read_committed), every activity is logged once, and the spend totals equal MySQL's recompute
(nothing lost, nothing counted twice)."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from aiokafka.admin import AIOKafkaAdminClient
from pymongo import MongoClient

from schema.settings import Settings, load_stack_settings
from streams.spend import recompute, totals_in_cents
from tenderhub.processes import PipelineEnv, RelayEnv, RelayProcess, WorkerProcess
from tenderhub.stack import Kafka, Stack, free_port_block, stop_together
from tests.integration.relay_harness import consume, run
from tests.integration.test_cdc_relay import insert_activities
from tests.integration.test_worker_spend import AS_OF, mysql_rows, store_totals, uk_rows, write_tenders
from tests.integration.worker_harness import Background, wait_for


@pytest.fixture(scope="module")
def brokers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, list[Kafka]]]:
    # A broker port and a controller port such that each + 0, 100 and 200 is free (the cluster's layout).
    kafka_port = free_port_block((0, 1, 100, 101, 200, 201))
    controller_port = kafka_port + 1
    cfg = load_stack_settings(
        stack_dir=tmp_path_factory.mktemp("kafka-cluster") / "stack",
        kafka_brokers=3,
        kafka_port=kafka_port,
        kafka_controller_port=controller_port,
        kafka_heap="384m",
    )
    stack = Stack(cfg)
    nodes = [s for s in stack.services if isinstance(s, Kafka)]
    assert [n.name for n in nodes] == ["kafka", "kafka-2", "kafka-3"]
    try:
        for node in nodes:
            node.ensure_installed()
            node.start()
        for node in nodes:
            node.wait_healthy(120)
        yield stack, nodes
    finally:
        stop_together(nodes)  # one by one, the last would wait for a controller quorum that is gone


@dataclass
class ClusterRun:
    """One test's namespace on the three brokers: its topics (RF 3), consumer group, MongoDB database, Redis keys."""

    nodes: list[Kafka]
    cluster: Settings
    penv: PipelineEnv
    env: dict[str, str]


@pytest.fixture
def on_cluster(
    brokers: tuple[Stack, list[Kafka]],
    settings: Settings,
    mongo: MongoClient[dict[str, Any]],
    redis_client: redis.Redis,
) -> Iterator[ClusterRun]:
    stack, nodes = brokers
    cluster = settings.model_copy(update={"kafka_bootstrap": stack.kafka_bootstrap(), "kafka_replication_factor": 3})
    penv = PipelineEnv(RelayEnv(uuid.uuid4().hex[:10], cluster), as_of=AS_OF)
    run(penv.renv.create_topics())
    env = {"TENDERHUB_KAFKA_BOOTSTRAP": cluster.kafka_bootstrap, "TENDERHUB_KAFKA_REPLICATION_FACTOR": "3"}
    try:
        yield ClusterRun(nodes, cluster, penv, env)
    finally:
        for node in nodes:  # a broker a test killed comes back for the next one
            if node.running_pid() is None:
                node.start()
                node.wait_healthy(120)
        run(penv.renv.delete_topics())
        mongo.drop_database(penv.mongo_db)
        keys = list(redis_client.scan_iter(f"{penv.redis_prefix}*", count=1000))
        if keys:
            redis_client.delete(*keys)


async def _describe(settings: Settings, topics: list[str]) -> list[dict[str, Any]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=15_000)
    await admin.start()
    try:
        return list(await admin.describe_topics(topics))
    finally:
        await admin.close()


def test_one_broker_killed_while_the_relay_publishes_and_two_workers_consume(
    on_cluster: ClusterRun, engine: sa.Engine, mongo: MongoClient[dict[str, Any]], redis_client: redis.Redis
) -> None:
    nodes, cluster, penv, env = on_cluster.nodes, on_cluster.cluster, on_cluster.penv, on_cluster.env
    uid = penv.uid
    topics = [f"{penv.renv.prefix}activity", f"{penv.renv.prefix}tender"]

    def described() -> list[dict[str, Any]] | None:
        """Both topics with every partition led (a broker may not know a topic created a moment ago)."""
        found = run(_describe(cluster, topics))
        whole = all(t.get("error_code", 0) == 0 and t["partitions"] for t in found) and len(found) == len(topics)
        return found if whole and all(p["leader"] >= 0 for t in found for p in t["partitions"]) else None

    leaders: set[int] = set()
    for topic in wait_for(described, 60, "both topics described with their leaders"):
        assert all(len(p["replicas"]) == 3 for p in topic["partitions"]), topic
        leaders |= {int(p["leader"]) for p in topic["partitions"] if topic["topic"] == topics[0]}
    # The broker that leads the activity topic's first partition: its loss must move leadership under load.
    victim = nodes[min(leaders) - 1]
    relay = RelayProcess(penv.renv, "--from-now", **env).start()
    workers = [WorkerProcess(penv, "--agents", "activity_logs,spend", **env).start() for _ in range(2)]
    rows = uk_rows(uid)
    activity_ids: list[int] = []
    tender_ids: list[int] = []

    def write() -> None:
        for i in range(24):
            activity_ids.extend(insert_activities(engine, uid, [5, 1, 3], users=11))
            tender_ids.extend(write_tenders(engine, rows[i::24]))
            time.sleep(0.25)

    try:
        relay.wait_tailing(60)
        for worker in workers:
            worker.wait_ready()
        writer = Background(write).start()
        time.sleep(2.0)
        pid = victim.running_pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # mid-stream: its partitions' leadership moves to the others
        writer.join(120)
        logs = mongo[penv.mongo_db]["user_activity_logs"]
        wait_for(lambda: logs.count_documents({}) >= len(activity_ids), 120, "every activity logged")
        assert sorted(d["_id"] for d in logs.find({}, {"_id": 1})) == sorted(activity_ids)
        # Exactly once in Kafka: every event id of the outbox, once, as a read_committed consumer sees them.
        expected = len(activity_ids) + len(tender_ids)
        records = run(consume(cluster.kafka_bootstrap, topics, until=expected, timeout=120))
        seen = [r.value["event_id"] for r in records]
        assert len(seen) == len(set(seen)) == expected, (len(seen), len(set(seen)), expected)
        # Spend: no event lost or counted twice across the two workers and the broker's loss.
        rows_now = mysql_rows(engine)
        expected_totals = totals_in_cents(recompute(rows_now))
        key = f"{penv.redis_prefix}analytics:{{spend_by_buyer}}:totals"
        wait_for(lambda: store_totals(redis_client, key) == expected_totals, 90, "spend totals equal MySQL's")
        stats = [w.stats() for w in workers]
        assert all(s["activity_logs"]["dead_letters"] == 0 and s["spend"]["dead_letters"] == 0 for s in stats)
        assert sum(s["activity_logs"]["events"] for s in stats) >= len(activity_ids)
        assert relay.alive(), relay.tail()
    finally:
        for worker in workers:
            worker.kill()
        relay.kill()


def test_workers_scale_from_one_to_three_and_back_under_load_without_double_counting(
    on_cluster: ClusterRun, engine: sa.Engine, mongo: MongoClient[dict[str, Any]], redis_client: redis.Redis
) -> None:
    """One worker, then three (the group rebalances the partitions among them), then one again (SIGTERM: each
    leaver commits what it handled), all while events keep coming."""
    penv, env = on_cluster.penv, on_cluster.env
    uid = penv.uid
    relay = RelayProcess(penv.renv, "--from-now", **env).start()
    first = WorkerProcess(penv, "--agents", "activity_logs,spend", **env).start()
    extra: list[WorkerProcess] = []
    rows = uk_rows(uid)
    activity_ids: list[int] = []
    tender_ids: list[int] = []
    stop = threading.Event()

    def write() -> None:
        """Events all along: while one worker runs, while three do, and after two have left."""
        step = 0
        while not stop.is_set() or step < 12:
            activity_ids.extend(insert_activities(engine, uid, [4, 2], users=13))
            tender_ids.extend(write_tenders(engine, rows[step % 24 :: 24][:3]))
            step += 1
            time.sleep(0.3)

    writer = Background(write)
    try:
        relay.wait_tailing(60)
        first.wait_ready()
        writer.start()
        time.sleep(1.5)
        extra = [WorkerProcess(penv, "--agents", "activity_logs,spend", **env).start() for _ in range(2)]
        for worker in extra:
            worker.wait_ready()
        newcomers = list(extra)
        # The group gave the newcomers partitions: they handle events of their own before leaving.
        wait_for(lambda: sum(w.stats()["activity_logs"]["events"] for w in newcomers) > 0, 90, "the newcomers' events")
        for worker in extra:
            assert worker.terminate() == 0, worker.tail()
        time.sleep(1.5)
        stop.set()
        writer.join(120)
        logs = mongo[penv.mongo_db]["user_activity_logs"]
        wait_for(lambda: logs.count_documents({}) >= len(activity_ids), 120, "every activity logged")
        assert sorted(d["_id"] for d in logs.find({}, {"_id": 1})) == sorted(activity_ids)
        expected_totals = totals_in_cents(recompute(mysql_rows(engine)))
        key = f"{penv.redis_prefix}analytics:{{spend_by_buyer}}:totals"
        wait_for(lambda: store_totals(redis_client, key) == expected_totals, 90, "spend totals equal MySQL's")
        assert first.terminate() == 0, first.tail()
        assert relay.terminate() == 0, relay.tail()
    finally:
        stop.set()
        writer.stop()
        for worker in [first, *extra]:
            worker.kill()
        relay.kill()
