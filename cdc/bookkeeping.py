"""What the relay has published, as MySQL sees it: runs of outbox ids in `integration_outbox_published` (binlog mode),
the rows a backfill still has to publish, and the janitor that removes what was published long enough ago: whole
partitions of the outbox (migration 0003) through the definer procedures `migrate` creates, or row by row where a
partition still holds rows no relay published, or the outbox is not partitioned.

Binlog mode records each Kafka commit's ids as inclusive runs, one short row per run, and extends the run it wrote
last while the ids keep following on (so a steady stream is a handful of rows, not one per event). Nothing rewrites
the outbox rows themselves: an UPDATE per row cost MariaDB more CPU than the insert and logged every payload twice
more. The Kafka position stays the truth; these runs are what the janitor, a backfill and an operator go by
(`integration_outbox_status` shows `published` per row from either bookkeeping).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from cdc.position import IdRanges
from schema.mysql import ADD_PARTITION_PROC, DROP_PARTITION_PROC, OUTBOX_TABLE, PUBLISHED_TABLE

# A run the recorder extends stops growing at this many ids, so that it ages out of retention in pieces.
MAX_RUN_IDS = 100_000
# Runs (or gaps) per statement: a bounded statement size.
CHUNK = 500
# The largest outbox id (BIGINT UNSIGNED): the open end of the last gap.
MAX_ID = 2**64 - 1

SELECT_COLUMNS = "id, event_type, aggregate_type, aggregate_id, schema_version, payload, created_at"
# Partitions the janitor keeps ready above the ids in use (splitting an empty partition costs nothing; rows that
# outrun them land in the last partition, and the next split copies them once).
AHEAD = 8


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


def _id_filters(runs: Sequence[tuple[int, int]]) -> Iterator[tuple[str, list[int]]]:
    """`id BETWEEN` filters (SQL, arguments) over `runs`, CHUNK runs a statement."""
    for i in range(0, len(runs), CHUNK):
        yield _where_ids(runs[i : i + CHUNK])


def _delete_ids(cur: Any, runs: Sequence[tuple[int, int]], chunk: int) -> int:
    """Delete the outbox rows of `runs`, at most `chunk` rows a statement (short locks)."""
    total = 0
    for where, args in _id_filters(runs):
        while True:
            n = int(cur.execute(f"DELETE FROM {OUTBOX_TABLE} WHERE {where} LIMIT %s", [*args, chunk]))
            total += n
            if n < chunk:
                break
    return total


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


def select_unpublished(cur: Any, limit: int, lock: str = "") -> list[Any]:
    """Up to `limit` outbox rows, in id order, that neither a row flag nor a recorded run marks published (the
    caller's transaction decides the snapshot; `lock` is appended to each SELECT, e.g. polling mode's "FOR UPDATE
    SKIP LOCKED"). Reads only the ids between runs: primary-key ranges, so the cost follows the rows still to
    publish and the number of runs, not the size of the table."""
    rows: list[Any] = []
    for where, args in _id_filters(gaps(published_runs(cur))):
        cur.execute(
            f"SELECT {SELECT_COLUMNS} FROM {OUTBOX_TABLE} WHERE published = FALSE AND ({where}) ORDER BY id "
            f"LIMIT %s {lock}",
            [*args, limit - len(rows)],
        )
        rows.extend(cur.fetchall())
        if len(rows) >= limit:
            break
    return rows


def count_unpublished(cur: Any) -> int:
    """How many outbox rows neither a row flag nor a recorded run marks published (the relay's backlog)."""
    total = 0
    for where, args in _id_filters(gaps(published_runs(cur))):
        cur.execute(f"SELECT COUNT(*) FROM {OUTBOX_TABLE} WHERE published = FALSE AND ({where})", args)
        row = cur.fetchone()
        total += int(row[0]) if row else 0
    return total


def delete_published(conn: Any, retention_hours: float, chunk: int = 10_000) -> int:
    """Delete the outbox rows published more than `retention_hours` ago, in chunks (short locks): the rows of each
    run that old, then the run; and the rows polling mode flagged published that long ago."""
    cutoff = _cutoff(retention_hours)
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
            total += _delete_ids(cur, merge_ranges((a, b) for _, a, b in old), chunk)
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


def _cutoff(retention_hours: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(hours=retention_hours)


def partitions(cur: Any) -> list[tuple[str, int | None]] | None:
    """The outbox's partitions in order as (name, upper bound; None for the last, MAXVALUE one), or None when the
    table is not partitioned the way migration 0003 does it."""
    cur.execute(
        "SELECT PARTITION_NAME, PARTITION_DESCRIPTION FROM information_schema.PARTITIONS "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s ORDER BY PARTITION_ORDINAL_POSITION",
        (OUTBOX_TABLE,),
    )
    rows = [(str(name) if name is not None else None, str(desc)) for name, desc in cur.fetchall()]
    if not rows or rows[0][0] is None or rows[-1] != ("pmax", "MAXVALUE"):
        return None
    return [(str(name), None if desc == "MAXVALUE" else int(desc)) for name, desc in rows]


def _next_id(cur: Any) -> int:
    cur.execute(
        f"SELECT GREATEST(COALESCE((SELECT MAX(id) FROM {OUTBOX_TABLE}), 0) + 1, COALESCE(AUTO_INCREMENT, 1)) "
        "FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
        (OUTBOX_TABLE,),
    )
    row = cur.fetchone()
    return int(row[0]) if row else 1


def add_partitions_ahead(cur: Any, parts: list[tuple[str, int | None]], size: int) -> list[int]:
    """Split partitions off the last one until AHEAD empty ranges of `size` ids lie above the next id; the first
    split of a table that holds rows takes them all (one copy), every later one splits an empty range."""
    highest = max((bound for _, bound in parts if bound is not None), default=0)
    nxt = _next_id(cur)
    added = []
    while highest < nxt + AHEAD * size:
        bound = max(highest + size, (nxt // size + 1) * size)
        cur.execute(f"CALL {ADD_PARTITION_PROC}(%s)", (bound,))
        added.append(bound)
        highest = bound
    return added


def partition_state(cur: Any, lo: int, hi: int, cutoff: dt.datetime) -> str:
    """What the janitor may do with the partition of ids [lo, hi): "young" (an id of it was handed out, or a run over
    it recorded, less than the retention ago: nothing yet, nor for any later partition), "droppable" (every row in it
    was published that long ago) or "blocked" (old, but rows in it were never published: only its published rows
    may go, row by row)."""
    cur.execute(f"SELECT created_at FROM {OUTBOX_TABLE} WHERE id >= %s ORDER BY id LIMIT 1", (hi,))
    first_above = cur.fetchone()
    if first_above is None or first_above[0] >= cutoff:
        return "young"
    cur.execute(
        f"SELECT first_id, last_id, published_at FROM {PUBLISHED_TABLE} WHERE first_id < %s AND last_id >= %s",
        (hi, lo),
    )
    runs = [(int(a), int(b), when) for a, b, when in cur.fetchall()]
    if any(when >= cutoff for _, _, when in runs):
        return "young"
    holes = [(max(a, lo), min(b, hi - 1)) for a, b in gaps(merge_ranges((a, b) for a, b, _ in runs))]
    for where, args in _id_filters([(a, b) for a, b in holes if a <= b]):
        cur.execute(
            f"SELECT 1 FROM {OUTBOX_TABLE} WHERE ({where}) "
            "AND NOT (published = TRUE AND published_at IS NOT NULL AND published_at < %s) LIMIT 1",
            [*args, cutoff],
        )
        if cur.fetchone() is not None:
            return "blocked"
    return "droppable"


def _delete_published_in(cur: Any, lo: int, hi: int, cutoff: dt.datetime, chunk: int) -> int:
    """Row by row, the rows of [lo, hi) that old runs cover (a blocked partition keeps its unpublished rows)."""
    cur.execute(
        f"SELECT first_id, last_id FROM {PUBLISHED_TABLE} WHERE first_id < %s AND last_id >= %s AND published_at < %s",
        (hi, lo, cutoff),
    )
    return _delete_ids(cur, merge_ranges((max(int(a), lo), min(int(b), hi - 1)) for a, b in cur.fetchall()), chunk)


def drop_published_partitions(
    cur: Any, parts: list[tuple[str, int | None]], retention_hours: float, chunk: int = 10_000
) -> int:
    """Oldest first: drop each partition whose rows were all published more than the retention ago (and the runs
    inside it); from a blocked one delete its published rows; stop at the first young one (ids are handed out in
    order). Returns the rows removed (for dropped partitions the server's estimate)."""
    cutoff = _cutoff(retention_hours)
    removed, lo = 0, 0
    for name, hi in parts:
        if hi is None:
            break
        state = partition_state(cur, lo, hi, cutoff)
        if state == "young":
            break
        if state == "blocked":
            removed += _delete_published_in(cur, lo, hi, cutoff, chunk)
            lo = hi
            continue
        cur.execute(
            "SELECT COALESCE(TABLE_ROWS, 0) FROM information_schema.PARTITIONS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s AND PARTITION_NAME = %s",
            (OUTBOX_TABLE, name),
        )
        row = cur.fetchone()
        cur.execute(f"CALL {DROP_PARTITION_PROC}(%s)", (hi,))
        # The next partition now starts at `lo`: a row written into the dropped range meanwhile lands there.
        cur.execute(f"DELETE FROM {PUBLISHED_TABLE} WHERE first_id >= %s AND last_id < %s", (lo, hi))
        removed += int(row[0]) if row else 0
    return removed


def clean_up(conn: Any, retention_hours: float, partition_ids: int, chunk: int = 10_000) -> int:
    """The janitor. A partitioned outbox (migration 0003): keep empty partitions ready ahead, drop whole partitions
    published long enough ago. Otherwise: delete rows (`delete_published`). Returns the rows removed."""
    with conn.cursor() as cur:
        # A DDL waits for transactions on the outbox and, while it waits, holds up new ones: never for long.
        cur.execute("SET SESSION lock_wait_timeout = 2")
        parts = partitions(cur)
        if parts is None:
            return delete_published(conn, retention_hours, chunk)
        if add_partitions_ahead(cur, parts, partition_ids):
            parts = partitions(cur) or parts
        return drop_published_partitions(cur, parts, retention_hours, chunk)
