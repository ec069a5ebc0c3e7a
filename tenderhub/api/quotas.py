"""Per-token quotas in Redis: requests per minute, and searches per day (UTC). Each is a fixed window: INCR, and the
window's end set on its first request (EXPIRE 60, or EXPIREAT the next midnight), in one transaction. Past the limit
the read service answers 429 with Retry-After: the seconds until the window ends.

Requests without a token (when public data is open) are counted per client address. So are requests with a token that
is not valid, in a quota of their own: once an address has used it, no token from that address that was never seen
valid is looked up in MySQL until the minute ends (a valid token seen before is looked up as usual). If Redis cannot
answer, the read service keeps answering from MongoDB and MySQL, and counts the quotas in its own memory meanwhile
(the same windows, per process; counted in `unchecked`): a quota must still hold when the cache is down, because that
is when every request falls through to the stores behind it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from schema.events import MAX_ID
from schema.redis_keys import (
    QUOTA_ANON_MINUTE,
    QUOTA_ANON_SEARCH_DAY,
    QUOTA_BAD_TOKEN_MINUTE,
    QUOTA_MINUTE,
    QUOTA_SEARCH_DAY,
    KeyFamily,
)
from sinks.errors import TransientSinkError
from sinks.redis import RedisSink

log = logging.getLogger(__name__)

WINDOW_S = 60


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    used: int
    limit: int
    retry_after_s: int = 0


def address_id(address: str) -> int:
    """A client address as a key id (a positive 63-bit integer): addresses are not ids a key may hold as text. An IPv6
    client is counted by its /64, the least a site is given: one host has the whole /64 to rotate through."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        ip = None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is None:
        address = str(ipaddress.ip_network(f"{ip}/64", strict=False))
    elif isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        address = str(ip.ipv4_mapped)
    return int.from_bytes(hashlib.sha256(address.encode()).digest()[:8], "big") % MAX_ID + 1


class LocalWindows:
    """Fixed windows counted in this process while Redis cannot count them; at most `max_keys` windows are kept,
    the least recently used going first."""

    def __init__(self, max_keys: int = 100_000, clock: Callable[[], float] = time.time) -> None:
        self._max_keys = max_keys
        self._clock = clock
        self._counts: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def take(self, key: str, window_s: float | None, ends_at: float | None) -> tuple[int, float]:
        """Count one in `key`'s window (it ends `window_s` after its first count, or at `ends_at`): (used, seconds
        left)."""
        now = self._clock()
        end, used = self._counts.get(key, (0.0, 0))
        if end <= now:
            end, used = (ends_at if ends_at is not None else now + (window_s or WINDOW_S)), 0
        self._counts[key] = (end, used + 1)
        self._counts.move_to_end(key)
        while len(self._counts) > self._max_keys:
            self._counts.popitem(last=False)
        return used + 1, end - now

    def used(self, key: str) -> tuple[int, float]:
        end, used = self._counts.get(key, (0.0, 0))
        now = self._clock()
        return (used, end - now) if end > now else (0, 0.0)


class Quotas:
    def __init__(
        self, redis: RedisSink, per_minute: int, searches_per_day: int, local: LocalWindows | None = None
    ) -> None:
        self._redis = redis
        self._per_minute = per_minute
        self._searches_per_day = searches_per_day
        self._local = local or LocalWindows()
        self.unchecked = 0  # requests Redis could not count (counted in this process instead)
        self.refused = 0

    async def take(self, token_id: int | None, address: str) -> Verdict:
        """One request of a token (or of an address, without one) in the current minute."""
        family = QUOTA_MINUTE if token_id is not None else QUOTA_ANON_MINUTE
        return await self._take(family, token_id, address, self._per_minute, None)

    async def take_bad_token(self, address: str) -> Verdict:
        """One request with a token that is not valid from `address` in the current minute (a quota of its own: the
        anonymous requests of public data do not use it up, and it limits no valid token already known)."""
        return await self._take(QUOTA_BAD_TOKEN_MINUTE, None, address, self._per_minute, None)

    async def bad_tokens_used_up(self, address: str) -> Verdict:
        """Whether `address` has used its quota of invalid tokens this minute, counting nothing: a peek before a
        MySQL lookup of a token never seen valid."""
        key = QUOTA_BAD_TOKEN_MINUTE.key(id=address_id(address))
        full = self._redis.full_key(key, "string")

        async def peek() -> Any:
            async with self._redis.client().pipeline(transaction=True) as pipe:
                pipe.get(full)
                pipe.ttl(full)
                return await pipe.execute()

        try:
            used, ttl = await self._redis.run(peek, f"quota {key}")
        except TransientSinkError as exc:
            self.unchecked += 1
            log.warning("quota of %s not read, Redis cannot answer (%s): read in this process", key, exc)
            used, ttl = self._local.used(full)
        used = int(used or 0)
        if used >= self._per_minute:
            self.refused += 1
            return Verdict(False, used, self._per_minute, max(int(ttl), 1))
        return Verdict(True, used, self._per_minute)

    async def take_search(self, token_id: int | None, address: str) -> Verdict:
        """One search of a token (or address) in the current day, UTC."""
        family = QUOTA_SEARCH_DAY if token_id is not None else QUOTA_ANON_SEARCH_DAY
        midnight = dt.datetime.combine(dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1), dt.time(), dt.UTC)
        return await self._take(family, token_id, address, self._searches_per_day, int(midnight.timestamp()))

    async def _take(
        self, family: KeyFamily, token_id: int | None, address: str, limit: int, ends_at: int | None
    ) -> Verdict:
        key = family.key(id=token_id if token_id is not None else address_id(address))
        full = self._redis.full_key(key, "string")

        async def count() -> Any:
            async with self._redis.client().pipeline(transaction=True) as pipe:
                pipe.incr(full)
                if ends_at is None:
                    pipe.expire(full, WINDOW_S, nx=True)
                else:
                    pipe.expireat(full, ends_at, nx=True)
                pipe.ttl(full)
                return await pipe.execute()

        try:
            used, _, ttl = await self._redis.run(count, f"quota {key}")
        except TransientSinkError as exc:
            self.unchecked += 1
            log.warning("quota of %s not counted in Redis (%s): counted in this process", key, exc)
            used, ttl = self._local.take(full, WINDOW_S if ends_at is None else None, ends_at)
        used = int(used)
        if used > limit:
            self.refused += 1
            return Verdict(False, used, limit, max(int(ttl), 1))
        return Verdict(True, used, limit)
