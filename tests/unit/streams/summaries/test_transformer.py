"""Transformers backend through the real loading path, on a tiny BART saved to disk: loading and its failures,
chunking of texts longer than the model's input, batching, determinism and thread safety."""

from __future__ import annotations

import itertools
import logging
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from streams.summaries.base import ModelLoadError, Summariser, SummariserConfig, SummaryInput
from streams.summaries.extractive import split_sentences
from streams.summaries.factory import load_summariser
from streams.summaries.transformer import TransformerSummariser
from tests.unit.streams.summaries.support import TINY_SUMMARY_TOKENS, read_releases, tiny_config


def test_loads_saved_model_through_the_factory(tiny_summariser: TransformerSummariser, tiny_model_dir: Path) -> None:
    assert isinstance(tiny_summariser, Summariser)
    assert tiny_summariser.name == "transformers"
    assert tiny_summariser.max_input_tokens == 128  # the model's max_position_embeddings
    assert tiny_summariser.model_used.startswith(f"transformers:{tiny_model_dir.name}@")
    assert tiny_summariser.model_used.endswith(f":in=128:out={TINY_SUMMARY_TOKENS}:beams=2:rounds=3")


def test_model_used_follows_the_weights_not_the_path(
    tiny_summariser: TransformerSummariser, tiny_model_dir: Path, tmp_path: Path, etenders_texts: list[str]
) -> None:
    from devtools.tiny_bart import TINY, build_bart

    copy = shutil.copytree(tiny_model_dir, tmp_path / tiny_model_dir.name)
    assert load_summariser(tiny_config(copy)).model_used == tiny_summariser.model_used

    retrained = build_bart(tmp_path / "other" / tiny_model_dir.name, etenders_texts, TINY, seed=8)
    assert load_summariser(tiny_config(retrained)).model_used != tiny_summariser.model_used


