"""Free ports for services a test starts itself (a cluster's nodes on a port block of their own)."""

from __future__ import annotations

import random
import socket
from collections.abc import Sequence


def free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def port_block(offsets: Sequence[int], low: int = 20_000, high: int = 40_000) -> int:
    """A base port such that base + each offset is free (the layout of a cluster's nodes)."""
    for _ in range(200):
        base = random.randrange(low, high)
        if all(free(base + d) for d in offsets):
            return base
    raise RuntimeError(f"no free port block for offsets {list(offsets)}")
