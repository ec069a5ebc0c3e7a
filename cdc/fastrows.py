"""How the relay drives python-mysql-replication's decoding (issue 16): two event classes that give the library's
answers for less CPU.

- `CachedTableMapEvent`: every transaction maps its tables again (a TABLE_MAP event before its rows), and the library
  parses each one in full: column definitions, optional metadata, a `Table` of `Column` objects (27 % of the relay's
  time with single-row commits). This class keeps the parsed result keyed by the event's raw body bytes (table id,
  schema, name, column types and metadata), so an identical map is parsed once. Identical bytes mean an identical
  table: an id that another table reuses after a restart has other bytes and is parsed again.
- `FastWriteRowsEvent`: decodes a row image in one pass over the event's bytes with a decoder compiled once per
  table, for the column types an outbox uses (integers, VARCHAR, BLOB/TEXT including MariaDB's JSON, MySQL's binary
  JSON, TIMESTAMP). A table with any other type, or a row image that is not FULL, is decoded by the library as
  before. Property-tested against the library on the same events (tests/integration/test_fastrows.py).

A reader opts in by listing both classes in `only_events` (after `install()`); every other reader in the process gets
the library's own classes, unchanged.
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Callable
from typing import Any, ClassVar

from pymysql.charset import charset_by_name
from pymysqlreplication import binlogstream, constants, event, packet
from pymysqlreplication.constants import FIELD_TYPE
from pymysqlreplication.json_binary import parse_json
from pymysqlreplication.row_event import TableMapEvent, WriteRowsEvent

# Parsed table maps by raw body; bounded (a server with thousands of tables cycles through it, no leak).
_TABLE_MAPS: dict[bytes, dict[str, Any]] = {}
TABLE_MAP_CACHE_SIZE = 512

_HEADER = 20
_NULL = "null"  # pymysqlreplication.constants.NONE_SOURCE.NULL, as the library records a NULL column


class CachedTableMapEvent(TableMapEvent):  # type: ignore[misc]
    def __init__(self, from_packet: Any, event_size: int, table_map: dict[int, Any], ctl_connection: Any, **kw: Any):
        # Peek at the body without consuming it (the library's parser measures what is left on the packet itself):
        # the wrapper has read the 20-byte header (OK byte + 19-byte event header), `read_bytes` counts from there.
        raw = from_packet.packet.get_bytes(_HEADER + from_packet.read_bytes, event_size)
        hit = _TABLE_MAPS.get(raw)
        if hit is not None:
            self.__dict__.update(hit)
            self.packet = from_packet
            if self._processed:
                table_map[self.table_id] = self.table_obj
            return
        super().__init__(from_packet, event_size, table_map, ctl_connection, **kw)
        if len(_TABLE_MAPS) >= TABLE_MAP_CACHE_SIZE:
            _TABLE_MAPS.clear()
        _TABLE_MAPS[raw] = {k: v for k, v in self.__dict__.items() if k != "packet"}


Reader = Callable[[bytes, int], tuple[Any, int]]


def _fixed(fmt: str) -> Reader:
    st = struct.Struct(fmt)
    size = st.size
    unpack = st.unpack_from

    def read(data: bytes, pos: int) -> tuple[Any, int]:
        return unpack(data, pos)[0], pos + size

    return read


def _int24(unsigned: bool) -> Reader:
    def read(data: bytes, pos: int) -> tuple[Any, int]:
        return int.from_bytes(data[pos : pos + 3], "little", signed=not unsigned), pos + 3

    return read


def _string(length_size: int, encoding: str | None) -> Reader:
    def read(data: bytes, pos: int) -> tuple[Any, int]:
        end = pos + length_size
        n = int.from_bytes(data[pos:end], "little")
        raw = data[end : end + n]
        if len(raw) != n:
            raise ValueError("row image ends inside a string")
        return (raw.decode(encoding) if encoding is not None else raw.decode()), end + n

    return read


def _json(length_size: int) -> Reader:
    def read(data: bytes, pos: int) -> tuple[Any, int]:
        end = pos + length_size
        n = int.from_bytes(data[pos:end], "little")
        if n == 0:
            return None, end
        raw = data[end : end + n]
        return parse_json(raw[0], raw[1:]), end + n

    return read


def _timestamp2(fsp: int) -> Reader:
    frac = (fsp + 1) // 2

    def read(data: bytes, pos: int) -> tuple[Any, int]:
        # Unsigned: MariaDB 11.5 stores TIMESTAMPs up to 2106 (read signed, 2040 became 1903). 0 is the zero date.
        seconds = int.from_bytes(data[pos : pos + 4], "big", signed=False)
        pos += 4
        value = dt.datetime.fromtimestamp(seconds, dt.UTC).replace(tzinfo=None)
        if frac:
            micro = int.from_bytes(data[pos : pos + frac], "big", signed=True)
            pos += frac
            if fsp % 2:
                micro = int(micro / 10)
            micro *= 10 ** (6 - fsp)
            if micro > 0:
                value = value.replace(microsecond=micro)
        return value, pos

    return read


def _reader(column: Any) -> Reader | None:
    """The reader of one column, or None for a type this module leaves to the library."""
    t, unsigned = column.type, column.unsigned
    if t == FIELD_TYPE.TINY:
        return _fixed("<B" if unsigned else "<b")
    if t == FIELD_TYPE.SHORT:
        return _fixed("<H" if unsigned else "<h")
    if t == FIELD_TYPE.INT24:
        return _int24(unsigned)
    if t == FIELD_TYPE.LONG:
        return _fixed("<I" if unsigned else "<i")
    if t == FIELD_TYPE.LONGLONG:
        return _fixed("<Q" if unsigned else "<q")
    if t in (FIELD_TYPE.VARCHAR, FIELD_TYPE.BLOB):
        if column.character_set_name is None:
            encoding = None
        else:
            charset = charset_by_name(column.character_set_name)
            encoding = charset.encoding if charset else column.character_set_name
            try:
                "".encode(encoding)
            except LookupError:
                return None  # the library hands such a column's bytes undecoded
        size = (2 if column.max_length > 255 else 1) if t == FIELD_TYPE.VARCHAR else column.length_size
        return _string(size, encoding)
    if t == FIELD_TYPE.JSON:
        return _json(column.length_size)
    if t == FIELD_TYPE.TIMESTAMP2:
        return _timestamp2(column.fsp)
    return None


RowsDecoder = Callable[[bytes], list[dict[str, Any]]]


def compile_decoder(table: Any) -> RowsDecoder | None:
    """A decoder of a FULL write-row image of `table`, or None if a column needs the library's path."""
    columns = table.columns
    if any(not c.name for c in columns):
        return None
    plan: list[tuple[str, Reader]] = []
    for column in columns:
        reader = _reader(column)
        if reader is None:
            return None
        plan.append((column.name, reader))
    null_bytes = (len(plan) + 7) // 8

    def decode(data: bytes) -> list[dict[str, Any]]:
        rows = []
        pos, end = 0, len(data)
        while pos < end:
            nulls = int.from_bytes(data[pos : pos + null_bytes], "little")
            pos += null_bytes
            values: dict[str, Any] = {}
            none_sources: dict[str, str] = {}
            for i, (name, read) in enumerate(plan):
                if nulls >> i & 1:
                    values[name] = None
                    none_sources[name] = _NULL
                else:
                    values[name], pos = read(data, pos)
            if pos > end:
                raise ValueError("row image ends inside a column")
            rows.append({"values": values, "none_sources": none_sources})
        return rows

    return decode


