"""Readiness scoring benchmark on the real eTenders releases: time to parse tenders into TenderFacts, to score one
tender for 1,000 teams, and one team against 5,000 tenders. Prints figures (median of several runs); asserts nothing.

    .venv/bin/python -m bench.readiness_bench
    .venv/bin/python -m bench.readiness_bench --data PATH.jsonl --runs 9 --teams 1000 --tenders 5000

Companies are generated (fixed seed) over real sectors (the data's categories plus common profile labels), real
province spellings and realistic CIDB gradings. No services needed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.args import positive
from streams.readiness.scoring import (
    CompanyFacts,
    TenderFacts,
    company_facts_from_payload,
    score,
    tender_facts_from_payload,
)

REPO = Path(__file__).resolve().parents[1]
# The 4,294 advertised releases live beside the repository (DESIGN.md, "Data"); the 200 portal releases ship in it.
ADVERTISED = REPO.parent / "shared" / "data" / "za_etenders_advertised.ocds.jsonl"
PORTAL_200 = REPO / "data" / "za_etenders_portal_200.ocds.jsonl"
# Within the advertised data's period, so some tenders are open and some closed.
AS_OF = dt.datetime(2026, 2, 25, 9, 0, tzinfo=dt.UTC)

PROFILE_SECTORS = (
    "Civil engineering",
    "Road construction",
    "General building",
    "Electrical maintenance",
    "Electrical engineering",
    "Mechanical engineering",
    "Plumbing",
    "Security services",
    "Cleaning services",
    "IT",
    "Information technology",
    "Software development",
    "Catering",
    "Medical supplies",
    "Office supplies",
    "Consulting engineers",
    "Accounting and auditing",
    "Legal services",
    "Waste management",
    "Landscaping",
    "HVAC maintenance",
    "Fire protection",
    "Training and skills development",
    "Transport and logistics",
    "Pest control",
    "Furniture",
    "Protective clothing",
)
PROVINCE_SPELLINGS = (
    "Gauteng",
    "GP",
    "Gauteng Province",
    "KwaZulu-Natal",
    "KZN",
    "Kwazulu Natal",
    "Western Cape",
    "WC",
    "Eastern Cape",
    "EC",
    "Limpopo",
    "LP",
    "Mpumalanga",
    "MP",
    "Free State",
    "FS",
    "North West",
    "North-West",
    "Northern Cape",
    "NC",
)
COMMON_CLASSES = ("CE", "GB", "EB", "EP", "ME", "SO", "SQ", "SK", "SH", "SF")


def read_releases(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def tender_payload(n: int, release: dict[str, Any]) -> dict[str, Any]:
    """The payload a tender event carries. eTenders puts the real title in tender.description; most advertised rows
    have no portal id, so the line number stands in for the tender id."""
    tender = release.get("tender") or {}
    return {
        "tender_id": int(tender["id"]) if str(tender.get("id", "")).isdigit() else n + 1,
        "title": tender.get("description") or tender.get("title") or "",
        "category": tender.get("category"),
        "province": tender.get("province"),
        "closing_at": (tender.get("tenderPeriod") or {}).get("endDate"),
        "buyer": (release.get("buyer") or {}).get("name"),
        "special_conditions": tender.get("specialConditions"),
    }


def company_payloads(count: int, categories: list[str], seed: int = 20260225) -> list[dict[str, Any]]:
    rng = random.Random(seed)  # noqa: S311 - reproducible benchmark data, not a secret
    sectors_pool = [*PROFILE_SECTORS, *categories]
    payloads = []
    for i in range(count):
        classes = rng.sample(COMMON_CLASSES, k=rng.choice((0, 1, 1, 2, 2, 3)))
        payloads.append(
            {
                "team_id": i + 1,
                "company_id": i + 1,
                "sectors": rng.sample(sectors_pool, k=rng.randint(1, 4)),
                "provinces": ["National"]
                if rng.random() < 0.1
                else rng.sample(PROVINCE_SPELLINGS, k=rng.randint(1, 3)),
                "experience_years": rng.choice((None, *range(0, 31))),
                "bbbee_level": rng.choice((None, 1, 1, 2, 2, 3, 4, 4, 5, 6, 7, 8)),
                "cidb": [
                    {
                        "class_of_works": c,
                        # Most registered contractors hold low grades.
                        "grade": min(9, 1 + int(rng.expovariate(0.45))),
                        "potentially_emerging": rng.random() < 0.2,
                    }
                    for c in classes
                ],
            }
        )
    return payloads


def timed(runs: int, work: Callable[[], object]) -> tuple[float, float]:
    """Median and best wall time in seconds over `runs` runs."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ADVERTISED if ADVERTISED.exists() else PORTAL_200)
    parser.add_argument("--runs", type=positive, default=7)
    parser.add_argument("--teams", type=positive, default=1000)
    parser.add_argument("--tenders", type=positive, default=5000)
    args = parser.parse_args()

    releases = read_releases(args.data)
    payloads = [tender_payload(n, r) for n, r in enumerate(releases)]
    print(f"data: {args.data} ({len(releases)} releases); as of {AS_OF.isoformat()}; median of {args.runs} runs")

    parse_median, parse_best = timed(args.runs, lambda: [tender_facts_from_payload(p) for p in payloads])
    tenders: list[TenderFacts] = [tender_facts_from_payload(p) for p in payloads]
    per = parse_median / len(tenders) * 1e6
    print(
        f"parse {len(tenders)} tenders -> TenderFacts: {parse_median * 1000:.1f} ms "
        f"(best {parse_best * 1000:.1f}; {per:.0f} µs each)"
    )
    with_cidb = sum(1 for t in tenders if t.cidb)
    with_years = sum(1 for t in tenders if t.min_experience_years is not None)
    with_bbbee = sum(1 for t in tenders if t.max_bbbee_level is not None)
    print(f"  stated: CIDB grading {with_cidb}, minimum experience {with_years}, B-BBEE level {with_bbbee}")

    categories = sorted({p["category"] for p in payloads if p["category"]})
    company_data = company_payloads(args.teams, categories)
    build_median, _ = timed(args.runs, lambda: [company_facts_from_payload(c) for c in company_data])
    companies: list[CompanyFacts] = [company_facts_from_payload(c) for c in company_data]
    print(f"parse {len(companies)} company profiles -> CompanyFacts: {build_median * 1000:.1f} ms")

    # One tender for every team: an open tender that states a modest CIDB grading exercises every check.
    tender = next(
        (t for t in tenders if t.cidb and t.cidb[0].grade <= 5 and t.closing_at and t.closing_at > AS_OF), tenders[0]
    )
    fan_out_median, fan_out_best = timed(args.runs, lambda: [score(tender, c, AS_OF) for c in companies])
    print(
        f"score 1 tender x {len(companies)} teams: {fan_out_median * 1000:.1f} ms (best {fan_out_best * 1000:.1f}; "
        f"{fan_out_median / len(companies) * 1e6:.1f} µs per score)"
    )
    fanned = [score(tender, c, AS_OF) for c in companies]
    print(
        f"  tender {tender.tender_id} ({', '.join(r.label for r in tender.cidb)}, {tender.province}): "
        f"{sum(1 for r in fanned if r.biddable)} of {len(fanned)} teams can bid"
    )

    team = companies[0]
    batch = [tenders[i % len(tenders)] for i in range(args.tenders)]
    sweep_median, sweep_best = timed(args.runs, lambda: [score(t, team, AS_OF) for t in batch])
    print(
        f"score 1 team x {len(batch)} tenders: {sweep_median * 1000:.1f} ms (best {sweep_best * 1000:.1f}; "
        f"{sweep_median / len(batch) * 1e6:.1f} µs per score)"
    )
    results = [score(t, team, AS_OF) for t in batch]
    biddable = sum(1 for r in results if r.biddable)
    top = max(results, key=lambda r: r.score)
    print(
        f"  team {team.team_id} ({'; '.join(team.sectors)}): {biddable} biddable; "
        f"best score {top.score} (tender {top.tender_id})"
    )


if __name__ == "__main__":
    main()
