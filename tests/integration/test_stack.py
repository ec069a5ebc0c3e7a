"""The stack provisioner: idempotent up, exact down by PID, and failures that name the service, reason and log."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from schema.settings import load_stack_settings
from tenderhub.stack import Kafka, Redis, Stack, StackError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_status_reports_every_service_healthy() -> None:
    cfg = load_stack_settings()
    rows = Stack(cfg).status()
    storage = ["postgresql"] if cfg.ferretdb_backend == "postgresql" else []
    assert [r.name for r in rows] == ["mysql", "kafka", *storage, "ferretdb", "redis"]
    for row in rows:
        assert row.health == "healthy", row
        assert row.pid is not None and row.rss_mb is not None and row.rss_mb > 0


def test_second_up_is_a_no_op() -> None:
    stack = Stack(load_stack_settings())
    before = [s.running_pid() for s in stack.services]
    messages: list[str] = []
    stack.up(progress=messages.append)
    assert [s.running_pid() for s in stack.services] == before
    assert sum("already running" in m for m in messages) == len(stack.services)


def test_down_stops_exactly_what_up_started(tmp_path: Path) -> None:
    cfg = load_stack_settings(stack_dir=tmp_path / "stack", redis_port=_free_port())
    stack = Stack(cfg)
    redis = next(s for s in stack.services if isinstance(s, Redis))
    main_redis_pid = next(s for s in Stack(load_stack_settings()).services if isinstance(s, Redis)).running_pid()
    assert redis.start()
    redis.wait_healthy(20)
    pid = redis.running_pid()
    assert pid is not None and pid != main_redis_pid
    assert not redis.start()  # already running: no second process
    assert redis.stop()
    assert redis.running_pid() is None and not Path(f"/proc/{pid}").exists()
    assert not redis.stop()
    # The main stack's Redis was not touched.
    assert main_redis_pid is not None and Path(f"/proc/{main_redis_pid}").exists()


def test_stale_pid_file_is_never_signalled(tmp_path: Path) -> None:
    stack = Stack(load_stack_settings(stack_dir=tmp_path / "stack", redis_port=_free_port()))
    redis = next(s for s in stack.services if isinstance(s, Redis))
    redis.pid_path.parent.mkdir(parents=True)
    # Our own PID with a start time that does not match: a recycled PID must not be treated as ours.
    redis.pid_path.write_text(f"{os.getpid()} 1\n")
    assert redis.running_pid() is None
    assert not redis.stop()


def test_port_in_use_names_service_and_setting(tmp_path: Path) -> None:
    taken = load_stack_settings().redis_port
    stack = Stack(load_stack_settings(stack_dir=tmp_path / "stack", redis_port=taken))
    redis = next(s for s in stack.services if isinstance(s, Redis))
    with pytest.raises(StackError) as err:
        redis.start()
    assert err.value.service == "redis"
    assert str(taken) in str(err.value) and "TENDERHUB_REDIS_PORT" in str(err.value)


def test_failed_start_says_which_why_and_where_the_log_is(tmp_path: Path) -> None:
    cfg = load_stack_settings(
        stack_dir=tmp_path / "stack",
        kafka_port=_free_port(),
        kafka_controller_port=_free_port(),
        kafka_heap="notasize",
    )
    kafka = next(s for s in Stack(cfg).services if isinstance(s, Kafka))
    kafka.ensure_installed()  # cached jars: no network
    assert kafka.start()
    with pytest.raises(StackError) as err:
        kafka.wait_healthy(30)
    message = str(err.value)
    assert message.startswith("kafka: the process exited during start-up")
    assert "Invalid" in message and "heap" in message
    assert str(kafka.log_path) in message


def test_redis_keeps_what_it_acknowledged_across_a_kill(tmp_path: Path) -> None:
    # The derived state the workers committed offsets for lives in Redis: a SIGKILL and a restart must not lose it
    # (append-only file; production's compose file runs Redis the same way).
    import signal
    import time

    import redis as redis_client

    cfg = load_stack_settings(stack_dir=tmp_path / "stack", redis_port=_free_port())
    stack = Stack(cfg)
    server = next(s for s in stack.services if isinstance(s, Redis))
    assert server.start()
    try:
        server.wait_healthy(20)
        client = redis_client.Redis(
            host=cfg.stack_host, port=server.port, password=stack.secrets["redis_password"], socket_timeout=5
        )
        client.hset("readiness:tenders", mapping={"7": "1|{}", "__gen": "1"})
        pid = server.running_pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.start()
        server.wait_healthy(20)
        assert client.hgetall("readiness:tenders") == {b"7": b"1|{}", b"__gen": b"1"}
        client.close()
    finally:
        server.stop()
