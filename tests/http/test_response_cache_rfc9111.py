"""The response cache as an RFC 9111 shared cache, on both drivers and on mem:// and Redis
(issue 13, items 1-5, 9, 12; docs/http-cache.md). Each test failed before the integration."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from email.utils import formatdate
from typing import Any

import pytest

from interlock import (
    AsyncInterlock,
    CacheRule,
    Interlock,
    InterlockMiddleware,
    InterlockWSGIMiddleware,
)
from interlock.testing import Response, asgi_request, wsgi_request

Fields = list[tuple[str, str]]
Answer = tuple[int, Fields, bytes]

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("driver", ["asgi", "wsgi"]),
    pytest.mark.parametrize(
        "backend", [pytest.param("mem"), pytest.param("redis", marks=pytest.mark.redis)]
    ),
]


class Origin:
    """The application behind the cache: ``routes`` maps a path to a function of the
    request (scheme, fields) giving the answer; every run and its fields are recorded."""

    def __init__(self, routes: dict[str, Callable[[str, dict[str, str]], Answer]]) -> None:
        self.routes = routes
        self.seen: list[tuple[str, dict[str, str]]] = []

    def answer(self, path: str, scheme: str, fields: dict[str, str]) -> Answer:
        self.seen.append((path, fields))
        return self.routes[path](scheme, fields)

    def runs(self, path: str) -> int:
        return sum(1 for seen, _ in self.seen if seen == path)

    def asgi(self) -> Any:
        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            fields = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            fields[":method"] = scope["method"]
            status, headers, body = self.answer(scope["path"], scope["scheme"], fields)
            raw = [(k.encode(), v.encode()) for k, v in headers]
            raw.append((b"content-length", str(len(body)).encode()))
            await send({"type": "http.response.start", "status": status, "headers": raw})
            await send({"type": "http.response.body", "body": body})

        return app

    def wsgi(self) -> Any:
        def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            fields = {
                k[5:].replace("_", "-").lower(): v
                for k, v in environ.items()
                if k.startswith("HTTP_")
            }
            fields[":method"] = environ["REQUEST_METHOD"]
            path, scheme = environ["PATH_INFO"], environ["wsgi.url_scheme"]
            status, headers, body = self.answer(path, scheme, fields)
            start_response(f"{status} X", [*headers, ("Content-Length", str(len(body)))])
            return [body]

        return app


class Client:
    def __init__(self, driver: str, app: Any) -> None:
        self.driver, self.app = driver, app

    async def get(
        self,
        path: str,
        fields: Fields = (),
        *,
        method: str = "GET",
        scheme: str = "http",  # type: ignore[assignment]
    ) -> Response:
        fields = list(fields)
        if not any(name.lower() == "host" for name, _ in fields):
            fields.append(("host", "shop.example"))
        if self.driver == "asgi":
            raw = [(k.lower().encode(), v.encode()) for k, v in fields]
            return await asgi_request(self.app, method, path, headers=raw, scheme=scheme)
        return wsgi_request(self.app, method, path, headers=fields, scheme=scheme)


def _url(backend: str, request: pytest.FixtureRequest) -> str:
    return "mem://" if backend == "mem" else str(request.getfixturevalue("redis_url"))


@asynccontextmanager
async def client(
    driver: str, backend: str, request: pytest.FixtureRequest, origin: Origin,
    rules: list[CacheRule], namespace: str,
) -> AsyncIterator[Client]:  # fmt: skip
    url = "mem://" if backend == "mem" else str(request.getfixturevalue("redis_url"))
    if driver == "asgi":
        async with AsyncInterlock(url, namespace=namespace) as ail:
            yield Client(driver, InterlockMiddleware(origin.asgi(), interlock=ail, cache=rules))
    else:
        with Interlock(url, namespace=namespace) as il:
            yield Client(driver, InterlockWSGIMiddleware(origin.wsgi(), interlock=il, cache=rules))


def text(body: str, *fields: tuple[str, str]) -> Callable[[str, dict[str, str]], Answer]:
    return lambda scheme, request: (200, [("content-type", "text/plain"), *fields], body.encode())


async def test_scheme_and_host_are_in_the_key(
    driver: str, backend: str, request: pytest.FixtureRequest, namespace: str
) -> None:
    """Item 1a (RFC 9111 §2): tenant A's page is never served to tenant B, nor the http
    entry to https (before: the key was path and query only)."""

    def page(scheme: str, fields: dict[str, str]) -> Answer:
        return 200, [("cache-control", "max-age=60")], f"{scheme}://{fields['host']}".encode()

    origin = Origin({"/page": page})
    async with client(driver, backend, request, origin, [CacheRule("/page")], namespace) as c:
        a = await c.get("/page", [("host", "a.example")])
        b = await c.get("/page", [("host", "b.example")])
        secure = await c.get("/page", [("host", "a.example")], scheme="https")
        again = await c.get("/page", [("host", "A.example:80")])
        assert (a.body, b.body, secure.body) == (b"http://a.example", b"http://b.example",
                                                 b"https://a.example")  # fmt: skip
        assert again.body == b"http://a.example" and again.headers["x-cache"] == "HIT"
        assert origin.runs("/page") == 3


async def test_an_untrusted_host_bypasses_the_cache(
    driver: str, backend: str, request: pytest.FixtureRequest, namespace: str
) -> None:
    """Item 1a: with trusted_hosts, a forged Host never reaches (or fills) an entry."""
    origin = Origin({"/page": text("page", ("cache-control", "max-age=60"))})
    rules = [CacheRule("/page", trusted_hosts=["shop.example", "*.shop.example"])]
    async with client(driver, backend, request, origin, rules, namespace) as c:
        for host in ("evil.example", "evil.example", "shop.example:99999"):
            forged = await c.get("/page", [("host", host)])
            assert forged.headers["x-cache"] == "BYPASS"
        assert (await c.get("/page")).headers["x-cache"] == "MISS"
        assert (await c.get("/page")).headers["x-cache"] == "HIT"
        sub = await c.get("/page", [("host", "eu.shop.example")])
        assert sub.headers["x-cache"] == "MISS"
        assert origin.runs("/page") == 5


async def test_a_clients_conditional_or_range_request_never_degrades_caching(
    driver: str, backend: str, request: pytest.FixtureRequest, namespace: str
) -> None:
    """Item 1b (RFC 9111 §4.3.1-§4.3.2, RFC 9110 §14): before, a cold If-None-Match or
    Range reached the app, whose 304/206 could not be stored, so the URL went to "pass"
    and plain GETs bypassed the cache. Now the fill is a full GET and the client is
    answered from the stored response."""

    def doc(scheme: str, fields: dict[str, str]) -> Answer:
        head = [("cache-control", "max-age=60"), ("etag", '"v1"')]
        if fields.get("if-none-match") == '"v1"':
            return 304, head, b""
        if fields.get("range"):
            return 206, [*head, ("content-range", "bytes 0-1/10")], b"01"
        return 200, head, b"0123456789"

    origin = Origin({"/doc": doc, "/file": doc})
    async with client(driver, backend, request, origin, [CacheRule("/doc"), CacheRule("/file")],
                      namespace) as c:  # fmt: skip
        cold = await c.get("/doc", [("if-none-match", '"v1"')])
        assert cold.status == 304 and cold.headers["etag"] == '"v1"'
        plain = await c.get("/doc")
        assert plain.status == 200 and plain.headers["x-cache"] == "HIT"
        assert plain.body == b"0123456789"
        part = await c.get("/file", [("range", "bytes=2-4")])
        assert part.status == 206 and part.body == b"234"
        assert part.headers["content-range"] == "bytes 2-4/10"
        assert part.headers["content-length"] == "3"
        whole = await c.get("/file")
        assert whole.status == 200 and whole.headers["x-cache"] == "HIT"
        beyond = await c.get("/file", [("range", "bytes=20-")])
        assert beyond.status == 416 and beyond.headers["content-range"] == "bytes */10"
        assert origin.runs("/doc") == origin.runs("/file") == 1
        assert all("if-none-match" not in f and "range" not in f for _, f in origin.seen)


EXPIRED = {
    "/max-age-0": [("cache-control", "max-age=0"), ("etag", '"e"')],
    "/past-expires": [("expires", "Thu, 01 Jan 1970 00:00:00 GMT"), ("etag", '"e"')],
    "/s-maxage-0": [("cache-control", "max-age=60, s-maxage=0")],
    "/must-revalidate": [("cache-control", "max-age=0, must-revalidate"), ("etag", '"e"')],
    "/cdn-no-cache": [("cache-control", "max-age=60"), ("cdn-cache-control", "no-cache")],
    "/cdn-private": [("cache-control", "max-age=60"), ("cdn-cache-control", "private")],
    "/no-cache": [("cache-control", "no-cache, max-age=60"), ("etag", '"e"')],
}


async def test_content_the_origin_marked_expired_is_never_served_fresh(
    driver: str, backend: str, request: pytest.FixtureRequest, namespace: str
) -> None:
    """Item 1c (RFC 9111 §4.2, §5.2.2, RFC 9213): before, every one of these was served
    from the cache for the rule's fixed ttl."""
    origin = Origin({path: text(path, *fields) for path, fields in EXPIRED.items()})
    # the rule's stale window applies unless the response forbids stale (§4.2.4)
    allowed = ("/max-age-0", "/past-expires")
    rules = [
        CacheRule(path, ttl=30, stale_ttl=0 if path in allowed else 30, name=f"x{i}")
        for i, path in enumerate(EXPIRED)
    ]
    async with client(driver, backend, request, origin, rules, namespace) as c:
        for path in EXPIRED:
            for _ in range(2):
                response = await c.get(path)
                assert response.status == 200, path
                assert response.headers.get("x-cache") not in ("HIT", "STALE"), path
            assert origin.runs(path) == 2, path


