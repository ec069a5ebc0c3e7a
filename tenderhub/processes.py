"""The one supervisor of tenderhub's own processes: `python -m tenderhub cdc run` and `... worker` as children of the
demo, the corpus and fault runs, the test harnesses and the benchmarks.

A `Child` has its log file (appended across starts, each start marked with a banner line), an HTTP port chosen on
each start and handed to it through its setting (the relay's metrics address, the worker's web port), a session of
its own (a terminal's Ctrl-C reaches only the parent, which stops each child with one SIGTERM: a second signal
would make the relay stop without its final commit), and the stops every caller needs: `terminate` (SIGTERM, wait),
`stop` (SIGTERM, then SIGKILL past a timeout), `kill` (SIGKILL: a crash). `Relay` and `Worker` add what their
readiness looks like. Every child started is listed in `STARTED`, so that a test fixture or a run's `finally` can
kill what a failure left behind (`kill_started`).

`RelayEnv` and `PipelineEnv` give one run (a test, a benchmark) topics, a relay source, a consumer group, a MongoDB
database and a Redis key prefix of its own.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from aiokafka.admin import AIOKafkaAdminClient

from schema.kafka_client import kafka_options
from schema.settings import Settings
from schema.topics import ensure_topics, topic_specs

ROOT = Path(__file__).resolve().parents[1]
PROGRAM = (sys.executable, "-m", "tenderhub")


class ChildError(RuntimeError):
    """A child exited, or did not get ready in time; the message ends with the tail of its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Every child started in this process, for `kill_started`.
STARTED: list[Child] = []


def kill_started() -> None:
    """SIGKILL every child still running (what a failed test or run left behind)."""
    while STARTED:
        child = STARTED.pop()
        if child.alive():
            child.kill()


Env = Mapping[str, str] | Callable[[int], Mapping[str, str]]


