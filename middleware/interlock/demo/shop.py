"""The demo shop: a Starlette app with a cached catalogue, locked inventory, 2PC orders.

- ``GET /products`` and ``GET /products/{product_id}``: the catalogue, behind cache rules
  (a simulated 20 ms database read on a miss); ``POST /admin/purge`` invalidates it by tag.
- ``POST /inventory/{sku}/reserve``: a lock rule holds the ``inventory`` lock of the SKU
  while the handler works (20-50 ms); hot SKUs contend, slow waits answer 423.
- ``POST /orders``: takes the SKU's lock from the handler and runs a two-phase commit
  that decrements the stock (voting no when it would go below zero) and records the order.
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
    CacheRule,
    InterlockMiddleware,
    LockRule,
    LockTimeout,
    TransactionAborted,
)

PRODUCTS = 50
SKUS = [f"sku-{i}" for i in range(20)]
HOT_SKUS = SKUS[:2]
STORE = "shop"
STOCK = 200

LOCKS = [
    LockRule(
        "/inventory/{sku}/reserve", name="inventory", key="{sku}", methods=["POST"], timeout=0.05
    )
]
CACHE = [
    CacheRule("/products", ttl=5.0, tags=["catalog"]),
    CacheRule(
        "/products/{product_id}",
        ttl=10.0,
        stale_ttl=30.0,
        name="http-products",
        tags=["catalog", "product:{product_id}"],
    ),
]

INDEX = """interlock demo shop

GET  /products                  cached catalogue (CacheRule, tag "catalog")
GET  /products/{id}             cached product, stale-while-revalidate
POST /inventory/{sku}/reserve   LockRule "inventory" per SKU (423 + Retry-After when busy)
POST /orders  {"sku", "qty"}    lock + two-phase commit on the stock
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
        tools = request.scope["interlock"]
        order_id = uuid.uuid4().hex[:12]
        try:
            async with (
                tools.lock("inventory", sku, timeout=0.3),
                ail.transaction("checkout", timeout=2.0) as tx,
            ):
                stock = tx.redis(STORE)
                stock.incrby(("stock", sku), -qty, min=0)
                stock.set(("order", order_id), f"{sku}:{qty}")
        except LockTimeout:
            busy = {"error": "inventory busy"}
            return JSONResponse(busy, status_code=423, headers={"retry-after": "1"})
        except TransactionAborted as exc:
            return JSONResponse({"error": "out of stock", "reason": exc.reason}, status_code=409)
        return JSONResponse({"order": order_id, "sku": sku, "qty": qty}, status_code=201)

    async def restock(request: Request) -> Response:
        try:
            await restock_all(ail)
        except TransactionAborted as exc:  # e.g. an order held a staged write: try again
            conflict = {"error": "restock conflicted with orders", "reason": exc.reason}
            return JSONResponse(conflict, status_code=409, headers={"retry-after": "1"})
        return JSONResponse({"restocked": len(SKUS)})

    async def purge(request: Request) -> Response:
        await ail.cache("http").invalidate_tag("catalog")
        await ail.cache("http-products").invalidate_tag("catalog")
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


async def restock_all(ail: AsyncInterlock) -> None:
    """Set every SKU's stock to full, in one transaction."""
    async with ail.transaction("restock", timeout=5.0) as tx:
        store = tx.redis(STORE)
        for sku in SKUS:
            store.set(("stock", sku), STOCK)
