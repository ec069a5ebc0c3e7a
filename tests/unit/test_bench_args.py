"""Benchmarks refuse counts and lengths that cannot be measured, at the command line (bench/args.py)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from bench.args import non_negative, positive, positive_float, positive_list

ROOT = Path(__file__).resolve().parents[2]


def test_positive_counts() -> None:
    assert positive("1") == 1 and positive("20000") == 20_000
    for bad in ("0", "-3", "1.5", "x", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            positive(bad)


def test_non_negative_counts_allow_zero_for_skip() -> None:
    assert non_negative("0") == 0 and non_negative("7") == 7
    for bad in ("-1", "two"):
        with pytest.raises(argparse.ArgumentTypeError):
            non_negative(bad)


def test_positive_floats_are_finite() -> None:
    assert positive_float("0.5") == 0.5
    for bad in ("0", "-2", "nan", "inf", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            positive_float(bad)


def test_positive_lists() -> None:
    assert positive_list("1000, 5000,") == [1000, 5000]
    assert positive_list("") == []
    for bad in ("1000,0", "1,-2", "1,x"):
        with pytest.raises(argparse.ArgumentTypeError):
            positive_list(bad)


@pytest.mark.parametrize(
    ("bench", "args", "message"),
    [
        ("worker_bench", ["--batch-sizes", "1000,0"], "argument --batch-sizes: must be at least 1, got 0"),
        ("worker_bench", ["--activity", "0"], "argument --activity: must be at least 1, got 0"),
        ("relay_bench", ["--rates", "x"], "argument --rates: not a whole number: 'x'"),
        ("readiness_bench", ["--runs", "0"], "argument --runs: must be at least 1, got 0"),
        ("read_bench", ["--seconds", "nan"], "argument --seconds: must be a finite number above 0"),
    ],
)
def test_a_bench_refuses_an_unmeasurable_run_before_it_starts(bench: str, args: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{bench}", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr[-500:]
    assert message in done.stderr, done.stderr[-500:]
