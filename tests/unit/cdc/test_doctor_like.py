"""Database-level grants match database names with LIKE wildcards; the matcher takes linear-ish time whatever the
pattern (a regex of one `.*` per `%` backtracked exponentially: `%a%a%a%a%a%a%a%a%b` against 60 letters took 41 s)."""

from __future__ import annotations

import time

import pytest

from cdc.doctor import GrantTarget


def covers(pattern: str, database: str) -> bool:
    return GrantTarget(pattern, "*").covers(GrantTarget(database, "integration_outbox"))


@pytest.mark.parametrize(
    ("pattern", "database", "expected"),
    [
        ("tenderhub", "tenderhub", True),
        ("tenderhub", "tenderhub2", False),
        ("Tenderhub", "tenderhub", False),
        ("tender%", "tenderhub", True),
        ("tender%", "tender", True),
        ("%hub", "tenderhub", True),
        ("%hub", "tenderhubs", False),
        ("t_nderhub", "tenderhub", True),
        ("t_nderhub", "tnderhub", False),
        ("%", "", True),
        ("%%", "x", True),
        ("_", "", False),
        ("te%r%b", "tenderhub", True),
        ("te%r%b", "tenderhubx", False),
        ("%d%h%", "tenderhub", True),
        ("tender\\_hub", "tender_hub", True),
        ("tender\\_hub", "tenderxhub", False),
        ("tender\\%", "tender%", True),
        ("tender\\%", "tenderhub", False),
        ("tender\\", "tender\\", True),
        ("a.c", "abc", False),
        ("a.c", "a.c", True),
        ("a*c", "abc", False),
        ("new\nline%", "new\nline!", True),
    ],
)
def test_database_patterns_follow_like_wildcards_and_escapes(pattern: str, database: str, expected: bool) -> None:
    assert covers(pattern, database) is expected


@pytest.mark.parametrize(
    ("pattern", "database"),
    [
        ("%a" * 8 + "%b", "a" * 64),
        ("%" * 32 + "b", "a" * 64),
        ("%a_" * 16 + "b", "a" * 64),
        ("_%" * 21 + "c", "ab" * 32),
    ],
)
def test_hostile_database_patterns_are_matched_well_under_a_second(pattern: str, database: str) -> None:
    start = time.perf_counter()
    assert not covers(pattern, database)
    assert time.perf_counter() - start < 1.0
