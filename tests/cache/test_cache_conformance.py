"""The cache contract, run against mem://, a single Redis, a 3-master Redis Cluster and Sentinel."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from interlock import (
    AsyncInterlock,
    Cache,
    ConfigError,
    Interlock,
    SerializationError,
    request_context,
)
from interlock.cache import entry_keys
from interlock.cache._entry import Envelope
from interlock.metrics import OVERFLOW


def results(il: Interlock | AsyncInterlock, cache: str) -> dict[str, float]:
    assert il.registry is not None
    out = {}
    for metric in il.registry.collect():
        if metric.name == "interlock_cache_requests":
            for sample in metric.samples:
                total = sample.name.endswith("_total") and sample.value
                if total and sample.labels["cache"] == cache:
                    out[sample.labels["result"]] = sample.value
    return out


def counting(value: Any = "v") -> tuple[Callable[[], Any], list[int]]:
    calls: list[int] = []

    def load() -> Any:
        calls.append(1)
        return value

    return load, calls


def stored(il: Interlock, cache: str, key: object) -> Envelope | None:
    data = il.backend.execute("GET", entry_keys(il.namespace, cache, key).entry)
    return None if data is None else Envelope(data)


def until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


# -- basics ----------------------------------------------------------------------------------


def test_set_get_delete_roundtrip_with_extended_types(il: Interlock) -> None:
    products = il.cache("products", ttl=60.0)
    value = {
        "price": Decimal("9.99"),
        "at": dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC),
        "day": dt.date(2024, 5, 1),
        "id": uuid.UUID(int=7),
        "blob": b"\x00\x01",
        "n": 2**80,
        "list": [1, "a", None],
    }
    assert products.get(42) is None
    assert products.get(42, "default") == "default"
    products.set(42, value)
    assert products.get(42) == value
    assert products.delete(42) is True
    assert products.delete(42) is False
    assert products.get(42) is None
    assert results(il, "products") == {"miss": 3, "hit": 1}


def test_keys_are_encoded_and_never_collide(il: Interlock) -> None:
    cache = il.cache("keys")
    keys: list[object] = ["a:b", ("a", "b"), "a b", "{x}", "x" * 500, "x" * 499, 7, ("user", 7), ""]
    for index, key in enumerate(keys):
        cache.set(key, index)
    assert [cache.get(key) for key in keys] == list(range(len(keys)))
    with pytest.raises(TypeError):
        cache.get(1.5)
    with pytest.raises(ConfigError):
        il.cache("bad name!")


def test_same_name_is_the_same_cache_and_options_are_checked(il: Interlock) -> None:
    products = il.cache("products", ttl=30.0)
    assert il.cache("products") is products
    assert il.cache("products", ttl=30.0) is products
    with pytest.raises(ConfigError, match="already exists"):
        il.cache("products", ttl=5.0)
    with pytest.raises(ConfigError, match="unknown cache option"):
        il.cache("other", tll=5.0)
    assert isinstance(products, Cache) and "products" in repr(products)


def test_get_or_load_loads_once_then_hits(il: Interlock) -> None:
    cache = il.cache("users")
    load, calls = counting({"name": "ada"})
    assert cache.get_or_load(1, load) == {"name": "ada"}
    assert cache.get_or_load(1, load) == {"name": "ada"}
    assert len(calls) == 1
    assert results(il, "users") == {"miss": 1, "hit": 1}
    assert il.registry is not None
    assert il.registry.get_sample_value("interlock_cache_load_seconds_count", {"cache": "users"})


def test_loader_errors_propagate_and_free_the_lease(il: Interlock) -> None:
    cache = il.cache("flaky", lock_wait=5.0)

    def fail() -> None:
        raise RuntimeError("db down")

    with pytest.raises(RuntimeError, match="db down"):
        cache.get_or_load(1, fail)
    started = time.monotonic()
    assert cache.get_or_load(1, lambda: "ok") == "ok"
    assert time.monotonic() - started < 2.0  # did not wait for the failed holder's lease


def test_unserializable_values_raise(il: Interlock) -> None:
    cache = il.cache("strict")
    with pytest.raises(SerializationError):
        cache.set(1, {1, 2})
    with pytest.raises(SerializationError):
        cache.get_or_load(2, lambda: object())
    assert cache.get_or_load(2, lambda: "fine") == "fine"  # the lease was released


def test_request_context_records_the_result(il: Interlock) -> None:
    cache = il.cache("ctx")
    with request_context(request_id="r1") as ctx:
        cache.get_or_load(1, lambda: 1)
        assert ctx.events["cache"] == {"name": "ctx", "result": "miss"}
        cache.get_or_load(1, lambda: 1)
        assert ctx.events["cache"] == {"name": "ctx", "result": "hit"}


def test_cache_names_are_capped_labels(backend_url: str) -> None:
    client = Interlock(backend_url, namespace=f"c{uuid.uuid4().hex[:8]}", label_cap=1)
    try:
        client.cache("first").get(1)
        client.cache("second").get(1)
        assert results(client, "first") == {"miss": 1}
        assert results(client, OVERFLOW) == {"miss": 1}
    finally:
        client.close()


# -- TTL, jitter, negative, stale, early refresh ---------------------------------------------


def test_ttl_jitter_and_expiry(il: Interlock) -> None:
    cache = il.cache("short", ttl=0.3, jitter=0.5)
    cache.set(1, "v")
    envelope = stored(il, "short", 1)
    assert envelope is not None and 150 <= envelope.ttl_ms <= 300
    time.sleep(0.35)
    assert cache.get(1) is None


def test_negative_results_are_cached_separately(il: Interlock) -> None:
    cache = il.cache("maybe", ttl=60.0, negative_ttl=0.2, jitter=0)
    load, calls = counting(None)
    assert cache.get_or_load(404, load) is None
    assert cache.get_or_load(404, load) is None
    assert len(calls) == 1
    envelope = stored(il, "maybe", 404)
    assert envelope is not None and envelope.negative and envelope.ttl_ms == 200
    assert results(il, "maybe") == {"miss": 1, "negative_hit": 1}
    time.sleep(0.25)
    cache.get_or_load(404, load)
    assert len(calls) == 2
    off = il.cache("never", negative_ttl=0)
    load, calls = counting(None)
    off.get_or_load(1, load)
    off.get_or_load(1, load)
    assert len(calls) == 2


def test_stale_while_revalidate_and_stale_if_error(il: Interlock) -> None:
    cache = il.cache("swr", ttl=0.2, stale_ttl=30.0, jitter=0, early_refresh=0)
    cache.get_or_load(1, lambda: "v1")
    time.sleep(0.25)
    refreshed = threading.Event()

    def slow_v2() -> str:
        refreshed.set()
        return "v2"

    assert cache.get_or_load(1, slow_v2) == "v1"  # stale, refreshed in the background
    assert refreshed.wait(5)
    assert until(lambda: cache.get(1) == "v2")
    time.sleep(0.25)

    def broken() -> str:
        raise RuntimeError("origin down")

    assert cache.get_or_load(1, broken) == "v2"  # stale-if-error
    assert cache.get_or_load(1, broken) == "v2"
    assert results(il, "swr")["stale"] >= 3


def test_xfetch_refreshes_hot_keys_before_expiry(il: Interlock) -> None:
    cache = il.cache("hot", ttl=2.0, jitter=0, early_refresh=100.0)
    versions = iter(range(1, 1000))

    def load() -> int:
        time.sleep(0.05)  # recorded as the loader's duration (delta)
        return next(versions)

    assert cache.get_or_load(1, load) == 1
    # P(refresh) = exp(-remaining / (delta * beta)) = exp(-2 s / 5 s) = 0.67 per hit,
    # long before the entry expires
    started = time.monotonic()
    assert until(lambda: cache.get_or_load(1, load) > 1, 1.5)
    assert time.monotonic() - started < 1.5
    assert results(il, "hot")["hit"] >= 1


# -- stampede control in one process ---------------------------------------------------------


def test_threads_share_one_load(il: Interlock) -> None:
    cache = il.cache("threads")
    gate = threading.Barrier(20)
    calls: list[int] = []

    def load() -> str:
        calls.append(1)
        time.sleep(0.2)
        return "v"

    def call() -> None:
        gate.wait()
        assert cache.get_or_load(1, load) == "v"

    threads = [threading.Thread(target=call) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(calls) == 1
    counted = results(il, "threads")
    assert counted["miss"] == 1 and sum(counted.values()) == 20


@pytest.mark.anyio
async def test_async_callers_share_one_load(backend_url: str) -> None:
    ail = AsyncInterlock(backend_url, namespace=f"c{uuid.uuid4().hex[:8]}")
    cache = ail.cache("tasks")
    # redis-py's async RedisCluster races when its very first commands run
    # concurrently (it initializes per command); reported to the backend's owner.
    await ail.backend.execute("PING")
    calls: list[int] = []

    async def load() -> str:
        calls.append(1)
        await asyncio.sleep(0.2)
        return "v"

    assert await asyncio.gather(*(cache.get_or_load(1, load) for _ in range(50))) == ["v"] * 50
    assert len(calls) == 1
    assert results(ail, "tasks")["miss"] == 1
    # a cancelled caller does not cancel the load the others share
    calls.clear()
    first = asyncio.ensure_future(cache.get_or_load(2, load))
    deadline = time.monotonic() + 10
    while not calls:  # the first caller's load is under way
        assert time.monotonic() < deadline, "the first load did not start"
        await asyncio.sleep(0.005)
    second = asyncio.ensure_future(cache.get_or_load(2, load))
    first.cancel()
    assert await second == "v" and len(calls) == 1
    await ail.aclose()


# -- invalidation ------------------------------------------------------------------------------


def test_tags_invalidate_in_o1(il: Interlock, other: Interlock) -> None:
    cache = il.cache("catalog")
    cache.set(1, "a", tags=["catalog", "brand:x"])
    cache.set(2, "b", tags=["catalog"])
    cache.set(3, "c", tags=["brand:y"])
    assert cache.get(1) == "a" and cache.get(1, tags=["catalog", "brand:x"]) == "a"
    other.cache("catalog").invalidate_tag("brand:x")
    assert cache.get(1) is None and cache.get(2) == "b" and cache.get(3) == "c"
    cache.invalidate_tag("catalog")
    assert cache.get(2) is None and cache.get(3) == "c"
    cache.set(2, "b2", tags=["catalog"])  # written after the invalidation: valid
    assert cache.get(2) == "b2"
    load, calls = counting("fresh")
    assert cache.get_or_load(1, load, tags=["brand:x"]) == "fresh"
    assert cache.get_or_load(1, load, tags=["brand:x"]) == "fresh"
    assert len(calls) == 1


def test_keys_and_tags_invalidate_in_one_call(il: Interlock, other: Interlock) -> None:
    """invalidate(keys=, tags=): one pipeline (the response cache's RFC 9111 §4.4)."""
    cache = il.cache("several")
    cache.set(1, "a", tags=["x"])
    cache.set(2, "b", tags=["y"])
    cache.set(3, "c", tags=["z"])
    cache.set(4, "d")
    cache.set(5, "e")
    other.cache("several").invalidate(keys=[4, 6], tags=["x", "y"])
    assert [cache.get(k) for k in (1, 2, 3, 4, 5)] == [None, None, "c", None, "e"]
    other.cache("several").invalidate()  # nothing to do: no command
    assert cache.get(3) == "c" and cache.get(5) == "e"


@pytest.mark.parametrize("invalidate", ["delete", "tag", "set"])
def test_a_load_in_flight_during_invalidation_is_not_served_afterwards(
    il: Interlock, other: Interlock, invalidate: str
) -> None:
    cache = il.cache("race", lock_wait=5.0)
    remote = other.cache("race")
    started, release = threading.Event(), threading.Event()

    def slow_old() -> str:
        started.set()
        assert release.wait(10)
        return "old"

    outcome: list[str] = []
    loader = threading.Thread(
        target=lambda: outcome.append(cache.get_or_load(1, slow_old, tags=["t"]))
    )
    loader.start()
    assert started.wait(5)
    if invalidate == "delete":
        remote.delete(1)
    elif invalidate == "tag":
        remote.invalidate_tag("t")
    else:
        remote.set(1, "written", tags=["t"])
    # a caller arriving now must not share the old load
    expected = "written" if invalidate == "set" else "new"
    assert cache.get_or_load(1, lambda: "new", tags=["t"]) == expected
    release.set()
    loader.join(10)
    assert outcome == ["old"]  # its own caller overlapped the invalidation
    assert cache.get(1) == expected and remote.get(1) == expected
    assert cache.get_or_load(1, lambda: "other", tags=["t"]) == expected


# -- decorator ---------------------------------------------------------------------------------


def test_cached_decorator_sync(il: Interlock) -> None:
    products = il.cache("deco")
    calls: list[int] = []

    @products.cached(key=lambda pid: ("product", pid), tags=lambda pid: [f"p{pid}"])
    def product(pid: int) -> dict[str, int]:
        calls.append(pid)
        return {"id": pid}

    assert product(1) == product(1) == {"id": 1}
    assert product(2) == {"id": 2}
    assert calls == [1, 2]
    assert product.invalidate(1) is True  # type: ignore[attr-defined]
    product(1)
    products.invalidate_tag("p2")
    product(2)
    assert calls == [1, 2, 1, 2]

    @products.cached()
    def add(a: int, b: int = 1) -> int:
        calls.append(a)
        return a + b

    assert add(1) == add(1, b=1) == add(a=1) == 2
    assert add(1, 2) == 3
    with pytest.raises(TypeError, match="plain functions"):

        @products.cached()
        async def wrong() -> None: ...

    async def coroutine_loader() -> int:
        return 1

    with pytest.raises(TypeError, match="returned an awaitable"):
        products.get_or_load("async-loader", coroutine_loader)
    assert products.get_or_load("async-loader", lambda: 2) == 2  # its lease was freed


@pytest.mark.anyio
async def test_cached_decorator_async(backend_url: str) -> None:
    ail = AsyncInterlock(backend_url, namespace=f"c{uuid.uuid4().hex[:8]}")
    products = ail.cache("deco")
    await ail.backend.execute("PING")  # see test_async_callers_share_one_load
    calls: list[int] = []

    @products.cached(key=lambda pid: pid)
    async def product(pid: int) -> dict[str, int]:
        calls.append(pid)
        await asyncio.sleep(0.01)
        return {"id": pid}

    assert await asyncio.gather(product(1), product(1), product(1)) == [{"id": 1}] * 3
    assert calls == [1]
    with pytest.raises(TypeError, match="async functions"):

        @products.cached()
        def wrong() -> None: ...

    assert await products.get_or_load(9, lambda: "sync loaders work too") == (
        "sync loaders work too"
    )
    await ail.aclose()


# -- near cache --------------------------------------------------------------------------------


def test_near_cache_hits_and_stays_coherent(il: Interlock, other: Interlock) -> None:
    mine = il.cache("near", near=True, near_ttl=30.0)
    theirs = other.cache("near", near=True, near_ttl=30.0)
    mine.set(1, "v1", tags=["t"])
    assert theirs.get_or_load(1, lambda: "unused") == "v1"
    assert theirs.get_or_load(1, lambda: "unused") == "v1"
    assert results(other, "near")["near_hit"] == 1
    mine.set(1, "v2", tags=["t"])
    assert until(lambda: theirs.get(1) == "v2", 2.0)
    mine.delete(1)
    assert until(lambda: theirs.get(1) is None, 2.0)
    theirs.get_or_load(1, lambda: "v3", tags=["t"])
    assert theirs.get(1) == "v3"
    mine.invalidate_tag("t")
    assert until(lambda: theirs.get(1) is None, 2.0)


def test_near_cache_is_bounded(il: Interlock) -> None:
    cache = il.cache("small", near=True, near_size=2)
    for key in range(5):
        cache.get_or_load(key, lambda key=key: key)  # type: ignore[misc]
    assert len(cache._near) == 2  # type: ignore[arg-type]
