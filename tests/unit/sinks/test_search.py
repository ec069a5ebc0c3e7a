"""Search queries: parsed once into one normalised form (one cache entry per meaning), bound into SQL."""

from __future__ import annotations

import datetime as dt

import pytest

from sinks.search import InvalidSearchError, SearchQuery
from streams.readiness.coverage import resolve_province

AS_OF = dt.date(2025, 9, 25)


def test_query_parsing_is_one_entry_per_meaning() -> None:
    a = SearchQuery.parse({"q": "Road  CONSTRUCTION the", "province": "kzn"}, resolve_province)
    b = SearchQuery.parse({"q": "road construction road", "province": "KwaZulu-Natal"}, resolve_province)
    assert a == b and a.digest(AS_OF) == b.digest(AS_OF) and a.digest(AS_OF) != a.digest(AS_OF.replace(day=26))
    statement, params = a.sql(AS_OF)
    assert params["words"] == "+construction* +road*" and "Road" not in statement


def test_open_means_an_open_status_closing_after_the_day_and_dates_bound_whole_days() -> None:
    q = SearchQuery.parse({"status": "open", "closes_before": "2025-10-31"}, resolve_province)
    statement, params = q.sql(AS_OF)
    assert "status IN :open_statuses AND closing_at > :end_of_today" in statement
    assert params["end_of_today"] == dt.datetime(2025, 9, 25, 23, 59, 59)
    assert params["closes_before"] == dt.datetime(2025, 11, 1)  # the whole of the 31st
    assert "MATCH" not in statement  # filters alone: no full-text clause, ordered by closing date


@pytest.mark.parametrize("text", ["a\x00b", "\u202e\u202d", "'; -- /* */ ()", "🏗️"])
def test_text_that_holds_no_word_is_refused(text: str) -> None:
    with pytest.raises(InvalidSearchError, match="give words"):
        SearchQuery.parse({"q": text}, resolve_province)


@pytest.mark.parametrize("name", ["closes_after", "closes_before"])
@pytest.mark.parametrize("raw", ["9999-12-31", "0001-01-01", "0999-12-31"])
def test_dates_outside_what_mysql_stores_are_refused_not_an_overflow_later(name: str, raw: str) -> None:
    with pytest.raises(InvalidSearchError, match="between 1000-01-01 and 9998-12-31"):
        SearchQuery.parse({"q": "hall", name: raw}, resolve_province).sql(dt.date(2025, 10, 1))


@pytest.mark.parametrize("name", ["closes_after", "closes_before"])
@pytest.mark.parametrize("raw", ["1000-01-01", "9998-12-31"])
def test_the_widest_dates_build_a_query(name: str, raw: str) -> None:
    sql, params = SearchQuery.parse({"q": "hall", name: raw}, resolve_province).sql(dt.date(2025, 10, 1))
    assert "closing_at" in sql and name in params
