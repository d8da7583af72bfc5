"""``InterlockMiddleware``: the pure ASGI middleware (no Starlette dependency).

Add it to any ASGI app::

    app.add_middleware(InterlockMiddleware, interlock=ail, locks=[...], cache=[...])
    app = InterlockMiddleware(app, interlock=ail)          # or wrap by hand

Non-HTTP scopes (lifespan, websocket) pass straight through. Each HTTP request gets a
:class:`_Responder` (all per-request state, never on the middleware); the response is
observed by wrapping ``send``. This module translates ASGI and nothing else: the lock, the
request transaction, the response cache and the participant endpoints are the shared
``interlock._async.http`` (the WSGI driver runs their generated twins).
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from interlock._async.client import AsyncInterlock
from interlock._async.http.cycle import AsyncRequestCycle
from interlock._async.http.response_cache import (
    AsyncCapture,
    AsyncOnStart,
    AsyncResponseCache,
    Captured,
    RequestView,
)
from interlock._async.http.tools import AsyncRequestTools
from interlock._concurrency import AsyncEvent
from interlock.http._asgi_client import ClientGone, ClientWatch
from interlock.http._core import HttpCore
from interlock.http._participant import WANTED
from interlock.http._responses import Problem, exposition, internal_error, multiprocess_mode
from interlock.http._routes import AsgiRoutes, django_template, is_django_app
from interlock.http._rules import CacheRule, LockRule
from interlock.http.types import ASGIApp, Headers, Message, Receive, Scope, Send
from interlock.txn._remote import SCOPE_KEY, RemoteBranch, RemoteParticipantConfig

if TYPE_CHECKING:  # imported with a participant only: it needs httpx
    from interlock._async.http.participant import AsyncParticipantEndpoints

T = TypeVar("T")
_REQUEST_ID = b"x-request-id"


class InterlockMiddleware:
    """Metrics, one JSON log line, request ids, lock rules and response caching per request.

    Args:
        app: the ASGI application to wrap.
        interlock: the :class:`~interlock.AsyncInterlock` to use.
        locks: :class:`~interlock.LockRule` s; the first matching rule applies.
        cache: :class:`~interlock.CacheRule` s; the first matching rule applies.
        routes: extra route templates, used as ``route`` labels when the framework
            exposes none (raw ASGI apps).
        metrics_path: path of the Prometheus endpoint; ``None`` to serve it elsewhere
            (see :func:`metrics_app`).
        exemplars: attach the trace id to the HTTP metrics as an exemplar.
        trust_request_id: reuse a well-formed incoming ``X-Request-ID``.
        logger: logger name of the per-request line (``interlock.http``).
        participant: serve the remote-participant endpoints and run requests that
            join another service's transaction in a branch (docs/transactions.md).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        interlock: AsyncInterlock,
        locks: Sequence[LockRule] = (),
        cache: Sequence[CacheRule] = (),
        routes: Sequence[str] = (),
        metrics_path: str | None = "/metrics",
        exemplars: bool = True,
        trust_request_id: bool = True,
        logger: str = "interlock.http",
        participant: RemoteParticipantConfig | None = None,
    ) -> None:
        if not isinstance(interlock, AsyncInterlock):
            raise TypeError(
                f"interlock={interlock!r} must be an AsyncInterlock for the ASGI middleware "
                "(use InterlockWSGIMiddleware with a blocking Interlock)"
            )
        self.app = app
        self.interlock = interlock
        self.core = HttpCore(
            interlock,
            locks=locks,
            cache=cache,
            routes=routes,
            metrics_path=metrics_path,
            exemplars=exemplars,
            logger=logger,
            trust_request_id=trust_request_id,
        )
        self.routes = AsgiRoutes()
        self.django = is_django_app(app)
        _watch_django()  # Django answers a view's exception itself: see _django_exception
        self.response_cache = (
            AsyncResponseCache(interlock, self.core) if self.core.cache_rules else None
        )
        if participant is not None:  # inside the middleware: logged and counted
            from interlock._async.http.participant import AsyncParticipantEndpoints

            endpoints = AsyncParticipantEndpoints(interlock, participant)
            self.app = _ParticipantApp(app, endpoints)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":  # the server's loop: recovery can start now
                self.interlock.transactions.autostart()
            await self.app(scope, receive, send)
            return
        core = self.core
        if core.metrics_path is not None and core.is_metrics_request(
            scope["method"], scope["path"], scope.get("root_path", "")
        ):
            await _serve_metrics(self.interlock, core.multiprocess, scope, send)
            return
        responder = _Responder(self, scope)
        await responder(receive, send)


