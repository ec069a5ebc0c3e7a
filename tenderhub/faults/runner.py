"""One fault (or soak) run end to end: namespace, fleet, load with faults, quiescence, audit, report, clean-up."""

from __future__ import annotations

import datetime as dt
import logging
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cdc.outbox import make_engine
from schema.settings import Settings
from streams.verify import reader_engine
from tenderhub.faults import namespace
from tenderhub.faults.audit import KafkaCheck, Quiescence, check_kafka, duplicated_documents, outbox_ids
from tenderhub.faults.audit import quiesce as wait_quiescent
from tenderhub.faults.fleet import OPERATOR_EXITS, Exit, Fleet, Member
from tenderhub.faults.injector import FaultRecord, Injector, plan
from tenderhub.faults.load import LoadStats, LoadWriter, Plan
from tenderhub.faults.soak import Sample, Sampler, SoakVerdict, judge

log = logging.getLogger(__name__)
Say = Callable[[str], None]


class FaultRunError(Exception):
    """The run could not be set up or its processes did not start; the message says where to look."""


@dataclass(frozen=True)
class Options:
    events: int = 100_000
    faults: int = 50
    load_s: float = 900.0
    max_outage_s: float = 30.0
    seed: int | None = None
    soak: bool = False
    sample_s: float = 60.0
    settle_s: float = 900.0
    keep: bool = False

    def check(self) -> None:
        if self.events < 200:
            raise FaultRunError("--events must be at least 200")
        if self.faults < 0 or self.load_s <= 0 or self.sample_s <= 0 or self.settle_s <= 0:
            raise FaultRunError("--faults must be >= 0; --minutes, --sample-s and --settle-s > 0")
        if not 1 <= self.max_outage_s <= 30:
            raise FaultRunError("--max-outage-s must be between 1 and 30")


@dataclass
class FaultResult:
    run: str
    options: Options
    seed: int
    started: dt.datetime
    duration_s: float = 0.0
    planned: dict[str, int] = field(default_factory=dict)
    load: LoadStats = field(default_factory=LoadStats)
    committed_by_type: dict[str, int] = field(default_factory=dict)
    faults: list[FaultRecord] = field(default_factory=list)
    faults_during_load: int = 0
    exits: list[Exit] = field(default_factory=list)
    stop_codes: dict[str, int | None] = field(default_factory=dict)
    quiescence: Quiescence | None = None
    kafka: KafkaCheck = field(default_factory=KafkaCheck)
    duplicated: dict[str, int] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    soak: SoakVerdict | None = None
    logs: list[str] = field(default_factory=list)

    def checks(self) -> list[tuple[str, str, bool]]:
        """(what, figure, pass) for the report and the exit code."""
        q, k = self.quiescence, self.kafka
        drift = q.report.drift if q and q.report else None
        extra = sum(f.extra for f in q.report.families) if q and q.report else None
        left = q.unpublished if q else None
        out = [
            ("load writer finished", self.load.error or "yes", self.load.error is None),
            ("events committed (outbox rows)", str(k.committed), k.committed > 0),
            ("events in Kafka exactly once", str(k.once), k.once == k.committed),
            ("events missing from Kafka", str(k.missing), k.missing == 0),
            ("events duplicated in Kafka", str(k.duplicated), k.duplicated == 0),
            ("records in Kafka from no outbox row", str(k.foreign), k.foreign == 0),
            ("outbox rows left unpublished", str(left), left == 0),
            ("dead letters (relay and workers)", str(k.dead_letters), k.dead_letters == 0),
            ("derived documents/keys extra", str(extra), extra == 0),
            ("derived documents duplicated", str(sum(self.duplicated.values())), not any(self.duplicated.values())),
            ("verify drift at quiescence", str(drift), drift == 0),
            ("quiescence reached", f"{q.seconds:.0f} s, {q.verify_runs} verify runs" if q else "no", self._quiet()),
            ("faults injected and recovered", f"{len(self.faults)} of {self.options.faults}", self._faults_ok()),
            ("exits needing an operator (2, 78)", str(len(self._operator_exits())), not self._operator_exits()),
            ("clean stop (SIGTERM) exit codes", _codes(self.stop_codes), all(c == 0 for c in self.stop_codes.values())),
        ]
        if self.soak is not None:
            worst = max(self.soak.rss_trend_pct.values(), default=0.0)
            out += [
                ("soak: worst RSS trend", f"{worst:+.1f} %", worst <= 10.0),
                (
                    "soak: backlog bounded",
                    f"relay max {self.soak.max_relay_backlog}, workers max {self.soak.max_worker_backlog}"
                    f" (bound {self.soak.backlog_bound})",
                    self.soak.max_relay_backlog <= self.soak.backlog_bound
                    and self.soak.max_worker_backlog <= self.soak.backlog_bound,
                ),
                (
                    "soak: samples complete",
                    f"{len(self.samples)} samples, {self.soak.missing_samples} incomplete",
                    self.soak.missing_samples == 0,
                ),
            ]
        return out

    def _faults_ok(self) -> bool:
        return len(self.faults) == self.options.faults and all(f.error is None for f in self.faults)

    def _operator_exits(self) -> list[Exit]:
        return [e for e in self.exits if e.code in OPERATOR_EXITS]

    def _quiet(self) -> bool:
        return self.quiescence is not None and self.quiescence.reached

    @property
    def passed(self) -> bool:
        return all(ok for _, _, ok in self.checks())


