"""Idempotent, version-guarded MongoDB writes: latest-version documents (`upsert_versioned`) and append-only logs.

Two sinks share one implementation: `AsyncMongoSink` (pymongo's asyncio client; the worker's agents await it) and
`MongoSink` (blocking; the command-line tools and the read service's threads). The algorithms (the guarded upsert with
its pre-read, conflict rounds and FerretDB fallbacks, log inserts, validated reads) are written once, sans-IO: they
yield the store requests they need (`_Find`, `_InsertMany`, `_Command`) and each sink's small driver performs them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import re
import threading
from collections.abc import Awaitable, Callable, Generator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

import bson
from bson.errors import InvalidDocument
from bson.son import SON
from pymongo import AsyncMongoClient, MongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.database import Database
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    ExecutionTimeout,
    OperationFailure,
    PyMongoError,
    WriteConcernError,
    WTimeoutError,
)
from pymongo.write_concern import WriteConcern

from schema.checked import whole
from schema.settings import Settings
from sinks.errors import InvalidInputError, PermanentSinkError, SinkError, TransientSinkError
from sinks.retry import RetryPolicy, StoreSensor, bounded_all, retry, retry_sync, sensed

log = logging.getLogger(__name__)

T = TypeVar("T")

DUPLICATE_KEY = 11000
# Server codes that mean "try again": elections, shutdowns, network trouble, time limits, write conflicts.
TRANSIENT_CODES = frozenset(
    {6, 7, 50, 63, 64, 89, 91, 112, 133, 134, 150, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436}
)
# Server codes that mean "this document can never be written": bad values, oversized or `$`-named fields.
PERMANENT_CODES = frozenset({2, 14, 52, 55, 56, 66, 10334, 17419})

_INT64_MAX = 2**63 - 1
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_RESERVED = frozenset({"_id", "event_id"})
# How many rounds a key that keeps changing under us gets before the whole write is retried later.
_CONFLICT_ROUNDS = 3
_PREREAD_CHUNK = 5000
# Batches of this many keys or more that share a key field's value are pre-read on FerretDB by that equality alone.
_WIDE_BATCH = 500
# Update commands of one batch in flight at once (each on its own connection): FerretDB runs one op per command, so
# a batch of re-writes is bound by round trips (measured on 2 cores: 2.1 ms an op one at a time, 1.0 ms with 8).
_UPDATE_CONCURRENCY = 8
# Measured on FerretDB 1.24.2 (SQLite): each op of an `update` command that matches a document keeps a pool
# connection until the command ends (msg_update.go defers closing each op's iterator), and the pool holds 100 per
# database: ~100 matching ops in one command deadlock that database until FerretDB restarts. On its PostgreSQL backend
# (the stack's) the pool is 50 connections shared by every database: 8 commands of 100 ops in flight deadlocked the
# whole FerretDB (re-measured 2026-12-06: every handler waits in pgxpool Acquire, 50 connections idle in PostgreSQL).
# Its multi-op replies also stop at the first write error without counts and with wrong indexes. One op per command
# avoids all three.
_FERRETDB_BATCH_OPS = 1
_MONGODB_BATCH_OPS = 500
# Inserts of one batch in flight at once, as contiguous chunks of at least _MIN_INSERT_CHUNK documents: FerretDB
# writes an insert's documents to its storage one at a time, so one insert command is bound by round trips. Measured
# 2026-12-06 on 2 cores (FerretDB 1.24.2 on PostgreSQL 15, 30,000 activity-log documents in batches of 1,000): the
# capped log took 11,900-13,400 docs/s one insert at a time, 14,700 with 2 in flight, 20,800-23,700 with 4, 23,900
# with 8; a plain collection 12,800-14,200 -> 16,100-17,100 with 4.
_INSERT_CONCURRENCY = 4
_MIN_INSERT_CHUNK = 250
# MongoDB refuses documents over 16 MiB; commands are kept well under its 16 MiB + 16 KiB command limit.
_MAX_DOC_BYTES = 16 * 1024 * 1024
_MAX_COMMAND_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class VersionedDoc:
    """One derived document: its unique key, its content, the source versions it was built from, and its event."""

    key: dict[str, Any]
    fields: dict[str, Any]
    versions: dict[str, int]
    event_id: int


@dataclass(frozen=True)
class UpsertResult:
    """What `upsert_versioned` did: new documents, changed ones, equal-version replays, and refused older versions."""

    upserted: int = 0
    modified: int = 0
    unchanged: int = 0
    stale: int = 0


def validate_id(name: str, value: object) -> int:
    """An id that becomes part of a filter: a positive 64-bit int, never a bool, str or document."""
    if not whole(value):
        raise InvalidInputError(f"{name} must be a positive int, got {type(value).__name__} {str(value)[:40]!r}")
    if not 0 < value <= _INT64_MAX:
        raise InvalidInputError(f"{name} must be a positive 64-bit int, got {value}")
    return value


def validate_version(name: str, value: object) -> int:
    if not whole(value, 0, _INT64_MAX):
        raise InvalidInputError(f"version {name} must be a non-negative 64-bit int, got {str(value)[:40]!r}")
    return value


# Values `_plainly_clean` passes without a closer look: they hold no key and no string.
_SCALARS = frozenset({int, float, bool, type(None), dt.datetime})


def _plainly_clean(value: object) -> bool:
    """True if `value`, built of plain dicts, lists, tuples, strings and scalars, holds no `$` key, non-str key or NUL
    (what check_no_operators refuses); False when it does or holds anything else (then the full check decides). The
    worker checks every document it writes, so this avoids the ABC checks and the path strings of the full one."""
    if type(value) is str:
        return "\x00" not in value
    if type(value) is dict:
        for key, inner in value.items():
            if type(key) is not str or key[:1] == "$" or "\x00" in key or not _plainly_clean(inner):
                return False
        return True
    if type(value) is list or type(value) is tuple:
        return all(_plainly_clean(inner) for inner in value)
    return type(value) in _SCALARS


def storable_text(value: str | None) -> str | None:
    """Free text as the stores keep it: without NUL characters, which no reader shows and `check_no_operators`
    refuses (a tender's summary, a score's checklist must not be lost to one stray control character)."""
    return value.replace("\x00", "") if value else value


def check_no_operators(value: object, path: str) -> None:
    """Refuse `$` keys anywhere in a value, so stored data can never be read back as a query or update operator, and
    NUL characters in any key or string: MongoDB would store them, but FerretDB's PostgreSQL storage (the local
    stack's) cannot (jsonb has no NUL), and a write that can never succeed must be refused, not retried. Refused on
    every backend, so the pipeline behaves the same on each."""
    if not _plainly_clean(value):
        _check_in_full(value, path)


def _check_in_full(value: object, path: str) -> None:
    """check_no_operators for any value, naming the path of what it refuses."""
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidInputError(f"{path}: a NUL character in a string is not stored")
        return
    if isinstance(value, Mapping):
        for key, inner in value.items():
            if not isinstance(key, str):
                raise InvalidInputError(f"{path}: field names must be str, got {type(key).__name__}")
            if key.startswith("$") or "\x00" in key:
                raise InvalidInputError(f"{path}: field name {key[:40]!r} is not allowed (operator injection)")
            _check_in_full(inner, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for i, inner in enumerate(value):
            _check_in_full(inner, f"{path}[{i}]")


def _check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInputError(f"{what} {str(name)[:40]!r} must be an identifier ([A-Za-z_][A-Za-z0-9_]*)")
    return name


def validate_versioned(docs: Sequence[VersionedDoc]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Check a batch before any write; return its key field names and version field names.

    Raises InvalidInputError naming the first bad document's index. Every document of a batch must use the same key
    and version fields: mixing them would make the guard compare unrelated versions.
    """
    key_fields: tuple[str, ...] = ()
    version_fields: frozenset[str] = frozenset()
    for index, doc in enumerate(docs):
        try:
            if not isinstance(doc, VersionedDoc):
                raise InvalidInputError(f"expected VersionedDoc, got {type(doc).__name__}")
            if not doc.key or not doc.versions:
                raise InvalidInputError("key and versions must not be empty")
            for name, value in doc.key.items():
                validate_id(_check_name(name, "key field"), value)
            for name, value in doc.versions.items():
                validate_version(_check_name(name, "version field"), value)
            validate_id("event_id", doc.event_id)
            if set(doc.key) & set(doc.versions):
                raise InvalidInputError(f"key and version fields overlap: {sorted(set(doc.key) & set(doc.versions))}")
            clash = sorted((set(doc.key) | set(doc.versions) | _RESERVED) & set(doc.fields))
            if clash:
                raise InvalidInputError(f"fields may not set key, version or reserved fields: {clash}")
            for name, value in doc.fields.items():
                _check_name(name, "field")
                check_no_operators(value, name)
            if index == 0:
                key_fields, version_fields = tuple(doc.key), frozenset(doc.versions)
            elif set(doc.key) != set(key_fields) or set(doc.versions) != version_fields:
                raise InvalidInputError(
                    f"mixed batch: key {sorted(doc.key)} / versions {sorted(doc.versions)} differ from "
                    f"{sorted(key_fields)} / {sorted(version_fields)}"
                )
        except InvalidInputError as exc:
            key = doc.key if isinstance(doc, VersionedDoc) and isinstance(doc.key, Mapping) else None
            raise InvalidInputError(f"document {index}: {exc}", index=index, key=key) from None
    return key_fields, tuple(sorted(version_fields))


