"""Request-scoped transactions under ASGI: a real Starlette app, two Redis stores and
PostgreSQL as participants; the response status decides, before the client sees it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest
from _http_txn_support import (
    AsyncRecorder,
    AsyncVotesNo,
    Journal,
    orders_table,
    prepared,
    rows,
    txn_line,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from interlock import AsyncInterlock, InterlockMiddleware, TransactionError
from interlock.testing import LogCapture, metric_value

pytestmark = [pytest.mark.redis, pytest.mark.postgres]
SKU = "sku-1"


def shop(ail: AsyncInterlock, pg: psycopg.AsyncConnection[Any], table: str) -> Any:
    """``POST /orders/{status}``: stages an order in two Redis stores and PostgreSQL, asks
    for the catalogue to be purged, and answers ``status`` (or raises, or adds a no-voter)."""

    async def order(request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        tools = request.scope["interlock"]
        tx = tools.transaction("checkout", timeout=5.0)
        assert tools.transaction("checkout") is tx  # one transaction per request
        with pytest.raises(TransactionError):
            tools.transaction("other")
        tx.redis("inventory").incrby(("stock", SKU), -body.get("qty", 1), min=0)
        tx.redis("orders").set(("order", body["id"]), SKU)
        conn = await tx.postgres(pg)
        await conn.execute(f"INSERT INTO {table} VALUES (%s, %s)", [body["id"], SKU])
        if body.get("refuse"):
            tx.enlist(AsyncVotesNo(), resource="refuser")
        await tools.cache("products").invalidate_tag("catalog")
        if body.get("raise"):
            raise RuntimeError("the handler failed after its work")
        return JSONResponse({"order": body["id"]}, status_code=request.path_params["status"])

    app = Starlette(routes=[Route("/orders/{status:int}", order, methods=["POST"])])
    return InterlockMiddleware(app, interlock=ail)


async def _seed(ail: AsyncInterlock, stock: int) -> None:
    async with ail.transaction("seed") as tx:
        tx.redis("inventory").set(("stock", SKU), stock)
    await ail.cache("products").set(1, "Product 1", tags=["catalog"])


async def _state(ail: AsyncInterlock, order_id: str) -> tuple[Any, Any, Any]:
    stock = await ail.transactions.store("inventory").get(("stock", SKU))
    order = await ail.transactions.store("orders").get(("order", order_id))
    return int(stock or 0), order, await ail.cache("products").get(1)


Run = Callable[..., Any]


@pytest.fixture
def run(redis_url: str, namespace: str, postgres_server: Any) -> Run:
    """Run ``body(ail, client, table)`` against the shop, in the test's event loop."""

    async def runner(body: Callable[..., Any], stock: int = 5) -> Any:
        with orders_table(postgres_server.dsn) as table:
            pg = await psycopg.AsyncConnection.connect(postgres_server.dsn)
            async with AsyncInterlock(redis_url, namespace=namespace, durability="relaxed") as ail:
                await _seed(ail, stock)
                transport = httpx.ASGITransport(
                    app=shop(ail, pg, table), raise_app_exceptions=False
                )
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://testserver"
                ) as client:
                    try:
                        return await body(ail, client, table)
                    finally:
                        await pg.close()

    return runner


