"""The binlog reader in a process of its own (issue 16): the relay uses two cores instead of one.

The decoder process tails the binlog exactly as `BinlogSource` does on a thread (same `TxnMachine`, same resume
rule) and also maps each row to its Kafka record (`to_record`: contract validation, envelope bytes); it sends the
items over a pipe in commit order, records as plain tuples (cheap to pickle). The relay process only publishes and
commits. Order is the pipe's order; nothing is decided in the decoder that the relay's committed position does not
cover: a restart of either re-reads from the committed position, as before.

Lifetime: the decoder dies with the relay (PR_SET_PDEATHSIG, and a write to a closed pipe), and the relay stops
(through the usual error path: reload the position, start a new decoder) when the decoder exits unexpectedly.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import pickle
import signal
import threading
from multiprocessing.connection import Connection
from typing import Any

from cdc.envelope import OutboxRow, Record, to_record
from cdc.errors import CdcError
from cdc.position import Position
from cdc.source import BinlogSource, Item
from schema.settings import MysqlDsn
from schema.topics import TopicNames

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


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
                self.topics,
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
                for item in batch:
                    if type(item) is tuple:
                        item = Decoded(Record(*item[:8]), item[8], item[9])
                    if not self._put(item):
                        return
        except BaseException as exc:  # noqa: BLE001 - handed to the event loop, which decides (retry or stop)
            self._put(exc)
        finally:
            conn.close()

    def stop(self) -> None:
        super().stop()
        proc = self._proc
        if proc is not None and proc.is_alive():
            proc.terminate()

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
    topics: TopicNames,
    max_pending: int,
    conn: Connection,
) -> None:
    _die_with_parent()
    parent = os.getppid()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the relay, which stops this process
    source = BinlogSource(
        dsn, position, server_id, heartbeat_s, mariadb=mariadb, domain=domain, max_pending=max_pending
    )
    source.start_thread()
    try:
        while True:
            items = source.take(heartbeat_s)
            if not items:
                if os.getppid() != parent:
                    return
                continue
            out: list[Item | tuple[Any, ...]] = []
            failed = False
            for item in items:
                if isinstance(item, OutboxRow):
                    r = to_record(item, topics)
                    out.append(
                        (r.topic, r.key, r.value, r.headers, r.event_id, r.created_at, r.source_seq, r.dlq_reason,
                         item.txn_seq, item.row_index)
                    )  # fmt: skip
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
