"""The demo shop: a Starlette app with a cached catalogue, locked inventory, 2PC orders.

- ``GET /products`` and ``GET /products/{product_id}``: the catalogue, behind cache rules
  (a simulated 20 ms database read on a miss); ``POST /admin/purge`` invalidates it by tag.
- ``POST /inventory/{sku}/reserve``: a lock rule holds the ``inventory`` lock of the SKU
  while the handler works (20-50 ms); hot SKUs contend, slow waits answer 423.
- ``POST /orders``: a request-scoped two-phase commit across two stores: the ``inventory``
  store decrements the stock (voting no when it would go below zero), the ``orders`` store
  records the order. The handler only stages the writes and answers 201; the middleware
  commits when that status goes out, or answers 409 (problem+json) when a store refused.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from interlock import (
    AsyncInterlock,
    BackendUnavailable,
    CacheRule,
    InterlockMiddleware,
    LockRule,
    TransactionAborted,
    TransactionInDoubt,
)

PRODUCTS = 50
SKUS = [f"sku-{i}" for i in range(20)]
HOT_SKUS = SKUS[:2]
INVENTORY = "inventory"  # stock per SKU
ORDERS = "orders"  # one record per order: a second store, so orders are real two-phase commits
STOCK = 200

LOCKS = [
    LockRule(
        "/inventory/{sku}/reserve", name="inventory", key="{sku}", methods=["POST"], timeout=0.05
    )
]
CACHE = [
    CacheRule("/products", ttl=5.0, tags=["catalog"], override=True),
    CacheRule(
        "/products/{product_id}",
        ttl=10.0,
        override=True,  # the demo's handlers send no Cache-Control: a fixed lifetime
        stale_ttl=30.0,
        name="http-products",
        tags=["catalog", "product:{product_id}"],
    ),
]

INDEX = """interlock demo shop

GET  /products                  cached catalogue (CacheRule, tag "catalog")
GET  /products/{id}             cached product, stale-while-revalidate
POST /inventory/{sku}/reserve   LockRule "inventory" per SKU (423 + Retry-After when busy)
POST /orders  {"sku", "qty"}    two-phase commit: inventory + orders stores (409 when out of stock)
POST /admin/restock             put every SKU back to full stock
POST /admin/purge               invalidate the catalogue by tag
GET  /metrics                   Prometheus metrics
"""


def create_app(ail: AsyncInterlock) -> Any:
    """The shop wrapped in :class:`InterlockMiddleware`."""

    async def index(request: Request) -> Response:
        return PlainTextResponse(INDEX)

    async def products(request: Request) -> Response:
        await asyncio.sleep(0.02)  # the database
        return JSONResponse([{"id": i, "name": f"Product {i}"} for i in range(PRODUCTS)])

    async def product(request: Request) -> Response:
        product_id = request.path_params["product_id"]
        if product_id >= PRODUCTS:
            return JSONResponse({"error": "no such product"}, status_code=404)
        await asyncio.sleep(0.02)
        return JSONResponse(
            {"id": product_id, "name": f"Product {product_id}", "price": 10 + product_id}
        )

    async def reserve(request: Request) -> Response:
        lease = request.scope["interlock"].lease
        await asyncio.sleep(random.uniform(0.02, 0.05))  # the critical section
        return JSONResponse({"sku": request.path_params["sku"], "fence": lease.fence})

    async def orders(request: Request) -> Response:
        try:
            order = json.loads(await request.body() or b"{}")
            sku, qty = str(order["sku"]), int(order.get("qty", 1))
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": 'send {"sku": ..., "qty": n}'}, status_code=400)
        order_id = uuid.uuid4().hex[:12]
        # The request's transaction: the middleware commits it as the 201 goes out (prepare
        # both stores, log the decision, commit both) or answers 409 if a store votes no.
        tx = request.scope["interlock"].transaction("checkout", timeout=2.0)
        tx.redis(INVENTORY).incrby(("stock", sku), -qty, min=0)
        tx.redis(ORDERS).set(("order", order_id), f"{sku}:{qty}")
        return JSONResponse({"order": order_id, "sku": sku, "qty": qty}, status_code=201)

    async def restock(request: Request) -> Response:
        try:
            await restock_all(ail)
        except TransactionAborted as exc:  # e.g. an order held a staged write: try again
            conflict = {"error": "restock conflicted with orders", "reason": exc.reason}
            return JSONResponse(conflict, status_code=409, headers={"retry-after": "1"})
        except (BackendUnavailable, TransactionInDoubt) as exc:  # Redis down: idempotent, retry
            return _unavailable(exc)
        return JSONResponse({"restocked": len(SKUS)})

    async def purge(request: Request) -> Response:
        try:
            await ail.cache("http").invalidate_tag("catalog")
            await ail.cache("http-products").invalidate_tag("catalog")
        except BackendUnavailable as exc:  # the cache is degraded: the purge did not happen
            return _unavailable(exc)
        return JSONResponse({"purged": "catalog"})

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/products", products),
            Route("/products/{product_id:int}", product),
            Route("/inventory/{sku}/reserve", reserve, methods=["POST"]),
            Route("/orders", orders, methods=["POST"]),
            Route("/admin/restock", restock, methods=["POST"]),
            Route("/admin/purge", purge, methods=["POST"]),
        ]
    )
    return InterlockMiddleware(app, interlock=ail, locks=LOCKS, cache=CACHE)


def _unavailable(exc: Exception) -> Response:
    body = {"error": "backend unavailable, try again", "type": type(exc).__name__}
    return JSONResponse(body, status_code=503, headers={"retry-after": "1"})


async def restock_all(ail: AsyncInterlock) -> None:
    """Set every SKU's stock to full, in one transaction."""
    async with ail.transaction("restock", timeout=5.0) as tx:
        store = tx.redis(INVENTORY)
        for sku in SKUS:
            store.set(("stock", sku), STOCK)
