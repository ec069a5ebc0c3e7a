"""The Redis key catalogue: every key family with its type and TTL. Each has ONE agent that owns it (writes and
deletes it): the agent's spec lists it (`streams/spec.py`), and a test checks that every family has exactly one owner.

Keys are only ever built through `KeyFamily.key()`, which validates each id, so no input can forge a key.

A pattern names its ids as `<part>`; braces are Redis Cluster hash tags, kept in the key: Redis Cluster places a key by
the text between its first `{` and the next `}` alone, so keys that one Lua script or transaction touches together
share a tag and therefore a slot (the spend keys `{spend_by_buyer}`, the search cache `{cache}`, a team's top list and
its inputs `{<id>}`). A script that touched keys of two slots would fail there with CROSSSLOT.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from schema.events import MAX_ID

RedisType = Literal["hash", "zset", "string", "set"]

# Ids that become part of a key: positive integers up to the contract's 2^63-1 (19 digits at most, the value
# checked in `key`) or a short window name.
_PART = {
    "id": re.compile(r"[1-9][0-9]{0,18}"),
    "window": re.compile(r"[0-9]{1,4}d"),
    "digest": re.compile(r"[0-9a-f]{32}"),  # a hash of a normalised query (sinks.search.SearchQuery.digest)
}


_PLACEHOLDER = re.compile(r"<(\w+)>")


def placeholder(part: str) -> str:
    """How a pattern names an id: `<part>`."""
    return f"<{part}>"


def hash_tag(key: str) -> str | None:
    """The hash tag Redis Cluster places `key` by (the text between its first `{` and the next `}`, when not empty),
    or None when the whole key decides its slot."""
    start = key.find("{")
    if start < 0:
        return None
    end = key.find("}", start + 1)
    return key[start + 1 : end] if end > start + 1 else None


def escape_glob(text: str) -> str:
    """`text` matched literally inside a Redis SCAN/KEYS pattern."""
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


class InvalidKeyError(ValueError):
    """An id does not fit its key family's pattern."""


@dataclass(frozen=True)
class KeyFamily:
    pattern: str
    type: RedisType
    ttl_s: int
    doc: str

    @property
    def parts(self) -> list[str]:
        return _PLACEHOLDER.findall(self.pattern)

    def key(self, **parts: object) -> str:
        if sorted(parts) != sorted(self.parts):
            raise InvalidKeyError(f"{self.pattern} takes {self.parts}, got {sorted(parts)}")
        out = self.pattern
        for name, value in parts.items():
            text = str(value)
            if isinstance(value, bool) or not _PART[name].fullmatch(text) or (name == "id" and int(text) > MAX_ID):
                raise InvalidKeyError(f"invalid {name} {text[:40]!r} for {self.pattern}")
            out = out.replace(placeholder(name), text)
        return out

    def glob(self) -> str:
        """A Redis SCAN pattern matching every key of the family (each id a `*`)."""
        out = escape_glob(self.pattern)
        for part in self.parts:
            out = out.replace(placeholder(part), "*")
        return out


TENDER_METADATA = KeyFamily(
    "tender:<id>:metadata",
    "hash",
    6 * 3600,
    "Tender card for reads: title, buyer, closing date, status, summary; dropped on tender.closed.",
)
TEAM_TOP_TENDERS = KeyFamily(
    "team:{<id>}:top_tenders",
    "zset",
    3600,
    "Top 5 open tenders of a team by readiness score (member = tender id); swept when closing dates pass.",
)
TEAM_TOP_INPUTS = KeyFamily(
    "team:{<id>}:top_tenders:inputs",
    "hash",
    3600,
    "Versions of the inputs the team's top list was built from (team_seq: the company profile's source_seq; "
    "__gen: the tender facts' generation); a list built from older inputs is refused. Written with the list.",
)
SPEND_BY_BUYER = KeyFamily(
    "analytics:{spend_by_buyer}",
    "zset",
    24 * 3600,
    "All-time spend per buyer and currency (member = 'currency|buyer', score = amount).",
)
SPEND_BY_BUYER_WINDOW = KeyFamily(
    "analytics:{spend_by_buyer}:<window>",
    "zset",
    24 * 3600,
    "Spend per buyer and currency over a rolling window of published dates (e.g. 30d).",
)
# State behind the spend keys: kept in Redis so that one Lua script updates a tender's state, the exact totals and
# the sorted sets together (a redelivered or stale event then changes nothing). Longer TTL than the read models:
# the nightly recompute rewrites them, and rebuilds them from MySQL if they ever expire.
STATE_TTL_S = 7 * 24 * 3600
SPEND_TENDER_STATE = KeyFamily(
    "analytics:{spend_by_buyer}:tenders",
    "hash",
    STATE_TTL_S,
    "Each tender's last (buyer, currency, budget, status, published date) and source_seq (field = tender id).",
)
SPEND_TOTALS = KeyFamily(
    "analytics:{spend_by_buyer}:totals",
    "hash",
    STATE_TTL_S,
    "Exact all-time totals: 'c:CUR|buyer' cents, 't:...' tenders counted, 'w:...' tenders without a budget.",
)
SPEND_WINDOW_TOTALS = KeyFamily(
    "analytics:{spend_by_buyer}:<window>:totals",
    "hash",
    STATE_TTL_S,
    "Exact totals of the rolling window, same fields as analytics:spend_by_buyer:totals.",
)
READINESS_TENDERS = KeyFamily(
    "readiness:tenders",
    "hash",
    STATE_TTL_S,
    "Scoring facts of each tender and their source_seq (field = tender id), and __gen, the count of facts written "
    "(grows with every write, whatever the partition order): what a team is scored against.",
)
READINESS_COMPANIES = KeyFamily(
    "readiness:companies",
    "hash",
    STATE_TTL_S,
    "Scoring facts of each team's company profile and their source_seq (field = team id).",
)
SUMMARY_LOCK = KeyFamily(
    "lock:summary:<id>",
    "string",
    600,
    "A lease (SET NX PX, renewed, naming its holder) while one worker summarises a tender; released in finally.",
)

