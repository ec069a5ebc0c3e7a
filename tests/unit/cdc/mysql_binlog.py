"""Real MySQL 8.4 binlog events, byte for byte, read back by python-mysql-replication's own code.

No MySQL server can be installed on these machines (Debian ships MariaDB only), so the relay's MySQL path is tested
with events built here to MySQL's documented formats (binlog event header v4, libs/mysql/binlog/event/*.cpp of
mysql-server 8.4, binary JSON as sql-common/json_binary.h describes it) and parsed by the library exactly as the
relay's `BinLogStreamReader.fetchone` parses them: the reader below is the library's real `BinLogStreamReader`, given
a fake of the two server connections it opens (`pymysql_wrapper`). Only the socket is fake: the library's own code
sends the dump command, reads the checksum and row-metadata settings, frames and parses every packet, keeps its
table-map cache, clears it on rotation and filters events, schemas and tables.

API (every builder returns `RawEvent`, an event type and its body; the fake server adds the v4 header, log positions
and the CRC32 footer when it sends the events, as binlog_checksum=CRC32, MySQL 8.4's default, does):

Single events
    format_description(version="8.4.3")      FORMAT_DESCRIPTION_EVENT (type 15) with 8.4's post-header lengths
    previous_gtids("uuid:1-5,uuid2:1-3")     PREVIOUS_GTIDS_LOG_EVENT (type 35)
    rotate(next_file, position=4, artificial=False)   ROTATE_EVENT (type 4); the artificial one starts a dump
    gtid(uuid, gno, ...)                     GTID_LOG_EVENT (type 33) with the 8.0+ fields (logical clock, commit
                                             timestamps, transaction length, server versions)
    query(sql, ddl=False)                    QUERY_EVENT (type 2) with the status variables MySQL 8.4 writes
    table_map(table_id, columns=OUTBOX_COLUMNS)   TABLE_MAP_EVENT (type 19), optional metadata as
                                             binlog_row_metadata=FULL writes it (signedness, charsets, column names,
                                             primary key, visibility)
    write_rows(rows, table_id, columns)      WRITE_ROWS_EVENT v2 (type 30), rows as dicts of column -> value
    xid(n)                                   XID_EVENT (type 16)
    xa_prepare(gtrid, one_phase=False)       XA_PREPARE_LOG_EVENT (type 38)
    xa_sql("START", gtrid)                   an XA statement as MySQL logs it: XA START X'74',X'',1
    json_binary(value)                       a JSON document in MySQL's binary format (the JSON column's bytes);
                                             `JsonInt` forces one of the six integer types, `JsonOpaque` writes
                                             custom data, `JsonRawString` a string's raw bytes; Decimal / datetime
                                             / date / time become opaque values

Whole transactions, in the order MySQL 8.4 writes them (lists of RawEvent)
    mysql_txn(uuid, gno, rows)               GTID, BEGIN, TABLE_MAP, WRITE_ROWS..., XID
    mysql_ddl(uuid, gno, sql)                GTID, the DDL query (no BEGIN, no XID)
    mysql_xa_prepare(uuid, gno, xid, rows)   GTID, XA START, TABLE_MAP, WRITE_ROWS..., XA END, XA_PREPARE
    mysql_xa_commit(uuid, gno, xid)          GTID, XA COMMIT (a later, separate GTID)
    mysql_xa_rollback(uuid, gno, xid)        GTID, XA ROLLBACK
    mysql_xa_one_phase(uuid, gno, xid, rows) GTID, XA START, rows, XA END, XA_PREPARE with one_phase set
    binlog_start(previous="")                what a dump begins with: artificial ROTATE, FORMAT_DESCRIPTION,
                                             PREVIOUS_GTIDS
    binlog_rotation(next_file, previous)     end of a file and the start of the next: ROTATE, FORMAT_DESCRIPTION,
                                             PREVIOUS_GTIDS
    outbox_row(id, payload=..., ...)         one integration_outbox row as a dict of column -> value

Reading
    parse_events(events, **reader_kwargs)    the library's event objects for `events` (a dump start is put in front
                                             unless `events` begins with a ROTATE; its events are left out of the
                                             result). reader_kwargs go to BinLogStreamReader (only_events,
                                             only_schemas, only_tables, auto_position...).
    FakeMySQLServer(*sessions)               serves one list of events per stream connection (a reconnect gets the
                                             next list) and records what the library asked for (`dump_requests`:
                                             the GTID set of COM_BINLOG_DUMP_GTID, or file:pos of COM_BINLOG_DUMP)
    stream_reader(server, **reader_kwargs)   a real BinLogStreamReader connected to `server`

Example: the relay's state machine on a MySQL transaction, an XA transaction and a failover to a new server UUID::

    events = parse_events([
        *mysql_txn(A, 7, [outbox_row(1)]),
        *mysql_xa_prepare(A, 8, "trx1", [outbox_row(2)]),
        *mysql_xa_commit(A, 9, "trx1"),
        *mysql_txn(B, 1, [outbox_row(3)]),
    ], only_events=[GtidEvent, XidEvent, XAPrepareEvent, QueryEvent, WriteRowsEvent])
"""

from __future__ import annotations

import datetime as dt
import decimal
import struct
import uuid as uuidlib
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pymysql.cursors
from pymysql.protocol import MysqlPacket
from pymysqlreplication import BinLogStreamReader

from schema.mysql import OUTBOX_TABLE

# --- constants of the formats (MySQL 8.4 sources: binlog_event.h, field_types.h, json_binary.h) ---------------------

SERVER_VERSION = "8.4.3"
SERVER_VERSION_ID = 80403
SCHEMA = "tenderhub"
OUTBOX_TABLE_ID = 91
T0 = 1767607200  # 2026-01-05 10:00:00 UTC: the events' header timestamp unless given

QUERY_EVENT = 2
ROTATE_EVENT = 4
FORMAT_DESCRIPTION_EVENT = 15
XID_EVENT = 16
TABLE_MAP_EVENT = 19
WRITE_ROWS_EVENT_V2 = 30
GTID_LOG_EVENT = 33
PREVIOUS_GTIDS_LOG_EVENT = 35
XA_PREPARE_LOG_EVENT = 38

