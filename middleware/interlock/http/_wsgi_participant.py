"""WSGI glue of the participant endpoints: an inner app between the middleware and the app.

The twin of :mod:`interlock.http._asgi_participant`; protocol in
:mod:`interlock.http._participant`.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from typing import Any

from interlock._sync.txn.participants.remote import BranchService
from interlock.http._participant import (
    WANTED,
    Endpoint,
    ParticipantCore,
    json_response,
    vote_headers,
)
from interlock.http._responses import Problem
from interlock.http._wire import utf8
from interlock.txn._remote import HEADER_BRANCH, SCOPE_KEY, RemoteBranch, RemoteParticipantConfig
from interlock.txn._xid import split_branch

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]
_KEYS = [(name, "HTTP_" + name.upper().replace("-", "_")) for name in sorted(WANTED)]


class WsgiParticipant:
    """Serves the participant endpoints and runs branch requests inside their branch."""

    def __init__(self, app: WSGIApp, interlock: Any, config: RemoteParticipantConfig) -> None:
        self.app = app
        self.core = ParticipantCore(config)
        self.service = BranchService(config.connect, interlock.transactions, config.safety)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        method: str = environ.get("REQUEST_METHOD", "GET")
        path = utf8(environ.get("SCRIPT_NAME", "")) + utf8(environ.get("PATH_INFO", ""))
        query: str = environ.get("QUERY_STRING", "")
        endpoint = self.core.match(method, path, query)
        headers = {name: environ[key] for name, key in _KEYS if key in environ}
        if endpoint is None and HEADER_BRANCH not in headers:
            return self.app(environ, start_response)
        tools = environ.get("interlock")
        if isinstance(endpoint, Endpoint) and tools is not None:
            tools.route = endpoint.route
        body = _read(environ, self.core.config.max_body)
        if body is None:
            return _respond(start_response, self.core.too_large())
        refusal = self.core.authenticate(method, path, query, headers, body)
        if refusal is not None:
            return _respond(start_response, refusal)
        if isinstance(endpoint, Problem):
            return _respond(start_response, endpoint)
        if endpoint is not None:
            try:
                document = json.loads(body) if body else {}
            except ValueError:
                document = {}
            status, answer = self.service.handle(
                endpoint, document if isinstance(document, dict) else {}
            )
            return _respond(start_response, json_response(status, answer))
        return self._branch(environ, headers[HEADER_BRANCH], body, start_response)

    def _branch(
        self, environ: Environ, xid: str, body: bytes, start_response: StartResponse
    ) -> Iterable[bytes]:
        if split_branch(xid) is None or not self.service.participates:
            return _respond(start_response, self.core.bad_branch(xid))
        participant = self.service.begin(xid)
        environ[SCOPE_KEY] = RemoteBranch(xid, participant.conn)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        captured: list[Any] = []

        def capture(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
            captured[:] = [status, headers]
            return lambda data: None  # the legacy write() is not supported in a branch

        try:
            result = self.app(environ, capture)
            try:
                chunks = b"".join(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except BaseException:
            self.service.end(participant, xid, False)
            raise
        status_line, response_headers = captured or ["500 Internal Server Error", []]
        try:
            code = int(status_line[:3])
        except ValueError:
            code = 500
        ok = 200 <= code < 300
        yes = self.service.end(participant, xid, ok)
        if ok and not yes:
            return _respond(start_response, self.core.refused(xid))
        start_response(status_line, [*response_headers, *vote_headers(yes, participant.ref)])
        return [chunks]


def _read(environ: Environ, limit: int) -> bytes | None:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > limit:
        return None
    stream = environ.get("wsgi.input")
    if stream is None or length <= 0:
        return b""
    body: bytes = stream.read(length)
    return body


def _respond(start_response: StartResponse, response: Problem) -> list[bytes]:
    reason = {
        200: "OK",
        400: "Bad Request",
        401: "Unauthorized",
        404: "Not Found",
        405: "Method Not Allowed",
        409: "Conflict",
        413: "Content Too Large",
        503: "Service Unavailable",
    }.get(response.status, "")
    start_response(f"{response.status} {reason}", response.headers)
    return [response.body]
