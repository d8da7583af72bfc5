"""A one-SKU shop on MariaDB behind a real ASGI app, for the async MySQL tests and benchmark.

``POST /orders`` runs a request-scoped transaction: an XA branch takes one unit of stock
(``UPDATE ... SET qty = qty - 1``, every request on the same row) and a Redis-store branch
records the order; the middleware commits when the handler answers 201. Each request gets
its own connection from the app's pool, checked out by :class:`PerRequestMySQL` *outside*
the interlock middleware, so the connection goes back to the pool only after the commit
(the pattern docs/transactions.md shows).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pymysql
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from interlock import AsyncInterlock, InterlockMiddleware

SKU = "sku-1"
DRIVERS = ("pymysql", "aiomysql")  # what tx.mysql() takes under asyncio


class PyMySQLPool:
    """The smallest async pool of PyMySQL connections (connects on a thread)."""

    def __init__(self, params: dict[str, Any], size: int) -> None:
        self._params = params
        self._free: asyncio.Queue[Any] = asyncio.Queue()
        for _ in range(size):
            self._free.put_nowait(None)  # a slot; connected on first use

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[Any]:
        conn = await self._free.get()
        try:
            if conn is None:
                conn = await asyncio.to_thread(pymysql.connect, **self._params)
            yield conn
        except BaseException:
            if conn is not None:  # its state is unknown: don't hand it out again
                conn.close()
                conn = None
            raise
        finally:
            self._free.put_nowait(conn)

    async def close(self) -> None:
        while not self._free.empty():
            conn = self._free.get_nowait()
            if conn is not None:
                conn.close()


async def open_pool(driver: str, params: dict[str, Any], size: int) -> Any:
    """A pool of ``size`` connections of ``driver`` (``pymysql``, ``aiomysql``, ``asyncmy``)."""
    if driver == "pymysql":
        return PyMySQLPool(params, size)
    options = {
        "host": params["host"],
        "port": params["port"],
        "user": params["user"],
        "password": params["password"],
        "db": params["database"],
        "minsize": 1,
        "maxsize": size,
        "autocommit": False,
    }
    if driver == "aiomysql":
        import aiomysql

        return await aiomysql.create_pool(**options)
    import asyncmy

    options["database"] = options.pop("db")
    return await asyncmy.create_pool(**options)


async def close_pool(driver: str, pool: Any) -> None:
    if driver == "pymysql":
        await pool.close()
        return
    pool.close()
    await pool.wait_closed()


class PerRequestMySQL:
    """ASGI middleware: one pooled connection per HTTP request at ``scope["mysql"]``,
    returned to the pool after the response (so after the request's commit or abort)."""

    def __init__(self, app: Any, pool: Any) -> None:
        self.app = app
        self.pool = pool

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        async with self.pool.acquire() as conn:
            scope["mysql"] = conn
            await self.app(scope, receive, send)


def shop_app(ail: AsyncInterlock, pool: Any, table: str) -> Any:
    """The ASGI app: ``PerRequestMySQL(InterlockMiddleware(Starlette(...)))``."""

    async def order(request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        tools = request.scope["interlock"]
        tx = tools.transaction("order", timeout=30.0)
        conn = await tx.mysql(request.scope["mysql"], resource="stock")
        async with conn.cursor() as cur:
            await cur.execute(
                f"UPDATE {table} SET qty = qty - 1 WHERE sku = %s AND qty > 0", [SKU]
            )
            if cur.rowcount != 1:
                return JSONResponse({"error": "sold out"}, status_code=409)
        tx.redis("orders").set(("order", body["id"]), SKU)
        return JSONResponse({"order": body["id"]}, status_code=201)

    app = Starlette(routes=[Route("/orders", order, methods=["POST"])])
    return PerRequestMySQL(InterlockMiddleware(app, interlock=ail), pool)


def create_stock(params: dict[str, Any], qty: int) -> str:
    table = f"stock_{uuid.uuid4().hex[:10]}"
    with pymysql.connect(**params, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {table} (sku VARCHAR(32) PRIMARY KEY, qty INT NOT NULL)")
        cur.execute(f"INSERT INTO {table} VALUES (%s, %s)", [SKU, qty])
    return table


def stock(params: dict[str, Any], table: str) -> int:
    with pymysql.connect(**params, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT qty FROM {table} WHERE sku = %s", [SKU])
        row = cur.fetchone()
    return int(row[0])


def drop_stock(params: dict[str, Any], table: str) -> None:
    with pymysql.connect(**params, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {table}")


def xa_prepared(params: dict[str, Any], namespace: str) -> list[str]:
    """Our XA branches still prepared on the server (none after any outcome)."""
    with pymysql.connect(**params, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("XA RECOVER")
        found = [str(row[3]) for row in cur.fetchall()]
    return [xid for xid in found if f":{namespace}:" in xid]


class LagProbe:
    """Measures how late a 10 ms sleep wakes up on the running loop: a blocked loop shows
    as a large lag."""

    def __init__(self, period: float = 0.01) -> None:
        self.period = period
        self.max_lag = 0.0
        self.samples = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(self.period)
            self.max_lag = max(self.max_lag, time.perf_counter() - started - self.period)
            self.samples += 1

    def __enter__(self) -> LagProbe:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()


async def place_orders(
    app: Any, count: int, *, timeout: float
) -> tuple[list[int], LagProbe, float]:
    """``count`` concurrent ``POST /orders`` through ``app``: statuses, lag, seconds."""
    import httpx

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # a crash: 500
    async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:

        async def one(i: int) -> int:
            response = await client.post("/orders", content=json.dumps({"id": f"o{i}"}))
            return response.status_code

        with LagProbe() as probe:
            started = time.perf_counter()
            statuses = await asyncio.wait_for(
                asyncio.gather(*(one(i) for i in range(count))), timeout
            )
            elapsed = time.perf_counter() - started
    return list(statuses), probe, elapsed