class FastWriteRowsEvent(WriteRowsEvent):  # type: ignore[misc]
    @property
    def rows(self) -> list[dict[str, Any]]:
        fast = self.__dict__.get("_fast_rows")
        if fast is not None:
            return fast  # type: ignore[no-any-return]
        table = self.table_map[self.table_id]
        # Compiled once per `Table` (cached with its table map) and kept on it; a leading underscore keeps it out of
        # the library's `Table.data` and equality.
        if "_relay_decoder" not in table.__dict__:
            table.__dict__["_relay_decoder"] = compile_decoder(table)
        decoder: RowsDecoder | None = table.__dict__["_relay_decoder"]
        full = int.from_bytes(self.columns_present_bitmap, "little") == (1 << self.number_of_columns) - 1
        if decoder is None or not self.complete or not full or len(self.columns) != self.number_of_columns:
            return super().rows  # type: ignore[no-any-return]
        data = self.packet.read(self.event_size - self.packet.read_bytes)
        fast = self.__dict__["_fast_rows"] = decoder(data)
        return fast


class CompressedEvent(event.NotImplementedEvent):  # type: ignore[misc]
    """A compressed binlog event (MariaDB's log_bin_compress: compressed queries and rows; MySQL's
    binlog_transaction_compression: a transaction payload). The library cannot read them and skipped them without a
    word, so the relay lost the rows inside while its position moved past them: the relay now stops on one."""


# MySQL TRANSACTION_PAYLOAD_EVENT (40); MariaDB QUERY_COMPRESSED_EVENT (165) and the compressed rows events (166-171).
COMPRESSED_EVENT_TYPES = (40, 165, 166, 167, 168, 169, 170, 171)

_LIBRARY_WRAPPER = packet.BinLogPacketWrapper


class _RelayPacketWrapper(packet.BinLogPacketWrapper):  # type: ignore[misc]
    """The library's packet wrapper with this module's classes for TABLE_MAP and WRITE_ROWS events."""

    _BinLogPacketWrapper__event_map: ClassVar[dict[int, type]] = {
        **_LIBRARY_WRAPPER._BinLogPacketWrapper__event_map,
        constants.TABLE_MAP_EVENT: CachedTableMapEvent,
        constants.WRITE_ROWS_EVENT_V1: FastWriteRowsEvent,
        constants.WRITE_ROWS_EVENT_V2: FastWriteRowsEvent,
        **dict.fromkeys(COMPRESSED_EVENT_TYPES, CompressedEvent),
    }


def _packet_wrapper(
    from_packet: Any, table_map: Any, ctl: Any, version: Any, checksum: Any, allowed: Any, *rest: Any
) -> Any:
    """What the library's reader builds for each packet: the relay's wrapper for a reader that listed
    `FastWriteRowsEvent`, the library's own for any other."""
    cls = _RelayPacketWrapper if FastWriteRowsEvent in allowed else _LIBRARY_WRAPPER
    return cls(from_packet, table_map, ctl, version, checksum, allowed, *rest)


_exclusive = False


def install(exclusive: bool = False) -> None:
    """Let readers of this process opt in (idempotent). `BinLogStreamReader.fetchone` builds each packet's wrapper
    through its module's global name, which this replaces with a chooser that keeps the library's behaviour for
    readers that do not opt in. `exclusive`: the process has no other reader (the relay's decoder process), so every
    packet gets the relay's wrapper directly, without the chooser's call."""
    global _exclusive
    _exclusive = _exclusive or exclusive
    binlogstream.BinLogPacketWrapper = _RelayPacketWrapper if _exclusive else _packet_wrapper
