"""MongoSink's pure parts: id and document validation, collapsing a batch per key, error and reply classification."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import random
from collections.abc import Sequence
from types import MappingProxyType
from typing import Any

import pytest
from bson.errors import InvalidDocument
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    NetworkTimeout,
    OperationFailure,
    ServerSelectionTimeoutError,
)

from sinks.errors import InvalidInputError, PermanentSinkError, TransientSinkError
from sinks.mongo import (
    DUPLICATE_KEY,
    MongoSink,
    VersionedDoc,
    _check_in_full,
    _plainly_clean,
    check_no_operators,
    classify_mongo_error,
    collapse_per_key,
    insert_in_chunks,
    insert_spans,
    update_reply_is_exact,
    validate_id,
    validate_versioned,
)


def doc(tender_id: Any = 1, seq: int = 1, text: str = "x", **fields: Any) -> VersionedDoc:
    return VersionedDoc({"tender_id": tender_id}, {"summary": text, **fields}, {"source_seq": seq}, event_id=seq + 1)


def score(team: int, tender: int, tender_seq: int, team_seq: int, value: int = 0) -> VersionedDoc:
    return VersionedDoc(
        {"team_id": team, "tender_id": tender},
        {"score": value},
        {"tender_seq": tender_seq, "team_seq": team_seq},
        event_id=100 + value,
    )


# A sink pointed nowhere: validation must refuse bad input before any client exists.
NOWHERE = MongoSink("mongodb://127.0.0.1:9/", "unused", timeout_s=0.05)


def test_collapse_keeps_the_highest_source_seq_whatever_the_order() -> None:
    batch = [doc(1, 5, "b"), doc(1, 9, "c"), doc(2, 1, "z"), doc(1, 3, "a")]
    winners, dropped = collapse_per_key(batch, ("tender_id",))
    assert sorted((i, d.fields["summary"]) for i, d in winners) == [(1, "c"), (2, "z")]
    assert sorted(i for i, _ in dropped) == [0, 3]


def test_collapse_lets_the_later_of_equal_versions_win() -> None:
    winners, dropped = collapse_per_key([doc(1, 5, "first"), doc(1, 5, "replay")], ("tender_id",))
    assert [(i, d.fields["summary"]) for i, d in winners] == [(1, "replay")]
    assert [i for i, _ in dropped] == [0]


def test_collapse_with_two_versions_keeps_the_dominating_document() -> None:
    batch = [score(1, 5, 10, 7, 1), score(1, 5, 11, 7, 2), score(1, 5, 11, 8, 3)]
    winners, dropped = collapse_per_key(batch, ("team_id", "tender_id"))
    assert [(i, d.fields["score"]) for i, d in winners] == [(2, 3)]
    assert sorted(i for i, _ in dropped) == [0, 1]


def test_collapse_drops_a_later_document_that_goes_back_in_one_version() -> None:
    # As the guard would: (11, 6) cannot replace (10, 7) since team_seq goes backwards.
    batch = [score(1, 5, 10, 7, 1), score(1, 5, 11, 6, 2), score(2, 5, 1, 1, 3)]
    winners, dropped = collapse_per_key(batch, ("team_id", "tender_id"))
    assert sorted((i, d.fields["score"]) for i, d in winners) == [(0, 1), (2, 3)]
    assert [i for i, _ in dropped] == [1]


@pytest.mark.parametrize("good", [1, 5, 2**63 - 1])
def test_positive_int_ids_are_accepted(good: int) -> None:
    assert validate_id("tender_id", good) == good


@pytest.mark.parametrize("bad", [0, -3, True, False, "5", 5.0, None, {"$gt": 0}, [1], 2**63])
def test_ids_that_are_not_positive_ints_are_refused(bad: object) -> None:
    with pytest.raises(InvalidInputError):
        validate_id("tender_id", bad)


@pytest.mark.parametrize(
    "value",
    [{"$where": "1"}, {"ok": {"$gt": 1}}, [{"a": 1}, {"$set": {"x": 1}}], {"a": [[{"$ne": None}]]}, {1: "int key"}],
)
def test_operator_keys_are_refused_at_any_depth(value: object) -> None:
    with pytest.raises(InvalidInputError):
        check_no_operators(value, "fields")


@pytest.mark.parametrize("value", ["a\x00b", {"q": "\x00"}, [{"deep": ["x", "nul\x00"]}], {"k\x00": 1}])
def test_nul_characters_are_refused_in_any_string_or_key(value: object) -> None:
    # FerretDB's PostgreSQL storage can never hold them: a write would fail on every retry (the worker would stall).
    with pytest.raises(InvalidInputError, match=r"NUL|not allowed"):
        check_no_operators(value, "fields")


def test_dollar_in_values_and_inner_names_is_fine() -> None:
    check_no_operators({"price": "$100", "nested": {"a$b": ["$x"]}}, "fields")


def random_value(rng: random.Random, depth: int = 0) -> object:
    """Nested values of every kind check_no_operators meets: plain and other mappings, lists, tuples, strings with
    and without NUL, `$` and non-str keys, scalars and objects the fast path leaves to the full check."""
    roll = rng.random()
    if depth < 4 and roll < 0.35:
        keys = [
            rng.choice(["a", "b$", "$set", "k\x00", "", "x.y", 7, ("t",), "ok", "n"]) for _ in range(rng.randint(0, 4))
        ]
        items = {k: random_value(rng, depth + 1) for k in keys}
        return items if rng.random() < 0.8 else MappingProxyType(items)
    if depth < 4 and roll < 0.5:
        inner = [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
        return inner if rng.random() < 0.7 else tuple(inner)
    return rng.choice(["x", "nul\x00", "$100", 1, 2.5, True, None, dt.datetime(2026, 1, 1), b"raw", {1, 2}, object()])


def test_the_fast_path_refuses_exactly_what_the_full_check_refuses() -> None:
    rng = random.Random(20261206)
    refused = 0
    for _ in range(20_000):
        value = random_value(rng)
        try:
            _check_in_full(value, "v")
            full_ok = True
        except InvalidInputError:
            full_ok, refused = False, refused + 1
        if _plainly_clean(value):
            assert full_ok, value
        try:
            check_no_operators(value, "v")
            assert full_ok, value
        except InvalidInputError:
            assert not full_ok, value
    assert 2_000 < refused < 18_000  # both outcomes are well covered


def test_validate_versioned_returns_the_key_and_version_fields() -> None:
    assert validate_versioned([score(1, 2, 3, 4), score(2, 2, 1, 1)]) == (
        ("team_id", "tender_id"),
        ("team_seq", "tender_seq"),
    )


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (VersionedDoc({"tender_id": {"$ne": None}}, {}, {"source_seq": 1}, 1), "positive int"),
        (VersionedDoc({"tender_id": "7"}, {}, {"source_seq": 1}, 1), "positive int"),
        (VersionedDoc({"tender_id": 7}, {"summary": {"$set": 1}}, {"source_seq": 1}, 1), "operator injection"),
        (VersionedDoc({"tender_id": 7}, {"$set": 1}, {"source_seq": 1}, 1), "identifier"),
        (VersionedDoc({"tender_id": 7}, {"a.b": 1}, {"source_seq": 1}, 1), "identifier"),
        (VersionedDoc({"tender_id": 7}, {"tender_id": 8}, {"source_seq": 1}, 1), "may not set"),
        (VersionedDoc({"tender_id": 7}, {"source_seq": 8}, {"source_seq": 1}, 1), "may not set"),
        (VersionedDoc({"tender_id": 7}, {"_id": 8}, {"source_seq": 1}, 1), "may not set"),
        (VersionedDoc({"tender_id": 7}, {"event_id": 8}, {"source_seq": 1}, 1), "may not set"),
        (VersionedDoc({"tender_id": 7}, {}, {"source_seq": -1}, 1), "non-negative"),
        (VersionedDoc({"tender_id": 7}, {}, {"source_seq": True}, 1), "non-negative"),
        (VersionedDoc({"tender_id": 7}, {}, {}, 1), "must not be empty"),
        (VersionedDoc({"tender_id": 7}, {}, {"source_seq": 1}, 0), "event_id"),
        (VersionedDoc({"tender_id": 7}, {}, {"tender_seq": 1}, 1), "mixed batch"),
        (VersionedDoc({"team_id": 7}, {}, {"source_seq": 1}, 1), "mixed batch"),
    ],
)
def test_bad_documents_are_refused_with_their_index(bad: VersionedDoc, reason: str) -> None:
    with pytest.raises(InvalidInputError, match=reason) as info:
        validate_versioned([doc(1, 1), bad])
    assert info.value.index == 1


def test_sink_refuses_bad_batches_before_connecting() -> None:
    with pytest.raises(InvalidInputError) as info:
        NOWHERE.upsert_versioned("tender_summaries", [doc(1, 1), doc(True, 2)])
    assert info.value.index == 1
    with pytest.raises(InvalidInputError) as info:
        NOWHERE.insert_logs("user_activity_logs", [{"_id": 1}, {"_id": 2, "q": {"$gt": ""}}])
    assert (info.value.index, info.value.key) == (1, {"_id": 2})
    for bad_log in ({"_id": "3"}, {"user_id": 1}, {"_id": 4, "a.b": 1}, {"_id": 5, "$inc": {"n": 1}}):
        with pytest.raises(InvalidInputError):
            NOWHERE.insert_logs("user_activity_logs", [bad_log])
    assert NOWHERE.upsert_versioned("tender_summaries", []).stale == 0
    assert NOWHERE.insert_logs("user_activity_logs", []) == 0


@pytest.mark.parametrize(
    "exc",
    [
        ServerSelectionTimeoutError("no servers"),
        AutoReconnect("reset"),
        NetworkTimeout("timed out"),
        OperationFailure("stepped down", code=189),
        OperationFailure("retry me", code=1, details={"errorLabels": ["RetryableWriteError"]}),
    ],
)
def test_outages_are_transient(exc: Exception) -> None:
    assert isinstance(classify_mongo_error(exc), TransientSinkError)


@pytest.mark.parametrize(
    "exc", [OperationFailure("bad value", code=2), InvalidDocument("cannot encode"), OverflowError("8-byte ints")]
)
def test_bad_data_is_permanent(exc: Exception) -> None:
    assert isinstance(classify_mongo_error(exc), PermanentSinkError)


@pytest.mark.parametrize("exc", [OperationFailure("auth failed", code=18), KeyError("bug"), ValueError("config")])
def test_everything_else_is_not_the_sinks_to_handle(exc: Exception) -> None:
    assert classify_mongo_error(exc) is None


def test_update_replies_are_trusted_only_when_they_account_for_every_op() -> None:
    mongodb = {"n": 3, "nModified": 1, "writeErrors": [{"index": 3, "code": 11000}], "ok": 1.0}
    assert update_reply_is_exact(mongodb, 4)
    assert update_reply_is_exact({"n": 4, "nModified": 4, "ok": 1.0}, 4)
    # Exactly what FerretDB 1.24.2 answered when the third of four ops hit E11000: no counts, index 0.
    ferretdb = {"ok": 1.0, "writeErrors": [{"code": 11000, "errmsg": "E11000 duplicate key error", "index": 0}]}
    assert not update_reply_is_exact(ferretdb, 4)
    assert not update_reply_is_exact({"n": 1, "nModified": 0, "writeErrors": [{"index": 1}]}, 4)


def test_unencodable_or_oversized_documents_are_refused_before_connecting() -> None:
    huge = "x" * (16 * 1024 * 1024)
    for bad in (doc(2, 2, "ok", tags={"a", "b"}), doc(2, 2, "ok", big=2**64), doc(2, 2, huge)):
        with pytest.raises(InvalidInputError) as info:
            NOWHERE.upsert_versioned("tender_summaries", [doc(1, 1), bad])
        assert (info.value.index, info.value.key) == (1, {"tender_id": 2})
    for bad_log in ({"_id": 1, "at": object()}, {"_id": 1, "text": huge}):
        with pytest.raises(InvalidInputError) as info:
            NOWHERE.insert_logs("user_activity_logs", [bad_log])
        assert info.value.key == {"_id": 1}


class ScriptedServer:
    """Answers a sink's sans-IO requests from a dict of stored documents, recording each request (no network)."""

    def __init__(self, stored: list[dict[str, Any]]) -> None:
        self.stored = stored
        self.requests: list[Any] = []

    def drive(self, steps: Any) -> Any:
        result: Any = None
        while True:
            try:
                request = steps.send(result)
            except StopIteration as done:
                return done.value
            self.requests.append(request)
            result = self.answer(request)

    def answer(self, request: Any) -> Any:
        kind = type(request).__name__
        if kind == "_Find":
            return [dict(d) for d in self.stored if all(self._matches(d.get(k), v) for k, v in request.query.items())]
        if kind == "_Command":
            assert request.command == {"buildInfo": 1}, request.command
            return {"ferretdbVersion": "1.24.2"}
        if kind == "_Commands":
            return [{"ok": 1.0, "n": len(c["updates"]), "nModified": len(c["updates"])} for c in request.commands]
        if kind == "_InsertMany":
            self.stored.extend(request.docs)
            return None
        raise AssertionError(f"unexpected request {request!r}")

    @staticmethod
    def _matches(value: Any, condition: Any) -> bool:
        return value in condition["$in"] if isinstance(condition, dict) else value == condition


