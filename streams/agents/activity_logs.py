"""Scenario 4: `user.activity` events -> the capped MongoDB collection `user_activity_logs`.

Pure core: `log_document` (event -> document, `_id` = event id). Wrapper: batched, idempotent inserts; a
redelivered event hits the duplicate `_id` and is not inserted twice.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

from schema.events import Envelope, UserActivityV1
from schema.mongo import USER_ACTIVITY_LOGS
from sinks.errors import PermanentSinkError
from streams.batch import Incoming, refused_event
from streams.context import WorkerContext
from streams.spec import AgentSpec

log = logging.getLogger(__name__)

AGENT = "activity_logs"


def log_document(event: Envelope[Any]) -> dict[str, Any]:
    """The log document of one `user.activity` event; deterministic, so a replay writes the same document."""
    payload = event.payload
    if not isinstance(payload, UserActivityV1):
        raise TypeError(f"{AGENT} takes user.activity events, got {event.event_type}")
    return {
        "_id": event.event_id,
        "event_id": event.event_id,
        "source_seq": event.source_seq,
        "user_id": payload.user_id,
        "team_id": payload.team_id,
        "action": payload.action,
        "tender_id": payload.tender_id,
        "details": dict(payload.details),
        "occurred_at": _occurred_at(event.occurred_at),
    }


def _occurred_at(text: str) -> dt.datetime | str:
    """Naive UTC for MongoDB, or the text as sent when it is no date MongoDB can hold: the log keeps the event
    either way (an unparsable or out-of-range date is the producer's to fix, not a reason to lose the entry)."""
    try:
        parsed = dt.datetime.fromisoformat(text)
        if parsed.tzinfo is not None:
            # Raises OverflowError at the calendar's edges (0001-01-01T00:00+02:00 is in year 0 in UTC).
            parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):
        return text
    return parsed


class ActivityLogHandler:
    def __init__(self, ctx: WorkerContext) -> None:
        self._ctx = ctx
        self.inserted = 0
        self.redelivered = 0

    async def __call__(self, items: Sequence[Incoming[UserActivityV1]]) -> None:
        docs = [log_document(i.event) for i in items]
        if not docs:
            return
        try:
            inserted = await self._ctx.mongo.insert_logs(USER_ACTIVITY_LOGS.name, docs)
        except PermanentSinkError as exc:
            raise refused_event(exc, range(len(docs))) from exc
        self.inserted += inserted
        self.redelivered += len(docs) - inserted


SPEC = AgentSpec(
    name=AGENT,
    doc="user.activity events -> the capped MongoDB log user_activity_logs",
    aggregates=("activity",),
    event_types=frozenset({"user.activity"}),
    handler=ActivityLogHandler,
    collections=(USER_ACTIVITY_LOGS,),
)
