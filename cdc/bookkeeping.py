"""What the relay has published, as MySQL sees it: runs of outbox ids in `integration_outbox_published` (binlog mode),
the rows a backfill still has to publish, and the janitor that deletes what was published long enough ago.

Binlog mode records each Kafka commit's ids as inclusive runs, one short row per run, and extends the run it wrote
last while the ids keep following on (so a steady stream is a handful of rows, not one per event). Nothing rewrites
the outbox rows themselves: an UPDATE per row cost MariaDB more CPU than the insert and logged every payload twice
more. The Kafka position stays the truth; these runs are what the janitor, a backfill and an operator go by
(`integration_outbox_status` shows `published` per row from either bookkeeping).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from cdc.position import IdRanges
from schema.mysql import OUTBOX_TABLE, PUBLISHED_TABLE

# A run the recorder extends stops growing at this many ids, so that it ages out of retention in pieces.
MAX_RUN_IDS = 100_000
# Runs (or gaps) per statement: a bounded statement size.
CHUNK = 500
# The largest outbox id (BIGINT UNSIGNED): the open end of the last gap.
MAX_ID = 2**64 - 1

SELECT_COLUMNS = "id, event_type, aggregate_type, aggregate_id, schema_version, payload, created_at"


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> IdRanges:
    """Sorted, disjoint runs covering exactly the ids of `ranges` (overlapping or adjacent runs joined)."""
    out: list[tuple[int, int]] = []
    for first, last in sorted(ranges):
        if out and first <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], last))
        else:
            out.append((first, last))
    return tuple(out)


def gaps(runs: IdRanges) -> list[tuple[int, int]]:
    """The ids (from 1) that merged, sorted `runs` do not cover, as inclusive runs; the last one is open-ended."""
    out, nxt = [], 1
    for first, last in runs:
        if first > nxt:
            out.append((nxt, first - 1))
        nxt = max(nxt, last + 1)
    out.append((nxt, MAX_ID))
    return out


def _where_ids(runs: Sequence[tuple[int, int]]) -> tuple[str, list[int]]:
    return " OR ".join(["id BETWEEN %s AND %s"] * len(runs)), [x for r in runs for x in r]


def record_published(
    conn: Any, source: str, ranges: Iterable[tuple[int, int]], tail: tuple[int, int] | None = None
) -> tuple[int, int] | None:
    """Record `ranges` as published by `source` (idempotent: a run recorded again changes nothing but its time).
    `tail` is the run this recorder wrote last: a run that follows on from it extends it (up to MAX_RUN_IDS ids).
    Returns the new tail: the recorded run that ends highest."""
    runs = list(merge_ranges(ranges))
    if not runs:
        return tail
    ends: list[tuple[int, int]] = []
    with conn.cursor() as cur:
        if tail is not None and runs[0][0] == tail[1] + 1 and runs[0][1] - tail[0] < MAX_RUN_IDS:
            first = runs.pop(0)
            extended = cur.execute(
                f"UPDATE {PUBLISHED_TABLE} SET last_id = GREATEST(last_id, %s), published_at = NOW(3) "
                "WHERE relay_source = %s AND first_id = %s",
                (first[1], source, tail[0]),
            )
            if extended:
                ends.append((tail[0], first[1]))
            else:  # the janitor deleted it (it aged out): a new run
                runs.insert(0, first)
        for i in range(0, len(runs), CHUNK):
            part = runs[i : i + CHUNK]
            cur.execute(
                f"INSERT INTO {PUBLISHED_TABLE} (relay_source, first_id, last_id) VALUES "
                + ", ".join(["(%s, %s, %s)"] * len(part))
                + " ON DUPLICATE KEY UPDATE last_id = GREATEST(last_id, VALUES(last_id)), published_at = NOW(3)",
                [x for first, last in part for x in (source, first, last)],
            )
            ends.extend(part)
    return max(ends, key=lambda run: run[1])


def published_runs(cur: Any) -> IdRanges:
    """Every id any relay source recorded as published, as merged runs."""
    cur.execute(f"SELECT first_id, last_id FROM {PUBLISHED_TABLE}")
    return merge_ranges((int(a), int(b)) for a, b in cur.fetchall())


def select_unpublished(cur: Any, limit: int) -> list[Any]:
    """Up to `limit` outbox rows, in id order, that neither a row flag nor a recorded run marks published (the
    caller's transaction decides the snapshot). Reads only the ids between runs: primary-key ranges, so the cost
    follows the rows still to publish and the number of runs, not the size of the table."""
    rows: list[Any] = []
    holes = gaps(published_runs(cur))
    for i in range(0, len(holes), CHUNK):
        where, args = _where_ids(holes[i : i + CHUNK])
        cur.execute(
            f"SELECT {SELECT_COLUMNS} FROM {OUTBOX_TABLE} WHERE published = FALSE AND ({where}) ORDER BY id LIMIT %s",
            [*args, limit - len(rows)],
        )
        rows.extend(cur.fetchall())
        if len(rows) >= limit:
            break
    return rows


def count_unpublished(cur: Any) -> int:
    """How many outbox rows neither a row flag nor a recorded run marks published (the relay's backlog)."""
    total = 0
    holes = gaps(published_runs(cur))
    for i in range(0, len(holes), CHUNK):
        where, args = _where_ids(holes[i : i + CHUNK])
        cur.execute(f"SELECT COUNT(*) FROM {OUTBOX_TABLE} WHERE published = FALSE AND ({where})", args)
        row = cur.fetchone()
        total += int(row[0]) if row else 0
    return total


def delete_published(conn: Any, retention_hours: float, chunk: int = 10_000) -> int:
    """Delete the outbox rows published more than `retention_hours` ago, in chunks (short locks): the rows of each
    run that old, then the run; and the rows polling mode flagged published that long ago."""
    cutoff = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(hours=retention_hours)
    total = 0
    with conn.cursor() as cur:
        while True:
            cur.execute(
                f"SELECT relay_source, first_id, last_id FROM {PUBLISHED_TABLE} WHERE published_at < %s "
                "ORDER BY published_at LIMIT %s",
                (cutoff, CHUNK),
            )
            old = [(str(s), int(a), int(b)) for s, a, b in cur.fetchall()]
            if not old:
                break
            where, args = _where_ids(merge_ranges((a, b) for _, a, b in old))
            while True:
                n = int(cur.execute(f"DELETE FROM {OUTBOX_TABLE} WHERE {where} LIMIT %s", [*args, chunk]))
                total += n
                if n < chunk:
                    break
            keys = " OR ".join(["(relay_source = %s AND first_id = %s)"] * len(old))
            # Only runs still that old: one the recorder extended meanwhile keeps its (new) rows until they age.
            cur.execute(
                f"DELETE FROM {PUBLISHED_TABLE} WHERE published_at < %s AND ({keys})",
                [cutoff, *(x for s, a, _ in old for x in (s, a))],
            )
        while True:
            n = int(
                cur.execute(
                    f"DELETE FROM {OUTBOX_TABLE} WHERE published = TRUE AND created_at < %s LIMIT %s", (cutoff, chunk)
                )
            )
            total += n
            if n < chunk:
                return total
