"""The worker's error policy, one behaviour per class of error: only an event's own fault dead-letters it; a store
that refuses the worker's credentials or permissions stops the worker; everything else backs off."""

from __future__ import annotations

import asyncio

import pymysql
import pytest
import sqlalchemy.exc
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    RecordListTooLargeError,
    TopicAuthorizationFailedError,
)
from faust.exceptions import ProducerSendError
from pydantic import BaseModel, ValidationError
from pymongo.errors import ConfigurationError, OperationFailure
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    NoPermissionError,
    OutOfMemoryError,
    ResponseError,
)

from schema.events import ContractError
from sinks.errors import (
    Action,
    InvalidInputError,
    PermanentSinkError,
    StoreAccessError,
    TransientSinkError,
    message_too_large,
    policy_for,
)
from sinks.redis import classify_redis_error
from sinks.retry import retry


class _Model(BaseModel):
    n: int


def _validation_error() -> ValidationError:
    try:
        _Model.model_validate({"n": "x"})
    except ValidationError as exc:
        return exc
    raise AssertionError("the model accepted a bad value")


def _chained(outer: Exception, cause: BaseException) -> Exception:
    try:
        raise outer from cause
    except Exception as exc:  # noqa: BLE001 - the test only needs the chained exception object
        return exc


# --- the event's fault: dead-letter it at once -------------------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        ContractError("payload breaks tender.created v1: budget: not a number"),
        _validation_error(),
        PermanentSinkError("document 0: field names must be str", index=0),
        InvalidInputError("tender_id must be a positive 64-bit int, got 99999999999999999999"),
    ],
    ids=["contract", "pydantic", "sink-refusal", "invalid-input"],
)
def test_contract_and_validation_failures_dead_letter_the_event(exc: Exception) -> None:
    assert policy_for(exc).action is Action.DEAD_LETTER


# --- not the event's fault, and no retry can help: stop the worker ------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        AuthenticationError("invalid username-password pair or user is disabled."),  # WRONGPASS
        AuthenticationError("Authentication required."),  # NOAUTH
        AuthorizationError("not allowed"),
        NoPermissionError("this user has no permissions to run the 'evalsha' command"),  # NOPERM
    ],
    ids=["wrongpass", "noauth", "authorization", "noperm"],
)
def test_redis_credentials_and_permissions_stop_the_worker_naming_redis_and_the_fix(exc: Exception) -> None:
    policy = policy_for(exc)
    assert policy.action is Action.STOP
    assert "Redis" in policy.reason and "TENDERHUB_REDIS_URL" in policy.reason


@pytest.mark.parametrize(
    ("code", "name"),
    [
        (11, "UserNotFound"),
        (13, "Unauthorized"),
        (18, "AuthenticationFailed"),
        (31, "RoleNotFound"),
        (33, "PrivilegeNotFound"),
        (214, "AuthenticationRestrictionUnmet"),
        (334, "MechanismUnavailable"),
        (8000, "AtlasError"),
    ],
)
def test_mongodb_authentication_and_authorization_codes_stop_the_worker(code: int, name: str) -> None:
    exc = OperationFailure(f"{name}: not authorized", code=code, details={"codeName": name, "code": code})
    policy = policy_for(exc)
    assert policy.action is Action.STOP
    assert "MongoDB" in policy.reason and "TENDERHUB_MONGO_URL" in policy.reason


def test_mongodb_client_configuration_error_stops_the_worker() -> None:
    assert policy_for(ConfigurationError("Unknown option fooo")).action is Action.STOP


def test_mysql_access_denied_through_sqlalchemy_stops_the_worker_naming_mysql() -> None:
    orig = pymysql.err.OperationalError(1045, "Access denied for user 'app'@'localhost' (using password: YES)")
    exc = sqlalchemy.exc.OperationalError("SELECT 1", {}, orig)
    policy = policy_for(exc)
    assert policy.action is Action.STOP and "MySQL" in policy.reason and "TENDERHUB_MYSQL_URL" in policy.reason


def test_a_store_access_error_already_classified_stops_the_worker() -> None:
    exc = StoreAccessError("Redis refused", store="Redis", fix="fix TENDERHUB_REDIS_URL")
    assert policy_for(exc).action is Action.STOP


# --- not the event's fault, may clear up: back off, acknowledge nothing, never dead-letter -------------------------


@pytest.mark.parametrize(
    "exc",
    [
        TransientSinkError("connection refused"),
        ResponseError("MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist"),
        OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
        OperationFailure("something new", code=424242),
        KeyError("team_id"),
        RuntimeError("a bug nobody has classified"),
        RecursionError("maximum recursion depth exceeded"),
    ],
    ids=["transient", "misconf", "oom", "unknown-mongo-code", "keyerror", "runtime", "recursion-in-handler"],
)
def test_store_conditions_and_unknown_errors_back_off_and_never_dead_letter(exc: Exception) -> None:
    assert policy_for(exc).action is Action.BACK_OFF


def test_the_cause_of_a_wrapped_error_decides() -> None:
    wrapped = _chained(RuntimeError("write failed"), AuthenticationError("Authentication required."))
    assert policy_for(wrapped).action is Action.STOP


# --- the sinks' own retry applies the same classification first ---------------------------------------------------


def test_sink_retry_raises_an_authentication_error_at_once_as_a_store_access_error() -> None:
    calls = 0

    async def op() -> None:
        nonlocal calls
        calls += 1
        raise AuthenticationError("invalid username-password pair or user is disabled.")

    async def no_sleep(_: float) -> None:
        return None

    with pytest.raises(StoreAccessError) as info:
        asyncio.run(retry(op, attempts=3, base_delay_s=0, max_delay_s=0, classify=classify_redis_error, sleep=no_sleep))
    assert calls == 1 and info.value.store == "Redis"


def test_sink_retry_treats_redis_misconf_as_unavailable_not_as_a_refused_document() -> None:
    async def op() -> None:
        raise ResponseError("MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist")

    async def no_sleep(_: float) -> None:
        return None

    with pytest.raises(TransientSinkError):
        asyncio.run(retry(op, attempts=2, base_delay_s=0, max_delay_s=0, classify=classify_redis_error, sleep=no_sleep))


# --- producing dead letters to Kafka --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        MessageSizeTooLargeError("The message is 2100000 bytes when serialized"),
        RecordListTooLargeError(),
        _chained(ProducerSendError("Error while sending"), MessageSizeTooLargeError("too large")),
    ],
    ids=["client-side", "broker", "through-faust"],
)
def test_message_too_large_is_recognised_through_faust(exc: Exception) -> None:
    assert message_too_large(exc)


def test_a_message_still_too_large_is_never_retried() -> None:
    assert policy_for(MessageSizeTooLargeError("too large")).action is Action.STOP


@pytest.mark.parametrize(
    "exc",
    [KafkaConnectionError("no broker"), KafkaTimeoutError(), NotLeaderForPartitionError()],
    ids=["connection", "timeout", "not-leader"],
)
def test_retriable_produce_errors_back_off(exc: Exception) -> None:
    assert policy_for(exc).action is Action.BACK_OFF
    assert not message_too_large(exc)


def test_non_retriable_produce_errors_stop_naming_kafka() -> None:
    policy = policy_for(_chained(ProducerSendError("Error while sending"), TopicAuthorizationFailedError()))
    assert policy.action is Action.STOP and "Kafka" in policy.reason
