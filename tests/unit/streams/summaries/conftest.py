"""Shared fixtures: real tender texts, and a tiny BART saved to disk once per session and loaded the real way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streams.summaries.base import SummaryInput
from streams.summaries.factory import load_summariser
from streams.summaries.transformer import TransformerSummariser
from tests.unit.streams.summaries.support import read_releases, tiny_config


@pytest.fixture(scope="session")
def etenders_releases() -> list[dict[str, Any]]:
    return read_releases("etenders_sample.ocds.jsonl")


@pytest.fixture(scope="session")
def etenders_texts(etenders_releases: list[dict[str, Any]]) -> list[str]:
    return [SummaryInput.from_ocds(n, r).text() for n, r in enumerate(etenders_releases, start=1)]


@pytest.fixture(scope="session")
def uk_long_texts() -> list[str]:
    return [r["tender"]["description"] for r in read_releases("uk_long_descriptions.ocds.jsonl")]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, etenders_texts: list[str]) -> Path:
    """A 94k-parameter BART (128 positions) with a BPE tokenizer trained on the sample's eTenders texts."""
    from devtools.tiny_bart import TINY, build_bart

    return build_bart(tmp_path_factory.mktemp("models") / "tiny-bart", etenders_texts, TINY, seed=7)


@pytest.fixture(scope="session")
def tiny_summariser(tiny_model_dir: Path) -> TransformerSummariser:
    summariser = load_summariser(tiny_config(tiny_model_dir))
    assert isinstance(summariser, TransformerSummariser)
    return summariser
