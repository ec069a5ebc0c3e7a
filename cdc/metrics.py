"""Relay metrics in Prometheus text format: events/s (counter rate), lag, position, DLQ count, last error."""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server

from cdc.position import Position
from schema.heap import watch_gc

if TYPE_CHECKING:
    from cdc.envelope import Record


class RelayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter("tenderhub_relay_events", "Outbox events committed to Kafka", ["topic"], registry=r)
        self.dlq = Counter("tenderhub_relay_dlq_events", "Outbox rows sent to the DLQ", ["reason"], registry=r)
        self.transactions = Counter("tenderhub_relay_transactions", "Kafka transactions committed", registry=r)
        self.lag_ms = Gauge(
            "tenderhub_relay_lag_ms", "Commit time minus outbox created_at of the newest committed event", registry=r
        )
        self.position_seq = Gauge("tenderhub_relay_position_seq", "GTID seq of the committed position", registry=r)
        self.position_rows = Gauge(
            "tenderhub_relay_position_rows_done", "Rows published of the open source transaction", registry=r
        )
        self.last_commit = Gauge("tenderhub_relay_last_commit_unixtime", "Time of the last commit", registry=r)
        self.commit_seconds = Histogram(
            "tenderhub_relay_commit_seconds",
            "Duration of one Kafka transaction (begin, sends, commit)",
            buckets=(0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 5.0),
            registry=r,
        )
        self.errors = Counter("tenderhub_relay_errors", "Errors that caused a reconnect", ["kind"], registry=r)
        self.last_error_time = Gauge("tenderhub_relay_last_error_unixtime", "Time of the last error", registry=r)
        self.last_error = Info("tenderhub_relay_last_error", "Kind and message of the last error", registry=r)
        watch_gc(r)
        self.last_lag_ms = 0.0

    def serve(self, addr: str) -> None:
        host, port = addr.rsplit(":", 1)
        start_http_server(int(port), addr=host, registry=self.registry)

    def committed(self, records: list[Record], position: Position) -> None:
        now = time.time()
        self.transactions.inc()
        self.last_commit.set(now)
        self.position_seq.set(position.seq if position.txn_seq is None else position.txn_seq)
        self.position_rows.set(position.rows_done)
        newest = None
        for r in records:
            if r.dlq_reason is not None:
                self.dlq.labels("oversized" if r.dlq_reason == "oversized" else "contract").inc()
            else:
                self.events.labels(r.topic).inc()
            newest = r.created_at
        if newest is not None:
            created = newest.replace(tzinfo=dt.UTC).timestamp()
            self.last_lag_ms = max(0.0, (now - created) * 1000)
            self.lag_ms.set(self.last_lag_ms)

    def error(self, exc: BaseException) -> None:
        self.errors.labels(type(exc).__name__).inc()
        self.last_error_time.set(time.time())
        self.last_error.info({"kind": type(exc).__name__, "message": str(exc)[:500]})
