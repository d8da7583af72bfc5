"""One route, one label: lock refusals, cache hits and handler answers share the template.

Each framework spells its templates its own way (``{account_id:int}``, ``<int:account_id>``)
and the rules their own; a request that a rule matches is labelled with the rule's template
however it was answered — by the handler, by a 423 before the handler ran, or from the
response cache in a worker that never ran the handler (issue 11, item 2).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from _http_django_setup import configure
from fastapi import FastAPI
from flask import Flask
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from interlock import (
    AsyncInterlock,
    CacheRule,
    Interlock,
    InterlockMiddleware,
    InterlockWSGIMiddleware,
    LockRule,
)
from interlock.testing import asgi_request, series, wsgi_request

configure()

LOCK = LockRule("/accounts/{account_id}/withdraw", name="account", key="{account_id}", timeout=0)
CACHE = CacheRule("/products/{product_id}", ttl=30, override=True)  # fixed ttl
WITHDRAW, PRODUCT = "/accounts/{account_id}/withdraw", "/products/{product_id}"


def _labels(source: Any) -> set[tuple[str, str]]:
    return {(s["route"], s["status"]) for s in series(source, "interlock_http_requests_total")}


EXPECTED = {(WITHDRAW, "200"), (WITHDRAW, "423"), (PRODUCT, "200")}


# -- ASGI: Starlette, FastAPI, Django --------------------------------------------------------


def starlette_app() -> Starlette:
    async def withdraw(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    async def product(request: Request) -> JSONResponse:
        return JSONResponse({"product": request.path_params["product_id"]})

    return Starlette(
        routes=[
            Route("/accounts/{account_id:int}/withdraw", withdraw, methods=["POST"]),
            Route("/products/{product_id:int}", product),
        ]
    )


def fastapi_app() -> FastAPI:
    from fastapi import APIRouter

    app = FastAPI()
    router = APIRouter()

    @router.post("/{account_id}/withdraw")
    async def withdraw(account_id: int) -> dict[str, bool]:
        return {"ok": True}

    @app.get("/products/{product_id}")
    async def product(product_id: int) -> dict[str, int]:
        return {"product": product_id}

    app.include_router(router, prefix="/accounts")
    return app


def django_asgi_app() -> Any:
    from django.core.asgi import get_asgi_application

    return get_asgi_application()


async def _asgi_paths(ail: AsyncInterlock, make: Callable[[], Any]) -> None:
    """Handler, refusal, cache miss in one worker; a cache hit in a fresh one."""

    def wrapped() -> Any:
        app = make()
        if hasattr(app, "add_middleware"):  # the documented way
            app.add_middleware(InterlockMiddleware, interlock=ail, locks=[LOCK], cache=[CACHE])
            return app
        return InterlockMiddleware(app, interlock=ail, locks=[LOCK], cache=[CACHE])

    worker = wrapped()
    assert (await asgi_request(worker, "POST", "/accounts/5/withdraw")).status == 200
    async with ail.lock("account", "5"):  # held by this task: the request's task waits
        refused = asyncio.create_task(asgi_request(worker, "POST", "/accounts/5/withdraw"))
        assert (await refused).status == 423
    assert (await asgi_request(worker, "GET", "/products/7")).headers["x-cache"] == "MISS"
    fresh = wrapped()  # another worker: it never ran the product handler
    assert (await asgi_request(fresh, "GET", "/products/7")).headers["x-cache"] == "HIT"


async def _asgi_case(make: Callable[[], Any], make_ail: Callable[..., AsyncInterlock]) -> None:
    async with make_ail() as ail:
        await _asgi_paths(ail, make)
        assert _labels(ail) == EXPECTED


@pytest.mark.anyio
async def test_starlette_route_has_one_label(make_ail: Callable[..., AsyncInterlock]) -> None:
    await _asgi_case(starlette_app, make_ail)


@pytest.mark.anyio
async def test_fastapi_route_has_one_label(make_ail: Callable[..., AsyncInterlock]) -> None:
    await _asgi_case(fastapi_app, make_ail)


@pytest.mark.anyio
async def test_django_asgi_route_has_one_label(make_ail: Callable[..., AsyncInterlock]) -> None:
    await _asgi_case(django_asgi_app, make_ail)


# -- WSGI: Flask, Django -----------------------------------------------------------------------


def flask_app() -> Flask:
    app = Flask(__name__)

    @app.post("/accounts/<account_id>/withdraw")
    def withdraw(account_id: str) -> dict[str, bool]:
        return {"ok": True}

    @app.get("/products/<int:product_id>")
    def product(product_id: int) -> dict[str, int]:
        return {"product": product_id}

    return app


def _wsgi_case(il: Interlock, wrap: Callable[[], Any]) -> None:
    worker = wrap()
    assert wsgi_request(worker, "POST", "/accounts/5/withdraw").status == 200
    with il.lock("account", "5"), ThreadPoolExecutor(1) as other:  # another thread asks
        refused = other.submit(wsgi_request, worker, "POST", "/accounts/5/withdraw")
        assert refused.result(timeout=10).status == 423
    assert wsgi_request(worker, "GET", "/products/7").headers["x-cache"] == "MISS"
    fresh = wrap()
    assert wsgi_request(fresh, "GET", "/products/7").headers["x-cache"] == "HIT"
    assert _labels(il) == EXPECTED


def test_flask_route_has_one_label(il: Interlock) -> None:
    def wrap() -> Flask:
        app = flask_app()
        app.wsgi_app = InterlockWSGIMiddleware(  # type: ignore[method-assign]
            app.wsgi_app, interlock=il, locks=[LOCK], cache=[CACHE]
        )
        return app

    _wsgi_case(il, wrap)


def test_django_wsgi_route_has_one_label(il: Interlock) -> None:
    from django.core.wsgi import get_wsgi_application

    def wrap() -> Any:
        return InterlockWSGIMiddleware(
            get_wsgi_application(), interlock=il, locks=[LOCK], cache=[CACHE]
        )

    _wsgi_case(il, wrap)
