"""The pipeline dashboard in headless Chromium (Debian's) while the pipeline runs: relay, worker and read service are
real processes; events flow through the outbox while the page is open, and the page must show live numbers (the
charts' last points move, the DLQ count and the read service's hit ratio appear), render event data as text, and be
kept as a screenshot with the test output (test-output/dashboard.png)."""

from __future__ import annotations

import asyncio
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from cdc.outbox import write_events
from streams.batch import DeadLetter
from tenderhub.processes import ROOT, Child, PipelineEnv, RelayProcess, WorkerProcess
from tests.integration.browser import Browser
from tests.integration.relay_harness import consume, produce, run

SCREENSHOT = ROOT / "test-output" / "dashboard.png"
HOSTILE = '<img src=x onerror="document.body.dataset.pwned=1">'


def activity(n: int) -> tuple[str, int, dict[str, Any]]:
    return ("user.activity", 7, {"user_id": 7, "team_id": 1, "action": "tender.viewed", "details": {"n": n}})


def tender(n: int) -> tuple[str, int, dict[str, Any]]:
    payload = {
        "tender_id": n,
        "ocid": f"ocds-dash-{n}",
        "title": f"Construction of a hall {n}",
        "buyer": f"Buyer {n % 3}",
        "budget": "1000.00",
        "currency": "ZAR",
        "published_at": "2026-12-01T09:00:00",
        "closing_at": "2027-01-20T10:00:00",
    }
    return ("tender.created", n, payload)


class Traffic(threading.Thread):
    """Writes a few events a second to the outbox until stopped."""

    def __init__(self, engine: sa.Engine) -> None:
        super().__init__(daemon=True)
        self.engine = engine
        self.stop = threading.Event()
        self.written = 0

    def run(self) -> None:
        n = 1000
        while not self.stop.is_set():
            with self.engine.begin() as conn:
                write_events(conn, [activity(n + i) for i in range(10)] + [tender(n)])
            self.written += 11
            n += 10
            self.stop.wait(0.25)


def test_the_dashboard_shows_the_running_pipeline_live_in_a_real_browser(penv: PipelineEnv, engine: sa.Engine) -> None:
    api = Child(
        "read service",
        ["api", "serve"],
        lambda port: penv.env(TENDERHUB_API_PUBLIC_OPEN="true"),
        Path(tempfile.gettempdir()) / f"api-{penv.uid}.log",
        "TENDERHUB_API_PORT",
    ).start()
    relay = RelayProcess(penv.renv, "--from-now").start().wait_tailing()
    worker = WorkerProcess(
        penv,
        "--agents",
        "activity_logs,spend",
        TENDERHUB_API_PORT=str(api.port),
        TENDERHUB_DASHBOARD_REFRESH_S="1",
    ).start()
    traffic = Traffic(engine)
    try:
        worker.wait_ready()
        api.wait_until(lambda: json.loads(api.get("/healthz"))["ok"], 60, "healthy")
        # A dead letter whose reason holds markup: the page must show it as text.
        letter = DeadLetter("spend", f"refused: {HOSTILE}", f"{penv.renv.prefix}tender", 0, 1, b"1", b"{}")
        run(produce(penv.renv.settings.kafka_bootstrap, [(f"{penv.renv.prefix}dlq", b"1", letter.to_json())]))
        run(consume(penv.renv.settings.kafka_bootstrap, [f"{penv.renv.prefix}dlq"], until=1, timeout=60))
        traffic.start()
        deadline = time.monotonic() + 60
        while worker.stats()["spend"]["events"] == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        for _ in range(4):  # cache hits (spend lives in Redis) and a miss (a search reads MySQL)
            api.get("/v1/spend?top=3")
        api.get("/v1/search?q=hall")
        asyncio.run(_watch(f"http://127.0.0.1:{worker.port}/dashboard/"))
    finally:
        traffic.stop.set()
        if traffic.is_alive():
            traffic.join(10)
        worker.stop(30)
        relay.stop(30)
        api.stop(30)


async def _watch(url: str) -> None:
    async with Browser() as browser:
        await browser.open(url)
        try:
            await browser.wait_for("Number(document.body.dataset.updates) >= 3", 60, "three updates of the page")
            # Live numbers: the agents' events/s chart ends on a positive rate while events flow, and so does the
            # topics' chart; the table counts the events handled.
            for chart in ("chart-agents", "chart-topics"):
                await browser.wait_for(
                    f"Number(document.getElementById('{chart}').dataset.last) > 0", 45, f"{chart} shows events/s"
                )
            counted = await browser.evaluate(
                "[...document.querySelectorAll('#agents tr')].slice(1).map(r => [...r.cells].map(c => c.textContent))"
            )
            assert {row[0] for row in counted} == {"activity_logs", "spend"}
            assert all(int(row[1].replace("\u00a0", "").replace(" ", "")) > 0 for row in counted), counted
            first = await browser.evaluate("Number(document.body.dataset.updates)")
            await browser.wait_for(f"Number(document.body.dataset.updates) > {first}", 30, "another update")

            assert await browser.evaluate("document.getElementById('dlq-count').textContent") == "1"
            reason = await browser.evaluate("document.getElementById('dlq-latest').textContent")
            assert HOSTILE in reason
            assert await browser.evaluate(
                "document.body.dataset.pwned === undefined && !document.querySelector('#dlq-latest img')"
            )
            ratio = await browser.evaluate("document.getElementById('hit-ratio').textContent")
            assert ratio.endswith("%") and 0 < float(ratio.removesuffix(" %").replace(",", ".")) < 100, ratio
            assert await browser.evaluate("document.getElementById('health').textContent") == "healthy"
            assert await browser.evaluate("document.getElementById('relay-position').textContent") != "-"
        finally:
            print(f"dashboard screenshot: {await browser.screenshot(SCREENSHOT)}")
