"""Random faults, one at a time, spread over the load window: SIGKILL of either relay of the HA pair and of either
worker, Kafka and MariaDB restarts, FerretDB crashed and Redis frozen for up to `max_outage_s`."""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from schema.settings import load_stack_settings
from tenderhub.faults.fleet import Fleet
from tenderhub.stack import FerretDB, Kafka, MariaDB, Redis, Service, Stack

log = logging.getLogger(__name__)

KINDS = ("relay_kill", "worker_kill", "kafka_restart", "mariadb_restart", "ferretdb_down", "redis_down")
# Process kills are the common fault; each service fault weighs half as much.
WEIGHTS = dict(zip(KINDS, (2, 2, 1, 1, 1, 1), strict=True))
# Rough time each fault takes besides its outage (stop, start, health), to plan the gaps.
OVERHEAD_S = dict(zip(KINDS, (1, 1, 15, 6, 2, 0), strict=True))
HEALTHY_WITHIN_S = 180.0


@dataclass
class FaultRecord:
    kind: str
    target: str
    at_s: float
    down_s: float
    took_s: float = 0.0
    error: str | None = None


def plan(count: int, rng: random.Random) -> list[str]:
    """`count` fault kinds: every kind once (when count allows), the rest drawn by weight, in random order."""
    kinds = list(KINDS[:count])
    kinds += rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()), k=max(0, count - len(kinds)))
    rng.shuffle(kinds)
    return kinds


def _service(kind: type[Service]) -> Service:
    return next(s for s in Stack(load_stack_settings()).services if isinstance(s, kind))


Wait = Callable[[float], object]


def _restart(svc: Service, down_s: float, wait: Wait = time.sleep) -> None:
    """Stop (SIGTERM: the service shuts down as it does in a rolling restart), down, start, healthy again."""
    svc.stop(timeout=60)
    wait(down_s)
    svc.start()
    svc.wait_healthy(HEALTHY_WITHIN_S)
    svc.after_start()


def _crash(svc: Service, down_s: float, wait: Wait = time.sleep) -> None:
    """SIGKILL (no goodbye to its clients), down, start, healthy again."""
    pid = svc.running_pid()
    if pid is None:
        raise RuntimeError(f"{svc.name} is not running")
    os.kill(pid, signal.SIGKILL)
    svc.stop()  # reaps it, clears its PID file
    wait(down_s)
    svc.start()
    svc.wait_healthy(HEALTHY_WITHIN_S)
    svc.after_start()


def _freeze(svc: Service, down_s: float, wait: Wait = time.sleep) -> None:
    """SIGSTOP: it answers nothing, as if its host were gone, and keeps its data (the stack's Redis has no
    persistence, so a restart would be a different fault: data loss)."""
    pid = svc.running_pid()
    if pid is None:
        raise RuntimeError(f"{svc.name} is not running")
    os.kill(pid, signal.SIGSTOP)
    try:
        wait(down_s)
    finally:
        os.kill(pid, signal.SIGCONT)


class Injector(threading.Thread):
    def __init__(
        self, fleet: Fleet, kinds: list[str], window_s: float, max_outage_s: float, rng: random.Random, t0: float
    ) -> None:
        super().__init__(name="faults-injector", daemon=True)
        self.fleet, self.kinds, self.window_s, self.max_outage_s = fleet, kinds, window_s, max_outage_s
        self.rng, self.t0 = rng, t0
        self.records: list[FaultRecord] = []
        self._halt = threading.Event()

    def stop(self) -> None:
        """No further fault; the one under way ends its outage now and brings its service back."""
        self._halt.set()

    def _down_s(self, kind: str) -> float:
        if kind in ("ferretdb_down", "redis_down"):
            return round(self.rng.uniform(min(5.0, self.max_outage_s), self.max_outage_s), 1)
        if kind in ("kafka_restart", "mariadb_restart"):
            return round(self.rng.uniform(1.0, min(5.0, self.max_outage_s)), 1)
        return round(self.rng.uniform(0.0, 2.0), 1)

    def run(self) -> None:
        downs = [self._down_s(k) for k in self.kinds]
        busy = sum(downs) + sum(OVERHEAD_S[k] for k in self.kinds)
        gap = max(0.5, (self.window_s - busy) / (len(self.kinds) + 1))
        for kind, down_s in zip(self.kinds, downs, strict=True):
            if self._halt.wait(self.rng.uniform(0.5 * gap, 1.5 * gap)):
                return
            record = FaultRecord(kind, "", time.monotonic() - self.t0, down_s)
            started = time.monotonic()
            try:
                self._inject(record)
            except Exception as exc:
                # A service that does not come back is the run's failure, not the injector's: recorded, reported.
                log.exception("fault %s failed", kind)
                record.error = f"{type(exc).__name__}: {exc}"
            record.took_s = time.monotonic() - started
            self.records.append(record)
            log.info(
                "fault %d/%d: %s %s (down %.1f s, %.1f s in all)",
                len(self.records),
                len(self.kinds),
                kind,
                record.target,
                down_s,
                record.took_s,
            )

    def _inject(self, record: FaultRecord) -> None:
        kind, down_s = record.kind, record.down_s
        if kind in ("relay_kill", "worker_kill"):
            member = self.rng.choice(self.fleet.relays if kind == "relay_kill" else self.fleet.workers)
            record.target = member.name
            self.fleet.kill_and_restart(member, down_s)
        elif kind == "kafka_restart":
            record.target = "kafka"
            _restart(_service(Kafka), down_s, self._halt.wait)
        elif kind == "mariadb_restart":
            record.target = "mariadb"
            _restart(_service(MariaDB), down_s, self._halt.wait)
        elif kind == "ferretdb_down":
            record.target = "ferretdb"
            _crash(_service(FerretDB), down_s, self._halt.wait)
        elif kind == "redis_down":
            record.target = "redis"
            _freeze(_service(Redis), down_s, self._halt.wait)
        else:
            raise ValueError(f"unknown fault {kind!r}")
