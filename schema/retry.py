"""The one backoff primitive every package may import: the relay's reconnects, the worker's endless retry of a
batch while a store is down, and the sinks' bounded retries (sinks/retry.py) all wait this long."""

from __future__ import annotations

import random
from collections.abc import Callable

Jitter = Callable[[float, float], float]

# Past this many doublings every delay is at its cap anyway (2^60 times any sane base); the exponent stops here so
# that an endless retry (a store down for days) never overflows a float.
_MAX_DOUBLINGS = 60


def backoff_delay(attempt: int, base_delay_s: float, max_delay_s: float, jitter: Jitter = random.uniform) -> float:
    """Delay after failed attempt number `attempt` (1-based): doubling from `base_delay_s`, capped at `max_delay_s`,
    with "equal jitter": half the delay is kept so retries never collapse to zero, the random half spreads processes
    that failed together."""
    if attempt < 1:
        raise ValueError(f"attempt counts from 1, got {attempt}")
    ceiling = min(max_delay_s, base_delay_s * 2 ** min(attempt - 1, _MAX_DOUBLINGS))
    return jitter(ceiling / 2, ceiling)
