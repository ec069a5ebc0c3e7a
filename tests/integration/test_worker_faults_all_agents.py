"""Every agent (activity logs, spend, summaries, readiness) under worker SIGKILLs and store outages, with the full mix
of event types: tenders created, updated, closed and cancelled, company profiles created and changed, activity.

Oracle: a second, fault-free worker reads the same topics into stores of its own; once both are quiet, the faulted
worker's MongoDB documents and Redis keys must equal the clean worker's (write counters aside), every activity event
must be logged once, and spend must equal the MySQL recompute."""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from pymongo import MongoClient

from streams.spend import recompute, totals_in_cents
from tenderhub.companies import CompanyProfile, load_companies, read_profiles
from tenderhub.loader import TenderRow, read_releases, tender_row
from tenderhub.processes import PipelineEnv, RelayProcess, WorkerProcess
from tenderhub.stack import FerretDB, Redis
from tests.integration.relay_harness import Writer
from tests.integration.store_faults import diff, snapshot
from tests.integration.test_cdc_relay import insert_activities
from tests.integration.test_worker_faults import _crash, _pause, _service
from tests.integration.test_worker_spend import close_tender, mysql_rows, store_totals, uk_rows, write_tenders
from tests.integration.worker_harness import wait_for

AS_OF = "2025-09-25"  # inside the real eTenders data's period, so tenders are open and get scored


@dataclass
class CleanTwin(PipelineEnv):
    """Same topics as the faulted worker, its own consumer group, MongoDB database and Redis prefix."""

    @property
    def group(self) -> str:
        return f"test-clean-{self.uid}"

    @property
    def mongo_db(self) -> str:
        return f"test_{self.uid}_clean"

    @property
    def redis_prefix(self) -> str:
        return f"test:{self.uid}c:"


@pytest.fixture
def twin(penv: PipelineEnv, mongo: MongoClient[dict[str, Any]], redis_client: redis.Redis) -> Iterator[CleanTwin]:
    env = CleanTwin(penv.renv, as_of=AS_OF)
    yield env
    mongo.drop_database(env.mongo_db)
    for pattern in (f"{env.redis_prefix}*", f"{{{env.redis_prefix}*"):
        keys = list(redis_client.scan_iter(match=pattern, count=1000))
        if keys:
            redis_client.delete(*keys)


@dataclass
class Written:
    activity_ids: list[int]
    tender_ids: list[int]


def write_mix(
    engine: sa.Engine, uid: str, rng: random.Random, rounds: int = 10, midway: Callable[[], None] | None = None
) -> Written:
    """Each round: activity, new eTenders and UK tenders; from round 2 on an update, a close and a cancellation of
    earlier tenders; company profiles created in round 1 and changed in rounds 4 and 7. `midway` runs before the
    second half of the rounds (a test waits there for its fault, so that half is written while the fault lasts)."""
    etenders = [dataclasses.replace(tender_row(r), ocid=f"{r['ocid']}-{uid}") for r in read_releases(limit=4 * rounds)]
    uk = uk_rows(uid)
    profiles = [dataclasses.replace(p, team=f"{p.team} {uid}") for p in read_profiles()]
    rows: dict[int, TenderRow] = {}
    activity_ids: list[int] = []
    for round_ in range(rounds):
        if midway is not None and round_ == rounds // 2:
            midway()
        activity_ids += insert_activities(engine, uid, [rng.randint(20, 120), 1, rng.randint(1, 10)])
        new = etenders[round_ * 4 : round_ * 4 + 4] + uk[round_ * 3 : round_ * 3 + 3]
        rows.update(zip(write_tenders(engine, new), new, strict=True))
        if round_ == 1:
            load_companies(engine, profiles)
        if round_ >= 2:
            tid = rng.choice(sorted(rows))
            changed = dataclasses.replace(rows[tid], title=f"Amended {round_}: {rows[tid].title}"[:900])
            if changed.budget is not None:
                changed = dataclasses.replace(changed, budget=changed.budget + round_)
            write_tenders(engine, [changed])
            rows[tid] = changed
            close_tender(engine, rng.choice(sorted(rows)), "complete")
            close_tender(engine, rng.choice(sorted(rows)), "cancelled")
        if round_ in (4, 7):
            load_companies(engine, [_changed_profile(p, round_) for p in profiles[:2]])
        time.sleep(0.2)
    return Written(activity_ids, sorted(rows))


def _changed_profile(p: CompanyProfile, round_: int) -> CompanyProfile:
    provinces = p.provinces[1:] if len(p.provinces) > 1 else [*p.provinces, "Gauteng"]
    return dataclasses.replace(p, provinces=provinces, experience_years=(p.experience_years or 0) + round_)