def test_one_teams_rescore_reads_with_an_equality_and_sends_its_updates_together() -> None:
    """A company change rescores one team against many tenders: the stored versions are read with an equality on
    the team (FerretDB hands an equality to its storage's index; an $in it filters after reading the collection),
    and the guarded updates go out as one request of commands the async driver runs at once, not one at a time."""
    stored = [{"team_id": 7, "tender_id": t, "tender_seq": 1, "team_seq": 1} for t in range(1, 31)]
    server = ScriptedServer(stored)
    sink = MongoSink("mongodb://127.0.0.1:9/", "unused")
    docs = [score(7, t, 1, 2, value=t) for t in range(1, 31)]
    result = server.drive(sink._upsert_call("readiness_scores", docs).steps())
    assert result.modified == 30 and result.upserted == 0, result
    finds = [r for r in server.requests if type(r).__name__ == "_Find"]
    assert len(finds) == 1
    assert finds[0].query == {"team_id": 7, "tender_id": {"$in": list(range(1, 31))}}
    batches = [r for r in server.requests if type(r).__name__ == "_Commands"]
    assert len(batches) == 1 and len(batches[0].commands) == 30  # FerretDB: one op per command
    assert [c["updates"][0]["q"]["tender_id"] for c in batches[0].commands] == list(range(1, 31))


