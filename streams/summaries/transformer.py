"""Abstractive summariser on a Hugging Face seq2seq model (BART by default): loads tokenizer and model once, splits
texts longer than the model's input into sentence-aligned token chunks, batches the chunks through `generate`, and
joins the chunk summaries (summarising the joined text again while it is still longer than the model's input)."""

from __future__ import annotations

import bisect
import copy
import hashlib
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, GenerationConfig, PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from streams.summaries.base import GenerationError, ModelLoadError, SummariserConfig, SummariserConfigError
from streams.summaries.extractive import sentence_spans

log = logging.getLogger(__name__)

# Tokenizers report "no limit" as a huge sentinel (int(1e30)); anything above this is not a real limit.
_NO_LIMIT = 1_000_000
_PATH_PREFIXES = ("/", "./", "../", "~")


@dataclass(frozen=True)
class SummaryResult:
    """One summary and how it was made: tokens of the input, chunks in the first round, rounds of generate."""

    text: str
    input_tokens: int
    chunks: int
    rounds: int


class TransformerSummariser:
    """A loaded seq2seq model behind the Summariser contract. Build it with `load` (or `load_summariser`).

    Thread safety: one lock serialises whole batches. A fast tokenizer is a Rust object that raises "Already
    borrowed" when two threads use it at once, and `generate` on CPU already spreads over every core through torch's
    intra-op threads, so concurrent batches would only contend. Scale out with processes, each loading its own copy.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        model: PreTrainedModel,
        config: SummariserConfig,
        *,
        model_used: str,
        max_input_tokens: int,
        specials: tuple[list[int], list[int]],
    ) -> None:
        self._tokenizer = tokenizer
        self._model = model
        self._config = config
        self._model_used = model_used
        self._max_input_tokens = max_input_tokens
        self._prefix, self._suffix = specials
        self._chunk_tokens = max_input_tokens - len(self._prefix) - len(self._suffix)
        self._device = torch.device(config.device)
        self._generation = _generation_config(model.generation_config, config)
        pad = tokenizer.pad_token_id
        if not isinstance(pad, int):
            raise ModelLoadError("the summarisation tokenizer has no pad token, which batching needs")
        self._pad_id = pad
        self._lock = threading.Lock()

    @classmethod
    def load(cls, config: SummariserConfig) -> TransformerSummariser:
        """Load tokenizer and model once. Raises ModelLoadError saying what to fix; never falls back."""
        name = config.model_name
        if name is None:
            raise SummariserConfigError("the transformers summariser needs backend='transformers'")
        path = Path(name).expanduser()
        local = path.is_dir() or name.startswith(_PATH_PREFIXES)
        if local:
            _check_model_dir(path)
        if config.device.startswith("cuda") and not torch.cuda.is_available():
            raise ModelLoadError(
                f"summariser device is {config.device!r} but torch sees no CUDA device: set the device to 'cpu'"
            )
        source = str(path) if local else name
        started = time.perf_counter()
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local or config.local_files_only)
            model = AutoModelForSeq2SeqLM.from_pretrained(source, local_files_only=local or config.local_files_only)
        except Exception as exc:  # transformers raises OSError, ValueError, KeyError, safetensors errors...
            raise ModelLoadError(
                f"cannot load summarisation model {name!r}: {type(exc).__name__}: {exc}. {_load_hint(local)}"
            ) from exc
        if not isinstance(model, PreTrainedModel):
            raise ModelLoadError(f"summarisation model {name!r} loaded as {type(model).__name__}, not a model")
        if tokenizer.pad_token_id is None:
            raise ModelLoadError(
                f"the tokenizer of summarisation model {name!r} has no pad token, which batching needs: "
                "save the tokenizer with a pad_token"
            )
        max_input = _max_input_tokens(name, tokenizer, model, config)
        specials = _special_tokens(tokenizer)
        model.train(False)  # inference mode: no dropout
        # transformers decorates to() with functools.wraps(torch.nn.Module.to), which mypy cannot bind to self.
        model.to(torch.device(config.device))  # type: ignore[arg-type]
        ident = _directory_fingerprint(path) if local else _hub_identity(name, model)
        model_used = (
            f"transformers:{ident}:in={max_input}:out={config.max_summary_tokens}:beams={config.num_beams}"
            f":rounds={config.max_rounds}"
        )
        log.info(
            "summariser loaded %s (%s parameters, %s) on %s in %.1f s",
            model_used,
            f"{model.num_parameters():,}",
            type(model).__name__,
            config.device,
            time.perf_counter() - started,
        )
        return cls(tokenizer, model, config, model_used=model_used, max_input_tokens=max_input, specials=specials)

    @property
    def name(self) -> str:
        return "transformers"

    @property
    def model_used(self) -> str:
        return self._model_used

    @property
    def max_input_tokens(self) -> int:
        """Tokens per chunk fed to the encoder, special tokens included."""
        return self._max_input_tokens

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        return self._tokenizer

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` without special tokens (what chunking and the rounds compare against)."""
        return len(self._tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def chunk_token_ids(self, text: str) -> list[list[int]]:
        """The text's tokens (without special tokens) cut into chunks that fit the model's input. A chunk ends
        before the last sentence that starts in its second half; failing that, before the last word that does; failing
        that, at the token limit."""
        if self._tokenizer.is_fast:
            enc = self._tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
            ids: list[int] = enc["input_ids"]
            offsets: list[tuple[int, int]] = enc["offset_mapping"]
            ends = sorted(end for _, end in offsets)
            # The first token ending after a sentence's first character starts that sentence.
            sentences = sorted({bisect.bisect_right(ends, start) for start, _ in sentence_spans(text)})
            words = [
                k
                for k in range(1, len(offsets))
                if offsets[k][0] > offsets[k - 1][1] or text[offsets[k][0] : offsets[k][0] + 1].isspace()
            ]
        else:
            ids = self._tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
            sentences = words = []
        chunks = []
        start = 0
        while start < len(ids):
            end = min(start + self._chunk_tokens, len(ids))
            if end < len(ids):
                end = _last_between(sentences, start + self._chunk_tokens // 2, end) or (
                    _last_between(words, start + self._chunk_tokens // 2, end) or end
                )
            chunks.append(ids[start:end])
            start = end
        return chunks

    def summarise_batch(self, texts: Sequence[str]) -> list[str]:
        return [r.text for r in self.summarise_detailed(texts)]

    def summarise_detailed(self, texts: Sequence[str]) -> list[SummaryResult]:
        """Like summarise_batch, with token, chunk and round counts for logs and metrics."""
        with self._lock:
            return self._summarise(list(texts))

    def _summarise(self, texts: list[str]) -> list[SummaryResult]:
        # Line breaks stay: they mark sentence ends in eTenders lists, which chunking cuts at.
        current = [t.strip() for t in texts]
        input_tokens = [0] * len(texts)
        first_chunks = [0] * len(texts)
        rounds = [0] * len(texts)
        pending = [i for i, t in enumerate(current) if t]
        while pending:
            chunked = {i: self.chunk_token_ids(current[i]) for i in pending}
            flat = [(i, c) for i in pending for c in chunked[i]]
            summaries = self._generate([c for _, c in flat])
            parts: dict[int, list[str]] = {i: [] for i in pending}
            for (i, _), summary in zip(flat, summaries, strict=True):
                if summary:
                    parts[i].append(summary)
            still = []
            for i in pending:
                if rounds[i] == 0:
                    input_tokens[i] = sum(len(c) for c in chunked[i])
                    first_chunks[i] = len(chunked[i])
                rounds[i] += 1
                joined = " ".join(parts[i])
                current[i] = joined
                if len(chunked[i]) == 1 or not joined:
                    continue
                tokens = self.count_tokens(joined)
                if tokens <= self._chunk_tokens:
                    continue
                if rounds[i] >= self._config.max_rounds:
                    log.warning(
                        "summary of text %d is still %d tokens (model input %d) after %d rounds: kept as is; "
                        "raise max_rounds or max_input_tokens, or lower max_summary_tokens",
                        i,
                        tokens,
                        self._chunk_tokens,
                        rounds[i],
                    )
                    continue
                still.append(i)
            pending = still
        return [
            SummaryResult(current[i], input_tokens[i], first_chunks[i], rounds[i])
            if texts[i].strip()
            # A blank text has nothing to summarise and never reaches the model.
            else SummaryResult("", 0, 0, 0)
            for i in range(len(texts))
        ]

    def _generate(self, chunks: list[list[int]]) -> list[str]:
        """Summaries of the chunks, in order. Batches hold chunks of similar length, so padding stays small."""
        order = sorted(range(len(chunks)), key=lambda k: (len(chunks[k]), k))
        out: list[str] = [""] * len(chunks)
        size = self._config.batch_size
        for b in range(0, len(order), size):
            batch = order[b : b + size]
            inputs = [self._prefix + chunks[k] + self._suffix for k in batch]
            width = max(len(x) for x in inputs)
            # Right padding: the encoder attends only where the mask is 1, so padded and unpadded runs agree.
            ids = torch.tensor([x + [self._pad_id] * (width - len(x)) for x in inputs], device=self._device)
            mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in inputs], device=self._device)
            try:
                with torch.inference_mode():
                    generated = self._model.generate(  # type: ignore[operator]
                        input_ids=ids, attention_mask=mask, generation_config=self._generation
                    )
            except Exception as exc:  # torch.OutOfMemoryError, RuntimeError, ...: the caller's retry policy decides
                raise GenerationError(
                    f"generate failed on {len(batch)} chunks of up to {width} tokens: {type(exc).__name__}: {exc}"
                ) from exc
            sequences = generated if isinstance(generated, torch.Tensor) else generated.sequences
            decoded = self._tokenizer.batch_decode(sequences, skip_special_tokens=True)
            for k, text in zip(batch, decoded, strict=True):
                out[k] = " ".join(text.split())
        return out