def dominates(new: Mapping[str, int], old: Mapping[str, int]) -> bool:
    """True when no version of `new` is older than `old`'s: the only case where `new` may replace `old`."""
    return all(new[name] >= old[name] for name in old)


def collapse_per_key(
    docs: Sequence[VersionedDoc], key_fields: Sequence[str]
) -> tuple[list[tuple[int, VersionedDoc]], list[tuple[int, VersionedDoc]]]:
    """Keep one document per key: (winners, dropped), each with its index in `docs`.

    Folding in batch order gives exactly what writing the documents one by one through the guard would: a later
    document replaces the held one only if it dominates it (ties go to the later one, as a replay rewrites the same
    content). With two or more version fields an incomparable later document is dropped, as the guard would refuse it.
    """
    held: dict[tuple[Any, ...], tuple[int, VersionedDoc]] = {}
    dropped: list[tuple[int, VersionedDoc]] = []
    for index, doc in enumerate(docs):
        key = tuple(doc.key[name] for name in key_fields)
        current = held.get(key)
        if current is None:
            held[key] = (index, doc)
        elif dominates(doc.versions, current[1].versions):
            dropped.append(current)
            held[key] = (index, doc)
        else:
            dropped.append((index, doc))
    return list(held.values()), dropped


def update_reply_is_exact(reply: Mapping[str, Any], sent: int) -> bool:
    """True when an unordered update reply accounts for every op sent, so its error indexes can be trusted.

    MongoDB runs every op of an unordered command and reports n (ops that matched or upserted) plus one error per
    failed op. FerretDB 1.24 stops at the first error and replies with the error alone, with a wrong index.
    """
    errors = reply.get("writeErrors") or []
    return "n" in reply and "nModified" in reply and int(reply["n"]) + len(errors) == sent


def classify_mongo_error(exc: Exception) -> SinkError | None:
    """The sink policy for a pymongo/bson exception (see sinks.errors); None = not ours, let it propagate."""
    if isinstance(exc, SinkError):
        return exc
    # ConnectionFailure covers AutoReconnect, NetworkTimeout, ServerSelectionTimeoutError and pool wait timeouts.
    if isinstance(exc, ConnectionFailure | ExecutionTimeout | WTimeoutError | WriteConcernError):
        return TransientSinkError(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, OperationFailure):
        if exc.code in TRANSIENT_CODES or exc.has_error_label("RetryableWriteError"):
            return TransientSinkError(f"{type(exc).__name__} {exc.code}: {exc}")
        if exc.code in PERMANENT_CODES:
            return PermanentSinkError(f"{type(exc).__name__} {exc.code}: {exc}", code=exc.code)
        return None
    # Raised while encoding: an unencodable value, an int beyond 64 bits, a document over 16 MiB.
    if isinstance(exc, InvalidDocument | OverflowError):
        return PermanentSinkError(f"{type(exc).__name__}: {exc}")
    return None


@dataclass(frozen=True)
class _Op:
    """One document to write: its index in the caller's batch, its key values and its guarded upsert statement."""

    index: int
    doc: VersionedDoc
    key: tuple[Any, ...]
    statement: dict[str, Any]
    size: int


