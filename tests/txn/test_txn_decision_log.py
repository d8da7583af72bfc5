"""Decision logs: the durability contract is checked at start-up, the first decision wins,
and each namespace sees only its own decisions — on Redis and on PostgreSQL."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from interlock import ConfigError, DurabilityError, Interlock
from interlock._sync.txn.log import RedisDecisionLog
from interlock._sync.txn.log_postgres import PostgresDecisionLog
from interlock.testing import capture_logs, metric_value
from interlock.txn import BranchRef, Decision
from interlock.txn._xid import new_gtrid
from services import PostgresServer, RedisServer


class Recorder:
    """A participant that only records what it was asked to do."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def prepare(self, xid: str) -> bool:
        self.calls.append("prepare")
        return True

    def commit(self, xid: str) -> None:
        self.calls.append("commit")

    def abort(self, xid: str) -> None:
        self.calls.append("abort")


def _commit_one(il: Interlock) -> Recorder:
    recorder = Recorder()
    with il.transaction("t") as tx:
        tx.enlist(recorder, resource="custom")
    return recorder


def _decision(namespace: str, outcome: str = "commit", age: float = 0.0) -> Decision:
    now = time.time() - age
    ref = BranchRef("postgres", "postgres", "1", "42")
    return Decision(new_gtrid(namespace, "c", now), "t", outcome, now, (ref,))  # type: ignore[arg-type]


def test_redis_without_appendfsync_always_is_refused_before_anything_commits(
    redis_url: str,
) -> None:
    il = Interlock(redis_url, namespace=f"n{uuid.uuid4().hex[:8]}", registry=None)
    recorder = Recorder()
    try:
        with pytest.raises(DurabilityError) as caught, il.transaction("t") as tx:
            tx.enlist(recorder, resource="custom")
    finally:
        il.close()
    message = str(caught.value)
    assert "appendfsync always" in message and "durability='relaxed'" in message
    assert recorder.calls == ["abort"]  # refused at start-up: nothing prepared, rolled back


def test_a_refused_decision_log_is_counted_and_logged_as_durability(redis_url: str) -> None:
    """The abort has its own reason, and an ERROR line names the error and the fix."""
    il = Interlock(redis_url, namespace=f"n{uuid.uuid4().hex[:8]}", recovery=False)
    try:
        with capture_logs("interlock.txn") as logs, pytest.raises(DurabilityError):
            with il.transaction("t") as tx:
                tx.enlist(Recorder(), resource="custom")
        aborts = metric_value(il, "interlock_txn_aborts_total", txn="t", reason="durability")
    finally:
        il.close()
    assert aborts == 1.0
    errors = [r for r in logs.records if r["log.level"] == "error"]
    assert [r["event.action"] for r in errors] == ["txn-log-not-durable"]
    assert errors[0]["error.type"] == "DurabilityError"
    assert "appendfsync always" in errors[0]["error.message"]
    assert "durability='relaxed'" in errors[0]["message"]
    assert errors[0]["interlock.txn.reason"] == "durability"
    aborted = [r for r in logs.records if r["event.action"] == "txn-aborted"]
    assert aborted[0]["interlock.txn.reason"] == "durability"


def test_relaxed_durability_warns_and_goes_on(redis_url: str) -> None:
    il = Interlock(
        redis_url, namespace=f"n{uuid.uuid4().hex[:8]}", registry=None, durability="relaxed"
    )
    try:
        with capture_logs("interlock.txn") as logs:
            recorder = _commit_one(il)
    finally:
        il.close()
    assert recorder.calls == ["prepare", "commit"]
    warnings = [r for r in logs.records if r["log.level"] == "warning"]
    assert [r["event.action"] for r in warnings] == ["txn-log-not-durable"]


def test_redis_with_appendfsync_always_passes_the_check(aof_redis: RedisServer) -> None:
    il = Interlock(aof_redis.url, namespace="n", registry=None)
    try:
        il.transactions.check()
        assert _commit_one(il).calls == ["prepare", "commit"]
    finally:
        il.close()


