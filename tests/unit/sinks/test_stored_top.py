"""A team's top list from MongoDB (Redis down or the list missing) is read a page of the best scores at a time. It
must equal what reading every one of the team's score documents gives: stale generations of a tender scoring higher
than its current one, ties at the page's edge, closed or unscored tenders, other teams' documents."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from sinks.reader import CacheFirstReader

AS_OF = dt.date(2025, 9, 25)


class FakeMongo:
    """find_by_ids and find_where over documents in memory, as MongoSink answers them (a sort puts the highest
    numbers first, and anything that is not a number after them)."""

    def __init__(self, scores: list[dict[str, Any]], summaries: list[dict[str, Any]]) -> None:
        self.collections = {"readiness_scores": scores, "tender_summaries": summaries}
        self.read = 0

    def find_by_ids(
        self,
        collection: str,
        field: str,
        ids: Sequence[int],
        fields: Sequence[str],
        *,
        where: Mapping[str, int] | None = None,
    ) -> list[dict[str, Any]]:
        wanted = set(ids)
        out = [
            {f: d[f] for f in (*fields, field) if f in d}
            for d in self.collections[collection]
            if d.get(field) in wanted and all(d.get(k) == v for k, v in (where or {}).items())
        ]
        self.read += len(out)
        return out

    def find_where(
        self,
        collection: str,
        where: Mapping[str, int],
        fields: Sequence[str],
        *,
        sort: tuple[str, int] | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        docs = [d for d in self.collections[collection] if all(d.get(k) == v for k, v in where.items())]
        random.Random(len(docs) + limit).shuffle(docs)  # equal scores come in no particular order
        assert sort is not None and sort[1] == -1
        name = sort[0]

        def key(d: dict[str, Any]) -> tuple[int, float]:
            value = d.get(name)
            number = isinstance(value, int | float) and not isinstance(value, bool)
            return (0, -float(value)) if number else (1, 0.0)

        out = [{f: d[f] for f in fields if f in d} for d in sorted(docs, key=key)[:limit]]
        self.read += len(out)
        return out


def world(rng: random.Random, tenders: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    scores, summaries = [], []
    for tender in range(1, tenders + 1):
        for team in (7, 8):
            for seq in range(1, rng.choice((2, 2, 2, 3)) + 1):  # older generations linger until deleted
                scores.append(
                    {
                        "team_id": team,
                        "tender_id": tender,
                        "team_seq": seq,
                        "score": rng.choice((0, -1, 55.5, 60, 60, 70, rng.uniform(0, 100), "n/a")),
                        "biddable": rng.random() < 0.85,
                        "tender_status": rng.choice(("active", "active", "active", "cancelled")),
                    }
                )
        if rng.random() < 0.9:
            closing = dt.datetime(2025, 9, 20) + dt.timedelta(days=rng.randint(0, 30))
            summaries.append({"tender_id": tender, "status": rng.choice(("active", "complete")), "closing_at": closing})
    return scores, summaries


@pytest.mark.parametrize("seed", range(40))
def test_the_paged_read_equals_reading_every_document(seed: int) -> None:
    rng = random.Random(seed)
    scores, summaries = world(rng, rng.choice((5, 40, 300)))
    mongo = FakeMongo(scores, summaries)
    reader = CacheFirstReader(None, mongo, lambda: AS_OF)  # type: ignore[arg-type]
    for k in (1, 5, 20):
        assert reader._stored_top(7, k) == reader._best_open(7, None, k), (seed, k)


def test_a_team_with_thousands_of_scores_reads_a_page_not_all_of_them() -> None:
    rng = random.Random(1)
    scores, summaries = world(rng, 3000)
    mongo = FakeMongo(scores, summaries)
    reader = CacheFirstReader(None, mongo, lambda: AS_OF)  # type: ignore[arg-type]
    mongo.read = 0
    top = reader._stored_top(7, 5)
    assert len(top) == 5 and mongo.read < 1000, mongo.read
    everything = [d for d in scores if d["team_id"] == 7]
    assert len(everything) > 6000


def test_ties_at_the_edge_of_a_page_are_settled_by_tender_id_as_when_everything_is_read() -> None:
    scores = [
        {"team_id": 7, "tender_id": t, "team_seq": 1, "score": 60, "biddable": True, "tender_status": "active"}
        for t in range(1, 501)
    ]
    summaries = [{"tender_id": t, "status": "active", "closing_at": dt.datetime(2025, 10, 9)} for t in range(1, 501)]
    reader = CacheFirstReader(None, FakeMongo(scores, summaries), lambda: AS_OF)  # type: ignore[arg-type]
    assert reader._stored_top(7, 5) == [(t, 60.0) for t in range(1, 6)]
