"""Apps served by real uvicorn and gunicorn processes in the server tests.

``asgi_app``: Starlette behind ``InterlockMiddleware`` (uvicorn). ``wsgi_app``: Flask behind
``InterlockWSGIMiddleware`` (gunicorn, 2 workers, prometheus-client multiprocess mode).
Both log JSON lines to stdout.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from interlock.logs import configure_logging

configure_logging("server-test")


def _wait_for_gate(gate: str, timeout: float = 10) -> None:
    """Block until the file ``gate`` exists (the test's signal that its client left)."""
    deadline = time.monotonic() + timeout
    while gate and not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)


if os.environ.get("INTERLOCK_TEST_APP") == "wsgi":
    from flask import Flask

    from interlock import Interlock, InterlockWSGIMiddleware, LockRule

    il = Interlock("mem://", namespace="wsgi-server")
    flask = Flask(__name__)

    @flask.get("/items/<int:item_id>")
    def item(item_id: int) -> dict[str, Any]:
        return {"id": item_id, "pid": os.getpid()}

    @flask.post("/slow/<int:item_id>")
    def slow(item_id: int) -> str:
        time.sleep(0.3)
        return "done"

    @flask.get("/stream/<int:item_id>")
    def stream(item_id: int) -> Any:
        def chunks() -> Any:
            for _ in range(200):
                yield b"x" * 65536  # fills the socket buffers: a gone client fails a write
                time.sleep(0.01)

        return flask.response_class(chunks())

    @flask.post("/order/<int:item_id>")
    def order(item_id: int) -> Any:
        from flask import request

        tx = request.environ["interlock"].transaction("order")
        tx.redis("orders").set(("order", item_id), "placed")
        _wait_for_gate(request.args.get("gate", ""))
        return "placed", 201

    flask.wsgi_app = InterlockWSGIMiddleware(  # type: ignore[method-assign]
        flask.wsgi_app,
        interlock=il,
        locks=[
            LockRule("/slow/{item_id}", name="slow", key="{item_id}"),
            LockRule("/stream/{item_id}", name="stream", key="{item_id}", methods=("GET",)),
        ],
    )
    wsgi_app = flask
else:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
    from starlette.routing import Route

    from interlock import AsyncInterlock, CacheRule, InterlockMiddleware, LockRule

    ail = AsyncInterlock("mem://", namespace="asgi-server")

    async def item(request: Request) -> Response:
        return JSONResponse({"id": request.path_params["item_id"]})

    async def slow(request: Request) -> Response:
        await asyncio.sleep(1.0)
        return PlainTextResponse("done")

    ran: list[str] = []  # request ids whose handler ran (queue, stream, cached)

    async def queue(request: Request) -> Response:
        ran.append(request.headers.get("x-request-id", ""))
        await asyncio.sleep(float(request.query_params.get("hold", "0")))
        return PlainTextResponse("done")

    async def stream(request: Request) -> Response:
        ran.append(request.headers.get("x-request-id", ""))

        async def chunks() -> Any:
            for _ in range(100):
                yield b"x" * 1024
                await asyncio.sleep(0.02)

        return StreamingResponse(chunks())

    async def cached(request: Request) -> Response:
        ran.append(request.headers.get("x-request-id", ""))
        await asyncio.sleep(0.5)
        return PlainTextResponse("page", headers={"cache-control": "max-age=60"})

    async def order(request: Request) -> Response:
        tx = request.scope["interlock"].transaction("order")
        tx.redis("orders").set(("order", request.path_params["item_id"]), "placed")
        deadline = time.monotonic() + 10
        gate = request.query_params.get("gate", "")
        seen = 0
        while gate and seen < 2 and time.monotonic() < deadline:  # a turn more once open:
            seen += os.path.exists(gate)  # the server handles the reset
            await asyncio.sleep(0.01)
        return PlainTextResponse("placed", status_code=201)

    async def runs(request: Request) -> Response:
        return JSONResponse(ran)

    asgi_app = InterlockMiddleware(
        Starlette(
            routes=[
                Route("/items/{item_id:int}", item),
                Route("/slow/{item_id}", slow, methods=["POST"]),
                Route("/queue/{item_id}", queue, methods=["POST"]),
                Route("/stream/{item_id}", stream),
                Route("/cached/{item_id}", cached),
                Route("/order/{item_id:int}", order, methods=["POST"]),
                Route("/runs", runs),
            ]
        ),
        interlock=ail,
        locks=[
            LockRule("/slow/{item_id}", name="slow", key="{item_id}", timeout=0.2),
            LockRule("/queue/{item_id}", name="queue", key="{item_id}", timeout=10.0),
            LockRule("/stream/{item_id}", name="stream", key="{item_id}", methods=("GET",)),
        ],
        cache=[CacheRule("/cached/{item_id}", ttl=60.0, override=True)],
    )
