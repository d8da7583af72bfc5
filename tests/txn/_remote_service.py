"""A small Starlette service for the remote-participant tests, run by uvicorn.

``IL_ROLE=bank``: a participant whose ``POST /move`` adds ``amount`` to an account in its own
PostgreSQL database, inside the branch of the caller's transaction; ``POST /recover`` runs
the participant-side recovery against the coordinator's decision endpoint.
``IL_ROLE=coordinator``: only serves the decision endpoint of a coordinator namespace.
"""

from __future__ import annotations

import os
from typing import Any

import psycopg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from interlock import AsyncInterlock, InterlockMiddleware
from interlock.txn import AsyncRemoteRecovery, RemoteParticipantConfig

SECRET = os.environ["IL_SECRET"]
ROLE = os.environ["IL_ROLE"]
DSN = os.environ.get("IL_DSN", "")


async def move(request: Request) -> JSONResponse:
    branch = request.scope["interlock.branch"]
    body: dict[str, Any] = await request.json()
    try:
        await branch.conn.execute(
            "UPDATE accounts SET balance = balance + %s WHERE id = %s",
            [body["amount"], body["account"]],
        )
    except psycopg.errors.CheckViolation:
        return JSONResponse({"error": "insufficient funds"}, status_code=409)
    return JSONResponse({"moved": body["amount"]})


async def recover(request: Request) -> JSONResponse:
    recovery = AsyncRemoteRecovery(
        DSN, {os.environ["IL_COORD_NS"]: os.environ["IL_COORD_URL"]}, secret=SECRET
    )
    try:
        report = await recovery.recover()
    finally:
        await recovery.aclose()
    return JSONResponse(
        {
            "committed": report.committed,
            "aborted": report.aborted,
            "pending": report.pending,
            "errors": report.errors,
        }
    )


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


routes = [Route("/health", health)]
if ROLE == "bank":
    ail = AsyncInterlock(namespace=os.environ["IL_NAMESPACE"])
    config = RemoteParticipantConfig(secret=SECRET, connect=DSN)
    routes += [Route("/move", move, methods=["POST"]), Route("/recover", recover, methods=["POST"])]
else:
    ail = AsyncInterlock(
        namespace=os.environ["IL_NAMESPACE"], decision_log=DSN, durability="relaxed"
    )
    config = RemoteParticipantConfig(secret=SECRET)

app = InterlockMiddleware(Starlette(routes=routes), interlock=ail, participant=config)
