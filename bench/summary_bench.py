"""Summariser benchmark: summaries per second of the extractive backend over real eTenders texts, and of the
transformers backend with a model of facebook/bart-large-cnn's size and shape (random weights, built from its
config, saved, then loaded through load_summariser like a real model). Prints figures; asserts nothing.

    .venv/bin/python -m bench.summary_bench                  # 3-4 minutes on 2 cores
    .venv/bin/python -m bench.summary_bench --skip-transformers --texts 4294

Random weights never choose to stop, so every generated summary runs to the token limit: the transformers figures
are for summaries of exactly that many tokens (bart-large-cnn's own summaries stop between its min_length 56 and
max_length 142).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

from bench.args import positive
from streams.summaries.base import SummariserConfig
from streams.summaries.extractive import split_sentences
from streams.summaries.factory import load_summariser

ROOT = Path(__file__).resolve().parent.parent
# All 4,294 real advertised eTenders tenders live beside the repository; the repository's own 200 are the fallback.
SHARED_DATA = ROOT.parent / "shared" / "data" / "za_etenders_advertised.ocds.jsonl"
REPO_DATA = ROOT / "data" / "za_etenders_portal_200.ocds.jsonl"
# (num_beams, summary tokens, texts per generate batch; 0 = all in one): bart-large-cnn's defaults (4 beams,
# max_length 142), a shorter summary, greedy search, and one text at a time (a lone tender event's latency).
GENERATION_SETTINGS = [(4, 142, 0), (4, 60, 0), (1, 142, 0), (1, 60, 0), (4, 142, 1)]
# One-at-a-time runs cost a batch's time per text: fewer texts keep the bench short.
SINGLE_TEXTS = 2


def bench_extractive(texts: list[str], long_texts: list[str], repeats: int) -> None:
    summariser = load_summariser(SummariserConfig())
    print(f"extractive ({summariser.model_used}), one core, pure Python:")
    for label, batch in (("first", texts), ("longest (>= 6 sentences)", long_texts)):
        sentences = sum(len(split_sentences(t)) for t in batch)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            summaries = summariser.summarise_batch(batch)
            times.append(time.perf_counter() - start)
        best, median = min(times), statistics.median(times)
        kept = sum(len(s) for s in summaries) / sum(len(t) for t in batch)
        print(
            f"  {label} {len(batch):,} texts ({sentences / len(batch):.1f} sentences and "
            f"{sum(len(t) for t in batch) / len(batch):.0f} chars mean): {len(batch) / median:,.0f} summaries/s, "
            f"median of {repeats} runs (best {len(batch) / best:,.0f}); summaries keep {kept:.0%} of the characters"
        )


def bench_transformers(texts: list[str], sample: int, model_dir: Path | None, tokenizer_vocab: int) -> None:
    import torch

    from devtools.tiny_bart import BART_LARGE_CNN, build_bart
    from streams.summaries.transformer import TransformerSummariser

    step = max(1, len(texts) // sample)
    chosen = texts[::step][:sample]
    with tempfile.TemporaryDirectory(prefix="summary-bench-") as tmp:
        if model_dir is None:
            start = time.perf_counter()
            model_dir = build_bart(
                Path(tmp) / "bart-large-cnn-shape", texts, BART_LARGE_CNN, tokenizer_vocab=tokenizer_vocab
            )
            size = sum(f.stat().st_size for f in model_dir.iterdir()) / 1e9
            print(
                f"transformers: built a random-weight BART of bart-large-cnn's shape ({BART_LARGE_CNN}) with a "
                f"{tokenizer_vocab:,}-token byte-level BPE trained on the texts, saved {size:.2f} GB in "
                f"{time.perf_counter() - start:.1f} s"
            )
        print(f"  torch {torch.__version__}, {torch.get_num_threads()} intra-op threads, CPU")
        warmed = False
        for beams, tokens, batch_size in GENERATION_SETTINGS:
            batch = chosen if batch_size == 0 else chosen[:SINGLE_TEXTS]
            config = SummariserConfig(
                backend="transformers",
                model=str(model_dir),
                max_summary_tokens=tokens,
                num_beams=beams,
                batch_size=batch_size or len(batch),
            )
            start = time.perf_counter()
            summariser = load_summariser(config)
            loaded = time.perf_counter() - start
            assert isinstance(summariser, TransformerSummariser)
            if not warmed:  # the first generate pays one-off kernel set-up; keep it out of the figures
                summariser.summarise_batch(batch[:1])
                warmed = True
            input_tokens = [summariser.count_tokens(t) for t in batch]
            start = time.perf_counter()
            results = summariser.summarise_detailed(batch)
            elapsed = time.perf_counter() - start
            chunks = sum(r.chunks for r in results)
            grouping = "one at a time" if batch_size == 1 else "in one batch"
            print(
                f"  num_beams={beams} summary={tokens} tokens, {len(batch)} texts {grouping} "
                f"(input {min(input_tokens)}-{max(input_tokens)} tokens, {chunks} chunks): "
                f"{len(batch) / elapsed:.3f} summaries/s, {elapsed / len(batch):.1f} s per summary, "
                f"{len(batch) * tokens / elapsed:.1f} generated tokens/s (load + fingerprint {loaded:.1f} s)"
            )
            del summariser, results  # free this model before the next one loads
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"  peak RSS of the bench process {peak:,.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="OCDS JSON lines (default: shared eTenders export)")
    parser.add_argument("--texts", type=positive, default=1000, help="texts for the extractive backend")
    parser.add_argument("--repeats", type=positive, default=3, help="extractive runs (median reported)")
    parser.add_argument("--model-texts", type=positive, default=8, help="texts for each transformers setting")
    parser.add_argument("--model-dir", type=Path, default=None, help="reuse a saved model instead of building one")
    parser.add_argument("--tokenizer-vocab", type=positive, default=16000, help="BPE vocabulary of the built tokenizer")
    parser.add_argument("--skip-transformers", action="store_true")
    args = parser.parse_args()

    from devtools.tiny_bart import ocds_texts

    data = args.data or (SHARED_DATA if SHARED_DATA.exists() else REPO_DATA)
    texts = ocds_texts(data)
    print(f"data: {data} ({len(texts):,} tenders, SummaryInput.text() of each)")
    started = time.perf_counter()
    long_texts = [t for t in texts if len(split_sentences(t)) >= 6]
    bench_extractive(texts[: args.texts], long_texts, args.repeats)
    if not args.skip_transformers:
        bench_transformers(texts, args.model_texts, args.model_dir, args.tokenizer_vocab)
    print(f"bench finished in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
