"""Hostile input, property-based: the middleware never causes a 500, labels stay bounded,
every log line is one valid JSON object."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from interlock import (
    AsyncInterlock,
    Interlock,
    InterlockMiddleware,
    InterlockWSGIMiddleware,
    LockRule,
)
from interlock.metrics import OVERFLOW
from interlock.testing import asgi_request, capture_logs, series, wsgi_request

CAP = 6
METHODS = ["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "get", "BREW", "M-SEARCH"]
methods = st.one_of(
    st.sampled_from(METHODS),
    st.text(st.characters(min_codepoint=33, max_codepoint=0x10FFFF), min_size=1, max_size=40),
)
paths = st.one_of(
    st.sampled_from(["/", "/items/1", "/accounts/2/withdraw", "/mnt/x/y/z", "/dyn/a", "/metrics"]),
    st.text(max_size=300).map(lambda s: "/" + s),
    st.builds(lambda n: "/dyn/" + "x" * n, st.integers(0, 5000)),
)
header_names = st.one_of(
    st.sampled_from([b"x-request-id", b"traceparent", b"user-agent", b"cookie", b"authorization"]),
    st.binary(min_size=1, max_size=40),
)
headers = st.lists(st.tuples(header_names, st.binary(max_size=3000)), max_size=8)
queries = st.binary(max_size=500)


async def item(request: Request) -> PlainTextResponse:
    return PlainTextResponse("item")


async def dynamic(request: Request) -> PlainTextResponse:
    request.scope["interlock"].route = request.scope["path"]  # careless: raw paths as routes
    return PlainTextResponse("dyn")


def _check_lines(lines: list[str]) -> None:
    for line in lines:
        assert "\n" not in line and "\r" not in line
        parsed = json.loads(line)
        assert isinstance(parsed, dict)
        line.encode("utf-8")  # no lone surrogates


def _check_series(source: Any) -> None:
    found = series(source, "interlock_http_requests_total")
    routes = {labels["route"] for labels in found}
    methods_seen = {labels["method"] for labels in found}
    assert len(routes - {OVERFLOW}) <= CAP
    assert methods_seen <= {*METHODS[:7], "_OTHER", OVERFLOW}


def test_asgi_hostile_requests() -> None:
    loop = asyncio.new_event_loop()
    ail = AsyncInterlock("mem://", namespace="hostile-asgi", label_cap=CAP, lock_timeout=0.5)
    app = Starlette(
        routes=[
            Route("/items/{item_id}", item, methods=["GET", "POST"]),
            Route("/accounts/{account_id}/withdraw", item, methods=["POST"]),
            Route("/dyn/{rest:path}", dynamic),
            Mount("/mnt/{tenant}", routes=[Route("/{a}/{b}", item)]),
        ]
    )
    wrapped = InterlockMiddleware(
        app,
        interlock=ail,
        locks=[LockRule("/accounts/{account_id}/withdraw", name="account", key="{account_id}")],
        routes=["/static/{name}"],
    )

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(methods, paths, headers, queries)
    def check(method: str, path: str, raw_headers: list[tuple[bytes, bytes]], query: bytes) -> None:
        with capture_logs("interlock.http") as logs:
            response = loop.run_until_complete(
                asgi_request(wrapped, method, path, query=query, headers=raw_headers)
            )
        assert response.status != 500, response.body[:200]
        assert response.status != 0
        if path != "/metrics" or method not in ("GET", "HEAD"):
            assert len(logs.lines) == 1
            rid = response.headers["x-request-id"]
            assert logs.records[0]["http.request.id"] == rid
            assert 1 <= len(rid) <= 128 and "\n" not in rid
        _check_lines(logs.lines)

    try:
        check()
        _check_series(ail)
    finally:
        loop.run_until_complete(ail.aclose())
        loop.close()


def test_wsgi_hostile_requests() -> None:
    flask = Flask(__name__)

    @flask.route("/items/<int:item_id>", methods=["GET", "POST"])
    def flask_item(item_id: int) -> str:
        return "item"

    @flask.route("/dyn/<path:rest>")
    def flask_dynamic(rest: str) -> str:
        from flask import request

        request.environ["interlock"].route = request.path
        return "dyn"

    with Interlock("mem://", namespace="hostile-wsgi", label_cap=CAP) as il:
        flask.wsgi_app = InterlockWSGIMiddleware(flask.wsgi_app, interlock=il)  # type: ignore[method-assign]

        @settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
        @given(
            st.sampled_from(METHODS),
            paths,
            st.lists(
                st.tuples(
                    st.sampled_from(
                        ["X-Request-ID", "Traceparent", "User-Agent", "Cookie", "X-Any"]
                    ),
                    st.text(
                        st.characters(max_codepoint=255, exclude_characters="\r\n"), max_size=2000
                    ),
                ),
                max_size=6,
            ),
            st.text(st.characters(max_codepoint=255), max_size=300),
        )
        def check(method: str, path: str, env_headers: list[tuple[str, str]], query: str) -> None:
            with capture_logs("interlock.http") as logs:
                response = wsgi_request(flask, method, path, query=query, headers=env_headers)
            assert response.status != 500
            if path != "/metrics" or method not in ("GET", "HEAD"):
                assert len(logs.lines) == 1
            _check_lines(logs.lines)

        check()
        _check_series(il)
