"""Builds the configured summariser once at start-up: the extractive backend when no model is configured, the
transformers backend (loaded eagerly, so a model that cannot load stops start-up) when the configuration says so."""

from __future__ import annotations

import logging

from streams.summaries.base import ModelLoadError, Summariser, SummariserConfig
from streams.summaries.extractive import ExtractiveSummariser

log = logging.getLogger(__name__)


def load_summariser(config: SummariserConfig | None = None) -> Summariser:
    """The summariser `config` asks for (default: extractive). Raises ModelLoadError when the transformers backend
    cannot load its model or is not installed; there is deliberately no fallback to the extractive backend."""
    config = config or SummariserConfig()
    if config.backend == "extractive":
        summariser = ExtractiveSummariser(sentences=config.sentences)
        log.info("summariser: %s", summariser.model_used)
        return summariser
    try:
        # Imported here: torch and transformers take seconds and gigabytes to import, which the extractive backend
        # (and every process that never summarises) should not pay.
        from streams.summaries.transformer import TransformerSummariser
    except ImportError as exc:
        raise ModelLoadError(
            f"the transformers summariser backend needs the ml extra (torch, transformers, tokenizers): install "
            f"requirements.lock or `pip install 'tenderhub[ml]'`, or use the extractive backend ({exc})"
        ) from exc
    return TransformerSummariser.load(config)
