"""Commit and abort across PostgreSQL, MariaDB and Redis: outcomes, votes, deadlines,
metrics, log events — with the sync and the async API."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from _bank import Bank, InsufficientFunds, transfer
from _hooks import on_event, xid_of
from prometheus_client import CollectorRegistry

from interlock import (
    AsyncInterlock,
    ConfigError,
    HeuristicOutcome,
    Interlock,
    TransactionAborted,
    TransactionError,
    TransactionTimeout,
    request_context,
)
from interlock.testing import capture_logs, metric_value
from interlock.txn import State
from services import PostgresServer

UNCHANGED = {"postgres": [1000] * 4, "mysql": [1000] * 4, "redis": [1000] * 4}
NOTHING_LEFT = {"postgres": [], "mysql": [], "redis": [], "decisions": []}


def _metrics(bank: Bank) -> tuple[Interlock, CollectorRegistry]:
    registry = CollectorRegistry()
    return bank.interlock(registry=registry), registry


def test_transfer_commits_in_every_store_and_leaves_nothing_behind(bank: Bank) -> None:
    il, registry = _metrics(bank)
    pg, my = bank.pg(), bank.my()
    try:
        tx = transfer(bank, il, pg, my, source="postgres", accounts=(0, 1, 2), amount=10)
    finally:
        il.close()
    assert tx.state is State.COMMITTED
    assert bank.balances() == {
        "postgres": [980, 1000, 1000, 1000],
        "mysql": [1000, 1010, 1000, 1000],
        "redis": [1000, 1000, 1010, 1000],
    }
    assert bank.prepared() == NOTHING_LEFT  # no branch, no decision left
    assert metric_value(registry, "interlock_txn_total", txn="transfer", outcome="committed") == 1
    for phase in ("prepare", "decide", "commit"):
        count = metric_value(
            registry, "interlock_txn_phase_seconds_count", txn="transfer", phase=phase
        )
        assert count == 1, phase
    # The connections are free for the next transaction.
    il = bank.interlock()
    try:
        transfer(bank, il, pg, my, source="mysql", accounts=(3, 3, 3), amount=1)
    finally:
        il.close()
    assert bank.total() == bank.expected_total


@pytest.mark.anyio
async def test_async_transfer_commits(bank: Bank) -> None:
    async def main() -> State:
        ail = AsyncInterlock(bank.redis_url, namespace=bank.namespace, registry=None)
        pg = await psycopg.AsyncConnection.connect(bank.pg_dsn)
        my = bank.my()
        try:
            async with ail.transaction("transfer") as tx:
                conn = await tx.postgres(pg)
                await conn.execute(f"UPDATE {bank.table} SET balance = balance - 2 WHERE id = 0")
                async with (await tx.mysql(my)).cursor() as cur:  # PyMySQL, on a thread
                    await cur.execute(f"UPDATE {bank.table} SET balance = balance + 1 WHERE id = 0")
                tx.redis("bank").incrby(0, 1)
                assert await tx.redis("bank").get(0) == b"1000"  # staged, not visible yet
            return tx.state
        finally:
            await pg.close()
            my.close()
            await ail.aclose()

    assert await main() is State.COMMITTED
    balances = bank.balances()
    firsts = (balances["postgres"][0], balances["mysql"][0], balances["redis"][0])
    assert firsts == (998, 1001, 1001)
    assert bank.prepared() == NOTHING_LEFT


def test_an_exception_in_the_block_aborts_everywhere(bank: Bank) -> None:
    il, registry = _metrics(bank)
    pg, my = bank.pg(), bank.my()
    with pytest.raises(InsufficientFunds):
        # MariaDB cannot pay 2 * 600 from 1000: the app raises inside the block.
        transfer(bank, il, pg, my, source="mysql", accounts=(0, 0, 0), amount=600)
    il.close()
    assert bank.balances() == UNCHANGED
    assert bank.prepared() == NOTHING_LEFT
    assert metric_value(registry, "interlock_txn_aborts_total", reason="client") == 1
    assert metric_value(registry, "interlock_txn_total", outcome="aborted") == 1


def test_a_redis_vote_no_aborts_everywhere(bank: Bank) -> None:
    il, registry = _metrics(bank)
    pg, my = bank.pg(), bank.my()
    with pytest.raises(TransactionAborted) as caught:
        transfer(bank, il, pg, my, source="redis", accounts=(0, 0, 0), amount=600)
    il.close()
    assert caught.value.reason == "vote_no"
    assert "redis" in str(caught.value)
    assert bank.balances() == UNCHANGED
    assert bank.prepared() == NOTHING_LEFT
    assert metric_value(registry, "interlock_txn_aborts_total", reason="vote_no") == 1


def test_postgres_refusing_to_prepare_votes_no(bank: Bank) -> None:
    with psycopg.connect(bank.pg_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {bank.table}_u (v int UNIQUE DEFERRABLE INITIALLY DEFERRED)")
    il = bank.interlock()
    pg, my = bank.pg(), bank.my()

    def duplicate() -> None:
        with il.transaction("dup") as tx:
            tx.postgres(pg).execute(f"INSERT INTO {bank.table}_u VALUES (1), (1)")
            with tx.mysql(my).cursor() as cur:
                cur.execute(f"UPDATE {bank.table} SET balance = 0 WHERE id = 0")

    try:
        with pytest.raises(TransactionAborted) as caught:
            duplicate()
    finally:
        il.close()
    assert caught.value.reason == "vote_no"  # the deferred check failed at PREPARE
    assert bank.balances() == UNCHANGED
    assert bank.prepared() == NOTHING_LEFT
    with psycopg.connect(bank.pg_dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE {bank.table}_u")


def test_a_failed_postgres_branch_votes_no_instead_of_rolling_back_silently(bank: Bank) -> None:
    il = bank.interlock()
    pg, my = bank.pg(), bank.my()

    def swallowing_an_error() -> None:
        with il.transaction("t") as tx:
            conn = tx.postgres(pg)
            conn.execute(f"UPDATE {bank.table} SET balance = 1 WHERE id = 0")
            with pytest.raises(psycopg.errors.DivisionByZero):
                conn.execute("SELECT 1 / 0")  # the app swallows the error
            with tx.mysql(my).cursor() as cur:
                cur.execute(f"UPDATE {bank.table} SET balance = 1 WHERE id = 0")

    try:
        with pytest.raises(TransactionAborted, match="vote_no"):
            swallowing_an_error()
    finally:
        il.close()
    assert bank.balances() == UNCHANGED


class _Hung:
    """A participant whose prepare hangs until released (a stuck remote service)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.aborted = threading.Event()

    def prepare(self, xid: str) -> bool:
        self.release.wait(10.0)
        return True

    def commit(self, xid: str) -> None:
        raise AssertionError("a timed-out transaction must not commit")

    def abort(self, xid: str) -> None:
        self.aborted.set()


