"""Hostile text is normal input: every parser of free text finishes in well under a second on adversarial input at
the longest length the contract allows for the field it reads, and the worker's event loop keeps ticking while the
agents' functions chew on it in a thread (a regex holds the GIL for its whole run, so only linear patterns pass).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest

from schema.events import (
    BUYER_MAX_CHARS,
    CATEGORY_MAX_CHARS,
    PROVINCE_MAX_CHARS,
    PROVINCES_MAX_ITEMS,
    SECTOR_MAX_CHARS,
    SECTORS_MAX_ITEMS,
    TenderV1,
    validate_payload,
)
from streams.agents.readiness import fold_tender_facts
from streams.agents.tender_summaries import summary_input
from streams.readiness.cidb import parse_cidb_requirements
from streams.readiness.coverage import resolve_province, tender_scope
from streams.readiness.reference import ReadinessError
from streams.readiness.scoring import (
    company_facts_from_payload,
    parse_max_bbbee_level,
    parse_min_experience_years,
    tender_facts_from_payload,
)
from streams.readiness.sectors import sector_profile, tender_evidence
from streams.summaries.extractive import ExtractiveSummariser, split_sentences

# The contract's longest free-text fields (schema.events.TenderV1): the parsers read them.
TITLE_MAX = 1000
DESCRIPTION_MAX = 20_000
SPECIAL_CONDITIONS_MAX = 50_000
# Generous against what the linear parsers measure (tens of milliseconds at most); quadratic ones took 4-20+ s.
CALL_BOUND_S = 1.0
LAG_BOUND_S = 0.1
TICK_S = 0.01

# A unit repeated to the field's length. Each one aims at a pattern: runs that a `\s*` or `[.!?]+` scans from every
# start, repeated keywords that restart a match, separators that alternate, glued gradings, unicode spaces.
UNITS: dict[str, str] = {
    "dots": ".",
    "spaces": " ",
    "unicode spaces": "\u00a0\u2003\u3000\u2009",
    "tabs and blanks": " \t",
    "line breaks": "\n",
    "blanks and line breaks": " \n",
    "digits": "5",
    "letters": "a",
    "dot space": ". ",
    "stops": "!?",
    "alternating separators": ",;/&+ ",
    "and": " and ",
    "grade grade": "grade ",
    "5CE 5CE": "5CE ",
    "5CE glued": "5CE",
    "spaced gradings": "4 CE ",
    "grade ranges": "2CE TO 8CE ",
    "cidb": "CIDB ",
    "cidb grade": "CIDB GRADE ",
    "level": "level ",
    "minimum": "minimum ",
    "or higher PE": "5CE or higher PE ",
    "pe clause": "potentially emerging one ",
    "years": "1 year ",
    "experience": "experience ",
    "relevant": "5 years relevant relevant ",
    "bee level": "B-BBEE level 2 ",
    "list numbers": "1.1.",
    "initials": "J. ",
    "abbreviations": "e.g. ",
    "closing quotes": '.")',
    "bullets": "\u2022 - * ",
    "nested parentheses": "((((((((((",
}


def fill(unit: str, n: int) -> str:
    return (unit * (n // len(unit) + 1))[:n]


def hostile(n: int) -> dict[str, str]:
    """Every adversarial text of exactly `n` characters."""
    texts = {name: fill(unit, n) for name, unit in UNITS.items()}
    texts["closing parentheses"] = "(" * (n // 2) + ")" * (n - n // 2)
    # A long blank run right where a pattern has two `\s*` around an optional token.
    texts["number then blanks"] = fill("5" + " " * (n - 13) + " experience", n)
    texts["B-BBEE level then blanks"] = fill("B-BBEE level 2" + " " * n, n - 1) + "x"
    texts["experience of then blanks"] = fill("experience of" + " " * n, n - 3) + "5 x"
    texts["province then blanks"] = fill("Gauteng" + " " * n, n - 7) + "Limpopo"
    # Sentences that all share words: the summariser's graph at its densest.
    texts["dense sentences"] = fill(" ".join(f"word{i % 60}" for i in range(100)) + ". ", n)
    return texts


PARSERS: list[tuple[str, int, Callable[[str], object]]] = [
    # (what, the longest text it is given, the parser)
    ("CIDB requirements", SPECIAL_CONDITIONS_MAX, parse_cidb_requirements),
    ("experience years", SPECIAL_CONDITIONS_MAX, parse_min_experience_years),
    ("B-BBEE level", SPECIAL_CONDITIONS_MAX, parse_max_bbbee_level),
    ("tender sector evidence", DESCRIPTION_MAX, lambda text: tender_evidence(None, text)),
    ("sector label", SECTOR_MAX_CHARS, sector_profile),
    ("tender province", PROVINCE_MAX_CHARS, tender_scope),
    ("company province", PROVINCE_MAX_CHARS, resolve_province),
    # Facts stored before the contract had limits are parsed again by the readiness agent: no limit protects them.
    ("tender province stored before the bounds", SPECIAL_CONDITIONS_MAX, tender_scope),
    ("sentences", SPECIAL_CONDITIONS_MAX, split_sentences),
    ("extractive summary", SPECIAL_CONDITIONS_MAX, ExtractiveSummariser().summarise),
]
CASES = [(what, name, text, parse) for what, n, parse in PARSERS for name, text in hostile(n).items()]


def timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    # Refusing hostile text (an unknown province) is a fine answer; taking long over it is not.
    with contextlib.suppress(ReadinessError):
        call()
    return time.perf_counter() - start


@pytest.mark.parametrize(("what", "name", "text", "parse"), CASES, ids=[f"{c[0]}: {c[1]}" for c in CASES])
def test_every_free_text_parser_finishes_well_under_a_second_on_hostile_text_at_the_field_limit(
    what: str, name: str, text: str, parse: Callable[[str], object]
) -> None:
    elapsed = timed(lambda: parse(text))
    assert elapsed < CALL_BOUND_S, f"{what} took {elapsed:.2f} s on {len(text):,} characters of {name}"


def tender_payload(unit: str) -> TenderV1:
    """A tender whose every free-text field is `unit` repeated to the field's limit, as the contract admits it."""
    payload = {
        "tender_id": 7,
        "ocid": "ocds-9t57fa-7",
        "title": fill(unit, TITLE_MAX),
        "buyer": fill(unit, BUYER_MAX_CHARS),
        "category": fill(unit, CATEGORY_MAX_CHARS),
        "province": fill(unit, PROVINCE_MAX_CHARS),
        "tender_number": fill(unit, 255),
        "description": fill(unit, DESCRIPTION_MAX),
        "special_conditions": fill(unit, SPECIAL_CONDITIONS_MAX),
        "briefing_compulsory": True,
        "briefing_venue": fill(unit, 1000),
        "closing_at": "2025-10-01T09:00:00",
    }
    model = validate_payload("tender.created", 1, "tender", "7", json.dumps(payload))
    assert isinstance(model, TenderV1)
    return model


