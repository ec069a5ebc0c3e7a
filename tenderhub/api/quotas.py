"""Per-token request quotas in Redis: a fixed window of one minute (INCR, and EXPIRE 60 on the window's first request,
in one transaction). Past the limit the read service answers 429 with Retry-After: the seconds until the window ends.

Requests without a token (when public data is open) are counted per client address. If Redis cannot answer, the
request is let through and counted in `unchecked`: the read service keeps answering from MongoDB and MySQL while
Redis is down, and a quota that cannot be counted is not a reason to refuse it.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

from schema.events import MAX_ID
from schema.redis_keys import QUOTA_ANON_MINUTE, QUOTA_MINUTE
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
    """A client address as a key id (a positive 63-bit integer): addresses are not ids a key may hold as text."""
    return int.from_bytes(hashlib.sha256(address.encode()).digest()[:8], "big") % MAX_ID + 1


class Quotas:
    def __init__(self, redis: RedisSink, per_minute: int) -> None:
        self._redis = redis
        self._per_minute = per_minute
        self.unchecked = 0  # requests let through because Redis could not count them
        self.refused = 0

    async def take(self, token_id: int | None, address: str) -> Verdict:
        key = QUOTA_MINUTE.key(id=token_id) if token_id is not None else QUOTA_ANON_MINUTE.key(id=address_id(address))
        full = self._redis.full_key(key, "string")

        async def count() -> Any:
            async with self._redis.client().pipeline(transaction=True) as pipe:
                pipe.incr(full)
                pipe.expire(full, WINDOW_S, nx=True)
                pipe.ttl(full)
                return await pipe.execute()

        try:
            used, _, ttl = await self._redis.run(count, f"quota {key}")
        except TransientSinkError as exc:
            self.unchecked += 1
            log.warning("quota of %s not counted, Redis cannot answer (%s): let through", key, exc)
            return Verdict(True, 0, self._per_minute)
        used = int(used)
        if used > self._per_minute:
            self.refused += 1
            return Verdict(False, used, self._per_minute, max(int(ttl), 1))
        return Verdict(True, used, self._per_minute)