@pytest.mark.anyio
async def test_2xx_commits_everywhere_then_invalidates(
    run: Run, logs: LogCapture, postgres_server: Any, namespace: str
) -> None:
    async def body(ail: AsyncInterlock, client: httpx.AsyncClient, table: str) -> Any:
        response = await client.post("/orders/201", json={"id": "o1", "qty": 2})
        state = await _state(ail, "o1")
        committed = metric_value(ail, "interlock_txn_total", txn="checkout", outcome="committed")
        decided = metric_value(ail, "interlock_txn_phase_seconds_count", txn="checkout",
                               phase="decide")  # fmt: skip
        return response, state, rows(postgres_server.dsn, table), committed, decided

    response, state, pg_rows, committed, decided = await run(body)
    assert response.status_code == 201 and response.json() == {"order": "o1"}
    assert state == (3, b"sku-1", None)  # stock taken, order stored, catalogue purged
    assert pg_rows == [("o1", SKU)]
    assert (committed, decided) == (1.0, 1.0)  # three branches: a real two-phase commit
    line = txn_line(logs.requests(), "/orders/201")
    assert line["interlock.txn.name"] == "checkout"
    assert line["interlock.txn.outcome"] == "committed"
    assert line["interlock.txn.cause"] == "status"
    assert line["interlock.txn.invalidated"] == 1
    assert line["interlock.txn.xid"].startswith(f"il:{namespace}:")
    assert prepared(postgres_server.dsn, namespace) == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "extra", "status"),
    [
        ("/orders/400", {}, 400),
        ("/orders/409", {}, 409),
        ("/orders/503", {}, 503),
        ("/orders/201", {"raise": True}, 500),  # Starlette answers 500, then re-raises
    ],
)
async def test_4xx_5xx_and_exceptions_abort_everywhere(
    run: Run,
    logs: LogCapture,
    postgres_server: Any,
    namespace: str,
    path: str,
    extra: dict[str, Any],
    status: int,
) -> None:
    async def body(ail: AsyncInterlock, client: httpx.AsyncClient, table: str) -> Any:
        response = await client.post(path, json={"id": "o2", **extra})
        aborts = metric_value(ail, "interlock_txn_aborts_total", txn="checkout", reason="client")
        return response, await _state(ail, "o2"), rows(postgres_server.dsn, table), aborts

    response, state, pg_rows, aborts = await run(body)
    assert response.status_code == status
    assert state == (5, None, "Product 1")  # nothing written, the purge dropped
    assert pg_rows == []
    assert aborts == 1.0
    line = txn_line(logs.requests(), path)
    assert line["interlock.txn.outcome"] == "aborted"
    assert line["interlock.txn.reason"] == "client"
    assert line["interlock.txn.dropped"] == 1
    assert "interlock.txn.invalidated" not in line
    assert prepared(postgres_server.dsn, namespace) == []


@pytest.mark.anyio
@pytest.mark.parametrize("order", [{"refuse": True}, {"qty": 6}], ids=["custom", "stock"])
async def test_a_refused_commit_becomes_a_409_problem_and_nothing_commits(
    run: Run, logs: LogCapture, postgres_server: Any, namespace: str, order: dict[str, Any]
) -> None:
    async def body(ail: AsyncInterlock, client: httpx.AsyncClient, table: str) -> Any:
        response = await client.post("/orders/201", json={"id": "o3", **order})
        return response, await _state(ail, "o3"), rows(postgres_server.dsn, table)

    response, state, pg_rows = await run(body)
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-request-id"]
    problem = response.json()
    assert problem["type"] == "urn:interlock:problem:transaction-aborted"
    assert (problem["status"], problem["reason"], problem["txn"]) == (409, "vote_no", "checkout")
    assert "order" not in problem  # the handler's body is gone
    assert state == (5, None, "Product 1")
    assert pg_rows == []
    assert prepared(postgres_server.dsn, namespace) == []
    line = txn_line(logs.requests(), "/orders/201")
    assert line["http.response.status_code"] == 409
    assert line["interlock.txn.outcome"] == "aborted"
    assert line["interlock.txn.reason"] == "vote_no"
    assert line["interlock.txn.xid"] == problem["xid"]
    assert line["interlock.txn.dropped"] == 1


# -- the moment of the decision, on raw ASGI ----------------------------------------------


def _raw_app(journal: Journal, *, status: int, refuse: bool = False, chunks: int = 1) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        tx = scope["interlock"].transaction("raw")
        tx.enlist(AsyncRecorder(journal), resource="first")
        tx.enlist(AsyncVotesNo(journal) if refuse else AsyncRecorder(journal), resource="second")
        await send({"type": "http.response.start", "status": status, "headers": []})
        for n in range(chunks):
            more = n < chunks - 1
            await send({"type": "http.response.body", "body": b"x", "more_body": more})

    return app