async def test_freshness_comes_from_the_origin(
    driver: str, backend: str, request: pytest.FixtureRequest, namespace: str
) -> None:
    """Item 2 (RFC 9111 §4.2.1, §4.2.3, §5.1): a response without explicit freshness or
    validator is not stored (before: stored for ttl); max-age outlives a shorter rule ttl;
    the origin's Date is kept and its Age counted; override=True keeps the fixed ttl."""
    date = formatdate(usegmt=True)
    origin = Origin({
        "/bare": text("bare"),
        "/long": text("long", ("cache-control", "max-age=3600"), ("date", date), ("age", "100")),
        "/validated": text("validated", ("last-modified", "Thu, 01 Jan 2026 00:00:00 GMT")),
        "/fixed": text("fixed"),
    })  # fmt: skip
    rules = [
        CacheRule("/bare", ttl=30),
        CacheRule("/long", ttl=1),
        CacheRule("/validated", ttl=30),
        CacheRule("/fixed", ttl=30, override=True),
    ]
    async with client(driver, backend, request, origin, rules, namespace) as c:
        for path in ("/bare", "/long", "/validated", "/fixed"):
            await c.get(path)
        assert (await c.get("/bare")).headers["x-cache"] == "BYPASS"
        long = await c.get("/long")
        assert long.headers["x-cache"] == "HIT" and long.headers["date"] == date
        assert 100 <= int(long.headers["age"]) < 200
        assert (await c.get("/validated")).headers["x-cache"] == "HIT"
        fixed = await c.get("/fixed")
        assert fixed.headers["x-cache"] == "HIT" and "date" in fixed.headers
        assert {path: origin.runs(path) for path in origin.routes} == {
            "/bare": 2, "/long": 1, "/validated": 1, "/fixed": 1,
        }  # fmt: skip


