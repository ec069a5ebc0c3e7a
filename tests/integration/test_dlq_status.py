"""`tenderhub dlq list | show | replay` and `tenderhub status` against a running relay and worker: letters of both
stages are listed and shown, a worker's letter is replayed and handled, a relay's row that still breaks the contract
is not replayed, bad offsets are clear errors, and status reports the relay's position, zero consumer lag, the DLQ and
every store (a store that is down makes it exit 1)."""

from __future__ import annotations

import json
import time
from typing import Any

import sqlalchemy as sa
from pymongo import MongoClient

from cdc.outbox import write_event
from streams.batch import DeadLetter
from streams.testing import event
from tenderhub.processes import PipelineEnv, RelayProcess, WorkerProcess, free_port
from tests.integration.relay_harness import consume, produce, run
from tests.integration.worker_harness import run_cli, wait_for

USER = 7


def envelope(event_id: int, **payload: Any) -> bytes:
    body = {"user_id": USER, "team_id": 1, "action": "tender.viewed"} | payload
    return json.dumps(event("user.activity", body, seq=event_id << 20, event_id=event_id)).encode()


def cli_json(penv: PipelineEnv, *args: str) -> Any:
    done = run_cli(penv, *args, "--json")
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


def test_dead_letters_of_both_stages_are_listed_shown_and_replayed_and_status_sees_the_pipeline(
    penv: PipelineEnv, engine: sa.Engine, mongo: MongoClient[dict[str, Any]]
) -> None:
    relay = RelayProcess(penv.renv, "--from-now").start().wait_tailing()
    worker = WorkerProcess(penv, "--agents", "activity_logs").start()
    worker.wait_ready()
    bootstrap = penv.renv.settings.kafka_bootstrap
    topic, dlq_topic = f"{penv.renv.prefix}activity", f"{penv.renv.prefix}dlq"
    logs = mongo[penv.mongo_db]["user_activity_logs"]

    with engine.begin() as conn:
        ids = [write_event(conn, "user.activity", USER, {"user_id": USER, "team_id": 1, "action": "a"}) for _ in "ab"]
        # A row the application should never have written (the app's writer checks the contract; raw SQL does not).
        bad_row = conn.execute(
            sa.text(
                "INSERT INTO integration_outbox (event_type, aggregate_type, aggregate_id, payload) "
                "VALUES ('user.activity', 'activity', :id, :payload)"
            ),
            {"id": str(USER), "payload": json.dumps({"user_id": USER, "team_id": "x", "action": "a"})},
        ).lastrowid
    wait_for(lambda: logs.count_documents({}) == 2, 60, "the two good events logged")
    # A contract break written straight to the topic (the worker dead-letters it), and a letter in the worker's own
    # format for a good event (as if an agent's bug, since fixed, had refused it).
    fixed_id = 10**12 + 1
    fixed = envelope(fixed_id)
    letter = DeadLetter("activity_logs", "refused by a bug since fixed", topic, 0, 4, str(USER).encode(), fixed)
    run(
        produce(
            bootstrap,
            [(topic, str(USER).encode(), envelope(10**12 + 2, team_id="x")), (dlq_topic, b"7", letter.to_json())],
        )
    )
    run(consume(bootstrap, [dlq_topic], until=3, timeout=60))

    listed = cli_json(penv, "dlq", "list")
    letters = listed["letters"]
    assert [x["stage"] for x in letters].count("relay") == 1 and len(letters) == 3, letters
    relay_letter = next(x for x in letters if x["stage"] == "relay")
    assert relay_letter["event_id"] == bad_row and "team_id" in relay_letter["reason"]
    worker_letters = [x for x in letters if x["stage"] == "worker"]
    assert {x["agent"] for x in worker_letters} == {"activity_logs"}
    fixed_offset = next(x["offset"] for x in worker_letters if x["reason"] == "refused by a bug since fixed")

    text = run_cli(penv, "dlq", "list")
    assert text.returncode == 0 and f"@{fixed_offset}" in text.stdout and "worker/activity_logs" in text.stdout

    shown = cli_json(penv, "dlq", "show", str(fixed_offset))
    assert shown["letter"]["value"] == fixed.decode() and shown["letter"]["origin"]["topic"] == topic

    # The relay's row still breaks the contract: not replayed, exit 1, and the reason says so.
    refused = run_cli(penv, "dlq", "replay", str(relay_letter["offset"]))
    assert refused.returncode == 1 and "still breaks the contract" in refused.stdout, refused.stdout

    dry = run_cli(penv, "dlq", "replay", str(fixed_offset), "--dry-run")
    assert dry.returncode == 0 and f"would send to {topic}" in dry.stdout, dry.stdout
    assert logs.count_documents({"_id": fixed_id}) == 0

    replayed = run_cli(penv, "dlq", "replay", str(fixed_offset))
    assert replayed.returncode == 0 and f"sent to {topic}" in replayed.stdout, replayed.stdout + replayed.stderr
    wait_for(lambda: logs.count_documents({"_id": fixed_id}) == 1, 60, "the replayed event logged")

    # Bad requests: clear errors, exit 2.
    for args, message in [
        (("show", "99999"), "no dead letter at offset 99999"),
        (("replay",), "needs the offsets of the letters, or --all"),
        (("show", "-3"), "is not a DLQ offset"),
        (("list", "1"), "list takes no offsets"),
    ]:
        bad = run_cli(penv, "dlq", *args)
        assert bad.returncode == 2 and message in bad.stderr, (args, bad.stderr)

    # Status: the relay's committed position, nothing left behind, lag 0 once the worker has committed.
    def status() -> Any:
        return cli_json(penv, "status")

    deadline = time.monotonic() + 60
    now = status()
    while now["consumer_lag"]["total"] and time.monotonic() < deadline:
        time.sleep(1)
        now = status()
    assert now["healthy"] is True, now
    assert {s["name"]: s["ok"] for s in now["stores"]} == {"mysql": True, "kafka": True, "mongodb": True, "redis": True}
    assert now["relay"]["position"] and now["relay"]["committed_at"]
    assert now["relay"]["last_event_id"] == max(*ids, bad_row)
    assert now["relay"]["unpublished"] == 0 and now["relay"]["lag_ms"] == 0
    assert now["consumer_lag"]["total"] == 0 and {p["topic"] for p in now["consumer_lag"]["partitions"]} >= {topic}
    assert now["dlq"]["count"] >= 4  # the relay's letter (and its transaction's marker), the worker's two letters
    assert any(d["reason"] == "refused by a bug since fixed" for d in now["dlq"]["latest"])

    human = run_cli(penv, "status")
    assert human.returncode == 0 and "healthy" in human.stdout.splitlines()[-1]
    down = run_cli(penv, "status", TENDERHUB_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    assert down.returncode == 1, down.stdout + down.stderr
    assert any(line.split()[:2] == ["redis", "DOWN"] for line in down.stdout.splitlines()), down.stdout
    assert "NOT HEALTHY" in down.stdout

    assert worker.terminate() == 0, worker.tail()
    relay.terminate()
