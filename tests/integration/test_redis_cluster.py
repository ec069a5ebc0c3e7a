"""The pipeline's Redis on a Redis Cluster: `tenderhub stack up --cluster`'s six Redis nodes (three masters, a replica
each), started here on free ports in a folder of their own; MariaDB, Kafka and MongoDB are the dev stack's.

Every write path runs here, so a script or transaction whose keys span two hash slots fails with CROSSSLOT: the
rebuild (each agent's handler: summaries and their cards and locks, readiness facts and top lists of every team,
spend's whole-store replace, activity logs), the stream's incremental writes (spend's fold, the search cache's drops),
the read service's (cached searches, quotas, cache-first reads), verify, and clearing a namespace. Then a master is
SIGKILLed while the spend and readiness agents write under load: its replica takes over, and nothing is lost or
counted twice."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from pydantic import SecretStr
from pymongo import MongoClient
from redis.cluster import ClusterNode
from redis.crc import key_slot
from redis.exceptions import RedisClusterException

from schema.redis_keys import API_FAMILIES, CATALOGUE, SPEND_TOTALS, TEAM_TOP_TENDERS, TENDER_METADATA
from schema.settings import Settings, load_stack_settings
from sinks.mongo import MongoSink
from sinks.reader import CacheFirstReader
from sinks.redis import RedisSink, delete_namespace, sync_client
from sinks.redis_versioned import EMPTY, ListChange, TopList, ZsetCas
from sinks.search import SearchCache
from streams.agents.search_cache import SearchCacheHandler
from streams.agents.spend import SpendHandler
from streams.context import WorkerContext
from streams.rebuild import rebuild
from streams.spend import recompute, totals_in_cents
from streams.verify import event, tender_payload, tender_rows, verify
from tenderhub.api.quotas import Quotas
from tenderhub.companies import load_companies, read_profiles
from tenderhub.loader import read_releases, tender_row, upsert_tender
from tenderhub.processes import PipelineEnv, RelayProcess, WorkerProcess
from tenderhub.stack import Redis, Stack, form_redis_cluster, free_port_block, start_redis_servers
from tests.integration.conftest import Source
from tests.integration.test_worker_intel import redis_top, wait_every_team_ranked
from tests.integration.test_worker_spend import mysql_rows, store_totals
from tests.integration.worker_harness import Background, wait_for

AS_OF = "2025-09-25"
NODES = 6


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, list[Redis]]]:
    # Each node's port and its cluster bus port (+ 10000) free.
    offsets = [100 * n + bus for n in range(NODES) for bus in (0, 10_000)]
    cfg = load_stack_settings(
        stack_dir=tmp_path_factory.mktemp("redis-cluster") / "stack",
        redis_nodes=NODES,
        redis_port=free_port_block(offsets, high=30_000),
    )
    stack = Stack(cfg)
    nodes = [s for s in stack.services if isinstance(s, Redis)]
    assert [n.name for n in nodes] == ["redis", *(f"redis-{n}" for n in range(2, NODES + 1))]
    try:
        start_redis_servers(stack, 60)
        yield stack, nodes
    finally:
        for node in nodes:
            node.stop()


def _masters(client: redis.RedisCluster) -> dict[str, list[tuple[int, int]]]:
    """Each master's address and the slot ranges it serves, as the cluster says now."""
    out: dict[str, list[tuple[int, int]]] = {}
    slots = client.execute_command("CLUSTER SLOTS", target_nodes=client.get_random_node())
    for (start, end), served in slots.items():
        host, port = served["primary"]
        out.setdefault(f"{host}:{port}", []).append((start, end))
    return out


def _serving(client: redis.RedisCluster, key: str) -> str:
    slot = key_slot(key.encode())
    return next(m for m, ranges in _masters(client).items() if any(a <= slot <= b for a, b in ranges))


@dataclass
class OnCluster:
    stack: Stack
    nodes: list[Redis]
    url: str
    client: redis.RedisCluster

    @property
    def env(self) -> dict[str, str]:
        return {"TENDERHUB_REDIS_URL": self.url, "TENDERHUB_REDIS_CLUSTER": "true"}

    def settings(self, base: Settings) -> Settings:
        return base.model_copy(update={"redis_url": SecretStr(self.url), "redis_cluster": True})