async def _call(app: Any, journal: Journal, messages: list[dict[str, Any]] | None = None) -> None:
    incoming = list(messages or [{"type": "http.request", "body": b"", "more_body": False}])

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        journal.events.append(f"{message['type']}:{message.get('status', '')}")

    scope = {"type": "http", "method": "POST", "path": "/raw", "headers": [], "client": None}
    await app(scope, receive, send)


@pytest.mark.anyio
async def test_the_commit_happens_before_the_status_line_and_streams_follow(namespace: str) -> None:
    journal = Journal()

    async with AsyncInterlock("mem://", namespace=namespace) as ail:
        app = InterlockMiddleware(_raw_app(journal, status=200, chunks=3), interlock=ail)
        await _call(app, journal)
    assert journal.events == [
        "prepare", "prepare", "commit", "commit",
        "http.response.start:200",
        "http.response.body:", "http.response.body:", "http.response.body:",
    ]  # fmt: skip


@pytest.mark.anyio
async def test_a_failed_commit_sends_only_the_problem(namespace: str, logs: LogCapture) -> None:
    journal = Journal()

    async with AsyncInterlock("mem://", namespace=namespace) as ail:
        app = InterlockMiddleware(_raw_app(journal, status=200, refuse=True, chunks=2),
                                  interlock=ail)  # fmt: skip
        await _call(app, journal)
    assert journal.events == [
        "prepare", "prepare:no", "abort", "abort",
        "http.response.start:409", "http.response.body:",
    ]  # fmt: skip
    assert logs.requests()[0]["http.response.status_code"] == 409


@pytest.mark.anyio
async def test_a_client_that_went_away_aborts(namespace: str, logs: LogCapture) -> None:
    journal = Journal()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        tx = scope["interlock"].transaction("raw")
        tx.enlist(AsyncRecorder(journal), resource="only")
        while (await receive())["type"] != "http.disconnect":
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async with AsyncInterlock("mem://", namespace=namespace) as ail:
        await _call(InterlockMiddleware(app, interlock=ail), journal)
    assert "commit" not in journal.events and "abort" in journal.events
    line = logs.requests()[0]
    assert line["interlock.txn.outcome"] == "aborted"
    assert line["interlock.txn.cause"] == "disconnect"


@pytest.mark.anyio
async def test_a_handler_without_a_response_aborts(namespace: str, logs: LogCapture) -> None:
    journal = Journal()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope["interlock"].transaction("raw").enlist(AsyncRecorder(journal), resource="only")
        raise RuntimeError("no response")

    async with AsyncInterlock("mem://", namespace=namespace) as ail:
        with pytest.raises(RuntimeError):
            await _call(InterlockMiddleware(app, interlock=ail), journal)
    assert journal.events == ["abort", "http.response.start:500", "http.response.body:"]
    line = logs.requests()[0]
    assert (line["interlock.txn.outcome"], line["interlock.txn.cause"]) == ("aborted", "exception")


