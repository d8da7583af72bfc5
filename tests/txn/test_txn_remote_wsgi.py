"""Remote participants on the WSGI middleware: a Flask-free WSGI bank reached in-process
through httpx's WSGI transport, with its own PostgreSQL database."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from test_txn_remote import INITIAL, SECRET, UNCHANGED, balances, databases, namespace, prepared

from interlock import Interlock, InterlockWSGIMiddleware
from interlock.errors import TransactionAborted
from interlock.txn import RemoteParticipantConfig, RemoteResource

__all__ = ["databases", "namespace"]  # fixtures


def bank_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    branch = environ["interlock.branch"]
    body = json.loads(environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"])))
    try:
        branch.conn.execute(
            "UPDATE accounts SET balance = balance + %s WHERE id = %s",
            [body["amount"], body["account"]],
        )
    except psycopg.errors.CheckViolation:
        start_response("409 Conflict", [("content-type", "application/json")])
        return [b'{"error": "insufficient funds"}']
    start_response("200 OK", [("content-type", "application/json")])
    return [b'{"ok": true}']


@pytest.fixture
def client(databases: dict[str, str]) -> Iterator[httpx.Client]:
    il = Interlock(namespace="bank-wsgi")
    config = RemoteParticipantConfig(secret=SECRET, connect=databases["bank"])
    app = InterlockWSGIMiddleware(bank_app, interlock=il, participant=config)
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://bank") as c:
        yield c
    il.close()


def run(namespace: str, databases: dict[str, str], client: httpx.Client, amount: int) -> None:
    il = Interlock(
        namespace=namespace,
        decision_log=databases["coordinator"],
        durability="relaxed",
        recovery=False,  # the test runs the pass
    )
    il.transactions.add_resource(
        RemoteResource("bank", "http://bank", secret=SECRET, client=client)
    )
    try:
        with psycopg.connect(databases["coordinator"]) as conn, il.transaction("t") as tx:
            tx.postgres(conn).execute(
                "UPDATE accounts SET balance = balance - %s WHERE id = 1", [amount]
            )
            bank = tx.remote("http://bank", secret=SECRET, resource="bank", client=client)
            bank.request("POST", "/move", json={"account": 1, "amount": amount})
        assert il.recover().errors == []
    finally:
        il.close()


def test_wsgi_commit_and_vote_no(
    namespace: str, databases: dict[str, str], client: httpx.Client
) -> None:
    run(namespace, databases, client, 7)
    committed = {"coordinator": [INITIAL - 7, INITIAL], "bank": [INITIAL + 7, INITIAL]}
    assert balances(databases) == committed
    with pytest.raises(TransactionAborted):
        run(namespace, databases, client, -3 * INITIAL)
    assert balances(databases) == committed
    assert prepared(databases) == []


def test_wsgi_rejects_unsigned_branch_requests(
    namespace: str, databases: dict[str, str], client: httpx.Client
) -> None:
    response = client.post(
        "/move",
        json={"account": 1, "amount": 5},
        headers={"interlock-txn-branch": "il:x:y:0190000000000abcdef:1"},
    )
    assert response.status_code == 401
    assert response.json()["type"] == "urn:interlock:problem:txn-unauthorized"
    assert balances(databases) == UNCHANGED
