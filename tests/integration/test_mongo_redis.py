"""FerretDB serves capped collections and unique indexes over the MongoDB wire; Redis keeps TTLs."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from schema.mongo import COLLECTIONS, ensure_collections
from schema.redis_keys import TENDER_METADATA
from schema.settings import Settings


def test_capped_collection_write_and_read(scratch_mongo_db: Database[dict[str, Any]]) -> None:
    coll = scratch_mongo_db.create_collection("logs", capped=True, size=64 * 1024, max=1000)
    coll.insert_many([{"_id": f"evt-{i}", "n": i} for i in range(50)])
    assert coll.options()["capped"] is True
    assert [d["n"] for d in coll.find({}, sort=[("_id", 1)]).limit(3)] == [0, 1, 10]
    with pytest.raises(DuplicateKeyError):
        coll.insert_one({"_id": "evt-1", "n": 1})


def test_collections_are_created_with_unique_indexes(
    scratch_mongo_db: Database[dict[str, Any]], settings: Settings
) -> None:
    assert sorted(ensure_collections(scratch_mongo_db, settings)) == sorted(c.name for c in COLLECTIONS)
    assert ensure_collections(scratch_mongo_db, settings) == []
    assert scratch_mongo_db["user_activity_logs"].options()["capped"] is True
    summaries = scratch_mongo_db["tender_summaries"]
    summaries.insert_one({"tender_id": 1, "summary": "a"})
    with pytest.raises(DuplicateKeyError):
        summaries.insert_one({"tender_id": 1, "summary": "b"})
    scores = scratch_mongo_db["readiness_scores"]
    scores.insert_one({"team_id": 1, "tender_id": 1, "team_seq": 3, "score": 50})
    scores.insert_one({"team_id": 2, "tender_id": 1, "team_seq": 3, "score": 60})
    scores.insert_one({"team_id": 1, "tender_id": 1, "team_seq": 4, "score": 65})  # the team's next generation
    with pytest.raises(DuplicateKeyError):
        scores.insert_one({"team_id": 1, "tender_id": 1, "team_seq": 3, "score": 70})


def test_the_score_layout_before_generations_is_migrated(
    scratch_mongo_db: Database[dict[str, Any]], settings: Settings
) -> None:
    """A store made before score generations has a unique (team_id, tender_id), which would refuse a team's next
    generation: `ensure_collections` (migrate, worker start) drops it once the new unique index exists."""
    scores = scratch_mongo_db["readiness_scores"]
    scores.create_index([("team_id", 1), ("tender_id", 1)], unique=True, name="uq_team_tender")
    scores.insert_one({"team_id": 1, "tender_id": 1, "team_seq": 3})
    ensure_collections(scratch_mongo_db, settings)
    names = {str(i["name"]) for i in scores.list_indexes()}
    assert "uq_team_tender" not in names and "uq_team_tender_gen" in names
    scores.insert_one({"team_id": 1, "tender_id": 1, "team_seq": 4})
    assert ensure_collections(scratch_mongo_db, settings) == []  # again: nothing to create, nothing to drop


def test_collections_created_by_another_worker_meanwhile_are_not_an_error(
    scratch_mongo_db: Database[dict[str, Any]], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers started together race to create the collections: one lists none, another creates them, and the
    first one's create then meets NamespaceExists from the server (seen as a worker crash at start-up)."""
    ensure_collections(scratch_mongo_db, settings)
    # Both of pymongo's listings (ours, and create_collection's own check) answer before the other worker's create.
    for listing in ("list_collection_names", "_list_collection_names"):
        monkeypatch.setattr(type(scratch_mongo_db), listing, lambda self, *a, **kw: [])
    assert ensure_collections(scratch_mongo_db, settings) == []
    assert scratch_mongo_db["user_activity_logs"].options()["capped"] is True


def test_live_collections_exist(mongo: MongoClient[dict[str, Any]], settings: Settings) -> None:
    names = set(mongo[settings.mongo_db].list_collection_names())
    assert {c.name for c in COLLECTIONS} <= names


def test_redis_key_with_ttl(redis_client: redis.Redis, uid: str) -> None:
    key = f"test:{uid}:" + TENDER_METADATA.key(id=1)
    redis_client.hset(key, mapping={"title": "Supply of water meters"})
    redis_client.expire(key, TENDER_METADATA.ttl_s)
    assert redis_client.hget(key, "title") == b"Supply of water meters"
    assert 0 < int(redis_client.ttl(key)) <= TENDER_METADATA.ttl_s
    redis_client.delete(key)


def test_redis_requires_password(settings: Settings) -> None:
    url = settings.redis_url.get_secret_value()
    anonymous = redis.Redis.from_url("redis://" + url.split("@", 1)[1], socket_timeout=5)
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    anonymous.close()