def _op(index: int, doc: VersionedDoc, key_fields: Sequence[str], version_fields: Sequence[str]) -> _Op:
    statement = {
        "q": {**doc.key, **{name: {"$lte": doc.versions[name]} for name in version_fields}},
        "u": {"$set": {**doc.fields, **doc.versions, "event_id": doc.event_id}},
        "upsert": True,
    }
    # Encoding here refuses unencodable or oversized documents with their index, before anything is written.
    try:
        size = len(bson.encode(statement))
    except (InvalidDocument, OverflowError) as exc:
        raise InvalidInputError(f"document {index}: {exc}", index=index, key=doc.key) from None
    if size > _MAX_DOC_BYTES:
        raise InvalidInputError(f"document {index}: {size} bytes is over MongoDB's 16 MiB", index=index, key=doc.key)
    return _Op(index, doc, tuple(doc.key[name] for name in key_fields), statement, size)


@dataclass
class _Run:
    """Bookkeeping of one upsert_versioned attempt: counts so far and the documents that can never be written."""

    collection: str
    key_fields: tuple[str, ...]
    version_fields: tuple[str, ...]
    upserted: int = 0
    modified: int = 0
    unchanged: int = 0
    stale: int = 0
    failures: list[PermanentSinkError] = field(default_factory=list)

    def count_reply(self, reply: Mapping[str, Any]) -> None:
        upserted = len(reply.get("upserted") or ())
        matched = max(0, int(reply.get("n", 0)) - upserted)
        modified = min(matched, int(reply.get("nModified", 0)))
        self.upserted += upserted
        self.modified += modified
        self.unchanged += matched - modified

    def refuse(self, op: _Op, reason: str, code: int | None = None) -> None:
        log.warning("%s: cannot write event %d key %s: %s", self.collection, op.doc.event_id, op.doc.key, reason)
        self.failures.append(
            PermanentSinkError(f"{self.collection}: {reason}", index=op.index, key=op.doc.key, code=code)
        )

    def result(self) -> UpsertResult:
        return UpsertResult(self.upserted, self.modified, self.unchanged, self.stale)


# -- the store requests the sink's algorithms make (sans-IO: each driver below performs them) -----------------------


@dataclass(frozen=True)
class _Find:
    """Read documents; `keep(doc)` returning False stops the read (the cursor is closed)."""

    collection: str
    query: Mapping[str, Any]
    projection: Mapping[str, Any]
    sort: tuple[tuple[str, int], ...] = ()
    limit: int = 0
    batch_size: int = 0
    keep: Callable[[Mapping[str, Any]], bool] | None = None


@dataclass(frozen=True)
class _InsertMany:
    """An unordered insert with majority write concern; a BulkWriteError is thrown back into the algorithm. The async
    driver sends a large one as a few inserts in flight together (`insert_in_chunks`), the blocking one as one."""

    collection: str
    docs: Sequence[dict[str, Any]]


@dataclass(frozen=True)
class _Command:
    command: MutableMapping[str, Any]
    admin: bool = False


@dataclass(frozen=True)
class _Commands:
    """Commands that may run at once (each one's effect is independent of the others'): sent their replies in
    order; if any raised, the first error is thrown once all have ended."""

    commands: tuple[MutableMapping[str, Any], ...]


_Request = _Find | _InsertMany | _Command | _Commands
# An algorithm: yields requests, is sent each one's result (or thrown its pymongo error), returns its value.
Steps = Generator[_Request, Any, T]
# Stored documents (their key and version fields at least) by their key values.
_Stored = dict[tuple[Any, ...], Mapping[str, Any]]


def _done(value: T) -> Steps[T]:
    return value
    yield  # a generator that makes no request


@dataclass(frozen=True)
class _Call(Generic[T]):
    """A validated public call: what it is (for retries, logs and the sensor; None for a call that needs no store)
    and how to start a fresh attempt of it."""

    what: str | None
    steps: Callable[[], Steps[T]]