LOG_EVENT_HEADER_LEN = 19
BINLOG_CHECKSUM_LEN = 4
LOG_EVENT_BINLOG_IN_USE_F = 0x1
LOG_EVENT_ARTIFICIAL_F = 0x20
STMT_END_F = 0x1
TM_BIT_LEN_EXACT_F = 0x1
BINLOG_CHECKSUM_ALG_CRC32 = 1
LOGICAL_TIMESTAMP_TYPECODE = 2
FLAG_MAY_HAVE_SBR = 0x1
# binlog_row_event_max_size's default: MySQL starts a new rows event before one grows past it.
ROW_EVENT_MAX_SIZE = 8192

# Post-header length of each event type (index = type - 1), Format_description_event's table in MySQL 8.4
# (control_events.cpp): V1 rows events are gone (0), TRANSACTION_PAYLOAD_EVENT declares 40, then
# HEARTBEAT_LOG_EVENT_V2 and GTID_TAGGED_LOG_EVENT.
POST_HEADER_LENGTHS_8_4 = bytes(
    [
        *(0, 13, 0, 8, 0, 0, 0, 0, 4, 0, 4, 0, 0, 0),  # 1-14: START_V3 .. USER_VAR
        99,  # 15 FORMAT_DESCRIPTION: 57 + 42 event types
        *(0, 4, 26, 8),  # 16 XID, 17 BEGIN_LOAD_QUERY, 18 EXECUTE_LOAD_QUERY, 19 TABLE_MAP
        *(0, 0, 0, 0, 0, 0),  # 20-25: pre-GA and V1 rows events
        *(2, 0, 0, 0),  # 26 INCIDENT, 27 HEARTBEAT, 28 IGNORABLE, 29 ROWS_QUERY
        *(10, 10, 10),  # 30-32 WRITE/UPDATE/DELETE_ROWS V2
        *(42, 42, 0),  # 33 GTID, 34 ANONYMOUS_GTID, 35 PREVIOUS_GTIDS
        *(18, 52, 0, 10),  # 36 TRANSACTION_CONTEXT, 37 VIEW_CHANGE, 38 XA_PREPARE, 39 PARTIAL_UPDATE_ROWS
        *(40, 0, 0),  # 40 TRANSACTION_PAYLOAD, 41 HEARTBEAT_V2, 42 GTID_TAGGED
    ]
)

# Column types (field_types.h enum_field_types).
MYSQL_TYPE_TINY = 1
MYSQL_TYPE_SHORT = 2
MYSQL_TYPE_LONG = 3
MYSQL_TYPE_TIMESTAMP = 7
MYSQL_TYPE_LONGLONG = 8
MYSQL_TYPE_DATE = 10
MYSQL_TYPE_TIME = 11
MYSQL_TYPE_DATETIME = 12
MYSQL_TYPE_VARCHAR = 15
MYSQL_TYPE_TIMESTAMP2 = 17
MYSQL_TYPE_JSON = 245
MYSQL_TYPE_NEWDECIMAL = 246
MYSQL_TYPE_BLOB = 252

UTF8MB4_0900_AI_CI = 255

# Query-event status variables (statement_events.h).
Q_FLAGS2_CODE = 0
Q_SQL_MODE_CODE = 1
Q_CHARSET_CODE = 4
Q_CATALOG_NZ_CODE = 6
Q_UPDATED_DB_NAMES = 12
Q_EXPLICIT_DEFAULTS_FOR_TIMESTAMP = 16
Q_DDL_LOGGED_WITH_XID = 17
Q_DEFAULT_COLLATION_FOR_UTF8MB4 = 18
Q_SQL_REQUIRE_PRIMARY_KEY = 19
Q_DEFAULT_TABLE_ENCRYPTION = 20
# MySQL 8.4's default sql_mode: ONLY_FULL_GROUP_BY, STRICT_TRANS_TABLES, NO_ZERO_IN_DATE, NO_ZERO_DATE,
# ERROR_FOR_DIVISION_BY_ZERO, NO_ENGINE_SUBSTITUTION as the binlog stores them (MODE_* bits of sql_mode.h).
SQL_MODE_8_4 = (1 << 5) | (1 << 22) | (1 << 23) | (1 << 24) | (1 << 25) | (1 << 30)

# Optional metadata field types of the table map (rows_event.h Table_map_event::Optional_metadata_field_type).
SIGNEDNESS = 1
DEFAULT_CHARSET = 2
COLUMN_NAME = 4
SIMPLE_PRIMARY_KEY = 8
COLUMN_VISIBILITY = 12

# Binary JSON value types (json_binary.h).
JSONB_SMALL_OBJECT = 0x0
JSONB_LARGE_OBJECT = 0x1
JSONB_SMALL_ARRAY = 0x2
JSONB_LARGE_ARRAY = 0x3
JSONB_LITERAL = 0x4
JSONB_INT16 = 0x5
JSONB_UINT16 = 0x6
JSONB_INT32 = 0x7
JSONB_UINT32 = 0x8
JSONB_INT64 = 0x9
JSONB_UINT64 = 0xA
JSONB_DOUBLE = 0xB
JSONB_STRING = 0xC
JSONB_OPAQUE = 0xF
JSONB_NULL = 0x0
JSONB_TRUE = 0x1
JSONB_FALSE = 0x2

_INT_RANGES = {
    JSONB_INT16: (-(1 << 15), (1 << 15) - 1, "<h"),
    JSONB_UINT16: (0, (1 << 16) - 1, "<H"),
    JSONB_INT32: (-(1 << 31), (1 << 31) - 1, "<i"),
    JSONB_UINT32: (0, (1 << 32) - 1, "<I"),
    JSONB_INT64: (-(1 << 63), (1 << 63) - 1, "<q"),
    JSONB_UINT64: (0, (1 << 64) - 1, "<Q"),
}


# --- events ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RawEvent:
    """One binlog event before framing: the server adds the header (with its log position) and the CRC32."""

    type_code: int
    body: bytes
    timestamp: int = T0
    server_id: int = 1
    flags: int = 0
    artificial: bool = False  # log_pos 0, LOG_EVENT_ARTIFICIAL_F, timestamp 0: the rotate that starts a dump

    def framed(self, log_pos: int, checksum: bool = True) -> bytes:
        """The event as a binlog file holds it: header v4, body, CRC32 of both."""
        size = LOG_EVENT_HEADER_LEN + len(self.body) + (BINLOG_CHECKSUM_LEN if checksum else 0)
        flags = self.flags | (LOG_EVENT_ARTIFICIAL_F if self.artificial else 0)
        timestamp = 0 if self.artificial else self.timestamp
        head = struct.pack("<IBIIIH", timestamp, self.type_code, self.server_id, size, log_pos, flags)
        raw = head + self.body
        return raw + struct.pack("<I", zlib.crc32(raw)) if checksum else raw

    def size(self, checksum: bool = True) -> int:
        return LOG_EVENT_HEADER_LEN + len(self.body) + (BINLOG_CHECKSUM_LEN if checksum else 0)


