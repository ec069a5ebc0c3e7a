"""The run's writes, through the application's own paths (business row and event in one transaction, the app
account): tenders created from the real eTenders and UK data, updated, closed and cancelled; company profiles created
and changed; user activity. Paced to spread over the load window; each transaction retried while MySQL is away (an
application would too). What was committed is read back from MySQL by the audit, not trusted from here: a commit
whose answer was lost may have landed, and its retry then writes a second event, which is what a real app does."""

from __future__ import annotations

import dataclasses
import functools
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from cdc.outbox import write_event, write_events
from schema.retry import backoff_delay
from tenderhub.companies import CompanyProfile, read_profiles, upsert_company
from tenderhub.loader import (
    DATA_DIR,
    ReleaseError,
    TenderRow,
    read_releases,
    tender_row,
    upsert_tender_event,
    with_award_value,
)

log = logging.getLogger(__name__)

UK_SAMPLE = DATA_DIR / "uk_contracts_finder_spend_sample.jsonl"
RETRY_FOR_S = 180.0
KINDS = (
    "user.activity",
    "tender.created",
    "tender.updated",
    "tender.closed",
    "tender.cancelled",
    "company.created",
    "company.changed",
)
PROVINCES = ("Gauteng", "Western Cape", "KwaZulu-Natal", "Eastern Cape", "Limpopo", "Mpumalanga")


