"""Interlock's own exceptions leaving a handler answer their documented problem, not a 500.

A handler that calls ``tools.lock(...)`` while Redis is down, or whose own transaction
ends in doubt, got a 500 ``internal-error`` (Flask's and Django's own 500 page) although
interlock documents what each of these means for the client: ``BackendUnavailable`` is a
503 ``backend-unavailable`` (locks fail closed), ``TransactionInDoubt`` a 503
``transaction-in-doubt`` (issue 11, general rule and item 5). The mapping is one function,
``interlock.http._problems.escaped_problem``; the request line carries the real cause
(``error.type``, ``error.message``) at WARNING with the mapped status. Foreign exceptions
still answer 500, and a response that already started is not answered twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import flask
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route

from interlock import AsyncInterlock, Interlock, InterlockMiddleware, InterlockWSGIMiddleware
from interlock.errors import (
    BackendUnavailable,
    ConfigError,
    DurabilityError,
    FenceRejected,
    HeuristicOutcome,
    LockAlreadyHeld,
    LockLost,
    LockTimeout,
    ScriptError,
    SerializationError,
    TransactionAborted,
    TransactionBlocked,
    TransactionError,
    TransactionInDoubt,
    TransactionTimeout,
)
from interlock.http._problems import escaped_problem
from interlock.testing import LogCapture, asgi_request, metric_value, wsgi_request

PROBLEM = "urn:interlock:problem:"
FAST = {"connect_timeout": 0.2, "socket_timeout": 0.2}


# -- the mapping ---------------------------------------------------------------------------

MAPPED: list[tuple[BaseException, int, str, bool]] = [  # exception, status, type, Retry-After
    (BackendUnavailable("redis down"), 503, "backend-unavailable", True),
    (ScriptError("unknown code 9"), 503, "backend-unavailable", True),
    (LockTimeout("audit", "k", 2.0, {"host": "h", "pid": 1}), 423, "lock-timeout", True),
    (LockLost("lease expired"), 503, "lock-lost", True),
    (FenceRejected("stale fence"), 409, "fence-rejected", False),
    (TransactionInDoubt("log down", xid="x1"), 503, "transaction-in-doubt", False),
    (TransactionAborted("no", reason="vote_no", xid="x1"), 409, "transaction-aborted", False),
    (TransactionAborted("failed", xid="x1"), 503, "transaction-aborted", True),
    (TransactionTimeout("late", reason="timeout", xid="x1"), 503, "transaction-aborted", True),
    (TransactionBlocked("row", resource="postgres", xid="x1"), 503, "transaction-blocked", True),
    (DurabilityError("no AOF"), 503, "transaction-aborted", False),
    (HeuristicOutcome("undone by hand"), 500, "transaction-heuristic", False),
]
FOREIGN: list[BaseException] = [
    RuntimeError("boom"),
    ConfigError("bad option"),  # a programming error: a crash, as before
    LockAlreadyHeld("re-acquired"),
    SerializationError("cannot encode"),
    TransactionError("another name"),
    KeyboardInterrupt(),
]


@pytest.mark.parametrize(("exc", "status", "kind", "retry"), MAPPED, ids=lambda v: repr(v)[:30])
def test_each_interlock_error_has_one_problem(
    exc: BaseException, status: int, kind: str, retry: bool
) -> None:
    problem = escaped_problem(exc, "rid-1")
    assert problem is not None
    headers = dict(problem.headers)
    assert problem.status == status
    assert headers["content-type"] == "application/problem+json"
    assert ("retry-after" in headers) is retry
    document = json.loads(problem.body)
    assert (document["type"], document["status"]) == (PROBLEM + kind, status)
    assert document["request_id"] == "rid-1"
    if isinstance(exc, (TransactionAborted, TransactionInDoubt)):
        assert document["xid"] == "x1"


@pytest.mark.parametrize("exc", FOREIGN, ids=lambda v: type(v).__name__)
def test_other_errors_stay_a_crash(exc: BaseException) -> None:
    assert escaped_problem(exc, "rid-1") is None


def test_lock_timeout_is_the_lock_rules_problem() -> None:
    problem = escaped_problem(LockTimeout("audit", "k", 2.0, {}), "rid-1")
    assert problem is not None
    assert json.loads(problem.body)["lock"] == "audit"


@pytest.mark.anyio
async def test_a_handlers_lock_timeout_is_the_lock_rules_423(namespace: str,
                                                             logs: LogCapture) -> None:  # fmt: skip
    async def audit(request: Request) -> PlainTextResponse:
        async with request.scope["interlock"].lock("audit", "k", timeout=0.05):
            return PlainTextResponse("audited")

    async with AsyncInterlock("mem://", namespace=namespace, recovery=False) as ail:
        app = Starlette(routes=[Route("/audit", audit)])
        app.add_middleware(InterlockMiddleware, interlock=ail)
        async with ail.lock("audit", "k"):  # held by another task
            response = await asyncio.create_task(asgi_request(app, "GET", "/audit"))
    assert response.status == 423 and response.headers["retry-after"] == "1"
    assert response.json()["type"] == PROBLEM + "lock-timeout"
    assert response.json()["lock"] == "audit"
    (line,) = logs.requests()
    assert (line["http.response.status_code"], line["log.level"]) == (423, "warning")
    assert line["error.type"] == "LockTimeout"


@pytest.mark.anyio
async def test_starlette_wrapped_by_hand_keeps_its_own_500(namespace: str,
                                                           logs: LogCapture) -> None:  # fmt: skip
    """The documented limit: outside ``ServerErrorMiddleware`` the 500 is sent before the
    middleware sees the exception (docs/middleware.md: use ``app.add_middleware``)."""

    async def audit(request: Request) -> PlainTextResponse:
        raise BackendUnavailable("Redis unavailable during lock_acquire")

    async with AsyncInterlock("mem://", namespace=namespace, recovery=False) as ail:
        app = InterlockMiddleware(Starlette(routes=[Route("/audit", audit)]), interlock=ail)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get("/audit")
    assert response.status_code == 500 and response.text == "Internal Server Error"
    (line,) = logs.requests()
    assert (line["http.response.status_code"], line["log.level"]) == (500, "error")
    assert line["error.type"] == "BackendUnavailable"  # the cause is logged all the same


# -- Redis down: BackendUnavailable from a handler's own lock ---------------------------------


@pytest.fixture
def down(redis_factory: Any) -> Any:
    """A throwaway Redis the test stops once the facade is warm."""
    return redis_factory()


def _check_unavailable(status: int, headers: Any, body: bytes, logs: LogCapture) -> None:
    assert status == 503, body
    assert headers["content-type"] == "application/problem+json"
    assert int(headers["retry-after"]) >= 1
    rid = headers["x-request-id"]
    problem = json.loads(body)
    assert problem["type"] == PROBLEM + "backend-unavailable"
    assert problem["request_id"] == rid
    (line,) = [r for r in logs.requests() if r["http.request.id"] == rid]
    assert line["http.response.status_code"] == 503
    assert line["log.level"] == "warning"
    assert line["error.type"] == "BackendUnavailable"
    assert line["error.message"]


@pytest.mark.anyio
async def test_starlette_handler_backend_unavailable_is_503(down: Any, logs: LogCapture,
                                                            namespace: str) -> None:  # fmt: skip
    async def audit(request: Request) -> PlainTextResponse:
        async with request.scope["interlock"].lock("audit", "k"):
            return PlainTextResponse("audited")

    async with AsyncInterlock(down.url, namespace=namespace, recovery=False, **FAST) as ail:
        app = Starlette(routes=[Route("/audit", audit)])
        app.add_middleware(InterlockMiddleware, interlock=ail)
        transport = httpx.ASGITransport(app=app)  # raises what reaches it: nothing may
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/audit")).status_code == 200  # warm
            down.stop()
            response = await client.get("/audit")
        served = metric_value(ail, "interlock_http_requests_total", status="503")
    _check_unavailable(response.status_code, response.headers, response.content, logs)
    assert served == 1


def test_flask_handler_backend_unavailable_is_503(down: Any, logs: LogCapture,
                                                  namespace: str) -> None:  # fmt: skip
    app = flask.Flask("escaped")
    app.testing = False  # Flask answers its own 500, as in production

    @app.get("/audit")
    def audit() -> str:
        with flask.request.environ["interlock"].lock("audit", "k"):
            return "audited"

    with Interlock(down.url, namespace=namespace, recovery=False, **FAST) as il:
        app.wsgi_app = InterlockWSGIMiddleware(app.wsgi_app, interlock=il)  # type: ignore[method-assign]
        assert wsgi_request(app, "GET", "/audit").status == 200
        down.stop()
        response = wsgi_request(app, "GET", "/audit")
    _check_unavailable(response.status, response.headers, response.body, logs)


@pytest.fixture
def django_app() -> None:
    from _http_django_setup import configure

    configure()


@pytest.mark.anyio
async def test_django_asgi_view_backend_unavailable_is_503(
    django_app: None, down: Any, logs: LogCapture, namespace: str
) -> None:
    from django.core.asgi import get_asgi_application

    async with AsyncInterlock(down.url, namespace=namespace, recovery=False, **FAST) as ail:
        app = InterlockMiddleware(get_asgi_application(), interlock=ail)
        assert (await asgi_request(app, "GET", "/audit")).status == 200
        down.stop()
        response = await asgi_request(app, "GET", "/audit")
    _check_unavailable(response.status, response.headers, response.body, logs)


def test_django_wsgi_view_backend_unavailable_is_503(
    django_app: None, down: Any, logs: LogCapture, namespace: str
) -> None:
    from django.core.wsgi import get_wsgi_application

    with Interlock(down.url, namespace=namespace, recovery=False, **FAST) as il:
        app = InterlockWSGIMiddleware(get_wsgi_application(), interlock=il)
        assert wsgi_request(app, "GET", "/audit").status == 200
        down.stop()
        response = wsgi_request(app, "GET", "/audit")
    _check_unavailable(response.status, response.headers, response.body, logs)


# -- the decision log lost after prepare: TransactionInDoubt from the handler's transaction ---


class _Branch:
    """A participant that votes yes and keeps nothing (the decision log is what fails)."""

    async def prepare(self, xid: str) -> bool:
        return True

    async def commit(self, xid: str) -> None:
        pass

    async def abort(self, xid: str) -> None:
        pass


class _Once(logging.Handler):
    def __init__(self, action: str, callback: Any) -> None:
        super().__init__(logging.DEBUG)
        self.action, self.callback = action, callback

    def emit(self, record: logging.LogRecord) -> None:
        if self.callback is not None and getattr(record, "event.action", None) == self.action:
            callback, self.callback = self.callback, None
            callback()


@contextmanager
def _on_event(action: str, callback: Any) -> Iterator[None]:
    logger = logging.getLogger("interlock.txn")
    handler, level = _Once(action, callback), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.mark.anyio
async def test_starlette_handler_transaction_in_doubt_is_503(down: Any, logs: LogCapture,
                                                             namespace: str) -> None:  # fmt: skip
    """Redis (the decision log) is killed once every branch prepared: the handler's own
    transaction raises ``TransactionInDoubt``; the client learns the outcome is unknown."""

    async def pay(request: Request) -> PlainTextResponse:
        ail = request.scope["interlock"].interlock
        async with ail.transaction("pay", timeout=2.0) as tx:
            tx.enlist(_Branch(), resource="a")
            tx.enlist(_Branch(), resource="b")
        return PlainTextResponse("paid")

    options = {**FAST, "durability": "relaxed"}
    async with AsyncInterlock(down.url, namespace=namespace, recovery=False, **options) as ail:
        app = Starlette(routes=[Route("/pay", pay, methods=["POST"])])
        app.add_middleware(InterlockMiddleware, interlock=ail)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            with _on_event("txn-prepared", down.kill):
                response = await client.post("/pay")
    assert response.status_code == 503, response.text
    assert "retry-after" not in response.headers  # check the outcome before retrying
    problem = response.json()
    assert problem["type"] == PROBLEM + "transaction-in-doubt"
    assert problem["xid"]
    (line,) = logs.requests()
    assert line["http.response.status_code"] == 503
    assert line["log.level"] == "warning"
    assert line["error.type"] == "TransactionInDoubt"


# -- a response that started is not answered again -------------------------------------------


@pytest.mark.anyio
async def test_a_started_stream_is_not_answered_again(namespace: str, logs: LogCapture) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"first "
        raise BackendUnavailable("redis went away mid-stream")

    async def stream(request: Request) -> StreamingResponse:
        return StreamingResponse(chunks())

    async with AsyncInterlock("mem://", namespace=namespace, recovery=False) as ail:
        app = Starlette(routes=[Route("/stream", stream)])
        app.add_middleware(InterlockMiddleware, interlock=ail)
        sent: list[dict[str, Any]] = []
        scope = {"type": "http", "method": "GET", "path": "/stream", "headers": [],
                 "query_string": b"", "root_path": ""}  # fmt: skip

        requested = False

        async def receive() -> dict[str, Any]:
            nonlocal requested
            if requested:  # the client stays: only the stream's failure ends the request
                await anyio.Event().wait()
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        with pytest.raises(BackendUnavailable):  # re-raised: the server closes the stream
            await app(scope, receive, send)
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert [m["status"] for m in starts] == [200]
    (line,) = logs.requests()
    assert line["http.response.status_code"] == 200
    assert line["log.level"] == "error"
    assert line["error.type"] == "BackendUnavailable"
