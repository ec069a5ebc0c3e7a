"""The fault run's supervisor, with real child processes (no services): a kill on purpose stays down for its whole
window and is not taken for an exit; an exit nobody asked for is recorded and restarted; stop ends them all."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from tenderhub.faults.fleet import Fleet, Member


def _sleeper(name: str, tmp_path: Path) -> Member:
    return Member(name, ["60"], dict(os.environ), tmp_path / f"{name}.log", "UNUSED_PORT", program=("sleep",))


def _wait(check: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return True
        time.sleep(0.05)
    return False


def test_a_kill_on_purpose_stays_down_its_window_and_is_not_an_exit(tmp_path: Path) -> None:
    member = _sleeper("relay-a", tmp_path)
    fleet = Fleet([member], [])
    member.start()
    fleet.start_supervising()
    try:
        first = member.pid
        killing = threading.Thread(target=fleet.kill_and_restart, args=(member, 2.0))
        killing.start()
        assert _wait(lambda: not member.alive())
        time.sleep(1.5)  # three supervisor rounds inside the window
        assert not member.alive(), "the supervisor restarted a member killed on purpose before its window ended"
        killing.join(10)
        assert member.alive() and member.pid != first
        assert fleet.exits == [] and member.kills == 1 and member.starts == 2
    finally:
        codes = fleet.stop(timeout=5)
    assert codes == {"relay-a": -signal.SIGTERM}


def test_an_exit_nobody_asked_for_is_recorded_and_restarted(tmp_path: Path) -> None:
    member = _sleeper("worker-1", tmp_path)
    fleet = Fleet([], [member])
    member.start()
    fleet.start_supervising()
    try:
        pid = member.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        assert _wait(lambda: member.starts == 2 and member.alive())
        assert [(e.process, e.code) for e in fleet.exits] == [("worker-1", -signal.SIGKILL)]
        assert fleet.operator_exits() == []
    finally:
        fleet.stop(timeout=5)
    assert not member.alive()
