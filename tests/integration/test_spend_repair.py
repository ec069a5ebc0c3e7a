"""The spend store against the real Redis and MariaDB (issue 10, item 8): a partial loss (one key expired or
evicted, a restart without persistence) is detected and repaired from MySQL before a batch lands on it; the sorted
sets never come back with only one batch's buyers; totals never leave [0, 2^53) and nothing is written when they
would; a window total never goes negative when the as-of date moves; the nightly job checks the store and repairs
it."""

from __future__ import annotations

import datetime as dt
import decimal
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pymysql
import pytest
import pytest_asyncio
import redis as sync_redis
from pydantic import SecretStr

from schema.mysql import connect
from schema.settings import Settings
from sinks.errors import InvalidInputError
from sinks.mongo import MongoSink
from sinks.reader import CacheFirstReader
from sinks.redis import RedisSink
from sinks.spend_store import SpendStore, StateWrite, Totals, TotalsDelta
from streams.agents.spend import SpendHandler, recompute_from_mysql, refresh_window
from streams.context import WorkerContext
from streams.spend import cents_by_member, decode_state, zset_from_cents
from tests.integration.store_faults import FaultPlan, Namespace, envelope, run_batches

pytestmark = pytest.mark.asyncio

AS_OF = dt.date(2025, 1, 23)
DAYS = 30


def spend_tender(tender_id: int, **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "tender_id": tender_id,
        "ocid": f"ocds-spend-{tender_id}",
        "title": f"Road resurfacing {tender_id}",
        "buyer": "Leeds City Council",
        "budget": "1000.10",
        "currency": "GBP",
        "published_at": "2025-01-10T09:00:00",
    }
    return base | kw


class Scratch:
    """A MySQL database of the test's own holding a `tenders` table (or `tables`), and the URL that reads it."""

    def __init__(self, settings: Settings, tables: tuple[str, ...] = ("tenders",)) -> None:
        self.db = f"test_sp_{uuid.uuid4().hex[:10]}"
        admin = settings.mysql_admin
        with connect(admin) as conn, conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{self.db}` CHARACTER SET utf8mb4")
            for table in tables:
                cur.execute(f"CREATE TABLE `{self.db}`.`{table}` LIKE `{settings.mysql.database}`.`{table}`")
        url = urllib.parse.urlsplit(settings.mysql_admin_url.get_secret_value())  # type: ignore[union-attr]
        self.url = urllib.parse.urlunsplit(url._replace(path=f"/{self.db}"))
        self.admin = admin

    def write(self, tender_id: int, payload: dict[str, Any]) -> None:
        """The row the application commits with the event `payload` (upsert by id)."""
        with connect(self.admin, self.db) as conn, conn.cursor() as cur:
            cur.execute(
                "REPLACE INTO tenders (id, ocid, title, buyer, budget, currency, status, published_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    tender_id,
                    payload["ocid"],
                    payload["title"],
                    payload.get("buyer"),
                    payload.get("budget"),
                    payload.get("currency"),
                    payload.get("status", "active"),
                    payload.get("published_at"),
                ),
            )

    def drop(self) -> None:
        with connect(self.admin) as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{self.db}`")


@pytest.fixture
def env(settings: Settings) -> Iterator[tuple[Namespace, Scratch]]:
    scratch = Scratch(settings)
    ns = Namespace.fresh(settings, "sp:")
    ns.settings = ns.settings.model_copy(update={"as_of": AS_OF, "mysql_url": SecretStr(scratch.url)})
    yield ns, scratch
    ns.drop()
    scratch.drop()


def created(seq: int, tender_id: int, scratch: Scratch, *, row: bool = True, **kw: Any) -> bytes:
    payload = spend_tender(tender_id, **kw)
    if row:  # False: a budget MySQL's DECIMAL(18, 2) cannot hold (only an unchecked producer sends it)
        scratch.write(tender_id, payload)
    return envelope(seq, "tender.created", tender_id, payload)


def updated(seq: int, tender_id: int, scratch: Scratch, **kw: Any) -> bytes:
    payload = spend_tender(tender_id, **kw)
    scratch.write(tender_id, payload)
    return envelope(seq, "tender.updated", tender_id, payload)