@pytest.fixture
def on_cluster(redis_cluster: tuple[Stack, list[Redis]], penv: PipelineEnv) -> Iterator[OnCluster]:
    stack, nodes = redis_cluster
    url = stack.redis_url()
    client = redis.RedisCluster.from_url(url, socket_timeout=5)
    try:
        yield OnCluster(stack, nodes, url, client)
    finally:
        for node in nodes:  # a node a test killed comes back (as a replica of the master that replaced it)
            if node.running_pid() is None:
                node.start()
                node.wait_healthy(60)
        form_redis_cluster(stack, 60)  # formed already: waits until it is whole again, replicas synced
        client.close()
        client = redis.RedisCluster.from_url(url, socket_timeout=5)
        delete_namespace(client, penv.redis_prefix)
        client.close()


def test_a_script_whose_keys_span_two_slots_is_refused_here(on_cluster: OnCluster) -> None:
    """What the hash tags prevent: the cluster refuses a script over keys of two slots (the layout before the tags
    put a list and its inputs, and the spend keys, in different slots)."""
    client = on_cluster.client
    masters = _masters(client)
    assert len(masters) == 3 and sum(b - a + 1 for r in masters.values() for a, b in r) == 16_384
    old = ["analytics:spend_by_buyer:totals", "analytics:spend_by_buyer"]
    assert key_slot(old[0].encode()) != key_slot(old[1].encode())
    # Straight to the master of the first key's slot (redis-py's cluster client refuses such a call before sending).
    host, port = _serving(client, old[0]).split(":")
    node = redis.Redis(host=host, port=int(port), password=on_cluster.stack.secrets["redis_password"])
    try:
        with pytest.raises(redis.ResponseError, match="hash to the same slot"):  # CROSSSLOT
            node.eval("return redis.call('EXISTS', KEYS[1], KEYS[2])", 2, *old)
    finally:
        node.close()
    with pytest.raises(RedisClusterException, match="same key slot"):
        client.eval("return redis.call('EXISTS', KEYS[1], KEYS[2])", 2, *old)
    tagged = [SPEND_TOTALS.key(), TEAM_TOP_TENDERS.key(id=1)]
    assert client.eval("return redis.call('EXISTS', KEYS[1])", 1, tagged[0]) == 0


def test_every_write_and_read_path_runs_on_the_cluster(
    on_cluster: OnCluster, source: Source, penv: PipelineEnv, mongo: MongoClient[dict[str, Any]]
) -> None:
    """Rebuild from MySQL (every agent's handler writes), verify clean; then the stream's incremental writes and the
    read service's, and verify clean again."""
    settings = on_cluster.settings(source.settings)
    asyncio.run(rebuild(settings))
    report = asyncio.run(verify(settings))
    assert report.drift == 0, report.lines()
    assert all(f.checked > 0 for f in report.families), report.lines()
    # The teams' lists landed on more than one master: the top-list writes really were split by slot.
    teams = [int(t) for t in mongo[penv.mongo_db]["readiness_scores"].distinct("team_id")]
    lists = [f"{penv.redis_prefix}{TEAM_TOP_TENDERS.key(id=t)}" for t in teams]
    assert len({_serving(on_cluster.client, k) for k in lists}) >= 2, lists

    rows = [r for chunk in tender_rows(source.engine) for r in chunk]
    tenders = [
        event("tender.updated", int(r["id"]), tender_payload(r), event_id=10_000 + n, source_seq=2_000_000 + n, at=_AT)
        for n, r in enumerate(rows)
    ]

    async def stream_and_read() -> dict[str, Any]:
        from streams.batch import Incoming

        ctx = WorkerContext(settings)
        # The read service's sink: the catalogue and its own quota keys, connections capped per node.
        redis_sink = RedisSink.from_settings(
            settings, key_prefix=settings.redis_key_prefix, families=(*CATALOGUE, *API_FAMILIES), pool_size=8
        )
        mongo_sink = MongoSink.from_settings(settings)
        try:
            cache = SearchCache(redis_sink)
            digest = "ab" * 16
            _, epoch = await cache.get(digest)
            filled = await cache.fill(digest, epoch, [{"id": int(r["id"])} for r in rows[:7]])
            cached, _ = await cache.get(digest)
            items = [Incoming(e, "t", 0, n) for n, e in enumerate(tenders)]
            await SpendHandler(ctx)(items)
            drops = SearchCacheHandler(ctx)
            await drops(items[:3])
            after, _ = await cache.get(digest)
            quotas = Quotas(redis_sink, per_minute=2, searches_per_day=5)
            verdicts = [(await quotas.take(7, "127.0.0.1")).allowed for _ in range(3)]
            searches = (await quotas.take_search(None, "10.0.0.9")).allowed
            reader = CacheFirstReader(redis_sink, mongo_sink, as_of=settings.today)
            spend = await reader.spend_by_buyer(limit=5)
            top = await reader.top_tenders(teams[0])
            return {
                "filled": filled,
                "cached": cached,
                "after_drop": after,
                "dropped": drops.dropped,
                "verdicts": verdicts,
                "searches": searches,
                "spend": spend,
                "top": top,
            }
        finally:
            await redis_sink.aclose()
            mongo_sink.close()
            await ctx.aclose()

    got = asyncio.run(stream_and_read())
    assert got["filled"] and got["cached"] is not None and len(got["cached"]) == 7
    assert got["after_drop"] is None and got["dropped"] == 1  # the search held a changed tender: dropped
    assert got["verdicts"] == [True, True, False] and got["searches"] is True
    assert got["spend"].source == "redis" and got["spend"].value
    assert got["top"].source == "redis"
    report = asyncio.run(verify(settings))
    assert report.drift == 0, report.lines()
    expected = totals_in_cents(recompute(mysql_rows(source.engine)))
    assert store_totals(on_cluster.client, f"{penv.redis_prefix}{SPEND_TOTALS.key()}") == expected