class _Responder:
    """One HTTP request through the middleware: its exchange, lock, transaction and cache.

    The shape of Starlette's ``GZipResponder``: created per request, called with the
    request's ``receive`` and ``send``; the application gets a wrapped ``send`` that holds
    ``http.response.start`` until the request transaction is decided.
    """

    __slots__ = (
        "client",
        "cycle",
        "ex",
        "middleware",
        "replaced",
        "request_id",
        "root_path",
        "scope",
        "send",
    )

    def __init__(self, middleware: InterlockMiddleware, scope: Scope) -> None:
        self.middleware = middleware
        self.scope = scope
        self.root_path: str = scope.get("root_path", "")
        client = scope.get("client")
        self.ex = middleware.core.begin(
            scope["method"],
            scope["path"],
            self.root_path,
            scope.get("query_string", b"").decode("latin-1"),
            _headers(scope["headers"], middleware.core.wanted_bytes),
            client[0] if client else None,
        )
        self.cycle = AsyncRequestCycle(middleware.interlock, middleware.core, self.ex)
        scope["interlock"] = self.cycle.tools
        if self.ex.traceparent is not None:  # the trace interlock started (docs/tracing.md)
            scope["headers"] = [*scope["headers"], (b"traceparent", self.ex.traceparent.encode())]
        self.request_id = self.ex.request_id.encode()
        self.replaced = False  # a failed commit answered instead of the handler

    async def __call__(self, receive: Receive, send: Send) -> None:
        self.client = ClientWatch(receive, self.ex)
        self.send = send
        try:
            if self.ex.lock is None and self.middleware.response_cache is None:
                await self.middleware.app(self.scope, self.client.receive, self._send_response)
            else:
                await self._run()
        except BaseException as exc:
            if not await self._answer_failure(exc):
                raise  # servers log it (the response is complete), test clients may raise it
        finally:
            self.client.close()
            try:
                if not self.cycle.idle:
                    await self.cycle.end()
            finally:
                self._finish()

    async def _run(self) -> None:
        """With a lock rule or the response cache: the lock first, then the cache."""
        if self.ex.lock is not None:
            try:
                refusal = await self.client.wait(self.cycle.acquire())
            except ClientGone:  # it left while queued: the handler does not run
                return
            if refusal is not None:
                await self._send_problem(refusal)
                return
        cache = self.middleware.response_cache
        if cache is not None:
            await cache.handle(self.ex, self)
        else:
            await self.middleware.app(self.scope, self.client.receive, self._send_response)

    async def _answer_failure(self, exc: BaseException) -> bool:
        """Answer the handler's exception if nothing was sent yet; True if it is handled
        (a branch's lock wait: a 503, not a crash)."""
        problem = await self.cycle.failed(exc)
        if problem is not None:
            await self._send_problem(problem)
            return True
        ex = self.ex
        if ex.status is None and isinstance(exc, Exception) and not _outer_error_page(self.scope):
            ex.status = 500  # answered here: an outer 500 page would lack the id
            await self._send_problem(internal_error(ex.request_id))
        return False

    def _finish(self) -> None:
        """The route label (the framework has routed by now), the metrics, the log line."""
        ex = self.ex
        if ex.route is None:
            ex.route = self.middleware.routes.template(self.scope, self.root_path)
            if ex.route is None and self.middleware.django:
                ex.route = django_template(ex.rpath)
        self.cycle.finish()

    async def _send_response(self, message: Message) -> None:
        """The application's ``send``: the request id added, the transaction decided
        before the status goes out, the lock released after the last body chunk."""
        if self.replaced:
            return  # the handler's response was replaced by a problem
        kind = message["type"]
        if kind == "http.response.start":
            self.ex.status = message["status"]
            if self.cycle.deciding:
                started = await self._start(message)
                if started is None:
                    return
                message = started
            else:
                message = self._with_request_id(message)
        try:
            await self.send(message)
        except OSError:  # the server could not deliver it: the client is gone
            self.ex.disconnected = not self.ex.finished_body
            raise
        if kind == "http.response.body" and not message.get("more_body", False):
            self.ex.finished_body = True
            if self.cycle.holding:
                await self.cycle.release()

    async def _start(self, message: Message) -> Message | None:
        """The ``http.response.start`` to send once the open transaction is decided, or
        ``None`` if a problem was sent instead."""
        if self.cycle.undecided:
            await self.client.probe()  # a client already gone does not get a commit
        refusal = await self.cycle.decide()
        if refusal is not None:
            self.replaced = True
            await self._send_problem(refusal)
            self.ex.finished_body = True
            await self.cycle.release()
            return None
        return self._with_request_id(message)

    def _with_request_id(self, message: Message) -> Message:
        headers = list(message.get("headers", ()))
        for name, _ in headers:
            if name == _REQUEST_ID or name.lower() == _REQUEST_ID:
                return {**message, "headers": headers}
        headers.append((_REQUEST_ID, self.request_id))
        return {**message, "headers": headers}

    async def _send_problem(self, problem: Problem) -> None:
        headers = [*problem.headers, ("x-request-id", self.ex.request_id)]
        await _send(self.send, problem.status, headers, problem.body)

    # -- the response cache's view of the request (AsyncCacheTarget) -----------------------

    def request(self) -> RequestView:
        server = self.scope.get("server")
        return RequestView(
            self.scope.get("scheme", "http"),
            [(n.lower(), v) for n, v in _decoded(self.scope["headers"])],
            (server[0], server[1]) if server else None,
        )

    async def pass_through(self, x_cache: str | None, on_start: AsyncOnStart | None = None) -> None:
        send = self._send_response if x_cache is None else _tagging(self._send_response, x_cache)
        if on_start is not None:
            send = _observing(send, on_start)
        await self.middleware.app(self.scope, self.client.receive, send)

    def snapshot(self) -> AsyncCapture:
        app, copy = self.middleware.app, dict(self.scope)

        async def capture(max_body: int, headers: Headers) -> Captured:
            return await _capture(app, {**copy, "headers": _encoded(headers)}, max_body)

        return capture

    async def respond(self, status: int, headers: Headers, body: bytes) -> None:
        await _send(self._send_response, status, headers, body)

    async def wait(self, step: Awaitable[T]) -> T:
        return await self.client.wait(step)


