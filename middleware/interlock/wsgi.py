"""``InterlockWSGIMiddleware``: the WSGI twin of :class:`interlock.asgi.InterlockMiddleware`.

Wrap any WSGI app (Flask: ``app.wsgi_app = InterlockWSGIMiddleware(app.wsgi_app, ...)``;
Django: wrap ``get_wsgi_application()``). As with Werkzeug's ``ClosingIterator``, the
request ends when the server closes the response iterable: that is when the lock of a
:class:`~interlock.LockRule` is released, the duration measured and the log line written,
so streamed bodies are covered and a client that goes away still releases the lock.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from http import HTTPStatus
from typing import Any

from interlock import _context
from interlock._sync.client import Interlock
from interlock.errors import BackendError, LockLost, LockTimeout
from interlock.http._core import Exchange, HttpCore, RequestTools
from interlock.http._responses import Problem, exposition, internal_error, multiprocess_mode
from interlock.http._routes import django_template, flask_template, is_django_app
from interlock.http._rules import CacheRule, LockRule
from interlock.http._txn import abort_cause, commits, failure_problem, record, settled
from interlock.http._wire import utf8
from interlock.http._wsgi_cache import WsgiResponseCache
from interlock.txn._remote import RemoteParticipantConfig

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]


class InterlockWSGIMiddleware:
    """Metrics, one JSON log line, request ids, lock rules and response caching per request.

    Args:
        app: the WSGI application to wrap.
        interlock: the blocking :class:`~interlock.Interlock` to use.
        locks, cache, routes, metrics_path, exemplars, trust_request_id, logger,
            participant: as for
            :class:`interlock.asgi.InterlockMiddleware`.
    """

    def __init__(
        self,
        app: WSGIApp,
        *,
        interlock: Interlock,
        locks: Sequence[LockRule] = (),
        cache: Sequence[CacheRule] = (),
        routes: Sequence[str] = (),
        metrics_path: str | None = "/metrics",
        exemplars: bool = True,
        trust_request_id: bool = True,
        logger: str = "interlock.http",
        participant: RemoteParticipantConfig | None = None,
    ) -> None:
        if not isinstance(interlock, Interlock):
            raise TypeError(
                f"interlock={interlock!r} must be a blocking Interlock for the WSGI middleware "
                "(use InterlockMiddleware with an AsyncInterlock for ASGI apps)"
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
        self.django = is_django_app(app)
        _watch_flask()  # Flask keeps a view's exception to itself: see _flask_exception
        self._environ_keys = [
            (name, "HTTP_" + name.upper().replace("-", "_")) for name in sorted(self.core.wanted)
        ]
        self.response_cache = (
            WsgiResponseCache(interlock, self.core) if self.core.cache_rules else None
        )
        if participant is not None:  # inside the middleware: logged and counted
            from interlock.http._wsgi_participant import WsgiParticipant

            self.app = WsgiParticipant(app, interlock, participant)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        core = self.core
        method: str = environ.get("REQUEST_METHOD", "GET")
        root_path = utf8(environ.get("SCRIPT_NAME", ""))
        path = root_path + utf8(environ.get("PATH_INFO", ""))
        if core.metrics_path is not None and core.is_metrics_request(method, path, root_path):
            return _serve_metrics(self.interlock, core.multiprocess, environ, start_response)
        headers = {name: environ[key] for name, key in self._environ_keys if key in environ}
        ex = core.begin(
            method,
            path,
            root_path,
            environ.get("QUERY_STRING", ""),
            headers,
            environ.get("REMOTE_ADDR"),
        )
        token = _context.enter(ex.context)
        tools = RequestTools(self.interlock, ex)
        environ["interlock"] = tools
        request_id = ex.request_id
        response = _Response(self, ex, environ, token, start_response)

        def observe(status: str, response_headers: list[tuple[str, str]], *exc: Any) -> Any:
            if ex.route is None:  # Flask forgets its request once the app returns
                ex.route = flask_template(environ)
            try:
                ex.status = int(status[:3])
            except ValueError:
                ex.status = 500
            if ex.txn is not None and not ex.txn.settled:
                refusal = _settle(ex)  # before the body, and before the server sends headers
                if refusal is not None:
                    ex.status = refusal.status
                    response.replacement = [refusal.body]
                    response.length = len(refusal.body)
                    start_response(
                        f"{refusal.status} {HTTPStatus(refusal.status).phrase}",
                        [*refusal.headers, ("X-Request-ID", request_id)],
                        *exc,
                    )
                    return _discard
            if not any(n.lower() == "x-request-id" for n, _ in response_headers):
                response_headers = [*response_headers, ("X-Request-ID", request_id)]
            response.length = declared_length(response_headers)
            return start_response(status, response_headers, *exc)

        try:
            if ex.lock is not None:
                response.lease, refusal = self._acquire(ex)
                if refusal is not None:
                    ex.status = refusal.status
                    response.body = _send_problem(start_response, refusal, request_id)
                    return response
                tools.lease = response.lease
            if self.response_cache is not None:
                response.body = self.response_cache.handle(ex, environ, observe, self.app)
            else:
                response.body = self.app(environ, observe)
        except BaseException as exc:
            ex.error = exc
            answer = _blocked(ex, exc)
            if answer is not None:  # a branch's lock wait: a 503, not a crash
                response.body = _send_problem(start_response, answer, request_id)
                return response
            if _answers_crash(ex, exc, environ):  # the server's 500 would lack the id
                ex.status = 500
                if ex.txn is not None and not ex.txn.settled:
                    _settle(ex, abort_cause(ex))  # before anything reaches the client
                response.body = _send_problem(
                    start_response, internal_error(request_id), request_id, sys.exc_info()
                )
                return response
            response.close()
            raise
        return response

    def _acquire(self, ex: Exchange) -> tuple[Any, Problem | None]:
        assert ex.lock is not None
        rule, params = ex.lock
        lock = self.interlock.lock(rule.name, rule.resource(params), **rule.options)
        try:
            return lock.acquire(), None
        except (LockTimeout, BackendError) as exc:
            return None, self.core.lock_failed(ex, exc)

    def _route(self, ex: Exchange, environ: Environ) -> str | None:
        if self.django:
            return django_template(utf8(environ.get("PATH_INFO", "")) or "/")
        return None


class _Response:
    """The response iterable: passes the body through; ``close()`` ends the request."""

    __slots__ = (
        "_closed", "_ex", "_middleware", "_start_response", "_token", "body", "environ", "lease",
        "length", "replacement", "sent",
    )  # fmt: skip

    def __init__(
        self,
        middleware: InterlockWSGIMiddleware,
        ex: Exchange,
        environ: Environ,
        token: Any,
        start_response: StartResponse,
    ) -> None:
        self._middleware = middleware
        self._start_response = start_response
        self._ex = ex
        self._token = token
        self._closed = False
        self.environ = environ
        self.body: Iterable[bytes] = ()
        self.lease: Any = None
        self.replacement: list[bytes] | None = None  # a failed commit's problem
        self.length: int | None = None  # the Content-Length the response declared
        self.sent = 0  # body bytes handed to the server

    def __iter__(self) -> Iterator[bytes]:
        try:
            if self.replacement is None:
                for chunk in self.body:
                    if self._replaced():  # start_response came with the first chunk
                        break
                    self.sent += len(chunk)
                    yield chunk
            if self.replacement is not None:
                self.sent = 0
                for chunk in self.replacement:
                    self.sent += len(chunk)
                    yield chunk
        except BaseException as exc:
            if not isinstance(exc, GeneratorExit):
                self._ex.error = exc
                answer = _blocked(self._ex, exc)
                if answer is not None:  # a generator app's branch hit its lock wait
                    yield from _send_problem(self._start_response, answer, self._ex.request_id)
                    self._ex.finished_body = True
                    return
                if _answers_crash(self._ex, exc, self.environ):  # a generator app failed
                    self._ex.status = 500
                    if self._ex.txn is not None and not self._ex.txn.settled:
                        _settle(self._ex, abort_cause(self._ex))
                    problem = internal_error(self._ex.request_id)
                    yield from _send_problem(
                        self._start_response, problem, self._ex.request_id, sys.exc_info()
                    )
                    self._ex.finished_body = True
                    return
            raise
        self._ex.finished_body = True

    def _replaced(self) -> bool:
        return self.replacement is not None

    def _complete(self) -> bool:
        """Was the whole body handed over? (Servers may stop at Content-Length.)"""
        ex = self._ex
        return ex.finished_body or (self.length is not None and self.sent >= self.length)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        ex = self._ex
        if not self._complete() and ex.error is None:
            ex.disconnected = True  # the server stopped sending: the client went away
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            try:
                if ex.txn is not None and not ex.txn.settled:
                    _settle(ex, abort_cause(ex))
                if self.lease is not None:
                    _release(self.lease)
            finally:
                if ex.route is None:
                    ex.route = self._middleware._route(ex, self.environ)
                self._middleware.core.finish(ex)
                _context.leave(self._token)


def declared_length(headers: list[tuple[str, str]]) -> int | None:
    for name, value in headers:
        if name.lower() == "content-length":
            return int(value) if value.strip().isdigit() else None
    return None


def _discard(data: bytes) -> None:
    """The ``write`` callable once the response was replaced: the handler's body is dropped."""


