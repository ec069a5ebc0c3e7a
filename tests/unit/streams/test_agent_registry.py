"""The agent registry and the specs (streams/spec.py, streams/agents/__init__.py): every Redis key family and MongoDB
collection has exactly one owning agent, the specs say what each agent reads, installed agents join through an entry
point, and a bad spec is refused with its reason."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

import streams.agents
from schema.events import EVENT_TYPES
from schema.mongo import COLLECTIONS, TENDER_SUMMARIES
from schema.redis_keys import CATALOGUE, SPEND_BY_BUYER, KeyFamily
from streams.agents import BUILTIN, RegistryError, key_families, registry
from streams.spec import AgentSpec, Timer


def _handler(ctx: Any) -> Any:
    async def handle(items: Any) -> None:
        return None

    return handle


def test_every_key_family_and_collection_has_exactly_one_owner() -> None:
    specs = registry().values()
    families = Counter(f.pattern for s in specs for f in s.key_families)
    collections = Counter(c.name for s in specs for c in s.collections)
    assert {f.pattern: families[f.pattern] for f in CATALOGUE} == {f.pattern: 1 for f in CATALOGUE}
    assert {c.name: collections[c.name] for c in COLLECTIONS} == {c.name: 1 for c in COLLECTIONS}
    # ... and no spec owns something the catalogues do not list.
    assert set(families) == {f.pattern for f in CATALOGUE}
    assert set(collections) == {c.name for c in COLLECTIONS}


def test_the_builtin_agents_are_registered_in_order_and_read_the_topics_of_their_events() -> None:
    specs = registry()
    assert list(specs)[: len(BUILTIN)] == list(BUILTIN)
    for spec in specs.values():
        assert spec.owner == f"streams.agents.{spec.name}"
        assert {EVENT_TYPES[t].aggregate_type for t in spec.event_types} == set(spec.aggregates), spec.name


def test_every_event_type_but_the_heartbeat_has_an_agent() -> None:
    taken = {t for s in registry().values() for t in s.event_types}
    assert set(EVENT_TYPES) - taken == {"system.heartbeat"}


class _EntryPoint:
    def __init__(self, name: str, value: Any) -> None:
        self.name, self.value, self._loaded = name, f"example:{name}", value

    def load(self) -> Any:
        return self._loaded


def test_an_installed_agent_joins_through_the_entry_point_group(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = AgentSpec("audit_trail", "an installed agent", ("activity",), frozenset({"user.activity"}), _handler)

    def points(group: str) -> list[_EntryPoint]:
        assert group == streams.agents.ENTRY_POINT_GROUP
        return [_EntryPoint("audit_trail", extra)]

    monkeypatch.setattr(streams.agents, "entry_points", points)
    assert registry()["audit_trail"] is extra


@pytest.mark.parametrize(
    ("loaded", "message"),
    [
        ("not a spec", "is not an AgentSpec"),
        (AgentSpec("spend", "a second spend", ("tender",), frozenset({"tender.created"}), _handler), "two agents"),
        (
            AgentSpec(
                "thief", "x", ("tender",), frozenset({"tender.created"}), _handler, key_families=(SPEND_BY_BUYER,)
            ),
            "analytics:{spend_by_buyer} has two owners, 'spend' and 'thief'",
        ),
        (
            AgentSpec(
                "copycat", "x", ("tender",), frozenset({"tender.created"}), _handler, collections=(TENDER_SUMMARIES,)
            ),
            "collection tender_summaries has two owners",
        ),
    ],
)
def test_a_bad_installed_agent_is_refused(monkeypatch: pytest.MonkeyPatch, loaded: Any, message: str) -> None:
    monkeypatch.setattr(streams.agents, "entry_points", lambda group: [_EntryPoint("bad", loaded)])
    with pytest.raises(RegistryError, match=message):
        registry()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "Bad-Name"}, "lower-case"),
        ({"event_types": frozenset()}, "no event type"),
        ({"event_types": frozenset({"tender.deleted"})}, "unknown event types"),
        ({"event_types": frozenset({"company.updated"})}, "not on the topics it reads"),
    ],
)
def test_a_spec_that_cannot_work_is_refused(kwargs: dict[str, Any], message: str) -> None:
    fields: dict[str, Any] = {
        "name": "probe",
        "doc": "a probe",
        "aggregates": ("tender",),
        "event_types": frozenset({"tender.created"}),
        "handler": _handler,
    }
    with pytest.raises(ValueError, match=message):
        AgentSpec(**{**fields, **kwargs})


def test_a_timer_runs_on_an_interval_or_a_crontab_not_both() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Timer("t", lambda ctx, handler: handler, every_s=lambda s: 1.0, cron=lambda s: "0 3 * * *")
    with pytest.raises(ValueError, match="exactly one"):
        Timer("t", lambda ctx, handler: handler)


def test_the_entry_point_group_is_the_documented_one() -> None:
    assert streams.agents.ENTRY_POINT_GROUP == "tenderhub.agents"


def test_an_installed_agents_own_key_family_is_given_to_the_workers_sink(monkeypatch: pytest.MonkeyPatch) -> None:
    alerts = KeyFamily("alerts:closing_soon", "hash", 3600, "closing-soon alerts")
    extra = AgentSpec("closing_soon", "x", ("tender",), frozenset({"tender.created"}), _handler, key_families=(alerts,))
    monkeypatch.setattr(streams.agents, "entry_points", lambda group: [_EntryPoint("closing_soon", extra)])
    assert key_families(registry().values()) == (*CATALOGUE, alerts)
