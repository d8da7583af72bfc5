"""ASGI glue of the participant endpoints: an inner app between the middleware and the app.

It sits inside :class:`interlock.asgi.InterlockMiddleware`, so its requests get the
middleware's metrics, log line and request id like any other. See
:mod:`interlock.http._participant` for the protocol.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from interlock._async.txn.participants.remote import AsyncBranchService
from interlock.http._participant import (
    WANTED,
    Endpoint,
    ParticipantCore,
    json_response,
    vote_headers,
)
from interlock.http._responses import Problem
from interlock.txn._remote import HEADER_BRANCH, SCOPE_KEY, RemoteBranch, RemoteParticipantConfig
from interlock.txn._xid import split_branch

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class AsgiParticipant:
    """Serves the participant endpoints and runs branch requests inside their branch."""

    def __init__(self, app: ASGIApp, interlock: Any, config: RemoteParticipantConfig) -> None:
        self.app = app
        self.core = ParticipantCore(config)
        self.service = AsyncBranchService(config.connect, interlock.transactions, config.safety)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        path: str = scope["path"]
        query = scope.get("query_string", b"").decode("latin-1")
        endpoint = self.core.match(method, path, query)
        headers = {
            k: v
            for k, v in (
                (n.decode("latin-1").lower(), v.decode("latin-1")) for n, v in scope["headers"]
            )
            if k in WANTED
        }
        if endpoint is None and HEADER_BRANCH not in headers:
            await self.app(scope, receive, send)
            return
        tools = scope.get("interlock")
        if isinstance(endpoint, Endpoint) and tools is not None:
            tools.route = endpoint.route
        body = await _read(receive, self.core.config.max_body)
        if body is None:
            await _respond(send, self.core.too_large())
            return
        refusal = self.core.authenticate(method, path, query, headers, body)
        if refusal is not None:
            await _respond(send, refusal)
            return
        if isinstance(endpoint, Problem):
            await _respond(send, endpoint)
        elif endpoint is not None:
            try:
                document = json.loads(body) if body else {}
            except ValueError:
                document = {}
            status, answer = await self.service.handle(
                endpoint, document if isinstance(document, dict) else {}
            )
            await _respond(send, json_response(status, answer))
        else:
            await self._branch(scope, headers[HEADER_BRANCH], body, send)

    async def _branch(self, scope: Scope, xid: str, body: bytes, send: Send) -> None:
        if split_branch(xid) is None or not self.service.participates:
            await _respond(send, self.core.bad_branch(xid))
            return
        participant = await self.service.begin(xid)
        scope[SCOPE_KEY] = RemoteBranch(xid, participant.conn)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        start: Message | None = None
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        try:
            await self.app(scope, replay, capture)
        except BaseException:
            await self.service.end(participant, xid, False)
            raise
        status = start["status"] if start is not None else 500
        ok = 200 <= status < 300
        yes = await self.service.end(participant, xid, ok)
        if ok and not yes:
            await _respond(send, self.core.refused(xid))
            return
        extra = [(n.encode(), v.encode()) for n, v in vote_headers(yes, participant.ref)]
        head = list(start.get("headers", ())) if start is not None else []
        await send(
            {
                **(start or {}),
                "type": "http.response.start",
                "status": status,
                "headers": head + extra,
            }
        )
        await send({"type": "http.response.body", "body": b"".join(chunks)})


async def _read(receive: Receive, limit: int) -> bytes | None:
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(parts)


async def _respond(send: Send, response: Problem) -> None:
    headers = [(n.encode(), v.encode()) for n, v in response.headers]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})