def _settle(
    ex: Exchange, cause: str | None = None, error: BaseException | None = None
) -> Problem | None:
    """Commit or abort the request's transaction; the problem to send if the commit failed
    or the handler's failure was a branch's lock wait.

    The twin of ``interlock.asgi._settle``: ``cause`` given, the request ends without a
    response (abort); otherwise the status decides.
    """
    txn = ex.txn
    txn.settled = True
    answer: Problem | None = None
    commit = False
    if not txn.active:
        cause = "handler"  # it called commit() or abort() itself
    elif cause is None:
        commit, cause = commits(ex.status or 500), "status"
    try:
        if commit:
            try:
                txn.transaction.commit()
            except Exception as exc:  # aborted, in doubt, heuristic: all mapped to a problem
                answer = failure_problem(ex, txn, exc)
        elif txn.active:
            blocked = txn.transaction.abort_for(error if error is not None else ex.handler_error)
            if blocked is not None:
                answer = failure_problem(ex, txn, blocked)
    finally:
        applied = 0
        for cache, tag in txn.take_due():  # filled by on_commit: only after a commit
            try:
                cache.invalidate_tag(tag)
                applied += 1
            except Exception as exc:  # committed all the same; the log line says so
                record(ex, invalidate_error=type(exc).__name__)
        settled(ex, txn, cause, applied)
    return answer


