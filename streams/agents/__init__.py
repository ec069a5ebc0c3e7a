"""The agent registry: the built-in agents of this package and those installed packages declare under the entry point
group `tenderhub.agents` (each entry point names an `AgentSpec`, `streams/spec.py`). Names are unique."""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from importlib.metadata import entry_points

from schema.mongo import COLLECTIONS, CollectionSpec
from schema.redis_keys import CATALOGUE, KeyFamily
from streams.spec import AgentSpec

ENTRY_POINT_GROUP = "tenderhub.agents"
# Module of each built-in agent, in the order the worker starts them; each exports SPEC.
BUILTIN = ("activity_logs", "spend", "tender_summaries", "readiness", "search_cache")


class RegistryError(ValueError):
    """An agent that cannot be registered: not a spec, or a name taken twice."""


def registry() -> dict[str, AgentSpec]:
    """Every agent by name: built-in first, then installed ones."""
    specs = [importlib.import_module(f"{__name__}.{module}").SPEC for module in BUILTIN]
    for point in entry_points(group=ENTRY_POINT_GROUP):
        spec = point.load()
        if not isinstance(spec, AgentSpec):
            raise RegistryError(f"entry point {point.name!r} ({point.value}) is not an AgentSpec: {type(spec)!r}")
        specs.append(spec)
    out: dict[str, AgentSpec] = {}
    owners: dict[str, str] = {}
    for spec in specs:
        if spec.name in out:
            raise RegistryError(f"two agents are named {spec.name!r}")
        out[spec.name] = spec
        owned = [f"Redis key family {f.pattern}" for f in spec.key_families]
        owned += [f"MongoDB collection {c.name}" for c in spec.collections]
        for thing in owned:
            if thing in owners:
                raise RegistryError(f"{thing} has two owners, {owners[thing]!r} and {spec.name!r}: one agent owns it")
            owners[thing] = spec.name
    return out


def key_families(specs: Iterable[AgentSpec]) -> tuple[KeyFamily, ...]:
    """The Redis key families a worker's sink may write: the catalogue's, then those installed agents declare."""
    extra = {f.pattern: f for spec in specs for f in spec.key_families if f not in CATALOGUE}
    return (*CATALOGUE, *extra.values())


def collections(specs: Iterable[AgentSpec]) -> tuple[CollectionSpec, ...]:
    """The MongoDB collections `migrate` and the worker create: the catalogue's, then those installed agents declare."""
    extra = {c.name: c for spec in specs for c in spec.collections if c not in COLLECTIONS}
    return (*COLLECTIONS, *extra.values())
