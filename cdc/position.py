"""The relay's position: the GTID after the last fully published transaction, plus rows already published of the
transaction in progress. Checkpointing a mid-transaction rows-event position loses rows (no table map on resume),
so the relay always resumes at a transaction boundary and skips the rows it already sent."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass

# source_seq = GTID sequence number << ROW_BITS | row index within the transaction: grows in commit order.
ROW_BITS = 24
MAX_ROWS_PER_TXN = 1 << ROW_BITS


def source_seq(txn_seq: int, row_index: int) -> int:
    if not 0 <= row_index < MAX_ROWS_PER_TXN:
        raise ValueError(f"row index {row_index} exceeds {MAX_ROWS_PER_TXN} outbox rows in one transaction")
    return (txn_seq << ROW_BITS) | row_index


def mariadb_gtid_seq(gtid_state: str, domain: int) -> int:
    """Sequence number of `domain` in a MariaDB GTID state such as '0-1-560,1-2-7' (0 if absent)."""
    for part in filter(None, (p.strip() for p in gtid_state.split(","))):
        m = re.fullmatch(r"(\d+)-(\d+)-(\d+)", part)
        if not m:
            raise ValueError(f"not a MariaDB GTID state: {gtid_state!r}")
        if int(m.group(1)) == domain:
            return int(m.group(3))
    return 0


def replace_domain(gtid_state: str, gtid: str) -> str:
    """The GTID state after `gtid` (domain-server-seq) has been applied to `gtid_state`."""
    domain = gtid.split("-", 1)[0]
    kept = [p for p in (s.strip() for s in gtid_state.split(",")) if p and p.split("-", 1)[0] != domain]
    return ",".join(sorted([*kept, gtid], key=lambda p: int(p.split("-", 1)[0])))


@dataclass(frozen=True, slots=True)
class Position:
    gtid: str  # GTID state to resume from (everything up to it is published)
    seq: int  # sequence number of the last fully published transaction (in the relay's domain)
    txn_seq: int | None = None  # transaction partly published, if any
    rows_done: int = 0  # its outbox rows already published
    # Polling mode: outbox ids of the last committed batch. A crash after the Kafka commit but before the MySQL
    # commit leaves them unmarked; the restart marks them instead of publishing them again.
    last_ids: tuple[int, ...] = ()

    def last_sent(self) -> tuple[int, int]:
        """(txn seq, row index) of the last row published; rows at or before it are skipped on resume."""
        if self.txn_seq is not None and self.rows_done > 0:
            return (self.txn_seq, self.rows_done - 1)
        return (self.seq, MAX_ROWS_PER_TXN)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Position:
        data = json.loads(raw)
        data["last_ids"] = tuple(data.get("last_ids", ()))
        return cls(**data)

    def describe(self) -> str:
        tail = f" + {self.rows_done} rows of txn {self.txn_seq}" if self.txn_seq is not None else ""
        return f"gtid {self.gtid or '(empty)'}{tail}"


# -- MySQL GTID sets ("uuid:1-5:7-9,uuid2:1-3"): the relay sends the set it has read; the server sends the rest.


def _parse_mysql_set(gtid_set: str) -> dict[str, list[tuple[int, int]]]:
    out: dict[str, list[tuple[int, int]]] = {}
    for part in filter(None, (p.strip() for p in gtid_set.replace("\n", "").split(","))):
        uuid, *ranges = part.split(":")
        if not ranges:
            raise ValueError(f"not a MySQL GTID set: {gtid_set!r}")
        for r in ranges:
            lo, _, hi = r.partition("-")
            out.setdefault(uuid.lower(), []).append((int(lo), int(hi or lo)))
    return out


def _format_mysql_set(sets: dict[str, list[tuple[int, int]]]) -> str:
    parts = []
    for uuid in sorted(sets):
        ranges = ":".join(f"{lo}-{hi}" if hi != lo else f"{lo}" for lo, hi in sets[uuid])
        parts.append(f"{uuid}:{ranges}")
    return ",".join(parts)


def mysql_gtid_add(gtid_set: str, gtid: str) -> str:
    """`gtid_set` plus one GTID 'uuid:gno', with adjacent intervals merged."""
    uuid, gno_text = gtid.lower().rsplit(":", 1)
    gno = int(gno_text)
    sets = _parse_mysql_set(gtid_set)
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted([*sets.get(uuid, []), (gno, gno)]):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    sets[uuid] = merged
    return _format_mysql_set(sets)


def mysql_gtid_seq(gtid_set: str) -> int:
    """Highest transaction number in a single-source GTID set (source_seq needs one source server uuid)."""
    sets = _parse_mysql_set(gtid_set)
    if len(sets) > 1:
        raise ValueError(f"GTID set {gtid_set!r} has several source uuids; source_seq needs one source server")
    return max((hi for ranges in sets.values() for _, hi in ranges), default=0)