def test_a_participant_that_does_not_vote_in_time_aborts_everywhere(bank: Bank) -> None:
    il, registry = _metrics(bank)
    pg, my = bank.pg(), bank.my()
    hung = _Hung()

    def with_a_hung_participant() -> None:
        with il.transaction("t", timeout=0.5) as tx:
            tx.postgres(pg).execute(f"UPDATE {bank.table} SET balance = 0 WHERE id = 0")
            with tx.mysql(my).cursor() as cur:
                cur.execute(f"UPDATE {bank.table} SET balance = 0 WHERE id = 0")
            tx.redis("bank").set(0, 0)
            tx.enlist(hung, resource="remote")

    started = time.monotonic()
    try:
        with pytest.raises(TransactionTimeout) as caught:
            with_a_hung_participant()
        elapsed = time.monotonic() - started
    finally:
        hung.release.set()
        il.close()
    assert elapsed < 3.0  # the deadline, not the hung participant, bounds the wait
    assert caught.value.reason == "timeout"
    assert hung.aborted.wait(5.0)  # told to abort once it answered
    assert bank.balances() == UNCHANGED
    assert bank.prepared() == NOTHING_LEFT
    assert metric_value(registry, "interlock_txn_aborts_total", reason="timeout") == 1


@pytest.mark.anyio
async def test_async_participant_timeout_cancels_the_vote_and_aborts(bank: Bank) -> None:
    class HungAsync:
        aborted = False

        async def prepare(self, xid: str) -> bool:
            await asyncio.Event().wait()
            return True

        async def commit(self, xid: str) -> None:
            raise AssertionError("must not commit")

        async def abort(self, xid: str) -> None:
            self.aborted = True

    hung = HungAsync()

    ail = AsyncInterlock(bank.redis_url, namespace=bank.namespace, registry=None)
    pg = await psycopg.AsyncConnection.connect(bank.pg_dsn)

    async def with_a_hung_participant() -> None:
        async with ail.transaction("t", timeout=0.3) as tx:
            conn = await tx.postgres(pg)
            await conn.execute(f"UPDATE {bank.table} SET balance = 0 WHERE id = 0")
            tx.enlist(hung, resource="remote")

    try:
        with pytest.raises(TransactionTimeout):
            await with_a_hung_participant()
    finally:
        await pg.close()
        await ail.aclose()
    assert hung.aborted
    assert bank.balances() == UNCHANGED
    assert bank.prepared() == NOTHING_LEFT