def test_one_tender_for_many_teams_reads_with_an_equality_on_the_tender() -> None:
    stored = [{"team_id": t, "tender_id": 5, "tender_seq": 1, "team_seq": 1} for t in range(1, 11)]
    server = ScriptedServer(stored)
    sink = MongoSink("mongodb://127.0.0.1:9/", "unused")
    result = server.drive(sink._upsert_call("readiness_scores", [score(t, 5, 2, 1) for t in range(1, 13)]).steps())
    finds = [r for r in server.requests if type(r).__name__ == "_Find"]
    assert finds[0].query == {"team_id": {"$in": list(range(1, 13))}, "tender_id": 5}
    assert (result.modified, result.upserted) == (10, 2), result


class ChunkedServer:
    """Takes insert_many calls like pymongo's asyncio collection: records each chunk, how many were in flight at once,
    and answers a document whose `_id` is in `stored` with a duplicate-key error (code 11000), or raises `fail_with`
    for a chunk holding `fail_id`."""

    def __init__(self, stored: set[int], fail_id: int | None = None, fail_with: Exception | None = None) -> None:
        self.stored = set(stored)
        self.chunks: list[list[int]] = []
        self.in_flight = self.most_in_flight = 0
        self.fail_id, self.fail_with = fail_id, fail_with

    async def insert(self, docs: Sequence[dict[str, Any]]) -> None:
        ids = [d["_id"] for d in docs]
        self.chunks.append(ids)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.01)
            if self.fail_with is not None and self.fail_id in ids:
                raise self.fail_with
            errors = [
                {"index": i, "code": DUPLICATE_KEY, "errmsg": f"dup {_id}"}
                for i, _id in enumerate(ids)
                if _id in self.stored
            ]
            self.stored.update(ids)
            if errors:
                raise BulkWriteError({"nInserted": len(ids) - len(errors), "writeErrors": errors})
        finally:
            self.in_flight -= 1


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_large_insert_goes_out_as_chunks_in_flight_together() -> None:
    """FerretDB writes an insert's documents one at a time to its storage: a batch of log documents is sent as a few
    unordered inserts at once, each a contiguous run of the batch."""
    server = ChunkedServer(set())
    docs = [{"_id": n} for n in range(1, 1001)]
    run(insert_in_chunks(server.insert, docs))
    assert len(server.chunks) == 4 and server.most_in_flight == 4
    assert [i for chunk in server.chunks for i in chunk] == list(range(1, 1001))
    small = ChunkedServer(set())
    run(insert_in_chunks(small.insert, docs[:200]))
    assert small.chunks == [list(range(1, 201))]  # a small batch stays one insert