def lenenc(n: int) -> bytes:
    """MySQL's length-encoded integer (net_store_length)."""
    if n < 251:
        return bytes([n])
    if n < 1 << 16:
        return b"\xfc" + struct.pack("<H", n)
    if n < 1 << 24:
        return b"\xfd" + struct.pack("<I", n)[:3]
    return b"\xfe" + struct.pack("<Q", n)


def _uuid_bytes(server_uuid: str) -> bytes:
    return uuidlib.UUID(server_uuid).bytes


def format_description(version: str = SERVER_VERSION, created: int = 0) -> RawEvent:
    body = (
        struct.pack("<H", 4)
        + version.encode().ljust(50, b"\0")
        + struct.pack("<I", created)
        + bytes([LOG_EVENT_HEADER_LEN])
        + POST_HEADER_LENGTHS_8_4
        + bytes([BINLOG_CHECKSUM_ALG_CRC32])
    )
    return RawEvent(FORMAT_DESCRIPTION_EVENT, body, flags=LOG_EVENT_BINLOG_IN_USE_F)


def parse_gtid_set(text: str) -> list[tuple[str, list[tuple[int, int]]]]:
    """`uuid:1-5:7,uuid2:3` as (uuid, [(start, end inclusive)]) in the order given."""
    out: list[tuple[str, list[tuple[int, int]]]] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        sid, *ranges = part.split(":")
        intervals = []
        for r in ranges:
            lo, _, hi = r.partition("-")
            intervals.append((int(lo), int(hi or lo)))
        out.append((sid, intervals))
    return out


def encode_gtid_set(text: str) -> bytes:
    """The binary GTID set of PREVIOUS_GTIDS and COM_BINLOG_DUMP_GTID (Gtid_set::encode): intervals end-exclusive."""
    sids = parse_gtid_set(text)
    out = struct.pack("<Q", len(sids))
    for sid, intervals in sids:
        out += _uuid_bytes(sid) + struct.pack("<Q", len(intervals))
        for lo, hi in intervals:
            out += struct.pack("<qq", lo, hi + 1)
    return out


def decode_gtid_set(data: bytes) -> str:
    (n_sids,) = struct.unpack_from("<Q", data, 0)
    pos, parts = 8, []
    for _ in range(n_sids):
        sid = str(uuidlib.UUID(bytes=data[pos : pos + 16]))
        (n,) = struct.unpack_from("<Q", data, pos + 16)
        pos += 24
        ranges = []
        for _ in range(n):
            lo, end = struct.unpack_from("<qq", data, pos)
            pos += 16
            ranges.append(f"{lo}" if end == lo + 1 else f"{lo}-{end - 1}")
        parts.append(":".join([sid, *ranges]))
    return ",".join(parts)


def previous_gtids(gtid_set: str = "") -> RawEvent:
    return RawEvent(PREVIOUS_GTIDS_LOG_EVENT, encode_gtid_set(gtid_set))


def rotate(next_file: str, position: int = 4, *, artificial: bool = False) -> RawEvent:
    return RawEvent(ROTATE_EVENT, struct.pack("<Q", position) + next_file.encode(), artificial=artificial)


def _gtid_body(
    server_uuid: str,
    gno: int,
    *,
    flags: int,
    last_committed: int,
    sequence_number: int,
    immediate_commit_us: int,
    original_commit_us: int | None,
    transaction_length: int,
    immediate_server_version: int,
    original_server_version: int | None,
) -> bytes:
    body = bytes([flags]) + _uuid_bytes(server_uuid) + struct.pack("<q", gno)
    body += bytes([LOGICAL_TIMESTAMP_TYPECODE]) + struct.pack("<QQ", last_committed, sequence_number)
    # 7-byte commit timestamps (microseconds); the top bit of the immediate one says an original one follows.
    if original_commit_us is None or original_commit_us == immediate_commit_us:
        body += struct.pack("<Q", immediate_commit_us)[:7]
    else:
        body += struct.pack("<Q", immediate_commit_us | (1 << 55))[:7] + struct.pack("<Q", original_commit_us)[:7]
    body += lenenc(transaction_length)
    # Server versions likewise: bit 31 of the immediate one says an original one follows.
    if original_server_version is None or original_server_version == immediate_server_version:
        body += struct.pack("<I", immediate_server_version)
    else:
        body += struct.pack("<II", immediate_server_version | (1 << 31), original_server_version)
    return body


def gtid(
    server_uuid: str,
    gno: int,
    *,
    last_committed: int = 0,
    sequence_number: int = 1,
    commit_us: int | None = None,
    original_commit_us: int | None = None,
    transaction_length: int = 0,
    may_have_sbr: bool = False,
    server_version: int = SERVER_VERSION_ID,
    original_server_version: int | None = None,
    timestamp: int = T0,
) -> RawEvent:
    """GTID_LOG_EVENT. Since 5.7.19 / 8.0.2 the SBR flag is clear for row-only transactions and set for DDL.
    python-mysql-replication 1.0.17 reads flags, UUID, GNO, lt_type, last_committed and sequence_number; the rest
    (commit timestamps, transaction length, server versions) is written as MySQL writes it and left unread."""
    body = _gtid_body(
        server_uuid,
        gno,
        flags=FLAG_MAY_HAVE_SBR if may_have_sbr else 0,
        last_committed=last_committed,
        sequence_number=sequence_number,
        immediate_commit_us=timestamp * 1_000_000 if commit_us is None else commit_us,
        original_commit_us=original_commit_us,
        transaction_length=transaction_length,
        immediate_server_version=server_version,
        original_server_version=original_server_version,
    )
    return RawEvent(GTID_LOG_EVENT, body, timestamp=timestamp)


