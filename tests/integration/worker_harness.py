"""Test helpers around the real stream worker (run through `tenderhub.processes`): run a `tenderhub` command in a
test's environment, wait for a condition."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from tenderhub.processes import ROOT, PipelineEnv


def run_cli(penv: PipelineEnv, *args: str, timeout: float = 120, **extra_env: str) -> subprocess.CompletedProcess[str]:
    """`python -m tenderhub ARGS` to completion in the test's environment; output captured."""
    return subprocess.run(
        [sys.executable, "-m", "tenderhub", *args],
        cwd=ROOT,
        env=penv.env(**extra_env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


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


class Background:
    """`fn` run in a daemon thread (a writer producing load while a test kills something); `join` waits for it and
    fails the test with what it raised."""

    def __init__(self, fn: Callable[[], None]) -> None:
        self.failures: list[BaseException] = []
        self._fn = fn
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self._fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread, which fails with it
            self.failures.append(exc)

    def start(self) -> Background:
        self._thread.start()
        return self

    def join(self, timeout: float = 120) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the background writer did not finish in {timeout:.0f} s"
        assert not self.failures, self.failures

    def stop(self, timeout: float = 60) -> None:
        """In a finally: wait for a writer still running (a test that failed early), raising nothing."""
        if self._thread.is_alive():
            self._thread.join(timeout)