# Cached tender searches (sinks/search.py). The read service fills an entry only through the owner's guarded script,
# which refuses a result computed before the owner's last drop (the epoch moved); the owner, `search_cache`, alone
# deletes entries, dropping every search that holds a tender when that tender changes.
SEARCH_RESULTS = KeyFamily(
    "search:{cache}:<digest>",
    "string",
    120,
    "One search's results as JSON (digest = a hash of the normalised query); filled by the read service through "
    "the guarded script, dropped by search_cache when a tender in it changes; new matches appear within the TTL.",
)
SEARCH_BY_TENDER = KeyFamily(
    "search:{cache}:tender:<id>",
    "set",
    180,
    "Digests of the cached searches whose results hold tender <id>: what search_cache drops when it changes "
    "(a member whose search was dropped with another tender stays until the set expires; dropping it is a no-op).",
)
SEARCH_EPOCH = KeyFamily(
    "search:{cache}:epoch",
    "hash",
    STATE_TTL_S,
    "__gen counts search_cache's drops (one per batch of tender changes); a fill read under an older one is refused.",
)

CATALOGUE: tuple[KeyFamily, ...] = (
    TENDER_METADATA,
    TEAM_TOP_TENDERS,
    TEAM_TOP_INPUTS,
    SPEND_BY_BUYER,
    SPEND_BY_BUYER_WINDOW,
    SPEND_TENDER_STATE,
    SPEND_TOTALS,
    SPEND_WINDOW_TOTALS,
    READINESS_TENDERS,
    READINESS_COMPANIES,
    SUMMARY_LOCK,
    SEARCH_RESULTS,
    SEARCH_BY_TENDER,
    SEARCH_EPOCH,
)


# Key families of the read service (`tenderhub api`), not of an agent: it alone writes them.
QUOTA_MINUTE = KeyFamily(
    "quota:<id>:minute",
    "string",
    60,
    "Requests one API token made in the current minute (INCR; expires 60 s after the minute's first request).",
)
QUOTA_ANON_MINUTE = KeyFamily(
    "quota:anon:<id>:minute",
    "string",
    60,
    "Requests without a token from one client address (id = a hash of it) in the current minute.",
)
QUOTA_BAD_TOKEN_MINUTE = KeyFamily(
    "quota:badtoken:<id>:minute",
    "string",
    60,
    "Requests with a token that is not valid from one client address (id = a hash of it) in the current minute: "
    "past the quota, tokens never seen valid from that address are not looked up in MySQL until the minute ends.",
)
QUOTA_SEARCH_DAY = KeyFamily(
    "quota:<id>:search:day",
    "string",
    24 * 3600,
    "Searches one API token made in the current day (UTC; expires at the day's end).",
)
QUOTA_ANON_SEARCH_DAY = KeyFamily(
    "quota:anon:<id>:search:day",
    "string",
    24 * 3600,
    "Searches without a token from one client address (id = a hash of it) in the current day (UTC).",
)
API_FAMILIES: tuple[KeyFamily, ...] = (
    QUOTA_MINUTE,
    QUOTA_ANON_MINUTE,
    QUOTA_BAD_TOKEN_MINUTE,
    QUOTA_SEARCH_DAY,
    QUOTA_ANON_SEARCH_DAY,
)


class FamilyIndex:
    """Maps concrete keys back to their family among `families`, with one regex compiled once (the first family, in
    order, whose pattern the whole key matches). A sink resolves every key it touches through one: building the
    patterns per call cost ~80 us a key."""

    def __init__(self, families: Sequence[KeyFamily]) -> None:
        self.families = tuple(families)
        alternatives = []
        for i, family in enumerate(self.families):
            regex = re.escape(family.pattern)
            for part in family.parts:
                regex = regex.replace(re.escape(placeholder(part)), f"(?:{_PART[part].pattern})")
            alternatives.append(f"(?P<f{i}>{regex})")
        self._regex = re.compile("|".join(alternatives))

    def family(self, key: str) -> KeyFamily:
        match = self._regex.fullmatch(key)
        if match is None or match.lastgroup is None:
            raise InvalidKeyError(f"{key[:80]!r} is not in the Redis key catalogue")
        return self.families[int(match.lastgroup[1:])]


@functools.lru_cache(maxsize=32)
def _index(families: tuple[KeyFamily, ...]) -> FamilyIndex:
    return FamilyIndex(families)


def family_of(key: str, families: Sequence[KeyFamily] = CATALOGUE) -> KeyFamily:
    """The family a concrete key belongs to among `families` (the catalogue, and for a worker also the families of
    installed agents, which their specs declare); its owner is the agent whose spec lists it."""
    return _index(tuple(families)).family(key)
