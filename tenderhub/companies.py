"""Company profiles through the outbox: team, profile and CIDB gradings written with a `company.updated` event that
carries the whole profile, in one transaction (as the application does when a team edits its profile)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from cdc.outbox import write_event

DEMO_COMPANIES = Path(__file__).resolve().parents[1] / "data" / "demo_companies.json"


@dataclass(frozen=True)
class CompanyProfile:
    team: str
    company_name: str
    sectors: list[str]
    provinces: list[str]
    experience_years: int | None = None
    bbbee_level: int | None = None
    cidb: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CompanyProfile:
        for name in ("sectors", "provinces"):
            value = data[name]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                # A string would become a list of its letters.
                raise ValueError(f"company {str(data.get('team'))[:60]!r}: {name} must be a list of names")
        return cls(
            team=data["team"],
            company_name=data["company_name"],
            sectors=list(data["sectors"]),
            provinces=list(data["provinces"]),
            experience_years=data.get("experience_years"),
            bbbee_level=data.get("bbbee_level"),
            cidb=[dict(g) for g in data.get("cidb", [])],
        )


def read_profiles(path: Path = DEMO_COMPANIES) -> list[CompanyProfile]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return [CompanyProfile.from_dict(c) for c in data["companies"]]


def upsert_company(conn: sa.Connection, profile: CompanyProfile) -> tuple[int, int, int]:
    """Insert or update the team's profile and gradings and append `company.updated`, in the caller's transaction.
    Returns (team id, company id, event id)."""
    team_id = conn.execute(sa.text("SELECT id FROM teams WHERE name = :n FOR UPDATE"), {"n": profile.team}).scalar()
    if team_id is None:
        team_id = conn.execute(sa.text("INSERT INTO teams (name) VALUES (:n)"), {"n": profile.team}).lastrowid
    values = {
        "team_id": team_id,
        "company_name": profile.company_name,
        "sectors": json.dumps(profile.sectors),
        "provinces": json.dumps(profile.provinces),
        "experience_years": profile.experience_years,
        "bbbee_level": profile.bbbee_level,
    }
    company_id = conn.execute(
        sa.text("SELECT id FROM company_profiles WHERE team_id = :team_id FOR UPDATE"), values
    ).scalar()
    if company_id is None:
        company_id = conn.execute(
            sa.text(
                "INSERT INTO company_profiles (team_id, company_name, sectors, provinces, experience_years, "
                "bbbee_level) VALUES (:team_id, :company_name, :sectors, :provinces, :experience_years, :bbbee_level)"
            ),
            values,
        ).lastrowid
    else:
        conn.execute(
            sa.text(
                "UPDATE company_profiles SET company_name = :company_name, sectors = :sectors, provinces = :provinces,"
                " experience_years = :experience_years, bbbee_level = :bbbee_level WHERE id = :id"
            ),
            {**values, "id": company_id},
        )
    conn.execute(sa.text("DELETE FROM company_cidb_gradings WHERE company_id = :c"), {"c": company_id})
    for g in profile.cidb:
        conn.execute(
            sa.text(
                "INSERT INTO company_cidb_gradings (company_id, class_of_works, grade, potentially_emerging) "
                "VALUES (:c, :cls, :grade, :pe)"
            ),
            {"c": company_id, "cls": g["class_of_works"], "grade": g["grade"], "pe": g["potentially_emerging"]},
        )
    payload = {
        "team_id": int(team_id),
        "company_id": int(company_id),
        "company_name": profile.company_name,
        "sectors": profile.sectors,
        "provinces": profile.provinces,
        "experience_years": profile.experience_years,
        "bbbee_level": profile.bbbee_level,
        "cidb": profile.cidb,
    }
    event_id = write_event(conn, "company.updated", int(team_id), payload)
    return int(team_id), int(company_id), event_id


def load_companies(engine: sa.Engine, profiles: Iterable[CompanyProfile]) -> list[tuple[int, int, CompanyProfile]]:
    done = []
    for profile in profiles:
        with engine.begin() as conn:
            team_id, company_id, _ = upsert_company(conn, profile)
        done.append((team_id, company_id, profile))
    return done
