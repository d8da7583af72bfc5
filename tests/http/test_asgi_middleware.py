"""The ASGI middleware driven in-process over raw ASGI messages."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest

from interlock import AsyncInterlock, InterlockMiddleware
from interlock.asgi import metrics_app
from interlock.testing import LogCapture, asgi_request, metric_value

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    logging.getLogger("app").info("inside the handler")
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": b"hello"})


@pytest.mark.anyio
async def test_counts_times_and_logs_a_request(
    make_ail: Callable[..., AsyncInterlock], logs: LogCapture
) -> None:
    async with make_ail() as ail:
        app = InterlockMiddleware(hello, interlock=ail, routes=["/items/{item_id}"])
        traceparent = f"00-{TRACE}-{PARENT}-01".encode()
        response = await asgi_request(
            app,
            "GET",
            "/items/42",
            query=b"q=1&token=secret",
            headers=[(b"user-agent", b"pytest"), (b"traceparent", traceparent)],
        )
        assert response.status == 200 and response.body == b"hello"
        rid = response.headers["x-request-id"]
        assert len(rid) == 32
        labels = {"method": "GET", "route": "/items/{item_id}", "status": "200"}
        assert metric_value(ail, "interlock_http_requests_total", **labels) == 1
        assert (
            metric_value(
                ail,
                "interlock_http_request_duration_seconds_count",
                method="GET",
                route="/items/{item_id}",
            )
            == 1
        )
        assert metric_value(ail, "interlock_http_requests_in_progress", method="GET") == 0

        [line] = logs.requests()
        assert line["interlock.http.route"] == "/items/{item_id}"
        assert line["url.path"] == "/items/42"
        assert line["url.query"] == "q=1&token=[REDACTED]"
        assert line["http.response.status_code"] == 200
        assert line["http.request.id"] == rid
        assert line["trace.id"] == TRACE
        assert line["interlock.http.parent_span_id"] == PARENT
        assert len(line["span.id"]) == 16 and line["span.id"] != PARENT
        assert line["client.ip"] == "127.0.0.1"
        assert line["user_agent.original"] == "pytest"
        assert line["event.duration"] > 0
        assert line["message"] == "GET /items/42 200"
        # the application's own line carries the same ids
        [inner] = [r for r in logs.records if r["log.logger"] == "app"]
        assert inner["http.request.id"] == rid and inner["trace.id"] == TRACE


@pytest.mark.anyio
async def test_request_id_is_reused_when_well_formed(
    make_ail: Callable[..., AsyncInterlock],
) -> None:
    async with make_ail() as ail:
        app = InterlockMiddleware(hello, interlock=ail)
        good = await asgi_request(app, headers=[(b"x-request-id", b"req-1:abc")])
        assert good.headers["x-request-id"] == "req-1:abc"
        bad = await asgi_request(app, headers=[(b"x-request-id", b"evil\r\nvalue")])
        assert bad.headers["x-request-id"] != "evil\r\nvalue"
        assert len(bad.headers["x-request-id"]) == 32
        untrusting = InterlockMiddleware(hello, interlock=ail, trust_request_id=False)
        fresh = await asgi_request(untrusting, headers=[(b"x-request-id", b"req-1")])
        assert fresh.headers["x-request-id"] != "req-1"


@pytest.mark.anyio
async def test_an_existing_request_id_header_is_not_duplicated(
    make_ail: Callable[..., AsyncInterlock],
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(
            {"type": "http.response.start", "status": 204, "headers": [(b"X-Request-ID", b"mine")]}
        )
        await send({"type": "http.response.body", "body": b""})

    async with make_ail() as ail:
        response = await asgi_request(InterlockMiddleware(app, interlock=ail))
        assert [v for k, v in response.raw_headers if k.lower() == b"x-request-id"] == [b"mine"]


@pytest.mark.anyio
async def test_non_http_scopes_pass_straight_through(
    make_ail: Callable[..., AsyncInterlock],
) -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])
        assert "interlock" not in scope
        await send({"type": f"{scope['type']}.done"})

    async def main() -> None:
        async with make_ail() as ail:
            wrapped = InterlockMiddleware(app, interlock=ail)
            sent: list[Any] = []

            async def send(message: Any) -> None:
                sent.append(message)

            async def receive() -> Any:
                return {}

            await wrapped({"type": "lifespan"}, receive, send)
            await wrapped({"type": "websocket", "path": "/metrics", "headers": []}, receive, send)
            assert seen == ["lifespan", "websocket"]
            assert [m["type"] for m in sent] == ["lifespan.done", "websocket.done"]
            assert metric_value(ail, "interlock_http_requests_total") == 0

    await main()


@pytest.mark.anyio
async def test_metrics_endpoint_text_and_openmetrics_with_exemplars(
    make_ail: Callable[..., AsyncInterlock], logs: LogCapture
) -> None:
    async with make_ail() as ail:
        app = InterlockMiddleware(hello, interlock=ail, routes=["/"])
        await asgi_request(app, headers=[(b"traceparent", f"00-{TRACE}-{PARENT}-01".encode())])
        text = await asgi_request(app, "GET", "/metrics")
        assert text.status == 200
        assert text.headers["content-type"].startswith("text/plain")
        assert (
            b'interlock_http_requests_total{method="GET",route="/",status="200"} 1.0'
            in text.body
        )
        om = await asgi_request(
            app,
            "GET",
            "/metrics",
            headers=[(b"accept", b"application/openmetrics-text; version=1.0.0")],
        )
        assert om.headers["content-type"].startswith("application/openmetrics-text")
        assert f'# {{trace_id="{TRACE}"}}'.encode() in om.body
        head = await asgi_request(app, "HEAD", "/metrics")
        assert head.status == 200 and head.body == b""
        # the scrape itself is neither counted nor logged
        assert metric_value(ail, "interlock_http_requests_total") == 1
        assert len(logs.requests()) == 1
        # POST /metrics is the application's business
        assert (await asgi_request(app, "POST", "/metrics")).body == b"hello"

        off = InterlockMiddleware(hello, interlock=ail, metrics_path=None)
        assert (await asgi_request(off, "GET", "/metrics")).body == b"hello"
        moved = InterlockMiddleware(hello, interlock=ail, metrics_path="/-/metrics")
        assert b"interlock_http" in (await asgi_request(moved, "GET", "/-/metrics")).body
        separate = await asgi_request(metrics_app(ail), "GET", "/anything")
        assert b"interlock_http_requests_total" in separate.body


@pytest.mark.anyio
async def test_metrics_endpoint_honours_the_root_path(
    make_ail: Callable[..., AsyncInterlock],
) -> None:
    async with make_ail() as ail:
        app = InterlockMiddleware(hello, interlock=ail)
        response = await asgi_request(app, "GET", "/metrics", root_path="/api")
        assert b"interlock_http_requests_total" in response.body


@pytest.mark.anyio
async def test_exception_before_the_response_counts_500_logs_and_reraises(
    make_ail: Callable[..., AsyncInterlock], logs: LogCapture
) -> None:
    async def boom(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("kaput")

    async with make_ail() as ail:
        app = InterlockMiddleware(boom, interlock=ail, routes=["/x"])
        with pytest.raises(RuntimeError, match="kaput"):
            await asgi_request(app, "POST", "/x")
        assert metric_value(ail, "interlock_http_requests_total", status="500", route="/x") == 1
        assert metric_value(ail, "interlock_http_requests_in_progress") == 0
        [line] = logs.requests()
        assert line["log.level"] == "error"
        assert line["error.type"] == "RuntimeError" and line["error.message"] == "kaput"
        assert line["http.response.status_code"] == 500
        assert line["event.outcome"] == "failure"


@pytest.mark.anyio
async def test_exception_after_the_response_started_keeps_the_sent_status(
    make_ail: Callable[..., AsyncInterlock], logs: LogCapture
) -> None:
    async def half(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise ValueError("mid-stream")

    async with make_ail() as ail:
        with pytest.raises(ValueError, match="mid-stream"):
            await asgi_request(InterlockMiddleware(half, interlock=ail), "GET", "/s")
        [line] = logs.requests()
        assert line["http.response.status_code"] == 200
        assert line["error.type"] == "ValueError"


@pytest.mark.anyio
async def test_client_disconnect_before_the_response_is_a_499_logged_once(
    make_ail: Callable[..., AsyncInterlock], logs: LogCapture
) -> None:
    async def waits_for_disconnect(scope: Any, receive: Any, send: Any) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass  # a handler that gives up when the client leaves

    async def main() -> None:
        async with make_ail() as ail:
            app = InterlockMiddleware(waits_for_disconnect, interlock=ail)
            messages = iter(
                [
                    {"type": "http.request", "body": b"", "more_body": True},
                    {"type": "http.disconnect"},
                ]
            )

            async def receive() -> Any:
                return next(messages)

            async def send(message: Any) -> None:
                raise AssertionError("nothing is sent")

            scope = {
                "type": "http",
                "method": "GET",
                "path": "/slow",
                "headers": [],
                "query_string": b"",
            }
            await app(scope, receive, send)
            [line] = logs.requests()
            assert line["http.response.status_code"] == 499
            assert line["interlock.http.client_disconnected"] is True
            assert metric_value(ail, "interlock_http_requests_total", status="499") == 1

    await main()


@pytest.mark.anyio
async def test_cancellation_mid_request_still_finishes_once(
    make_ail: Callable[..., AsyncInterlock], logs: LogCapture
) -> None:
    started = asyncio.Event

    entered = started()

    async def forever(scope: Any, receive: Any, send: Any) -> None:
        entered.set()
        await asyncio.sleep(3600)

    async with make_ail() as ail:
        app = InterlockMiddleware(forever, interlock=ail)
        task = asyncio.create_task(asgi_request(app, "GET", "/hang"))
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        [line] = logs.requests()
        assert line["error.type"] == "CancelledError"
        assert metric_value(ail, "interlock_http_requests_in_progress") == 0


@pytest.mark.anyio
async def test_handlers_find_request_tools_in_the_scope(
    make_ail: Callable[..., AsyncInterlock], logs: LogCapture
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        tools = scope["interlock"]
        tools.route = "/custom/{thing}"
        async with tools.lock("inner", "k1") as lease:
            info = await tools.interlock.lock_info("inner", "k1")
        body = json.dumps(
            {
                "rid": tools.request_id,
                "tid": tools.trace_id,
                "holder": info.request_id,
                "fence": lease.fence,
            }
        ).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    async with make_ail() as ail:
        response = await asgi_request(
            InterlockMiddleware(app, interlock=ail), "GET", "/custom/1"
        )
        data = response.json()
        assert data["rid"] == data["holder"] == response.headers["x-request-id"]
        [line] = logs.requests()
        assert line["interlock.http.route"] == "/custom/{thing}"
        assert line["interlock.lock.name"] == "inner"
        assert line["interlock.lock.fence"] == data["fence"]
        assert "interlock.lock.wait_ms" in line


@pytest.mark.anyio
async def test_no_per_request_state_on_the_middleware(
    make_ail: Callable[..., AsyncInterlock],
) -> None:
    async def slow(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(0.01)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["interlock"].request_id.encode()})

    async with make_ail() as ail:
        app = InterlockMiddleware(slow, interlock=ail)
        before = dict(vars(app))
        responses = await asyncio.gather(
            *(asgi_request(app, "GET", f"/{i}") for i in range(20))
        )
        assert all(r.body.decode() == r.headers["x-request-id"] for r in responses)
        assert len({r.body for r in responses}) == 20
        assert vars(app).keys() == before.keys()


def test_the_facade_must_be_async() -> None:
    from interlock import Interlock

    with pytest.raises(TypeError, match="AsyncInterlock"):
        InterlockMiddleware(hello, interlock=Interlock("mem://"))  # type: ignore[arg-type]


def test_importing_interlock_imports_no_web_framework() -> None:
    import subprocess
    import sys

    code = (
        "import sys, interlock, interlock.asgi, interlock.wsgi, interlock.logs;"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('starlette', 'fastapi', 'flask', 'django', 'werkzeug', 'uvicorn', 'httpx')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
