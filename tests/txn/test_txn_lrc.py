"""Last-resource commit: with the decision log in PostgreSQL, the PostgreSQL branch on the
log's own database is not prepared; the decision row is inserted through its connection and
committed with its work, in one local COMMIT. Commit path, votes, crash points (a real
coordinator process SIGKILLed before and after that COMMIT), an unknown COMMIT outcome, and
the race with recovery's abort tombstone."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import psycopg
import pytest
from _bank import Bank, transfer
from _crash import AFTER, BEFORE, crash, recover_until_settled
from _hooks import on_event, xid_of

from interlock import TransactionAborted, TransactionTimeout
from interlock.txn import State, TransactionInDoubt
from interlock.txn._records import Decision
from services import PostgresServer

NOTHING_PREPARED = {"postgres": [], "mysql": [], "redis": []}


@pytest.fixture
def lrc_bank(make_bank: Callable[..., Bank], postgres_server: PostgresServer) -> Bank:
    """A bank whose decision log is the PostgreSQL database of its PostgreSQL accounts."""
    return make_bank(decision_log=postgres_server.dsn)


def _prepared(bank: Bank) -> dict[str, list[str]]:
    left = bank.prepared()
    del left["decisions"]  # the Redis log's; this bank's decisions are in PostgreSQL
    return left


def _decisions(bank: Bank) -> list[tuple[str, str]]:
    with psycopg.connect(bank.pg_dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT xid, outcome FROM interlock_txn_decisions WHERE namespace = %s"
            " ORDER BY created",
            [bank.namespace],
        ).fetchall()
    return [(str(x), str(o)) for x, o in rows]


class _Watch(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.events: list[tuple[str, str | None, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.events.append(
            (
                str(getattr(record, "event.action", "")),
                getattr(record, "interlock.txn.resource", None),
                record.getMessage(),
            )
        )


def _watching() -> tuple[_Watch, Callable[[], None]]:
    logger = logging.getLogger("interlock.txn")
    handler, level = _Watch(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)

    def stop() -> None:
        logger.removeHandler(handler)
        logger.setLevel(level)

    return handler, stop


def test_the_branch_on_the_log_database_commits_last_with_the_decision(lrc_bank: Bank) -> None:
    bank = lrc_bank
    il = bank.interlock()
    pg, my = bank.pg(), bank.my()
    watch, stop = _watching()
    try:
        tx = transfer(bank, il, pg, my, source="postgres", accounts=(0, 1, 2), amount=10)
        assert tx.state is State.COMMITTED
        first = tx.xid
        prepared = [(a, r) for a, r, _ in watch.events if a == "txn-branch-prepared"]
        assert sorted(r or "" for _, r in prepared) == ["mysql", "redis"]  # not postgres
        last = [m for a, r, m in watch.events if a == "txn-branch-committed" and r == "postgres"]
        assert last and "last resource" in last[0]
        # The decision row was committed with the PostgreSQL work.
        assert _decisions(bank) == [(first, "commit")]
        # The next transaction removes it in the same COMMIT as its own decision.
        tx = transfer(bank, il, pg, my, source="mysql", accounts=(3, 3, 3), amount=1)
        assert _decisions(bank) == [(tx.xid, "commit")]
    finally:
        stop()
        il.close()
    assert bank.total() == bank.expected_total
    assert _prepared(bank) == NOTHING_PREPARED
    assert _decisions(bank) == []  # forgotten at close


def test_opting_out_prepares_the_branch(lrc_bank: Bank) -> None:
    bank = lrc_bank
    il = bank.interlock()
    pg, my = bank.pg(), bank.my()
    watch, stop = _watching()
    try:
        with il.transaction("transfer") as tx:
            tx.postgres(pg, last_resource=False).execute(
                f"UPDATE {bank.table} SET balance = balance - 2 WHERE id = 0"
            )
            with tx.mysql(my).cursor() as cur:
                cur.execute(f"UPDATE {bank.table} SET balance = balance + 2 WHERE id = 0")
    finally:
        stop()
        il.close()
    prepared = sorted(r or "" for a, r, _ in watch.events if a == "txn-branch-prepared")
    assert prepared == ["mysql", "postgres"]
    assert bank.total() == bank.expected_total


def test_a_branch_on_another_database_is_prepared(make_bank: Callable[..., Bank]) -> None:
    bank = make_bank()  # decision log on Redis: no last resource
    il = bank.interlock()
    watch, stop = _watching()
    try:
        transfer(bank, il, bank.pg(), bank.my(), source="postgres", accounts=(0, 0, 0), amount=1)
    finally:
        stop()
        il.close()
    prepared = sorted(r or "" for a, r, _ in watch.events if a == "txn-branch-prepared")
    assert prepared == ["mysql", "postgres", "redis"]


def test_another_branch_voting_no_commits_nothing(lrc_bank: Bank) -> None:
    bank = lrc_bank
    il = bank.interlock()
    try:
        with pytest.raises(TransactionAborted) as caught:
            # Redis cannot pay 2 * 600 from 1000: it votes no at prepare.
            transfer(bank, il, bank.pg(), bank.my(), source="redis", accounts=(0, 0, 0), amount=600)
    finally:
        il.close()
    assert caught.value.reason == "vote_no"
    assert bank.balances() == {s: [1000] * 4 for s in ("postgres", "mysql", "redis")}
    assert _prepared(bank) == NOTHING_PREPARED
    assert _decisions(bank) == []


def test_the_last_resource_refusing_at_commit_aborts_everywhere(lrc_bank: Bank) -> None:
    bank = lrc_bank
    with psycopg.connect(bank.pg_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {bank.table}_u (v int UNIQUE DEFERRABLE INITIALLY DEFERRED)")
        conn.execute(f"INSERT INTO {bank.table}_u VALUES (1)")
    il = bank.interlock()
    pg, my = bank.pg(), bank.my()

    def duplicate() -> None:
        with il.transaction("transfer") as tx:
            tx.postgres(pg).execute(f"INSERT INTO {bank.table}_u VALUES (1)")  # fails at COMMIT
            with tx.mysql(my).cursor() as cur:
                cur.execute(f"UPDATE {bank.table} SET balance = balance + 5 WHERE id = 0")

    try:
        with pytest.raises(TransactionAborted) as caught:
            duplicate()
        assert caught.value.reason == "vote_no"
        # The connection is usable again.
        transfer(bank, il, pg, my, source="postgres", accounts=(1, 1, 1), amount=1)
    finally:
        il.close()
        with psycopg.connect(bank.pg_dsn, autocommit=True) as conn:
            conn.execute(f"DROP TABLE {bank.table}_u")
    assert bank.balances()["mysql"][0] == 1000
    assert bank.total() == bank.expected_total
    assert _prepared(bank) == NOTHING_PREPARED
    assert _decisions(bank) == []


def test_recovery_tombstone_first_wins_over_the_last_resource(lrc_bank: Bank) -> None:
    """Recovery presumed the coordinator dead and logged abort between prepare and the
    last-resource commit: the decision insert conflicts, the COMMIT rolls back, and every
    branch aborts."""
    bank = lrc_bank
    il = bank.interlock()
    pg, my = bank.pg(), bank.my()

    def fence(record: logging.LogRecord) -> None:
        xid = xid_of(record)
        won = il.transactions.log.decide(Decision(xid, "", "abort", time.time()))
        assert won.outcome == "abort"

    try:
        with on_event("txn-prepared", fence), pytest.raises(TransactionTimeout):
            transfer(bank, il, pg, my, source="postgres", accounts=(0, 1, 2), amount=10)
        # The connection is usable again.
        transfer(bank, il, pg, my, source="mysql", accounts=(3, 3, 3), amount=1)
    finally:
        il.close()
    balances = bank.balances()
    assert balances["postgres"][0] == 1000 and balances["mysql"][1] == 1000
    assert balances["redis"][2] == 1000
    assert bank.total() == bank.expected_total
    assert _prepared(bank) == NOTHING_PREPARED
    assert [o for _, o in _decisions(bank)] == ["abort"]  # the tombstone stays


def test_an_unknown_last_resource_commit_is_in_doubt_and_recovered(lrc_bank: Bank) -> None:
    """The last-resource connection dies before its COMMIT reaches the server: the outcome
    is unknown to the coordinator; recovery finds no decision and aborts the others."""
    bank = lrc_bank
    il = bank.interlock()
    pg, my = bank.pg(), bank.my()
    pid = pg.info.backend_pid

    def kill(record: logging.LogRecord) -> None:
        with psycopg.connect(bank.pg_dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", [pid])

    try:
        with on_event("txn-prepared", kill), pytest.raises(TransactionInDoubt):
            transfer(bank, il, pg, my, source="postgres", accounts=(0, 1, 2), amount=10)
        assert _prepared(bank)["mysql"]  # the others wait for recovery
        my.close()  # MariaDB keeps a prepared branch attached to its session until then
        recover_until_settled(il)
    finally:
        il.close()
    assert bank.balances() == BEFORE
    assert _prepared(bank) == NOTHING_PREPARED


LRC_POINTS = [
    ("txn-branch-prepared:mysql", BEFORE),
    ("txn-prepared", BEFORE),  # every other branch prepared; the last resource not committed
    ("txn-branch-committed:postgres", AFTER),  # the last resource committed with the decision
    ("txn-decided", AFTER),
    ("txn-branch-committed:mysql", AFTER),
    ("txn-branch-committed:redis", AFTER),
]


@pytest.mark.parametrize(("point", "expected"), LRC_POINTS, ids=[p for p, _ in LRC_POINTS])
def test_coordinator_killed_around_the_last_resource_commit(
    lrc_bank: Bank, point: str, expected: dict[str, list[int]]
) -> None:
    bank = lrc_bank
    crash(bank, point)
    left = _prepared(bank)
    assert left["postgres"] == []  # the last resource is never prepared
    decided = [o for _, o in _decisions(bank)]
    assert decided == (["commit"] if expected is AFTER else [])

    il = bank.interlock()
    try:
        report = recover_until_settled(il)
    finally:
        il.close()

    assert bank.balances() == expected
    assert bank.total() == bank.expected_total
    assert _prepared(bank) == NOTHING_PREPARED
    assert not report.heuristics and not report.errors
    if expected is AFTER:
        assert not report.aborted
        assert _decisions(bank) == []  # forgotten once every other branch was resolved
    else:
        assert report.aborted and not report.committed
        assert [o for _, o in _decisions(bank)] == ["abort"]  # fences a late coordinator
