"""Relay faults against the real services: restarts, DDL, rotation, purged position, failover (HA)."""

from __future__ import annotations

import signal
import threading
import time

import sqlalchemy as sa

from schema.mysql import connect
from schema.settings import Settings, load_stack_settings
from tenderhub.processes import RelayEnv, RelayProcess
from tenderhub.stack import Kafka, MariaDB, Service, Stack
from tests.integration.relay_harness import consume, run
from tests.integration.test_cdc_relay import assert_exactly_once_in_order, insert_activities, mine


def _service(kind: type[Service]) -> Service:
    return next(s for s in Stack(load_stack_settings()).services if isinstance(s, kind))


def _restart(svc: Service, down_s: float) -> None:
    assert svc.stop()
    time.sleep(down_s)
    svc.start()
    svc.wait_healthy(120)
    svc.after_start()


def _insert_retrying(engine: sa.Engine, uid: str, sizes: list[int], deadline_s: float = 120) -> list[int]:
    """Insert, retrying while MySQL is down (an app would too)."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            return insert_activities(engine, uid, sizes)
        except sa.exc.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _expect_all(renv: RelayEnv, uid: str, ids: list[int], timeout: float = 120) -> None:
    records = mine(
        run(consume(renv.settings.kafka_bootstrap, [f"{renv.prefix}activity"], len(ids), timeout=timeout)), uid
    )
    assert_exactly_once_in_order(records, ids)


def test_mariadb_restart_relay_reconnects_and_resumes(renv: RelayEnv, engine: sa.Engine, uid: str) -> None:
    relay = RelayProcess(renv, "--from-now").start()
    try:
        relay.wait_committed()
        ids = insert_activities(engine, uid, [300, 1, 50])
        _restart(_service(MariaDB), down_s=3)
        ids += _insert_retrying(engine, uid, [200, 1, 1, 30])
        _expect_all(renv, uid, ids)
        assert sum(v for k, v in relay.metrics().items() if k.startswith("tenderhub_relay_errors_total")) >= 1
        assert relay.terminate() == 0, relay.tail()
    finally:
        relay.kill()


def test_kafka_restart_relay_reconnects_and_resumes(renv: RelayEnv, engine: sa.Engine, uid: str) -> None:
    relay = RelayProcess(renv, "--from-now").start()
    kafka = _service(Kafka)
    try:
        relay.wait_committed()
        ids = insert_activities(engine, uid, [300, 1])
        time.sleep(1)
        assert kafka.stop()
        ids += insert_activities(engine, uid, [500, 1, 1, 7])  # written while the broker is down
        time.sleep(3)
        kafka.start()
        kafka.wait_healthy(120)
        ids += insert_activities(engine, uid, [100])
        _expect_all(renv, uid, ids, timeout=180)
        assert relay.terminate() == 0, relay.tail()
    finally:
        relay.kill()
        if kafka.running_pid() is None:
            kafka.start()
            kafka.wait_healthy(120)


def test_alter_table_and_binlog_rotation_while_tailing(
    renv: RelayEnv, engine: sa.Engine, settings: Settings, uid: str
) -> None:
    relay = RelayProcess(renv, "--from-now").start()
    try:
        relay.wait_committed()
        ids = insert_activities(engine, uid, [100, 1])
        with connect(settings.mysql_admin, settings.mysql.database) as conn, conn.cursor() as cur:
            cur.execute("ALTER TABLE integration_outbox ADD COLUMN trace_id VARCHAR(64) NULL AFTER aggregate_id")
            try:
                ids += insert_activities(engine, uid, [100, 1])
                cur.execute("FLUSH BINARY LOGS")
                ids += insert_activities(engine, uid, [10])
                cur.execute("FLUSH BINARY LOGS")
            finally:
                cur.execute("ALTER TABLE integration_outbox DROP COLUMN trace_id")
        ids += insert_activities(engine, uid, [100, 1])
        _expect_all(renv, uid, ids)
        assert relay.terminate() == 0, relay.tail()
    finally:
        relay.kill()


def test_purged_position_fails_loudly_and_resnapshot_recovers(
    renv: RelayEnv, engine: sa.Engine, settings: Settings, uid: str
) -> None:
    relay = RelayProcess(renv, "--from-now").start()
    relay.wait_committed()
    assert relay.terminate() == 0
    lost = insert_activities(engine, uid, [20, 1])  # after the position, then purged from the binlog
    with connect(settings.mysql_admin) as conn, conn.cursor() as cur:
        cur.execute("FLUSH BINARY LOGS")
        cur.execute("SHOW BINARY LOGS")
        newest = cur.fetchall()[-1][0]
        # MariaDB keeps a file until its binlog checkpoint has moved on (crash recovery); retry until it is gone.
        deadline = time.monotonic() + 30
        while True:
            cur.execute("PURGE BINARY LOGS TO %s", (newest,))
            cur.execute("SHOW BINARY LOGS")
            if cur.fetchall()[0][0] == newest or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        cur.execute("SHOW BINARY LOGS")
        assert cur.fetchall()[0][0] == newest, "could not purge the binlog holding the relay position"
    relay = RelayProcess(renv).start()
    try:
        assert relay.proc is not None
        code = relay.proc.wait(60)  # fails fast: no hang, no retry loop
        log = relay.tail(10)
        assert code == 2, log
        assert "no longer holds the relay position" in log and "--resnapshot" in log, log
        assert "GTID" in log or "binlog" in log.lower()
    finally:
        relay.kill()
    relay = RelayProcess(renv, "--resnapshot").start()
    try:
        # The purged rows were never marked published: the resnapshot's backfill republishes them.
        _expect_all(renv, uid, lost)
        assert relay.terminate() == 0, relay.tail()
    finally:
        relay.kill()


def _takeover(renv: RelayEnv, engine: sa.Engine, uid: str, how: signal.Signals) -> None:
    active = RelayProcess(renv, "--from-now").start()
    active.wait_committed()
    standby = RelayProcess(renv).start()
    ids: list[int] = []
    stop = threading.Event()

    def keep_inserting() -> None:
        while not stop.is_set():
            ids.extend(insert_activities(engine, uid, [5]))
            time.sleep(0.01)

    writer = threading.Thread(target=keep_inserting)
    try:
        time.sleep(2)
        assert standby.metrics().get("tenderhub_relay_transactions_total", 0) == 0  # standing by
        writer.start()
        time.sleep(1)
        assert active.proc is not None
        died = time.monotonic()
        active.proc.send_signal(how)
        standby.wait_committed(timeout=30)
        takeover = time.monotonic() - died
        print(f"{how.name}: standby took over in {takeover:.1f} s")
        assert takeover < 10, takeover
        if how == signal.SIGSTOP:
            active.proc.send_signal(signal.SIGCONT)  # wakes after the takeover: must publish nothing
            time.sleep(5)
        time.sleep(1)
        stop.set()
        writer.join()
        _expect_all(renv, uid, list(ids))
        # Every committed position names its relay; after the standby's first commit, only the standby commits.
        positions = run(consume(renv.settings.kafka_bootstrap, [f"{renv.prefix}relay.position"], 10**9, timeout=5))
        committers = [
            p.headers["instance"].decode().rsplit(":", 1)[1] for p in sorted(positions, key=lambda p: p.offset)
        ]
        assert standby.proc is not None
        first_standby = committers.index(str(standby.proc.pid))
        assert set(committers[first_standby:]) == {str(standby.proc.pid)}, committers[first_standby - 2 :]
        assert str(active.proc.pid) in committers[:first_standby]

    finally:
        stop.set()
        if writer.is_alive():
            writer.join()
        active.kill()
        standby.kill()


def test_standby_takes_over_within_10s_after_sigkill(renv: RelayEnv, engine: sa.Engine, uid: str) -> None:
    _takeover(renv, engine, uid, signal.SIGKILL)


def test_paused_active_relay_is_fenced_after_takeover(renv: RelayEnv, engine: sa.Engine, uid: str) -> None:
    _takeover(renv, engine, uid, signal.SIGSTOP)
