"""A branch blocked behind someone else's prepared branch fails fast with
``TransactionBlocked`` (reason ``lock_timeout``), within the transaction's timeout, instead of
waiting for the database's own lock wait (issue 11 item 5)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import psycopg
import pymysql
import pytest

from _blocked import SERVER_WAIT, Stock
from interlock import AsyncInterlock, Interlock, TransactionAborted, TransactionBlocked
from interlock.testing import capture_logs, metric_value

pytestmark = [pytest.mark.postgres, pytest.mark.mysql]
TIMEOUT = 2.0
CAUSES = {"postgres": psycopg.errors.LockNotAvailable, "mysql": pymysql.err.OperationalError}


def _enlist(tx: Any, stock: Stock, conn: Any) -> Any:
    return tx.postgres(conn) if stock.kind == "postgres" else tx.mysql(conn)


def test_a_statement_blocked_by_a_prepared_branch_raises_transaction_blocked(
    stock: Stock,
) -> None:
    conn = stock.connect()
    with (
        Interlock("mem://", namespace="blocked-sync", recovery=False) as il,
        capture_logs("interlock.txn", logging.INFO) as logs,
        stock.held(),
    ):
        started = time.monotonic()
        with (
            pytest.raises(TransactionBlocked) as caught,
            il.transaction("order", timeout=TIMEOUT) as tx,
        ):
            stock.use(_enlist(tx, stock, conn))
        elapsed = time.monotonic() - started
    conn.close()
    error = caught.value
    assert isinstance(error, TransactionAborted)
    assert (error.reason, error.resource, error.xid) == ("lock_timeout", stock.kind, tx.xid)
    assert isinstance(error.__cause__, CAUSES[stock.kind])
    assert "interlock txn recover" in str(error)
    assert elapsed < TIMEOUT + 1.0 < SERVER_WAIT  # not the server's own lock wait
    assert tx.reason == "lock_timeout"
    assert metric_value(il, "interlock_txn_aborts_total", txn="order", reason="lock_timeout") == 1
    (line,) = [r for r in logs.records if r.get("event.action") == "txn-blocked"]
    assert line["log.level"] == "warning"
    assert line["interlock.txn.reason"] == "lock_timeout"
    assert line["interlock.txn.resource"] == stock.kind
    assert "prepared branch" in line["message"] and "interlock txn recover" in line["message"]
    assert stock.qty() == 5


@pytest.mark.anyio
async def test_the_async_api_raises_it_too(stock: Stock) -> None:
    async def main() -> tuple[BaseException, float]:
        conn = await stock.aconnect()
        async with AsyncInterlock("mem://", namespace="blocked-async", recovery=False) as ail:
            with stock.held():
                started = time.monotonic()
                try:
                    async with ail.transaction("order", timeout=TIMEOUT) as tx:
                        await stock.ause(await _enlist(tx, stock, conn))
                except TransactionBlocked as exc:
                    error: BaseException = exc
                elapsed = time.monotonic() - started
        closing = conn.close()
        if asyncio.iscoroutine(closing):
            await closing
        return error, elapsed

    error, elapsed = await main()
    assert isinstance(error, TransactionBlocked) and error.reason == "lock_timeout"
    assert elapsed < TIMEOUT + 1.0


def test_a_free_row_commits_as_before(stock: Stock) -> None:
    conn = stock.connect()
    with Interlock("mem://", namespace="blocked-free", recovery=False) as il:
        with il.transaction("order", timeout=TIMEOUT) as tx:
            stock.use(_enlist(tx, stock, conn))
    conn.close()
    assert stock.qty() == 4
