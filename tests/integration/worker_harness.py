"""Test helpers around the real stream worker (run through `tenderhub.processes`): run a `tenderhub` command in a
test's environment, wait for a condition."""

from __future__ import annotations

import subprocess
import sys
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
