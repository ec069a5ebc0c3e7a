"""RedisSink's checks before any I/O (catalogue keys, TTLs, values) and its error policy."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.exceptions as rex
from redis.crc import key_slot

from schema.redis_keys import CATALOGUE, SPEND_BY_BUYER, SUMMARY_LOCK, TEAM_TOP_TENDERS, TENDER_METADATA, KeyFamily
from sinks.errors import InvalidInputError, PermanentSinkError, TransientSinkError
from sinks.redis import RedisSink, classify_redis_error, temporary_key

# Pointed nowhere: every call below must fail validation before a client exists.
NOWHERE = RedisSink("redis://127.0.0.1:9/0", timeout_s=0.05)
HASH_KEY = TENDER_METADATA.key(id=5)
ZSET_KEY = TEAM_TOP_TENDERS.key(id=5)


@pytest.mark.asyncio
@pytest.mark.parametrize("key", ["tender:5:metadata:extra", "tender:05:metadata", "other:1", "tender:{5}:metadata", ""])
async def test_keys_outside_the_catalogue_are_refused(key: str) -> None:
    with pytest.raises(InvalidInputError):
        await NOWHERE.replace_hash(key, {"a": "b"}, 60)


@pytest.mark.asyncio
async def test_a_key_of_another_type_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="is a zset"):
        await NOWHERE.replace_hash(ZSET_KEY, {"a": "b"}, 60)
    with pytest.raises(InvalidInputError, match="is a hash"):
        await NOWHERE.replace_zset(HASH_KEY, {"a": 1.0}, 60)
    with pytest.raises(InvalidInputError, match="is a string"):
        await NOWHERE.cas_hash(SUMMARY_LOCK.key(id=5), {"a": "b"}, "source_seq", 1, 60)
    with pytest.raises(InvalidInputError, match="is a zset"):
        await NOWHERE.cas_hash(SPEND_BY_BUYER.key(), {"a": "b"}, "source_seq", 1, 60)


@pytest.mark.asyncio
@pytest.mark.parametrize("ttl", [0, -1, True, 1.5, None])
async def test_every_write_needs_a_positive_int_ttl(ttl: Any) -> None:
    with pytest.raises(InvalidInputError, match="ttl_s"):
        await NOWHERE.replace_hash(HASH_KEY, {"a": "b"}, ttl)
    with pytest.raises(InvalidInputError, match="ttl_s"):
        await NOWHERE.replace_zset(ZSET_KEY, {"a": 1.0}, ttl)
    with pytest.raises(InvalidInputError, match="ttl_s"):
        await NOWHERE.cas_hash(HASH_KEY, {"a": "b"}, "v", 1, ttl)


@pytest.mark.asyncio
@pytest.mark.parametrize("mapping", [{"a": True}, {"a": None}, {"a": ["x"]}, {"": "x"}, {1: "x"}])
async def test_hash_values_redis_cannot_hold_faithfully_are_refused(mapping: Any) -> None:
    with pytest.raises(InvalidInputError):
        await NOWHERE.replace_hash(HASH_KEY, mapping, 60)


@pytest.mark.asyncio
@pytest.mark.parametrize("members", [{"a": float("nan")}, {"a": float("inf")}, {"a": "1"}, {"a": True}, {"": 1.0}])
async def test_zset_scores_must_be_finite_numbers(members: Any) -> None:
    with pytest.raises(InvalidInputError):
        await NOWHERE.replace_zset(ZSET_KEY, members, 60)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("field", "version"), [("source_seq", -1), ("source_seq", True), ("source_seq", "5"), ("title", 1), ("", 1)]
)
async def test_cas_hash_needs_a_separate_field_and_an_int_version(field: str, version: Any) -> None:
    with pytest.raises(InvalidInputError):
        await NOWHERE.cas_hash(HASH_KEY, {"title": "t"}, field, version, 60)


def test_key_prefix_is_restricted_to_plain_characters() -> None:
    RedisSink("redis://127.0.0.1:9/0", key_prefix="test:abc_1.x-")
    for bad in ("{slot}:", "a b", "x" * 65):
        with pytest.raises(ValueError):
            RedisSink("redis://127.0.0.1:9/0", key_prefix=bad)


@pytest.mark.parametrize(
    "exc",
    [
        rex.ConnectionError("refused"),
        rex.TimeoutError("slow"),
        rex.BusyLoadingError("loading"),
        rex.ReadOnlyError("replica"),
        rex.ResponseError("BUSY Redis is busy running a script"),
        ConnectionResetError("reset"),
    ],
)
def test_outages_are_transient(exc: Exception) -> None:
    assert isinstance(classify_redis_error(exc), TransientSinkError)


@pytest.mark.parametrize("exc", [rex.ResponseError("WRONGTYPE"), rex.DataError("bad value")])
def test_refused_commands_are_permanent(exc: Exception) -> None:
    assert isinstance(classify_redis_error(exc), PermanentSinkError)


@pytest.mark.parametrize(
    "exc", [rex.AuthenticationError("bad password"), rex.NoPermissionError("acl"), RuntimeError("bug")]
)
def test_configuration_errors_and_bugs_propagate(exc: Exception) -> None:
    assert classify_redis_error(exc) is None


ALERTS = KeyFamily("alerts:closing_soon", "hash", 3600, "An installed agent's own family.")


@pytest.mark.asyncio
async def test_a_sink_writes_the_families_it_is_given_beside_the_catalogue() -> None:
    # An installed agent declares its key family in its spec; the worker's sink is given it, no catalogue edit.
    with pytest.raises(InvalidInputError, match="not in the Redis key catalogue"):
        NOWHERE.full_key(ALERTS.key(), "hash")
    sink = RedisSink("redis://127.0.0.1:9/0", key_prefix="p:", families=(*CATALOGUE, ALERTS))
    assert sink.full_key(ALERTS.key(), "hash") == "p:alerts:closing_soon"
    assert sink.full_key(HASH_KEY, "hash") == "p:" + HASH_KEY
    with pytest.raises(InvalidInputError, match="is a hash"):
        sink.full_key(ALERTS.key(), "zset")


def test_temporary_keys_stay_in_the_slot_of_the_key_they_replace() -> None:
    for full in ("p:analytics:{spend_by_buyer}:30d", "p:team:{7}:top_tenders", "p:tender:5:metadata"):
        tmp = temporary_key(full)
        assert tmp != temporary_key(full)  # unique per call
        assert key_slot(tmp.encode()) == key_slot(full.encode()), tmp


def test_keys_are_grouped_by_slot_only_on_a_cluster() -> None:
    keys = [f"team:{{{t}}}:top_tenders" for t in (1, 2, 1, 3)]
    assert RedisSink("redis://127.0.0.1:1/0").by_slot(keys) == [[0, 1, 2, 3]]
    groups = RedisSink("redis://127.0.0.1:1/0", cluster=True).by_slot(keys)
    assert sorted(map(sorted, groups)) == [[0, 2], [1], [3]]
    assert RedisSink("redis://127.0.0.1:1/0", cluster=True).by_slot([]) == []


@pytest.mark.asyncio
async def test_a_cluster_sink_with_a_pool_size_runs_that_many_calls_at_once() -> None:
    """redis-py's cluster client refuses a command past a node's connection limit; the sink makes callers wait
    instead, as the blocking pool of a single Redis does."""
    sink = RedisSink("redis://127.0.0.1:1/0", cluster=True, pool_size=2, timeout_s=5)
    running, most = 0, 0

    async def op() -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        running -= 1

    await asyncio.gather(*(sink.run(op, "op") for _ in range(10)))
    assert most == 2
    unbounded = RedisSink("redis://127.0.0.1:1/0", cluster=True, timeout_s=5)
    running, most = 0, 0
    await asyncio.gather(*(unbounded.run(op, "op") for _ in range(10)))
    assert most == 10
