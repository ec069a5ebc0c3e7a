"""KRaft cluster ids the storage tool accepts."""

from __future__ import annotations

import base64

from tenderhub.stack import new_cluster_id


def test_cluster_ids_never_start_with_a_dash() -> None:
    # 1 in 64 raw ids would: 20,000 draws make a regression practically certain to show.
    ids = [new_cluster_id() for _ in range(20_000)]
    assert not any(i.startswith("-") for i in ids)
    assert all(len(base64.urlsafe_b64decode(i + "==")) == 16 for i in ids[:100])
