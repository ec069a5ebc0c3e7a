"""The agent registry: the built-in agents of this package and those installed packages declare under the entry point
group `tenderhub.agents` (each entry point names an `AgentSpec`, `streams/spec.py`). Names are unique."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from streams.spec import AgentSpec

ENTRY_POINT_GROUP = "tenderhub.agents"
# Module of each built-in agent, in the order the worker starts them; each exports SPEC.
BUILTIN = ("activity_logs", "spend", "tender_summaries", "readiness")


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
    for spec in specs:
        if spec.name in out:
            raise RegistryError(f"two agents are named {spec.name!r}")
        out[spec.name] = spec
    return out