class Keys:
    def __init__(self, ns: Namespace) -> None:
        p = ns.settings.redis_key_prefix
        self.states_key = f"{p}analytics:{{spend_by_buyer}}:tenders"
        self.totals_key = f"{p}analytics:{{spend_by_buyer}}:totals"
        self.zset_key = f"{p}analytics:{{spend_by_buyer}}"
        self.window_key = f"{p}analytics:{{spend_by_buyer}}:30d:totals"
        self.window_zset_key = f"{p}analytics:{{spend_by_buyer}}:30d"
        self.client = sync_redis.Redis.from_url(ns.settings.redis_url.get_secret_value(), socket_timeout=5)

    @property
    def every_key(self) -> list[str]:
        return [self.states_key, self.totals_key, self.window_key, self.zset_key, self.window_zset_key]

    def lose_everything(self) -> None:
        """A restart without persistence, a FLUSHALL, or every key expired: the store is empty again."""
        self.client.delete(*self.every_key)

    def totals(self, key: str) -> dict[str, tuple[int, int, int]]:
        raw = {k.decode(): int(v) for k, v in self.client.hgetall(key).items() if not k.startswith(b"__")}
        members = {k[2:] for k in raw}
        return {m: (raw[f"c:{m}"], raw[f"t:{m}"], raw[f"w:{m}"]) for m in sorted(members)}

    def states(self) -> dict[int, Any]:
        raw = self.client.hgetall(self.states_key)
        return {int(k): decode_state(v.decode()) for k, v in raw.items() if not k.startswith(b"__")}

    def zset(self, key: str) -> dict[str, float]:
        return {m.decode(): s for m, s in self.client.zrange(key, 0, -1, withscores=True)}

    def consistent(self) -> None:
        """Totals, window and sorted sets are exactly what the stored tender states give."""
        states = list(self.states().values())
        assert self.totals(self.totals_key) == cents_by_member(states)
        assert self.totals(self.window_key) == cents_by_member(states, AS_OF, DAYS)
        assert self.zset(self.zset_key) == zset_from_cents(cents_by_member(states))


def mysql_cents(scratch: Scratch) -> dict[str, tuple[int, int, int]]:
    from streams.spend import _row_state

    with connect(scratch.admin, scratch.db) as conn, conn.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute("SELECT id, buyer, currency, budget, status, published_at FROM tenders")
        return cents_by_member(_row_state(r) for r in cur.fetchall())


async def _first_batch(ns: Namespace, scratch: Scratch) -> list[bytes]:
    batch = [
        created(1, 1, scratch),
        created(2, 2, scratch, budget="2500.00"),
        created(3, 3, scratch, buyer="York Council", budget="300.00"),
        created(4, 4, scratch, buyer="York Council", budget=None, currency=None),
    ]
    assert (await run_batches(ns.settings, FaultPlan(), SpendHandler, [batch])).event_ids() == []
    return batch


async def test_the_window_refresh_builds_a_store_lost_whole_from_mysql_with_no_batch_coming(
    env: tuple[Namespace, Scratch],
) -> None:
    ns, scratch = env
    keys = Keys(ns)
    await _first_batch(ns, scratch)
    keys.lose_everything()
    scratch.write(7, spend_tender(7, buyer="Bradford Council", budget="70.00"))
    # No tender event for hours: the leader's window refresh (every minute) must not leave readers an empty store.
    ctx = WorkerContext(ns.settings)
    try:
        assert await refresh_window(ctx)
    finally:
        await ctx.aclose()
    assert sorted(keys.states()) == [1, 2, 3, 4, 7]
    assert keys.totals(keys.totals_key) == mysql_cents(scratch)
    keys.consistent()


@pytest.mark.parametrize("lost", ["states", "totals", "window", "all"])
async def test_a_store_that_lost_a_key_is_rebuilt_from_mysql_before_the_next_batch(
    env: tuple[Namespace, Scratch], lost: str
) -> None:
    ns, scratch = env
    keys = Keys(ns)
    await _first_batch(ns, scratch)
    # Expired, evicted, or a restart without persistence (all): the other keys stay as they were.
    doomed = {"states": [keys.states_key], "totals": [keys.totals_key], "window": [keys.window_key]}.get(
        lost, keys.every_key
    )
    keys.client.delete(*doomed)
    # The next batch changes one tender's budget (tender 2 in another batch had been counted before the loss).
    batch = [updated(10, 2, scratch, budget="4000.00")]
    dead = await run_batches(ns.settings, FaultPlan(), SpendHandler, [batch])
    assert dead.event_ids() == []
    assert (
        keys.totals(keys.totals_key)
        == mysql_cents(scratch)
        == {
            "GBP|Leeds City Council": (500010, 2, 0),
            "GBP|York Council": (30000, 1, 0),
            "none|York Council": (0, 1, 1),
        }
    )
    assert sorted(keys.states()) == [1, 2, 3, 4] and keys.states()[2].source_seq == 10
    keys.consistent()
    assert {keys.client.hget(k, "__epoch") for k in (keys.states_key, keys.totals_key, keys.window_key)} == {b"2"}