async def test_request_directives(
    driver: str, backend: str, request: pytest.FixtureRequest, namespace: str
) -> None:
    """Item 5 (RFC 9111 §5.2.1): only-if-cached answers 504 without running the handler
    when nothing is stored; no-cache and max-age=0 fetch a new response."""
    origin = Origin({"/page": text("page", ("cache-control", "max-age=60"))})
    async with client(driver, backend, request, origin, [CacheRule("/page")], namespace) as c:
        cold = await c.get("/page", [("cache-control", "only-if-cached")])
        assert cold.status == 504 and origin.runs("/page") == 0
        await c.get("/page")
        warm = await c.get("/page", [("cache-control", "only-if-cached")])
        assert warm.status == 200 and warm.headers["x-cache"] == "HIT"
        for directive in ("no-cache", "max-age=0"):
            refreshed = await c.get("/page", [("cache-control", directive)])
            assert refreshed.status == 200 and refreshed.headers["x-cache"] == "MISS"
        assert origin.runs("/page") == 3
        head = await c.get("/page", method="HEAD")
        assert head.status == 200 and head.body == b"" and head.headers["x-cache"] == "HIT"


async def test_stale_entries_are_revalidated_with_a_conditional_request(
    driver: str, backend: str, request: pytest.FixtureRequest, namespace: str
) -> None:
    """Item 3 (RFC 9111 §4.3.1, §4.3.4, §5.2.2.4): a stale entry (or a no-cache one) is
    validated with its ETag; the 304's fields are merged into the stored response, whose
    body is served (before: the key was refetched in full, or never stored)."""
    versions = {"etag": '"v1"', "note": "first"}

    def doc(scheme: str, fields: dict[str, str]) -> Answer:
        head = [("cache-control", "no-cache"), ("etag", versions["etag"]),
                ("x-note", versions["note"])]  # fmt: skip
        if fields.get("if-none-match") == versions["etag"]:
            return 304, head, b""
        return 200, head, b"body " + versions["etag"].encode()

    origin = Origin({"/doc": doc})
    async with client(driver, backend, request, origin, [CacheRule("/doc")], namespace) as c:
        first = await c.get("/doc")
        assert first.headers["x-cache"] == "MISS" and first.body == b'body "v1"'
        versions["note"] = "second"
        again = await c.get("/doc")
        assert again.status == 200 and again.body == b'body "v1"'
        assert again.headers["x-cache"] == "REVALIDATED" and again.headers["x-note"] == "second"
        assert origin.seen[-1][1].get("if-none-match") == '"v1"'
        cond = await c.get("/doc", [("if-none-match", '"v1"')])
        assert cond.status == 304 and cond.headers["x-cache"] == "REVALIDATED"
        versions["etag"] = '"v2"'
        changed = await c.get("/doc")
        assert changed.body == b'body "v2"' and changed.headers["x-cache"] == "MISS"
        assert origin.runs("/doc") == 4