def test_duplicates_in_several_chunks_are_reported_once_with_their_index_in_the_whole_batch() -> None:
    server = ChunkedServer({7, 260, 999})
    docs = [{"_id": n} for n in range(1, 1001)]
    with pytest.raises(BulkWriteError) as info:
        run(insert_in_chunks(server.insert, docs))
    details = info.value.details
    assert details["nInserted"] == 997
    assert sorted((e["index"], e["code"]) for e in details["writeErrors"]) == [(6, 11000), (259, 11000), (998, 11000)]
    assert all(docs[e["index"]]["_id"] == int(e["errmsg"].split()[1]) for e in details["writeErrors"])


@pytest.mark.parametrize("failure", [AutoReconnect("connection reset"), NetworkTimeout("timed out")])
def test_a_chunk_that_fails_raises_its_error_only_once_every_chunk_has_ended(failure: Exception) -> None:
    """The retry re-sends the whole batch: no chunk may still be writing when it does."""
    server = ChunkedServer({3}, fail_id=600, fail_with=failure)
    with pytest.raises(type(failure)):
        run(insert_in_chunks(server.insert, [{"_id": n} for n in range(1, 1001)]))
    assert server.in_flight == 0 and len(server.chunks) == 4
    assert server.stored == set(range(1, 1001)) - set(range(501, 751))  # the other chunks were written


