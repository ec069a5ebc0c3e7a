"""Bearer tokens of the read service: each bound to one user and their team, stored as its SHA-256 (the token is
shown once, when it is issued), revocable. `tenderhub api token issue | revoke | list` manage them with the
application's MySQL account; the read service looks them up with the read-only one.

A token is `th_` and 43 URL-safe characters (32 random bytes): far too many to guess, so a fast hash is enough and a
lookup by hash needs no constant-time compare. A token is valid while it is not revoked and its user still belongs to
the team it was issued for (a user moved to another team or deleted loses the old team's data). The service trusts a
lookup for `api_token_cache_s` (a revocation or a move takes effect within it).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from schema.checked import whole
from schema.events import MAX_ID
from sinks.errors import TransientSinkError

TOKEN_PREFIX = "th_"  # noqa: S105 - the prefix every token starts with, not a secret
_TOKEN = re.compile(r"th_[A-Za-z0-9_-]{43}")
NAME_MAX_CHARS = 100


class TokenError(ValueError):
    """A token cannot be issued or revoked as asked; the message says why."""


@dataclass(frozen=True)
class Principal:
    """Who a token speaks for."""

    token_id: int
    user_id: int
    team_id: int


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def well_formed(token: str) -> bool:
    return bool(_TOKEN.fullmatch(token))


def _id(name: str, value: int) -> int:
    if not whole(value, 1, MAX_ID):
        raise TokenError(f"{name} must be a positive 64-bit integer, got {value!r}")
    return value


def issue(engine: sa.Engine, user_id: int, team_id: int, name: str) -> tuple[int, str]:
    """A new token for `user_id` of `team_id` (the user must belong to the team): (its id, the token)."""
    _id("user_id", user_id)
    _id("team_id", team_id)
    if not name or len(name) > NAME_MAX_CHARS or not name.isprintable():
        raise TokenError(f"the token's name must be 1 to {NAME_MAX_CHARS} printable characters")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with engine.begin() as conn:
        member = conn.execute(sa.text("SELECT team_id FROM users WHERE id = :u"), {"u": user_id}).first()
        if member is None:
            raise TokenError(f"there is no user {user_id}")
        if int(member[0]) != team_id:
            raise TokenError(f"user {user_id} belongs to team {member[0]}, not to team {team_id}")
        result = conn.execute(
            sa.text("INSERT INTO api_tokens (token_hash, user_id, team_id, name) VALUES (:h, :u, :t, :n)"),
            {"h": token_hash(token), "u": user_id, "t": team_id, "n": name},
        )
        token_id = int(result.lastrowid or 0)
    return token_id, token


def revoke(engine: sa.Engine, token_id: int) -> bool:
    """Revoke a token by its id; False when there is no such token or it was revoked already."""
    _id("token_id", token_id)
    with engine.begin() as conn:
        result = conn.execute(
            sa.text("UPDATE api_tokens SET revoked_at = CURRENT_TIMESTAMP(3) WHERE id = :i AND revoked_at IS NULL"),
            {"i": token_id},
        )
    return bool(result.rowcount)


def list_tokens(engine: sa.Engine, team_id: int | None = None) -> list[dict[str, Any]]:
    """Every token (never the token itself: only its id, owner, name and dates), newest first."""
    where, params = ("WHERE team_id = :t", {"t": _id("team_id", team_id)}) if team_id is not None else ("", {})
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                f"SELECT id, user_id, team_id, name, created_at, revoked_at FROM api_tokens {where} ORDER BY id DESC"
            ),
            params,
        ).mappings()
        return [{k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in dict(row).items()} for row in rows]


class TokenStore:
    """Looks tokens up by hash (read-only account), caching each answer for `cache_s`; at most `cache_max` answers
    are kept, the least recently used going first."""

    def __init__(
        self, engine: sa.Engine, cache_s: float = 10.0, clock: Any = time.monotonic, cache_max: int = 10_000
    ) -> None:
        self._engine = engine
        self._cache_s = cache_s
        self._clock = clock
        self._cache_max = cache_max
        self._cache: OrderedDict[str, tuple[float, Principal | None]] = OrderedDict()
        # Tokens seen valid (hashes, most recent last): looked up again when their cache entry expires, without the
        # caller's gate, so a flood of made-up tokens from a shared address does not lock out known users.
        self._known: OrderedDict[str, None] = OrderedDict()

    async def principal(
        self, token: str, before_lookup: Callable[[], Awaitable[None]] | None = None
    ) -> Principal | None:
        """Who `token` speaks for, or None (malformed, unknown, revoked, or its user left the team).
        `before_lookup` runs before a token never seen valid is looked up in MySQL (the caller's quota: a flood of
        made-up tokens must not become a flood of queries); it raises to refuse the lookup."""
        if not well_formed(token):
            return None
        digest = token_hash(token)
        now = self._clock()
        hit = self._cache.get(digest)
        if hit is not None and now - hit[0] < self._cache_s:
            self._cache.move_to_end(digest)
            return hit[1]
        if before_lookup is not None and digest not in self._known:
            await before_lookup()
        try:
            found = await asyncio.to_thread(self._lookup, digest)
        except (sa.exc.OperationalError, sa.exc.TimeoutError) as exc:
            raise TransientSinkError(f"MySQL cannot answer token lookups: {str(exc)[:200]}") from exc
        self._cache[digest] = (now, found)
        self._cache.move_to_end(digest)
        while len(self._cache) > self._cache_max:
            self._cache.popitem(last=False)
        if found is None:
            self._known.pop(digest, None)
        else:
            self._known[digest] = None
            self._known.move_to_end(digest)
            while len(self._known) > self._cache_max:
                self._known.popitem(last=False)
        return found

    def _lookup(self, digest: str) -> Principal | None:
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.text(
                    "SELECT t.id, t.user_id, t.team_id FROM api_tokens t "
                    "JOIN users u ON u.id = t.user_id AND u.team_id = t.team_id "
                    "WHERE t.token_hash = :h AND t.revoked_at IS NULL"
                ),
                {"h": digest},
            ).first()
        return None if row is None else Principal(int(row[0]), int(row[1]), int(row[2]))
