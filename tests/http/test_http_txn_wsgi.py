"""Request-scoped transactions under WSGI: a real Flask app, two Redis stores and PostgreSQL
as participants; decided at ``start_response``, before the body goes out."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import flask
import psycopg
import pytest
from _http_txn_support import Journal, VotesNo, orders_table, prepared, rows, txn_line

from interlock import Interlock, InterlockWSGIMiddleware
from interlock.testing import LogCapture, metric_value, wsgi_request

pytestmark = [pytest.mark.redis, pytest.mark.postgres]
SKU = "sku-1"


class Shop:
    def __init__(self, il: Interlock, dsn: str, table: str) -> None:
        self.il = il
        self.pg = psycopg.connect(dsn)
        app = flask.Flask("shop")
        app.testing = False  # an exception answers 500, as in production

        @app.post("/orders/<int:status>")
        def order(status: int) -> Any:
            body = flask.request.get_json()
            tools = flask.request.environ["interlock"]
            tx = tools.transaction("checkout", timeout=5.0)
            tx.redis("inventory").incrby(("stock", SKU), -body.get("qty", 1), min=0)
            tx.redis("orders").set(("order", body["id"]), SKU)
            tx.postgres(self.pg).execute(f"INSERT INTO {table} VALUES (%s, %s)",
                                         [body["id"], SKU])  # fmt: skip
            if body.get("refuse"):
                tx.enlist(VotesNo(), resource="refuser")
            tools.cache("products").invalidate_tag("catalog")
            if body.get("raise"):
                raise RuntimeError("the handler failed after its work")
            return flask.jsonify(order=body["id"]), status

        app.wsgi_app = InterlockWSGIMiddleware(app.wsgi_app, interlock=il)  # type: ignore[method-assign]
        self.client = app.test_client()
        with il.transaction("seed") as tx:
            tx.redis("inventory").set(("stock", SKU), 5)
        il.cache("products").set(1, "Product 1", tags=["catalog"])

    def post(self, path: str, order: dict[str, Any]) -> Any:
        response = self.client.post(path, json=order)
        response.close()  # like a server: the middleware's close() ends the request
        return response

    def state(self, order_id: str) -> tuple[Any, Any, Any]:
        stock = self.il.transactions.store("inventory").get(("stock", SKU))
        order = self.il.transactions.store("orders").get(("order", order_id))
        return int(stock or 0), order, self.il.cache("products").get(1)


@pytest.fixture
def shop(redis_url: str, namespace: str, postgres_server: Any) -> Iterator[Shop]:
    with (
        orders_table(postgres_server.dsn) as table,
        Interlock(redis_url, namespace=namespace, durability="relaxed") as il,
    ):
        shop = Shop(il, postgres_server.dsn, table)
        shop.table = table  # type: ignore[attr-defined]
        try:
            yield shop
        finally:
            shop.pg.close()


def test_2xx_commits_everywhere_then_invalidates(
    shop: Shop, logs: LogCapture, postgres_server: Any, namespace: str
) -> None:
    response = shop.post("/orders/201", {"id": "o1", "qty": 2})
    assert response.status_code == 201 and response.get_json() == {"order": "o1"}
    assert shop.state("o1") == (3, b"sku-1", None)
    assert rows(postgres_server.dsn, shop.table) == [("o1", SKU)]  # type: ignore[attr-defined]
    assert metric_value(shop.il, "interlock_txn_total", txn="checkout", outcome="committed") == 1
    assert metric_value(shop.il, "interlock_txn_phase_seconds_count", txn="checkout",
                        phase="decide") == 1  # fmt: skip
    line = txn_line(logs.requests(), "/orders/201")
    assert line["interlock.txn.outcome"] == "committed"
    assert line["interlock.txn.cause"] == "status"
    assert line["interlock.txn.invalidated"] == 1
    assert prepared(postgres_server.dsn, namespace) == []


@pytest.mark.parametrize(
    ("path", "extra", "status"),
    [
        ("/orders/404", {}, 404),
        ("/orders/422", {}, 422),
        ("/orders/500", {}, 500),
        ("/orders/200", {"raise": True}, 500),
    ],
)
def test_4xx_5xx_and_exceptions_abort_everywhere(
    shop: Shop,
    logs: LogCapture,
    postgres_server: Any,
    namespace: str,
    path: str,
    extra: dict[str, Any],
    status: int,
) -> None:
    response = shop.post(path, {"id": "o2", **extra})
    assert response.status_code == status
    assert shop.state("o2") == (5, None, "Product 1")
    assert rows(postgres_server.dsn, shop.table) == []  # type: ignore[attr-defined]
    line = txn_line(logs.requests(), path)
    assert (line["interlock.txn.outcome"], line["interlock.txn.reason"]) == ("aborted", "client")
    assert line["interlock.txn.dropped"] == 1
    assert prepared(postgres_server.dsn, namespace) == []


@pytest.mark.parametrize("order", [{"refuse": True}, {"qty": 9}], ids=["custom", "stock"])
def test_a_refused_commit_becomes_a_409_problem_and_nothing_commits(
    shop: Shop, logs: LogCapture, postgres_server: Any, namespace: str, order: dict[str, Any]
) -> None:
    response = shop.post("/orders/201", {"id": "o3", **order})
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.get_json()
    assert problem["type"] == "urn:interlock:problem:transaction-aborted"
    assert (problem["reason"], problem["txn"]) == ("vote_no", "checkout")
    assert shop.state("o3") == (5, None, "Product 1")
    assert rows(postgres_server.dsn, shop.table) == []  # type: ignore[attr-defined]
    assert prepared(postgres_server.dsn, namespace) == []
    line = txn_line(logs.requests(), "/orders/201")
    assert line["http.response.status_code"] == 409
    assert (line["interlock.txn.outcome"], line["interlock.txn.reason"]) == ("aborted", "vote_no")


# -- the moment of the decision, on raw WSGI ----------------------------------------------


class Recorder:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def prepare(self, xid: str) -> bool:
        self.journal.events.append("prepare")
        return True

    def commit(self, xid: str) -> None:
        self.journal.events.append("commit")

    def abort(self, xid: str) -> None:
        self.journal.events.append("abort")


def _server(app: Any, journal: Journal) -> list[bytes]:
    """Call ``app`` like a server, journaling ``start_response`` and every chunk."""

    def start_response(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
        journal.events.append(f"start:{status[:3]}")
        return lambda data: None

    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/raw", "wsgi.input": None}
    result = app(environ, start_response)
    try:
        out = []
        for chunk in result:
            journal.events.append("chunk")
            out.append(chunk)
        return out
    finally:
        result.close()


@pytest.mark.parametrize("refuse", [False, True], ids=["commit", "refused"])
@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "generator"])
def test_commit_before_the_body_and_a_failed_one_replaces_it(lazy: bool, refuse: bool) -> None:
    journal = Journal()

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        tx = environ["interlock"].transaction("raw")
        tx.enlist(Recorder(journal), resource="first")
        tx.enlist(VotesNo(journal) if refuse else Recorder(journal), resource="second")
        if lazy:
            return generator(start_response)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return iter([b"a", b"b"])

    def generator(start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"a"
        yield b"b"

    with Interlock("mem://", registry=None) as il:
        body = _server(InterlockWSGIMiddleware(app, interlock=il), journal)
    if refuse:
        assert journal.events == ["prepare", "prepare:no", "abort", "abort",
                                  "start:409", "chunk"]  # fmt: skip
        assert b"transaction-aborted" in body[0]
    else:
        assert journal.events == ["prepare", "prepare", "commit", "commit",
                                  "start:200", "chunk", "chunk"]  # fmt: skip


def test_an_exception_before_the_response_aborts(logs: LogCapture) -> None:
    journal = Journal()

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        environ["interlock"].transaction("raw").enlist(Recorder(journal), resource="only")
        raise RuntimeError("no response")

    with Interlock("mem://", registry=None) as il:
        answer = wsgi_request(InterlockWSGIMiddleware(app, interlock=il), "POST", "/raw")
    assert answer.status == 500 and answer.json()["type"].endswith(":internal-error")
    assert journal.events == ["abort"]  # before the 500 went out
    line = logs.requests()[0]
    assert (line["interlock.txn.outcome"], line["interlock.txn.cause"]) == ("aborted", "exception")


def test_a_decision_log_that_is_not_durable_is_named_in_the_problem_and_the_log(
    redis_url: str, namespace: str, logs: LogCapture
) -> None:
    """Default ``durability="strict"`` on a Redis without AOF: 503 with reason
    ``durability`` and an ERROR line naming ``DurabilityError`` and the fix."""
    journal = Journal()

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        tx = environ["interlock"].transaction("raw")
        tx.enlist(Recorder(journal), resource="first")
        tx.enlist(Recorder(journal), resource="second")
        start_response("201 Created", [("content-type", "text/plain")])
        return [b"created"]

    with Interlock(redis_url, namespace=namespace) as il:
        response = wsgi_request(InterlockWSGIMiddleware(app, interlock=il), "POST", "/raw")
        aborts = metric_value(il, "interlock_txn_aborts_total", reason="durability")
    assert response.status == 503
    problem = response.json()
    assert (problem["type"], problem["reason"]) == (
        "urn:interlock:problem:transaction-aborted",
        "durability",
    )
    assert aborts == 1.0
    assert journal.events == ["abort", "abort"]
    errors = [r for r in logs.records if r["log.level"] == "error"]
    # The refused commit, and the recovery worker (started by the transaction) if it ran.
    assert {r["event.action"] for r in errors} <= {"txn-log-not-durable", "txn-recovery-failed"}
    (refused,) = [r for r in errors if r["event.action"] == "txn-log-not-durable"]
    assert {r["error.type"] for r in errors} == {"DurabilityError"}
    assert "durability='relaxed'" in refused["message"]  # the fix
    assert logs.requests()[0]["interlock.txn.reason"] == "durability"
