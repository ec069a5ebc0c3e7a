"""The main job's relay step on real eTenders data: tenders written through the outbox arrive in Kafka."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from cdc.outbox import make_engine
from schema.mysql import connect
from schema.settings import Settings
from tenderhub.demo import DEMO_AS_OF, pipeline_demo
from tenderhub.loader import load_tenders, read_releases, tender_row
from tenderhub.processes import PipelineEnv


@pytest.fixture
def demo_env(penv: PipelineEnv, uid: str, monkeypatch: pytest.MonkeyPatch) -> PipelineEnv:
    # The demo's relay and worker subprocesses read these from the environment, like any tenderhub process.
    monkeypatch.setenv("TENDERHUB_TOPIC_PREFIX", penv.renv.prefix)
    monkeypatch.setenv("TENDERHUB_RELAY_SOURCE_NAME", penv.renv.source)
    monkeypatch.setenv("TENDERHUB_RELAY_SERVER_ID", str(4_900_000 + int(uid[:5], 16)))
    monkeypatch.setenv("TENDERHUB_WORKER_GROUP", penv.group)
    monkeypatch.setenv("TENDERHUB_MONGO_DB", penv.mongo_db)
    monkeypatch.setenv("TENDERHUB_REDIS_KEY_PREFIX", penv.redis_prefix)
    return penv


def test_pipeline_demo_shows_top5_with_reasons_summaries_and_spend(demo_env: PipelineEnv, tmp_path: Path) -> None:
    lines: list[str] = []
    settings = demo_env.settings(as_of=DEMO_AS_OF)
    # --from-now: this test's relay publishes only the rows the demo writes now (the outbox is shared).
    pipeline_demo(settings, tmp_path, lines.append, za_tenders=40, relay_args=("--from-now",))
    text = "\n".join(lines)
    assert "wrote 40/40 real eTenders tenders" in text
    assert "== Top 5 open tenders per team" in text
    ranked = [line for line in lines if re.match(r"^  [1-5]\.\s+\d+\.\d", line)]
    assert len(ranked) >= 8, text
    assert "[read from redis]" in text
    assert re.search(r"ok\s+province\s+\S", text) and re.search(r"(ok|NO)\s+cidb\s+\S", text)
    assert "== Summaries" in text and "[redis, extractive" in text
    assert re.search(r"GBP\s+[\d,]+\.\d\d\s+\d+ tender", text), text
    assert re.search(r"user_activity_logs holds \d+ entries", text)
    # The read side over HTTP: the team's top list from Redis through the read service, which refuses others.
    assert re.search(r"== Read service http://127\.0\.0\.1:\d+ \(token \d+ for user \d+ of team \d+", text), text
    assert re.search(r"GET /v1/teams/\d+/top -> [1-9]\d* tenders from redis", text), text
    assert "another team's top list: HTTP 403; without a token: HTTP 401" in text
    assert re.search(r"GET /v1/search\?q=construction&status=open&limit=5 \(first\) -> [1-5] from mysql", text), text
    assert re.search(r"GET /v1/search\?q=construction&status=open&limit=5 \(again\) -> [1-5] from redis", text), text
    assert re.search(r"== Dashboard  http://127\.0\.0\.1:\d+/dashboard/", text), text
    assert "read service stopped (exit 0)" in text
    assert "relay stopped (exit 0)" in text and "worker stopped (exit 0)" in text
    assert "0 to the DLQ" in text


def test_loading_twice_turns_created_into_updated(settings: Settings) -> None:
    releases = list(read_releases(limit=3))
    engine: sa.Engine = make_engine(settings)
    try:
        load_tenders(engine, releases)
        again = load_tenders(engine, releases)
    finally:
        engine.dispose()
    assert [event for _, event, _ in again] == ["tender.updated"] * 3
    with connect(settings.mysql_admin, settings.mysql.database) as conn, conn.cursor() as cur:
        cur.execute("SELECT ocid, title, tender_number, closing_at FROM tenders WHERE id = %s", (again[0][0],))
        ocid, title, number, closing = cur.fetchone()
    first = releases[0]
    assert ocid == first["ocid"] and title == first["tender"]["description"] and number == first["tender"]["title"]
    assert closing is not None and json.loads(tender_row(first).raw_ocds)["ocid"] == ocid