def test_every_state_change_is_a_json_event_with_the_xid(bank: Bank) -> None:
    il = bank.interlock()
    pg, my = bank.pg(), bank.my()
    with capture_logs("interlock.txn") as logs, request_context(request_id="r1") as ctx:
        tx = transfer(bank, il, pg, my, source="postgres", accounts=(0, 0, 0), amount=1)
    il.close()
    records = [r for r in logs.records if r.get("interlock.txn.xid") == tx.xid]
    actions = [r["event.action"] for r in records]
    assert actions[0] == "txn-started"
    assert actions.count("txn-enlisted") == 3
    assert actions.count("txn-branch-prepared") == 3
    assert actions.count("txn-branch-committed") == 3
    assert actions.index("txn-prepared") < actions.index("txn-decided")
    assert actions.index("txn-decided") < actions.index("txn-committed")
    assert actions[-1] == "txn-committed"
    assert all(r["interlock.txn.name"] == "transfer" for r in records)
    resources = {r.get("interlock.txn.resource") for r in records} - {None}
    assert resources == {"postgres", "mysql", "redis"}
    assert ctx.events["txn"] == {
        "name": "transfer",
        "xid": tx.xid,
        "outcome": "committed",
        "reason": None,
    }


def test_on_commit_callbacks_run_after_commit_only(bank: Bank) -> None:
    il = bank.interlock()
    pg = bank.pg()
    seen: list[str] = []
    try:
        with il.transaction("t") as tx:
            tx.postgres(pg).execute(f"UPDATE {bank.table} SET balance = 5 WHERE id = 0")
            tx.on_commit(lambda: seen.append("committed"))
            assert seen == []
        with pytest.raises(RuntimeError), il.transaction("t") as tx:
            raise RuntimeError(tx.on_commit(lambda: seen.append("aborted?")))
    finally:
        il.close()
    assert seen == ["committed"]


def test_explicit_commit_and_abort_inside_the_block(bank: Bank) -> None:
    il = bank.interlock()
    pg = bank.pg()
    try:
        with il.transaction("t") as tx:
            tx.postgres(pg).execute(f"UPDATE {bank.table} SET balance = 7 WHERE id = 0")
            tx.abort()
            with pytest.raises(TransactionError, match="aborted"):
                tx.commit()
        assert tx.state is State.ABORTED and tx.reason == "client"
        with il.transaction("t") as tx:
            tx.redis("bank").set(0, 7)
            tx.commit()
            assert tx.state is State.COMMITTED
        with il.transaction("nothing") as empty:
            pass
        assert empty.state is State.COMMITTED
    finally:
        il.close()
    assert bank.balances()["postgres"][0] == 1000
    assert bank.balances()["redis"][0] == 7


def test_enlisting_a_connection_that_cannot_take_part_says_how_to_fix_it(bank: Bank) -> None:
    il = bank.interlock()
    try:
        with psycopg.connect(bank.pg_dsn, autocommit=True) as auto, il.transaction("t") as tx:
            with pytest.raises(ConfigError, match="autocommit=False"):
                tx.postgres(auto)
        with bank.pg() as busy, il.transaction("t") as tx:
            busy.execute("SELECT 1")
            with pytest.raises(ConfigError, match="open transaction"):
                tx.postgres(busy)
        my = bank.my()
        with my.cursor() as cur:
            cur.execute(f"UPDATE {bank.table} SET balance = 3 WHERE id = 0")
        with il.transaction("t") as tx, pytest.raises(ConfigError, match="open transaction"):
            tx.mysql(my)
        my.rollback()
    finally:
        il.close()


def test_postgres_without_prepared_transactions_is_refused_with_the_fix(
    aof_redis: Any,
) -> None:
    with PostgresServer(settings={"max_prepared_transactions": "0"}) as server:
        il = Interlock(aof_redis.url, namespace="noprep", registry=None)
        try:
            with psycopg.connect(server.dsn) as conn, il.transaction("t") as tx:
                with pytest.raises(ConfigError, match="max_prepared_transactions") as caught:
                    tx.postgres(conn)
                assert "ALTER SYSTEM SET max_prepared_transactions" in str(caught.value)
            il.transactions.add_postgres("postgres", server.dsn)
            with pytest.raises(ConfigError, match="max_prepared_transactions"):
                il.transactions.check()
        finally:
            il.close()


