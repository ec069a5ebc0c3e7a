"""The relay's position and the `source_seq` clock.

Position: the GTID state to resume from, the last fully published transaction, and the rows already published of
the transaction in progress. Checkpointing a mid-transaction rows-event position loses rows (no table map on resume),
so the relay always resumes at a transaction boundary and skips the rows it already sent.

`source_seq` orders events in commit order across the whole life of a source: offset + (txn seq << ROW_BITS | row).
A new sequence space (a MySQL server UUID after a failover, RESET MASTER, a new server, a lost position) starts a new
epoch whose offset puts its first event just above the last one ever published: the clock never goes backwards.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields
from typing import Any

# 20 row bits: 2^20 outbox rows per transaction, and GTID sequence numbers up to 2^43 (8.8e12 transactions: 27
# years at 10,000 commits/s) before source_seq leaves int64 (MongoDB and the Redis version strings store it there).
ROW_BITS = 20
MAX_ROWS_PER_TXN = 1 << ROW_BITS
MAX_SOURCE_SEQ = (1 << 63) - 1
# Positions written before epochs existed numbered rows with 24 row bits.
_LEGACY_ROW_BITS = 24
# Most id ranges a position may carry as "published, not yet marked" (the relay waits for the marker beyond it).
MAX_UNMARKED_RANGES = 20_000


class SourceSeqError(ValueError):
    """A row cannot get a source_seq that keeps the clock monotonic and inside int64."""


def source_seq(txn_seq: int, row_index: int, offset: int = 0) -> int:
    if not 0 <= row_index < MAX_ROWS_PER_TXN:
        raise SourceSeqError(f"row index {row_index} exceeds {MAX_ROWS_PER_TXN} outbox rows in one transaction")
    seq = offset + ((txn_seq << ROW_BITS) | row_index)
    if not 0 <= seq <= MAX_SOURCE_SEQ:
        raise SourceSeqError(f"source_seq {seq} is outside int64 (txn {txn_seq}, row {row_index}, offset {offset})")
    return seq


@dataclass(frozen=True, slots=True)
class Epoch:
    """One stretch of a source's history whose transaction numbers share a sequence space."""

    number: int = 0
    offset: int = 0
    space: str = ""  # MySQL: the server UUID the GTID numbers belong to; MariaDB (one domain) and polling: ""


class SeqClock:
    """Assigns `source_seq` values that only grow, across epochs. Not thread-safe: one owner (the source thread
    or the relay loop)."""

    def __init__(self, epoch: Epoch, last: int) -> None:
        self.epoch = epoch
        self.last = last  # highest source_seq ever published (-1: none)

    def start_epoch(self, space: str, txn_seq: int, row_index: int = 0) -> Epoch:
        """A new epoch whose (txn_seq, row_index) gets exactly last + 1."""
        offset = self.last + 1 - ((txn_seq << ROW_BITS) | row_index)
        self.epoch = Epoch(self.epoch.number + 1, offset, space)
        return self.epoch

    def prepare(self, space: str, next_txn: int) -> Epoch:
        """Before streaming from a fresh point (snapshot, from-now, polling start): make sure row 0 of `next_txn`
        numbers above everything published, starting an epoch if the source's numbers went back."""
        if space != self.epoch.space or self.epoch.offset + (next_txn << ROW_BITS) <= self.last:
            self.start_epoch(space, next_txn, 0)
        return self.epoch

    def assign(self, space: str, txn_seq: int, row_index: int, *, may_start_epoch: bool) -> int:
        """source_seq of row `row_index` of transaction `txn_seq` in sequence space `space`.

        A new space (MySQL failover to a server with another UUID) always starts an epoch: its numbers are
        unrelated to the old ones. A lower number in the same space starts an epoch only where the caller knows
        the history restarted (a snapshot after RESET MASTER, a lost position); anywhere else it is a defect
        upstream, and publishing it would make every version guard downstream drop newer events: refuse loudly.
        """
        if space != self.epoch.space:
            self.start_epoch(space, txn_seq, row_index)
        seq = source_seq(txn_seq, row_index, self.epoch.offset)
        if seq <= self.last:
            if not may_start_epoch:
                raise SourceSeqError(
                    f"source_seq would go backwards: txn {txn_seq} row {row_index} gives {seq}, "
                    f"but {self.last} was already published (epoch {self.epoch.number})"
                )
            self.start_epoch(space, txn_seq, row_index)
            seq = source_seq(txn_seq, row_index, self.epoch.offset)
        self.last = seq
        return seq


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


