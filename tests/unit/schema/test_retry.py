"""The one backoff primitive (schema.retry) that the relay, the batch runner and the sinks share."""

from __future__ import annotations

import pytest

from schema.retry import backoff_delay


def test_delays_double_from_the_base_up_to_the_cap_with_half_kept() -> None:
    def top(lo: float, hi: float) -> float:
        return hi

    assert [backoff_delay(n, 0.5, 10.0, top) for n in range(1, 7)] == pytest.approx([0.5, 1, 2, 4, 8, 10])
    assert backoff_delay(4, 0.5, 10.0, lambda lo, hi: lo) == pytest.approx(2.0)


def test_an_endless_retry_never_overflows() -> None:
    # A store down for a day: the attempt count grows without bound, the delay stays at the cap.
    assert backoff_delay(100_000, 0.4, 30.0, lambda lo, hi: hi) == 30.0


@pytest.mark.parametrize("attempt", [0, -1])
def test_attempts_count_from_one(attempt: int) -> None:
    with pytest.raises(ValueError, match="attempt"):
        backoff_delay(attempt, 0.5, 10.0)
