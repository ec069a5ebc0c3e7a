"""MongoDB collection specs (indexes, capped collections) and `ensure_collections`, applied by `migrate`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database
from pymongo.errors import CollectionInvalid, OperationFailure

from schema.settings import Settings

log = logging.getLogger(__name__)

NAMESPACE_EXISTS = 48  # the server error of a create whose collection exists
INDEX_NOT_FOUND = 27  # the server error of a drop whose index does not exist


@dataclass(frozen=True)
class IndexSpec:
    name: str
    keys: tuple[tuple[str, int], ...]
    unique: bool = False


@dataclass(frozen=True)
class CollectionSpec:
    name: str
    doc: str
    indexes: tuple[IndexSpec, ...] = ()
    capped: bool = False
    # Indexes an earlier layout made, dropped by `ensure_collections` once the new ones exist.
    retired_indexes: tuple[str, ...] = ()


TENDER_SUMMARIES = CollectionSpec(
    name="tender_summaries",
    doc="One summary per tender: text, model_used, content hash, event_id and source_seq that produced it.",
    indexes=(IndexSpec("uq_tender_id", (("tender_id", ASCENDING),), unique=True),),
)
READINESS_SCORES = CollectionSpec(
    name="readiness_scores",
    doc=(
        "One score per (team, tender) with its checklist, rules version and the source_seq of both inputs. A team's "
        "scores form a generation, its profile's source_seq (team_seq): a profile change inserts the next generation "
        "and then deletes the older one, so for a moment a pair may have two documents; the current score is the "
        "one with the highest team_seq."
    ),
    indexes=(
        IndexSpec(
            "uq_team_tender_gen",
            (("team_id", ASCENDING), ("tender_id", ASCENDING), ("team_seq", ASCENDING)),
            unique=True,
        ),
        IndexSpec("ix_team_score", (("team_id", ASCENDING), ("score", DESCENDING))),
    ),
    retired_indexes=("uq_team_tender",),
)
USER_ACTIVITY_LOGS = CollectionSpec(
    name="user_activity_logs",
    doc="Capped log of user.activity events; _id = event id so a redelivery cannot insert twice.",
    indexes=(IndexSpec("ix_user_time", (("user_id", ASCENDING), ("occurred_at", DESCENDING))),),
    capped=True,
)

COLLECTIONS = (TENDER_SUMMARIES, READINESS_SCORES, USER_ACTIVITY_LOGS)


def collection_options(spec: CollectionSpec, settings: Settings) -> dict[str, Any]:
    if not spec.capped:
        return {}
    return {"capped": True, "size": settings.activity_log_max_bytes, "max": settings.activity_log_max_docs}


def ensure_collections(
    db: Database[dict[str, Any]], settings: Settings, specs: Sequence[CollectionSpec] = COLLECTIONS
) -> list[str]:
    """Create missing collections and indexes (the catalogue's, or `specs`: the worker and `migrate` add those of
    installed agents); return the names of collections created now."""
    created = []
    existing = set(db.list_collection_names())
    for spec in specs:
        if spec.name not in existing:
            try:
                db.create_collection(spec.name, **collection_options(spec, settings))
                created.append(spec.name)
                log.info("created MongoDB collection %s", spec.name)
            except CollectionInvalid:
                log.info("collection %s was created concurrently", spec.name)
            except OperationFailure as exc:
                # Created by another process between pymongo's existence check and the create (workers started
                # together): the server's NamespaceExists.
                if exc.code != NAMESPACE_EXISTS:
                    raise
                log.info("collection %s was created concurrently", spec.name)
        coll = db[spec.name]
        for index in spec.indexes:
            coll.create_index(list(index.keys), name=index.name, unique=index.unique)
        if spec.retired_indexes:
            present = {str(info.get("name")) for info in coll.list_indexes()}
            for name in spec.retired_indexes:
                if name in present:
                    try:
                        coll.drop_index(name)
                    except OperationFailure as exc:
                        if exc.code != INDEX_NOT_FOUND:
                            raise
                        continue  # dropped by another process meanwhile (workers started together)
                    log.info("dropped index %s.%s of an earlier layout", spec.name, name)
    return created
