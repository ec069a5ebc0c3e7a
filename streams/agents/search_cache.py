"""Tender events -> the cached tender searches of the read service (`search:*` in Redis, sinks/search.py).

This agent owns the search cache: when tenders change (created, updated, closed) it drops every cached search whose
results hold one of them, and moves the cache's epoch so that a search that was running meanwhile is not cached
(the read service fills entries only through the guarded script). Dropping is idempotent, so a batch retried after a
failure, or redelivered, ends in the same state.
"""

from __future__ import annotations

from collections.abc import Sequence

from schema.events import TenderClosedV1, TenderV1
from schema.redis_keys import SEARCH_BY_TENDER, SEARCH_EPOCH, SEARCH_RESULTS
from sinks.search import SearchCache
from streams.batch import Incoming
from streams.context import WorkerContext
from streams.spec import AgentSpec

AGENT = "search_cache"


class SearchCacheHandler:
    def __init__(self, ctx: WorkerContext) -> None:
        self._cache = SearchCache(ctx.redis)
        self.dropped = 0

    async def __call__(self, items: Sequence[Incoming[TenderV1 | TenderClosedV1]]) -> None:
        if items:
            self.dropped += await self._cache.drop([i.event.payload.tender_id for i in items])


SPEC = AgentSpec(
    name=AGENT,
    doc="tender events -> drops the read service's cached searches that hold a changed tender",
    aggregates=("tender",),
    event_types=frozenset({"tender.created", "tender.updated", "tender.closed"}),
    handler=SearchCacheHandler,
    key_families=(SEARCH_RESULTS, SEARCH_BY_TENDER, SEARCH_EPOCH),
)
