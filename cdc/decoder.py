"""The binlog reader in a process of its own (issue 16): the relay uses two cores instead of one.

The decoder process tails the binlog exactly as `BinlogSource` does on a thread (same `TxnMachine`, same resume
rule) and sends the outbox rows and transaction ends over a pipe in commit order, as plain tuples (cheap to pickle).
The relay process maps each row to its Kafka record (`to_record`: contract validation, envelope bytes) on the pump
thread that receives them, then publishes and commits: with single-row commits the decoder is the busier process
(about 90 % of a core against the relay's 50 %), so the record building moved to the relay (10.0-10.3k -> 12.5-12.9k
rows/s). Order is the pipe's order; nothing is decided in the decoder that the relay's committed position does not
cover: a restart of either re-reads from the committed position, as before.

Lifetime: the decoder dies with the relay (PR_SET_PDEATHSIG, and a write to a closed pipe), and the relay stops
(through the usual error path: reload the position, start a new decoder) when the decoder exits unexpectedly.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from cdc import fastrows
from cdc.envelope import OutboxRow, Record, to_record
from cdc.errors import CdcError
from cdc.position import Position
from cdc.source import BinlogSource, Idle, Item, TxnEnd
from schema.heap import freeze_startup_heap
from schema.settings import MysqlDsn
from schema.topics import TopicNames

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
GATHER_ROWS = 256
GATHER_S = 0.001


class Decoded:
    """An outbox row already mapped to its record by the decoder process."""

    __slots__ = ("record", "row_index", "txn_seq")

    def __init__(self, record: Record, txn_seq: int, row_index: int) -> None:
        self.record, self.txn_seq, self.row_index = record, txn_seq, row_index


class ProcessBinlogSource(BinlogSource):
    """`BinlogSource` whose reading and record building run in a child process; same interface for the relay."""

    def __init__(self, *args: Any, topics: TopicNames, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.topics = topics
        self._proc: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self._ready = threading.Event()  # the decoder's first message arrived: it is up and tailing

    def start_thread(self) -> None:
        ctx = multiprocessing.get_context("spawn")  # no fork of a process with an event loop and threads
        reader, writer = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(
            target=_decoder_main,
            args=(
                self.dsn,
                self.position,
                self.server_id,
                self.heartbeat_s,
                self.mariadb,
                self.domain,
                self.max_pending,
                writer,
            ),
            name="tenderhub-binlog-decoder",
            daemon=True,
        )
        self._proc.start()
        writer.close()
        self._conn = reader
        self._thread = threading.Thread(target=self._pump, name="binlog-decoder-pump", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        conn, proc = self._conn, self._proc
        assert conn is not None and proc is not None
        try:
            while not self._stop.is_set():
                try:
                    batch = conn.recv()
                except EOFError:
                    proc.join(5)
                    if not self._stop.is_set():
                        self._put(CdcError(f"the binlog decoder process exited (exit code {proc.exitcode})"))
                    return
                if not self._ready.is_set():
                    self._ready.set()
                for item in batch:
                    if type(item) is tuple:
                        if len(item) == 2:
                            item = TxnEnd(*item)
                        else:
                            row = OutboxRow(*item)
                            item = Decoded(to_record(row, self.topics), row.txn_seq, row.row_index)
                    if not self._put(item):
                        return
        except BaseException as exc:  # noqa: BLE001 - handed to the event loop, which decides (retry or stop)
            self._put(exc)
        finally:
            self._ready.set()  # no longer starting: whatever ended the pump is in the buffer for the relay
            conn.close()

    async def ready(self, timeout: float) -> None:
        """Until the decoder process is up (spawning it and importing take about half a second): rows committed
        meanwhile are read as soon as it is, but a caller that waits here knows the relay is tailing."""
        if not await asyncio.to_thread(self._ready.wait, timeout):
            raise CdcError(f"the binlog decoder process did not start within {timeout:.0f} s")

    def stop(self) -> None:
        super().stop()
        proc = self._proc
        if proc is not None and proc.is_alive():
            proc.kill()

    def join(self, timeout: float = 10.0) -> None:
        proc = self._proc
        if proc is not None:
            proc.join(timeout)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        super().join(timeout)


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError) as exc:  # not Linux: the closed pipe still ends this process
        log.warning("cannot tie the decoder's life to the relay's (%s); a closed pipe still ends it", exc)


def _sendable(exc: BaseException) -> BaseException:
    try:
        pickle.dumps(exc)
        return exc
    except Exception:  # noqa: BLE001 - any exception that does not pickle is described instead
        return CdcError(f"{type(exc).__name__}: {exc}")


def _decoder_main(
    dsn: MysqlDsn,
    position: Position,
    server_id: int,
    heartbeat_s: float,
    mariadb: bool,
    domain: int,
    max_pending: int,
    conn: Connection,
) -> None:
    _die_with_parent()
    fastrows.install(exclusive=True)  # this process's only binlog reader is the relay's
    parent = os.getppid()
    # A stop signal sent to the whole group (Ctrl-C, a service manager) is the relay's to handle: it flushes, commits
    # and then ends this process (SIGKILL: it holds nothing to flush, the binlog is only read).
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    source = BinlogSource(
        dsn, position, server_id, heartbeat_s, mariadb=mariadb, domain=domain, max_pending=max_pending
    )
    source.start_thread()
    freeze_startup_heap("binlog decoder")
    try:
        conn.send([Idle()])  # up: the relay may report that it is tailing
        while True:
            items = source.take(heartbeat_s)
            if not items:
                if os.getppid() != parent:
                    return
                continue
            if len(items) < GATHER_ROWS:
                # A short pause lets the reader thread decode more (it holds the GIL meanwhile) and sends them in
                # one pickle and one write: fewer, larger hand-offs for single-row commits, at most this much delay.
                time.sleep(GATHER_S)
                items += source.take(0)
            out: list[Item | tuple[Any, ...]] = []
            failed = False
            for item in items:
                if isinstance(item, OutboxRow):
                    out.append(
                        (item.id, item.event_type, item.aggregate_type, item.aggregate_id, item.schema_version,
                         item.payload, item.created_at, item.txn_seq, item.row_index, item.source_seq, item.defect)
                    )  # fmt: skip
                elif isinstance(item, TxnEnd):
                    out.append((item.gtid_state, item.seq))  # one per transaction: a tuple pickles far faster
                elif isinstance(item, BaseException):
                    out.append(_sendable(item))
                    failed = True
                else:
                    out.append(item)
            conn.send(out)
            if failed:
                return  # the reader thread has ended; the relay restarts from its committed position
    except (BrokenPipeError, ConnectionResetError):
        return  # the relay is gone
    finally:
        source.stop()
        conn.close()
