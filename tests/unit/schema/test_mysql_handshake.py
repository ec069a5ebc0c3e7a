"""A MySQL that accepts the connection and never answers (a frozen server, a load balancer with no backend, a URL
pointing at another service's port): every way tenderhub connects gives up after its connect timeout. PyMySQL reads
the server's greeting under the read timeout, None by default, so these calls hung for ever (`tenderhub status`
printed nothing, past its own 15 s limit)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pymysql
import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from cdc.connections import marker_connection, relay_connection, transactional_connection
from schema.engines import mysql_engine
from schema.mysql import connect
from schema.settings import MysqlDsn


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A listener that accepts connections and never sends a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


def _dsn(port: int) -> MysqlDsn:
    return MysqlDsn.parse(SecretStr(f"mysql+pymysql://u:p@127.0.0.1:{port}/t"))


def _fails_within(seconds: float, call: object) -> None:
    started = time.monotonic()
    with pytest.raises((pymysql.err.OperationalError, sa.exc.OperationalError)):
        call()  # type: ignore[operator]
    assert time.monotonic() - started < seconds


def test_every_connection_gives_up_on_a_server_that_never_greets(silent_port: int) -> None:
    dsn = _dsn(silent_port)

    def schema_connect() -> None:
        with connect(dsn, connect_timeout=1):
            pass

    def relay() -> None:
        with relay_connection(dsn, connect_timeout=1):
            pass

    _fails_within(5, schema_connect)
    _fails_within(5, relay)
    _fails_within(5, lambda: transactional_connection(dsn, connect_timeout=1))
    _fails_within(5, lambda: marker_connection(dsn, connect_timeout=1))
    engine = mysql_engine(f"mysql+pymysql://u:p@127.0.0.1:{silent_port}/t", connect_args={"connect_timeout": 1})
    try:
        _fails_within(5, lambda: engine.connect().close())
    finally:
        engine.dispose()