@pytest.mark.parametrize("count", [1, 249, 250, 499, 500, 999, 1000, 1001, 5000, 12_345])
def test_insert_spans_cover_the_batch_once_in_order(count: int) -> None:
    spans = insert_spans(count)
    assert spans[0][0] == 0 and spans[-1][1] == count
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    assert 1 <= len(spans) <= 4 and (len(spans) == 1 or min(end - start for start, end in spans) >= 200)


class MongoDBServer(ScriptedServer):
    def answer(self, request: Any) -> Any:
        if type(request).__name__ == "_Command":
            return {"version": "7.0.12"}
        return super().answer(request)


@pytest.mark.parametrize("tenders", [600, 5001])
def test_a_wide_rescore_on_ferretdb_reads_the_teams_versions_with_the_equality_alone(tenders: int) -> None:
    """FerretDB answers `{team_id: 7, tender_id: {$in: [...]}}` by reading every document of team 7 (the equality is
    its storage's index lookup) and then matching each against the whole `$in` list in Go: for a wide batch the `$in`
    only costs. The pre-read is then the equality alone, in one query whatever the batch's size, filtered here."""
    stored = [{"team_id": 7, "tender_id": t, "tender_seq": 1, "team_seq": 1} for t in range(1, 8001)]
    docs = [score(7, t, 1, 2, value=t % 90) for t in range(1, tenders + 1)]
    server = ScriptedServer(stored)
    result = server.drive(MongoSink("mongodb://127.0.0.1:9/", "unused")._upsert_call("readiness_scores", docs).steps())
    assert result.modified == tenders and result.upserted == 0, result
    finds = [r for r in server.requests if type(r).__name__ == "_Find"]
    assert [f.query for f in finds] == [{"team_id": 7}]
    # On MongoDB the unique index answers the `$in`: it stays (in chunks of 5,000 keys).
    mongodb = MongoDBServer([dict(d) for d in stored])
    result = mongodb.drive(MongoSink("mongodb://127.0.0.1:9/", "unused")._upsert_call("readiness_scores", docs).steps())
    assert result.modified == tenders, result
    finds = [r for r in mongodb.requests if type(r).__name__ == "_Find"]
    assert all(set(f.query) == {"team_id", "tender_id"} for f in finds), [f.query for f in finds]


