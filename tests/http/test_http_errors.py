"""A crash is answered with a 500 that carries ``X-Request-ID``, and logged with it.

Added the documented way (``app.add_middleware``), the ASGI middleware sits inside
Starlette's ``ServerErrorMiddleware``, whose 500 never passed through it; a WSGI app that
raises leaves the 500 to the server. Both now answer the problem themselves (issue 11,
item 4).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from flask import Flask
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from interlock import AsyncInterlock, Interlock, InterlockMiddleware, InterlockWSGIMiddleware
from interlock.testing import LogCapture, metric_value, wsgi_request


def crash() -> None:
    raise RuntimeError("the handler crashed")


def _assert_problem(response: Any, logs: LogCapture, request_id: str | None = None) -> None:
    headers = response.headers
    assert response.status_code == 500
    rid = headers["x-request-id"]
    assert request_id is None or rid == request_id
    assert headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "urn:interlock:problem:internal-error"
    assert problem["status"] == 500 and problem["request_id"] == rid
    (line,) = [r for r in logs.requests() if r["http.request.id"] == rid]
    assert line["log.level"] == "error" and line["http.response.status_code"] == 500
    assert line["error.type"] == "RuntimeError"
    assert line["error.message"] == "the handler crashed"
    assert "in crash" in line["error.stack_trace"]  # the traceback, with the request id


async def _get(app: Any, path: str, **headers: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.get(path, headers=headers)


def starlette_app() -> Starlette:
    async def boom(request: Request) -> PlainTextResponse:
        crash()
        return PlainTextResponse("never")

    return Starlette(routes=[Route("/boom", boom)])


def fastapi_app() -> FastAPI:
    app = FastAPI()

    @app.get("/boom")
    async def boom() -> str:
        crash()
        return "never"

    return app


@pytest.mark.anyio
@pytest.mark.parametrize("make", [starlette_app, fastapi_app], ids=["starlette", "fastapi"])
async def test_asgi_crash_500_carries_the_request_id(
    make: Callable[[], Any], make_ail: Callable[..., AsyncInterlock], logs: LogCapture
) -> None:
    async with make_ail() as ail:
        app = make()
        app.add_middleware(InterlockMiddleware, interlock=ail)  # inside ServerErrorMiddleware
        _assert_problem(await _get(app, "/boom"), logs)
        echoed = await _get(app, "/boom", **{"x-request-id": "crash-1"})
        _assert_problem(echoed, logs, "crash-1")
        assert metric_value(ail, "interlock_http_requests_total", status="500") == 2
        # the exception still reaches the server (and a test client that asks for it)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            with pytest.raises(RuntimeError, match="the handler crashed"):
                await client.get("/boom")


@pytest.mark.anyio
async def test_asgi_wrapped_by_hand_keeps_starlettes_500_and_adds_the_id(
    make_ail: Callable[..., AsyncInterlock], logs: LogCapture
) -> None:
    async with make_ail() as ail:
        app = InterlockMiddleware(starlette_app(), interlock=ail)  # outside: sees the 500
        response = await _get(app, "/boom")
        assert response.status_code == 500 and response.text == "Internal Server Error"
        rid = response.headers["x-request-id"]
        (line,) = logs.requests()
        assert line["http.request.id"] == rid and line["error.type"] == "RuntimeError"


@pytest.mark.anyio
async def test_asgi_app_error_handlers_and_debug_pages_are_left_alone(
    make_ail: Callable[..., AsyncInterlock], logs: LogCapture
) -> None:
    async def on_error(request: Request, exc: Exception) -> PlainTextResponse:
        tools = request.scope["interlock"]  # the handler may echo the id itself
        return PlainTextResponse("custom", 500, headers={"x-request-id": tools.request_id})

    async with make_ail() as ail:
        app = starlette_app()
        app.add_exception_handler(Exception, on_error)
        app.add_middleware(InterlockMiddleware, interlock=ail)
        response = await _get(app, "/boom")
        assert response.status_code == 500 and response.text == "custom"
        assert response.headers["x-request-id"] == logs.requests()[0]["http.request.id"]
        debug = starlette_app()
        debug.debug = True
        debug.add_middleware(InterlockMiddleware, interlock=ail)
        page = await _get(debug, "/boom")
        assert page.status_code == 500 and "RuntimeError" in page.text  # the traceback page


# -- WSGI --------------------------------------------------------------------------------------


def _raw_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    crash()
    return []


def _lazy_app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
    crash()  # a generator: runs when the server iterates, still before start_response
    yield b""


class _Wsgi:
    def __init__(self, response: Any) -> None:
        self.status_code = response.status
        self.headers = response.headers
        self.json = response.json


@pytest.mark.parametrize("app", [_raw_app, _lazy_app], ids=["raises", "generator-raises"])
def test_wsgi_crash_500_carries_the_request_id(app: Any, il: Interlock, logs: LogCapture) -> None:
    wrapped = InterlockWSGIMiddleware(app, interlock=il)
    _assert_problem(_Wsgi(wsgi_request(wrapped, "GET", "/boom")), logs)
    echoed = wsgi_request(wrapped, "GET", "/boom", headers=[("X-Request-ID", "crash-2")])
    _assert_problem(_Wsgi(echoed), logs, "crash-2")


def test_flask_propagated_exception_gets_the_problem(il: Interlock, logs: LogCapture) -> None:
    app = Flask(__name__)
    app.config["PROPAGATE_EXCEPTIONS"] = True  # as in testing and debug mode

    @app.get("/boom")
    def boom() -> str:
        crash()
        return "never"

    app.wsgi_app = InterlockWSGIMiddleware(app.wsgi_app, interlock=il)  # type: ignore[method-assign]
    _assert_problem(_Wsgi(wsgi_request(app, "GET", "/boom")), logs)
    # Flask's own 500 (exceptions not propagated) passes through and gets the id as well
    app.config["PROPAGATE_EXCEPTIONS"] = False
    page = wsgi_request(app, "GET", "/boom")
    assert (
        page.status == 500
        and page.headers["x-request-id"] == logs.requests()[-1]["http.request.id"]
    )


def test_wsgi_crash_reaches_the_werkzeug_debugger(il: Interlock, logs: LogCapture) -> None:
    wrapped = InterlockWSGIMiddleware(_raw_app, interlock=il)
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/boom",
        "wsgi.input": io.BytesIO(b""),
        "werkzeug.debug.preserve_context": lambda context: None,  # DebuggedApplication's
    }
    with pytest.raises(RuntimeError, match="the handler crashed"):
        wrapped(environ, lambda status, headers, exc_info=None: None)
    (line,) = logs.requests()
    assert line["http.response.status_code"] == 500 and line["error.type"] == "RuntimeError"