def company_payloads(unit: str) -> list[dict[str, Any]]:
    """A profile with hostile sectors (known provinces, so the sectors are reached), and one with hostile provinces."""
    base = {"team_id": 3, "company_id": 4, "experience_years": 5, "bbbee_level": 2, "cidb": []}
    sectors = [fill(unit, SECTOR_MAX_CHARS)] * SECTORS_MAX_ITEMS
    provinces = [fill(unit, PROVINCE_MAX_CHARS)] * PROVINCES_MAX_ITEMS
    payloads = [
        base | {"sectors": sectors, "provinces": ["GP"]},
        base | {"sectors": ["Cleaning"]} | {"provinces": provinces},
    ]
    for p in payloads:
        validate_payload("company.updated", 1, "company", "3", json.dumps(p))
    return payloads


def agent_work(unit: str) -> Callable[[], None]:
    """What the readiness and summaries agents do with one hostile tender and one hostile company profile."""
    tender = tender_payload(unit)
    companies = company_payloads(unit)
    summariser = ExtractiveSummariser()

    def work() -> None:
        tender_facts_from_payload(fold_tender_facts(None, tender))
        summariser.summarise_batch([summary_input(tender).text()])
        for company in companies:
            # An unknown province is refused: that is the answer, as long as it comes fast.
            with contextlib.suppress(ReadinessError):
                company_facts_from_payload(company)

    return work


@pytest.mark.parametrize("name", list(UNITS))
def test_agent_functions_finish_well_under_a_second_on_a_hostile_tender_and_profile(name: str) -> None:
    work = agent_work(UNITS[name])
    elapsed = timed(work)
    assert elapsed < CALL_BOUND_S, f"readiness facts and summary took {elapsed:.2f} s on {name}"


@pytest.mark.asyncio
async def test_the_event_loop_keeps_ticking_while_agents_parse_hostile_text_in_a_thread() -> None:
    works = [agent_work(unit) for unit in UNITS.values()]
    lags: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            before = time.perf_counter()
            await asyncio.sleep(TICK_S)
            lags.append(time.perf_counter() - before - TICK_S)

    # What is measured is the parsers' hold on the GIL, not a collection of the test session's heap: a full
    # collection of what earlier tests left behind stalled the loop 140-160 ms on its own.
    gc.collect()
    gc.freeze()
    tick = asyncio.create_task(ticker())
    await asyncio.sleep(TICK_S * 3)
    try:
        for work in works:
            await asyncio.to_thread(work)
    finally:
        done.set()
        await tick
        gc.unfreeze()
    assert len(lags) > 10
    assert max(lags) < LAG_BOUND_S, f"the loop stalled {max(lags) * 1000:.0f} ms (ticks: {len(lags)})"


def test_long_hostile_words_do_not_pile_up_in_the_word_cache() -> None:
    # 200 tenders, each with one distinct 20,000-letter word: nothing of them may stay in memory after scoring.
    texts = [fill(f"{i:04d}" + "x" * 97, DESCRIPTION_MAX) for i in range(200)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for text in texts:
            tender_evidence(None, text)
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 1_000_000, f"{kept:,} bytes kept after reading {len(texts)} long words"
