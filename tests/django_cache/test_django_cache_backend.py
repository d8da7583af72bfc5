"""``InterlockCache`` beyond Django's suite: the async API on the running loop (no
threads), options and their errors, "forever" entries, metrics, ``get_or_set`` single flight."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from prometheus_client import CollectorRegistry

from interlock.django import InterlockCache

HMAC_KEY = "interlock-django-cache-tests-key"


@pytest.fixture(params=["mem", "redis"])
def location(request: pytest.FixtureRequest) -> str:
    return "mem://" if request.param == "mem" else str(request.getfixturevalue("redis_url"))


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def cache(location: str, registry: CollectorRegistry) -> Iterator[Any]:
    options = {"NAMESPACE": f"dj{uuid.uuid4().hex[:10]}", "REGISTRY": registry}
    settings = {"default": {"BACKEND": "interlock.django.InterlockCache", "LOCATION": location,
                            "OPTIONS": options}}  # fmt: skip
    with override_settings(CACHES=settings):
        yield caches["default"]


def test_async_methods_run_on_the_loop_thread(cache: Any) -> None:
    async def main() -> list[Any]:
        seen: list[Any] = []
        main_thread = threading.get_ident()
        await cache.aset("a", {"x": 1}, 30)
        seen.append(await cache.aget("a"))
        seen.append(await cache.aadd("a", 2))
        seen.append(await cache.aadd("b", 5))
        seen.append(await cache.aincr("b", 3))
        seen.append(await cache.adecr("b"))
        seen.append(await cache.aget_many(["a", "b", "c"]))
        seen.append(await cache.atouch("b", None))
        seen.append(await cache.aget_or_set("c", lambda: "loaded", 30))
        seen.append(await cache.ahas_key("c"))
        await cache.adelete_many(["a", "b"])
        seen.append(await cache.aget_many(["a", "b", "c"]))
        await cache.aclear()
        seen.append(await cache.aget("c", "gone"))
        assert threading.get_ident() == main_thread
        assert threading.active_count() == before  # no sync_to_async worker threads
        await cache.aclose()
        return seen

    before = threading.active_count()
    seen = asyncio.run(main())
    assert seen == [
        {"x": 1}, False, True, 8, 7, {"a": {"x": 1}, "b": 7}, True, "loaded", True,
        {"c": "loaded"}, "gone",
    ]  # fmt: skip


def test_sync_and_async_clients_share_entries(cache: Any) -> None:
    cache.set("shared", [1, 2], None)

    async def main() -> Any:
        value = await cache.aget("shared")
        await cache.aset("from-async", "yes")
        await cache.aclose()
        return value

    assert asyncio.run(main()) == [1, 2]
    assert cache.get("from-async") == "yes"


def test_metrics_count_django_calls(cache: Any, registry: CollectorRegistry) -> None:
    cache.set("k", 1)
    cache.get("k")
    cache.get("missing")
    cache.get_many(["k", "missing"])

    def count(result: str) -> float:
        labels = {"cache": "django", "result": result}
        return registry.get_sample_value("interlock_cache_requests_total", labels) or 0.0

    assert (count("hit"), count("miss")) == (2.0, 2.0)


def test_get_or_set_runs_the_default_once_for_concurrent_callers(cache: Any) -> None:
    calls: list[int] = []
    gate = threading.Barrier(8)

    def load() -> str:
        calls.append(1)
        return "value"

    def caller() -> None:
        gate.wait()
        assert cache.get_or_set("hot", load, 30) == "value"

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(calls) == 1


def test_forever_entries_never_expire(cache: Any) -> None:
    from interlock.cache._entry import FOREVER_MS, Envelope, encode_envelope
    from interlock.serializers import MsgpackSerializer

    cache.set("forever", "v", None)
    assert cache.get("forever") == "v"
    old = encode_envelope("v", MsgpackSerializer(), created_ms=0, ttl_ms=FOREVER_MS,
                          stale_ms=0, delta_us=0)  # fmt: skip
    assert Envelope(old).fresh_until_ms > 10**15  # written in 1970, still fresh


@pytest.mark.parametrize(
    ("options", "fix"),
    [
        ({"SERIALIZER": "pickle"}, '"HMAC_KEY"'),
        ({"HMAC_KEY": HMAC_KEY}, 'only used with "SERIALIZER": "pickle"'),
        ({"MAX_ENTRIES": 10}, "maxmemory-policy"),
        ({"NEAR_TLL": 1}, "unknown OPTIONS NEAR_TLL"),
        ({"STALE_TTL": "soon"}, "stale_ttl='soon' is invalid"),
        ({"SERIALIZER": "yaml"}, "serializer='yaml' is invalid"),
    ],
)
def test_invalid_options_name_the_fix(options: dict[str, Any], fix: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="InterlockCache") as info:
        InterlockCache("mem://", {"OPTIONS": options})
    assert fix in str(info.value)


def test_msgpack_is_the_default_and_refuses_objects(cache: Any) -> None:
    from interlock.errors import SerializationError

    with pytest.raises(SerializationError):
        cache.set("obj", object())


def test_cache_sessions(cache: Any) -> None:
    from django.contrib.sessions.backends.cache import SessionStore

    session = SessionStore()
    session["cart"] = [1, 2]
    session.save()
    again = SessionStore(session_key=session.session_key)
    assert again["cart"] == [1, 2]
    again.delete()
    assert SessionStore(session_key=session.session_key).get("cart") is None
