"""Helpers shared by the summaries tests (fixtures live in conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from streams.summaries.base import SummariserConfig

DATA = Path(__file__).parent / "data"
# Short enough that the tiny model (128 positions) makes several chunks of a long text and two rounds of them.
TINY_SUMMARY_TOKENS = 24


def read_releases(name: str) -> list[dict[str, Any]]:
    """The OCDS releases of one file under data/ (data/README.md says where each comes from)."""
    with (DATA / name).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def tiny_config(model_dir: Path, **overrides: Any) -> SummariserConfig:
    """Transformers settings that fit the tiny test model."""
    settings: dict[str, Any] = {
        "backend": "transformers",
        "model": str(model_dir),
        "max_summary_tokens": TINY_SUMMARY_TOKENS,
        "num_beams": 2,
        "batch_size": 4,
    }
    settings.update(overrides)
    return SummariserConfig(**settings)
