"""Runs of published ids (cdc.bookkeeping): merging and the gaps a backfill reads, checked against a brute-force set
model on random runs."""

from __future__ import annotations

import itertools
import random

import pytest

from cdc.bookkeeping import MAX_ID, gaps, merge_ranges


def test_merge_joins_overlapping_and_adjacent_runs_only() -> None:
    assert merge_ranges([(5, 7), (1, 2), (3, 3), (9, 9), (6, 10)]) == ((1, 3), (5, 10))
    assert merge_ranges([(1, 1), (3, 3)]) == ((1, 1), (3, 3))
    assert merge_ranges([]) == ()


def test_gaps_are_every_id_not_covered_with_an_open_end() -> None:
    assert gaps(()) == [(1, MAX_ID)]
    assert gaps(((1, 3), (5, 10))) == [(4, 4), (11, MAX_ID)]
    assert gaps(((2, 2),)) == [(1, 1), (3, MAX_ID)]


@pytest.mark.parametrize("seed", range(20))
def test_runs_and_gaps_partition_the_ids_exactly(seed: int) -> None:
    rng = random.Random(seed)
    ids = {rng.randrange(1, 400) for _ in range(rng.randrange(0, 300))}
    runs = [(i, i) for i in ids] + [(a, a + rng.randrange(0, 3)) for a in rng.sample(sorted(ids), len(ids) // 3)]
    covered = {i for a, b in runs for i in range(a, b + 1)}
    merged = merge_ranges(runs)
    assert all(b + 1 < c for (_, b), (c, _) in itertools.pairwise(merged))  # disjoint, not adjacent
    assert {i for a, b in merged for i in range(a, b + 1)} == covered
    holes = gaps(merged)
    assert holes[-1][1] == MAX_ID
    in_holes = {i for a, b in holes for i in range(a, min(b, 500) + 1)}
    assert in_holes == set(range(1, 501)) - covered
