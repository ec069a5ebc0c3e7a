"""Redis keys are built only from validated ids; every family has one owner and the TTL of the design."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from schema.redis_keys import (
    CATALOGUE,
    SEARCH_BY_TENDER,
    SEARCH_EPOCH,
    SEARCH_RESULTS,
    SPEND_BY_BUYER,
    SPEND_BY_BUYER_WINDOW,
    SPEND_TENDER_STATE,
    SPEND_TOTALS,
    SPEND_WINDOW_TOTALS,
    SUMMARY_LOCK,
    TEAM_TOP_INPUTS,
    TEAM_TOP_TENDERS,
    TENDER_METADATA,
    InvalidKeyError,
    escape_glob,
    family_of,
    hash_tag,
)


def test_keys_follow_the_catalogue_names() -> None:
    assert TENDER_METADATA.key(id=42) == "tender:42:metadata"
    assert TEAM_TOP_TENDERS.key(id="7") == "team:{7}:top_tenders"
    assert SPEND_BY_BUYER.key() == "analytics:{spend_by_buyer}"
    assert SPEND_BY_BUYER_WINDOW.key(window="30d") == "analytics:{spend_by_buyer}:30d"
    assert SUMMARY_LOCK.key(id=9) == "lock:summary:9"


def test_ttls_match_the_design() -> None:
    assert TENDER_METADATA.ttl_s == 6 * 3600
    assert TEAM_TOP_TENDERS.ttl_s == 3600
    assert SPEND_BY_BUYER.ttl_s == 24 * 3600
    assert SUMMARY_LOCK.ttl_s == 600


@pytest.mark.parametrize("bad", ["", "0", "-1", "1:*", "1 ", "*", "../1", "1\r\nFLUSHALL", "a1", True, 10**25])
def test_invalid_ids_never_become_keys(bad: object) -> None:
    with pytest.raises(InvalidKeyError):
        TENDER_METADATA.key(id=bad)


def test_wrong_parts_are_refused() -> None:
    with pytest.raises(InvalidKeyError):
        TENDER_METADATA.key(tender=1)


def test_every_family_has_a_unique_pattern_and_a_ttl() -> None:
    # Its one owner is checked against the agent specs: tests/unit/streams/test_agent_registry.py.
    patterns = [f.pattern for f in CATALOGUE]
    assert len(patterns) == len(set(patterns))
    for family in CATALOGUE:
        assert family.ttl_s > 0


def test_family_of_maps_concrete_keys_back() -> None:
    assert family_of("tender:5:metadata") is TENDER_METADATA
    assert family_of("analytics:{spend_by_buyer}:30d") is SPEND_BY_BUYER_WINDOW
    with pytest.raises(InvalidKeyError):
        family_of("tender:x:metadata")


def test_keys_one_script_touches_share_a_redis_cluster_slot() -> None:
    """Redis Cluster runs a script or transaction only over keys of one slot (else CROSSSLOT): the hash tags put the
    keys each of them touches together in one (tests/integration/test_redis_cluster.py runs them on a cluster)."""
    spend = {
        hash_tag(f.key(**{p: "30d" for p in f.parts}))
        for f in (SPEND_BY_BUYER, SPEND_BY_BUYER_WINDOW, SPEND_TENDER_STATE, SPEND_TOTALS, SPEND_WINDOW_TOTALS)
    }
    assert spend == {"spend_by_buyer"}
    search = {
        hash_tag(SEARCH_RESULTS.key(digest="a" * 32)),
        hash_tag(SEARCH_BY_TENDER.key(id=4)),
        hash_tag(SEARCH_EPOCH.key()),
    }
    assert search == {"cache"}
    # A team's list and its inputs: one slot per team, so the teams spread over the masters.
    assert hash_tag(TEAM_TOP_TENDERS.key(id=7)) == hash_tag(TEAM_TOP_INPUTS.key(id=7)) == "7"
    assert key_slot(TEAM_TOP_TENDERS.key(id=7).encode()) == key_slot(TEAM_TOP_INPUTS.key(id=7).encode())
    assert len({key_slot(TEAM_TOP_TENDERS.key(id=t).encode()) for t in range(1, 50)}) > 40


def test_hash_tags_follow_redis_cluster_rules() -> None:
    assert hash_tag("a{b}c{d}") == "b"
    assert hash_tag("plain") is None
    assert hash_tag("a{}b{c}") is None  # an empty first tag: the whole key decides
    assert hash_tag("a{b") is None


def test_a_family_glob_matches_its_keys_literally() -> None:
    assert TEAM_TOP_TENDERS.glob() == "team:{*}:top_tenders"
    assert SPEND_BY_BUYER_WINDOW.glob() == "analytics:{spend_by_buyer}:*"
    assert escape_glob("a*b?[c]\\") == "a\\*b\\?\\[c\\]\\\\"
