"""One trace per request through the ASGI and WSGI middleware, with the OpenTelemetry
middleware outside ours, inside it, or absent (docs/tracing.md, *One trace*)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware as OtelAsgi
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware as OtelWsgi
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from interlock import (
    AsyncInterlock,
    CacheRule,
    Interlock,
    InterlockMiddleware,
    InterlockWSGIMiddleware,
    LockRule,
)
from interlock.testing import LogCapture, asgi_request, capture_logs, wsgi_request

from .conftest import Spans, hex_ids

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
LOCKS = [LockRule("/items/{item_id}", name="items", key="{item_id}")]
CACHE = [CacheRule("/products/{pid}", ttl=30)]
seen_traceparent: list[str | None] = []
exemplars: list[Any] = []


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    headers = dict(scope["headers"])
    seen_traceparent.append(headers[b"traceparent"].decode() if b"traceparent" in headers else None)
    logging.getLogger("app").info("inside the handler")
    # explicit freshness: the response cache stores what the origin says it may (RFC 9111)
    headers_out = [(b"cache-control", b"max-age=30")]
    await send({"type": "http.response.start", "status": 200, "headers": headers_out})
    await send({"type": "http.response.body", "body": b"hello"})


def wsgi_hello(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    seen_traceparent.append(environ.get("HTTP_TRACEPARENT"))
    logging.getLogger("app").info("inside the handler")
    start_response("200 OK", [("content-type", "text/plain")])
    return [b"hello"]


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    seen_traceparent.clear()
    with capture_logs("", logging.INFO) as capture:
        yield capture


def _server(spans: Spans) -> ReadableSpan:
    (server,) = [s for s in spans.finished if s.kind is SpanKind.SERVER]
    return server


def _ours(spans: Spans) -> list[ReadableSpan]:
    return [s for s in spans.finished if s.name.startswith("interlock.")]


def _app_line(logs: LogCapture) -> dict[str, Any]:
    (line,) = [r for r in logs.records if r.get("log.logger") == "app"]
    return line


def _run_asgi(url: str, namespace: str, spans: Spans, wrap: Any, **request: Any) -> Any:
    async def main() -> Any:
        async with AsyncInterlock(
            url, namespace=namespace, tracer_provider=spans.provider
        ) as ail:
            app = wrap(ail)
            exemplars.clear()
            response = await asgi_request(app, "GET", request.get("path", "/items/1"),
                                          headers=request.get("headers", ()))  # fmt: skip
            assert ail.registry is not None
            for metric in ail.registry.collect():
                exemplars.extend(s.exemplar for s in metric.samples if s.exemplar is not None)
            return response

    return asyncio.run(main())


# -- ASGI ----------------------------------------------------------------------------------


def test_asgi_inside_the_otel_middleware_uses_its_span(
    spans: Spans, url: str, namespace: str, logs: LogCapture
) -> None:
    def wrap(ail: AsyncInterlock) -> Any:
        ours = InterlockMiddleware(hello, interlock=ail, locks=LOCKS)
        return OtelAsgi(ours, tracer_provider=spans.provider, exclude_spans=["receive", "send"])

    response = _run_asgi(url, namespace, spans, wrap)
    assert response.status == 200
    server = _server(spans)
    trace_id, span_id = hex_ids(server)
    for span in _ours(spans):
        assert span.context.trace_id == server.context.trace_id
        assert spans.parent_of(span) is server, span.name
    assert {s.name for s in _ours(spans)} == {"interlock.lock.acquire", "interlock.lock.hold"}
    (line,) = logs.requests()
    assert (line["trace.id"], line["span.id"]) == (trace_id, span_id)
    assert "interlock.http.parent_span_id" not in line
    assert _app_line(logs)["trace.id"] == trace_id
    assert {e.labels["trace_id"] for e in exemplars} == {trace_id}
    assert seen_traceparent == [None]  # nothing added: the OTel middleware started the trace


def test_asgi_outside_the_otel_middleware_starts_one_trace(
    spans: Spans, url: str, namespace: str, logs: LogCapture
) -> None:
    def wrap(ail: AsyncInterlock) -> Any:
        otel = OtelAsgi(hello, tracer_provider=spans.provider, exclude_spans=["receive", "send"])
        return InterlockMiddleware(otel, interlock=ail, locks=LOCKS)

    _run_asgi(url, namespace, spans, wrap)
    (line,) = logs.requests()
    server = _server(spans)
    assert hex_ids(server)[0] == line["trace.id"]
    assert server.parent is not None and format(server.parent.span_id, "016x") == line["span.id"]
    for span in _ours(spans):  # under the request's ids, like the server span
        assert hex_ids(span)[0] == line["trace.id"]
        assert span.parent is not None and format(span.parent.span_id, "016x") == line["span.id"]
    assert seen_traceparent == [f"00-{line['trace.id']}-{line['span.id']}-01"]
    assert {e.labels["trace_id"] for e in exemplars} == {line["trace.id"]}
    assert _app_line(logs)["trace.id"] == line["trace.id"]


def test_asgi_outside_the_otel_middleware_follows_the_callers_traceparent(
    spans: Spans, namespace: str, logs: LogCapture
) -> None:
    def wrap(ail: AsyncInterlock) -> Any:
        otel = OtelAsgi(hello, tracer_provider=spans.provider, exclude_spans=["receive", "send"])
        return InterlockMiddleware(otel, interlock=ail, locks=LOCKS)

    traceparent = f"00-{TRACE}-{PARENT}-01".encode()
    _run_asgi("mem://", namespace, spans, wrap, headers=[(b"traceparent", traceparent)])
    (line,) = logs.requests()
    assert line["trace.id"] == TRACE
    for span in spans.finished:  # ours and the server's: children of the caller's span
        assert hex_ids(span)[0] == TRACE
        assert span.parent is not None and format(span.parent.span_id, "016x") == PARENT
    assert seen_traceparent == [traceparent.decode()]  # passed on untouched


def test_asgi_under_a_span_the_test_opened(spans: Spans, namespace: str, logs: LogCapture) -> None:
    tracer = spans.provider.get_tracer("test")

    async def main() -> None:
        async with AsyncInterlock(
            "mem://", namespace=namespace, tracer_provider=spans.provider
        ) as ail:
            app = InterlockMiddleware(hello, interlock=ail, locks=LOCKS)
            with tracer.start_as_current_span("outer"):
                await asgi_request(app, "GET", "/items/1")

    asyncio.run(main())
    outer = spans.one("outer")
    (line,) = logs.requests()
    assert (line["trace.id"], line["span.id"]) == hex_ids(outer)
    assert all(spans.parent_of(s) is outer for s in _ours(spans))


def test_asgi_response_cache_span_with_its_decision(
    spans: Spans, url: str, namespace: str, logs: LogCapture
) -> None:
    async def main() -> list[str]:
        async with AsyncInterlock(
            url, namespace=namespace, tracer_provider=spans.provider
        ) as ail:
            app = InterlockMiddleware(hello, interlock=ail, cache=CACHE)
            first = await asgi_request(app, "GET", "/products/9")
            second = await asgi_request(app, "GET", "/products/9")
            return [first.headers["x-cache"], second.headers["x-cache"]]

    assert asyncio.run(main()) == ["MISS", "HIT"]
    decisions = spans.named("interlock.http.cache")
    assert [(s.attributes or {})["interlock.http.cache.result"] for s in decisions] == [
        "miss", "hit",
    ]  # fmt: skip
    attrs = dict(decisions[0].attributes or {})
    assert attrs["http.request.method"] == "GET"
    assert attrs["http.route"] == "/products/{pid}"
    assert attrs["interlock.cache.name"] == "http"
    tree = spans.tree()
    assert ("interlock.cache.get_or_load", "interlock.http.cache") in tree
    assert ("interlock.cache.load", "interlock.cache.get_or_load") in tree
    assert len(spans.named("interlock.cache.load")) == 1  # the hit did not run the app


def test_asgi_without_tracing_changes_nothing(namespace: str, logs: LogCapture) -> None:
    async def main() -> None:
        async with AsyncInterlock("mem://", namespace=namespace) as ail:  # no provider
            app = InterlockMiddleware(hello, interlock=ail, locks=LOCKS, cache=CACHE)
            assert (await asgi_request(app, "GET", "/items/1")).status == 200
            assert (await asgi_request(app, "GET", "/products/1")).status == 200

    asyncio.run(main())
    assert seen_traceparent == [None, None]
    assert len(logs.requests()) == 2


# -- WSGI ----------------------------------------------------------------------------------


def test_wsgi_inside_the_otel_middleware_uses_its_span(
    spans: Spans, url: str, namespace: str, logs: LogCapture
) -> None:
    with Interlock(url, namespace=namespace, tracer_provider=spans.provider) as il:
        ours = InterlockWSGIMiddleware(wsgi_hello, interlock=il, locks=LOCKS)
        outer = OtelWsgi(ours, tracer_provider=spans.provider)
        assert wsgi_request(outer, "GET", "/items/1").status == 200
    server = _server(spans)
    (line,) = logs.requests()
    assert (line["trace.id"], line["span.id"]) == hex_ids(server)
    for span in _ours(spans):
        assert spans.parent_of(span) is server, span.name
    assert {s.name for s in _ours(spans)} == {"interlock.lock.acquire", "interlock.lock.hold"}


def test_wsgi_outside_the_otel_middleware_starts_one_trace(
    spans: Spans, url: str, namespace: str, logs: LogCapture
) -> None:
    with Interlock(url, namespace=namespace, tracer_provider=spans.provider) as il:
        otel = OtelWsgi(wsgi_hello, tracer_provider=spans.provider)
        app = InterlockWSGIMiddleware(otel, interlock=il, locks=LOCKS, cache=CACHE)
        wsgi_request(app, "GET", "/items/1")
    (line,) = logs.requests()
    assert {hex_ids(s)[0] for s in spans.finished} == {line["trace.id"]}
    server = _server(spans)
    assert server.parent is not None and format(server.parent.span_id, "016x") == line["span.id"]
    assert _app_line(logs)["trace.id"] == line["trace.id"]
