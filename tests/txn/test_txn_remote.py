"""Remote participants: two services in real processes, each with its own PostgreSQL database.

The coordinator (this process, or a subprocess killed after its decision) moves money from
an account in its database to an account in the bank service's database; the bank service
(uvicorn + Starlette + InterlockMiddleware) joins the transaction over HTTP. The total over
both databases is constant exactly when every transfer was all-or-nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from interlock import Interlock
from interlock.errors import TransactionAborted
from interlock.txn import RemoteResource
from interlock.txn._remote import Signer
from services import PostgresServer, free_port

HERE = Path(__file__).parent
SECRET = "s3cret-shared-by-both-services"
INITIAL = 1000


class Service:
    """A uvicorn process serving ``_remote_service:app``."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(HERE / f".remote-{self.port}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "_remote_service:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            cwd=HERE,
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
                "IL_SECRET": SECRET,
                **env,
            },
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError((HERE / f".remote-{self.port}.log").read_text())
            time.sleep(0.05)  # readiness poll of a starting server, not synchronization

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        (HERE / f".remote-{self.port}.log").unlink(missing_ok=True)


def _dsn(server: PostgresServer, db: str) -> str:
    return server.dsn.rsplit("/", 1)[0] + "/" + db


@pytest.fixture(scope="module")
def databases(postgres_server: PostgresServer) -> Iterator[dict[str, str]]:
    """Two databases on the one server: the coordinator's and the bank service's."""
    tag = uuid.uuid4().hex[:8]
    names = {"coordinator": f"coord_{tag}", "bank": f"bank_{tag}"}
    with psycopg.connect(postgres_server.dsn, autocommit=True) as admin:
        for db in names.values():
            admin.execute(f"CREATE DATABASE {db}")
    dsns = {role: _dsn(postgres_server, db) for role, db in names.items()}
    for dsn in dsns.values():
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE accounts"
                " (id int PRIMARY KEY, balance int NOT NULL CHECK (balance >= 0))"
            )
    yield dsns
    with psycopg.connect(postgres_server.dsn, autocommit=True) as admin:
        for db in names.values():
            for (gid,) in admin.execute(
                "SELECT gid FROM pg_prepared_xacts WHERE database = %s", [db]
            ).fetchall():
                with psycopg.connect(_dsn(postgres_server, db), autocommit=True) as conn:
                    conn.execute(f"ROLLBACK PREPARED '{gid}'")
            admin.execute(f"DROP DATABASE {db} WITH (FORCE)")


@pytest.fixture(scope="module")
def bank(databases: dict[str, str]) -> Iterator[Service]:
    service = Service(
        {"IL_ROLE": "bank", "IL_DSN": databases["bank"], "IL_NAMESPACE": "bank-service"}
    )
    yield service
    service.stop()


@pytest.fixture
def namespace(databases: dict[str, str]) -> str:
    """A fresh coordinator namespace; accounts reset to INITIAL in both databases."""
    for dsn in databases.values():
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DELETE FROM accounts")
            conn.execute(
                "INSERT INTO accounts SELECT g, %s FROM generate_series(1, 2) g", [INITIAL]
            )
    return f"c{uuid.uuid4().hex[:8]}"


def coordinator(namespace: str, databases: dict[str, str], bank: Service) -> Interlock:
    """The coordinator; the tests drive its recovery passes (no worker of its own)."""
    il = Interlock(
        namespace=namespace,
        decision_log=databases["coordinator"],
        durability="relaxed",
        recovery=False,
    )
    il.transactions.add_postgres("local", databases["coordinator"])
    il.transactions.add_resource(RemoteResource("bank", bank.url, secret=SECRET))
    return il


def balances(databases: dict[str, str]) -> dict[str, list[int]]:
    found = {}
    for role, dsn in databases.items():
        with psycopg.connect(dsn, autocommit=True) as conn:
            rows = conn.execute("SELECT balance FROM accounts ORDER BY id").fetchall()
            found[role] = [r[0] for r in rows]
    return found


def prepared(databases: dict[str, str]) -> list[str]:
    names = [dsn.rsplit("/", 1)[1] for dsn in databases.values()]
    with psycopg.connect(databases["coordinator"], autocommit=True) as conn:
        query = "SELECT gid FROM pg_prepared_xacts WHERE database = ANY(%s)"
        return [r[0] for r in conn.execute(query, [names]).fetchall()]


