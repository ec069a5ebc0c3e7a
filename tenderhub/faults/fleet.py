"""The run's processes: two relays of one source (an HA pair: one active, one standing by) and two workers of one
consumer group, each running every agent. The fleet restarts whatever exits (as systemd or Kubernetes would) and
records every exit it did not cause."""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

# Exit codes that need an operator (78: configuration or credentials; 2: the relay refuses to go on, e.g. a purged
# position): a run that sees one fails, whatever the data says.
OPERATOR_EXITS = (2, 78)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Exit:
    process: str
    code: int
    at_s: float


@dataclass
class Member:
    """One `python -m tenderhub ...` process of the fleet, restartable, its log appended across starts."""

    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    port_env: str  # the setting that carries its HTTP port (relay metrics address or worker web port)
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    kills: int = 0
    held_down: bool = False  # killed on purpose and kept down: not the supervisor's to restart
    program: tuple[str, ...] = (sys.executable, "-m", "tenderhub")

    def start(self) -> None:
        self.port = free_port()
        value = f"127.0.0.1:{self.port}" if self.port_env.endswith("ADDR") else str(self.port)
        with self.log_path.open("ab") as out:
            banner = f"\n--- tenderhub faults: start {self.starts + 1} of {self.name} at {time.ctime()} ---\n"
            out.write(banner.encode())
            out.flush()
            self.proc = subprocess.Popen(
                [*self.program, *self.args],
                env={**self.env, self.port_env: value},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.starts += 1

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.alive() and self.proc is not None else None

    def sigkill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)
            self.kills += 1

    def stop(self, timeout: float) -> int | None:
        """SIGTERM and wait (the worker finishes its batch, the relay commits); SIGKILL past `timeout`."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s ignored SIGTERM for %.0f s: SIGKILL", self.name, timeout)
                self.proc.kill()
                self.proc.wait(30)
        return self.proc.returncode

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


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
                    if not m.held_down and m.proc is not None and m.proc.poll() is not None:
                        code = int(m.proc.returncode)
                        self.exits.append(Exit(m.name, code, time.monotonic() - self.t0))
                        log.warning("%s exited by itself with code %d; restarting it:\n%s", m.name, code, m.tail(8))
                        m.start()

    def kill_and_restart(self, member: Member, down_s: float) -> None:
        """A crash: SIGKILL (no goodbye), down for `down_s`, started again."""
        with self._lock:
            member.held_down = True
            member.sigkill()
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
