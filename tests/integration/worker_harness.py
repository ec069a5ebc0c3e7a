"""Run the real stream worker (`python -m tenderhub worker`) as a subprocess, isolated per test: its own topics
(the relay env's prefix), consumer group, MongoDB database, Redis key prefix and web port."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from schema.settings import Settings
from tests.integration.relay_harness import ROOT, RelayEnv, TenderhubProcess, free_port


@dataclass
class PipelineEnv:
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

    def env(self, web_port: int, **extra: str) -> dict[str, str]:
        env = self.renv.env(free_port())
        env.update(
            {
                "TENDERHUB_WORKER_GROUP": self.group,
                "TENDERHUB_MONGO_DB": self.mongo_db,
                "TENDERHUB_REDIS_KEY_PREFIX": self.redis_prefix,
                "TENDERHUB_WORKER_WEB_PORT": str(web_port),
                "TENDERHUB_WORKER_STORE_RETRY_MAX_S": "2",
            }
        )
        if self.as_of:
            env["TENDERHUB_AS_OF"] = self.as_of
        env.update(extra)
        return env


def run_cli(penv: PipelineEnv, *args: str, timeout: float = 120, **extra_env: str) -> subprocess.CompletedProcess[str]:
    """`python -m tenderhub ARGS` to completion in the test's environment; output captured."""
    return subprocess.run(
        [sys.executable, "-m", "tenderhub", *args],
        cwd=ROOT,
        env=penv.env(free_port(), **extra_env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class WorkerProcess(TenderhubProcess):
    command = ("worker",)
    log_name = "worker"
    terminate_timeout_s = 60.0

    def __init__(self, penv: PipelineEnv, *args: str, **extra_env: str) -> None:
        super().__init__(penv.uid, *args, **extra_env)
        self.penv = penv

    def env(self, port: int) -> dict[str, str]:
        return self.penv.env(port, **self.extra_env)

    def stats(self) -> dict[str, dict[str, float]]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/tenderhub/agents/", timeout=2) as resp:
            data: dict[str, dict[str, float]] = json.loads(resp.read())
            return data

    def wait_ready(self, timeout: float = 150) -> None:
        """Until the web view answers and the worker says its partitions are assigned. A worker that replaces one
        that died without leaving the consumer group (SIGKILL, exit 78) gets its partitions when the dead member's
        session times out (Faust's broker_session_timeout, 60 s): the default waits well past that."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.tail()
            try:
                self.stats()
                if "Worker ready" in self.log_text()[self.offset :]:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"worker not ready in {timeout} s: {self.tail()}")


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll `check` until it returns something truthy; fail with its last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what}: not reached in {timeout} s (last: {str(last)[:500]})")