def test_a_callers_read_of_the_stored_versions_spares_the_sinks_own() -> None:
    """The readiness agent reads the versions of every score its batch may rewrite (to skip work already done); handed
    to the sink, that read answers its pre-read (FerretDB: ~1 s for one team's 5,000 scores, read twice before)."""
    stored = [{"team_id": 7, "tender_id": t, "tender_seq": 1, "team_seq": 1} for t in range(1, 31)]
    server = ScriptedServer([dict(d) for d in stored])
    docs = [score(7, t, 1, 2, value=t) for t in range(1, 41)]
    sink = MongoSink("mongodb://127.0.0.1:9/", "unused")
    result = server.drive(sink._upsert_call("readiness_scores", docs, stored=stored).steps())
    assert (result.modified, result.upserted) == (30, 10), result
    assert not [r for r in server.requests if type(r).__name__ == "_Find"]
    inserted = [r for r in server.requests if type(r).__name__ == "_InsertMany"]
    assert [d["tender_id"] for r in inserted for d in r.docs] == list(range(31, 41))


def test_the_callers_read_answers_the_first_attempt_only() -> None:
    """A retry after a failed attempt reads the stored versions again: the failed attempt may have written some."""
    stored = [{"team_id": 7, "tender_id": t, "tender_seq": 1, "team_seq": 1} for t in range(1, 4)]
    call = MongoSink("mongodb://127.0.0.1:9/", "unused")._upsert_call(
        "readiness_scores", [score(7, t, 1, 2) for t in range(1, 4)], stored=stored
    )
    first, retry = ScriptedServer([dict(d) for d in stored]), ScriptedServer([dict(d) for d in stored])
    first.drive(call.steps())
    retry.drive(call.steps())
    assert [type(r).__name__ for r in first.requests].count("_Find") == 0
    assert [type(r).__name__ for r in retry.requests].count("_Find") == 1


def test_a_callers_read_is_keyed_by_the_batchs_key_fields_and_checked_like_the_sinks() -> None:
    """The caller's documents go through the same checks as the sink's own read: a stored version that is not an int
    is refused for its key, whatever else the caller's documents carry."""
    stored = [{"tender_id": 1, "team_id": 7, "tender_seq": "1", "team_seq": 1, "rules_version": 9}]
    server = ScriptedServer([dict(d) for d in stored])
    call = MongoSink("mongodb://127.0.0.1:9/", "unused")._upsert_call(
        "readiness_scores", [score(7, 1, 1, 2)], stored=stored
    )
    with pytest.raises(PermanentSinkError, match="not an int"):
        server.drive(call.steps())
