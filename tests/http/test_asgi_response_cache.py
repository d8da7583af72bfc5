"""The response cache of the ASGI middleware on a real Starlette app and the real cache."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from interlock import AsyncInterlock, CacheRule, InterlockMiddleware, testing
from interlock.testing import LogCapture, asgi_request, metric_value

# The origin's freshness decides (RFC 9111): without it (or a validator) nothing is stored.
FRESH = {"cache-control": "max-age=30"}


class Shop:
    """A Starlette app counting how often each handler really ran."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: dict[str, int] = {}
        self.delay = delay
        self.version = 1
        self.app = Starlette(
            routes=[
                Route("/products/{pid:int}", self.product),
                Route("/greeting", self.greeting),
                Route("/session", self.session),
                Route("/private", self.private),
                Route("/big", self.big),
                Route("/me", self.me),
            ]
        )

    def _ran(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    async def product(self, request: Request) -> Response:
        self._ran("product")
        if self.delay:
            await asyncio.sleep(self.delay)
        pid = request.path_params["pid"]
        request.scope["interlock"].tag(f"brand:{pid % 2}")
        return JSONResponse(
            {"pid": pid, "v": self.version, "q": dict(request.query_params)}, headers=FRESH
        )

    async def greeting(self, request: Request) -> Response:
        self._ran("greeting")
        language = request.headers.get("accept-language", "en")
        return PlainTextResponse(
            f"hello in {language}", headers={"vary": "Accept-Language", **FRESH}
        )

    async def session(self, request: Request) -> Response:
        self._ran("session")
        response = PlainTextResponse("welcome", headers=FRESH)
        response.set_cookie("sid", "secret")
        return response

    async def private(self, request: Request) -> Response:
        self._ran("private")
        return PlainTextResponse("mine", headers={"cache-control": "private, max-age=60"})

    async def big(self, request: Request) -> Response:
        self._ran("big")

        async def chunks() -> Any:
            for _ in range(10):
                yield b"x" * 1000

        return StreamingResponse(chunks(), headers=FRESH)

    async def me(self, request: Request) -> Response:
        self._ran("me")
        user = request.headers.get("authorization", "anonymous")
        return PlainTextResponse(f"user {user}", headers=FRESH)


RULES = [
    CacheRule("/products/{pid}", ttl=30, tags=["product:{pid}"], ignore_query=["utm_source"]),
    CacheRule("/greeting", ttl=30, vary=["accept-language"]),
    CacheRule("/session", ttl=30),
    CacheRule("/private", ttl=30),
    CacheRule("/big", ttl=30, max_body=5000),
    CacheRule("/me", ttl=30, per_user=True, name="per-user"),
]


def _app(ail: AsyncInterlock, shop: Shop) -> InterlockMiddleware:
    return InterlockMiddleware(shop.app, interlock=ail, cache=RULES)


async def _get(app: Any, path: str, query: bytes = b"", **headers: str) -> testing.Response:
    raw = [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    return await asgi_request(app, "GET", path, query=query, headers=raw)


@pytest.mark.anyio
async def test_miss_then_hit_with_age_etag_and_304(
    make_ail: Callable[..., AsyncInterlock], logs: LogCapture
) -> None:
    async with make_ail() as ail:
        shop = Shop()
        app = _app(ail, shop)
        first = await _get(app, "/products/7")
        assert first.status == 200 and first.headers["x-cache"] == "MISS"
        assert first.headers["age"] == "0"
        etag = first.headers["etag"]
        assert etag.startswith('"') and len(etag) == 34
        second = await _get(app, "/products/7")
        assert second.headers["x-cache"] == "HIT"
        assert second.body == first.body and second.headers["etag"] == etag
        assert int(second.headers["age"]) >= 0
        assert "set-cookie" not in second.headers
        assert second.headers["x-request-id"] != first.headers["x-request-id"]
        assert shop.calls["product"] == 1
        not_modified = await _get(app, "/products/7", if_none_match=f'W/{etag}, "other"')
        assert not_modified.status == 304 and not_modified.body == b""
        assert not_modified.headers["etag"] == etag
        assert "content-type" not in not_modified.headers
        # the ETag is the body's: another instance (worker) computes the same one
        async with make_ail() as other:
            fresh = await _get(_app(other, Shop()), "/products/7", cache_control="no-cache")
        assert fresh.headers["etag"] == etag

        lines = logs.requests()
        assert [line["interlock.cache.result"] for line in lines[:3]] == ["miss", "hit", "hit"]
        assert {line["interlock.http.route"] for line in lines[:3]} == {"/products/{pid}"}
        assert (
            metric_value(ail, "interlock_cache_requests_total", cache="http", result="hit") == 2
        )


@pytest.mark.anyio
async def test_head_is_answered_from_the_get_entry(make_ail: Callable[..., AsyncInterlock]) -> None:
    async with make_ail() as ail:
        shop = Shop()
        app = _app(ail, shop)
        cold = await asgi_request(app, "HEAD", "/products/8")
        assert cold.status == 200 and cold.headers["x-cache"] == "MISS"  # the app answered
        got = await _get(app, "/products/8")
        assert got.headers["x-cache"] == "MISS"  # the HEAD stored nothing
        head = await asgi_request(app, "HEAD", "/products/8")
        assert head.status == 200 and head.body == b"" and head.headers["x-cache"] == "HIT"
        assert head.headers["etag"] == got.headers["etag"]
        assert head.headers["content-length"] == str(len(got.body))
        assert shop.calls["product"] == 2


@pytest.mark.anyio
async def test_query_is_normalised_into_the_key(make_ail: Callable[..., AsyncInterlock]) -> None:
    async with make_ail() as ail:
        shop = Shop()
        app = _app(ail, shop)
        await _get(app, "/products/1", b"b=2&a=1")
        same = await _get(app, "/products/1", b"a=%31&b=2&utm_source=mail")
        assert same.headers["x-cache"] == "HIT"
        other = await _get(app, "/products/1", b"a=2&b=2")
        assert other.headers["x-cache"] == "MISS"
        assert shop.calls["product"] == 2


@pytest.mark.anyio
async def test_vary_headers_select_entries(make_ail: Callable[..., AsyncInterlock]) -> None:
    async with make_ail() as ail:
        shop = Shop()
        app = _app(ail, shop)
        en = await _get(app, "/greeting", accept_language="en")
        fr = await _get(app, "/greeting", accept_language="fr")
        assert (en.body, fr.body) == (b"hello in en", b"hello in fr")
        again = await _get(app, "/greeting", accept_language="fr")
        assert again.headers["x-cache"] == "HIT" and again.body == b"hello in fr"
        assert shop.calls["greeting"] == 2


@pytest.mark.anyio
async def test_credentials_never_get_another_users_entry(
    make_ail: Callable[..., AsyncInterlock],
) -> None:
    async with make_ail() as ail:
        shop = Shop()
        app = _app(ail, shop)
        await _get(app, "/products/3")
        with_auth = await _get(app, "/products/3", authorization="Bearer alice")
        assert with_auth.headers["x-cache"] == "BYPASS"
        with_cookie = await _get(app, "/products/3", cookie="sid=1")
        assert with_cookie.headers["x-cache"] == "BYPASS"
        assert shop.calls["product"] == 3
        # per-user rule: each user gets an entry of their own
        alice = await _get(app, "/me", authorization="Bearer alice")
        bob = await _get(app, "/me", authorization="Bearer bob")
        alice_again = await _get(app, "/me", authorization="Bearer alice")
        anonymous = await _get(app, "/me")
        assert alice.body == alice_again.body == b"user Bearer alice"
        assert bob.body == b"user Bearer bob"
        assert anonymous.body == b"user anonymous"
        assert alice_again.headers["x-cache"] == "HIT"
        assert shop.calls["me"] == 3
        assert metric_value(ail, "interlock_cache_requests_total", result="bypass") == 2


@pytest.mark.anyio
async def test_uncacheable_responses_are_not_stored(
    make_ail: Callable[..., AsyncInterlock],
) -> None:
    async with make_ail() as ail:
        shop = Shop()
        app = _app(ail, shop)
        for path in ("/session", "/private", "/big"):
            first = await _get(app, path)
            second = await _get(app, path)
            assert first.status == second.status == 200
            assert second.headers["x-cache"] == "BYPASS", path
        assert shop.calls == {"session": 2, "private": 2, "big": 3}  # big ran twice once
        assert (await _get(app, "/big")).body == b"x" * 10_000
        session = await _get(app, "/session")
        assert "sid=secret" in session.headers["set-cookie"]
        no_store = await _get(app, "/products/9", cache_control="no-store")
        assert no_store.headers["x-cache"] == "BYPASS"
        assert (await _get(app, "/products/9")).headers["x-cache"] == "MISS"


@pytest.mark.anyio
async def test_identical_requests_in_flight_coalesce(
    make_ail: Callable[..., AsyncInterlock],
) -> None:
    async with make_ail() as ail:
        shop = Shop(delay=0.2)
        app = _app(ail, shop)
        responses = await asyncio.gather(*(_get(app, "/products/5") for _ in range(20)))
        assert shop.calls["product"] == 1
        assert len({r.body for r in responses}) == 1
        assert sorted(r.headers["x-cache"] for r in responses).count("MISS") == 1


@pytest.mark.anyio
async def test_tags_purge_entries(make_ail: Callable[..., AsyncInterlock]) -> None:
    async with make_ail() as ail:
        shop = Shop()
        app = _app(ail, shop)
        await _get(app, "/products/4")
        await _get(app, "/products/6")
        assert (await _get(app, "/products/4")).headers["x-cache"] == "HIT"
        shop.version = 2
        await ail.cache("http").invalidate_tag("product:4")  # the rule's tag
        purged = await _get(app, "/products/4")
        assert purged.headers["x-cache"] == "MISS" and purged.json()["v"] == 2
        assert (await _get(app, "/products/6")).json()["v"] == 1
        await ail.cache("http").invalidate_tag("brand:0")  # a tag the handler added
        assert (await _get(app, "/products/6")).json()["v"] == 2


@pytest.mark.anyio
async def test_stale_entries_are_served_while_refreshing(
    make_ail: Callable[..., AsyncInterlock],
) -> None:
    async with make_ail() as ail:
        shop = Shop()
        # override=True: the old fixed ttl (sub-second here) replaces the origin's max-age
        rule = CacheRule("/products/{pid}", ttl=0.2, stale_ttl=30, name="stale", override=True)
        app = InterlockMiddleware(shop.app, interlock=ail, cache=[rule])
        await _get(app, "/products/2")
        shop.version = 2
        await asyncio.sleep(0.35)
        stale = await _get(app, "/products/2")
        assert stale.headers["x-cache"] == "STALE" and stale.json()["v"] == 1
        for _ in range(50):  # the background refresh lands
            await asyncio.sleep(0.02)
            if shop.calls["product"] == 2:
                break
        await asyncio.sleep(0.05)
        fresh = await _get(app, "/products/2")
        assert fresh.headers["x-cache"] == "HIT" and fresh.json()["v"] == 2


def test_rules_sharing_a_cache_name_must_agree() -> None:
    with pytest.raises(ValueError, match="different name"):
        InterlockMiddleware(
            Shop().app,
            interlock=AsyncInterlock("mem://"),
            cache=[CacheRule("/a", ttl=1, stale_ttl=1), CacheRule("/b", ttl=1, stale_ttl=2)],
        )


@pytest.mark.anyio
async def test_a_degraded_cache_says_bypass_in_header_log_and_metric(
    make_ail: Callable[..., AsyncInterlock], fresh_redis: Any
) -> None:
    """Issue 11 item 14: during an outage responses said X-Cache: MISS while the metric and
    the log said bypass. One word for one fact (failed before the fix)."""
    url = fresh_redis.url
    fresh_redis.stop()

    ail = make_ail(url, socket_timeout=0.2, connect_timeout=0.2)
    shop = Shop()
    app = _app(ail, shop)
    try:
        words = set()
        for _ in range(4):
            response = await _get(app, "/products/7")
            assert response.status == 200  # the cache fails open
            words.add(response.headers["x-cache"])
        results = {
            result
            for result in ("hit", "miss", "bypass", "error")
            if metric_value(ail, "interlock_cache_requests_total", result=result)
        }
        assert words == {"BYPASS"}, words
        assert results <= {"bypass", "error"}, results
    finally:
        await ail.aclose()