def _codes(codes: dict[str, int | None]) -> str:
    return ", ".join(f"{k} {v}" for k, v in codes.items())


def _fleet(ns: namespace.FaultNamespace, log_dir: Path) -> Fleet:
    env = {**os.environ, **ns.env(), "TENDERHUB_RELAY_HEARTBEAT_S": "1", "TENDERHUB_LOG_LEVEL": "INFO"}

    def member(name: str, args: list[str], port_env: str) -> Member:
        return Member(name, args, env, log_dir / f"faults-{ns.run}-{name}.log", port_env)

    relays = [member(f"relay-{x}", ["cdc", "run"], "TENDERHUB_RELAY_METRICS_ADDR") for x in "ab"]
    workers = [member(f"worker-{n}", ["worker"], "TENDERHUB_WORKER_WEB_PORT") for n in (1, 2)]
    return Fleet(relays, workers)


def _wait_log(m: Member, texts: tuple[str, ...], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not m.alive():
            raise FaultRunError(f"{m.name} exited while starting (log {m.log_path}):\n{m.tail()}")
        text = m.log_path.read_text(errors="replace") if m.log_path.exists() else ""
        if any(t in text for t in texts):
            return
        time.sleep(0.3)
    raise FaultRunError(f"{m.name} did not start within {timeout:.0f} s (log {m.log_path}):\n{m.tail()}")


def run_faults(settings: Settings, options: Options, say: Say, log_dir: Path) -> FaultResult:
    options.check()
    run = uuid.uuid4().hex[:10]
    seed = options.seed if options.seed is not None else random.SystemRandom().randrange(2**31)
    rng = random.Random(seed)  # noqa: S311 - fault schedule, not security
    result = FaultResult(run, options, seed, dt.datetime.now(dt.UTC))
    ns = namespace.fault_namespace(settings, run)
    started = time.monotonic()
    say(f"fault run {run} (seed {seed}): MySQL database {ns.database}, topics {ns.settings.topic_prefix}*")
    namespace.create(ns)
    fleet = _fleet(ns, log_dir)
    result.logs = [str(m.log_path) for m in fleet.members]
    app_engine = make_engine(ns.settings, pool_size=2)
    engine = reader_engine(ns.settings)  # the outbox is read with the read-only account, as verify reads it
    sampler: Sampler | None = None
    writer: LoadWriter | None = None
    injector: Injector | None = None
    try:
        fleet.relays[0].start()
        _wait_log(fleet.relays[0], ("tailing binlog from",), 90)
        fleet.relays[1].start()
        _wait_log(fleet.relays[1], ("standing by",), 90)
        for w in fleet.workers:
            w.start()
        for w in fleet.workers:
            _wait_log(w, ("Worker ready",), 120)
        fleet.t0 = time.monotonic()
        fleet.start_supervising()
        say("  relays a (active) and b (standing by), workers 1 and 2 (every agent) running")
        load_plan = Plan.for_events(options.events)
        result.planned = dict(load_plan.counts)
        writer = LoadWriter(app_engine, run, load_plan, options.load_s, rng.randrange(2**31))
        kinds = plan(options.faults, rng)
        injector = Injector(fleet, kinds, options.load_s, options.max_outage_s, rng, fleet.t0)
        sampler = Sampler(ns.settings, engine, fleet, options.sample_s, say)
        say(
            f"  load: {load_plan.events} events over {options.load_s / 60:.1f} min; faults: {len(kinds)} "
            f"({', '.join(f'{k} {n}' for k, n in sorted(Counter(kinds).items()))})"
        )
        writer.start()
        injector.start()
        sampler.start()
        while writer.is_alive() or injector.is_alive():
            writer.join(30)
            done = sum(writer.stats.done.values())
            say(
                f"  {time.monotonic() - fleet.t0:.0f} s: {done}/{load_plan.events} events written "
                f"({writer.stats.retries} retries), {len(injector.records)}/{len(kinds)} faults"
            )
        result.load = writer.stats
        result.faults = injector.records
        result.faults_during_load = sum(1 for f in injector.records if f.at_s <= writer.stats.finished - fleet.t0)
        say("  load and faults done; waiting for quiescence")
        result.quiescence = wait_quiescent(ns.settings, engine, fleet.workers, say, options.settle_s)
        sampler.stop()
        result.samples = sampler.samples
        if options.soak:
            rate = load_plan.events / options.load_s
            result.soak = judge(sampler.samples, rate, warmup=min(2, len(sampler.samples) // 4))
        committed = outbox_ids(engine)
        result.committed_by_type = dict(Counter(committed.values()))
        result.kafka = check_kafka(ns.settings, committed)
        result.duplicated = duplicated_documents(ns.settings)
    finally:
        # Stopped early (Ctrl-C, SIGTERM, an error) or not: no service may stay down or frozen, no process behind.
        for thread in (injector, writer):
            if thread is not None and thread.is_alive():
                thread.stop()
                thread.join(240)
        if sampler is not None and sampler.is_alive():
            sampler.stop()
        result.exits = list(fleet.exits)
        result.stop_codes = fleet.stop()
        app_engine.dispose()
        engine.dispose()
        result.duration_s = time.monotonic() - started
        if options.keep:
            say(f"  kept: database {ns.database}, MongoDB {ns.settings.mongo_db}, topics {ns.settings.topic_prefix}*")
        else:
            namespace.drop(ns)
    return result
