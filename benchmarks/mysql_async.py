#!/usr/bin/env python3
"""MySQL under asyncio: concurrent request-scoped 2PC orders on one stock row, per driver.

Run:  .venv/bin/python benchmarks/mysql_async.py [--orders 30] [--rounds 3] [--pool 10]
                                                 [--round-trips 2000] [--write]

A throwaway MariaDB and an AOF Redis (the decision log) are started by this script.

1. ``--orders`` concurrent ``POST /orders`` through a real ASGI app (Starlette, interlock
   middleware, httpx's ASGI transport; tests/txn/_shop.py), each a two-branch transaction:
   an XA branch that decrements the *same* stock row and a Redis-store branch. Per driver:
   wall time, orders/s, the event loop's longest stall (a 10 ms ticker's worst lateness),
   and whether the stock counter is exact. ``blocking`` is the behaviour before
   ``tx.mysql`` wrapped PyMySQL: the handler runs its UPDATE on the loop with the raw
   connection (``innodb_lock_wait_timeout`` is 3 s there, so it ends).
2. Driver round trips: ``--round-trips`` sequential ``SELECT 1`` on one connection, and
   the same issued by 30 tasks on 30 connections, per driver (PyMySQL called directly,
   PyMySQL through interlock's per-connection thread, aiomysql, asyncmy).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from _common import machine, write_section

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "txn"))

import pymysql  # noqa: E402
from _shop import (  # noqa: E402
    SKU,
    LagProbe,
    close_pool,
    create_stock,
    drop_stock,
    open_pool,
    place_orders,
    shop_app,
    stock,
)
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

from interlock import AsyncInterlock, InterlockMiddleware  # noqa: E402
from interlock.txn import AsyncPyMySQLConnection  # noqa: E402
from services import MariaDBServer, RedisServer  # noqa: E402


def blocking_app(ail: AsyncInterlock, pool: Any, table: str) -> Any:
    """The shop as it behaved before: the handler's statements run on the event loop."""
    from _shop import PerRequestMySQL

    async def order(request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        tx = request.scope["interlock"].transaction("order", timeout=30.0)
        conn = await tx.mysql(request.scope["mysql"], resource="stock")
        with conn.raw.cursor() as cur:  # blocking call on the loop
            cur.execute("SET SESSION innodb_lock_wait_timeout = 3")
            cur.execute(f"UPDATE {table} SET qty = qty - 1 WHERE sku = %s AND qty > 0", [SKU])
        tx.redis("orders").set(("order", body["id"]), SKU)
        return JSONResponse({"order": body["id"]}, status_code=201)

    app = Starlette(routes=[Route("/orders", order, methods=["POST"])])
    return PerRequestMySQL(InterlockMiddleware(app, interlock=ail), pool)


async def orders_round(
    driver: str, redis: RedisServer, params: dict[str, Any], orders: int, size: int, n: int
) -> dict[str, Any]:
    table = create_stock(params, qty=orders)
    ail = AsyncInterlock(redis.url, namespace=f"bench{n}", registry=None)
    ail.transactions.add_mysql("stock", lambda: pymysql.connect(**params))
    pool = await open_pool("pymysql" if driver == "blocking" else driver, params, size)
    try:
        await ail.transactions.check()  # durability; creates the commit-marker table
        make = blocking_app if driver == "blocking" else shop_app
        statuses, probe, elapsed = await place_orders(make(ail, pool, table), orders, timeout=600)
    finally:
        await close_pool("pymysql" if driver == "blocking" else driver, pool)
        await ail.aclose()
    left = stock(params, table)
    drop_stock(params, table)
    committed = statuses.count(201)
    return {
        "elapsed": elapsed,
        "committed": committed,
        "exact": left == orders - committed,
        "lag": probe.max_lag,
    }


async def round_trips(driver: str, params: dict[str, Any], count: int, tasks: int) -> float:
    """Seconds for ``count`` ``SELECT 1`` spread over ``tasks`` connections."""
    conns: list[Any] = []
    for _ in range(tasks):
        if driver in ("pymysql", "pymysql-thread"):
            raw = pymysql.connect(**params)
            conns.append(raw if driver == "pymysql" else AsyncPyMySQLConnection(raw))
        elif driver == "aiomysql":
            import aiomysql

            conns.append(
                await aiomysql.connect(
                    host=params["host"], port=params["port"], user="root", db="test"
                )
            )
        else:
            import asyncmy

            conns.append(
                await asyncmy.connect(
                    host=params["host"], port=params["port"], user="root", database="test"
                )
            )

    async def work(conn: Any, n: int) -> None:
        for _ in range(n):
            if driver == "pymysql":
                with conn.cursor() as cur:
                    cur.execute("SELECT 1")
                    cur.fetchall()
            else:
                async with conn.cursor() as cur:
                    await cur.execute("SELECT 1")
                    await cur.fetchall()

    started = time.perf_counter()
    await asyncio.gather(*(work(c, count // tasks) for c in conns))
    elapsed = time.perf_counter() - started
    for conn in conns:
        if driver == "pymysql-thread":
            await conn.aclose()
        elif driver == "aiomysql":
            await conn.ensure_closed()
        else:
            conn.close()
    return elapsed


async def lagged_round_trips(driver: str, params: dict[str, Any], count: int) -> float:
    with LagProbe() as probe:
        await asyncio.sleep(0.02)  # the ticker is waiting before the work starts
        await round_trips(driver, params, count, 1)
    return probe.max_lag


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pool", type=int, default=10)
    parser.add_argument("--round-trips", type=int, default=2000)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    my = MariaDBServer().start()
    redis = RedisServer(config={"appendonly": "yes", "appendfsync": "always"}).start()
    params = dict(my.params)
    try:
        rows = []
        n = 0
        for driver in ("pymysql", "aiomysql", "blocking"):
            results = []
            for _ in range(1 if driver == "blocking" else args.rounds):
                n += 1
                results.append(
                    asyncio.run(orders_round(driver, redis, params, args.orders, args.pool, n))
                )
            elapsed = statistics.median(r["elapsed"] for r in results)
            committed = min(r["committed"] for r in results)
            rows.append(
                f"| {driver} | {elapsed * 1000:.0f} | {committed / elapsed:.0f} | "
                f"{committed}/{args.orders} | {'yes' if all(r['exact'] for r in results) else 'NO'}"
                f" | {max(r['lag'] for r in results) * 1000:.0f} |"
            )
            print(rows[-1], flush=True)
        trips = []
        for driver in ("pymysql", "pymysql-thread", "aiomysql", "asyncmy"):
            one = asyncio.run(round_trips(driver, params, args.round_trips, 1))
            many = asyncio.run(round_trips(driver, params, args.round_trips, 30))
            lag = asyncio.run(lagged_round_trips(driver, params, min(args.round_trips, 500)))
            trips.append(
                f"| {driver} | {one / args.round_trips * 1e6:.0f} | "
                f"{args.round_trips / many:.0f} | {lag * 1000:.1f} |"
            )
            print(trips[-1], flush=True)
    finally:
        redis.stop()
        my.stop()
    report = (
        "## MySQL under asyncio\n\n"
        f"`.venv/bin/python benchmarks/mysql_async.py --orders {args.orders} --rounds "
        f"{args.rounds} --pool {args.pool} --write` — {machine()}, 2 cores. "
        f"{args.orders} concurrent request-scoped orders (XA branch on one stock row + a "
        f"Redis-store branch) through Starlette + the interlock middleware, pool of "
        f"{args.pool} connections; median of {args.rounds} rounds (blocking: one):\n\n"
        "| driver | wall ms | orders/s | committed | stock exact | worst loop stall ms |\n"
        "|---|---:|---:|---:|---|---:|\n" + "\n".join(rows) + "\n\n"
        "`blocking` is the handler running its UPDATE on the loop with the raw PyMySQL "
        "connection, as `await tx.mysql(conn)` allowed before: a request waiting for the "
        "row lock freezes the loop, so the transaction holding the lock cannot reach its "
        "commit until the wait times out (`innodb_lock_wait_timeout`, 3 s here, 50 s by "
        "default).\n\n"
        f"Driver round trips (`SELECT 1`, {args.round_trips} in all):\n\n"
        "| driver | sequential µs each | 30 connections, per s | worst loop stall ms |\n"
        "|---|---:|---:|---:|\n" + "\n".join(trips) + "\n\n"
        "`pymysql` is called directly (it blocks the loop for every round trip: see the stall "
        "column); `pymysql-thread` is the `AsyncPyMySQLConnection` that `tx.mysql` returns "
        "for a PyMySQL connection under asyncio. asyncmy is measured for comparison only: "
        "`tx.mysql` refuses it (its connection does not expose host, port and database).\n"
    )
    print(report)
    if args.write:
        write_section("mysql_async", report)


if __name__ == "__main__":
    main()
