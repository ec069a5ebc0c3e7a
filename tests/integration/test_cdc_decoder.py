"""The relay's decoder process (cdc/decoder.py): it dies with the relay, and the relay survives it dying. Either
way nothing is lost or duplicated for a read_committed consumer."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import sqlalchemy as sa

from tenderhub.processes import RelayEnv, RelayProcess
from tenderhub.stack import child_pids
from tests.integration.relay_harness import consume, run
from tests.integration.test_cdc_relay import assert_exactly_once_in_order, insert_activities, mine


def _decoder_of(relay: RelayProcess, timeout: float = 30) -> int:
    assert relay.proc is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in child_pids(relay.proc.pid):
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except FileNotFoundError:
                continue
            if b"multiprocessing" in cmdline and b"resource_tracker" not in cmdline:
                return child
        time.sleep(0.1)
    raise AssertionError(f"no decoder process under the relay: {relay.tail()}")


def _gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state == "Z":  # exited, waiting for its reaper (init, once the relay is gone)
            return True
        time.sleep(0.05)
    return False


def test_the_decoder_dies_with_a_killed_relay(renv: RelayEnv) -> None:
    relay = RelayProcess(renv, "--from-now").start()
    try:
        relay.wait_committed()
        decoder = _decoder_of(relay)
        relay.kill()
        assert _gone(decoder, 5), f"decoder {decoder} outlived the relay it belonged to"
    finally:
        relay.kill()


def test_a_killed_decoder_is_replaced_and_nothing_is_lost_or_duplicated(
    renv: RelayEnv, engine: sa.Engine, uid: str
) -> None:
    relay = RelayProcess(renv, "--from-now").start()
    try:
        relay.wait_committed()
        ids: list[int] = []
        sizes = [1000, 1, 1, 300, 5, 1000, 50] * 4
        writer = threading.Thread(target=lambda: ids.extend(insert_activities(engine, uid, sizes)))
        writer.start()
        kills = 0
        while writer.is_alive() or kills < 3:
            decoder = _decoder_of(relay)
            os.kill(decoder, signal.SIGKILL)
            kills += 1
            assert _gone(decoder, 5)
            time.sleep(0.7)
        writer.join()
        records = mine(
            run(consume(renv.settings.kafka_bootstrap, [f"{renv.prefix}activity"], len(ids), timeout=120, settle_s=3)),
            uid,
        )
        assert_exactly_once_in_order(records, ids)
        assert relay.proc is not None and relay.proc.poll() is None, relay.tail()
        assert "binlog decoder process exited" in relay.log_text()
        decoder = _decoder_of(relay)
        assert relay.terminate() == 0, relay.tail()  # SIGTERM: the relay stops its decoder and exits cleanly
        assert _gone(decoder, 1)
    finally:
        relay.kill()
