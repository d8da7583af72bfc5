"""URLconf of the Django app used by the middleware tests (ROOT_URLCONF)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path, re_path

from interlock.django import tools

# What the tool views use, set by tests/http/test_django_tools.py: "pg" (a blocking
# psycopg connection), "apg" (an async one, for async views under ASGI), "table", "asgi";
# by test_http_txn_blocked.py: "stock" (a _blocked.Stock), "conn" (its blocking connection),
# "timeout" (the transaction's).
STATE: dict[str, Any] = {}


def item(request: HttpRequest, pk: int) -> HttpResponse:
    return JsonResponse({"pk": pk})


def article(request: HttpRequest, year: str) -> HttpResponse:
    return HttpResponse(year)


def withdraw(request: HttpRequest, account_id: int) -> HttpResponse:
    found = tools(request)
    return JsonResponse({"lease": found.lease is not None, "request_id": found.request_id})


def sync_order(request: HttpRequest, n: int) -> HttpResponse:
    """Django's default: a sync view, under WSGI or ASGI alike."""
    t = tools(request)
    with t.lock("audit", n) as lease:
        fence = lease.fence
    value = t.cache("django").get_or_load(n, lambda: f"loaded-{n}")
    tx = t.transaction("django-order")
    tx.redis("orders").set(("order", n), "sync")
    conn = tx.postgres(STATE["pg"])
    conn.execute(f"INSERT INTO {STATE['table']} VALUES (%s, %s)", [f"o{n}", "sync"])
    return JsonResponse({"fence": fence, "value": value, "request_id": t.request_id})


async def async_order(request: HttpRequest, n: int) -> HttpResponse:
    t = tools(request)
    async with t.lock("audit", n) as lease:
        fence = lease.fence

    async def load() -> str:
        return f"loaded-{n}"

    value = await t.cache("django").get_or_load(n, load)
    tx = t.transaction("django-order")
    tx.redis("orders").set(("order", n), "async")
    insert = f"INSERT INTO {STATE['table']} VALUES (%s, %s)"
    if STATE["asgi"]:  # the async tools take an async connection
        conn = await tx.postgres(STATE["apg"])
        await conn.execute(insert, [f"o{n}", "async"])
    else:  # under WSGI the blocking ones, awaited: Django's own connections are blocking
        conn = await tx.postgres(STATE["pg"])
        conn.execute(insert, [f"o{n}", "async"])
    return JsonResponse({"fence": fence, "value": value, "request_id": t.request_id})


def audit(request: HttpRequest) -> HttpResponse:
    """Takes a lock by hand: Redis down, ``BackendUnavailable`` leaves the view."""
    with tools(request).lock("audit", "k"):
        return HttpResponse("audited")


def blocked_order(request: HttpRequest) -> HttpResponse:
    """Updates the stock row inside the request's transaction (a sync view)."""
    stock, conn = STATE["stock"], STATE["conn"]
    tx = tools(request).transaction("order", timeout=STATE["timeout"])
    stock.use(tx.postgres(conn) if stock.kind == "postgres" else tx.mysql(conn))
    return JsonResponse({"ok": True})


def product(request: HttpRequest, product_id: int) -> HttpResponse:
    return JsonResponse({"product": product_id})


api = [path("items/<int:pk>/", item), re_path(r"^articles/(?P<year>[0-9]{4})/$", article)]

urlpatterns = [
    path("api/v1/", include(api)),
    path("accounts/<int:account_id>/withdraw", withdraw),
    path("products/<int:product_id>", product),
    path("orders/sync/<int:n>", sync_order),
    path("orders/async/<int:n>", async_order),
    path("audit", audit),
    path("order", blocked_order),
]
