"""Route templates from real Starlette and FastAPI apps, including mounts and routers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Host, Mount, Route, Router

from interlock import AsyncInterlock, InterlockMiddleware, LockRule
from interlock.testing import LogCapture, metric_value


async def ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def whoami(request: Request) -> JSONResponse:
    tools = request.scope["interlock"]
    return JSONResponse({"request_id": tools.request_id, "lease": tools.lease is not None})


def starlette_app() -> Starlette:
    inner = Starlette(routes=[Route("/orders/{order_id:int}", ok)])
    return Starlette(
        routes=[
            Route("/", ok),
            Route("/users/{user_id}", ok, methods=["GET"]),
            Route("/accounts/{account_id}/withdraw", whoami, methods=["POST"]),
            Mount("/api", routes=[Mount("/v2", routes=[Route("/items/{item_id}", ok)])]),
            Mount("/tenants/{tenant}", routes=[Route("/files/{name}", ok)]),
            Mount("/shop", app=inner),
            Mount("/raw", app=PlainTextResponse("raw app")),
            Host("admin.example.com", app=Router(routes=[Route("/panel/{pid}", ok)])),
        ]
    )


async def _routes(
    app: Any, calls: list[tuple[str, str]], headers: dict[str, str] | None = None
) -> list[tuple[str, int]]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        out = []
        for method, path in calls:
            response = await client.request(method, path, headers=headers)
            out.append((path, response.status_code))
        return out


def _route_labels(logs: LogCapture) -> dict[str, str]:
    return {r["url.path"]: r["interlock.http.route"] for r in logs.requests()}


@pytest.mark.anyio
async def test_starlette_routes_mounts_and_hosts(
    make_ail: Callable[..., AsyncInterlock], logs: LogCapture
) -> None:
    async with make_ail() as ail:
        app = starlette_app()
        app.add_middleware(
            InterlockMiddleware,
            interlock=ail,
            locks=[
                LockRule("/accounts/{account_id}/withdraw", name="account", key="{account_id}")
            ],
        )
        calls = [
            ("GET", "/"),
            ("GET", "/users/alice"),
            ("POST", "/users/alice"),  # 405 still has the route
            ("GET", "/api/v2/items/3"),
            ("GET", "/tenants/acme/files/a.txt"),
            ("GET", "/tenants/globex/files/b.txt"),
            ("GET", "/shop/orders/12"),
            ("GET", "/raw/anything/below"),
            ("GET", "/nope"),
            ("GET", "/users/alice/extra"),
        ]
        statuses = dict(await _routes(app, calls))
        assert statuses["/users/alice"] in (200, 405)
        labels = _route_labels(logs)
        assert labels == {
            "/": "/",
            "/users/alice": "/users/{user_id}",
            "/api/v2/items/3": "/api/v2/items/{item_id}",
            "/tenants/acme/files/a.txt": "/tenants/{tenant}/files/{name}",
            "/tenants/globex/files/b.txt": "/tenants/{tenant}/files/{name}",
            "/shop/orders/12": "/shop/orders/{order_id:int}",
            "/raw/anything/below": "/raw/{path}",
            "/nope": "__unmatched__",
            "/users/alice/extra": "__unmatched__",
        }
        assert (
            metric_value(
                ail, "interlock_http_requests_total", route="/tenants/{tenant}/files/{name}"
            )
            == 2
        )
        # the Host route and the lock rule, through the same app
        await _routes(app, [("GET", "/panel/9")], {"host": "admin.example.com"})
        assert _route_labels(logs)["/panel/9"] == "/panel/{pid}"
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            body = (await client.post("/accounts/5/withdraw")).json()
        assert body["lease"] is True
        assert _route_labels(logs)["/accounts/5/withdraw"] == "/accounts/{account_id}/withdraw"


@pytest.mark.anyio
async def test_starlette_under_a_root_path(
    make_ail: Callable[..., AsyncInterlock], logs: LogCapture
) -> None:
    async with make_ail() as ail:
        app = InterlockMiddleware(starlette_app(), interlock=ail)
        transport = httpx.ASGITransport(app=app, root_path="/prefix")
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/prefix/api/v2/items/1")).status_code == 200
            assert (await client.get("/prefix/users/bob")).status_code == 200
        labels = {r["interlock.http.route"] for r in logs.requests()}
        assert labels == {"/api/v2/items/{item_id}", "/users/{user_id}"}


def fastapi_app() -> FastAPI:
    app = FastAPI()
    router = APIRouter()

    @router.get("/items/{item_id}")
    def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    nested = APIRouter()

    @nested.get("/deep/{x}")
    def deep(x: str) -> str:
        return x

    router.include_router(nested, prefix="/nested")
    app.include_router(router, prefix="/v1")

    @app.get("/top/{name}")
    def top(name: str) -> str:
        return name

    sub = FastAPI()

    @sub.get("/s/{y}")
    def sub_item(y: str) -> str:
        return y

    app.mount("/sub", sub)
    app.mount("/static/{tenant}", Starlette(routes=[Route("/f/{fid}", ok)]))
    return app


@pytest.mark.anyio
async def test_fastapi_routes_routers_and_mounts(
    make_ail: Callable[..., AsyncInterlock], logs: LogCapture
) -> None:
    async with make_ail() as ail:
        app = fastapi_app()
        app.add_middleware(InterlockMiddleware, interlock=ail)
        calls = [
            ("GET", "/v1/items/3"),
            ("GET", "/v1/items/notanint"),  # 422, still routed
            ("GET", "/v1/nested/deep/q"),
            ("GET", "/top/alice"),
            ("GET", "/sub/s/1"),
            ("GET", "/static/acme/f/9"),
            ("GET", "/missing"),
        ]
        statuses = dict(await _routes(app, calls))
        assert statuses["/v1/items/notanint"] == 422
        assert _route_labels(logs) == {
            "/v1/items/3": "/v1/items/{item_id}",
            "/v1/items/notanint": "/v1/items/{item_id}",
            "/v1/nested/deep/q": "/v1/nested/deep/{x}",
            "/top/alice": "/top/{name}",
            "/sub/s/1": "/sub/s/{y}",
            "/static/acme/f/9": "/static/{tenant}/f/{fid}",
            "/missing": "__unmatched__",
        }


@pytest.mark.anyio
async def test_fastapi_handlers_reach_the_request_tools(
    make_ail: Callable[..., AsyncInterlock],
) -> None:
    async with make_ail() as ail:
        app = FastAPI()

        @app.post("/accounts/{account_id}/withdraw")
        async def withdraw(account_id: int, request: Request) -> dict[str, Any]:
            tools = request.scope["interlock"]
            async with tools.lock("audit", account_id) as lease:
                return {"rule_fence": tools.lease.fence, "inner_fence": lease.fence}

        app.add_middleware(
            InterlockMiddleware,
            interlock=ail,
            locks=[
                LockRule("/accounts/{account_id}/withdraw", name="account", key="{account_id}")
            ],
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.post("/accounts/8/withdraw")
        assert response.status_code == 200
        assert set(response.json()) == {"rule_fence", "inner_fence"}
