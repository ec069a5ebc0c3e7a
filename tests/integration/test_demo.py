"""The main job's relay step on real eTenders data: tenders written through the outbox arrive in Kafka."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from cdc.outbox import make_engine
from schema.mysql import connect
from schema.settings import Settings
from tenderhub.demo import relay_demo
from tenderhub.loader import load_tenders, read_releases, tender_row
from tests.integration.relay_harness import RelayEnv


@pytest.fixture
def demo_env(renv: RelayEnv, uid: str, monkeypatch: pytest.MonkeyPatch) -> RelayEnv:
    # The demo's relay subprocess reads these from the environment, like any tenderhub process.
    monkeypatch.setenv("TENDERHUB_TOPIC_PREFIX", renv.prefix)
    monkeypatch.setenv("TENDERHUB_RELAY_SOURCE_NAME", renv.source)
    monkeypatch.setenv("TENDERHUB_RELAY_SERVER_ID", str(4_900_000 + int(uid[:5], 16)))
    return renv


def test_relay_demo_publishes_real_tenders(demo_env: RelayEnv, tmp_path: Path) -> None:
    lines: list[str] = []
    relay_demo(demo_env.test_settings(), tmp_path, lines.append, tenders=12, relay_args=("--from-now",))
    text = "\n".join(lines)
    assert "wrote 12/12 real tenders" in text
    assert "read back 12/12 events" in text
    assert "relay stopped (exit 0)" in text


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