def _last_between(points: list[int], low: int, high: int) -> int | None:
    """The largest of the sorted `points` in (low, high], if any."""
    k = bisect.bisect_right(points, high) - 1
    return points[k] if k >= 0 and points[k] > low else None


def _check_model_dir(path: Path) -> None:
    if not path.is_dir():
        raise ModelLoadError(
            f"summarisation model directory {str(path)!r} does not exist: point the summariser model setting at a "
            "directory written by save_pretrained (tokenizer and model), or use the extractive backend"
        )
    if not (path / "config.json").is_file():
        raise ModelLoadError(
            f"summarisation model directory {str(path)!r} has no config.json: it must hold what "
            "tokenizer.save_pretrained and model.save_pretrained write (config.json, tokenizer files, weights)"
        )


def _load_hint(local: bool) -> str:
    if local:
        return (
            "The directory must hold what tokenizer.save_pretrained and model.save_pretrained write "
            "(config.json, tokenizer.json or vocab files, model.safetensors); re-save the model there."
        )
    return (
        "Without access to the model hub, the model must already be in the Hugging Face cache (HF_HOME; set "
        "HF_HUB_OFFLINE=1 to never try the network), or point the summariser model setting at a directory written "
        "by save_pretrained; or use the extractive backend."
    )


def _max_input_tokens(
    name: str, tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel, config: SummariserConfig
) -> int:
    limits = []
    positions = getattr(model.config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        limits.append(positions)
    if isinstance(tokenizer.model_max_length, int) and 0 < tokenizer.model_max_length < _NO_LIMIT:
        limits.append(tokenizer.model_max_length)
    if config.max_input_tokens is not None:
        if limits and config.max_input_tokens > min(limits):
            raise ModelLoadError(
                f"summariser max_input_tokens ({config.max_input_tokens}) exceeds what model {name!r} accepts "
                f"({min(limits)}): lower it or leave it unset"
            )
        chosen = config.max_input_tokens
    elif limits:
        chosen = min(limits)
    else:
        raise ModelLoadError(
            f"model {name!r} declares no input limit (max_position_embeddings, model_max_length): "
            "set the summariser's max_input_tokens"
        )
    if config.max_summary_tokens * 2 > chosen:
        raise ModelLoadError(
            f"summariser max_summary_tokens ({config.max_summary_tokens}) must be at most half of the model input "
            f"({chosen} tokens for {name!r}), or summarising chunk summaries cannot converge: lower it"
        )
    return chosen


def _special_tokens(tokenizer: PreTrainedTokenizerBase) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer wraps one sequence in, as (prefix, suffix): BART <s> ... </s>, T5 ... </s>.
    Found by encoding a probe with and without them, so any tokenizer's template works."""
    plain: list[int] = tokenizer("summary", add_special_tokens=False)["input_ids"]
    full: list[int] = tokenizer("summary", add_special_tokens=True)["input_ids"]
    for at in range(len(full) - len(plain) + 1):
        if full[at : at + len(plain)] == plain:
            return full[:at], full[at + len(plain) :]
    raise ModelLoadError("cannot tell how the tokenizer adds special tokens around a sequence")


def _generation_config(base: GenerationConfig, config: SummariserConfig) -> GenerationConfig:
    """The model's own generation settings (length penalty, no-repeat n-grams, forced BOS/EOS) with ours on top."""
    gen = copy.deepcopy(base)
    # max_length rather than max_new_tokens: setting both (the model's default has max_length) draws a warning on
    # every call. For an encoder-decoder the decoder start token counts, hence + 1.
    gen.max_length = config.max_summary_tokens + 1
    gen.max_new_tokens = None
    if gen.min_length is not None and gen.min_length > gen.max_length:
        gen.min_length = gen.max_length
    gen.num_beams = config.num_beams
    gen.do_sample = False  # greedy or beam search: the same text always gives the same summary
    if config.num_beams == 1:
        # Beam-only settings would draw a warning on every call.
        gen.early_stopping = False
        gen.length_penalty = 1.0
    return gen


def _directory_fingerprint(path: Path) -> str:
    """Directory name and a sha256 of every file in it, so retrained weights at the same path change model_used
    (and with it every content hash). Read once at load (about a second per GB)."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
        digest.update(str(file.relative_to(path)).encode("utf-8") + b"\0")
        with file.open("rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
    return f"{path.resolve().name}@{digest.hexdigest()[:16]}"


def _hub_identity(name: str, model: PreTrainedModel) -> str:
    # The hub cache records the revision the files came from; it pins the weights as well as a hash would.
    commit = getattr(model.config, "_commit_hash", None)
    return f"{name}@{commit[:16]}" if isinstance(commit, str) and commit else name
