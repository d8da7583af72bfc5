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

    flask.wsgi_app = InterlockWSGIMiddleware(  # type: ignore[method-assign]
        flask.wsgi_app,
        interlock=il,
        locks=[LockRule("/slow/{item_id}", name="slow", key="{item_id}")],
    )
    wsgi_app = flask
else:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route

    from interlock import AsyncInterlock, InterlockMiddleware, LockRule

    ail = AsyncInterlock("mem://", namespace="asgi-server")

    async def item(request: Request) -> Response:
        return JSONResponse({"id": request.path_params["item_id"]})

    async def slow(request: Request) -> Response:
        await asyncio.sleep(1.0)
        return PlainTextResponse("done")

    asgi_app = InterlockMiddleware(
        Starlette(
            routes=[
                Route("/items/{item_id:int}", item),
                Route("/slow/{item_id}", slow, methods=["POST"]),
            ]
        ),
        interlock=ail,
        locks=[LockRule("/slow/{item_id}", name="slow", key="{item_id}", timeout=0.2)],
    )
