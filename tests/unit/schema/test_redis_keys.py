"""Redis keys are built only from validated ids; every family has one owner and the TTL of the design."""

from __future__ import annotations

import pytest

from schema.redis_keys import (
    CATALOGUE,
    SPEND_BY_BUYER,
    SPEND_BY_BUYER_WINDOW,
    SUMMARY_LOCK,
    TEAM_TOP_TENDERS,
    TENDER_METADATA,
    InvalidKeyError,
    family_of,
)


def test_keys_follow_the_catalogue_names() -> None:
    assert TENDER_METADATA.key(id=42) == "tender:42:metadata"
    assert TEAM_TOP_TENDERS.key(id="7") == "team:7:top_tenders"
    assert SPEND_BY_BUYER.key() == "analytics:spend_by_buyer"
    assert SPEND_BY_BUYER_WINDOW.key(window="30d") == "analytics:spend_by_buyer:30d"
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
    assert family_of("analytics:spend_by_buyer:30d") is SPEND_BY_BUYER_WINDOW
    with pytest.raises(InvalidKeyError):
        family_of("tender:x:metadata")