class _MongoCore:
    """The sink's algorithms and argument checks, shared by the blocking MongoSink and the asyncio AsyncMongoSink:
    each public call is validated here and becomes a `_Call` whose steps its driver performs."""

    def __init__(
        self,
        url: str,
        database: str,
        *,
        retry_policy: RetryPolicy | None = None,
        timeout_s: float = 5.0,
        socket_timeout_s: float = 60.0,
        batch_ops: int | None = None,
        preread: bool = True,
        sensor: StoreSensor | None = None,
    ) -> None:
        """`batch_ops`: update ops per command (default: 1 on FerretDB, 500 on MongoDB). `preread`: read the stored
        versions of a batch first, so stale documents cost no write and new keys go in with one insert_many (one
        extra query per batch); False sends every document through the guarded upsert alone."""
        if batch_ops is not None and batch_ops < 1:
            raise ValueError(f"batch_ops must be >= 1, got {batch_ops}")
        self._url = url
        self._database = database
        self._policy = retry_policy or RetryPolicy()
        self._timeout_ms = int(timeout_s * 1000)
        self._socket_timeout_ms = int(socket_timeout_s * 1000)
        self._batch_ops = batch_ops
        self._ferretdb: bool | None = None  # what the server is, asked once (buildInfo)
        self._preread = preread
        self._sensor = sensor

    def _client_options(self) -> dict[str, Any]:
        return {
            "serverSelectionTimeoutMS": self._timeout_ms,
            "connectTimeoutMS": self._timeout_ms,
            "socketTimeoutMS": self._socket_timeout_ms,
            "appname": "tenderhub-sinks",
        }

    def _write_concern(self) -> WriteConcern:
        # Majority so an acknowledged write survives a primary failover; FerretDB accepts and ignores it.
        return WriteConcern(w="majority", wtimeout=self._socket_timeout_ms)

    # -- public calls, validated --------------------------------------------------------------------------------

    def _upsert_call(
        self, collection: str, docs: Sequence[VersionedDoc], stored: Sequence[Mapping[str, Any]] | None = None
    ) -> _Call[UpsertResult]:
        """See `MongoSink.upsert_versioned`."""
        if not docs:
            return _Call(None, lambda: _done(UpsertResult()))
        key_fields, version_fields = validate_versioned(docs)
        winners, dropped = collapse_per_key(docs, key_fields)
        for index, doc in dropped:
            log.debug(
                "%s: event %d (doc %d) superseded in its batch for key %s", collection, doc.event_id, index, doc.key
            )
        ops = [_op(index, doc, key_fields, version_fields) for index, doc in winners]
        given = None if stored is None else _by_key(stored, key_fields)

        def attempt() -> Steps[UpsertResult]:
            nonlocal given
            run = _Run(collection, key_fields, version_fields, stale=len(dropped))
            # The caller's read answers the first attempt only: a retry reads what the failed attempt left.
            read, given = given, None
            yield from self._upsert(run, ops, read)
            if run.failures:
                first = run.failures[0]
                raise PermanentSinkError(
                    f"{first} ({len(run.failures)} documents refused, the rest of the batch written)",
                    index=first.index,
                    key=first.key,
                    code=first.code,
                )
            result = run.result()
            log.debug("upsert_versioned %s: %d docs -> %s", collection, len(docs), result)
            return result

        return _Call(f"upsert_versioned {collection} ({len(docs)} docs)", attempt)

    def _insert_logs_call(self, collection: str, docs: Sequence[Mapping[str, Any]]) -> _Call[int]:
        """See `MongoSink.insert_logs`."""
        batch = [_checked_log_doc(index, doc) for index, doc in enumerate(docs)]
        if not batch:
            return _Call(None, lambda: _done(0))
        return _Call(f"insert_logs {collection} ({len(batch)} docs)", lambda: self._insert_logs(collection, batch))

    def _find_by_ids_call(
        self,
        collection: str,
        field: str,
        ids: Sequence[int],
        fields: Sequence[str],
        where: Mapping[str, int] | None = None,
    ) -> _Call[list[dict[str, Any]]]:
        """See `MongoSink.find_by_ids`."""
        name = _check_name(field, "field")
        wanted = sorted({validate_id(name, i) for i in ids})
        also = _equalities(where or {}, exclude=name)
        if not wanted:
            return _Call(None, lambda: _done([]))
        coll = _check_name(collection, "collection")
        projection = {"_id": 0, name: 1, **{_check_name(f, "field"): 1 for f in fields}}

        def read() -> Steps[list[dict[str, Any]]]:
            if len(wanted) == 1:
                # Equality, not $in: FerretDB pushes a scalar equality down to its storage and reads every document
                # of the collection for an $in (the read service's single-tender reads: 80 against ~1,000/s).
                found: list[dict[str, Any]] = yield _Find(coll, {name: wanted[0], **also}, projection)
                return found
            out: list[dict[str, Any]] = []
            for start in range(0, len(wanted), _PREREAD_CHUNK):
                query = {name: {"$in": wanted[start : start + _PREREAD_CHUNK]}, **also}
                out.extend((yield _Find(coll, query, projection)))
            return out

        return _Call(f"find {collection} by {name} ({len(wanted)} ids)", read)

    def _delete_older_call(self, collection: str, where: Mapping[str, int], field: str, below: int) -> _Call[int]:
        """See `MongoSink.delete_older`."""
        name = _check_name(field, "field")
        limit = validate_version(name, below)
        query: dict[str, Any] = _equalities(where, exclude=name)
        if not query:
            raise InvalidInputError(f"delete_older needs at least one equality besides {name}, got {where!r}")
        query[name] = {"$lt": limit}
        command = SON(
            [
                ("delete", _check_name(collection, "collection")),
                ("deletes", [{"q": query, "limit": 0}]),
                ("ordered", False),
                ("writeConcern", {"w": "majority", "wtimeout": self._socket_timeout_ms}),
            ]
        )

        def delete() -> Steps[int]:
            reply: dict[str, Any] = yield _Command(command)
            _raise_write_concern_error(reply)
            for error in reply.get("writeErrors") or []:
                code = error.get("code")
                message = str(error.get("errmsg", "write error"))[:300]
                if code in TRANSIENT_CODES:
                    raise TransientSinkError(f"{collection}: delete error {code}: {message}")
                raise PermanentSinkError(f"{collection}: delete error {code}: {message}", key=dict(where))
            return int(reply.get("n", 0))

        return _Call(f"delete {collection} where {sorted(query)} {name} < {limit}", delete)

    def _find_where_call(
        self,
        collection: str,
        where: Mapping[str, int],
        fields: Sequence[str],
        sort: tuple[str, int] | None,
        limit: int,
    ) -> _Call[list[dict[str, Any]]]:
        """See `MongoSink.find_where`."""
        query = {_check_name(name, "field"): validate_id(name, value) for name, value in where.items()}
        if not query or not whole(limit, 1, 10_000):
            raise InvalidInputError(f"find_where needs a filter and a limit of 1 to 10,000, got {where!r}, {limit!r}")
        projection = {"_id": 0, **{_check_name(f, "field"): 1 for f in fields}}
        order = () if sort is None else ((_check_name(sort[0], "field"), -1 if sort[1] < 0 else 1),)
        request = _Find(_check_name(collection, "collection"), query, projection, sort=order, limit=limit)

        def read() -> Steps[list[dict[str, Any]]]:
            found: list[dict[str, Any]] = yield request
            return found

        return _Call(f"find {collection} where {sorted(query)}", read)

    def _ids_where_not_call(
        self, collection: str, id_field: str, field: str, value: str, limit: int
    ) -> _Call[list[int]]:
        """See `MongoSink.ids_where_not`."""
        name, other = _check_name(id_field, "field"), _check_name(field, "field")
        if not isinstance(value, str) or not whole(limit, 1):
            raise InvalidInputError(f"ids_where_not needs a str value and a positive limit, got {value!r}, {limit!r}")
        coll = _check_name(collection, "collection")

        def read() -> Steps[list[int]]:
            found: set[int] = set()

            def keep(doc: Mapping[str, Any]) -> bool:
                ident = doc.get(name)
                if whole(ident):
                    found.add(ident)
                return len(found) < limit

            yield _Find(
                coll,
                {other: {"$ne": value}},
                {"_id": 0, name: 1},
                sort=((name, 1),),
                batch_size=_PREREAD_CHUNK,
                keep=keep,
            )
            return sorted(found)

        return _Call(f"find {collection} {name} where {other} != {value!r}", read)

    # -- the guarded upsert ---------------------------------------------------------------------------------------

    def _is_ferretdb(self) -> Steps[bool]:
        if self._ferretdb is None:
            info = yield _Command({"buildInfo": 1}, admin=True)
            ferretdb = info.get("ferretdbVersion")
            self._ferretdb = bool(ferretdb)
            server = f"FerretDB {ferretdb}" if ferretdb else f"MongoDB {info.get('version')}"
            log.info("store: %s", server)
        return self._ferretdb

    def _ops_per_command(self) -> Steps[int]:
        if self._batch_ops is None:
            self._batch_ops = _FERRETDB_BATCH_OPS if (yield from self._is_ferretdb()) else _MONGODB_BATCH_OPS
            log.info("%d update ops per command", self._batch_ops)
        return self._batch_ops

    def _upsert(self, run: _Run, ops: list[_Op], read: _Stored | None) -> Steps[None]:
        updates: list[_Op] = []
        if self._preread:
            stored = read if read is not None else (yield from self._stored_versions(run, ops))
            inserts: list[_Op] = []
            for op in ops:
                current = stored.get(op.key)
                if current is None:
                    inserts.append(op)
                elif self._judge(run, op, current):
                    updates.append(op)
            updates.extend((yield from self._insert_new(run, inserts)))
        else:
            updates = ops
        most = yield from self._ops_per_command()
        chunks: list[list[_Op]] = []
        chunk_bytes = 0
        for op in updates:
            if not chunks or len(chunks[-1]) >= most or chunk_bytes + op.size > _MAX_COMMAND_BYTES:
                chunks.append([])
                chunk_bytes = 0
            chunks[-1].append(op)
            chunk_bytes += op.size
        if chunks:
            replies = yield _Commands(tuple(self._update_command(run, chunk) for chunk in chunks))
            for chunk, reply in zip(chunks, replies, strict=True):
                yield from self._update_chunk(run, chunk, reply)

    def _judge(self, run: _Run, op: _Op, current: Mapping[str, Any]) -> bool:
        """True if `op` may overwrite `current`; otherwise counts it stale (or refuses it) and returns False."""
        stored: dict[str, int] = {}
        for name in run.version_fields:
            value = current.get(name)
            if not whole(value):
                # The $lte guard can never match such a document, so no retry would ever write this key.
                run.refuse(op, f"stored {name} of {op.doc.key} is {value!r}, not an int: written outside MongoSink?")
                return False
            stored[name] = value
        if dominates(op.doc.versions, stored):
            return True
        run.stale += 1
        log.debug(
            "%s: event %d is stale for key %s: versions %s < stored %s",
            run.collection,
            op.doc.event_id,
            op.doc.key,
            op.doc.versions,
            stored,
        )
        return False

    def _stored_versions(self, run: _Run, ops: Sequence[_Op]) -> Steps[_Stored]:
        """The stored version fields of the batch's keys, in one query per chunk (absent keys are missing)."""
        projection = {"_id": 0, **{name: 1 for name in (*run.key_fields, *run.version_fields)}}
        wide = yield from self._equality_alone(run, ops)
        reads: list[tuple[dict[str, Any], Sequence[_Op], int]] = (
            [(wide, ops, _PREREAD_CHUNK)]  # one query for the whole batch
            if wide is not None
            else [
                (_key_query(run, ops[start : start + _PREREAD_CHUNK]), ops[start : start + _PREREAD_CHUNK], 0)
                for start in range(0, len(ops), _PREREAD_CHUNK)
            ]
        )
        found: _Stored = {}
        for query, chunk, batch_size in reads:
            # The query is a superset of the chunk's keys, filtered here; the cursor is always drained.
            wanted = {op.key for op in chunk}
            docs: list[dict[str, Any]] = yield _Find(run.collection, query, projection, batch_size=batch_size)
            for doc in docs:
                key = _doc_key(doc, run.key_fields)
                if key in wanted:
                    found[key] = doc
        return found

    def _equality_alone(self, run: _Run, ops: Sequence[_Op]) -> Steps[dict[str, Any] | None]:
        """On FerretDB, for a batch whose key fields with one value (one team's rescore, one tender's) leave a
        long `$in` on the others: the equalities alone. FerretDB reads every document matching the equalities
        anyway (they are its storage's index lookup) and then matches each against the whole `$in` list in Go
        (5,000 of one team's scores: ~0.9 s by the equality, ~1.3 s with a `$in` of 5,000; and a batch over
        _PREREAD_CHUNK keys read them twice). None: the per-chunk `$in` query (MongoDB's unique index answers it)."""
        if len(ops) < _WIDE_BATCH:
            return None
        fixed: dict[str, Any] = {}
        for i, name in enumerate(run.key_fields):
            values = {op.key[i] for op in ops}
            if len(values) == 1:
                fixed[name] = next(iter(values))
        if not fixed or len(fixed) == len(run.key_fields) or not (yield from self._is_ferretdb()):
            return None
        return fixed

    def _insert_new(self, run: _Run, ops: list[_Op]) -> Steps[list[_Op]]:
        """Insert documents whose key was absent; return those that appeared meanwhile (for the guarded update)."""
        if not ops:
            return []
        docs = [{**op.doc.key, **op.doc.fields, **op.doc.versions, "event_id": op.doc.event_id} for op in ops]
        try:
            yield _InsertMany(run.collection, docs)
        except BulkWriteError as exc:
            details = exc.details
            _raise_write_concern_error(details)
            errors = details.get("writeErrors") or []
            if int(details.get("nInserted", 0)) + len(errors) < len(ops):
                raise TransientSinkError(f"{run.collection}: the server stopped an unordered insert early") from exc
            run.upserted += int(details.get("nInserted", 0))
            late: list[_Op] = []
            for error in errors:
                op = ops[int(error["index"])]
                if error.get("code") == DUPLICATE_KEY:
                    late.append(op)
                else:
                    self._write_error(run, op, error)
            return late
        run.upserted += len(ops)
        return []

    def _update_chunk(self, run: _Run, ops: list[_Op], reply: Mapping[str, Any]) -> Steps[None]:
        _raise_write_concern_error(reply)
        errors = reply.get("writeErrors") or []
        if not errors:
            run.count_reply(reply)
            return
        if len(ops) == 1:
            yield from self._op_error(run, ops[0], errors[0])
            return
        if update_reply_is_exact(reply, len(ops)):
            run.count_reply(reply)
            for error in errors:
                yield from self._op_error(run, ops[int(error["index"])], error)
            return
        # FerretDB 1.24: the command stopped at its first error, reported no counts and a wrong index, so we cannot
        # tell which ops ran. Re-send each op alone: those already applied match again with equal versions.
        log.info("%s: multi-op update reply without counts; re-sending %d ops one by one", run.collection, len(ops))
        for op in ops:
            yield from self._update_one(run, op)

    def _update_one(self, run: _Run, op: _Op) -> Steps[None]:
        reply = yield from self._send_update(run, [op])
        errors = reply.get("writeErrors") or []
        if errors:
            yield from self._op_error(run, op, errors[0])
        else:
            run.count_reply(reply)

    def _op_error(self, run: _Run, op: _Op, error: Mapping[str, Any]) -> Steps[None]:
        if error.get("code") == DUPLICATE_KEY:
            yield from self._resolve_conflict(run, op)
        else:
            self._write_error(run, op, error)

    def _resolve_conflict(self, run: _Run, op: _Op) -> Steps[None]:
        """The guard missed and the upsert's insert hit a unique index: find out whether the stored one is newer.

        Usually it is (stale). If another writer inserted an older version between our read and our write, the
        key now exists and the guarded update goes through on the next round.
        """
        for _ in range(_CONFLICT_ROUNDS):
            current = (yield from self._stored_versions(run, [op])).get(op.key)
            if current is None:
                run.refuse(op, f"duplicate key on another unique index for {op.doc.key}", DUPLICATE_KEY)
                return
            if not self._judge(run, op, current):
                return
            reply = yield from self._send_update(run, [op])
            errors = reply.get("writeErrors") or []
            if not errors:
                run.count_reply(reply)
                return
            if errors[0].get("code") != DUPLICATE_KEY:
                self._write_error(run, op, errors[0])
                return
        raise TransientSinkError(f"{run.collection}: key {op.doc.key} kept changing during the write")

    def _write_error(self, run: _Run, op: _Op, error: Mapping[str, Any]) -> None:
        code = error.get("code")
        message = str(error.get("errmsg", "write error"))[:300]
        if code in TRANSIENT_CODES:
            raise TransientSinkError(f"{run.collection}: write error {code} for key {op.doc.key}: {message}")
        run.refuse(op, f"write error {code}: {message}", code if isinstance(code, int) else None)

    def _update_command(self, run: _Run, ops: Sequence[_Op]) -> SON[str, Any]:
        # A raw command rather than bulk_write: pymongo's bulk parser raises KeyError('nModified') on FerretDB's
        # error replies, and we need the reply itself to tell which ops ran.
        return SON(
            [
                ("update", run.collection),
                ("updates", [op.statement for op in ops]),
                ("ordered", False),
                ("writeConcern", {"w": "majority", "wtimeout": self._socket_timeout_ms}),
            ]
        )

    def _send_update(self, run: _Run, ops: Sequence[_Op]) -> Steps[dict[str, Any]]:
        reply: dict[str, Any] = yield _Command(self._update_command(run, ops))
        _raise_write_concern_error(reply)
        return reply

    def _insert_logs(self, collection: str, docs: list[dict[str, Any]]) -> Steps[int]:
        try:
            yield _InsertMany(collection, docs)
        except BulkWriteError as exc:
            details = exc.details
            _raise_write_concern_error(details)
            inserted = int(details.get("nInserted", 0))
            errors = details.get("writeErrors") or []
            if inserted + len(errors) < len(docs):
                raise TransientSinkError(f"{collection}: the server stopped an unordered insert early") from exc
            duplicates = [e for e in errors if e.get("code") == DUPLICATE_KEY]
            others = [e for e in errors if e.get("code") != DUPLICATE_KEY]
            if duplicates:
                log.info(
                    "%s: %d redelivered events ignored (event ids %s)",
                    collection,
                    len(duplicates),
                    [docs[int(e["index"])]["_id"] for e in duplicates[:10]],
                )
            if others:
                first = others[0]
                code = first.get("code")
                if code in TRANSIENT_CODES:
                    raise TransientSinkError(f"{collection}: insert error {code}: {first.get('errmsg')}") from exc
                index = int(first["index"])
                raise PermanentSinkError(
                    f"{collection}: insert error {code} for event {docs[index]['_id']}: "
                    f"{str(first.get('errmsg'))[:300]} ({len(others)} documents refused, the rest inserted)",
                    index=index,
                    key={"_id": docs[index]["_id"]},
                    code=code if isinstance(code, int) else None,
                ) from exc
            return inserted
        return len(docs)