async def test_an_empty_store_is_built_from_mysql_before_its_first_batch(env: tuple[Namespace, Scratch]) -> None:
    ns, scratch = env
    keys = Keys(ns)
    scratch.write(7, spend_tender(7, buyer="Bradford Council", budget="70.00"))  # committed before the stream began
    await _first_batch(ns, scratch)
    # An empty store cannot tell a first start from a lost one: it is built from MySQL, tender 7 included at once.
    assert keys.client.hget(keys.totals_key, "__epoch") == b"2" and 7 in keys.states()
    assert keys.totals(keys.totals_key) == mysql_cents(scratch)
    keys.consistent()


async def test_a_store_lost_whole_is_not_restarted_by_a_batch_of_new_tenders(env: tuple[Namespace, Scratch]) -> None:
    ns, scratch = env
    keys = Keys(ns)
    await _first_batch(ns, scratch)
    keys.lose_everything()
    # The next batch creates a tender: it holds that tender's whole history, not the others'.
    dead = await run_batches(ns.settings, FaultPlan(), SpendHandler, [[created(10, 5, scratch, budget="50.00")]])
    assert dead.event_ids() == []
    assert sorted(keys.states()) == [1, 2, 3, 4, 5]
    assert keys.totals(keys.totals_key) == mysql_cents(scratch)
    keys.consistent()


async def test_the_all_time_sorted_set_expired_comes_back_whole_not_with_one_batchs_buyers(
    env: tuple[Namespace, Scratch],
) -> None:
    ns, scratch = env
    keys = Keys(ns)
    await _first_batch(ns, scratch)
    before = keys.zset(keys.zset_key)
    keys.client.delete(keys.zset_key, keys.window_zset_key)  # its 24 h TTL ran out; totals live 7 days
    redis = RedisSink.from_settings(ns.settings, key_prefix=ns.settings.redis_key_prefix)
    mongo = MongoSink.from_settings(ns.settings)
    try:
        read = await CacheFirstReader(redis, mongo).spend_by_buyer(limit=10)
        assert [(b.currency, b.buyer, b.amount, b.tenders) for b in read.value] == [
            ("GBP", "Leeds City Council", 3500.10, 2),
            ("GBP", "York Council", 300.0, 1),
            ("none", "York Council", 0.0, 1),
        ]
    finally:
        await redis.aclose()
        mongo.close()
    batch = [updated(10, 3, scratch, buyer="York Council", budget="350.00")]  # touches one buyer only
    await run_batches(ns.settings, FaultPlan(), SpendHandler, [batch])
    assert keys.zset(keys.zset_key) == before | {"GBP|York Council": 350.0}
    keys.consistent()
    # Every hash lives as long as the others; the read models never longer than the totals they come from.
    ttls = {k: keys.client.ttl(k) for k in keys.every_key}
    assert (
        max(ttls[k] for k in (keys.states_key, keys.totals_key, keys.window_key))
        - min(ttls[k] for k in (keys.states_key, keys.totals_key, keys.window_key))
        <= 2
    )
    assert 0 < ttls[keys.zset_key] <= 24 * 3600 and 0 < ttls[keys.window_zset_key] <= ttls[keys.totals_key]


async def test_a_buyer_total_past_2_53_cents_refuses_only_the_event_that_would_pass_it(
    env: tuple[Namespace, Scratch],
) -> None:
    ns, scratch = env
    keys = Keys(ns)
    # 91 tenders at the contract's largest budget (10^12) make 9.1e15 cents, past 2^53 (~9.007e15).
    top = "1000000000000.00"
    batches = [
        [created(n, n, scratch, budget=top) for n in range(1, 61)] + [created(900, 900, scratch, buyer="York")],
        [created(n, n, scratch, budget=top) for n in range(61, 95)],
    ]
    dead = await run_batches(ns.settings, FaultPlan(), SpendHandler, batches)
    states = keys.states()
    # Every event that would pass the bound went to the DLQ alone, with nothing of it written; the others counted.
    assert dead.event_ids() == list(range(91, 95))
    assert sorted(states) == [*range(1, 91), 900]
    assert keys.totals(keys.totals_key)["GBP|Leeds City Council"] == (90 * 10**14, 90, 0)
    keys.consistent()


