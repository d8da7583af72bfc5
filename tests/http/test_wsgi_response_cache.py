"""The response cache of the WSGI middleware on a real Flask app and the real cache."""

from __future__ import annotations

import threading
import time
from typing import Any

from flask import Flask, request

from interlock import CacheRule, Interlock, InterlockWSGIMiddleware
from interlock.testing import LogCapture, metric_value, wsgi_request


def shop(il: Interlock, delay: float = 0.0) -> tuple[Any, dict[str, int]]:
    calls = {"product": 0}
    state = {"version": 1}
    app = Flask(__name__)

    @app.get("/products/<int:pid>")
    def product(pid: int) -> dict[str, Any]:
        calls["product"] += 1
        if delay:
            time.sleep(delay)
        request.environ["interlock"].tag("catalog")
        return {"pid": pid, "v": state["version"]}, {"cache-control": "max-age=30"}

    @app.get("/cookie")
    def cookie() -> Any:
        calls["cookie"] = calls.get("cookie", 0) + 1
        response = app.make_response(("hi", {"cache-control": "max-age=30"}))
        response.set_cookie("sid", "x")
        return response

    rules = [CacheRule("/products/{pid}", ttl=30), CacheRule("/cookie", ttl=30)]
    app.wsgi_app = InterlockWSGIMiddleware(app.wsgi_app, interlock=il, cache=rules)  # type: ignore[method-assign]
    app.config["state"] = state
    return app, calls


def test_wsgi_miss_hit_304_and_bypass(il: Interlock, logs: LogCapture) -> None:
    app, calls = shop(il)
    first = wsgi_request(app, "GET", "/products/1")
    assert first.headers["x-cache"] == "MISS" and first.json() == {"pid": 1, "v": 1}
    second = wsgi_request(app, "GET", "/products/1")
    assert second.headers["x-cache"] == "HIT" and second.body == first.body
    etag = second.headers["etag"]
    cond = wsgi_request(app, "GET", "/products/1", headers=[("If-None-Match", etag)])
    assert cond.status == 304 and cond.body == b""
    auth = wsgi_request(app, "GET", "/products/1", headers=[("Authorization", "Bearer a")])
    assert auth.headers["x-cache"] == "BYPASS"
    assert calls["product"] == 2
    assert [r["interlock.http.route"] for r in logs.requests()] == ["/products/{pid}"] * 4
    assert [r["interlock.cache.result"] for r in logs.requests()] == [
        "miss",
        "hit",
        "hit",
        "bypass",
    ]
    for _ in range(2):
        assert wsgi_request(app, "GET", "/cookie").headers["x-cache"] == "BYPASS"
    assert calls["cookie"] == 2
    assert metric_value(il, "interlock_cache_requests_total", cache="http", result="hit") == 2


def test_wsgi_tag_purge(il: Interlock) -> None:
    app, _calls = shop(il)
    wsgi_request(app, "GET", "/products/2")
    app.config["state"]["version"] = 2
    assert wsgi_request(app, "GET", "/products/2").json()["v"] == 1
    il.cache("http").invalidate_tag("catalog")  # tagged by the handler
    assert wsgi_request(app, "GET", "/products/2").json()["v"] == 2


def test_wsgi_concurrent_identical_requests_coalesce(il: Interlock) -> None:
    app, calls = shop(il, delay=0.2)
    results: list[Any] = []
    threads = [
        threading.Thread(target=lambda: results.append(wsgi_request(app, "GET", "/products/3")))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert calls["product"] == 1
    assert len({r.body for r in results}) == 1 and len(results) == 8


def test_wsgi_degraded_cache_fails_open_and_says_bypass(fresh_redis: Any) -> None:
    """Issue 11 item 14 and a 500 found with it: during an outage the handler's tags made
    the middleware write the entry again, which raised BackendUnavailable (a 500 of ours),
    and the header said MISS where metric and log said bypass. Failed before the fix."""
    url = fresh_redis.url
    fresh_redis.stop()
    with Interlock(url, namespace="wsgi-degraded", socket_timeout=0.2, connect_timeout=0.2) as il:
        app, calls = shop(il)
        words = set()
        for _ in range(4):
            response = wsgi_request(app, "GET", "/products/3")
            assert response.status == 200 and response.json()["pid"] == 3
            words.add(response.headers["x-cache"])
        assert words == {"BYPASS"}, words
        assert calls["product"] == 4
        assert metric_value(il, "interlock_cache_requests_total", result="miss") == 0