def _doc_key(doc: Mapping[str, Any], key_fields: Sequence[str]) -> tuple[Any, ...]:
    """A stored document's values of `key_fields` (None for a missing one)."""
    return tuple(doc.get(name) for name in key_fields)


def _by_key(docs: Sequence[Mapping[str, Any]], key_fields: Sequence[str]) -> _Stored:
    """A caller's read of stored documents, by their values of `key_fields`."""
    return {_doc_key(doc, key_fields): doc for doc in docs}


def _equalities(where: Mapping[str, int], exclude: str) -> dict[str, int]:
    """A filter of validated equalities (field -> positive id, never a caller's document); `exclude` may not be one."""
    if not isinstance(where, Mapping):
        raise InvalidInputError(f"a filter must map field names to ids, got {type(where).__name__}")
    query = {_check_name(name, "field"): validate_id(name, value) for name, value in where.items()}
    if exclude in query:
        raise InvalidInputError(f"{exclude} cannot be both the filter's id field and one of its equalities")
    return query


def _key_query(run: _Run, chunk: Sequence[_Op]) -> dict[str, Any]:
    """Per-field $in over a chunk's keys (a superset for compound keys); it uses the unique index on MongoDB. A field
    with one value is an equality, which FerretDB hands to its storage (an index lookup on the stack's PostgreSQL): it
    filters any operator itself, after reading every document of the collection."""
    query: dict[str, Any] = {}
    for i, name in enumerate(run.key_fields):
        values = sorted({op.key[i] for op in chunk})
        query[name] = values[0] if len(values) == 1 else {"$in": values}
    return query


