"""Sink exceptions, and the one place that decides what the worker does with any exception an agent meets.

`policy_for(exc)` answers with an `Action` and a one-line reason (the runner's table is in streams/batch.py):

- DEAD_LETTER, the event itself is at fault: `ContractError`, pydantic `ValidationError`, `PermanentSinkError`
  and its `InvalidInputError` (a store refuses the document made from the event).
- BACK_OFF, nothing acknowledged, the same batch again later: `TransientSinkError` (a store down, restarting,
  busy), Redis MISCONF (cannot persist) and OOM (maxmemory reached), which refuse every write until the server's
  operator acts, retriable Kafka produce errors, and ANY exception not listed here (a bug, a new server code).
- STOP, the worker exits without acknowledging (`StoreAccessError`, naming the store and the fix): Redis NOAUTH,
  WRONGPASS, NOPERM; MongoDB authentication and authorization codes (`MONGO_ACCESS_CODES`) and pymongo's
  `ConfigurationError`; MySQL access denied; a Kafka produce error that is not retriable.

Dead-lettering is the only action that acknowledges an event that was not applied, so it is kept for what is
provably the event's fault: a credential rotation must never dead-letter every event of every agent.

Sink-side, `TransientSinkError` is retried by the sinks themselves a few times (`sinks.retry`), which applies
`store_condition` first so that access errors surface at once and refusals such as MISCONF are not mistaken for
a bad document. Not errors at all: an older version arriving after a newer one (`stale`) and a redelivered log
event, both counted in the results and logged at debug level.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import pymysql
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    ProducerClosed,
    RecordListTooLargeError,
)
from pydantic import ValidationError
from pymongo.errors import ConfigurationError, OperationFailure
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    NoPermissionError,
    OutOfMemoryError,
    ResponseError,
)

from schema.events import ContractError


class SinkError(Exception):
    """Root of every sink error."""


class TransientSinkError(SinkError):
    """The store is unavailable for now; the same write can succeed later."""


class PermanentSinkError(SinkError):
    """The write can never succeed as it is; `index` (position in the caller's batch) and `key` name the document."""

    def __init__(
        self,
        message: str,
        *,
        index: int | None = None,
        key: Mapping[str, object] | None = None,
        code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.index = index
        self.key = dict(key) if key is not None else None
        self.code = code


class InvalidInputError(PermanentSinkError):
    """Refused by validation before any write: a bad id, a `$` key, a malformed document or Redis value."""


class StoreAccessError(SinkError):
    """A store refuses the worker itself (credentials, permissions, configuration): no event is at fault and no retry
    can help. `store` names it and `fix` says what to change."""

    def __init__(self, message: str, *, store: str, fix: str) -> None:
        super().__init__(f"{message}. Fix: {fix}")
        self.store = store
        self.fix = fix


class Action(enum.Enum):
    DEAD_LETTER = "dead-letter the event"
    BACK_OFF = "back off and retry; acknowledge nothing"
    STOP = "stop the worker without acknowledging"


@dataclass(frozen=True)
class Policy:
    """What to do, why (one line for the log and the DLQ), and whether the error was one nobody classified (the
    runner logs those with their traceback: they are bugs or new server codes to add here)."""

    action: Action
    reason: str
    unclassified: bool = False


# MongoDB server codes about who the worker is and what it may do (error_codes.yml): UserNotFound,
# Unauthorized, AuthenticationFailed, RoleNotFound, PrivilegeNotFound, AuthSchemaIncompatible,
# AuthenticationRestrictionUnmet, MechanismUnavailable, and Atlas' AtlasError (its proxy's "bad auth").
MONGO_ACCESS_CODES = frozenset({11, 13, 18, 31, 33, 69, 214, 334, 8000})
# MySQL: access denied (user/password, database, table, column, routine), and a privilege needed (SUPER etc.).
MYSQL_ACCESS_CODES = frozenset({1044, 1045, 1142, 1143, 1227, 1370, 1698})
# Redis replies that refuse every write until the server's operator acts (disk, memory), without an event's fault.
_REDIS_REFUSALS = ("MISCONF",)

_REDIS_FIX = "check the user and password in TENDERHUB_REDIS_URL (redis://user:password@host:port/db) and its ACL"
_MONGO_FIX = "check the user, password, authSource and roles in TENDERHUB_MONGO_URL"
_MYSQL_FIX = "check the user and password in TENDERHUB_MYSQL_URL and the grants `tenderhub migrate` gives it"
_KAFKA_FIX = (
    "check that the DLQ topic exists with its declared max.message.bytes (`tenderhub migrate`) and that the worker "
    "may write to it"
)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and what it was raised from (`raise ... from`, SQLAlchemy's `orig`), nearest first."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 16:
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        current = current.__cause__ or (orig if isinstance(orig, BaseException) else None)


def store_access_error(exc: BaseException) -> StoreAccessError | None:
    """The `StoreAccessError` that `exc` (or its cause) amounts to, if a store refused the worker itself."""
    for e in _causes(exc):
        if isinstance(e, StoreAccessError):
            return e
        if isinstance(e, AuthenticationError | AuthorizationError | NoPermissionError):
            return StoreAccessError(
                f"Redis refused the worker ({type(e).__name__}: {e})", store="Redis", fix=_REDIS_FIX
            )
        if isinstance(e, OperationFailure) and e.code in MONGO_ACCESS_CODES:
            name = (e.details or {}).get("codeName", "")
            return StoreAccessError(
                f"MongoDB refused the worker (code {e.code} {name}: {e})", store="MongoDB", fix=_MONGO_FIX
            )
        if isinstance(e, ConfigurationError):
            return StoreAccessError(f"MongoDB client configuration is invalid ({e})", store="MongoDB", fix=_MONGO_FIX)
        if isinstance(e, pymysql.err.OperationalError | pymysql.err.ProgrammingError):
            code = e.args[0] if e.args else None
            if code in MYSQL_ACCESS_CODES:
                return StoreAccessError(f"MySQL refused the worker ({e})", store="MySQL", fix=_MYSQL_FIX)
    return None


def store_condition(exc: BaseException) -> SinkError | None:
    """What a sink's retry must know before its own classifier runs: a refusal of the worker itself
    (`StoreAccessError`, not retried) or a store refusing every write for now (`TransientSinkError`). None = the
    sink's classifier decides."""
    access = store_access_error(exc)
    if access is not None:
        return access
    if isinstance(exc, OutOfMemoryError):
        return TransientSinkError(f"Redis is out of memory (maxmemory reached): {exc}")
    if isinstance(exc, ResponseError) and str(exc).startswith(_REDIS_REFUSALS):
        return TransientSinkError(f"Redis refuses writes: {exc}")
    return None


def message_too_large(exc: BaseException) -> bool:
    """True when Kafka (or the producer, before sending) refused a record for its size: a smaller record may pass,
    the same one never will."""
    return any(isinstance(e, MessageSizeTooLargeError | RecordListTooLargeError) for e in _causes(exc))


def _kafka_policy(exc: KafkaError) -> Policy:
    name = type(exc).__name__
    if exc.retriable or isinstance(exc, KafkaConnectionError | KafkaTimeoutError | ProducerClosed):
        return Policy(Action.BACK_OFF, f"Kafka unavailable ({name}: {exc})")
    return Policy(Action.STOP, f"Kafka refused the record ({name}: {exc}). Fix: {_KAFKA_FIX}")


def policy_for(exc: BaseException) -> Policy:
    """What the worker does about `exc` (the table in this module's docstring)."""
    described = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, ContractError):
        return Policy(Action.DEAD_LETTER, exc.reason)
    if isinstance(exc, PermanentSinkError | ValidationError):
        return Policy(Action.DEAD_LETTER, described)
    if isinstance(exc, TransientSinkError):
        return Policy(Action.BACK_OFF, f"store unavailable ({exc})")
    condition = next((c for c in map(store_condition, _causes(exc)) if c is not None), None)
    if isinstance(condition, StoreAccessError):
        return Policy(Action.STOP, str(condition))
    if condition is not None:
        return Policy(Action.BACK_OFF, f"store unavailable ({condition})")
    for e in _causes(exc):
        if isinstance(e, KafkaError):
            return _kafka_policy(e)
    return Policy(Action.BACK_OFF, f"unclassified error ({described})", unclassified=True)
