"""One active relay per source: the leader lock (a MySQL named lock on a connection of its own)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import pymysql

from schema.mysql import BoundedConnection
from schema.settings import Settings

log = logging.getLogger(__name__)


class LeaderLock:
    """Exactly one active relay per source: a MySQL named lock held on a dedicated connection. A standby waits
    for it. The lock alone cannot stop a paused relay that wakes up; the shared transactional id does that."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.name = f"tenderhub_relay_{settings.relay_source_name}"
        self._conn: Any = None

    async def acquire(self, stop: asyncio.Event, poll_s: float = 1.0) -> None:
        announced = False
        while not stop.is_set():
            try:
                if await asyncio.to_thread(self._try):
                    log.info("leader lock %s acquired: this relay is active", self.name)
                    return
            except pymysql.MySQLError as exc:
                log.warning("cannot reach MySQL for the leader lock (%s); retrying", exc)
                self._close()
            if not announced:
                log.info("leader lock %s is held by another relay: standing by", self.name)
                announced = True
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), poll_s)

    def _try(self) -> bool:
        if self._conn is None:
            self._conn = BoundedConnection(**self.s.relay_mysql.pymysql_kwargs(), autocommit=True, connect_timeout=5)
            with self._conn.cursor() as cur:
                # The server drops this connection (and so the lock) once it is idle this long: a relay that is
                # paused (SIGSTOP, a long GC, a frozen VM) stops pinging and a standby takes over.
                cur.execute("SET SESSION wait_timeout = %s", (self.s.relay_lock_timeout_s,))
        with self._conn.cursor() as cur:
            cur.execute("SELECT GET_LOCK(%s, 0)", (self.name,))
            row = cur.fetchone()
        return bool(row and row[0] == 1)

    def holds(self) -> bool:
        """Is the lock still held by this relay's connection? (Also keeps that connection alive.)"""
        if self._conn is None:
            return False
        try:
            with self._conn.cursor() as cur:
                cur.execute("SELECT IS_USED_LOCK(%s) = CONNECTION_ID()", (self.name,))
                row = cur.fetchone()
        except pymysql.MySQLError:
            self._close()
            return False
        return bool(row and row[0] == 1)

    async def ensure(self, stop: asyncio.Event) -> None:
        """Re-acquire after a lost connection (e.g. MySQL restarted). Safe: Kafka fencing guards the overlap."""
        if not await asyncio.to_thread(self.holds):
            await self.acquire(stop)

    async def watch(self, lost: asyncio.Event) -> None:
        every_s = self.s.relay_lock_timeout_s / 4
        while True:
            await asyncio.sleep(every_s)
            if not await asyncio.to_thread(self.holds):
                log.warning("leader lock %s lost; pausing publication until it is held again", self.name)
                lost.set()

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(pymysql.MySQLError), self._conn.cursor() as cur:
                cur.execute("SELECT RELEASE_LOCK(%s)", (self.name,))
            self._close()

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
