"""Crash points: the coordinator is a real process, SIGKILLed right after each step of two-phase
commit. Recovery, run here, must then leave every transfer all-or-nothing across PostgreSQL,
MariaDB and Redis (the bank total is constant) and no prepared branch of ours behind."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest
from _bank import Bank
from _crash import AFTER, BEFORE, NOTHING_LEFT, crash, recover_until_settled

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
