"""``InterlockMiddleware``: the pure ASGI middleware (no Starlette dependency).

Add it to any ASGI app::

    app.add_middleware(InterlockMiddleware, interlock=ail, locks=[...], cache=[...])
    app = InterlockMiddleware(app, interlock=ail)          # or wrap by hand

Non-HTTP scopes (lifespan, websocket) pass straight through. The response is observed by
wrapping ``send``; all per-request state lives in the call, never on the middleware.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from interlock import _context
from interlock._async.client import AsyncInterlock
from interlock._concurrency import async_shielded
from interlock.errors import BackendError, LockLost, LockTimeout
from interlock.http._asgi_cache import AsgiResponseCache
from interlock.http._asgi_client import ClientGone, ClientWatch
from interlock.http._core import Exchange, HttpCore, RequestTools
from interlock.http._responses import Problem, exposition, internal_error, multiprocess_mode
from interlock.http._routes import AsgiRoutes, django_template, is_django_app
from interlock.http._rules import CacheRule, LockRule
from interlock.http._txn import abort_cause, commits, failure_problem, record, settled
from interlock.txn._remote import RemoteParticipantConfig

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

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
        self.response_cache = (
            AsgiResponseCache(interlock, self.core) if self.core.cache_rules else None
        )
        if participant is not None:  # inside the middleware: logged and counted
            from interlock.http._asgi_participant import AsgiParticipant

            self.app = AsgiParticipant(app, interlock, participant)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":  # the server's loop: recovery can start now
                self.interlock.transactions.autostart()
            await self.app(scope, receive, send)
            return
        core = self.core
        method: str = scope["method"]
        path: str = scope["path"]
        root_path: str = scope.get("root_path", "")
        if core.metrics_path is not None and core.is_metrics_request(method, path, root_path):
            await _serve_metrics(self.interlock, core.multiprocess, scope, send)
            return

        headers: dict[str, str] = {}
        wanted = core.wanted_bytes
        for name, value in scope["headers"]:
            if name in wanted:
                key = name.decode("latin-1")
                text = value.decode("latin-1")
                headers[key] = f"{headers[key]}, {text}" if key in headers else text
        client = scope.get("client")
        ex = core.begin(
            method,
            path,
            root_path,
            scope.get("query_string", b"").decode("latin-1"),
            headers,
            client[0] if client else None,
        )
        token = _context.enter(ex.context)
        tools = RequestTools(self.interlock, ex)
        scope["interlock"] = tools
        request_id = ex.request_id.encode()
        lease: Any = None
        replaced = False  # a failed commit answered instead of the handler

        client = ClientWatch(receive, ex)

        async def send_wrapper(message: Message) -> None:
            nonlocal lease, replaced
            kind = message["type"]
            if replaced:
                return  # the handler's response was replaced by a problem
            if kind == "http.response.start":
                ex.status = message["status"]
                if ex.txn is not None and not ex.txn.settled:
                    refusal = await _settle(ex)  # before anything reaches the client
                    if refusal is not None:
                        replaced, ex.status = True, refusal.status
                        await _send_problem(send, refusal, request_id)
                        ex.finished_body = True
                        if lease is not None:
                            held, lease = lease, None
                            await _release(held)
                        return
                response_headers = list(message.get("headers", ()))
                for name, _ in response_headers:
                    if name == _REQUEST_ID or name.lower() == _REQUEST_ID:
                        break
                else:
                    response_headers.append((_REQUEST_ID, request_id))
                message = {**message, "headers": response_headers}
            try:
                await send(message)
            except OSError:  # the server could not deliver it: the client is gone
                ex.disconnected = not ex.finished_body
                raise
            if kind == "http.response.body" and not message.get("more_body", False):
                ex.finished_body = True
                if lease is not None:
                    held, lease = lease, None
                    await _release(held)

        try:
            if ex.lock is not None:
                try:
                    lease, refusal = await client.wait(self._acquire(ex))
                except ClientGone:  # it left while queued: the handler does not run
                    return
                if refusal is not None:
                    await _send_problem(send, refusal, request_id)
                    ex.status = refusal.status
                    return
                tools.lease = lease
            if self.response_cache is not None:
                await self.response_cache.handle(ex, scope, client, send_wrapper, self.app)
            else:
                await self.app(scope, client.receive, send_wrapper)
        except BaseException as exc:
            ex.error = exc
            if ex.status is None and isinstance(exc, Exception):
                answer = None
                if ex.txn is not None and not ex.txn.settled:
                    answer = await _settle(ex, abort_cause(ex), exc)  # before any response
                if answer is not None:  # a branch's lock wait: a 503, not a crash
                    ex.status, ex.error = answer.status, None
                    await _send_problem(send, answer, request_id)
                    return
                if not _outer_error_page(scope):
                    ex.status = 500  # answered here: an outer 500 page would lack the id
                    await _send_problem(send, internal_error(ex.request_id), request_id)
            raise  # servers log it (the response is complete), test clients may raise it
        finally:
            client.close()
            try:
                if ex.txn is not None and not ex.txn.settled:
                    await _settle(ex, abort_cause(ex))
                if lease is not None:
                    await _release(lease)
            finally:
                if ex.route is None:
                    ex.route = self.routes.template(scope, root_path)
                    if ex.route is None and self.django:
                        ex.route = django_template(ex.rpath)
                core.finish(ex)
                _context.leave(token)

    async def _acquire(self, ex: Exchange) -> tuple[Any, Problem | None]:
        assert ex.lock is not None
        rule, params = ex.lock
        lock = self.interlock.lock(rule.name, rule.resource(params), **rule.options)
        try:
            return await lock.acquire(), None
        except (LockTimeout, BackendError) as exc:
            return None, self.core.lock_failed(ex, exc)


async def _settle(
    ex: Exchange, cause: str | None = None, error: BaseException | None = None
) -> Problem | None:
    """Commit or abort the request's transaction; the problem to send if the commit failed
    or the handler's failure (``error``, or the one its framework answered with a 500) was
    a branch's lock wait.

    ``cause`` given: the request ends without a response: abort. Otherwise the response
    status decides (docs/middleware.md, *Request-scoped transactions*).
    """
    txn = ex.txn
    txn.settled = True
    answer: Problem | None = None
    commit = False
    if not txn.active:
        cause = "handler"  # it called commit() or abort() itself
    elif cause is None:
        commit = commits(ex.status or 500) and not ex.disconnected
        cause = "disconnect" if ex.disconnected else "status"
    try:
        if commit:
            try:
                await async_shielded(txn.transaction.commit())
            except Exception as exc:  # aborted, in doubt, heuristic: all mapped to a problem
                answer = failure_problem(ex, txn, exc)
        elif txn.active:
            blocked = await async_shielded(
                txn.transaction.abort_for(error if error is not None else ex.handler_error)
            )
            if blocked is not None:
                answer = failure_problem(ex, txn, blocked)
    finally:
        applied = 0
        for cache, tag in txn.take_due():  # filled by on_commit: only after a commit
            try:
                await cache.invalidate_tag(tag)
                applied += 1
            except Exception as exc:  # committed all the same; the log line says so
                record(ex, invalidate_error=type(exc).__name__)
        settled(ex, txn, cause, applied)
    return answer


async def _release(lease: Any) -> None:
    try:
        await lease.release()
    except LockLost as exc:  # the response is out; the log line tells the story
        _context.record("lock", lost=True, lost_reason=lease.lost_reason or str(exc))
    except BackendError as exc:  # the lease expires by itself
        _context.record("lock", release_error=type(exc).__name__)


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


async def _send_problem(send: Send, problem: Problem, request_id: bytes) -> None:
    headers = [(n.encode(), v.encode()) for n, v in problem.headers]
    headers.append((_REQUEST_ID, request_id))
    await send({"type": "http.response.start", "status": problem.status, "headers": headers})
    await send({"type": "http.response.body", "body": problem.body})


async def _serve_metrics(
    interlock: AsyncInterlock, multiprocess: bool, scope: Scope, send: Send
) -> None:
    accept = None
    for name, value in scope.get("headers", ()):
        if name == b"accept":
            accept = value.decode("latin-1")
    body, content_type = exposition(interlock.registry, accept, multiprocess)
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


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
