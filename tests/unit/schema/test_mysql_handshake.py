"""A MySQL that accepts the connection and never answers (a frozen server, a load balancer with no backend, a URL
pointing at another service's port): every way tenderhub connects gives up after its connect timeout. PyMySQL reads
the server's greeting under the read timeout, None by default, so these calls hung for ever (`tenderhub status`
printed nothing, past its own 15 s limit)."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator

import pymysql
import pytest
import sqlalchemy as sa
from pydantic import SecretStr
from pymysql.constants import CLIENT

from cdc.connections import marker_connection, relay_connection, transactional_connection
from schema.engines import mysql_engine
from schema.mysql import connect
from schema.settings import MysqlDsn


def _greeting_offering_tls() -> bytes:
    """A MySQL server greeting (protocol 10) that offers TLS: the client then starts a TLS handshake."""
    caps = CLIENT.LONG_PASSWORD | CLIENT.PROTOCOL_41 | CLIENT.SECURE_CONNECTION | CLIENT.SSL | CLIENT.PLUGIN_AUTH
    body = bytes([10]) + b"8.4.0\0" + struct.pack("<I", 1) + b"abcdefgh" + b"\0"
    body += struct.pack("<H", caps & 0xFFFF) + struct.pack("<BHHB", 45, 2, caps >> 16, 21) + b"\0" * 10
    body += b"ijklmnopqrst\0" + b"mysql_native_password\0"
    return struct.pack("<I", len(body))[:3] + b"\0" + body


@pytest.fixture(params=["silent", "greets offering TLS, then silent"])
def silent_port(request: pytest.FixtureRequest) -> Iterator[int]:
    """A listener that accepts connections and never sends a byte (or only a greeting that offers TLS)."""
    greeting = _greeting_offering_tls() if request.param != "silent" else b""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn = server.accept()[0]
            except TimeoutError:
                continue
            accepted.append(conn)
            if greeting:
                conn.sendall(greeting)

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