IdRanges = tuple[tuple[int, int], ...]


def id_ranges(ids: list[int]) -> IdRanges:
    """Sorted, merged runs of consecutive ids: (first, last) inclusive."""
    out: list[tuple[int, int]] = []
    for i in sorted(ids):
        if out and i <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], i))
        else:
            out.append((i, i))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Position:
    gtid: str  # GTID state to resume from (everything up to it is published or held for an open XA)
    seq: int  # raw sequence number of the last fully published transaction (relay domain / current MySQL UUID)
    txn_seq: int | None = None  # transaction partly published, if any (in the current epoch's space)
    rows_done: int = 0  # its outbox rows already published
    # Polling mode: outbox ids of the last committed batch. A crash after the Kafka commit but before the MySQL
    # commit leaves them unmarked; the restart marks them instead of publishing them again.
    last_ids: tuple[int, ...] = ()
    epoch: Epoch = Epoch()
    last_source_seq: int = -1  # highest source_seq published so far: the next one must be higher
    # Binlog mode: ids committed to Kafka whose `published` mark is not confirmed yet. A restart marks them first,
    # so marks survive SIGKILL, commits with an unknown outcome and a dead marker.
    unmarked: IdRanges = ()

    def last_sent(self) -> tuple[int, int]:
        """(txn seq, row index) of the last row published; rows at or before it are skipped on resume."""
        if self.txn_seq is not None and self.rows_done > 0:
            return (self.txn_seq, self.rows_done - 1)
        return (self.seq, MAX_ROWS_PER_TXN)

    def clock(self) -> SeqClock:
        return SeqClock(self.epoch, self.last_source_seq)

    def to_json(self) -> bytes:
        data = asdict(self)
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Position:
        data: dict[str, Any] = json.loads(raw)
        known = {f.name for f in fields(cls)}
        legacy = "epoch" not in data
        data = {k: v for k, v in data.items() if k in known}
        data["last_ids"] = tuple(data.get("last_ids", ()))
        data["unmarked"] = tuple((int(a), int(b)) for a, b in data.get("unmarked", ()))
        if legacy:
            # Written before epochs: rows were numbered seq << 24 | row. The highest number that can have gone out
            # under that numbering becomes the floor, so the first new number is above every old one.
            txn = data.get("txn_seq")
            done = int(data.get("rows_done") or 0)
            last = (
                (txn << _LEGACY_ROW_BITS | (done - 1))
                if txn is not None and done > 0
                else ((int(data["seq"]) << _LEGACY_ROW_BITS) | ((1 << _LEGACY_ROW_BITS) - 1))
            )
            data["last_source_seq"] = last
            # An epoch that puts the next row (the rest of the open transaction, or the next one) at last + 1.
            nxt = (txn << ROW_BITS | done) if txn is not None and done > 0 else (int(data["seq"]) + 1) << ROW_BITS
            data["epoch"] = Epoch(1, last + 1 - nxt)
        else:
            data["epoch"] = Epoch(**data["epoch"])
        return cls(**data)

    def describe(self) -> str:
        tail = f" + {self.rows_done} rows of txn {self.txn_seq}" if self.txn_seq is not None else ""
        epoch = f", epoch {self.epoch.number}" if self.epoch.number else ""
        return f"gtid {self.gtid or '(empty)'}{tail}{epoch}"


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


def mysql_gtid_seq(gtid_set: str, uuid: str | None = None) -> int:
    """Highest transaction number of `uuid` in a GTID set (0 if absent); without `uuid` the set must have one
    source (the numbers of different servers are unrelated)."""
    sets = _parse_mysql_set(gtid_set)
    if uuid is not None:
        return max((hi for _, hi in sets.get(uuid.lower(), [])), default=0)
    if len(sets) > 1:
        raise ValueError(f"GTID set {gtid_set!r} has several source uuids; name the one to number")
    return max((hi for ranges in sets.values() for _, hi in ranges), default=0)


def mysql_gtid_contains(gtid_set: str, gtid: str) -> bool:
    """Is the GTID 'uuid:gno' in the set?"""
    uuid, gno_text = gtid.lower().rsplit(":", 1)
    gno = int(gno_text)
    return any(lo <= gno <= hi for lo, hi in _parse_mysql_set(gtid_set).get(uuid, []))
