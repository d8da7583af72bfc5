"""A request blocked behind someone else's prepared branch answers 503 ``transaction-blocked``
with ``Retry-After`` within its transaction's timeout, under ASGI (Starlette) and WSGI
(Flask), on PostgreSQL and MariaDB (issue 11 item 5: it hung for the server's lock wait,
then answered 500)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import flask
import httpx
import pytest
from _http_txn_support import txn_line
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from _blocked import SERVER_WAIT, Stock
from interlock import AsyncInterlock, Interlock, InterlockMiddleware, InterlockWSGIMiddleware
from interlock.testing import LogCapture, asgi_request, metric_value, wsgi_request

pytestmark = [pytest.mark.postgres, pytest.mark.mysql]
TIMEOUT = 2.0
PROBLEM = "urn:interlock:problem:transaction-blocked"


def _check(response: Any, problem: dict[str, Any], elapsed: float, logs: LogCapture,
           stock: Stock) -> None:  # fmt: skip
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["x-request-id"]
    assert problem["type"] == PROBLEM
    assert (problem["reason"], problem["txn"], problem["resource"]) == (
        "lock_timeout", "order", stock.kind
    )  # fmt: skip
    assert elapsed < TIMEOUT + 2.0 < SERVER_WAIT  # not the server's own lock wait
    line = txn_line(logs.requests(), "/order")
    assert line["http.response.status_code"] == 503
    assert (line["interlock.txn.outcome"], line["interlock.txn.reason"]) == (
        "aborted", "lock_timeout"
    )  # fmt: skip
    (blocked,) = [r for r in logs.records if r.get("event.action") == "txn-blocked"]
    assert blocked["log.level"] == "warning"
    assert blocked["interlock.txn.resource"] == stock.kind
    assert "prepared branch" in blocked["message"]
    assert "interlock txn recover" in blocked["message"]
    assert stock.qty() == 5


@pytest.mark.anyio
async def test_asgi_answers_503_transaction_blocked(
    stock: Stock, namespace: str, logs: LogCapture
) -> None:
    async def main() -> tuple[Any, float, float]:
        conn = await stock.aconnect()

        async def order(request: Request) -> JSONResponse:
            tx = request.scope["interlock"].transaction("order", timeout=TIMEOUT)
            enlisted = await (tx.postgres(conn) if stock.kind == "postgres" else tx.mysql(conn))
            await stock.ause(enlisted)
            return JSONResponse({"ok": True})

        app = Starlette(routes=[Route("/order", order, methods=["POST"])])
        async with AsyncInterlock("mem://", namespace=namespace, recovery=False) as ail:
            app.add_middleware(InterlockMiddleware, interlock=ail)
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                with stock.held():
                    started = time.monotonic()
                    response = await client.post("/order")
                    elapsed = time.monotonic() - started
            aborts = metric_value(
                ail, "interlock_txn_aborts_total", txn="order", reason="lock_timeout"
            )
        closing = conn.close()
        if asyncio.iscoroutine(closing):
            await closing
        return response, elapsed, aborts

    response, elapsed, aborts = await main()
    _check(response, response.json(), elapsed, logs, stock)
    assert aborts == 1


def test_wsgi_answers_503_transaction_blocked(
    stock: Stock, namespace: str, logs: LogCapture
) -> None:
    conn = stock.connect()
    app = flask.Flask("blocked")
    app.testing = False  # an exception answers 500, as in production

    @app.post("/order")
    def order() -> Any:
        tx = flask.request.environ["interlock"].transaction("order", timeout=TIMEOUT)
        stock.use(tx.postgres(conn) if stock.kind == "postgres" else tx.mysql(conn))
        return flask.jsonify(ok=True)

    with Interlock("mem://", namespace=namespace, recovery=False) as il:
        app.wsgi_app = InterlockWSGIMiddleware(app.wsgi_app, interlock=il)  # type: ignore[method-assign]
        client = app.test_client()
        with stock.held():
            started = time.monotonic()
            response = client.post("/order")
            response.close()  # like a server: the middleware's close() ends the request
            elapsed = time.monotonic() - started
        aborts = metric_value(il, "interlock_txn_aborts_total", txn="order", reason="lock_timeout")
    conn.close()
    _check(response, response.get_json(), elapsed, logs, stock)
    assert aborts == 1


# -- Django: its own 500 for the view's exception became ours (issue 11 item 5 follow-up) -----


@pytest.fixture
def django_stock(stock: Stock) -> Iterator[Stock]:
    """The stock and the app's blocking connection, as the Django views find them."""
    from _http_django_setup import configure

    configure()
    import _http_django_urls

    conn = stock.connect()
    _http_django_urls.STATE.update(stock=stock, conn=conn, timeout=TIMEOUT)
    try:
        yield stock
    finally:
        _http_django_urls.STATE.clear()
        conn.close()


class _Raw:
    """An ``interlock.testing`` response with the attributes ``_check`` reads."""

    def __init__(self, response: Any) -> None:
        self.status_code = response.status
        self.headers = response.headers


@pytest.mark.anyio
async def test_django_asgi_answers_503_transaction_blocked(
    django_stock: Stock, namespace: str, logs: LogCapture
) -> None:
    """A sync view under ASGI: Django answered its own 500 before the middleware saw the
    exception; its ``got_request_exception`` signal hands it over."""
    from django.core.asgi import get_asgi_application

    async with AsyncInterlock("mem://", namespace=namespace, recovery=False) as ail:
        app = InterlockMiddleware(get_asgi_application(), interlock=ail)
        with django_stock.held():
            started = time.monotonic()
            response = await asgi_request(app, "POST", "/order")
            elapsed = time.monotonic() - started
        assert response.status == 503, response.body[:300]  # was Django's own 500 page
        aborts = metric_value(ail, "interlock_txn_aborts_total", txn="order", reason="lock_timeout")
    _check(_Raw(response), response.json(), elapsed, logs, django_stock)
    assert aborts == 1


def test_django_wsgi_answers_503_transaction_blocked(
    django_stock: Stock, namespace: str, logs: LogCapture
) -> None:
    from django.core.wsgi import get_wsgi_application

    with Interlock("mem://", namespace=namespace, recovery=False) as il:
        app = InterlockWSGIMiddleware(get_wsgi_application(), interlock=il)
        with django_stock.held():
            started = time.monotonic()
            response = wsgi_request(app, "POST", "/order")
            elapsed = time.monotonic() - started
        assert response.status == 503, response.body[:300]  # was Django's own 500 page
        aborts = metric_value(il, "interlock_txn_aborts_total", txn="order", reason="lock_timeout")
    _check(_Raw(response), response.json(), elapsed, logs, django_stock)
    assert aborts == 1
