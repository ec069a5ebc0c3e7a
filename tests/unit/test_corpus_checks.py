"""The corpus runner's judgement: verdicts per send, and the harmful-write scan of documents and Redis keys."""

from __future__ import annotations

from schema.redis_keys import READINESS_TENDERS, SPEND_BY_BUYER, TENDER_METADATA
from tenderhub.corpus.cases import Stored, dlq, refused, stored
from tenderhub.corpus.checks import Letter, Observed, harmful_documents, harmful_keys, operator_keys, verdict

P = "corpus:abc:"


def test_dead_letter_expectation_needs_a_letter_and_every_letter_to_carry_the_reason() -> None:
    assert verdict(dlq("team_id"), Observed()) == "no dead letter"
    seen = Observed(letters=[Letter("worker", "spend", "payload breaks: team_id"), Letter("relay", None, "x")])
    assert "without 'team_id'" in (verdict(dlq("team_id"), seen) or "")
    assert verdict(dlq("team_id"), Observed(letters=[Letter("relay", None, "payload breaks: team_id")])) is None


def test_stored_expectation_fails_on_any_dead_letter_or_a_missing_document() -> None:
    expect = stored(Stored.ACTIVITY_LOGGED)
    assert verdict(expect, Observed(stored=True)) is None
    assert verdict(expect, Observed(stored=False, stored_note="no log entry 5")) == "not stored: no log entry 5"
    assert "dead-lettered" in (verdict(expect, Observed(stored=True, letters=[Letter("relay", None, "x")])) or "")


def test_refusal_expectation_checks_the_refusal_and_its_reason() -> None:
    assert verdict(refused("CONSTRAINT"), Observed(refused="MySQL: CONSTRAINT payload failed")) is None
    assert verdict(refused("CONSTRAINT"), Observed(letters=[Letter("relay", None, "x")])) is not None
    assert verdict(refused("CONSTRAINT"), Observed(refused="timeout")) is not None
    assert "refused" in (verdict(dlq("x"), Observed(refused="MySQL: gone")) or "")


def test_operator_keys_are_found_at_any_depth_in_dicts_and_lists() -> None:
    doc = {"a": [{"b": {"$where": 1}}], "ok": {"x.y": 1}, "n\x00": 2}
    found = operator_keys(doc)
    assert len(found) == 2 and any("$where" in p for p in found) and any("\\x00" in p for p in found)
    assert operator_keys({"deep": [[[[{"fine": "$not a key"}]]]]}) == []


def test_documents_with_a_forbidden_id_or_in_an_undeclared_collection_are_harmful() -> None:
    docs = [{"_id": 1, "tender_id": 42}, {"_id": 2, "user_id": 7}]
    assert harmful_documents("tender_summaries", docs, forbidden={99}) == []
    problems = harmful_documents("tender_summaries", docs, forbidden={42})
    assert problems == ["tender_summaries/1: tender_id 42 is a dead-lettered case's id"]
    assert harmful_documents("system.js", [], forbidden=set()) == ["MongoDB collection 'system.js' is not declared"]


def test_redis_keys_outside_the_catalogue_and_bad_hash_fields_are_harmful() -> None:
    good = [P + TENDER_METADATA.key(id=5), P + SPEND_BY_BUYER.key(), P + READINESS_TENDERS.key()]
    fields = {P + READINESS_TENDERS.key(): ["5", "__gen"]}
    assert harmful_keys(P, good, fields, forbidden={6}) == []
    bad = [P + "tender:1:*:metadata", P + "tender:1 2:metadata", "other:key"]
    problems = harmful_keys(P, bad, {}, forbidden=set())
    assert len(problems) == 3 and "lacks the namespace prefix" in problems[2]
    fields = {P + READINESS_TENDERS.key(): ["6", "1:*", "007"]}
    problems = harmful_keys(P, [P + READINESS_TENDERS.key()], fields, forbidden={6})
    assert len(problems) == 3 and "dead-lettered" in problems[0]