def _blocked(ex: Exchange, exc: BaseException) -> Problem | None:
    """The 503 answering ``exc`` if it is a branch's lock wait, before the response
    started; the transaction is aborted either way once it is known not to commit."""
    if ex.status is not None or not isinstance(exc, Exception):
        return None
    if ex.txn is None or ex.txn.settled:
        return None
    answer = _settle(ex, abort_cause(ex), exc)
    if answer is not None:
        ex.status, ex.error = answer.status, None
    return answer


def _flask_exception(sender: Any, exception: BaseException, **extra: Any) -> None:
    """Flask answers a view's exception with its own 500 before the middleware sees it;
    its ``got_request_exception`` signal hands the exception over, so that a branch's lock
    wait still turns the 500 into a 503 ``transaction-blocked``."""
    import flask

    tools = flask.request.environ.get("interlock")
    if isinstance(tools, RequestTools):
        tools._exchange.handler_error = exception


def _watch_flask() -> None:
    flask = sys.modules.get("flask")
    if flask is not None:
        flask.got_request_exception.connect(_flask_exception)


def _release(lease: Any) -> None:
    try:
        lease.release()
    except LockLost as exc:
        _context.record("lock", lost=True, lost_reason=lease.lost_reason or str(exc))
    except BackendError as exc:
        _context.record("lock", release_error=type(exc).__name__)


def _answers_crash(ex: Exchange, exc: BaseException, environ: Environ) -> bool:
    """True if the middleware answers ``exc`` with its own 500.

    Only before the response started, and not when the Werkzeug debugger is around us
    (it marks the environ): the debugger shows the traceback instead.
    """
    if ex.status is not None or not isinstance(exc, Exception):
        return False
    return "werkzeug.debug.preserve_context" not in environ


def _send_problem(
    start_response: StartResponse, problem: Problem, request_id: str, *exc_info: Any
) -> list[bytes]:
    reason = HTTPStatus(problem.status).phrase
    headers = [*problem.headers, ("X-Request-ID", request_id)]
    start_response(f"{problem.status} {reason}", headers, *exc_info)
    return [problem.body]


def _serve_metrics(
    interlock: Interlock, multiprocess: bool, environ: Environ, start_response: StartResponse
) -> list[bytes]:
    body, content_type = exposition(interlock.registry, environ.get("HTTP_ACCEPT"), multiprocess)
    start_response(
        "200 OK",
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
        ],
    )
    return [b"" if environ.get("REQUEST_METHOD") == "HEAD" else body]


def metrics_app(interlock: Interlock) -> WSGIApp:
    """A standalone WSGI app serving ``interlock``'s metrics."""
    multiprocess = multiprocess_mode()

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        return _serve_metrics(interlock, multiprocess, environ, start_response)

    return app