@dataclass(frozen=True)
class Plan:
    """How many of each kind of write (one event each, activity batched up to 50 a transaction)."""

    counts: dict[str, int]

    @property
    def events(self) -> int:
        return sum(self.counts.values())

    @classmethod
    def for_events(cls, events: int) -> Plan:
        """A realistic mix: activity dominates (about 98 %); tenders change; five teams' profiles change rarely.

        Readiness keeps a document per (team, tender) pair and rewrites a tender's for every team when it changes,
        and a team's for every tender when its profile changes; on FerretDB 1.24 each guarded rewrite scans the
        collection (see the README's benchmarks), so tender and profile changes are kept to what the dev store
        absorbs within the run: 100,000 events give 500 tenders, 2,500 score documents, about 3,800 rewrites."""
        if events < 200:
            raise ValueError("a fault run needs at least 200 events")
        counts = {
            "tender.created": max(4, events // 200),
            "tender.updated": max(2, events * 2 // 1000),
            "tender.closed": max(1, events // 1000),
            "tender.cancelled": max(1, events // 2000),
            "company.created": 5,
            "company.changed": 4,
        }
        counts["user.activity"] = events - sum(counts.values())
        return cls(counts)


@dataclass
class LoadStats:
    done: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    transactions: int = 0
    started: float = 0.0
    finished: float = 0.0
    error: str | None = None


def _tender_rows() -> list[TenderRow]:
    rows = []
    for release in read_releases():
        try:
            rows.append(tender_row(release))
        except ReleaseError:
            continue
    for release in read_releases(UK_SAMPLE):
        try:
            rows.append(with_award_value(tender_row(release), release))
        except ReleaseError:
            continue
    return rows


def _profiles(run: str, teams: int) -> list[CompanyProfile]:
    base = read_profiles()
    return [
        dataclasses.replace(base[n % len(base)], team=f"faults {run} team {n}", company_name=f"Faults {run} Co {n}")
        for n in range(teams)
    ]


def _changed(p: CompanyProfile, n: int) -> CompanyProfile:
    provinces = sorted({*p.provinces[1:], PROVINCES[n % len(PROVINCES)]})
    return dataclasses.replace(p, provinces=provinces, experience_years=(p.experience_years or 0) + 1)


class LoadWriter(threading.Thread):
    def __init__(self, engine: sa.Engine, run: str, plan: Plan, seconds: float, seed: int) -> None:
        super().__init__(name="faults-load", daemon=True)
        self.engine = engine
        self.run_id = run
        self.plan = plan
        self.seconds = seconds
        self.rng = random.Random(seed)  # noqa: S311 - test data, not security
        self.stats = LoadStats()
        self._halt = threading.Event()
        self.rows = _tender_rows()
        self.tenders: dict[int, TenderRow] = {}
        self.tender_ids: list[int] = []  # the keys of `tenders`, for a cheap random choice
        self.profiles = _profiles(run, plan.counts["company.created"])

    def stop(self) -> None:
        self._halt.set()

    def _steps(self) -> list[str]:
        """Every write in a random order; profiles created in the first 2 % (before most tenders, so the run has
        teams to score against), activity in batches."""
        counts = dict(self.plan.counts)
        created = ["company.created"] * counts.pop("company.created")
        activity = counts.pop("user.activity")
        steps = [k for k, n in counts.items() for _ in range(n)]
        while activity > 0:
            size = min(activity, self.rng.randint(1, 50))
            steps.append(f"user.activity:{size}")
            activity -= size
        self.rng.shuffle(steps)
        head = max(1, len(steps) // 50)
        return steps[:head] + created + steps[head:]

    def run(self) -> None:
        self.stats.started = time.monotonic()
        try:
            steps = self._steps()
            for n, step in enumerate(steps):
                if self._halt.is_set():
                    break
                # Paced: step n is due at n/len of the window (no burst at the start, none at the end).
                delay = self.stats.started + self.seconds * n / len(steps) - time.monotonic()
                if delay > 0 and self._halt.wait(delay):
                    break
                self._retrying(functools.partial(self._write, step=step))
        except Exception as exc:
            log.exception("load writer stopped")
            self.stats.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.stats.finished = time.monotonic()

    def _retrying(self, write: Callable[[sa.Connection], Callable[[], None]]) -> None:
        """Run `write` in a transaction until it commits; only then apply what it returns to the writer's own
        view (a commit whose answer was lost is not known to have happened, so nothing refers to its rows)."""
        deadline = time.monotonic() + RETRY_FOR_S
        failures = 0
        while True:
            try:
                with self.engine.begin() as conn:
                    committed = write(conn)
                committed()
                self.stats.transactions += 1
                return
            except (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.InternalError) as exc:
                if time.monotonic() > deadline or self._halt.is_set():
                    raise
                self.stats.retries += 1
                failures += 1
                log.info("load: MySQL unavailable (%s); retrying", str(exc).splitlines()[0][:120])
                time.sleep(backoff_delay(failures, 0.1, 1.0))

    def _write(self, conn: sa.Connection, step: str) -> Callable[[], None]:
        kind, _, size = step.partition(":")
        if kind == "user.activity":
            events: list[tuple[str, int | str, dict[str, Any]]] = []
            for _ in range(int(size)):
                user = self.rng.randint(1, 500)
                tender = self.rng.choice(self.tender_ids) if self.tender_ids else None
                team = self.rng.randint(1, 50)
                payload: dict[str, Any] = {"user_id": user, "team_id": team, "action": "tender.viewed"}
                if tender is not None:
                    payload["tender_id"] = tender
                events.append(("user.activity", user, payload))
            write_events(conn, events)
            return lambda: self._count(kind, len(events))
        if kind.startswith("tender.") and (kind == "tender.created" or not self.tenders):
            n = self.stats.done["tender.created"]
            base = self.rows[n % len(self.rows)]
            row = dataclasses.replace(base, ocid=f"{base.ocid}-f{self.run_id}-{n}")
            tender_id, _, _ = upsert_tender_event(conn, row)
            return lambda: self._count("tender.created", 1, tender_id, row)
        if kind == "tender.updated":
            tender_id = self.rng.choice(self.tender_ids)
            row = self.tenders[tender_id]
            n = self.stats.done[kind] + 1
            changed = dataclasses.replace(row, title=f"Amended {n}: {row.title}"[:900])
            if changed.budget is not None:
                changed = dataclasses.replace(changed, budget=changed.budget + n)
            upsert_tender_event(conn, changed)
            return lambda: self._count(kind, 1, tender_id, changed)
        if kind in ("tender.closed", "tender.cancelled"):
            tender_id = self.rng.choice(self.tender_ids)
            status = "complete" if kind == "tender.closed" else "cancelled"
            conn.execute(sa.text("UPDATE tenders SET status = :s WHERE id = :id"), {"s": status, "id": tender_id})
            write_event(conn, "tender.closed", tender_id, {"tender_id": tender_id, "status": status})
            return lambda: self._count(kind, 1)
        if kind == "company.created":
            upsert_company(conn, self.profiles[self.stats.done[kind] % len(self.profiles)])
            return lambda: self._count(kind, 1)
        if kind == "company.changed":
            index = self.rng.randrange(len(self.profiles))
            profile = _changed(self.profiles[index], self.stats.done[kind])
            upsert_company(conn, profile)

            def changed_profile() -> None:
                self.profiles[index] = profile
                self._count(kind, 1)

            return changed_profile
        raise ValueError(f"unknown step {step!r}")

    def _count(self, kind: str, n: int, tender_id: int | None = None, row: TenderRow | None = None) -> None:
        self.stats.done[kind] += n
        if tender_id is not None and row is not None:
            if tender_id not in self.tenders:
                self.tender_ids.append(tender_id)
            self.tenders[tender_id] = row