async def test_the_responses_stale_windows(
    driver: str, backend: str, request: pytest.FixtureRequest, namespace: str
) -> None:
    """Item 3 (RFC 5861 §3, §4): the response's own stale-while-revalidate serves stale
    while one background run revalidates; its stale-if-error answers an origin error with
    the stale response; must-revalidate forbids both (before: only the rule's stale_ttl)."""
    state = {"status": 200, "n": 0}

    def page(cc: str) -> Callable[[str, dict[str, str]], Answer]:
        def answer(scheme: str, fields: dict[str, str]) -> Answer:
            state["n"] += 1
            return state["status"], [("cache-control", cc)], f"n={state['n']}".encode()

        return answer

    origin = Origin({
        "/swr": page("max-age=0, stale-while-revalidate=60"),
        "/sie": page("max-age=0, stale-if-error=60"),
        "/strict": page("max-age=0, stale-if-error=60, must-revalidate"),
    })  # fmt: skip
    rules = [CacheRule("/swr"), CacheRule("/sie"), CacheRule("/strict")]
    async with client(driver, backend, request, origin, rules, namespace) as c:
        assert (await c.get("/swr")).body == b"n=1"
        stale = await c.get("/swr")
        assert stale.headers["x-cache"] == "STALE" and stale.body == b"n=1"
        await _until(lambda: origin.runs("/swr") == 2)
        await c.get("/sie")
        await c.get("/strict")
        state["status"] = 503
        rescued = await c.get("/sie")
        assert rescued.status == 200 and rescued.headers["x-cache"] == "STALE"
        failed = await c.get("/strict")
        assert failed.status == 503


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    import anyio

    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.01)


async def test_unsafe_requests_invalidate_the_uri_and_its_locations(
    driver: str, backend: str, request: pytest.FixtureRequest, namespace: str
) -> None:
    """Item 4 (RFC 9111 §4.4): a 2xx/3xx answer to POST/PUT/PATCH/DELETE invalidates every
    stored response of its URI, of a same-origin Location and Content-Location, in every
    process (before: nothing was invalidated until the ttl ran out)."""
    version = {"n": 1}

    def item(scheme: str, fields: dict[str, str]) -> Answer:
        method = fields[":method"]
        if method == "GET":
            return 200, [("cache-control", "max-age=600")], f"v{version['n']}".encode()
        version["n"] += 1
        if method == "POST":
            return (
                201,
                [("location", "/items/2"), ("content-location", "//other.example/items/3")],
                b"",
            )
        return (500 if method == "PATCH" else 204), [], b""

    routes = {f"/items/{i}": item for i in (1, 2, 3)}
    rules = [CacheRule("/items/{id}")]
    async with (
        client(driver, backend, request, Origin(routes), rules, namespace) as c,
        client(driver, backend, request, Origin(routes), rules, namespace) as other,
    ):
        for path in routes:
            await c.get(path)
            assert (await c.get(path)).headers["x-cache"] == "HIT"
        writer = other if backend == "redis" else c  # another process's write, on Redis
        assert (await writer.get("/items/1", method="PATCH")).status == 500  # an error
        assert (await c.get("/items/1")).headers["x-cache"] == "HIT"
        assert (await writer.get("/items/1", method="DELETE")).status == 204
        after = await c.get("/items/1")
        assert after.headers["x-cache"] == "MISS" and after.body == b"v3"
        created = await writer.get("/items/1", method="POST")
        assert created.status == 201
        assert (await c.get("/items/1")).headers["x-cache"] == "MISS"
        assert (await c.get("/items/2")).headers["x-cache"] == "MISS"  # its Location
        assert (await c.get("/items/3")).headers["x-cache"] == "HIT"  # another origin