def test_a_branch_rolled_back_by_hand_during_commit_is_a_heuristic_outcome(bank: Bank) -> None:
    """Between the decision and phase two, an operator rolls the PostgreSQL branch back."""
    il, registry = _metrics(bank)
    pg, my = bank.pg(), bank.my()
    with capture_logs("interlock.txn") as logs, on_event("txn-decided", _by_hand(bank, "ROLLBACK")):
        try:
            with pytest.raises(HeuristicOutcome, match="aborted although the decision is commit"):
                transfer(bank, il, pg, my, source="postgres", accounts=(0, 0, 0), amount=5)
        finally:
            il.close()
    balances = bank.balances()
    firsts = (balances["postgres"][0], balances["mysql"][0], balances["redis"][0])
    assert firsts == (1000, 1005, 1005)
    assert metric_value(registry, "interlock_txn_recovered_total", action="heuristic") == 1
    errors = [r for r in logs.records if r["log.level"] == "error"]
    assert [r["event.action"] for r in errors] == ["txn-heuristic"]
    assert bank.prepared() == NOTHING_LEFT


def test_postgres_unknown_gid_in_phase_two_is_resolved_not_guessed(bank: Bank) -> None:
    """Recovery commits the branch first: the coordinator's commit finds no gid, asks the
    database (txid_status), learns it committed, and reports no heuristic."""
    il = bank.interlock()
    pg = bank.pg()
    try:
        with on_event("txn-decided", _by_hand(bank, "COMMIT")), il.transaction("t") as tx:
            tx.postgres(pg).execute(f"UPDATE {bank.table} SET balance = 1 WHERE id = 0")
            tx.redis("bank").set(0, 1)  # a second branch: two-phase
    finally:
        il.close()
    assert tx.state is State.COMMITTED
    assert bank.balances()["postgres"][0] == 1


# -- helpers -----------------------------------------------------------------------------


def _gids(bank: Bank, xid: str) -> list[str]:
    with psycopg.connect(bank.pg_dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT gid FROM pg_prepared_xacts WHERE starts_with(gid, %s)", [xid]
        ).fetchall()
    return [r[0] for r in rows]


def _by_hand(bank: Bank, verb: str) -> Callable[[logging.LogRecord], None]:
    def resolve(record: logging.LogRecord) -> None:
        with psycopg.connect(bank.pg_dsn, autocommit=True) as conn:
            for gid in _gids(bank, xid_of(record)):
                conn.execute(f"{verb} PREPARED '{gid}'")

    return resolve


def test_a_single_branch_commits_in_one_phase_without_a_decision(bank: Bank) -> None:
    il, registry = _metrics(bank)
    pg, my = bank.pg(), bank.my()
    try:
        with capture_logs("interlock.txn") as logs:
            with il.transaction("pg") as tx:
                tx.postgres(pg).execute(f"UPDATE {bank.table} SET balance = 1 WHERE id = 0")
            with il.transaction("my") as tx, tx.mysql(my).cursor() as cur:
                cur.execute(f"UPDATE {bank.table} SET balance = 1 WHERE id = 0")
            with il.transaction("redis") as tx:
                tx.redis("bank").incrby(0, -999, min=0)
        with pytest.raises(TransactionAborted, match="vote_no"), il.transaction("redis") as tx:
            tx.redis("bank").incrby(0, -2, min=0)  # 1 - 2 < 0: refused
    finally:
        il.close()
    actions = {r["event.action"] for r in logs.records}
    assert "txn-decided" not in actions and "txn-branch-prepared" not in actions
    assert {b[0] for b in bank.balances().values()} == {1}
    assert bank.prepared() == NOTHING_LEFT
    assert metric_value(registry, "interlock_txn_total", outcome="committed") == 3
    assert metric_value(registry, "interlock_txn_phase_seconds_count", phase="prepare") == 0
    assert metric_value(registry, "interlock_txn_aborts_total", txn="redis", reason="vote_no") == 1


def test_a_single_postgres_branch_refused_at_commit_votes_no(bank: Bank) -> None:
    with psycopg.connect(bank.pg_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {bank.table}_u (v int UNIQUE DEFERRABLE INITIALLY DEFERRED)")
    il = bank.interlock()
    pg = bank.pg()

    def duplicate() -> None:
        with il.transaction("dup") as tx:
            tx.postgres(pg).execute(f"INSERT INTO {bank.table}_u VALUES (1), (1)")

    try:
        with pytest.raises(TransactionAborted, match="vote_no"):
            duplicate()
        with il.transaction("ok") as tx:  # the connection is usable again
            tx.postgres(pg).execute(f"INSERT INTO {bank.table}_u VALUES (2)")
    finally:
        il.close()
    with psycopg.connect(bank.pg_dsn, autocommit=True) as conn:
        assert conn.execute(f"SELECT v FROM {bank.table}_u").fetchall() == [(2,)]
        conn.execute(f"DROP TABLE {bank.table}_u")