def test_missing_model_directory_says_so(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist: point the summariser model setting at a directory"):
        load_summariser(SummariserConfig(backend="transformers", model=str(tmp_path / "no-such-model")))


def test_directory_without_config_json_says_what_it_must_hold(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(b"\x00" * 64)
    with pytest.raises(ModelLoadError, match=r"has no config\.json: it must hold what tokenizer\.save_pretrained"):
        load_summariser(SummariserConfig(backend="transformers", model=str(tmp_path)))


def test_garbage_config_is_a_load_error_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{ this is not json", encoding="utf-8")
    with pytest.raises(ModelLoadError, match=r"cannot load summarisation model .*re-save the model there"):
        load_summariser(SummariserConfig(backend="transformers", model=str(tmp_path)))


def test_truncated_weights_are_a_load_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    broken = shutil.copytree(tiny_model_dir, tmp_path / "broken")
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ModelLoadError, match="cannot load summarisation model"):
        load_summariser(tiny_config(broken))


def test_model_name_not_in_the_local_cache_is_a_load_error_with_the_fix() -> None:
    config = SummariserConfig(
        backend="transformers", model="tenderhub-tests/no-such-model", local_files_only=True, max_summary_tokens=24
    )
    with pytest.raises(ModelLoadError, match=r"must already be in the Hugging Face cache .*HF_HUB_OFFLINE=1"):
        load_summariser(config)


def test_settings_that_do_not_fit_the_model_are_rejected_at_load(tiny_model_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"max_input_tokens \(512\) exceeds what model .* accepts \(128\)"):
        load_summariser(tiny_config(tiny_model_dir, max_input_tokens=512, max_summary_tokens=24))
    # bart-large-cnn's 142-token summaries cannot come out of 128-token chunks and converge.
    with pytest.raises(ModelLoadError, match=r"max_summary_tokens \(142\) must be at most half of the model input"):
        load_summariser(tiny_config(tiny_model_dir, max_summary_tokens=142))


def test_missing_ml_packages_are_a_load_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "streams.summaries.transformer", None)  # import now raises ImportError
    with pytest.raises(ModelLoadError, match="needs the ml extra"):
        load_summariser(SummariserConfig(backend="transformers"))


def test_long_text_is_cut_into_sentence_aligned_chunks_that_fit(
    tiny_summariser: TransformerSummariser, uk_long_texts: list[str]
) -> None:
    budget = tiny_summariser.max_input_tokens - 2  # <s> and </s>
    tokenizer = tiny_summariser.tokenizer
    for text in uk_long_texts:
        chunks = tiny_summariser.chunk_token_ids(text)
        assert len(chunks) >= 5
        assert all(0 < len(c) <= budget for c in chunks)
        # No token lost or repeated.
        assert [t for c in chunks for t in c] == tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
        # Cuts fall between words: no chunk starts inside a word.
        for before, chunk in itertools.pairwise(chunks):
            last, first = str(tokenizer.decode(before[-1:])), str(tokenizer.decode(chunk[:1]))
            assert last[-1:].isspace() or first[:1].isspace(), f"cut inside a word: {last!r} | {first!r}"


def test_chunks_of_etenders_text_with_line_breaks_start_at_sentences(
    tiny_summariser: TransformerSummariser, etenders_texts: list[str]
) -> None:
    tokenizer = tiny_summariser.tokenizer
    longest = sorted(etenders_texts, key=len)[-5:]
    starts = 0
    for text in longest:
        chunks = tiny_summariser.chunk_token_ids(text)
        assert len(chunks) >= 2
        assert [t for c in chunks for t in c] == tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
        sentences = split_sentences(text)
        starts += sum(any(s.startswith(str(tokenizer.decode(c)).strip()[:20]) for s in sentences) for c in chunks[1:])
    # Most cuts fall where a sentence starts (a sentence longer than half a chunk is cut between words).
    assert starts >= 10


def test_short_text_is_one_chunk(tiny_summariser: TransformerSummariser) -> None:
    assert len(tiny_summariser.chunk_token_ids("Supply of medical locums to Western Cape hospitals.")) == 1


def test_long_texts_are_summarised_chunk_by_chunk_then_combined(
    tiny_summariser: TransformerSummariser, uk_long_texts: list[str]
) -> None:
    results = tiny_summariser.summarise_detailed(uk_long_texts)

    assert len(results) == len(uk_long_texts)
    for result, text in zip(results, uk_long_texts, strict=True):
        assert result.text
        assert result.chunks == len(tiny_summariser.chunk_token_ids(text)) >= 5
        assert result.input_tokens > tiny_summariser.max_input_tokens
        # Several chunk summaries of up to 24 tokens do not fit 126 tokens once joined: summarised again.
        assert result.rounds >= 2
        assert tiny_summariser.count_tokens(result.text) <= tiny_summariser.max_input_tokens - 2


def test_rounds_are_bounded(tiny_model_dir: Path, uk_long_texts: list[str], caplog: pytest.LogCaptureFixture) -> None:
    one_round = load_summariser(tiny_config(tiny_model_dir, max_rounds=1))
    assert isinstance(one_round, TransformerSummariser)
    with caplog.at_level(logging.WARNING, logger="streams.summaries.transformer"):
        [result] = one_round.summarise_detailed(uk_long_texts[:1])
    assert result.rounds == 1
    assert "after 1 rounds: kept as is" in caplog.text


def test_batch_keeps_order_and_matches_one_by_one(
    tiny_summariser: TransformerSummariser, etenders_texts: list[str], uk_long_texts: list[str]
) -> None:
    texts = [uk_long_texts[0], "", *etenders_texts[:9], uk_long_texts[1]]

    batch = tiny_summariser.summarise_batch(texts)

    assert len(batch) == len(texts)
    assert batch[1] == ""
    assert all(batch[i] for i in range(len(texts)) if i != 1)
    assert batch == [tiny_summariser.summarise_batch([t])[0] for t in texts]


def test_deterministic_across_calls_and_reloads(
    tiny_summariser: TransformerSummariser, tiny_model_dir: Path, etenders_texts: list[str]
) -> None:
    texts = etenders_texts[:12]
    first = tiny_summariser.summarise_batch(texts)

    assert tiny_summariser.summarise_batch(texts) == first
    assert load_summariser(tiny_config(tiny_model_dir)).summarise_batch(texts) == first


def test_greedy_search_works_too(tiny_model_dir: Path, etenders_texts: list[str]) -> None:
    greedy = load_summariser(tiny_config(tiny_model_dir, num_beams=1, batch_size=16))
    assert greedy.model_used.endswith(":beams=1:rounds=3")
    assert all(greedy.summarise_batch(etenders_texts[:16]))


def test_concurrent_callers_get_the_same_summaries(
    tiny_summariser: TransformerSummariser, etenders_texts: list[str]
) -> None:
    batches = [etenders_texts[i : i + 4] for i in range(0, 32, 4)]
    expected = [tiny_summariser.summarise_batch(b) for b in batches]

    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(tiny_summariser.summarise_batch, batches))

    assert got == expected


def test_summary_input_of_a_real_release_goes_through(tiny_summariser: TransformerSummariser) -> None:
    release = read_releases("uk_long_descriptions.ocds.jsonl")[-1]
    [summary] = tiny_summariser.summarise_batch([SummaryInput.from_ocds(1, release).text()])
    assert summary