def transfer(il: Interlock, databases: dict[str, str], bank: Service, amount: int) -> Any:
    with psycopg.connect(databases["coordinator"]) as conn, il.transaction("transfer") as tx:
        tx.postgres(conn, resource="local").execute(
            "UPDATE accounts SET balance = balance - %s WHERE id = 1", [amount]
        )
        remote = tx.remote(bank.url, secret=SECRET, resource="bank")
        return remote.request("POST", "/move", json={"account": 1, "amount": amount})


UNCHANGED = {"coordinator": [INITIAL, INITIAL], "bank": [INITIAL, INITIAL]}


def test_commit_reaches_both_databases(
    namespace: str, databases: dict[str, str], bank: Service
) -> None:
    il = coordinator(namespace, databases, bank)
    try:
        response = transfer(il, databases, bank, 10)
        assert response.status_code == 200
        assert response.headers["interlock-txn-vote"] == "yes"
        assert balances(databases) == {"coordinator": [990, INITIAL], "bank": [1010, INITIAL]}
        assert prepared(databases) == []
        report = il.recover()
        assert (report.committed, report.aborted, report.errors) == ([], [], [])
    finally:
        il.close()


def test_remote_vote_no_aborts_everywhere(
    namespace: str, databases: dict[str, str], bank: Service
) -> None:
    il = coordinator(namespace, databases, bank)
    try:
        with pytest.raises(TransactionAborted) as caught:
            # the bank's account would go negative: its handler answers 409, a no vote
            transfer(il, databases, bank, -2 * INITIAL)
        assert caught.value.reason == "vote_no"
        assert balances(databases) == UNCHANGED
        assert prepared(databases) == []
    finally:
        il.close()


def abandon(il: Interlock, databases: dict[str, str], bank: Service, votes: list[str]) -> None:
    with psycopg.connect(databases["coordinator"]) as conn, il.transaction("t") as tx:
        tx.postgres(conn, resource="local").execute(
            "UPDATE accounts SET balance = balance - 5 WHERE id = 1"
        )
        remote = tx.remote(bank.url, secret=SECRET, resource="bank")
        answer = remote.request("POST", "/move", json={"account": 1, "amount": 5})
        votes.append(answer.headers["interlock-txn-vote"])
        raise RuntimeError("changed my mind")


def test_abort_rolls_back_the_prepared_remote_branch(
    namespace: str, databases: dict[str, str], bank: Service
) -> None:
    il = coordinator(namespace, databases, bank)
    try:
        votes = []
        with pytest.raises(RuntimeError, match="changed my mind"):
            abandon(il, databases, bank, votes)
        assert votes == ["yes"]  # the remote branch was prepared before the abort
        assert balances(databases) == UNCHANGED
        assert prepared(databases) == []
    finally:
        il.close()


def test_unsigned_forged_or_replayed_requests_get_401(
    namespace: str, databases: dict[str, str], bank: Service
) -> None:
    xid = f"il:{namespace}:x:{int(time.time() * 1000):011x}abcdef:1"
    body = json.dumps({"account": 1, "amount": 10}).encode()
    forged = Signer("not-the-shared-secret-at-all").sign("POST", "/move", xid, body)
    good = Signer(SECRET).sign("POST", "/move", xid, body)
    tampered = Signer(SECRET).sign("POST", "/move", xid, b'{"account": 1, "amount": 1}')
    prefix = "/.well-known/interlock/txn"
    commit_path = f"{prefix}/branches/{xid}/commit"
    commit_forged = Signer("not-the-shared-secret-at-all").sign("POST", commit_path, "", b"{}")
    with httpx.Client(base_url=bank.url) as client:
        cases = [
            client.post("/move", content=body, headers={"interlock-txn-branch": xid}),
            client.post("/move", content=body, headers=forged),
            client.post("/move", content=body, headers=tampered),
            client.post(commit_path, content=b"{}"),
            client.post(commit_path, content=b"{}", headers=commit_forged),
            client.get(f"{prefix}/branches?namespace={namespace}"),
        ]
        for response in cases:
            assert response.status_code == 401, response.text
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["type"] == "urn:interlock:problem:txn-unauthorized"
        # a genuine request is accepted once; its replay is refused
        first = client.post("/move", content=body, headers=good)
        assert first.status_code == 200 and first.headers["interlock-txn-vote"] == "yes"
        replay = client.post("/move", content=body, headers=good)
        assert replay.status_code == 401 and "replayed" in replay.json()["detail"]
        # clean up the branch the genuine request prepared, through the protocol
        abort_path = f"{prefix}/branches/{xid}/abort"
        signed = Signer(SECRET).sign("POST", abort_path, "", b"{}")
        assert client.post(abort_path, content=b"{}", headers=signed).status_code == 200
        again = Signer(SECRET).sign("POST", abort_path, "", b"{}")  # idempotent
        assert client.post(abort_path, content=b"{}", headers=again).json()["state"] == "aborted"
        metrics = client.get("/metrics").text
    assert balances(databases) == UNCHANGED
    rejected = [
        line
        for line in metrics.splitlines()
        if line.startswith("interlock_http_requests_total{") and 'status="401"' in line
    ]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in rejected) >= 7


