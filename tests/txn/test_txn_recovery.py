"""Recovery beyond the crash points: the safety interval, tombstones that fence a late
coordinator, namespaces, in-doubt gauges, the decision log going away, and the
leader-elected recovery worker."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from _bank import Bank, new_namespace, transfer
from _crash import AFTER, BEFORE, NOTHING_LEFT, crash, recover_until_settled
from _hooks import on_event
from prometheus_client import CollectorRegistry

from interlock import ConfigError, Interlock, TransactionTimeout
from interlock.testing import capture_logs, metric_value
from interlock.txn import Decision, TransactionInDoubt
from interlock.txn._xid import new_gtrid
from services import wait_until


def test_an_undecided_transaction_is_left_alone_until_the_safety_interval(
    make_bank: Callable[..., Bank],
) -> None:
    bank = make_bank()
    crash(bank, "txn-prepared")
    registry = CollectorRegistry()
    il = bank.interlock(registry=registry)
    try:
        report = il.recover(safety=3600.0)  # its coordinator might still be deciding
        assert len(report.pending) == 3 and not report.aborted and not report.committed
        assert report.in_doubt == {"unknown": 1}  # undecided: its name is not logged
        assert 0 < report.oldest_in_doubt < 60
        assert metric_value(registry, "interlock_txn_in_doubt", txn="unknown") == 1
        assert metric_value(registry, "interlock_txn_oldest_in_doubt_seconds") > 0
        assert bank.balances() == BEFORE

        recover_until_settled(il)
        assert metric_value(registry, "interlock_txn_in_doubt", txn="unknown") == 0
        assert metric_value(registry, "interlock_txn_oldest_in_doubt_seconds") == 0
        assert metric_value(registry, "interlock_txn_recovered_total", action="aborted") == 3
    finally:
        il.close()
    assert bank.prepared() == NOTHING_LEFT


def test_a_committed_transaction_in_doubt_is_counted_by_name(
    make_bank: Callable[..., Bank],
) -> None:
    bank = make_bank()
    crash(bank, "txn-decided")
    registry = CollectorRegistry()
    il = bank.interlock(registry=registry)
    try:
        listing = il.transactions.in_doubt()
        [decision] = listing["decisions"]
        assert decision["name"] == "transfer" and decision["outcome"] == "commit"
        assert decision["branches"] == ["1@postgres", "2@mysql", "3@redis"]
        assert {b["decision"] for b in listing["prepared"]} == {"commit"}
        report = recover_until_settled(il)
        assert report.forgotten == [decision["xid"]]
        assert metric_value(registry, "interlock_txn_recovered_total", action="committed") == 3
    finally:
        il.close()
    assert bank.balances() == AFTER


def test_recovery_fences_a_coordinator_that_decides_too_late(bank: Bank) -> None:
    """Recovery presumes a slow coordinator dead between its prepare and its decision: the
    abort tombstone it logs first makes the coordinator abort instead of committing."""
    il, rescuer = bank.interlock(), bank.interlock()
    pg, my = bank.pg(), bank.my()
    reports: list[Any] = []
    try:
        with (
            on_event("txn-prepared", lambda _: reports.append(rescuer.recover(safety=0.0))),
            pytest.raises(TransactionTimeout),
        ):
            transfer(bank, il, pg, my, source="postgres", accounts=(0, 1, 2), amount=10)
    finally:
        il.close()
        rescuer.close()
    [report] = reports
    assert {label.split("@")[1] for label in report.aborted} == {"postgres", "redis"}
    assert [label.split("@")[1] for label in report.pending] == ["mysql"]  # still attached
    assert bank.balances() == BEFORE
    assert bank.prepared() == NOTHING_LEFT
    assert len(bank.tombstones()) == 1


def test_recovery_only_touches_its_own_namespace(make_bank: Callable[..., Bank]) -> None:
    ours, theirs = make_bank(), make_bank()
    crash(theirs, "txn-prepared")
    il = ours.interlock()
    try:
        report = il.recover(safety=0.0)
    finally:
        il.close()
    assert not report.aborted and not report.pending and not report.committed
    left = theirs.prepared()
    assert left["postgres"] and left["mysql"] and left["redis"]
    il = theirs.interlock()
    try:
        recover_until_settled(il)
    finally:
        il.close()
    assert theirs.prepared() == NOTHING_LEFT


def test_old_abort_tombstones_are_forgotten(bank: Bank) -> None:
    il = bank.interlock()
    try:
        old, recent = time.time() - 2 * 86400, time.time() - 60
        xids = [new_gtrid(bank.namespace, "x", t) for t in (old, recent)]
        il.transactions.log.decide(Decision(xids[0], "", "abort", old))
        il.transactions.log.decide(Decision(xids[1], "", "abort", recent))
        report = il.recover()
    finally:
        il.close()
    assert report.forgotten == [xids[0]]
    assert bank.tombstones() == [xids[1]]


def test_a_decision_log_outage_leaves_the_transaction_in_doubt_for_recovery(
    bank: Bank, aof_redis: Any
) -> None:
    """Redis (decision log and Redis store) dies after every branch prepared: the outcome
    is unknown, so nothing is rolled back by the coordinator; once Redis is back (its AOF
    kept the staged Redis branch), recovery finds no decision and aborts everywhere."""
    il = bank.interlock(connect_timeout=0.2, socket_timeout=0.2)
    pg, my = bank.pg(), bank.my()
    try:
        with (
            on_event("txn-prepared", lambda _: aof_redis.kill()),
            pytest.raises(TransactionInDoubt) as caught,
        ):
            transfer(bank, il, pg, my, source="postgres", accounts=(0, 1, 2), amount=10)
    finally:
        il.close()
    my.close()  # detaches the prepared MariaDB branch from this session
    aof_redis.start()
    assert bank.prepared()["redis"]  # the staged writes survived the Redis crash
    il = bank.interlock()
    try:
        report = recover_until_settled(il)
    finally:
        il.close()
    assert len(report.aborted) == 3
    assert all(label.startswith(caught.value.xid) for label in report.aborted)
    assert bank.balances() == BEFORE
    assert bank.prepared() == NOTHING_LEFT


def test_the_recovery_worker_runs_in_one_process_of_the_deployment(
    make_bank: Callable[..., Bank],
) -> None:
    bank = make_bank()
    crash(bank, "txn-decided")
    first, second = bank.interlock(), bank.interlock()
    try:
        with capture_logs("interlock.txn") as logs:
            first.transactions.start_recovery(interval=0.1, safety=0.0)
            second.transactions.start_recovery(interval=0.1, safety=0.0)
            wait_until(lambda: bank.prepared() == NOTHING_LEFT, 15.0, "recovery by the worker")
        leaders = [r for r in logs.records if r["event.action"] == "txn-recovery-leader"]
        assert len(leaders) == 1
        assert first.lock_info("txn-recovery") is not None
    finally:
        first.close()
        second.close()
    assert bank.balances() == AFTER
    assert first.lock_info("txn-recovery") is None  # released at close


def test_expired_mysql_commit_markers_are_purged(bank: Bank) -> None:
    il = bank.interlock()
    pg, my = bank.pg(), bank.my()
    try:
        tx = transfer(bank, il, pg, my, source="postgres", accounts=(0, 1, 2), amount=1)
        admin = bank.my(autocommit=True)
        with admin.cursor() as cur:
            cur.execute(
                "INSERT INTO interlock_xa_branches (gtrid, bqual, created)"
                " VALUES (%s, '1', NOW() - INTERVAL 8 DAY)",
                [f"{tx.xid}-old"],
            )
        il.recover()
        with admin.cursor() as cur:
            cur.execute(
                "SELECT gtrid FROM interlock_xa_branches WHERE gtrid LIKE %s", [f"{tx.xid}%"]
            )
            left = [row[0].decode() for row in cur.fetchall()]
    finally:
        il.close()
    assert left == [tx.xid]  # the week-old marker is gone, the fresh one kept


def test_the_recovery_worker_starts_by_itself_unless_turned_off(redis_url: str) -> None:
    """It starts with the first transaction (or resource); ``recovery=False`` opts out and
    leaves ``start_recovery()`` / ``recover()`` to the app."""
    on = Interlock(redis_url, namespace=new_namespace(), registry=None, durability="relaxed")
    off = Interlock(
        redis_url, namespace=new_namespace(), registry=None, durability="relaxed", recovery=False
    )
    try:
        for il in (on, off):
            with il.transaction("t") as tx:
                tx.redis("s").set("k", 1)
        wait_until(lambda: on.lock_info("txn-recovery") is not None, 10.0, "a recovery leader")
        assert on.transactions.recovery_running
        assert not off.transactions.recovery_running
        assert off.lock_info("txn-recovery") is None
    finally:
        on.close()
        off.close()
    assert not on.transactions.recovery_running  # stopped at close, lease released
    assert on.lock_info("txn-recovery") is None


def test_the_recovery_option_is_validated() -> None:
    with pytest.raises(ConfigError, match="recovery='yes'"):
        Interlock(registry=None, recovery="yes")  # type: ignore[arg-type]


def test_standby_recovery_workers_do_not_count_lock_timeouts(redis_url: str) -> None:
    """A standby looks whether the leader's lease is there before trying to take it, so
    the lock metrics (and the lock-timeout alert) see no failed acquisitions."""
    namespace = new_namespace()
    leader, standby = (
        Interlock(redis_url, namespace=namespace, durability="relaxed", recovery=False)
        for _ in range(2)
    )
    try:
        leader.transactions.start_recovery(interval=0.1)
        wait_until(lambda: leader.lock_info("txn-recovery") is not None, 10.0, "a leader")

        def timeouts() -> float:
            return metric_value(standby, "interlock_lock_acquire_seconds_count",
                                lock="txn-recovery", result="timeout")  # fmt: skip

        with capture_logs("interlock.txn") as logs:
            standby.transactions.start_recovery(interval=0.1)
            wait_until(lambda: timeouts() > 0 or len(_standing_by(logs)) >= 5, 10.0, "passes")
    finally:
        standby.close()
        leader.close()
    assert timeouts() == 0


def _standing_by(logs: Any) -> list[dict[str, Any]]:
    return [r for r in logs.records if r["event.action"] == "txn-recovery-standby"]