class _ParticipantApp:
    """The participant endpoints as an ASGI app between the middleware and the app."""

    def __init__(self, app: ASGIApp, endpoints: AsyncParticipantEndpoints) -> None:
        self.app = app
        self.endpoints = endpoints

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.endpoints.handle(_ParticipantRequest(self.app, scope, receive, send))


class _ParticipantRequest:
    """One request as the participant endpoints see it (``AsyncParticipantTarget``)."""

    def __init__(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        self.app, self.scope, self.receive, self.send = app, scope, receive, send
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.query: str = scope.get("query_string", b"").decode("latin-1")
        self.headers = {
            name.lower(): value
            for name, value in _decoded(scope["headers"])
            if name.lower() in WANTED
        }
        tools = scope.get("interlock")
        self.tools = tools if isinstance(tools, AsyncRequestTools) else None
        self.kept: Message | None = None  # the branch handler's http.response.start
        self.chunks: list[bytes] = []

    async def pass_through(self) -> None:
        await self.app(self.scope, self.receive, self.send)

    async def read_body(self, limit: int) -> bytes | None:
        parts: list[bytes] = []
        size = 0
        while (message := await self.receive())["type"] == "http.request":
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            parts.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(parts)

    async def respond(self, response: Problem) -> None:
        await _send(self.send, response.status, response.headers, response.body)

    async def run_branch(self, branch: RemoteBranch, body: bytes) -> int:
        self.scope[SCOPE_KEY] = branch
        replay = _replay(body)

        async def keep(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.kept = message
            elif message["type"] == "http.response.body":
                self.chunks.append(message.get("body", b""))

        await self.app(self.scope, replay, keep)
        return int(self.kept["status"]) if self.kept is not None else 500

    async def send_branch(self, extra: Headers) -> None:
        start = self.kept or {}
        headers = [*start.get("headers", ()), *_encoded(extra)]
        status = start.get("status", 500)
        await self.send(
            {**start, "type": "http.response.start", "status": status, "headers": headers}
        )
        await self.send({"type": "http.response.body", "body": b"".join(self.chunks)})


# -- protocol helpers ----------------------------------------------------------------------


def _headers(raw: Iterable[tuple[bytes, bytes]], wanted: frozenset[bytes]) -> dict[str, str]:
    """The request headers the core wants, decoded; repeated ones joined with ``", "``."""
    headers: dict[str, str] = {}
    for name, value in raw:
        if name in wanted:
            key, text = name.decode("latin-1"), value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


def _decoded(raw: Iterable[tuple[bytes, bytes]]) -> Headers:
    return [(bytes(n).decode("latin-1"), bytes(v).decode("latin-1")) for n, v in raw]


def _encoded(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers]


async def _send(send: Send, status: int, headers: Iterable[tuple[str, str]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": _encoded(headers)})
    await send({"type": "http.response.body", "body": body})


def _tagging(send: Send, value: str) -> Send:
    """``send`` adding ``X-Cache: value`` to the response's headers."""
    header = (b"x-cache", value.encode())

    async def tagged(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), header]}
        await send(message)

    return tagged


def _observing(send: Send, on_start: AsyncOnStart) -> Send:
    """``send`` calling ``on_start(status, headers)`` before the response starts."""

    async def observed(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [(n.lower(), v) for n, v in _decoded(message.get("headers", ()))]
            await on_start(int(message["status"]), headers)
        await send(message)

    return observed


def _replay(body: bytes, done: AsyncEvent | None = None) -> Receive:
    """A ``receive`` giving ``body`` in one message, then (once ``done`` is set) a disconnect."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        if done is not None:
            await done.wait()
        return {"type": "http.disconnect"}

    return receive


class _TooLarge(Exception):
    """Raised into the application's ``send`` when a body outgrows ``max_body``."""


async def _capture(app: ASGIApp, scope: Scope, max_body: int) -> Captured:
    """Run ``app`` on a copy of the request, without its client; its response."""
    captured = Captured()
    done = AsyncEvent()

    async def keep(message: Message) -> None:
        if message["type"] == "http.response.start":
            captured.status = int(message["status"])
            captured.headers = [(n.lower(), v) for n, v in _decoded(message.get("headers", ()))]
        elif message["type"] == "http.response.body":
            captured.body += message.get("body", b"")
            if len(captured.body) > max_body:
                raise _TooLarge
            if not message.get("more_body", False):
                done.set()

    try:
        await app(scope, _replay(b"", done), keep)
    except _TooLarge:
        captured.truncated = True
    finally:
        done.set()
    return captured


def _outer_error_page(scope: Scope) -> bool:
    """True if the Starlette app around us renders 500s its own way (debug page, handler).

    Starlette's ``ServerErrorMiddleware`` sits outside middleware added with
    ``add_middleware``; it answers only if nothing was sent yet. With ``debug=True`` or a
    handler for ``500``/``Exception`` the app's choice is kept (the handler can echo
    ``scope["interlock"].request_id``); its default plain 500 is replaced by ours.
    """
    app = scope.get("app")
    if app is None:
        return False
    if getattr(app, "debug", False) is True:
        return True
    handlers = getattr(app, "exception_handlers", None)
    return isinstance(handlers, dict) and (500 in handlers or Exception in handlers)


def _django_exception(sender: Any, request: Any = None, **extra: Any) -> None:
    """Django answers a view's exception with its own 500 before the middleware sees it;
    its ``got_request_exception`` signal, sent from the ``except`` block that does so
    (asgiref re-raises the exception in the thread that runs it), hands it over, so that
    a branch's lock wait or one of interlock's own errors still gets its documented
    problem (a 503 ``transaction-blocked``, ``backend-unavailable``, ...)."""
    exception = sys.exc_info()[1]
    scope = getattr(request, "scope", None)  # an ASGIRequest's
    tools = scope.get("interlock") if isinstance(scope, dict) else None
    if exception is not None and isinstance(tools, AsyncRequestTools):
        tools.note_handler_error(exception)


def _watch_django() -> None:
    if "django" in sys.modules:
        from django.core.signals import got_request_exception

        got_request_exception.connect(_django_exception, dispatch_uid="interlock.asgi")


async def _serve_metrics(
    interlock: AsyncInterlock, multiprocess: bool, scope: Scope, send: Send
) -> None:
    accept = None
    for name, value in scope.get("headers", ()):
        if name == b"accept":
            accept = value.decode("latin-1")
    body, content_type = exposition(interlock.registry, accept, multiprocess)
    headers = [
        ("content-type", content_type),
        ("content-length", str(len(body))),
        ("cache-control", "no-store"),
    ]
    await _send(send, 200, headers, b"" if scope["method"] == "HEAD" else body)


def metrics_app(interlock: AsyncInterlock) -> ASGIApp:
    """A standalone ASGI app serving ``interlock``'s metrics (e.g. on another port)."""
    multiprocess = multiprocess_mode()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await _serve_metrics(interlock, multiprocess, scope, send)

    return app
