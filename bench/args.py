"""Argument types the benchmarks share: a count or a length that must be positive is refused at the command line
with a clear message, not met later as a division by zero or an empty median."""

from __future__ import annotations

import argparse
import math


def _whole(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
    return value


def positive(text: str) -> int:
    """A whole number of at least 1."""
    return _whole(text, 1)


def non_negative(text: str) -> int:
    """A whole number of at least 0 (0 = skip)."""
    return _whole(text, 0)


def positive_float(text: str) -> float:
    """A finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text!r}")
    return value


def positive_list(text: str) -> list[int]:
    """Comma-separated whole numbers of at least 1 ("1000,5000"); empty text is an empty list."""
    return [positive(part.strip()) for part in text.split(",") if part.strip()]