def test_the_embedded_backend_warns_that_decisions_are_not_durable() -> None:
    il = Interlock(f"mem://{uuid.uuid4().hex}", registry=None)
    try:
        with capture_logs("interlock.txn") as logs:
            assert _commit_one(il).calls == ["prepare", "commit"]
    finally:
        il.close()
    assert any(r["event.action"] == "txn-log-not-durable" for r in logs.records)


def test_durability_and_decision_log_options_are_validated() -> None:
    with pytest.raises(ConfigError, match="durability='sometimes'"):
        Interlock(registry=None, durability="sometimes")
    with pytest.raises(ConfigError, match="decision_log="):
        Interlock(registry=None, decision_log="mysql://root@localhost/db")
    with pytest.raises(ConfigError, match="not a decision log"):
        Interlock(registry=None, decision_log=42)


def test_redis_log_first_decision_wins_and_namespaces_are_separate(
    aof_redis: RedisServer,
) -> None:
    il = Interlock(aof_redis.url, namespace="a", registry=None)
    other = Interlock(aof_redis.url, namespace="b", registry=None)
    try:
        log: Any = il.transactions.log
        assert isinstance(log, RedisDecisionLog)
        first = _decision("a")
        assert log.decide(first) == first
        late = Decision(first.xid, "t", "abort", time.time())
        assert log.decide(late) == first  # recovery's tombstone loses to the decision
        assert log.get(first.xid) == first
        assert other.transactions.log.list() == []
        second = _decision("a")
        log.decide(second, [first.xid])  # completed decisions go with the next write
        assert log.list() == [second]
        log.forget([second.xid])
        assert log.list() == []
    finally:
        il.close()
        other.close()


@pytest.fixture
def pg_log(postgres_server: PostgresServer) -> Iterator[tuple[PostgresDecisionLog, str]]:
    table = f"decisions_{uuid.uuid4().hex[:8]}"
    log = PostgresDecisionLog(postgres_server.dsn, "a", durability="relaxed", table=table)
    yield log, table
    log.close()
    with psycopg.connect(postgres_server.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))


def test_postgres_log_refuses_a_server_without_fsync(postgres_server: PostgresServer) -> None:
    log = PostgresDecisionLog(postgres_server.dsn, "a")  # the test server runs fsync=off
    try:
        with pytest.raises(DurabilityError, match="fsync=off") as caught:
            log.check()
    finally:
        log.close()
    assert "durability='relaxed'" in str(caught.value)


def test_postgres_log_creates_its_table_and_first_decision_wins(
    pg_log: tuple[PostgresDecisionLog, str], postgres_server: PostgresServer
) -> None:
    log, table = pg_log
    with capture_logs("interlock.txn") as logs:
        log.check()  # relaxed: warns about fsync=off, creates the table
    assert [r["event.action"] for r in logs.records] == ["txn-log-not-durable"]
    first = _decision("a")
    assert log.decide(first) == first
    assert log.decide(Decision(first.xid, "", "abort", time.time())) == first
    assert log.get(first.xid) == first
    assert log.get("il:a:c:00000000000000000") is None
    other = PostgresDecisionLog(postgres_server.dsn, "b", durability="relaxed", table=table)
    try:
        assert other.list() == []  # another namespace's rows are invisible
        other.forget([first.xid])  # and untouchable
    finally:
        other.close()
    second = _decision("a")
    log.decide(second, [first.xid])
    assert log.list() == [second]
    log.forget([second.xid])
    assert log.list() == []


def test_postgres_log_as_the_instance_decision_log(postgres_server: PostgresServer) -> None:
    il = Interlock(
        registry=None,
        namespace=f"n{uuid.uuid4().hex[:8]}",
        decision_log=postgres_server.dsn,
        durability="relaxed",
    )
    try:
        assert isinstance(il.transactions.log, PostgresDecisionLog)
        assert _commit_one(il).calls == ["prepare", "commit"]
        [decision] = il.transactions.log.list()  # removed with the next decision, or:
    finally:
        il.close()  # at close
    log = PostgresDecisionLog(postgres_server.dsn, il.namespace)
    try:
        assert log.get(decision.xid) is None
    finally:
        log.close()
