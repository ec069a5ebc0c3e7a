"""Sinks against the real FerretDB and Redis: version guards, idempotent replays, atomic replacement, TTLs, outages."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from pymongo import ASCENDING
from pymongo.database import Database

from schema.mongo import ensure_collections
from schema.redis_keys import SPEND_BY_BUYER, TEAM_TOP_TENDERS, TENDER_METADATA
from schema.settings import Settings
from sinks.errors import InvalidInputError, PermanentSinkError, TransientSinkError
from sinks.mongo import AsyncMongoSink, MongoSink, UpsertResult, VersionedDoc
from sinks.redis import RedisSink
from sinks.retry import RetryPolicy

FAST_RETRY = RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.05)


def summary(tender_id: int, seq: int, text: str) -> VersionedDoc:
    return VersionedDoc({"tender_id": tender_id}, {"summary": text}, {"source_seq": seq}, event_id=seq * 10)


def score(team: int, tender: int, tender_seq: int, team_seq: int, value: int) -> VersionedDoc:
    return VersionedDoc(
        {"team_id": team, "tender_id": tender},
        {"score": value},
        {"tender_seq": tender_seq, "team_seq": team_seq},
        event_id=1000 + value,
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class Blocking:
    """An AsyncMongoSink whose calls run to completion on a private event loop, so that one test body covers both
    sinks (the worker's agents use the async one, the tools and the read service the blocking one)."""

    def __init__(self, inner: AsyncMongoSink) -> None:
        self._inner = inner
        self._loop = asyncio.new_event_loop()

    def __getattr__(self, name: str) -> Any:
        call = getattr(self._inner, name)
        return lambda *args, **kwargs: self._loop.run_until_complete(call(*args, **kwargs))

    def close(self) -> None:
        self._loop.run_until_complete(self._inner.close())
        self._loop.close()


Make = Any  # (url, database, **options) -> a sink with MongoSink's blocking calls


@pytest.fixture(params=["blocking", "asyncio"])
def make(request: pytest.FixtureRequest) -> Make:
    if request.param == "blocking":
        return MongoSink
    return lambda url, database, **options: Blocking(AsyncMongoSink(url, database, **options))


# Documents versioned by two inputs under a unique (team_id, tender_id): the sink's two-version guard, alone.
PAIRS = "pair_scores"


@pytest.fixture
def db(scratch_mongo_db: Database[dict[str, Any]], settings: Settings) -> Database[dict[str, Any]]:
    ensure_collections(scratch_mongo_db, settings)
    scratch_mongo_db[PAIRS].create_index([("team_id", ASCENDING), ("tender_id", ASCENDING)], unique=True)
    return scratch_mongo_db


@pytest.fixture(params=[True, False], ids=["preread", "guard-only"])
def sink(
    request: pytest.FixtureRequest, make: Make, db: Database[dict[str, Any]], settings: Settings
) -> Iterator[MongoSink]:
    # Both paths: stale documents found by the pre-read, and stale documents refused by the guard itself (E11000).
    mongo_sink = make(settings.mongo_url.get_secret_value(), db.name, retry_policy=FAST_RETRY, preread=request.param)
    yield mongo_sink
    mongo_sink.close()


def stored(db: Database[dict[str, Any]], collection: str) -> list[dict[str, Any]]:
    return list(db[collection].find({}, {"_id": 0}).sort([("tender_id", ASCENDING), ("team_id", ASCENDING)]))


# -- MongoDB (FerretDB) ---------------------------------------------------------------------------------------


def test_older_source_seq_never_overwrites_newer(sink: MongoSink, db: Database[dict[str, Any]]) -> None:
    assert sink.upsert_versioned("tender_summaries", [summary(1, 20, "new")]) == UpsertResult(upserted=1)
    assert sink.upsert_versioned("tender_summaries", [summary(1, 10, "old")]) == UpsertResult(stale=1)
    assert stored(db, "tender_summaries") == [{"tender_id": 1, "summary": "new", "source_seq": 20, "event_id": 200}]
    assert sink.upsert_versioned("tender_summaries", [summary(1, 21, "newer")]) == UpsertResult(modified=1)
    assert stored(db, "tender_summaries")[0]["summary"] == "newer"


def test_same_seq_twice_is_idempotent(sink: MongoSink, db: Database[dict[str, Any]]) -> None:
    batch = [summary(1, 5, "a"), summary(2, 6, "b")]
    assert sink.upsert_versioned("tender_summaries", batch) == UpsertResult(upserted=2)
    before = stored(db, "tender_summaries")
    assert sink.upsert_versioned("tender_summaries", batch) == UpsertResult(unchanged=2)
    assert stored(db, "tender_summaries") == before
    assert db["tender_summaries"].count_documents({}) == 2


def test_a_batch_with_two_versions_of_one_key_keeps_the_newer(sink: MongoSink, db: Database[dict[str, Any]]) -> None:
    result = sink.upsert_versioned("tender_summaries", [summary(7, 30, "newer"), summary(7, 3, "older")])
    assert result == UpsertResult(upserted=1, stale=1)
    assert stored(db, "tender_summaries") == [{"tender_id": 7, "summary": "newer", "source_seq": 30, "event_id": 300}]


def test_two_version_guard_refuses_an_update_with_one_version_going_back(
    sink: MongoSink, db: Database[dict[str, Any]]
) -> None:
    assert sink.upsert_versioned(PAIRS, [score(1, 5, 10, 7, 50)]) == UpsertResult(upserted=1)
    assert sink.upsert_versioned(PAIRS, [score(1, 5, 11, 6, 60)]) == UpsertResult(stale=1)
    assert sink.upsert_versioned(PAIRS, [score(1, 5, 9, 8, 61)]) == UpsertResult(stale=1)
    assert stored(db, PAIRS)[0]["score"] == 50
    assert sink.upsert_versioned(PAIRS, [score(1, 5, 10, 8, 70)]) == UpsertResult(modified=1)
    assert sink.upsert_versioned(PAIRS, [score(2, 5, 1, 1, 5)]) == UpsertResult(upserted=1)
    assert [(d["team_id"], d["score"], d["tender_seq"], d["team_seq"]) for d in stored(db, PAIRS)] == [
        (1, 70, 10, 8),
        (2, 5, 1, 1),
    ]


def test_guarded_upserts_in_multi_op_commands_converge(
    make: Make, settings: Settings, db: Database[dict[str, Any]]
) -> None:
    # No pre-read and 8 ops per command: stale ops reach the server, miss the guard and hit E11000 inside a multi-op
    # command. FerretDB then stops the command without counts or a right index, so the sink re-sends the ops one by
    # one. (8 ops stay far below the ~100 matching ops per command that deadlock FerretDB 1.24.)
    sink = make(settings.mongo_url.get_secret_value(), db.name, retry_policy=FAST_RETRY, batch_ops=8, preread=False)
    try:
        first = sink.upsert_versioned("tender_summaries", [summary(i, 100, "v100") for i in range(1, 21)])
        assert first == UpsertResult(upserted=20)
        batch = [summary(i, 100 + (5 if i % 2 else -5), f"v{i}") for i in range(1, 21)]
        result = sink.upsert_versioned("tender_summaries", [*batch, summary(25, 1, "new")])
        # Ops applied before a command stopped come back as equal-version replays: modified or unchanged.
        assert (result.upserted, result.modified + result.unchanged, result.stale) == (1, 10, 10)
        docs = {d["tender_id"]: d for d in stored(db, "tender_summaries")}
        assert len(docs) == 21
        for i in range(1, 21):
            assert (docs[i]["source_seq"], docs[i]["summary"]) == ((105, f"v{i}") if i % 2 else (100, "v100"))
    finally:
        sink.close()


def test_large_documents_are_split_across_commands(
    make: Make, settings: Settings, db: Database[dict[str, Any]]
) -> None:
    # Five 4 MiB summaries in one 20 MiB command would break the 16 MiB command limit: the sink splits by bytes.
    sink = make(settings.mongo_url.get_secret_value(), db.name, retry_policy=FAST_RETRY, batch_ops=8, preread=False)
    try:
        big = "x" * (4 * 1024 * 1024)
        assert sink.upsert_versioned("tender_summaries", [summary(i, 1, big) for i in range(1, 6)]).upserted == 5
        assert [len(d["summary"]) for d in stored(db, "tender_summaries")] == [len(big)] * 5
    finally:
        sink.close()


def test_a_document_another_unique_index_refuses_is_permanent_and_the_rest_is_written(
    sink: MongoSink, db: Database[dict[str, Any]]
) -> None:
    # The conflicting document is stored first: the async sink sends a batch's commands together, so of two
    # documents of one batch that collide on another unique index either could land first (the pipeline's
    # collections have no unique index but their key, so this never decides what it stores).
    db["tender_summaries"].create_index([("ocid", ASCENDING)], unique=True, name="uq_ocid_test")
    first = VersionedDoc({"tender_id": 1}, {"ocid": "ocds-1"}, {"source_seq": 1}, 11)
    assert sink.upsert_versioned("tender_summaries", [first]) == UpsertResult(upserted=1)
    batch = [
        VersionedDoc({"tender_id": 4}, {"ocid": "ocds-4"}, {"source_seq": 4}, 14),
        VersionedDoc({"tender_id": 2}, {"ocid": "ocds-1"}, {"source_seq": 2}, 12),
        VersionedDoc({"tender_id": 3}, {"ocid": "ocds-3"}, {"source_seq": 3}, 13),
    ]
    with pytest.raises(PermanentSinkError, match="another unique index") as info:
        sink.upsert_versioned("tender_summaries", batch)
    assert (info.value.index, info.value.key) == (1, {"tender_id": 2})
    assert [d["tender_id"] for d in stored(db, "tender_summaries")] == [1, 3, 4]


def test_insert_logs_dedupes_redeliveries_in_a_capped_collection(sink: MongoSink, db: Database[dict[str, Any]]) -> None:
    assert db["user_activity_logs"].options()["capped"] is True
    first = [{"_id": i, "user_id": 7, "action": f"view {i}"} for i in (1, 2, 3)]
    assert sink.insert_logs("user_activity_logs", first) == 3
    redelivered = [{"_id": i, "user_id": 7, "action": f"view {i}"} for i in (2, 3, 4, 3)]
    assert sink.insert_logs("user_activity_logs", redelivered) == 1
    assert sink.insert_logs("user_activity_logs", first) == 0
    assert sorted(d["_id"] for d in db["user_activity_logs"].find()) == [1, 2, 3, 4]


def test_a_large_log_batch_with_redeliveries_in_several_of_its_chunks(
    sink: MongoSink, db: Database[dict[str, Any]]
) -> None:
    """The worker's sink sends 1,000 documents as a few inserts at once: redeliveries scattered through them are
    still each ignored once, and every other document is written once."""
    redelivered = (5, 300, 620, 990)
    assert sink.insert_logs("user_activity_logs", [{"_id": i, "action": "first"} for i in redelivered]) == 4
    batch = [{"_id": i, "user_id": i % 7, "action": f"view {i}"} for i in range(1, 1001)]
    assert sink.insert_logs("user_activity_logs", batch) == 996
    docs = {d["_id"]: d["action"] for d in db["user_activity_logs"].find()}
    assert docs == {i: "first" if i in redelivered else f"view {i}" for i in range(1, 1001)}


class WriterBetweenReadAndInsert(AsyncMongoSink):
    """The worker's sink, with another writer storing `landed` (directly in MongoDB) after the sink's pre-read of the
    stored versions and before its insert of the keys it found absent: those inserts collide."""

    def __init__(self, *args: Any, landed: list[dict[str, Any]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.landed = landed

    async def _perform(self, request: Any) -> Any:
        if type(request).__name__ == "_InsertMany" and self.landed:
            await self._db()[request.collection].insert_many(self.landed)
            self.landed = []
        return await super()._perform(request)


def test_keys_stored_by_another_writer_during_a_large_insert_fall_back_to_the_guarded_update(
    db: Database[dict[str, Any]], settings: Settings
) -> None:
    """1,000 new keys go out as a few inserts at once; four of them, spread over those inserts, were stored meanwhile
    (three older, one newer): each collision is matched to its own key, the older ones are overwritten by the guarded
    update, the newer one is kept, and nothing else is written twice."""
    older, newer = (3, 400, 999), 700
    landed = [{"tender_id": t, "summary": "old", "source_seq": 1, "event_id": 10} for t in older]
    landed.append({"tender_id": newer, "summary": "newer", "source_seq": 9, "event_id": 90})
    inner = WriterBetweenReadAndInsert(
        settings.mongo_url.get_secret_value(), db.name, retry_policy=FAST_RETRY, landed=landed
    )
    sink = Blocking(inner)
    try:
        result = sink.upsert_versioned("tender_summaries", [summary(t, 5, f"v5 {t}") for t in range(1, 1001)])
    finally:
        sink.close()
    assert not inner.landed
    assert result == UpsertResult(upserted=996, modified=3, stale=1), result
    got = {d["tender_id"]: (d["summary"], d["source_seq"]) for d in stored(db, "tender_summaries")}
    assert got == {t: ("newer", 9) if t == newer else (f"v5 {t}", 5) for t in range(1, 1001)}


def test_a_callers_out_of_date_read_of_the_stored_versions_still_ends_right(
    make: Make, db: Database[dict[str, Any]], settings: Settings
) -> None:
    """The readiness agent hands the sink the versions it read before scoring (sparing the sink's own read), and by
    the write other writers may have moved on: keys it saw absent are stored (older: overwritten; newer: kept), a
    key it saw older is newer now (kept), one it saw stored is gone (written again). The guards and the unique
    index decide, not the read."""
    sink = make(settings.mongo_url.get_secret_value(), db.name, retry_policy=FAST_RETRY)
    read = [{"team_id": 1, "tender_id": t, "tender_seq": 1, "team_seq": 1} for t in (3, 4, 5)]  # 1, 2, 6 absent
    now = [(1, 1, 1, 0), (2, 9, 9, 99), (3, 1, 1, 0), (4, 9, 9, 99)]  # tender 5 was deleted meanwhile
    db[PAIRS].insert_many(
        [{"team_id": 1, "tender_id": t, "tender_seq": a, "team_seq": b, "score": v} for t, a, b, v in now]
    )
    try:
        result = sink.upsert_versioned(PAIRS, [score(1, t, 5, 5, t) for t in range(1, 7)], stored=read)
    finally:
        sink.close()
    assert result == UpsertResult(upserted=2, modified=2, stale=2), result
    got = {d["tender_id"]: (d["tender_seq"], d["team_seq"], d["score"]) for d in stored(db, PAIRS)}
    assert got == {1: (5, 5, 1), 2: (9, 9, 99), 3: (5, 5, 3), 4: (9, 9, 99), 5: (5, 5, 5), 6: (5, 5, 6)}


def test_delete_older_removes_one_teams_older_generations_only(
    make: Make, db: Database[dict[str, Any]], settings: Settings
) -> None:
    """A profile change writes a team's next generation of scores, then deletes the older ones: only that team's,
    only below the given team_seq; a retry deletes what is left (none), and bad filters are refused before any
    request."""
    rows = [(1, t, seq) for t in (1, 2, 3) for seq in (4, 7)] + [(2, 1, 4), (1, 4, 9)]
    db["readiness_scores"].insert_many([{"team_id": a, "tender_id": t, "team_seq": q} for a, t, q in rows])
    sink = make(settings.mongo_url.get_secret_value(), db.name, retry_policy=FAST_RETRY)
    try:
        assert sink.delete_older("readiness_scores", {"team_id": 1}, "team_seq", 7) == 3
        assert sink.delete_older("readiness_scores", {"team_id": 1}, "team_seq", 7) == 0
        current = sink.find_by_ids("readiness_scores", "team_id", [1], ["tender_id"], where={"team_seq": 7})
        assert sorted(d["tender_id"] for d in current) == [1, 2, 3]
        for where, field, below in (
            ({"team_id": {"$gt": 0}}, "team_seq", 7),
            ({"team_id": "1"}, "team_seq", 7),
            ({}, "team_seq", 7),
            ({"team_id": 1}, "team_seq", -1),
            ({"team_id": 1}, "team_seq", "7"),
            ({"team_id": 1, "team_seq": 3}, "team_seq", 7),
            ({"team_id": 1}, "$where", 7),
        ):
            with pytest.raises(InvalidInputError):
                sink.delete_older("readiness_scores", where, field, below)
        with pytest.raises(InvalidInputError):
            sink.find_by_ids("readiness_scores", "team_id", [1], ["tender_id"], where={"team_seq": {"$ne": 1}})
    finally:
        sink.close()
    left = sorted((d["team_id"], d["tender_id"], d["team_seq"]) for d in db["readiness_scores"].find({}, {"_id": 0}))
    assert left == [(1, 1, 7), (1, 2, 7), (1, 3, 7), (1, 4, 9), (2, 1, 4)]


def test_mongo_unreachable_raises_transient_after_the_retries(make: Make, caplog: pytest.LogCaptureFixture) -> None:
    sink = make(f"mongodb://127.0.0.1:{closed_port()}/", "none", retry_policy=FAST_RETRY, timeout_s=0.2)
    with caplog.at_level(logging.WARNING, logger="sinks.retry"):
        with pytest.raises(TransientSinkError, match="after 3 attempts"):
            sink.upsert_versioned("tender_summaries", [summary(1, 1, "x")])
        with pytest.raises(TransientSinkError, match="after 3 attempts"):
            sink.insert_logs("user_activity_logs", [{"_id": 1}])
    sink.close()
    assert [r.getMessage().split(" failed")[0] for r in caplog.records if r.name == "sinks.retry"] == [
        "upsert_versioned tender_summaries (1 docs)",
        "upsert_versioned tender_summaries (1 docs)",
        "insert_logs user_activity_logs (1 docs)",
        "insert_logs user_activity_logs (1 docs)",
    ]


# -- Redis -----------------------------------------------------------------------------------------------------


@pytest.fixture
def prefix(uid: str, redis_client: redis.Redis) -> Iterator[str]:
    name = f"test:{uid}:"
    yield name
    leftovers = list(redis_client.scan_iter(match=f"*{name}*", count=1000))
    if leftovers:
        redis_client.delete(*leftovers)


@asynccontextmanager
async def redis_sink(settings: Settings, prefix: str) -> AsyncIterator[RedisSink]:
    sink = RedisSink(settings.redis_url.get_secret_value(), key_prefix=prefix, retry_policy=FAST_RETRY)
    try:
        yield sink
    finally:
        await sink.aclose()


@pytest.mark.asyncio
async def test_replace_zset_swaps_the_whole_set_atomically_with_a_ttl(
    settings: Settings, prefix: str, redis_client: redis.Redis
) -> None:
    key = TEAM_TOP_TENDERS.key(id=42)
    big = {str(i): float(i) for i in range(1, 51)}
    small = {"7": 0.9, "8": 0.5, "9": 0.1}
    seen: list[int] = []
    reader = aioredis.Redis.from_url(settings.redis_url.get_secret_value())
    stop = asyncio.Event()

    async def watch() -> None:
        while not stop.is_set():
            seen.append(int(await reader.zcard(prefix + key)))

    async with redis_sink(settings, prefix) as sink:
        watcher = asyncio.create_task(watch())
        for _ in range(20):
            await sink.replace_zset(key, big, TEAM_TOP_TENDERS.ttl_s)
            await sink.replace_zset(key, small, TEAM_TOP_TENDERS.ttl_s)
        stop.set()
        await watcher
    await reader.aclose()
    assert redis_client.zrange(prefix + key, 0, -1, withscores=True) == [(b"9", 0.1), (b"8", 0.5), (b"7", 0.9)]
    assert 0 < int(redis_client.ttl(prefix + key)) <= TEAM_TOP_TENDERS.ttl_s
    assert len(seen) > 10
    # 0 only before the first write landed; after that a reader sees a whole set, never an empty or partial one.
    after_first = seen[next(i for i, n in enumerate(seen) if n) :]
    assert set(after_first) <= {3, 50}
    assert list(redis_client.scan_iter(match=f"*{prefix}*tmp*")) == []


@pytest.mark.asyncio
async def test_replace_hash_swaps_all_fields_with_a_ttl_and_empty_deletes(
    settings: Settings, prefix: str, redis_client: redis.Redis
) -> None:
    key = TENDER_METADATA.key(id=9)
    async with redis_sink(settings, prefix) as sink:
        await sink.replace_hash(key, {"title": "Water meters", "buyer": "City", "status": "open", "n": 3}, 600)
        await sink.replace_hash(key, {"title": "Water meters (amended)", "status": "closed"}, 600)
        assert redis_client.hgetall(prefix + key) == {b"title": b"Water meters (amended)", b"status": b"closed"}
        assert 0 < int(redis_client.ttl(prefix + key)) <= 600
        await sink.replace_hash(key, {}, 600)
        assert redis_client.exists(prefix + key) == 0
        await sink.replace_zset(SPEND_BY_BUYER.key(), {"ZAR|City": 12.5}, SPEND_BY_BUYER.ttl_s)
        assert redis_client.zscore(prefix + SPEND_BY_BUYER.key(), "ZAR|City") == 12.5
        assert 0 < int(redis_client.ttl(prefix + SPEND_BY_BUYER.key())) <= SPEND_BY_BUYER.ttl_s


@pytest.mark.asyncio
async def test_cas_hash_refuses_older_and_equal_versions(
    settings: Settings, prefix: str, redis_client: redis.Redis
) -> None:
    key = TENDER_METADATA.key(id=3)
    full = prefix + key
    async with redis_sink(settings, prefix) as sink:
        assert await sink.cas_hash(key, {"title": "v5", "buyer": "A"}, "source_seq", 5, 600) is True
        assert await sink.cas_hash(key, {"title": "v5 replay"}, "source_seq", 5, 600) is False
        assert await sink.cas_hash(key, {"title": "v4"}, "source_seq", 4, 600) is False
        assert redis_client.hgetall(full) == {b"title": b"v5", b"buyer": b"A", b"source_seq": b"5"}
        redis_client.persist(full)
        assert await sink.cas_hash(key, {"title": "v6"}, "source_seq", 6, 600) is True
        # Replaced, not merged: the newer version dropped "buyer".
        assert redis_client.hgetall(full) == {b"title": b"v6", b"source_seq": b"6"}
        assert 0 < int(redis_client.ttl(full)) <= 600
        # Beyond 2^53 a double cannot tell these apart; source_seq (GTID << 24 | row) gets there.
        big = 2**60
        assert await sink.cas_hash(key, {"title": "big"}, "source_seq", big, 600) is True
        assert await sink.cas_hash(key, {"title": "big+1"}, "source_seq", big + 1, 600) is True
        assert await sink.cas_hash(key, {"title": "big"}, "source_seq", big, 600) is False
        assert await sink.cas_hash(key, {"title": "small"}, "source_seq", 10**17, 600) is False
        assert redis_client.hget(full, "title") == b"big+1"


@pytest.mark.asyncio
async def test_cas_hash_over_a_non_numeric_stored_version_is_permanent(
    settings: Settings, prefix: str, redis_client: redis.Redis
) -> None:
    key = TENDER_METADATA.key(id=4)
    redis_client.hset(prefix + key, mapping={"source_seq": "abc"})
    async with redis_sink(settings, prefix) as sink:
        with pytest.raises(PermanentSinkError, match="not a non-negative integer"):
            await sink.cas_hash(key, {"title": "x"}, "source_seq", 1, 600)


@pytest.mark.asyncio
async def test_redis_unreachable_raises_transient_after_the_retries(caplog: pytest.LogCaptureFixture) -> None:
    sink = RedisSink(f"redis://127.0.0.1:{closed_port()}/0", retry_policy=FAST_RETRY, timeout_s=0.2)
    with caplog.at_level(logging.WARNING, logger="sinks.retry"):
        with pytest.raises(TransientSinkError, match="after 3 attempts"):
            await sink.replace_hash(TENDER_METADATA.key(id=1), {"a": "b"}, 60)
        with pytest.raises(TransientSinkError, match="after 3 attempts"):
            await sink.cas_hash(TENDER_METADATA.key(id=1), {"a": "b"}, "v", 1, 60)
    await sink.aclose()
    assert len([r for r in caplog.records if r.name == "sinks.retry"]) == 4
