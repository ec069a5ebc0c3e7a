"""The read service's pure parts: id and parameter checks, one fallback read per key, token format."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json

import pytest

from tenderhub.api.app import ApiError, SingleFlight, client_address, dumps, positive_id
from tenderhub.api.quotas import LocalWindows, Quotas, address_id
from tenderhub.api.tokens import TOKEN_PREFIX, token_hash, well_formed


@pytest.mark.parametrize("raw", ["0", "-1", "01", "1.5", "abc", "", "9" * 20, str(2**63), "١٢", "1e3", " 1"])
def test_ids_that_are_not_positive_64_bit_integers_are_422(raw: str) -> None:
    with pytest.raises(ApiError) as info:
        positive_id("tender_id", raw)
    assert info.value.status == 422 and "tender_id" in info.value.message


def test_the_largest_id_is_taken() -> None:
    assert positive_id("tender_id", str(2**63 - 1)) == 2**63 - 1


@pytest.mark.asyncio
async def test_concurrent_misses_of_one_key_share_one_read() -> None:
    flight = SingleFlight()
    calls = 0
    gate = asyncio.Event()

    async def read() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        return 42

    waiting = [asyncio.ensure_future(flight.run(("tender", 1), read)) for _ in range(50)]
    other = asyncio.ensure_future(flight.run(("tender", 2), read))
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*waiting, other) == [42] * 51
    assert calls == 2  # one per key
    assert await flight.run(("tender", 1), read) == 42 and calls == 3  # done: the next miss reads again


@pytest.mark.asyncio
async def test_a_failed_shared_read_fails_every_waiter_and_is_not_kept() -> None:
    flight = SingleFlight()

    async def broken() -> int:
        await asyncio.sleep(0)
        raise RuntimeError("store down")

    results = await asyncio.gather(*(flight.run(("k",), broken) for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)

    async def fine() -> int:
        return 1

    assert await flight.run(("k",), fine) == 1


def test_tokens_are_checked_for_shape_before_any_lookup() -> None:
    token = TOKEN_PREFIX + "A" * 43
    assert well_formed(token) and not well_formed(token + "x") and not well_formed("Bearer " + token)
    assert not well_formed(TOKEN_PREFIX + "A" * 42 + "$") and len(token_hash(token)) == 64


def test_client_addresses_become_valid_key_ids() -> None:
    ids = {address_id(a) for a in ("127.0.0.1", "::1", "10.0.0.7", "")}
    assert len(ids) == 4 and all(0 < i < 2**63 for i in ids)


def test_an_ipv6_client_is_counted_by_its_64_and_a_mapped_ipv4_as_itself() -> None:
    # One host holds a whole /64: rotating through it must not give it a fresh quota per address.
    assert address_id("2001:db8:1:2::1") == address_id("2001:db8:1:2:ffff:ffff:ffff:ffff")
    assert address_id("2001:db8:1:2::1") != address_id("2001:db8:1:3::1")
    assert address_id("::ffff:10.0.0.7") == address_id("10.0.0.7")


def test_answers_are_strict_json_a_non_finite_number_is_null() -> None:
    @dataclasses.dataclass
    class Row:
        amount: float

    body = {"data": [float("nan"), 1.5, {"s": float("inf")}, Row(float("-inf")), (2.0, float("nan"))], "n": None}
    text = dumps(body)
    assert json.loads(text) == {"data": [None, 1.5, {"s": None}, {"amount": None}, [2.0, None]], "n": None}
    assert "NaN" not in text and "Infinity" not in text
    assert dumps({"a": 1.25}) == '{"a": 1.25}'


class _RedisDown:
    """A RedisSink whose every call fails as a Redis that is down does."""

    def full_key(self, key: str, kind: str) -> str:
        return f"p:{key}"

    async def run(self, call: object, what: str) -> object:
        from sinks.errors import TransientSinkError

        raise TransientSinkError(f"{what}: connection refused")


@pytest.mark.asyncio
async def test_quotas_hold_in_the_services_memory_while_redis_is_down() -> None:
    now = [1_000.0]
    quotas = Quotas(_RedisDown(), per_minute=3, searches_per_day=2, local=LocalWindows(clock=lambda: now[0]))  # type: ignore[arg-type]
    verdicts = [await quotas.take(7, "10.0.0.1") for _ in range(4)]
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert 1 <= verdicts[-1].retry_after_s <= 60 and quotas.unchecked == 4
    assert (await quotas.take(8, "10.0.0.1")).allowed  # another token has its own window
    searches = [await quotas.take_search(None, "10.0.0.2") for _ in range(3)]
    assert [v.allowed for v in searches] == [True, True, False]
    for _ in range(3):
        await quotas.take_bad_token("10.0.0.3")
    assert not (await quotas.bad_tokens_used_up("10.0.0.3")).allowed
    assert (await quotas.bad_tokens_used_up("10.0.0.4")).allowed
    for _ in range(3):
        await quotas.take(None, "10.0.0.4")  # anonymous reads of public data are another quota
    assert (await quotas.bad_tokens_used_up("10.0.0.4")).allowed
    now[0] += 61  # the minute is over
    assert (await quotas.take(7, "10.0.0.1")).allowed


def test_local_windows_are_bounded() -> None:
    windows = LocalWindows(max_keys=2, clock=lambda: 0.0)
    for key in ("a", "b", "c"):
        windows.take(key, 60, None)
    assert windows.used("a") == (0, 0.0) and windows.used("c")[0] == 1


def test_the_client_behind_a_trusted_proxy_is_counted_not_the_proxy() -> None:
    proxies = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("10.0.0.0/8"))
    # No trusted proxy configured, or a peer that is not one: the peer, whatever the header claims.
    assert client_address("203.0.113.9", "198.51.100.7", ()) == "203.0.113.9"
    assert client_address("203.0.113.9", "198.51.100.7", proxies) == "203.0.113.9"
    # Through the proxy: the client it names; through two proxies: the first untrusted hop from the right.
    assert client_address("127.0.0.1", "198.51.100.7", proxies) == "198.51.100.7"
    assert client_address("127.0.0.1", "6.6.6.6, 198.51.100.7, 10.1.2.3", proxies) == "198.51.100.7"
    # A header of trusted hops only, none, or garbage: the proxy itself (nothing better is known).
    assert client_address("127.0.0.1", "10.1.2.3", proxies) == "127.0.0.1"
    assert client_address("127.0.0.1", None, proxies) == "127.0.0.1"
    assert client_address("127.0.0.1", "x; DROP, 198.51.100.7", proxies) == "198.51.100.7"
    assert client_address("127.0.0.1", "198.51.100.7, not-an-ip", proxies) == "127.0.0.1"
    assert client_address(None, "198.51.100.7", proxies) == "unknown"
