"""The MySQL participant under asyncio: nothing blocks the event loop.

``await tx.mysql(conn)`` takes an aiomysql connection natively (XA statements on its async
cursor) and a PyMySQL connection through a wrapper whose cursor calls run on a
worker thread, in order. 30 concurrent requests on one stock row through a real ASGI app
must all commit, the counter must be exact, and the loop must keep answering meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterator

import pymysql
import pytest
from _bank import new_namespace
from _shop import (
    DRIVERS,
    close_pool,
    create_stock,
    drop_stock,
    open_pool,
    place_orders,
    shop_app,
    stock,
    xa_prepared,
)

from interlock import AsyncInterlock, ConfigError, Interlock
from services import MariaDBServer, RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.mysql, pytest.mark.timeout(90)]
ORDERS = 30


@pytest.fixture
def stock_table(mariadb_server: MariaDBServer) -> Iterator[str]:
    table = create_stock(mariadb_server.params, qty=ORDERS + 5)
    yield table
    drop_stock(mariadb_server.params, table)


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_concurrent_orders_on_one_row_all_commit_and_the_loop_stays_responsive(
    driver: str, aof_redis: RedisServer, mariadb_server: MariaDBServer, stock_table: str
) -> None:
    params = dict(mariadb_server.params)
    namespace = new_namespace()

    async def main() -> tuple[list[int], float, int]:
        ail = AsyncInterlock(aof_redis.url, namespace=namespace, registry=None)
        ail.transactions.add_mysql("stock", lambda: pymysql.connect(**params))
        pool = await open_pool(driver, params, size=10)
        try:
            await ail.transactions.check()  # durability; creates the commit-marker table
            app = shop_app(ail, pool, stock_table)
            statuses, probe, _ = await place_orders(app, ORDERS, timeout=60.0)
            orders = [
                await ail.transactions.store("orders").get(("order", f"o{i}"))
                for i in range(ORDERS)
            ]
        finally:
            await close_pool(driver, pool)
            await ail.aclose()
        return statuses, probe.max_lag, sum(1 for o in orders if o == b"sku-1")

    statuses, max_lag, recorded = await main()
    assert statuses == [201] * ORDERS
    assert stock(params, stock_table) == 5  # exactly one unit per committed order
    assert recorded == ORDERS  # and every order's Redis branch committed with it
    assert xa_prepared(params, namespace) == []
    # A statement run on the loop would stall it for a whole row-lock wait; loosely bounded
    # (a correctness check on a shared 2-core machine, not a latency benchmark).
    assert max_lag < 1.0, f"the event loop stalled for {max_lag:.3f}s"


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_an_async_branch_rolls_back_on_abort(
    driver: str, aof_redis: RedisServer, mariadb_server: MariaDBServer, stock_table: str
) -> None:
    params = dict(mariadb_server.params)
    namespace = new_namespace()

    ail = AsyncInterlock(aof_redis.url, namespace=namespace, registry=None)
    pool = await open_pool(driver, params, size=1)
    async def change_of_mind(raw: object) -> None:
        async with ail.transaction("order") as tx:
            conn = await tx.mysql(raw, resource="stock")
            async with conn.cursor() as cur:
                await cur.execute(f"UPDATE {stock_table} SET qty = 0")
            raise RuntimeError("changed my mind")

    try:
        async with pool.acquire() as raw:
            with pytest.raises(RuntimeError, match="changed my mind"):
                await change_of_mind(raw)
            # The connection is free again: a second, one-branch transaction commits.
            async with ail.transaction("order") as tx:
                conn = await tx.mysql(raw, resource="stock")
                async with conn.cursor() as cur:
                    await cur.execute(f"UPDATE {stock_table} SET qty = qty - 2")
                    await cur.execute(f"SELECT qty FROM {stock_table}")
                    assert await cur.fetchone() == (ORDERS + 3,)
    finally:
        await close_pool(driver, pool)
        await ail.aclose()
    assert stock(params, stock_table) == ORDERS + 3
    assert xa_prepared(params, namespace) == []


@pytest.mark.anyio
async def test_the_pymysql_wrapper_says_how_to_use_it(
    aof_redis: RedisServer, mariadb_server: MariaDBServer
) -> None:
    params = dict(mariadb_server.params)

    ail = AsyncInterlock(aof_redis.url, namespace=new_namespace(), registry=None)
    raw = pymysql.connect(**params)
    try:
        async with ail.transaction("order") as tx:
            conn = await tx.mysql(raw)
            assert conn.raw is raw
            with pytest.raises(TypeError, match=r"async with conn\.cursor"):
                with conn.cursor():
                    pass
            async with conn.cursor() as cur:
                await cur.execute("SELECT 1")
                assert await cur.fetchall() == ((1,),)
        async with ail.transaction("order") as tx:
            assert await tx.mysql(conn) is conn  # the wrapper enlists again as itself
    finally:
        raw.close()
        await ail.aclose()


@pytest.mark.anyio
async def test_sync_code_refuses_an_async_connection(
    aof_redis: RedisServer, mariadb_server: MariaDBServer
) -> None:
    params = dict(mariadb_server.params)

    import aiomysql

    conn = await aiomysql.connect(
        host=params["host"], port=params["port"], user="root", db=params["database"]
    )
    il = Interlock(aof_redis.url, namespace=new_namespace(), registry=None)
    try:
        with pytest.raises(ConfigError, match="AsyncInterlock"), il.transaction("t") as tx:
            tx.mysql(conn)
    finally:
        il.close()
        await conn.ensure_closed()


@pytest.mark.anyio
async def test_an_asyncmy_connection_is_refused_with_the_fix(
    aof_redis: RedisServer, mariadb_server: MariaDBServer
) -> None:
    params = dict(mariadb_server.params)

    import asyncmy

    conn = await asyncmy.connect(
        host=params["host"], port=params["port"], user="root", database=params["database"]
    )
    ail = AsyncInterlock(aof_redis.url, namespace=new_namespace(), registry=None)
    try:
        with pytest.raises(ConfigError, match="pass an aiomysql connection"):
            async with ail.transaction("t") as tx:
                await tx.mysql(conn)
    finally:
        conn.close()
        await ail.aclose()
