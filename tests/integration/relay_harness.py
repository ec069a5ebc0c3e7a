"""Run the real relay (`python -m tenderhub cdc run`) as a subprocess with its own topics, source and ports."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from schema.settings import Settings
from schema.topics import ensure_topics, topic_specs

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RelayEnv:
    """Settings overrides that give one test its own topic prefix, relay source, server id and metrics port."""

    uid: str
    settings: Settings

    @property
    def prefix(self) -> str:
        return f"test.{self.uid}."

    @property
    def source(self) -> str:
        return f"t{self.uid}"

    def env(self, metrics_port: int, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "TENDERHUB_TOPIC_PREFIX": self.prefix,
            "TENDERHUB_RELAY_SOURCE_NAME": self.source,
            "TENDERHUB_RELAY_SERVER_ID": str(4_300_000 + int(self.uid[:6], 16) % 600_000),
            "TENDERHUB_RELAY_METRICS_ADDR": f"127.0.0.1:{metrics_port}",
            "TENDERHUB_RELAY_HEARTBEAT_S": "1",
            **extra,
        }

    def test_settings(self) -> Settings:
        return self.settings.model_copy(update={"topic_prefix": self.prefix, "relay_source_name": self.source})

    async def create_topics(self) -> None:
        await ensure_topics(self.settings.kafka_bootstrap, topic_specs(self.test_settings(), partitions=3))

    async def delete_topics(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap)
        await admin.start()
        try:
            names = [t for t in await admin.list_topics() if t.startswith(self.prefix)]
            if names:
                await admin.delete_topics(names)
        finally:
            await admin.close()


# Every relay a test starts, so a fixture can kill what a failing test left behind.
STARTED: list[subprocess.Popen[bytes]] = []


def kill_leftovers() -> None:
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


class TenderhubProcess:
    """One `python -m tenderhub <command>` subprocess of a test, with its log in the temp folder (appended across
    restarts; `offset` marks where the current start's lines begin)."""

    command: tuple[str, ...] = ()
    log_name = "tenderhub"
    terminate_timeout_s = 30.0

    def __init__(self, uid: str, *args: str, **extra_env: str) -> None:
        self.args = list(args)
        self.extra_env = extra_env
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.offset = 0
        self.log_path = Path(tempfile.gettempdir()) / f"{self.log_name}-{uid}.log"

    def env(self, port: int) -> dict[str, str]:
        raise NotImplementedError

    def start(self) -> Self:
        self.port = free_port()
        self.offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tenderhub", *self.command, *self.args],
            cwd=ROOT,
            env=self.env(self.port),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        STARTED.append(self.proc)
        log.close()
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float | None = None) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout or self.terminate_timeout_s)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_text().splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop_quietly(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class RelayProcess(TenderhubProcess):
    command = ("cdc", "run")
    log_name = "relay"

    def __init__(self, renv: RelayEnv, *args: str, **extra_env: str) -> None:
        super().__init__(renv.uid, *args, **extra_env)
        self.renv = renv

    def env(self, port: int) -> dict[str, str]:
        return self.renv.env(port, **self.extra_env)

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def wait_committed(self, timeout: float = 30) -> None:
        """Until the relay has committed at least one Kafka transaction (its position exists)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.tail()
            try:
                if self.metrics().get("tenderhub_relay_transactions_total", 0) >= 1:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"relay committed nothing in {timeout} s: {self.tail()}")

    def wait_serving(self, timeout: float = 30) -> None:
        """Until the relay answers on its metrics port (a polling relay commits nothing while the outbox is empty)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.tail()
            try:
                self.metrics()
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"relay not serving metrics in {timeout} s: {self.tail()}")

    def wait_tailing(self, timeout: float = 30) -> RelayProcess:
        """Until this start of the relay tails the binlog (with --from-now: its position is fixed from here on)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.tail()
            if "tailing binlog from" in self.log_path.read_text(errors="replace")[self.offset :]:
                return self
            time.sleep(0.1)
        raise AssertionError(f"relay not tailing in {timeout} s: {self.tail()}")

    def kill_repeatedly(
        self, rng: random.Random, while_alive: threading.Thread, at_least: int, pause_s: tuple[float, float]
    ) -> int:
        """SIGKILL and restart at random moments, at least `at_least` times and until the writer is done."""
        kills = 0
        while kills < at_least or while_alive.is_alive():
            time.sleep(rng.uniform(*pause_s))
            self.kill()
            kills += 1
            self.start()
        return kills


@dataclass(frozen=True)
class Consumed:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: dict[str, Any]
    headers: dict[str, bytes]


async def consume(
    bootstrap: str,
    topics: Iterable[str],
    until: int,
    timeout: float = 60,
    isolation: str = "read_committed",
    settle_s: float = 1.0,
) -> list[Consumed]:
    """Everything on `topics` from the start, until `until` records arrived (then `settle_s` more, to catch
    duplicates) or `timeout`."""
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        isolation_level=isolation,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    out: list[Consumed] = []
    deadline = time.monotonic() + timeout
    settled_at: float | None = None
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300, max_records=10_000)
            for tp, records in batch.items():
                for r in records:
                    out.append(
                        Consumed(
                            tp.topic, tp.partition, r.offset, r.key, json.loads(r.value or b"null"), dict(r.headers)
                        )
                    )
            if len(out) >= until:
                settled_at = settled_at or time.monotonic()
                if time.monotonic() - settled_at >= settle_s:
                    break
    finally:
        await consumer.stop()
    return out


def run(coro: Any) -> Any:
    return asyncio.run(coro)


class Writer(threading.Thread):
    """Runs `fn` in a thread and hands its result (or its exception) back to the test through `result()`."""

    def __init__(self, fn: Any) -> None:
        super().__init__()
        self.fn = fn
        self.value: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.value = self.fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread by result()
            self.error = exc

    def result(self) -> Any:
        self.join()
        if self.error is not None:
            raise self.error
        return self.value