def _find_kwargs(request: _Find) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if request.limit:
        options["limit"] = request.limit
    if request.batch_size:
        options["batch_size"] = request.batch_size
    if request.sort:
        options["sort"] = list(request.sort)
    return options


class MongoSink(_MongoCore):
    """Writes derived documents and logs into one MongoDB database, blocking (pymongo's MongoClient): for the
    command-line tools and the read service's threads. The worker's agents use AsyncMongoSink. The client is created
    on first use."""

    def __init__(self, url: str, database: str, **options: Any) -> None:
        super().__init__(url, database, **options)
        self._client: MongoClient[dict[str, Any]] | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> MongoSink:
        return cls(settings.mongo_url.get_secret_value(), settings.mongo_db, **options)

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def upsert_versioned(
        self, collection: str, docs: Sequence[VersionedDoc], stored: Sequence[Mapping[str, Any]] | None = None
    ) -> UpsertResult:
        """Write the newest version of each document; an older version never overwrites a newer one.

        A document is written when every stored version is <= its own (equal versions rewrite the same content, so
        replays are idempotent) and counted `stale` otherwise, as are the older duplicates of a key in the batch.
        Raises InvalidInputError before writing anything, PermanentSinkError (index, key) after writing the rest of
        the batch, and TransientSinkError once the retries are spent.

        `stored`: the caller's own read of the stored documents of EVERY key in `docs` (at least their key and
        version fields; a key without one is taken as absent), used instead of the sink's read of them. It may be out
        of date: the guards and the unique index still decide (a key stored meanwhile is met by the guarded update,
        a newer version stays), it only costs a conflict resolved. A retry reads afresh.
        """
        return self._run(self._upsert_call(collection, docs, stored))

    def insert_logs(self, collection: str, docs: Sequence[Mapping[str, Any]]) -> int:
        """Append log documents whose `_id` is their event id; return how many were inserted.

        A duplicate `_id` is a redelivery: ignored and counted in the log. After a transient failure the whole batch
        is re-sent, so the count covers the final attempt only (documents from earlier attempts count as redeliveries).
        """
        return self._run(self._insert_logs_call(collection, docs))

    def find_by_ids(
        self,
        collection: str,
        field: str,
        ids: Sequence[int],
        fields: Sequence[str],
        *,
        where: Mapping[str, int] | None = None,
    ) -> list[dict[str, Any]]:
        """Documents whose `field` is one of `ids` and whose fields equal the ids of `where` (validated ids, never a
        caller's document), with `fields` + field."""
        return self._run(self._find_by_ids_call(collection, field, ids, fields, where))

    def delete_older(self, collection: str, where: Mapping[str, int], field: str, below: int) -> int:
        """Delete the documents whose fields equal the validated ids of `where` and whose `field` is below `below`
        (e.g. one team's score documents from profiles older than the current one); return how many. Idempotent: a
        retry deletes what is left."""
        return self._run(self._delete_older_call(collection, where, field, below))

    def find_where(
        self,
        collection: str,
        where: Mapping[str, int],
        fields: Sequence[str],
        *,
        sort: tuple[str, int] | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """At most `limit` documents whose fields equal the validated ids of `where` (never a caller's document),
        with `fields`, in `sort` order (field, 1 or -1)."""
        return self._run(self._find_where_call(collection, where, fields, sort, limit))

    def ids_where_not(self, collection: str, id_field: str, field: str, value: str, limit: int) -> list[int]:
        """The `limit` smallest distinct values of `id_field` among documents whose `field` is not `value`: e.g. the
        tenders that still have scores from older rules. Read in `id_field` order, not in storage order (which a
        PostgreSQL-backed FerretDB changes with every update), so repeated calls take the next ones."""
        return self._run(self._ids_where_not_call(collection, id_field, field, value, limit))

    # -- the blocking driver ----------------------------------------------------------------------------------

    def _run(self, call: _Call[T]) -> T:
        if call.what is None:
            return self._drive(call.steps())
        policy = self._policy
        with sensed(self._sensor, "mongodb", call.what):
            return retry_sync(
                lambda: self._drive(call.steps()),
                attempts=policy.attempts,
                base_delay_s=policy.base_delay_s,
                max_delay_s=policy.max_delay_s,
                classify=classify_mongo_error,
                what=call.what,
            )

    def _drive(self, steps: Steps[T]) -> T:
        result: Any = None
        error: PyMongoError | None = None
        while True:
            try:
                request = steps.send(result) if error is None else steps.throw(error)
            except StopIteration as done:
                return cast(T, done.value)
            try:
                result, error = self._perform(request), None
            except PyMongoError as exc:
                result, error = None, exc

    def _perform(self, request: _Request) -> Any:
        db = self._db()
        if isinstance(request, _Find):
            with db[request.collection].find(request.query, request.projection, **_find_kwargs(request)) as cursor:
                if request.keep is None:
                    return list(cursor)
                for doc in cursor:
                    if not request.keep(doc):
                        break
                return None
        if isinstance(request, _InsertMany):
            db.get_collection(request.collection, write_concern=self._write_concern()).insert_many(
                request.docs, ordered=False
            )
            return None
        if isinstance(request, _Commands):
            # One at a time: the blocking sink serves tools and the read service's threads, not the agents.
            return [db.command(command) for command in request.commands]
        return (db.client.admin if request.admin else db).command(request.command)

    def _db(self) -> Database[dict[str, Any]]:
        with self._lock:
            if self._client is None:
                self._client = MongoClient(self._url, **self._client_options())
            return self._client[self._database]


class AsyncMongoSink(_MongoCore):
    """MongoSink's calls as coroutines, on pymongo's asyncio client (AsyncMongoClient): what the worker's agents use,
    with no thread per call. Same algorithms (the shared `_MongoCore` steps), same errors and retries. The client is
    created on first use, in the running event loop."""

    def __init__(self, url: str, database: str, **options: Any) -> None:
        super().__init__(url, database, **options)
        self._client: AsyncMongoClient[dict[str, Any]] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> AsyncMongoSink:
        return cls(settings.mongo_url.get_secret_value(), settings.mongo_db, **options)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def upsert_versioned(
        self, collection: str, docs: Sequence[VersionedDoc], stored: Sequence[Mapping[str, Any]] | None = None
    ) -> UpsertResult:
        """See `MongoSink.upsert_versioned`."""
        return await self._run(self._upsert_call(collection, docs, stored))

    async def insert_logs(self, collection: str, docs: Sequence[Mapping[str, Any]]) -> int:
        """See `MongoSink.insert_logs`."""
        return await self._run(self._insert_logs_call(collection, docs))

    async def find_by_ids(
        self,
        collection: str,
        field: str,
        ids: Sequence[int],
        fields: Sequence[str],
        *,
        where: Mapping[str, int] | None = None,
    ) -> list[dict[str, Any]]:
        """See `MongoSink.find_by_ids`."""
        return await self._run(self._find_by_ids_call(collection, field, ids, fields, where))

    async def delete_older(self, collection: str, where: Mapping[str, int], field: str, below: int) -> int:
        """See `MongoSink.delete_older`."""
        return await self._run(self._delete_older_call(collection, where, field, below))

    async def find_where(
        self,
        collection: str,
        where: Mapping[str, int],
        fields: Sequence[str],
        *,
        sort: tuple[str, int] | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """See `MongoSink.find_where`."""
        return await self._run(self._find_where_call(collection, where, fields, sort, limit))

    async def ids_where_not(self, collection: str, id_field: str, field: str, value: str, limit: int) -> list[int]:
        """See `MongoSink.ids_where_not`."""
        return await self._run(self._ids_where_not_call(collection, id_field, field, value, limit))

    # -- the asyncio driver -----------------------------------------------------------------------------------

    async def _run(self, call: _Call[T]) -> T:
        if call.what is None:
            return await self._drive(call.steps())
        policy = self._policy
        with sensed(self._sensor, "mongodb", call.what):
            return await retry(
                lambda: self._drive(call.steps()),
                attempts=policy.attempts,
                base_delay_s=policy.base_delay_s,
                max_delay_s=policy.max_delay_s,
                classify=classify_mongo_error,
                what=call.what,
            )

    async def _drive(self, steps: Steps[T]) -> T:
        result: Any = None
        error: PyMongoError | None = None
        while True:
            try:
                request = steps.send(result) if error is None else steps.throw(error)
            except StopIteration as done:
                return cast(T, done.value)
            try:
                result, error = await self._perform(request), None
            except PyMongoError as exc:
                result, error = None, exc

    async def _perform(self, request: _Request) -> Any:
        db = self._db()
        if isinstance(request, _Find):
            cursor = db[request.collection].find(request.query, request.projection, **_find_kwargs(request))
            async with cursor:
                if request.keep is None:
                    return await cursor.to_list()
                async for doc in cursor:
                    if not request.keep(doc):
                        break
                return None
        if isinstance(request, _InsertMany):
            collection = db.get_collection(request.collection, write_concern=self._write_concern())

            async def insert(docs: Sequence[dict[str, Any]]) -> None:
                await collection.insert_many(docs, ordered=False)

            await insert_in_chunks(insert, request.docs)
            return None
        if isinstance(request, _Commands):
            return await self._commands(db, request.commands)
        return await (db.client.admin if request.admin else db).command(request.command)

    async def _commands(
        self, db: AsyncDatabase[dict[str, Any]], commands: Sequence[MutableMapping[str, Any]]
    ) -> list[dict[str, Any]]:
        # After a failure no further command starts; those in flight end before it is raised.
        return await bounded_all([functools.partial(db.command, command) for command in commands], _UPDATE_CONCURRENCY)

    def _db(self) -> AsyncDatabase[dict[str, Any]]:
        if self._client is None:
            self._client = AsyncMongoClient(self._url, **self._client_options())
        return self._client[self._database]


def insert_spans(count: int) -> list[tuple[int, int]]:
    """[start, end) of the chunks an insert of `count` (> 0) documents goes out in (see _INSERT_CONCURRENCY)."""
    parts = max(1, min(_INSERT_CONCURRENCY, count // _MIN_INSERT_CHUNK))
    size = -(-count // parts)
    return [(start, min(start + size, count)) for start in range(0, count, size)]


async def insert_in_chunks(
    insert: Callable[[Sequence[dict[str, Any]]], Awaitable[None]], docs: Sequence[dict[str, Any]]
) -> None:
    """One unordered insert of `docs`, sent as `insert_spans` chunks in flight together (`insert` = an unordered
    insert_many). Behaves as one unordered insert_many would: write errors come back as one BulkWriteError whose
    indexes and nInserted are the whole batch's; any other failure is raised once every chunk has ended (the caller
    retries the whole batch, so none may still be writing); the other chunks' documents stay written, as an
    unordered insert cut short leaves them."""
    spans = insert_spans(len(docs))
    if len(spans) == 1:
        await insert(docs)
        return
    outcomes = await asyncio.gather(*(insert(docs[start:end]) for start, end in spans), return_exceptions=True)
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    if not failures:
        return
    for failure in failures:
        if not isinstance(failure, BulkWriteError):
            raise failure
    inserted = 0
    write_errors: list[dict[str, Any]] = []
    concern_errors: list[Any] = []
    for (start, end), outcome in zip(spans, outcomes, strict=True):
        if isinstance(outcome, BulkWriteError):
            details = outcome.details
            inserted += int(details.get("nInserted", 0))
            write_errors += [{**e, "index": int(e["index"]) + start} for e in details.get("writeErrors") or []]
            concern_errors += details.get("writeConcernErrors") or []
        else:
            inserted += end - start
    raise BulkWriteError(
        {
            "nInserted": inserted,
            "nUpserted": 0,
            "nMatched": 0,
            "nModified": 0,
            "nRemoved": 0,
            "upserted": [],
            "writeErrors": write_errors,
            "writeConcernErrors": concern_errors,
        }
    )


def _checked_log_doc(index: int, doc: Mapping[str, Any]) -> dict[str, Any]:
    try:
        if type(doc) is not dict and not isinstance(doc, Mapping):
            raise InvalidInputError(f"expected a mapping, got {type(doc).__name__}")
        validate_id("_id", doc.get("_id"))
        for name in doc:
            if not isinstance(name, str) or not name or "." in name:
                raise InvalidInputError(f"field name {str(name)[:40]!r} is not allowed")
        check_no_operators(doc, "log")
        size = len(bson.encode(doc))
        if size > _MAX_DOC_BYTES:
            raise InvalidInputError(f"{size} bytes is over MongoDB's 16 MiB")
    except (InvalidDocument, OverflowError) as exc:
        raise InvalidInputError(f"log document {index}: {exc}", index=index, key={"_id": doc.get("_id")}) from None
    except InvalidInputError as exc:
        key = {"_id": doc.get("_id")} if isinstance(doc, Mapping) else None
        raise InvalidInputError(f"log document {index}: {exc}", index=index, key=key) from None
    return dict(doc)


def _raise_write_concern_error(reply: Mapping[str, Any]) -> None:
    concern = reply.get("writeConcernError") or reply.get("writeConcernErrors")
    if concern:
        raise TransientSinkError(f"write concern not satisfied: {concern}")
