"""The relay's outbox janitor keeps running whatever one pass raises: a pass that dies took the clean-up with it
for the relay's whole life (only MySQL errors were caught), and the outbox grew without limit."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pymysql
import pytest

import cdc.relay
from cdc.relay import Relay


@pytest.mark.asyncio
async def test_a_failed_pass_is_logged_and_the_next_one_runs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    passes: list[int] = []
    failures = [OverflowError("date value out of range"), pymysql.err.OperationalError(2013, "lost"), None, None]

    def delete(_settings: Any) -> int:
        passes.append(1)
        failure = failures[len(passes) - 1]
        if failure is not None:
            raise failure
        return 3

    monkeypatch.setattr(cdc.relay, "delete_published", delete)
    fake = SimpleNamespace(s=SimpleNamespace(relay_retention_hours=72.0))
    with caplog.at_level(logging.WARNING, logger="cdc.relay"):
        task = asyncio.create_task(Relay._janitor_loop(fake, every_s=0.01))  # type: ignore[arg-type]
        for _ in range(200):
            await asyncio.sleep(0.01)
            if len(passes) >= 4:
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert len(passes) >= 4
    assert "OverflowError" in caplog.text and "lost" in caplog.text