def assert_equals_clean_run(
    penv: PipelineEnv,
    twin: CleanTwin,
    engine: sa.Engine,
    mongo: MongoClient[dict[str, Any]],
    redis_client: redis.Redis,
    written: Written,
) -> None:
    clean = WorkerProcess(twin).start()
    try:
        clean.wait_ready()
        logs = mongo[penv.mongo_db]["user_activity_logs"]
        wait_for(lambda: logs.count_documents({}) >= len(written.activity_ids), 180, "every activity logged")
        expected = totals_in_cents(recompute(mysql_rows(engine)))
        totals_key = f"{penv.redis_prefix}analytics:{{spend_by_buyer}}:totals"
        try:
            wait_for(lambda: store_totals(redis_client, totals_key) == expected, 120, "spend equals MySQL")
        except AssertionError:
            got = store_totals(redis_client, totals_key)
            wrong = {k: (got.get(k), v) for k, v in expected.items() if got.get(k) != v}
            extra = sorted(set(got) - set(expected))
            raise AssertionError(f"spend differs from MySQL: (store, mysql) {wrong}; extra buyers {extra}") from None
        faulted_settings, clean_settings = penv.settings(), twin.settings()
        last: list[str] = []

        def same() -> bool:
            nonlocal last
            last = diff(snapshot(clean_settings), snapshot(faulted_settings))
            return not last

        try:
            wait_for(same, 240, "faulted stores equal the clean worker's", interval=2)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n" + "\n".join(last)) from None
        assert logs.count_documents({}) == len(written.activity_ids)
        assert {d["_id"] for d in logs.find({}, {"_id": 1})} == set(written.activity_ids)
        db = mongo[penv.mongo_db]
        assert db["readiness_scores"].count_documents({}) > 0 and db["tender_summaries"].count_documents({}) > 0
        assert clean.terminate() == 0, clean.tail()
    finally:
        clean.kill()


def test_every_agent_sigkilled_mid_batch_ends_equal_to_a_clean_worker(
    penv: PipelineEnv,
    twin: CleanTwin,
    engine: sa.Engine,
    mongo: MongoClient[dict[str, Any]],
    redis_client: redis.Redis,
) -> None:
    penv.as_of = AS_OF
    relay = RelayProcess(penv.renv, "--from-now").start().wait_tailing()
    worker = WorkerProcess(penv, TENDERHUB_WORKER_BATCH_MAX="100").start()
    try:
        worker.wait_ready()
        rng = random.Random(penv.uid)
        writer = Writer(lambda: write_mix(engine, penv.uid, rng))
        writer.start()
        kills = 0
        while kills < 6 or writer.is_alive():
            time.sleep(rng.uniform(0.5, 2.0))
            worker.kill()
            kills += 1
            worker.start()
        written: Written = writer.result()
        worker.wait_ready()
        assert_equals_clean_run(penv, twin, engine, mongo, redis_client, written)
        print(f"all agents: {kills} SIGKILLs, {len(written.activity_ids)} activity events, {len(written.tender_ids)}")
        assert worker.terminate() == 0, worker.tail()
        assert relay.terminate() == 0, relay.tail()
    finally:
        worker.kill()
        relay.kill()


@pytest.mark.parametrize("store", ["ferretdb", "redis"])
def test_every_agent_rides_out_a_30s_store_outage_and_ends_equal_to_a_clean_worker(
    store: str,
    penv: PipelineEnv,
    twin: CleanTwin,
    engine: sa.Engine,
    mongo: MongoClient[dict[str, Any]],
    redis_client: redis.Redis,
) -> None:
    penv.as_of = AS_OF
    relay = RelayProcess(penv.renv, "--from-now").start().wait_tailing()
    worker = WorkerProcess(penv).start()
    down = threading.Event()
    outage: Callable[[], None] = (
        (lambda: _crash(_service(FerretDB), 30, down))
        if store == "ferretdb"
        else (lambda: _pause(_service(Redis), 30, down))
    )
    outage_thread = threading.Thread(target=outage)
    try:
        worker.wait_ready()
        rng = random.Random(penv.uid)

        def store_down() -> None:
            # The second half of the events is written while the store is down: without it a fast worker could
            # have handled every event before the outage began, and the run would test no retry at all.
            outage_thread.start()
            assert down.wait(30), "the store did not go down"

        written: Written = write_mix(engine, penv.uid, rng, midway=store_down)
        outage_thread.join()
        assert_equals_clean_run(penv, twin, engine, mongo, redis_client, written)
        stats = worker.stats()
        # The agent that met the outage first holds the batch in flight (one at a time), so which agent retried
        # depends on timing.
        assert sum(a["store_retries"] for a in stats.values()) >= 1, stats
        assert sum(a["dead_letters"] for a in stats.values()) == 0, stats
        if store == "ferretdb":
            assert "store unavailable" in worker.log_text(), worker.tail()
        assert worker.proc is not None and worker.proc.poll() is None, worker.tail()
        assert worker.terminate() == 0, worker.tail()
        assert relay.terminate() == 0, relay.tail()
    finally:
        if outage_thread.ident is not None:
            outage_thread.join()  # the store is back before the next test, whatever failed here
        worker.kill()
        relay.kill()
