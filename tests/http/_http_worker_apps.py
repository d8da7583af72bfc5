"""Apps whose workers the dead-worker tests kill mid-request (uvicorn and gunicorn).

``POST /hold/{n}`` takes the lock rule's lock, writes the worker's pid to
``$INTERLOCK_TEST_PIDS/hold-<pid>`` and then waits far longer than any test: the test
kills the worker with SIGKILL while the request is in progress and the lock held.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from interlock import LockRule

HOLD = LockRule("/hold/{n}", name="hold", key="{n}", timeout=0.2)
WAIT = 60.0  # seconds; the test kills the worker long before


def _mark() -> None:
    Path(os.environ["INTERLOCK_TEST_PIDS"], f"hold-{os.getpid()}").write_text("")


if os.environ.get("INTERLOCK_TEST_APP") == "wsgi":
    from flask import Flask

    from interlock import Interlock, InterlockWSGIMiddleware

    flask = Flask(__name__)

    @flask.post("/hold/<int:n>")
    def hold(n: int) -> str:
        _mark()
        time.sleep(WAIT)
        return "done"

    @flask.get("/ping")
    def ping() -> str:
        return str(os.getpid())

    il = Interlock("mem://", namespace="workers")
    flask.wsgi_app = InterlockWSGIMiddleware(flask.wsgi_app, interlock=il, locks=[HOLD])  # type: ignore[method-assign]
    wsgi_app = flask
else:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from interlock import AsyncInterlock, InterlockMiddleware

    async def hold_async(request: Request) -> PlainTextResponse:
        _mark()
        await asyncio.sleep(WAIT)
        return PlainTextResponse("done")

    async def ping_async(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(os.getpid()))

    asgi_app = Starlette(
        routes=[
            Route("/hold/{n:int}", hold_async, methods=["POST"]),
            Route("/ping", ping_async),
        ]
    )
    asgi_app.add_middleware(
        InterlockMiddleware, interlock=AsyncInterlock("mem://", namespace="workers"), locks=[HOLD]
    )
