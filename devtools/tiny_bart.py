"""Builds randomly initialised BART models with a tokenizer trained on real tender texts, saved like a downloaded
model, so tests and the summary bench exercise the real loading path without reaching a model hub.

The summaries they write are noise (the weights are random); their shapes and speed are real.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import BartConfig, BartForConditionalGeneration, GenerationConfig, PreTrainedTokenizerFast

from streams.summaries.base import SummaryInput

# BART's special tokens and ids: <s>=0, <pad>=1, </s>=2, <unk>=3 (real BART puts <mask> last; here it is 4).
SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
BOS, PAD, EOS = 0, 1, 2
_TOKEN_ROLES = {
    "bos_token": "<s>",
    "eos_token": "</s>",
    "pad_token": "<pad>",
    "unk_token": "<unk>",
    "mask_token": "<mask>",
    "cls_token": "<s>",
    "sep_token": "</s>",
}


@dataclass(frozen=True)
class BartShape:
    """Architecture of a BART model; `vocab_size` None means the tokenizer's vocabulary size."""

    d_model: int
    encoder_layers: int
    decoder_layers: int
    attention_heads: int
    ffn_dim: int
    max_position_embeddings: int
    vocab_size: int | None = None
    # bart-large-cnn's generation_config.json says min_length 56; a tiny test model needs none.
    min_length: int = 0


# Small enough to build, save and load in well under a second; 128 positions so ordinary texts need chunking.
TINY = BartShape(
    d_model=32, encoder_layers=1, decoder_layers=1, attention_heads=2, ffn_dim=64, max_position_embeddings=128
)
# facebook/bart-large-cnn's config.json (406M parameters).
BART_LARGE_CNN = BartShape(
    d_model=1024,
    encoder_layers=12,
    decoder_layers=12,
    attention_heads=16,
    ffn_dim=4096,
    max_position_embeddings=1024,
    vocab_size=50264,
    min_length=56,
)


def ocds_texts(path: Path, limit: int | None = None) -> list[str]:
    """`SummaryInput.text()` of each release in an OCDS JSON-lines file (at most `limit`)."""
    texts: list[str] = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if limit is not None and len(texts) >= limit:
                break
            if line.strip():
                texts.append(SummaryInput.from_ocds(n, json.loads(line)).text())
    return texts


def train_tokenizer(
    texts: Iterable[str], vocab_size: int = 2000, model_max_length: int = 1024
) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (BART's kind) trained on `texts`, with BART's special tokens and template."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    # <s> text </s>, like BART; trimmed offsets keep a token's leading space out of its character span.
    tok.post_processor = processors.RobertaProcessing(("</s>", EOS), ("<s>", BOS), trim_offsets=True)
    # The tokenizer backend's __init__ takes untyped **kwargs.
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok, model_max_length=model_max_length, **_TOKEN_ROLES
    )


def build_bart(
    out_dir: Path,
    texts: Iterable[str],
    shape: BartShape = TINY,
    *,
    tokenizer_vocab: int = 2000,
    seed: int = 0,
) -> Path:
    """Train a tokenizer on `texts`, build a BART of `shape` with weights drawn from `seed`, and save both into
    `out_dir` as save_pretrained does for a real model. Returns `out_dir`."""
    tokenizer = train_tokenizer(texts, tokenizer_vocab, shape.max_position_embeddings)
    config = BartConfig(
        vocab_size=shape.vocab_size or len(tokenizer),
        d_model=shape.d_model,
        encoder_layers=shape.encoder_layers,
        decoder_layers=shape.decoder_layers,
        encoder_attention_heads=shape.attention_heads,
        decoder_attention_heads=shape.attention_heads,
        encoder_ffn_dim=shape.ffn_dim,
        decoder_ffn_dim=shape.ffn_dim,
        max_position_embeddings=shape.max_position_embeddings,
        pad_token_id=PAD,
        bos_token_id=BOS,
        eos_token_id=EOS,
        decoder_start_token_id=EOS,
        forced_eos_token_id=EOS,
    )
    # A private RNG state: building a model must not change the caller's random stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BartForConditionalGeneration(config)
    # bart-large-cnn's generation_config.json, apart from min_length (see BartShape).
    model.generation_config = GenerationConfig.from_dict(
        {
            "bos_token_id": BOS,
            "pad_token_id": PAD,
            "eos_token_id": EOS,
            "decoder_start_token_id": EOS,
            "forced_bos_token_id": BOS,
            "forced_eos_token_id": EOS,
            "early_stopping": True,
            "length_penalty": 2.0,
            "max_length": 142,
            "min_length": shape.min_length,
            "no_repeat_ngram_size": 3,
            "num_beams": 4,
        }
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out_dir)
    model.save_pretrained(out_dir)
    return out_dir
