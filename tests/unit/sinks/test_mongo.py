"""MongoSink's pure parts: id and document validation, collapsing a batch per key, error and reply classification."""

from __future__ import annotations

from typing import Any

import pytest
from bson.errors import InvalidDocument
from pymongo.errors import AutoReconnect, NetworkTimeout, OperationFailure, ServerSelectionTimeoutError

from sinks.errors import InvalidInputError, PermanentSinkError, TransientSinkError
from sinks.mongo import (
    MongoSink,
    VersionedDoc,
    check_no_operators,
    classify_mongo_error,
    collapse_per_key,
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
