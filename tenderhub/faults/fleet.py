"""The run's processes: two relays of one source (an HA pair: one active, one standing by) and two workers of one
consumer group, each running every agent. The fleet restarts whatever exits (as systemd or Kubernetes would) and
records every exit it did not cause."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tenderhub.processes import Child

log = logging.getLogger(__name__)

# Exit codes that need an operator (78: configuration or credentials; 2: the relay refuses to go on, e.g. a purged
# position): a run that sees one fails, whatever the data says.
OPERATOR_EXITS = (2, 78)


@dataclass
class Exit:
    process: str
    code: int
    at_s: float


class Member(Child):
    """One relay or worker of the fleet (`tenderhub.processes.Child`), restartable, its log appended across starts;
    `held_down` while a fault keeps it down on purpose (not the supervisor's to restart)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.held_down = False


@dataclass
class Fleet:
    relays: list[Member]
    workers: list[Member]
    exits: list[Exit] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @property
    def members(self) -> list[Member]:
        return [*self.relays, *self.workers]

    def start_supervising(self) -> None:
        """From here on, whatever exits by itself is recorded and started again."""
        self._thread = threading.Thread(target=self._supervise, name="faults-supervisor", daemon=True)
        self._thread.start()

    def _supervise(self) -> None:
        while not self._stop.wait(0.5):
            with self._lock:
                for m in self.members:
                    code = m.returncode
                    if not m.held_down and code is not None:
                        self.exits.append(Exit(m.name, code, time.monotonic() - self.t0))
                        log.warning("%s exited by itself with code %d; restarting it:\n%s", m.name, code, m.tail(8))
                        m.start()

    def kill_and_restart(self, member: Member, down_s: float) -> None:
        """A crash: SIGKILL (no goodbye), down for `down_s`, started again."""
        with self._lock:
            member.held_down = True
            member.kill()
        try:
            time.sleep(down_s)
        finally:
            with self._lock:
                member.held_down = False
                if not member.alive():
                    member.start()

    def stop(self, timeout: float = 150) -> dict[str, int | None]:
        """Supervision off, then SIGTERM to each (workers first: they drain; the relay last)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        with self._lock:
            return {m.name: m.stop(timeout) for m in [*self.workers, *self.relays]}

    def operator_exits(self) -> list[Exit]:
        return [e for e in self.exits if e.code in OPERATOR_EXITS]