@pytest.mark.anyio
async def test_a_handler_may_decide_itself(namespace: str, logs: LogCapture) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        tools = scope["interlock"]
        tx = tools.transaction("raw")
        tx.redis("orders").set("o9", "x")
        await tools.cache("products").invalidate_tag("catalog")
        await tx.commit()  # the handler wants the outcome before it answers
        await send({"type": "http.response.start", "status": 500, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def main() -> tuple[Any, Any]:
        async with AsyncInterlock("mem://", namespace=namespace) as ail:
            await ail.cache("products").set(1, "Product 1", tags=["catalog"])
            await _call(InterlockMiddleware(app, interlock=ail), Journal())
            return (await ail.transactions.store("orders").get("o9"),
                    await ail.cache("products").get(1))  # fmt: skip

    assert await main() == (b"x", None)  # a 500 cannot undo an explicit commit
    line = logs.requests()[0]
    assert (line["interlock.txn.outcome"], line["interlock.txn.cause"]) == ("committed", "handler")
    assert line["interlock.txn.invalidated"] == 1


@pytest.mark.anyio
async def test_streaming_responses_commit_at_the_status_line(namespace: str) -> None:
    journal = Journal()

    async def stream(request: Request) -> StreamingResponse:
        tx = request.scope["interlock"].transaction("stream")
        tx.enlist(AsyncRecorder(journal), resource="only")

        async def chunks() -> Any:
            journal.events.append("body")
            yield b"x"

        return StreamingResponse(chunks())

    async def main() -> int:
        async with AsyncInterlock("mem://", namespace=namespace) as ail:
            app = InterlockMiddleware(Starlette(routes=[Route("/s", stream)]), interlock=ail)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                return (await client.get("/s")).status_code

    assert await main() == 200
    assert journal.events == ["prepare", "commit", "body"]  # decided before the body


@pytest.mark.anyio
async def test_a_decision_log_that_is_not_durable_is_named_in_the_problem_and_the_log(
    redis_url: str, namespace: str, logs: LogCapture
) -> None:
    """Default ``durability="strict"`` on a Redis without AOF: 503 with reason
    ``durability`` (not a generic participant failure) and an ERROR line with the fix."""
    journal = Journal()

    async def main() -> tuple[Any, float]:
        async with AsyncInterlock(redis_url, namespace=namespace) as ail:
            app = InterlockMiddleware(_raw_app(journal, status=201), interlock=ail)
            sent: list[dict[str, Any]] = []

            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": b"", "more_body": False}

            async def send(message: dict[str, Any]) -> None:
                sent.append(message)

            scope = {"type": "http", "method": "POST", "path": "/raw", "headers": [],
                     "client": None}  # fmt: skip
            await app(scope, receive, send)
            aborts = metric_value(ail, "interlock_txn_aborts_total", reason="durability")
            return sent, aborts

    sent, aborts = await main()
    assert sent[0]["status"] == 503
    problem = json.loads(sent[1]["body"])
    assert problem["type"] == "urn:interlock:problem:transaction-aborted"
    assert problem["reason"] == "durability"
    assert "decision log" in problem["detail"]
    assert aborts == 1.0
    assert journal.events == ["abort", "abort"]  # nothing prepared
    errors = [r for r in logs.records if r["log.level"] == "error"]
    # The refused commit, and the recovery worker (started by the transaction) if it ran.
    assert {r["event.action"] for r in errors} <= {"txn-log-not-durable", "txn-recovery-failed"}
    (refused,) = [r for r in errors if r["event.action"] == "txn-log-not-durable"]
    assert {r["error.type"] for r in errors} == {"DurabilityError"}
    assert "appendfsync always" in refused["message"]
    line = logs.requests()[0]
    assert (line["interlock.txn.outcome"], line["interlock.txn.reason"]) == (
        "aborted",
        "durability",
    )


def test_the_lifespan_start_up_starts_recovery_of_resources_registered_at_import(
    redis_url: str, namespace: str, postgres_server: Any
) -> None:
    """Resources registered outside any event loop (module level): the recovery worker
    starts when the server's loop runs the middleware's lifespan, before any request."""
    ail = AsyncInterlock(redis_url, namespace=namespace, durability="relaxed")
    ail.transactions.add_postgres("orders", postgres_server.dsn)
    assert not ail.transactions.recovery_running  # no loop yet

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        await receive()
        await send({"type": "lifespan.startup.complete"})

    async def main() -> tuple[bool, Any]:
        messages = [{"type": "lifespan.startup"}]

        async def receive() -> dict[str, Any]:
            return messages.pop(0)

        async def send(message: dict[str, Any]) -> None:
            pass

        try:
            await InterlockMiddleware(app, interlock=ail)({"type": "lifespan"}, receive, send)
            running = ail.transactions.recovery_running
            deadline = asyncio.get_running_loop().time() + 10.0
            while (leader := await ail.lock_info("txn-recovery")) is None:
                assert asyncio.get_running_loop().time() < deadline, "no recovery leader"
                await asyncio.sleep(0.05)  # polling Redis: the observable state
            return running, leader
        finally:
            await ail.aclose()

    # its own loop on purpose: the resources were registered before any loop ran
    running, leader = asyncio.run(main())
    assert running and leader is not None