def test_top_lists_of_many_teams_in_one_call(
    on_cluster: OnCluster, penv: PipelineEnv, caplog: pytest.LogCaptureFixture
) -> None:
    """A tender for every team: one compare-and-set call over 600 teams' lists, one script per slot on the cluster,
    never more in flight than a node's connections allow; a list changed since it was read is reported, not written."""
    settings = on_cluster.settings(penv.settings())
    teams = list(range(1, 601))

    async def go() -> tuple[dict[str, TopList], list[str], dict[str, TopList]]:
        sink = RedisSink.from_settings(settings, key_prefix=settings.redis_key_prefix)
        try:
            cas = ZsetCas(sink, 3600, inputs_suffix=":inputs")
            keys = [TEAM_TOP_TENDERS.key(id=t) for t in teams]
            before = await cas.read(keys)
            changes = {k: ListChange(before[k], {"42": float(n)}, {"team_seq": n}) for n, k in enumerate(keys, 1)}
            await cas.replace_if_unchanged(changes)
            stale = {keys[0]: ListChange(before[keys[0]], {"43": 1.0}, {"team_seq": 10_000})}
            conflicts = await cas.replace_if_unchanged(stale)
            return before, conflicts, await cas.read(keys)
        finally:
            await sink.aclose()

    with caplog.at_level(logging.WARNING, logger="sinks.retry"):
        before, conflicts, after = asyncio.run(go())
    # Not one command refused for want of a connection (each would have been retried, and logged here).
    assert not [r.getMessage() for r in caplog.records if r.name == "sinks.retry"][:3]
    assert all(v == EMPTY for v in before.values())
    assert conflicts == [TEAM_TOP_TENDERS.key(id=1)]
    assert [after[TEAM_TOP_TENDERS.key(id=t)].members for t in (1, 300, 600)] == [
        [("42", "1")],
        [("42", "300")],
        [("42", "600")],
    ]
    assert after[TEAM_TOP_TENDERS.key(id=600)].inputs == {"team_seq": "600"}


_AT = "2025-09-02T00:00:00.000Z"


def _open(row: Any) -> bool:
    end = dt.datetime.combine(dt.date.fromisoformat(AS_OF), dt.time(23, 59, 59))
    return row.status == "active" and row.closing_at is not None and row.closing_at > end


