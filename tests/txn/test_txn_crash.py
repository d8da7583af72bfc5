"""Crash points: the coordinator is a real process, SIGKILLed right after each step of two-phase
commit. Recovery, run here, must then leave every transfer all-or-nothing across PostgreSQL,
MariaDB and Redis (the bank total is constant) and no prepared branch of ours behind."""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg
import pymysql
import pytest
from _bank import Bank
from _crash import AFTER, BEFORE, NOTHING_LEFT, crash, recover_until_settled

from interlock import Interlock
from interlock.testing import capture_logs

POINTS = [
    ("txn-branch-prepared:postgres", BEFORE),
    ("txn-branch-prepared:mysql", BEFORE),
    ("txn-branch-prepared:redis", BEFORE),
    ("txn-prepared", BEFORE),  # every branch prepared, no decision yet
    ("txn-decided", AFTER),
    ("txn-branch-committed:postgres", AFTER),
    ("txn-branch-committed:mysql", AFTER),
    ("txn-branch-committed:redis", AFTER),
]


@pytest.mark.parametrize(("point", "expected"), POINTS, ids=[p for p, _ in POINTS])
def test_coordinator_killed_at_crash_point(
    make_bank: Callable[..., Bank], point: str, expected: dict[str, list[int]]
) -> None:
    bank = make_bank()
    crash(bank, point)
    left = bank.prepared()
    # Undecided: some branch prepared. Decided: the decision is logged (phase two may have
    # finished on every branch just before the kill; recovery still has to forget it).
    assert bool(left["decisions"]) == (expected is AFTER)
    assert expected is AFTER or any(left[s] for s in ("postgres", "mysql", "redis"))

    il = bank.interlock()
    try:
        report = recover_until_settled(il)
    finally:
        il.close()

    assert bank.balances() == expected
    assert bank.total() == bank.expected_total
    assert bank.prepared() == NOTHING_LEFT
    assert not report.heuristics and not report.errors
    if expected is AFTER:
        assert not report.aborted
        assert report.forgotten == left["decisions"]
        assert bank.tombstones() == []
    else:
        assert report.aborted and not report.committed
        assert len(bank.tombstones()) == 1  # fences a coordinator that might wake up


@pytest.mark.parametrize(("point", "expected"), [("txn-prepared", BEFORE), ("txn-decided", AFTER)])
def test_crash_points_with_the_postgres_decision_log(
    make_bank: Callable[..., Bank],
    postgres_server: object,
    point: str,
    expected: dict[str, list[int]],
) -> None:
    bank = make_bank(decision_log=postgres_server.dsn)  # type: ignore[attr-defined]
    crash(bank, point)
    il = bank.interlock()
    try:
        recover_until_settled(il)
    finally:
        il.close()
    assert bank.balances() == expected
    assert bank.prepared() == NOTHING_LEFT


def test_branches_resolved_by_hand_against_the_decision_are_heuristic(
    make_bank: Callable[..., Bank],
) -> None:
    """After the commit decision the coordinator dies; an operator rolls back the PostgreSQL
    and MariaDB branches by hand. Recovery commits Redis and reports both heuristics."""
    bank = make_bank()
    crash(bank, "txn-decided")
    left = bank.prepared()
    with psycopg.connect(bank.pg_dsn, autocommit=True) as conn:
        conn.execute(f"ROLLBACK PREPARED '{left['postgres'][0]}'")
    my = bank.my(autocommit=True)
    gtrid = left["decisions"][0]
    bqual = left["mysql"][0][len(gtrid) :]  # XA RECOVER shows gtrid and bqual joined
    with my.cursor() as cur:
        cur.execute(f"XA ROLLBACK '{gtrid}','{bqual}',{0x494C}")

    il = bank.interlock()
    try:
        with capture_logs("interlock.txn") as logs:
            report = recover_until_settled(il)
    finally:
        il.close()
    found = {(h.resource, h.decision, h.actual) for h in report.heuristics}
    assert found == {("postgres", "commit", "aborted"), ("mysql", "commit", "aborted")}
    errors = [r for r in logs.records if r["log.level"] == "error"]
    assert {r["event.action"] for r in errors} == {"txn-heuristic"}
    assert all(r["interlock.txn.xid"] == gtrid for r in errors)
    balances = bank.balances()
    assert balances["redis"] == AFTER["redis"]  # the branch still prepared was committed
    assert balances["postgres"] == BEFORE["postgres"]
    assert bank.prepared() == NOTHING_LEFT  # the decision is forgotten once reported


def test_an_instance_with_registered_resources_recovers_by_itself(
    make_bank: Callable[..., Bank],
) -> None:
    """The coordinator is SIGKILLed between the commit decision and phase two, leaving a
    prepared PostgreSQL transaction, an XA branch and a Redis branch. A new instance with
    the resources registered — default options, nobody calls ``recover()`` — finishes them
    within a bounded time (its leader-elected recovery worker runs by default)."""
    bank = make_bank()
    crash(bank, "txn-decided")
    assert bank.prepared()["postgres"]
    il = Interlock(bank.redis_url, namespace=bank.namespace, registry=None)
    il.transactions.add_postgres("postgres", bank.pg_dsn)
    il.transactions.add_mysql("mysql", lambda: pymysql.connect(**bank.mysql))
    try:
        with capture_logs("interlock.txn") as logs:
            deadline = time.monotonic() + 15.0
            while (left := bank.prepared()) != NOTHING_LEFT and time.monotonic() < deadline:
                time.sleep(0.1)  # polling the databases: the observable state
    finally:
        il.close()
        if bank.prepared() != NOTHING_LEFT:  # release the rows, or dropping the tables hangs
            cleaner = bank.interlock()
            try:
                recover_until_settled(cleaner)
            finally:
                cleaner.close()
    assert left == NOTHING_LEFT, f"still in doubt after 15 s: {left}"
    assert bank.balances() == AFTER
    assert bank.total() == bank.expected_total
    recovered = {r["interlock.txn.resource"] for r in logs.records
                 if r["event.action"] == "txn-recovered"}  # fmt: skip
    assert recovered == {"postgres", "mysql", "redis"}