@pytest_asyncio.fixture
async def store(env: tuple[Namespace, Scratch]) -> AsyncIterator[tuple[SpendStore, Keys]]:
    ns, _ = env
    redis = RedisSink.from_settings(ns.settings, key_prefix=ns.settings.redis_key_prefix)
    yield SpendStore(redis, DAYS), Keys(ns)
    await redis.aclose()


async def test_store_refuses_a_total_out_of_range_before_writing_anything(store: tuple[SpendStore, Keys]) -> None:
    spend, keys = store
    near = 2**53 - 100
    done = await spend.replace(
        generation=None,
        epoch="2",
        as_of=AS_OF,
        states={1: '{"a":1}'},
        totals={"GBP|B": Totals(near, 1, 0)},
        window_totals={},
    )
    assert done == "done"
    before = keys.client.hgetall(keys.states_key), keys.client.hgetall(keys.totals_key)
    write = [StateWrite(5, None, '{"b":2}')]
    result = await spend.apply(write, [TotalsDelta(False, "GBP|B", 1000, 1, 0)], as_of=AS_OF)
    assert (result.status, result.detail) == ("overflow", "GBP|B")
    with pytest.raises(InvalidInputError, match="past 2"):
        await spend.apply(write, [TotalsDelta(False, "GBP|C", 2**63 - 1, 1, 0)], as_of=AS_OF)
    # A total that would go negative means states and totals are out of step: the store is reported lost.
    lost = await spend.apply(write, [TotalsDelta(False, "GBP|B", -near - 1, -1, 0)], as_of=AS_OF)
    assert lost.status == "lost" and "negative" in lost.detail
    assert (keys.client.hgetall(keys.states_key), keys.client.hgetall(keys.totals_key)) == before


async def test_a_window_total_never_goes_negative_when_the_as_of_date_moves(env: tuple[Namespace, Scratch]) -> None:
    ns, scratch = env
    keys = Keys(ns)
    # Published the day after the as-of date: in no window yet.
    first = [created(1, 1, scratch, published_at="2025-01-24T09:00:00"), created(2, 2, scratch)]
    assert (await run_batches(ns.settings, FaultPlan(), SpendHandler, [first])).event_ids() == []
    assert "GBP|Leeds City Council" in keys.totals(keys.window_key)
    assert keys.totals(keys.window_key)["GBP|Leeds City Council"][1] == 1
    # The next day (no window refresh ran in between) the tender's budget changes: its old contribution is in
    # today's window but not in the stored window totals.
    next_day = ns.settings.model_copy(update={"as_of": AS_OF + dt.timedelta(days=1)})
    batch = [updated(10, 1, scratch, published_at="2025-01-24T09:00:00", budget="2000.00")]
    assert (await run_batches(next_day, FaultPlan(), SpendHandler, [batch])).event_ids() == []
    states = list(keys.states().values())
    assert keys.totals(keys.window_key) == cents_by_member(states, AS_OF + dt.timedelta(days=1), DAYS)
    assert keys.totals(keys.window_key)["GBP|Leeds City Council"] == (300010, 2, 0)
    assert keys.client.hget(keys.window_key, "__as_of") == b"20250124"


async def test_nightly_recompute_repairs_drift_and_rewrites_an_agreeing_store(env: tuple[Namespace, Scratch]) -> None:
    ns, scratch = env
    keys = Keys(ns)
    await _first_batch(ns, scratch)
    ctx = WorkerContext(ns.settings)
    try:
        # A store an older version started from a batch of creations (epoch 1): rebuilt from MySQL.
        for key in (keys.states_key, keys.totals_key, keys.window_key):
            keys.client.hset(key, "__epoch", "1")
        first = await recompute_from_mysql(ctx)
        assert first.rebuilt_state and first.drift == [] and first.reason == "the store was started by the stream alone"
        agreeing = await recompute_from_mysql(ctx)
        assert agreeing.replaced and not agreeing.rebuilt_state and agreeing.drift == []
        # A lost event: MySQL has a budget change the stream never delivered.
        scratch.write(3, spend_tender(3, buyer="York Council", budget="999.00"))
        drifted = await recompute_from_mysql(ctx)
        assert drifted.rebuilt_state and drifted.drift == ["GBP|York Council"]
        assert keys.totals(keys.totals_key) == mysql_cents(scratch)
        # Totals that are not the sum of the states (a key restored from an older backup, say).
        keys.client.hincrby(keys.totals_key, "c:GBP|York Council", 5)
        broken = await recompute_from_mysql(ctx)
        assert broken.rebuilt_state and broken.reason == "the totals are not the sum of the tender states"
        keys.consistent()
    finally:
        await ctx.aclose()
    assert decimal.Decimal("999.00") == keys.states()[3].budget
