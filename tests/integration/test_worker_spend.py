"""Scenario 3 end to end: outbox inserts in MariaDB -> relay -> Kafka -> spend agent -> Redis, checked against the
same figures recomputed from the MySQL rows."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer

from cdc.outbox import write_event
from streams.spend import recompute, recompute_window, totals_in_cents, zset_from_cents
from tenderhub.loader import TenderRow, tender_row, upsert_tender
from tenderhub.processes import PipelineEnv, RelayProcess, WorkerProcess
from tests.integration.relay_harness import consume, run
from tests.integration.worker_harness import wait_for

UK = Path(__file__).parents[1] / "unit" / "streams" / "agents" / "data" / "uk_contracts_finder_spend_sample.jsonl"
AS_OF = "2025-01-23"


def uk_rows(uid: str) -> list[TenderRow]:
    """Real UK releases with their award values as budgets (see the data folder's README for source and licence)."""
    rows = []
    with UK.open(encoding="utf-8") as f:
        for line in f:
            release = json.loads(line, parse_float=Decimal)
            awarded = [a["value"] for a in release.get("awards", []) if a.get("value")]
            row = tender_row(json.loads(line))
            if awarded:
                currency = awarded[0]["currency"]
                amount = sum((Decimal(str(v["amount"])) for v in awarded), Decimal(0))
                row = dataclasses.replace(row, budget=amount.quantize(Decimal("0.01")), currency=currency)
            rows.append(dataclasses.replace(row, ocid=f"{row.ocid}-{uid}"))
    return rows


def write_tenders(engine: sa.Engine, rows: list[TenderRow]) -> list[int]:
    ids = []
    for row in rows:
        with engine.begin() as conn:
            tender_id, _ = upsert_tender(conn, row)
        ids.append(tender_id)
    return ids


def close_tender(engine: sa.Engine, tender_id: int, status: str) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE tenders SET status = :s WHERE id = :id"), {"s": status, "id": tender_id})
        write_event(conn, "tender.closed", tender_id, {"tender_id": tender_id, "status": status})


def mysql_rows(engine: sa.Engine) -> list[dict[str, Any]]:
    """Every tender row: the spend store mirrors the whole database (an empty store is built from MySQL first), so
    the tenders other tests left in the shared database count too."""
    with engine.connect() as conn:
        query = sa.text("SELECT id, buyer, currency, budget, status, published_at FROM tenders")
        return [dict(r._mapping) for r in conn.execute(query)]


def store_totals(r: redis.Redis | redis.RedisCluster, key: str) -> dict[str, tuple[int, int, int]]:
    raw = {k.decode(): int(v) for k, v in r.hgetall(key).items()}
    members = {k[2:] for k in raw if k[:2] in ("c:", "t:", "w:")}
    return {m: (raw.get(f"c:{m}", 0), raw.get(f"t:{m}", 0), raw.get(f"w:{m}", 0)) for m in members}


def zset(r: redis.Redis, key: str) -> dict[str, float]:
    return {m.decode(): s for m, s in r.zrange(key, 0, -1, withscores=True)}


async def redeliver(bootstrap: str, topic: str, records: list[Any]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for rec in records:
            await producer.send_and_wait(topic, json.dumps(rec.value).encode(), key=rec.key)
    finally:
        await producer.stop()


def test_spend_by_buyer_matches_mysql_recompute_under_updates_and_redelivery(
    penv: PipelineEnv, engine: sa.Engine, redis_client: redis.Redis
) -> None:
    penv.as_of = AS_OF
    relay = RelayProcess(penv.renv, "--from-now").start().wait_tailing()
    worker = WorkerProcess(penv, "--agents", "spend").start()
    worker.wait_ready()
    rows = uk_rows(penv.uid)
    with_budget = [r for r in rows if r.budget is not None]
    assert len(with_budget) >= 20
    ids = write_tenders(engine, rows)
    by_ocid = dict(zip((r.ocid for r in rows), ids, strict=True))
    a, b, c = with_budget[0], with_budget[1], with_budget[2]
    # A budget change, a buyer change and a cancellation, each through the outbox like the application would.
    write_tenders(engine, [dataclasses.replace(a, budget=a.budget * 2 + Decimal("0.05"))])
    write_tenders(engine, [dataclasses.replace(b, buyer="Crown Commercial Service (test buyer change)")])
    close_tender(engine, by_ocid[c.ocid], "cancelled")
    # And a redelivery: the first tender events of the topic again, as a worker sees them after a crash.
    tender_topic = f"{penv.renv.prefix}tender"
    first = run(consume(penv.renv.settings.kafka_bootstrap, [tender_topic], until=len(rows) + 3, timeout=60))
    assert len(first) == len(rows) + 3
    run(redeliver(penv.renv.settings.kafka_bootstrap, tender_topic, first[:10]))

    rows_now = mysql_rows(engine)
    expected_all = totals_in_cents(recompute(rows_now))
    expected_window = totals_in_cents(recompute_window(rows_now, dt.date.fromisoformat(AS_OF), 30))
    assert any(cents > 0 for cents, _, _ in expected_all.values())
    assert any(cents > 0 for cents, _, _ in expected_window.values())

    prefix = penv.redis_prefix
    wait_for(
        lambda: worker.stats()["spend"]["events"] >= len(rows) + 3 + 10,
        60,
        "spend agent took every event",
    )
    totals = wait_for(
        lambda: (t := store_totals(redis_client, f"{prefix}analytics:{{spend_by_buyer}}:totals")) == expected_all and t,
        30,
        "stream totals equal the MySQL recompute",
    )
    assert totals == expected_all
    assert store_totals(redis_client, f"{prefix}analytics:{{spend_by_buyer}}:30d:totals") == expected_window
    assert zset(redis_client, f"{prefix}analytics:{{spend_by_buyer}}") == zset_from_cents(expected_all)
    assert zset(redis_client, f"{prefix}analytics:{{spend_by_buyer}}:30d") == zset_from_cents(expected_window)
    # The cancelled tender left spend; the changed buyer's old member lost the tender.
    assert 0 < redis_client.ttl(f"{prefix}analytics:{{spend_by_buyer}}") <= 24 * 3600
    assert worker.stats()["spend"]["dead_letters"] == 0
    assert worker.terminate() == 0, worker.tail()
    relay.terminate()
