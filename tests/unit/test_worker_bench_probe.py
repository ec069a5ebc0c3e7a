"""The worker bench's activity-log probe must not report a stored document as missing (bench/worker_bench.py)."""

from __future__ import annotations

from typing import Any

from bench.worker_bench import _after_record_id


class Table:
    """FerretDB's table of a capped collection: (record id, event id, occurred_at ms) rows, visible once committed."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, int, int]] = []

    def commit(self, *rows: tuple[int, int]) -> None:
        self.rows.extend((record, event, event * 1000) for record, event in rows)

    def execute(self, query: Any, params: tuple[int]) -> Any:
        table = self

        class Result:
            def fetchall(self) -> list[tuple[int, int, int]]:
                return sorted(r for r in table.rows if r[0] > params[0])

        return Result()

    def by_id(self, ids: list[int]) -> list[tuple[int, int]]:
        return [(event, ms) for _, event, ms in self.rows if event in ids]


def test_a_document_committed_behind_the_cursor_with_the_highest_event_id_is_still_found() -> None:
    """Two inserts of one batch at once: the first (record ids 1-2) holds events 4 and 1, the second (record ids
    3-4) events 2 and 3 and commits first. The cursor passes record id 2 before its insert commits; event 4, the
    highest of all, was still reported missing at the end of a run."""
    table, pending = Table(), {1, 2, 3, 4}
    fetch = _after_record_id(table.execute, "q", table.by_id, pending)
    seen: set[int] = set()

    def poll() -> None:
        for event, _ in fetch():
            seen.add(event)
            pending.discard(event)

    table.commit((3, 2), (4, 3))
    poll()
    assert seen == {2, 3}
    table.commit((1, 4), (2, 1))
    poll()  # nothing new past the cursor: the idle poll looks every pending event up
    assert seen == {1, 2, 3, 4} and not pending