def query(
    sql: str,
    *,
    schema: str = SCHEMA,
    ddl: bool = False,
    ddl_xid: int = 0,
    thread_id: int = 11,
    error_code: int = 0,
    timestamp: int = T0,
) -> RawEvent:
    """QUERY_EVENT with the status variables MySQL 8.4 writes (DDL adds the updated schemas and its xid)."""
    status = (
        bytes([Q_FLAGS2_CODE])
        + struct.pack("<I", 0)
        + bytes([Q_SQL_MODE_CODE])
        + struct.pack("<Q", SQL_MODE_8_4)
        + bytes([Q_CATALOG_NZ_CODE, 3])
        + b"std"
        + bytes([Q_CHARSET_CODE])
        + struct.pack("<HHH", UTF8MB4_0900_AI_CI, UTF8MB4_0900_AI_CI, UTF8MB4_0900_AI_CI)
    )
    if ddl:
        status += bytes([Q_UPDATED_DB_NAMES, 1]) + schema.encode() + b"\0"
        status += bytes([Q_EXPLICIT_DEFAULTS_FOR_TIMESTAMP, 1])
        status += bytes([Q_DDL_LOGGED_WITH_XID]) + struct.pack("<Q", ddl_xid)
        status += bytes([Q_DEFAULT_COLLATION_FOR_UTF8MB4]) + struct.pack("<H", UTF8MB4_0900_AI_CI)
        status += bytes([Q_SQL_REQUIRE_PRIMARY_KEY, 0, Q_DEFAULT_TABLE_ENCRYPTION, 0])
    db = schema.encode()
    post_header = struct.pack("<IIBHH", thread_id, 0, len(db), error_code, len(status))
    return RawEvent(QUERY_EVENT, post_header + status + db + b"\0" + sql.encode(), timestamp=timestamp)


def xid(n: int = 1, *, timestamp: int = T0) -> RawEvent:
    return RawEvent(XID_EVENT, struct.pack("<Q", n), timestamp=timestamp)


def xa_prepare(gtrid: str, one_phase: bool = False, *, bqual: str = "", format_id: int = 1) -> RawEvent:
    g, b = gtrid.encode(), bqual.encode()
    body = bytes([1 if one_phase else 0]) + struct.pack("<III", format_id, len(g), len(b)) + g + b
    return RawEvent(XA_PREPARE_LOG_EVENT, body)


def xa_sql(verb: str, gtrid: str, bqual: str = "", format_id: int = 1) -> str:
    """An XA statement as MySQL logs it: the xid in hex (XID::serialize), e.g. XA START X'74',X'',1."""
    return f"XA {verb} X'{gtrid.encode().hex()}',X'{bqual.encode().hex()}',{format_id}"


# --- columns, table map, rows ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type_code: int
    metadata: bytes = b""
    nullable: bool = False
    unsigned: bool = False
    charset: int | None = None  # collation id of character columns

    @property
    def numeric(self) -> bool:
        return self.type_code in (MYSQL_TYPE_TINY, MYSQL_TYPE_SHORT, MYSQL_TYPE_LONG, MYSQL_TYPE_LONGLONG)

    def encode(self, value: Any) -> bytes:
        """The column's value in a rows event (Field::pack / binlog row format)."""
        t = self.type_code
        if t in (MYSQL_TYPE_TINY, MYSQL_TYPE_SHORT, MYSQL_TYPE_LONG, MYSQL_TYPE_LONGLONG):
            fmt = {MYSQL_TYPE_TINY: "b", MYSQL_TYPE_SHORT: "h", MYSQL_TYPE_LONG: "i", MYSQL_TYPE_LONGLONG: "q"}[t]
            return struct.pack("<" + (fmt.upper() if self.unsigned else fmt), int(value))
        if t == MYSQL_TYPE_VARCHAR:
            data = value if isinstance(value, bytes) else str(value).encode()
            (max_len,) = struct.unpack("<H", self.metadata)
            return (struct.pack("<H", len(data)) if max_len > 255 else bytes([len(data)])) + data
        if t == MYSQL_TYPE_JSON:
            doc = value if isinstance(value, bytes | bytearray) else json_binary(value)
            return struct.pack("<I", len(doc)) + bytes(doc)
        if t == MYSQL_TYPE_TIMESTAMP2:
            return timestamp2(value, self.metadata[0])
        raise NotImplementedError(f"no encoder for column type {t}")