CRASH = """
import json, logging, os, signal, sys
import psycopg
from interlock import Interlock

spec = json.loads(sys.argv[1])

class Crash(logging.Handler):
    def emit(self, record):
        if getattr(record, "event.action", None) == "txn-decided":
            os.kill(os.getpid(), signal.SIGKILL)

txn_logger = logging.getLogger("interlock.txn")
txn_logger.setLevel(logging.DEBUG)
txn_logger.addHandler(Crash())
il = Interlock(namespace=spec["namespace"], decision_log=spec["dsn"], durability="relaxed")
with psycopg.connect(spec["dsn"]) as conn, il.transaction("transfer") as tx:
    # Prepared like the remote branch (not committed with the decision, which is what a
    # branch on the log's database does by default: tests/txn/test_txn_lrc.py).
    tx.postgres(conn, resource="local", last_resource=False).execute(
        "UPDATE accounts SET balance = balance - 10 WHERE id = 1")
    tx.remote(spec["url"], secret=spec["secret"], resource="bank").request(
        "POST", "/move", json={"account": 1, "amount": 10})
"""


def crash_after_decision(namespace: str, databases: dict[str, str], bank: Service) -> None:
    spec = {
        "namespace": namespace,
        "dsn": databases["coordinator"],
        "url": bank.url,
        "secret": SECRET,
    }
    proc = subprocess.run(
        [sys.executable, "-c", CRASH, json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert balances(databases) == UNCHANGED  # both branches prepared, neither committed


COMMITTED = {"coordinator": [990, INITIAL], "bank": [1010, INITIAL]}


def test_coordinator_recovery_completes_remote_branch_after_crash(
    namespace: str, databases: dict[str, str], bank: Service
) -> None:
    crash_after_decision(namespace, databases, bank)
    il = coordinator(namespace, databases, bank)
    try:
        report = il.recover()
        assert sorted(label.rsplit("@", 1)[1] for label in report.committed) == ["bank", "local"]
        assert (report.errors, report.heuristics, report.pending) == ([], [], [])
        assert len(report.forgotten) == 1  # remote fate checked: the decision is removed
        assert balances(databases) == COMMITTED
        assert prepared(databases) == []
    finally:
        il.close()


def test_participant_recovery_asks_the_coordinator_after_crash(
    namespace: str, databases: dict[str, str], bank: Service
) -> None:
    crash_after_decision(namespace, databases, bank)
    decisions = Service(
        {"IL_ROLE": "coordinator", "IL_DSN": databases["coordinator"], "IL_NAMESPACE": namespace}
    )
    recovering = Service(
        {
            "IL_ROLE": "bank",
            "IL_DSN": databases["bank"],
            "IL_NAMESPACE": "bank-service",
            "IL_COORD_NS": namespace,
            "IL_COORD_URL": decisions.url,
        }
    )
    try:
        report = httpx.post(recovering.url + "/recover", timeout=30).json()
        assert len(report["committed"]) == 1 and report["errors"] == []
        assert balances(databases)["bank"] == [1010, INITIAL]
    finally:
        recovering.stop()
        decisions.stop()
    il = coordinator(namespace, databases, bank)
    try:
        report = il.recover()  # the local branch; the remote one is found committed
        assert [label.rsplit("@", 1)[1] for label in report.committed] == ["local"]
        assert (report.errors, report.heuristics) == ([], [])
        assert balances(databases) == COMMITTED
        assert prepared(databases) == []
    finally:
        il.close()