def test_a_master_failover_while_the_spend_and_readiness_agents_write(
    on_cluster: OnCluster, penv: PipelineEnv, engine: sa.Engine, mongo: MongoClient[dict[str, Any]]
) -> None:
    """SIGKILL of the master that serves the spend keys (and a third of the teams' lists) while a worker folds tender
    events into spend and scores every team against them: its replica is promoted, the worker's writes wait and go
    on there, and the end state is the clean one: spend equal to MySQL's recompute, every team's top 5 equal to the
    best of its scores."""
    penv.as_of = AS_OF
    client = on_cluster.client
    prefix = penv.redis_prefix
    spend_key = f"{prefix}{SPEND_TOTALS.key()}"
    victim_address = _serving(client, spend_key)
    victim = next(n for n in on_cluster.nodes if victim_address.endswith(f":{n.port}"))
    relay = RelayProcess(penv.renv, "--from-now").start()
    worker = WorkerProcess(penv, "--agents", "spend,readiness", **on_cluster.env).start()
    releases = read_releases(limit=96)
    rows = [dataclasses.replace(tender_row(r), ocid=f"{r['ocid']}-{penv.uid}") for r in releases]
    profiles = [dataclasses.replace(p, team=f"{p.team} {penv.uid}") for p in read_profiles()]
    ids: dict[int, Any] = {}
    teams: dict[int, Any] = {}

    def write() -> None:
        teams.update({team_id: p for team_id, _, p in load_companies(engine, profiles)})
        for i in range(16):
            for row in rows[i::16]:
                with engine.begin() as conn:
                    ids[upsert_tender(conn, row)[0]] = row
            if i % 4 == 3:  # a profile changes now and then: its team is rescored against every tender
                team_id = list(teams)[i // 4 % len(teams)]
                years = (teams[team_id].experience_years or 0) + 1
                teams[team_id] = dataclasses.replace(teams[team_id], experience_years=years)
                load_companies(engine, [teams[team_id]])
            time.sleep(0.5)

    writer = Background(write)
    try:
        relay.wait_tailing(60)
        worker.wait_ready()
        writer.start()
        wait_for(lambda: client.exists(spend_key) == 1, 60, "the worker writing spend")
        time.sleep(1.0)
        pid = victim.running_pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # mid-stream: its slots move to its replica
        # The replica takes over: another node now serves the spend keys' slot.
        wait_for(lambda: _serving_or_none(on_cluster, spend_key) not in (None, victim_address), 60, "a new master")
        writer.join(120)
        open_ids = {t for t, row in ids.items() if _open(row)}
        assert len(open_ids) >= 20
        db = mongo[penv.mongo_db]
        expected_totals = totals_in_cents(recompute(mysql_rows(engine)))
        wait_for(lambda: store_totals(client, spend_key) == expected_totals, 120, "spend totals equal MySQL's")
        wait_every_team_ranked(db, lambda team_id: redis_top(client, prefix, team_id), teams, open_ids, each_s=60)
        stats = worker.stats()
        assert stats["spend"]["dead_letters"] == 0 and stats["readiness"]["dead_letters"] == 0, stats
        assert worker.alive(), worker.tail()
        assert worker.terminate() == 0, worker.tail()
        assert relay.terminate() == 0, relay.tail()
    finally:
        writer.stop()
        worker.kill()
        relay.kill()


def _serving_or_none(on_cluster: OnCluster, key: str) -> str | None:
    """The master serving `key` as a fresh client learns it from any node that answers (None while the cluster
    cannot say)."""
    host = on_cluster.stack.cfg.stack_host
    client = None
    try:
        client = redis.RedisCluster(
            startup_nodes=[ClusterNode(host, node.port) for node in on_cluster.nodes],
            password=on_cluster.stack.secrets["redis_password"],
            socket_timeout=2,
            socket_connect_timeout=2,
        )
        master = _serving(client, key)
        client.ping(target_nodes=redis.RedisCluster.PRIMARIES)
        return master
    except (redis.RedisError, RedisClusterException, StopIteration):
        return None
    finally:
        if client is not None:
            client.close()


def test_a_client_starts_from_another_node_while_the_urls_node_is_down(
    on_cluster: OnCluster, penv: PipelineEnv
) -> None:
    """REDIS_URL names node 1; with it down (its slots failed over), a client given the other nodes
    (TENDERHUB_REDIS_CLUSTER_NODES, which the stack writes) still finds the cluster; one without them cannot."""
    first = on_cluster.nodes[0]
    others = ",".join(f"{on_cluster.stack.cfg.stack_host}:{n.port}" for n in on_cluster.nodes[1:])
    key = f"{penv.redis_prefix}{TEAM_TOP_TENDERS.key(id=1)}"
    pid = first.running_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: _serving_or_none(on_cluster, key) is not None, 60, "the cluster whole without node 1")
    alone = on_cluster.settings(penv.settings())
    with pytest.raises((RedisClusterException, redis.ConnectionError)):
        sync_client(alone, socket_timeout=2, socket_connect_timeout=2).ping()
    settings = alone.model_copy(update={"redis_cluster_nodes": others})
    client = sync_client(settings, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.zadd(key, {"7": 1.0})
        assert client.zrange(key, 0, -1) == [b"7"]
    finally:
        client.close()

    async def write() -> bool:
        sink = RedisSink.from_settings(settings, key_prefix=settings.redis_key_prefix)
        try:
            return await sink.cas_hash(TENDER_METADATA.key(id=5), {"title": "t"}, "source_seq", 3, 60)
        finally:
            await sink.aclose()

    assert asyncio.run(write())