def timestamp2(value: dt.datetime, fsp: int) -> bytes:
    """TIMESTAMP(fsp) in a row: big-endian seconds, then big-endian fractional part of (fsp+1)//2 bytes."""
    seconds = int(value.replace(tzinfo=dt.UTC).timestamp()) if value.tzinfo is None else int(value.timestamp())
    out = struct.pack(">I", seconds)
    usec = value.microsecond
    if fsp in (1, 2):
        out += struct.pack(">B", usec // 10_000)
    elif fsp in (3, 4):
        out += struct.pack(">H", usec // 100)
    elif fsp in (5, 6):
        out += struct.pack(">I", usec)[1:]
    return out


def varchar(name: str, chars: int, nullable: bool = False) -> Column:
    # Metadata is the maximum length in bytes: 4 per character in utf8mb4.
    return Column(name, MYSQL_TYPE_VARCHAR, struct.pack("<H", chars * 4), nullable, charset=UTF8MB4_0900_AI_CI)


# integration_outbox as schema/migrations/0001_core_tables.sql declares it.
OUTBOX_COLUMNS: tuple[Column, ...] = (
    Column("id", MYSQL_TYPE_LONGLONG, unsigned=True),
    varchar("event_type", 64),
    varchar("aggregate_type", 32),
    varchar("aggregate_id", 64),
    Column("schema_version", MYSQL_TYPE_SHORT, unsigned=True),
    Column("payload", MYSQL_TYPE_JSON, bytes([4])),
    Column("published", MYSQL_TYPE_TINY),
    Column("created_at", MYSQL_TYPE_TIMESTAMP2, bytes([3])),
    Column("published_at", MYSQL_TYPE_TIMESTAMP2, bytes([3]), nullable=True),
)
OUTBOX_PRIMARY_KEY = (0,)


def _bitmap(bits: Sequence[bool], msb_first: bool = False) -> bytes:
    out = bytearray((len(bits) + 7) // 8)
    for i, bit in enumerate(bits):
        if bit:
            out[i // 8] |= (0x80 >> (i % 8)) if msb_first else (1 << (i % 8))
    return bytes(out)


def _tlv(field_type: int, value: bytes) -> bytes:
    return bytes([field_type]) + lenenc(len(value)) + value


def table_map(
    table_id: int = OUTBOX_TABLE_ID,
    columns: Sequence[Column] = OUTBOX_COLUMNS,
    *,
    schema: str = SCHEMA,
    table: str = OUTBOX_TABLE,
    primary_key: Sequence[int] = OUTBOX_PRIMARY_KEY,
    full_metadata: bool = True,
) -> RawEvent:
    """TABLE_MAP_EVENT; with full_metadata the optional metadata binlog_row_metadata=FULL adds (MINIMAL: only
    signedness and charsets)."""
    body = struct.pack("<Q", table_id)[:6] + struct.pack("<H", TM_BIT_LEN_EXACT_F)
    body += bytes([len(schema)]) + schema.encode() + b"\0" + bytes([len(table)]) + table.encode() + b"\0"
    body += lenenc(len(columns)) + bytes(c.type_code for c in columns)
    meta = b"".join(c.metadata for c in columns)
    body += lenenc(len(meta)) + meta + _bitmap([c.nullable for c in columns])
    numeric = [c for c in columns if c.numeric]
    if numeric:
        body += _tlv(SIGNEDNESS, _bitmap([c.unsigned for c in numeric], msb_first=True))
    character = [c for c in columns if c.charset is not None]
    if character:
        # DEFAULT_CHARSET: the most common collation, then (index among character columns, collation) for others.
        default = max({c.charset for c in character}, key=[c.charset for c in character].count)
        value = lenenc(default or 0)
        for i, c in enumerate(character):
            if c.charset != default:
                value += lenenc(i) + lenenc(c.charset or 0)
        body += _tlv(DEFAULT_CHARSET, value)
    if full_metadata:
        body += _tlv(COLUMN_NAME, b"".join(lenenc(len(c.name.encode())) + c.name.encode() for c in columns))
        if primary_key:
            body += _tlv(SIMPLE_PRIMARY_KEY, b"".join(lenenc(i) for i in primary_key))
        body += _tlv(COLUMN_VISIBILITY, _bitmap([True] * len(columns), msb_first=True))
    return RawEvent(TABLE_MAP_EVENT, body)


def _row_image(row: Mapping[str, Any], columns: Sequence[Column]) -> bytes:
    nulls = [row.get(c.name) is None for c in columns]
    for c, is_null in zip(columns, nulls, strict=True):
        if is_null and not c.nullable:
            raise ValueError(f"column {c.name} is NOT NULL")
    return _bitmap(nulls) + b"".join(c.encode(row[c.name]) for c, n in zip(columns, nulls, strict=True) if not n)


def write_rows(
    rows: Sequence[Mapping[str, Any]],
    table_id: int = OUTBOX_TABLE_ID,
    columns: Sequence[Column] = OUTBOX_COLUMNS,
    *,
    end_of_statement: bool = True,
) -> RawEvent:
    """WRITE_ROWS_EVENT v2 (binlog_row_image=FULL: every column present)."""
    head = struct.pack("<Q", table_id)[:6] + struct.pack("<HH", STMT_END_F if end_of_statement else 0, 2)
    body = head + lenenc(len(columns)) + _bitmap([True] * len(columns))
    return RawEvent(WRITE_ROWS_EVENT_V2, body + b"".join(_row_image(r, columns) for r in rows))


def _rows_events(
    rows: Sequence[Mapping[str, Any]], table_id: int, columns: Sequence[Column], per_statement: int | None
) -> list[RawEvent]:
    """What one or more INSERT statements log: a table map per statement, then rows events of at most
    ROW_EVENT_MAX_SIZE bytes (one row always fits), the statement's last one flagged STMT_END_F."""
    out: list[RawEvent] = []
    step = per_statement or max(1, len(rows))
    for start in range(0, len(rows), step):
        statement = rows[start : start + step]
        out.append(table_map(table_id, columns))
        chunk: list[Mapping[str, Any]] = []
        size = 0
        for row in statement:
            image = len(_row_image(row, columns))
            if chunk and size + image > ROW_EVENT_MAX_SIZE:
                out.append(write_rows(chunk, table_id, columns, end_of_statement=False))
                chunk, size = [], 0
            chunk.append(row)
            size += image
        out.append(write_rows(chunk, table_id, columns))
    return out


def outbox_row(
    id: int,
    payload: Any = None,
    *,
    event_type: str = "tender.created",
    aggregate_type: str = "tender",
    aggregate_id: str | None = None,
    schema_version: int = 1,
    published: bool = False,
    created_at: dt.datetime = dt.datetime(2026, 1, 5, 10, 0, 0, 123000),
    published_at: dt.datetime | None = None,
) -> dict[str, Any]:
    """One integration_outbox row. `payload` is a JSON value (encoded with json_binary) or a binary JSON document
    as bytes; by default a small tender payload."""
    return {
        "id": id,
        "event_type": event_type,
        "aggregate_type": aggregate_type,
        "aggregate_id": str(id) if aggregate_id is None else aggregate_id,
        "schema_version": schema_version,
        "payload": {"tender_id": id, "title": f"Tender {id}"} if payload is None else payload,
        "published": 1 if published else 0,
        "created_at": created_at,
        "published_at": published_at,
    }


# --- transactions ----------------------------------------------------------------------------------------------------


def _with_gtid(server_uuid: str, gno: int, events: list[RawEvent], **gtid_kwargs: Any) -> list[RawEvent]:
    """Put the GTID event in front, its transaction_length the size of the whole transaction including itself
    (the field's own size counts, as Gtid_event::update_untagged_transaction_length computes it)."""
    rest = sum(e.size() for e in events)
    length = rest
    while True:
        event = gtid(server_uuid, gno, transaction_length=length, **gtid_kwargs)
        if rest + event.size() == length:
            return [event, *events]
        length = rest + event.size()


def mysql_txn(
    server_uuid: str,
    gno: int,
    rows: Sequence[Mapping[str, Any]],
    *,
    xid_no: int | None = None,
    table_id: int = OUTBOX_TABLE_ID,
    columns: Sequence[Column] = OUTBOX_COLUMNS,
    per_statement: int | None = None,
    **gtid_kwargs: Any,
) -> list[RawEvent]:
    """An ordinary InnoDB transaction: GTID, BEGIN, (TABLE_MAP, WRITE_ROWS...) per statement, XID. With no rows it
    is an empty transaction (GTID, BEGIN, XID) as an UPDATE that matched nothing leaves."""
    body = [query("BEGIN"), *(_rows_events(rows, table_id, columns, per_statement) if rows else [])]
    return _with_gtid(server_uuid, gno, [*body, xid(gno if xid_no is None else xid_no)], **gtid_kwargs)


def mysql_ddl(server_uuid: str, gno: int, sql: str, **gtid_kwargs: Any) -> list[RawEvent]:
    """A DDL statement: its GTID (SBR flag set) and the query alone, no BEGIN and no XID (atomic DDL logs its xid
    in the query's status variables)."""
    return _with_gtid(server_uuid, gno, [query(sql, ddl=True, ddl_xid=gno)], may_have_sbr=True, **gtid_kwargs)


def mysql_xa_prepare(
    server_uuid: str,
    gno: int,
    gtrid: str,
    rows: Sequence[Mapping[str, Any]],
    *,
    bqual: str = "",
    table_id: int = OUTBOX_TABLE_ID,
    columns: Sequence[Column] = OUTBOX_COLUMNS,
    **gtid_kwargs: Any,
) -> list[RawEvent]:
    """XA START .. XA END .. XA PREPARE: the prepared part of an XA transaction has its own GTID and ends with an
    XA_PREPARE event (one_phase false); its rows become durable only with a later XA COMMIT."""
    body = [
        query(xa_sql("START", gtrid, bqual)),
        *(_rows_events(rows, table_id, columns, None) if rows else []),
        query(xa_sql("END", gtrid, bqual)),
        xa_prepare(gtrid, bqual=bqual),
    ]
    return _with_gtid(server_uuid, gno, body, **gtid_kwargs)


def mysql_xa_one_phase(
    server_uuid: str,
    gno: int,
    gtrid: str,
    rows: Sequence[Mapping[str, Any]],
    *,
    bqual: str = "",
    table_id: int = OUTBOX_TABLE_ID,
    columns: Sequence[Column] = OUTBOX_COLUMNS,
    **gtid_kwargs: Any,
) -> list[RawEvent]:
    """XA COMMIT ... ONE PHASE: logged like a prepare, but the XA_PREPARE event has one_phase set and ends a
    committed transaction."""
    body = [
        query(xa_sql("START", gtrid, bqual)),
        *(_rows_events(rows, table_id, columns, None) if rows else []),
        query(xa_sql("END", gtrid, bqual)),
        xa_prepare(gtrid, bqual=bqual, one_phase=True),
    ]
    return _with_gtid(server_uuid, gno, body, **gtid_kwargs)


def mysql_xa_commit(server_uuid: str, gno: int, gtrid: str, *, bqual: str = "", **gtid_kwargs: Any) -> list[RawEvent]:
    """XA COMMIT of a prepared XA transaction: a new GTID and the statement alone."""
    return _with_gtid(server_uuid, gno, [query(xa_sql("COMMIT", gtrid, bqual))], **gtid_kwargs)


def mysql_xa_rollback(server_uuid: str, gno: int, gtrid: str, *, bqual: str = "", **gtid_kwargs: Any) -> list[RawEvent]:
    return _with_gtid(server_uuid, gno, [query(xa_sql("ROLLBACK", gtrid, bqual))], **gtid_kwargs)


def binlog_start(previous: str = "", file: str = "binlog.000001") -> list[RawEvent]:
    """What a dump sends first: an artificial ROTATE naming the file, its FORMAT_DESCRIPTION, PREVIOUS_GTIDS."""
    return [rotate(file, 4, artificial=True), format_description(), previous_gtids(previous)]


def binlog_rotation(next_file: str, previous: str = "") -> list[RawEvent]:
    """The end of one binlog file and the start of the next (FLUSH BINARY LOGS, max_binlog_size, a restart)."""
    return [rotate(next_file, 4), format_description(), previous_gtids(previous)]


# --- binary JSON -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JsonInt:
    """An integer stored with this JSONB integer type (JSONB_INT16 .. JSONB_UINT64)."""

    value: int
    type_code: int

    def __post_init__(self) -> None:
        lo, hi, _ = _INT_RANGES[self.type_code]
        if not lo <= self.value <= hi:
            raise ValueError(f"{self.value} does not fit JSONB type {self.type_code}")


@dataclass(frozen=True, slots=True)
class JsonOpaque:
    """Custom data: any MySQL type in a JSON document (custom-type byte, data-length, data)."""

    field_type: int
    data: bytes


@dataclass(frozen=True, slots=True)
class JsonRawString:
    """A JSON string given as its stored bytes (to write bytes MySQL would refuse, e.g. invalid UTF-8)."""

    data: bytes


def json_binary(value: Any) -> bytes:
    """A JSON document in MySQL's binary format: the type byte, then the value."""
    type_code, data = _jsonb(value)
    return bytes([type_code]) + data


def _varlen(n: int) -> bytes:
    """data-length of strings and custom data: 7 bits a byte, low bits first, high bit = more follows."""
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _int_type(value: int) -> int:
    """The type MySQL's JSON parser gives an integer literal (json_dom.cc's rapidjson handlers): numbers that fit
    32 bits are signed (Json_int), larger positive ones unsigned (Json_uint), larger negative ones signed; the
    serializer then takes the smallest type of that kind (int16/int32/int64, uint16/uint32/uint64)."""
    if value > (1 << 32) - 1:
        return JSONB_UINT64 if value <= _INT_RANGES[JSONB_UINT64][1] else -1
    for t in (JSONB_INT16, JSONB_INT32, JSONB_INT64):
        lo, hi, _ = _INT_RANGES[t]
        if lo <= value <= hi:
            return t
    return -1


def _jsonb(value: Any) -> tuple[int, bytes]:
    if value is None:
        return JSONB_LITERAL, bytes([JSONB_NULL])
    if value is True:
        return JSONB_LITERAL, bytes([JSONB_TRUE])
    if value is False:
        return JSONB_LITERAL, bytes([JSONB_FALSE])
    if isinstance(value, JsonInt):
        return value.type_code, struct.pack(_INT_RANGES[value.type_code][2], value.value)
    if isinstance(value, int):
        t = _int_type(value)
        if t < 0:
            raise ValueError(f"{value} is outside MySQL's JSON integers")
        return t, struct.pack(_INT_RANGES[t][2], value)
    if isinstance(value, float):
        return JSONB_DOUBLE, struct.pack("<d", value)
    if isinstance(value, str):
        data = value.encode()
        return JSONB_STRING, _varlen(len(data)) + data
    if isinstance(value, JsonRawString):
        return JSONB_STRING, _varlen(len(value.data)) + value.data
    if isinstance(value, JsonOpaque):
        return JSONB_OPAQUE, bytes([value.field_type]) + _varlen(len(value.data)) + value.data
    if isinstance(value, decimal.Decimal):
        precision, scale, data = decimal_bin(value)
        return _jsonb(JsonOpaque(MYSQL_TYPE_NEWDECIMAL, bytes([precision, scale]) + data))
    if isinstance(value, dt.datetime):
        return _jsonb(JsonOpaque(MYSQL_TYPE_DATETIME, struct.pack("<q", datetime_packed(value))))
    if isinstance(value, dt.date):
        return _jsonb(JsonOpaque(MYSQL_TYPE_DATE, struct.pack("<q", datetime_packed(value))))
    if isinstance(value, dt.time):
        return _jsonb(JsonOpaque(MYSQL_TYPE_TIME, struct.pack("<q", time_packed(value))))
    if isinstance(value, Mapping):
        # Keys sorted by length, then bytes (Json_key_comparator): the order MySQL stores and returns them in. A
        # bytes key is written as given (e.g. invalid UTF-8, which MySQL itself would refuse).
        items: list[tuple[bytes, Any]] = [(k.encode() if isinstance(k, str) else bytes(k), v) for k, v in value.items()]
        items.sort(key=lambda kv: (len(kv[0]), kv[0]))
        return _container(items, is_object=True)
    if isinstance(value, list | tuple):
        return _container([(None, v) for v in value], is_object=False)
    raise TypeError(f"no binary JSON for {type(value).__name__}")


def _container(items: Sequence[tuple[bytes | None, Any]], is_object: bool) -> tuple[int, bytes]:
    """An object or array in the small format (2-byte counts, sizes and offsets) if it fits 64 KiB, else the large
    one (4 bytes), decided per container as json_binary.cc does."""
    encoded = [(k, _jsonb(v)) for k, v in items]
    for large in (False, True):
        laid_out = _layout(encoded, is_object, large)
        if laid_out is not None:
            if is_object:
                return (JSONB_LARGE_OBJECT if large else JSONB_SMALL_OBJECT), laid_out
            return (JSONB_LARGE_ARRAY if large else JSONB_SMALL_ARRAY), laid_out
    raise ValueError("JSON container larger than 4 GiB")


def _inlined(type_code: int, large: bool) -> bool:
    return type_code in (JSONB_LITERAL, JSONB_INT16, JSONB_UINT16) or (
        large and type_code in (JSONB_INT32, JSONB_UINT32)
    )


def _layout(encoded: list[tuple[bytes | None, tuple[int, bytes]]], is_object: bool, large: bool) -> bytes | None:
    width = 4 if large else 2
    limit = (1 << (8 * width)) - 1
    fmt = "<I" if large else "<H"
    count = len(encoded)
    header = 2 * width + count * (1 + width) + (count * (width + 2) if is_object else 0)
    keys = b"".join(k or b"" for k, _ in encoded)
    offset = header + len(keys)
    key_entries, value_entries, values = b"", b"", b""
    key_offset = header
    for key, (type_code, data) in encoded:
        if key is not None:
            if key_offset > limit or len(key) > 0xFFFF:
                return None
            key_entries += struct.pack(fmt, key_offset) + struct.pack("<H", len(key))
            key_offset += len(key)
        if _inlined(type_code, large):
            value_entries += bytes([type_code]) + data.ljust(width, b"\0")
        else:
            if offset > limit:
                return None
            value_entries += bytes([type_code]) + struct.pack(fmt, offset)
            values += data
            offset += len(data)
    size = header + len(keys) + len(values)
    if count > limit or size > limit:
        return None
    return struct.pack(fmt, count) + struct.pack(fmt, size) + key_entries + value_entries + keys + values


def decimal_bin(value: decimal.Decimal) -> tuple[int, int, bytes]:
    """(precision, scale, bytes) of MySQL's binary DECIMAL (decimal2bin): groups of 9 digits in 4 big-endian bytes,
    a partial leading / trailing group in 1-4 bytes, every byte inverted when negative, then the top bit of the
    first byte flipped."""
    if not value.is_finite():
        raise ValueError("DECIMAL is finite")
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits)) + "0" * max(0, exponent)
    scale = max(0, -exponent)
    int_digits = text[: len(text) - scale].lstrip("0") if len(text) > scale else ""
    frac_digits = text[len(text) - scale :].rjust(scale, "0") if scale else ""
    precision = max(1, len(int_digits) + scale)
    int_digits = int_digits.rjust(precision - scale, "0")
    dig2bytes = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)
    out = bytearray()
    lead = len(int_digits) % 9
    if lead:
        out += int(int_digits[:lead]).to_bytes(dig2bytes[lead], "big")
    for i in range(lead, len(int_digits), 9):
        out += int(int_digits[i : i + 9]).to_bytes(4, "big")
    full = scale - scale % 9
    for i in range(0, full, 9):
        out += int(frac_digits[i : i + 9]).to_bytes(4, "big")
    if scale % 9:
        out += int(frac_digits[full:]).to_bytes(dig2bytes[scale % 9], "big")
    if sign:
        out = bytearray(b ^ 0xFF for b in out)
    out[0] ^= 0x80
    return precision, scale, bytes(out)


def datetime_packed(value: dt.date) -> int:
    """TIME_to_longlong_datetime_packed: ((year*13+month)<<5 | day) << 17 | hh<<12 | mm<<6 | ss, << 24 | usec."""
    ymd = ((value.year * 13 + value.month) << 5) | value.day
    hms = 0
    usec = 0
    if isinstance(value, dt.datetime):
        hms = (value.hour << 12) | (value.minute << 6) | value.second
        usec = value.microsecond
    return (((ymd << 17) | hms) << 24) + usec


def time_packed(value: dt.time, negative: bool = False) -> int:
    """TIME_to_longlong_time_packed: (hh<<12 | mm<<6 | ss) << 24 | usec, negated for a negative TIME."""
    packed = (((value.hour << 12) | (value.minute << 6) | value.second) << 24) + value.microsecond
    return -packed if negative else packed


# --- the fake server and the reader ----------------------------------------------------------------------------------

_EOF_PACKET = b"\xfe\x00\x00\x02\x00"
COM_BINLOG_DUMP = 0x12
COM_BINLOG_DUMP_GTID = 0x1E


@dataclass
class FakeMySQLServer:
    """The server end of python-mysql-replication's stream and control connections, for `pymysql_wrapper`.

    It answers the few statements the library sends (checksum and row-metadata settings, SHOW BINARY LOG STATUS),
    records the dump command, then serves one session's events as binlog packets (framed here with running log
    positions and CRC32) and ends it with an EOF packet. Unexpected SQL fails the test: a library upgrade that
    changes its conversation shows up here."""

    sessions: list[Sequence[RawEvent | bytes]]
    version: str = SERVER_VERSION
    checksum: str = "CRC32"
    row_metadata: str = "FULL"
    binlog_status: tuple[str, int] = ("binlog.000001", 4)
    dump_requests: list[str] = field(default_factory=list)
    statements: list[str] = field(default_factory=list)
    served: int = 0  # packets sent on the current stream, EOF excluded

    def connect(self, **settings: Any) -> _FakeConnection:
        return _FakeConnection(self, settings)

    def frame_session(self, events: Iterable[RawEvent | bytes]) -> list[bytes]:
        """Each event as the dump sends it: a 0x00 OK byte, then the event with its log position."""
        checksum = self.checksum.upper() != "NONE"
        pos = 4
        out = []
        for event in events:
            if isinstance(event, bytes):
                out.append(b"\0" + event)
                continue
            if event.artificial:
                out.append(b"\0" + event.framed(0, checksum))
                continue
            pos += event.size(checksum)
            out.append(b"\0" + event.framed(pos, checksum))
            if event.type_code == ROTATE_EVENT:
                (pos,) = struct.unpack_from("<Q", event.body, 0)
        return out


class _FakeCursor:
    def __init__(self, conn: _FakeConnection) -> None:
        self._conn = conn
        self._rows: list[Any] = []

    def execute(self, sql: str, args: Any = None) -> int:
        server = self._conn.server
        server.statements.append(sql)
        text = " ".join(sql.upper().split()).rstrip(";")
        if text.startswith("SET "):
            self._rows = []
        elif text == "SHOW GLOBAL VARIABLES LIKE 'BINLOG_CHECKSUM'":
            self._rows = [self._conn.row(Variable_name="binlog_checksum", Value=server.checksum)]
        elif text == "SHOW VARIABLES LIKE 'BINLOG_ROW_METADATA'":
            self._rows = [self._conn.row(Variable_name="binlog_row_metadata", Value=server.row_metadata)]
        elif text == "SHOW BINARY LOG STATUS":
            file, pos = server.binlog_status
            self._rows = [self._conn.row(File=file, Position=pos, Binlog_Do_DB="", Binlog_Ignore_DB="")]
        else:
            raise AssertionError(f"the fake MySQL server got unexpected SQL: {sql!r}")
        return len(self._rows)

    def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    def fetchall(self) -> list[Any]:
        rows, self._rows = self._rows, []
        return rows

    def close(self) -> None:
        self._rows = []


class _FakeConnection:
    def __init__(self, server: FakeMySQLServer, settings: Mapping[str, Any]) -> None:
        self.server = server
        self.charset = settings.get("charset", "utf8mb4")
        self._dict_rows = settings.get("cursorclass") is pymysql.cursors.DictCursor
        self._packets: list[bytes] | None = None
        self._next_seq_id = 0

    def row(self, **columns: Any) -> Any:
        return dict(columns) if self._dict_rows else tuple(columns.values())

    def cursor(self, cursor: Any = None) -> _FakeCursor:
        return _FakeCursor(self)

    def get_server_info(self) -> str:
        return self.server.version

    def _write_bytes(self, data: bytes) -> None:
        command, payload = data[4], data[5:]
        if command == COM_BINLOG_DUMP_GTID:
            # flags u16, server_id u32, name size u32 + name, position u64, data size u32, GTID set.
            (name_size,) = struct.unpack_from("<I", payload, 6)
            start = 10 + name_size + 8 + 4
            self.server.dump_requests.append(decode_gtid_set(payload[start:]))
        elif command == COM_BINLOG_DUMP:
            pos, _flags, _server_id = struct.unpack_from("<IHI", payload, 0)
            self.server.dump_requests.append(f"{payload[10:].decode()}:{pos}")
        else:
            raise AssertionError(f"the fake MySQL server got unexpected command {command:#x}")
        if not self.server.sessions:
            raise AssertionError("the library opened one more binlog dump than the test has sessions for")
        self._packets = self.server.frame_session(self.server.sessions.pop(0))
        self.server.served = 0

    def _read_packet(self) -> MysqlPacket:
        if self._packets is None:
            raise AssertionError("the library read binlog packets before sending a dump command")
        if not self._packets:
            return MysqlPacket(_EOF_PACKET, "utf8")
        self.server.served += 1
        return MysqlPacket(self._packets.pop(0), "utf8")

    def close(self) -> None:
        self._packets = []


def stream_reader(server: FakeMySQLServer, **reader_kwargs: Any) -> BinLogStreamReader:
    """The library's own BinLogStreamReader on the fake server (checksums verified unless told otherwise)."""
    options: dict[str, Any] = {
        "connection_settings": {"host": "mysql.invalid", "port": 3306, "user": "relay", "passwd": ""},
        "server_id": 4242,
        "blocking": False,
        "enable_logging": False,
        "verify_checksum": True,
        "pymysql_wrapper": server.connect,
    }
    options.update(reader_kwargs)
    return BinLogStreamReader(**options)


def parse_events(events: Sequence[RawEvent | bytes], **reader_kwargs: Any) -> list[Any]:
    """The library's event objects for `events`, read as BinLogStreamReader.fetchone reads a MySQL 8.4 dump.

    Unless `events` begins with a ROTATE (a dump's own start), `binlog_start()` is sent first and its events are
    left out of the result. Every event's CRC32 is verified by the library; a mismatch fails here."""
    first = events[0] if events else None
    preamble = [] if isinstance(first, RawEvent) and first.type_code == ROTATE_EVENT else binlog_start()
    server = FakeMySQLServer([[*preamble, *events]])
    reader = stream_reader(server, **reader_kwargs)
    out = []
    try:
        while (event := reader.fetchone()) is not None:
            if getattr(event, "_is_event_valid", True) is False:
                raise AssertionError(f"CRC32 mismatch in {type(event).__name__}")
            if server.served > len(preamble):
                out.append(event)
    finally:
        reader.close()
    return out