class Child:
    """One `python -m tenderhub ARGS` child process (see the module's docstring)."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        env: Env,
        log_path: Path,
        port_env: str | None = None,
        program: Sequence[str] = PROGRAM,
    ) -> None:
        self.name = name
        self.args = list(args)
        self._env = env
        self.log_path = log_path
        self.port_env = port_env  # the setting that carries its HTTP port ("..._ADDR": host:port)
        self.program = tuple(program)
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.offset = 0  # where this start's lines begin in the log
        self.starts = 0
        self.kills = 0

    def environment(self, port: int) -> dict[str, str]:
        env = dict(self._env(port) if callable(self._env) else self._env)
        if self.port_env is not None:
            env[self.port_env] = f"127.0.0.1:{port}" if self.port_env.endswith("ADDR") else str(port)
        return env

    def start(self) -> Self:
        self.port = free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            out.write(f"\n--- start {self.starts + 1} of {self.name} at {time.ctime()} ---\n".encode())
            out.flush()
            self.offset = out.tell()
            self.proc = subprocess.Popen(
                [*self.program, *self.args],
                cwd=ROOT,
                env=self.environment(self.port),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.starts += 1
        if self not in STARTED:
            STARTED.append(self)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.alive() else None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def kill(self) -> None:
        """SIGKILL (a crash: no goodbye) and reap."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)
            self.kills += 1

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM and wait for the exit status (subprocess.TimeoutExpired past `timeout`)."""
        if self.proc is None:
            raise ChildError(f"{self.name} was never started")
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 150) -> int | None:
        """SIGTERM and wait (the worker finishes its batch, the relay commits); SIGKILL past `timeout`."""
        if self.proc is None:
            return None
        try:
            return self.terminate(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(30)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def since_start(self) -> str:
        """The log of this start only."""
        try:
            with self.log_path.open("rb") as f:
                f.seek(self.offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def tail(self, n: int = 30) -> str:
        lines = self.log_text().splitlines()[-n:]
        return "\n".join(lines) if lines else "(no log)"

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> Self:
        """Poll `ready` until it holds; ChildError if the child exits first or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                raise ChildError(f"{self.name} exited with code {self.returncode} before {what}:\n{self.tail()}")
            try:
                if ready():
                    return self
            except OSError:
                pass  # its HTTP port is not up yet
            if time.monotonic() > deadline:
                raise ChildError(f"{self.name}: not {what} within {timeout:.0f} s:\n{self.tail()}")
            time.sleep(interval)

    def wait_log(self, text: str, timeout: float) -> Self:
        return self.wait_until(lambda: text in self.since_start(), timeout, f"logging {text!r}")

    def get(self, path: str, headers: Mapping[str, str] | None = None, timeout: float = 2) -> bytes:
        """GET http://127.0.0.1:<port><path> (the child's own HTTP endpoint); urllib.error.HTTPError for a 4xx/5xx."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", headers=dict(headers or {}))
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 - http to 127.0.0.1 only
            return bytes(resp.read())

    def metrics(self) -> dict[str, float]:
        """Its Prometheus metrics (`/metrics`): 'name{labels}' -> value."""
        out: dict[str, float] = {}
        for line in self.get("/metrics").decode().splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out


class Relay(Child):
    """`tenderhub cdc run ARGS`."""

    def __init__(self, name: str, args: Sequence[str], env: Env, log_path: Path) -> None:
        super().__init__(name, ["cdc", "run", *args], env, log_path, "TENDERHUB_RELAY_METRICS_ADDR")

    def transactions(self) -> float:
        return self.metrics().get("tenderhub_relay_transactions_total", 0.0)

    def wait_committed(self, timeout: float = 30) -> Self:
        """Until the relay has committed at least one Kafka transaction (its position exists)."""
        return self.wait_until(lambda: self.transactions() >= 1, timeout, "committed")

    def wait_serving(self, timeout: float = 30) -> Self:
        """Until the relay answers on its metrics port (a polling relay commits nothing while the outbox is empty)."""
        return self.wait_until(lambda: self.metrics() is not None, timeout, "serving metrics")

    def wait_tailing(self, timeout: float = 30) -> Self:
        """Until this start of the relay tails the binlog (with --from-now: its position is fixed from here on)."""
        return self.wait_log("tailing binlog from", timeout)


class Worker(Child):
    """`tenderhub worker ARGS`."""

    def __init__(self, name: str, args: Sequence[str], env: Env, log_path: Path) -> None:
        super().__init__(name, ["worker", *args], env, log_path, "TENDERHUB_WORKER_WEB_PORT")

    def stats(self) -> dict[str, dict[str, float]]:
        data: dict[str, dict[str, float]] = json.loads(self.get("/tenderhub/agents/"))
        return data

    def wait_ready(self, timeout: float = 150) -> Self:
        """Until the web view answers and the worker says its partitions are assigned. A worker that replaces one
        that died without leaving the consumer group (SIGKILL, exit 78) gets its partitions when the dead member's
        session times out (TENDERHUB_WORKER_SESSION_TIMEOUT_MS: 10 s in tests, 60 s by default): the default waits
        well past that."""
        return self.wait_until(
            lambda: bool(self.stats() is not None and "Worker ready" in self.since_start()), timeout, "ready", 0.2
        )


# -- a run of its own: topics, relay source, group, database, key prefix ------------------------------------------


@dataclass
class RelayEnv:
    """Settings overrides that give one run its own topic prefix, relay source and server id."""

    uid: str
    settings: Settings

    @property
    def prefix(self) -> str:
        return f"test.{self.uid}."

    @property
    def source(self) -> str:
        return f"t{self.uid}"

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "TENDERHUB_TOPIC_PREFIX": self.prefix,
            "TENDERHUB_RELAY_SOURCE_NAME": self.source,
            "TENDERHUB_RELAY_SERVER_ID": str(4_300_000 + int(self.uid[:6], 16) % 600_000),
            "TENDERHUB_RELAY_HEARTBEAT_S": "1",
            **extra,
        }

    def test_settings(self) -> Settings:
        return self.settings.model_copy(update={"topic_prefix": self.prefix, "relay_source_name": self.source})

    async def create_topics(self) -> None:
        await ensure_topics(self.settings, topic_specs(self.test_settings(), partitions=3))

    async def delete_topics(self) -> None:
        admin = AIOKafkaAdminClient(**kafka_options(self.settings))
        await admin.start()
        try:
            names = [t for t in await admin.list_topics() if t.startswith(self.prefix)]
            if names:
                await admin.delete_topics(names)
        finally:
            await admin.close()


@dataclass
class PipelineEnv:
    """A relay environment plus the worker's own consumer group, MongoDB database and Redis key prefix."""

    renv: RelayEnv
    as_of: str | None = None

    @property
    def uid(self) -> str:
        return self.renv.uid

    @property
    def group(self) -> str:
        return f"test-worker-{self.uid}"

    @property
    def mongo_db(self) -> str:
        return f"test_{self.uid}"

    @property
    def redis_prefix(self) -> str:
        return f"test:{self.uid}:"

    def overrides(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "topic_prefix": self.renv.prefix,
            "relay_source_name": self.renv.source,
            "worker_group": self.group,
            "mongo_db": self.mongo_db,
            "redis_key_prefix": self.redis_prefix,
        }
        if self.as_of:
            out["as_of"] = self.as_of
        return out

    def settings(self, **extra: Any) -> Settings:
        import datetime as dt

        values = self.overrides() | extra
        if isinstance(values.get("as_of"), str):
            values["as_of"] = dt.date.fromisoformat(values["as_of"])
        return self.renv.settings.model_copy(update=values)

    def env(self, **extra: str) -> dict[str, str]:
        env = self.renv.env()
        env.update(
            {
                "TENDERHUB_WORKER_GROUP": self.group,
                "TENDERHUB_MONGO_DB": self.mongo_db,
                "TENDERHUB_REDIS_KEY_PREFIX": self.redis_prefix,
                "TENDERHUB_WORKER_STORE_RETRY_MAX_S": "2",
                # A SIGKILLed worker's partitions go to its successor after 10 s, not the default 60 s: the kill
                # tests wait that out after their last kill.
                "TENDERHUB_WORKER_SESSION_TIMEOUT_MS": "10000",
            }
        )
        if self.as_of:
            env["TENDERHUB_AS_OF"] = self.as_of
        env.update(extra)
        return env


def _log(kind: str, uid: str) -> Path:
    return Path(tempfile.gettempdir()) / f"{kind}-{uid}.log"


class RelayProcess(Relay):
    """The relay of a `RelayEnv` (log in the temp folder, appended across restarts)."""

    def __init__(self, renv: RelayEnv, *args: str, **extra_env: str) -> None:
        super().__init__("relay", args, lambda port: renv.env(**extra_env), _log("relay", renv.uid))
        self.renv = renv


class WorkerProcess(Worker):
    """A worker of a `PipelineEnv` (log in the temp folder, appended across restarts)."""

    def __init__(self, penv: PipelineEnv, *args: str, **extra_env: str) -> None:
        super().__init__("worker", args, lambda port: penv.env(**extra_env), _log("worker", penv.uid))
        self.penv = penv
