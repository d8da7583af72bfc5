"""``InterlockWSGIMiddleware``: the WSGI twin of :class:`interlock.asgi.InterlockMiddleware`.

Wrap any WSGI app (Flask: ``app.wsgi_app = InterlockWSGIMiddleware(app.wsgi_app, ...)``;
Django: wrap ``get_wsgi_application()``). As with Werkzeug's ``ClosingIterator``, the
request ends when the server closes the response iterable: that is when the lock of a
:class:`~interlock.LockRule` is released, the duration measured and the log line written,
so streamed bodies are covered and a client that goes away still releases the lock.

This module translates WSGI and nothing else: each request gets a :class:`_Responder`
(the response iterable itself), which runs the generated ``interlock._sync.http`` steps
(lock, request transaction, response cache, participant endpoints).
"""

from __future__ import annotations

import io
import select
import socket
import sys
from collections.abc import Iterable, Iterator, Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, TypeVar

from interlock._sync.client import Interlock
from interlock._sync.http.cycle import RequestCycle
from interlock._sync.http.response_cache import (
    Capture,
    Captured,
    OnStart,
    RequestView,
    ResponseCache,
)
from interlock._sync.http.tools import RequestTools
from interlock.http._core import HttpCore
from interlock.http._participant import WANTED
from interlock.http._responses import Problem, exposition, internal_error, multiprocess_mode
from interlock.http._routes import django_template, flask_template, is_django_app
from interlock.http._rules import CacheRule, LockRule
from interlock.http._wire import utf8
from interlock.http.types import ExcInfo, Headers, StartResponse, Write, WSGIApp, WSGIEnviron
from interlock.txn._remote import SCOPE_KEY, RemoteBranch, RemoteParticipantConfig

if TYPE_CHECKING:  # imported with a participant only: it needs httpx
    from interlock._sync.http.participant import ParticipantEndpoints

T = TypeVar("T")
_PARTICIPANT_KEYS = [(name, "HTTP_" + name.upper().replace("-", "_")) for name in sorted(WANTED)]


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
        _watch_django()  # so does Django: see _django_exception
        self.environ_keys = [
            (name, "HTTP_" + name.upper().replace("-", "_")) for name in sorted(self.core.wanted)
        ]
        self.response_cache = ResponseCache(interlock, self.core) if self.core.cache_rules else None
        if participant is not None:  # inside the middleware: logged and counted
            from interlock._sync.http.participant import ParticipantEndpoints

            self.app = _ParticipantApp(app, ParticipantEndpoints(interlock, participant))

    def __call__(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        method: str = environ.get("REQUEST_METHOD", "GET")
        root_path = utf8(environ.get("SCRIPT_NAME", ""))
        path = root_path + utf8(environ.get("PATH_INFO", ""))
        if self.core.is_metrics_request(method, path, root_path):
            return _serve_metrics(self.interlock, self.core.multiprocess, environ, start_response)
        responder = _Responder(self, environ, method, path, root_path)
        return responder(start_response)


class _Responder:
    """One request through the middleware, and its response iterable: passes the body
    through; ``close()`` ends the request (the transaction, the lock, the log line)."""

    def __init__(
        self,
        middleware: InterlockWSGIMiddleware,
        environ: WSGIEnviron,
        method: str,
        path: str,
        root_path: str,
    ) -> None:
        self.middleware = middleware
        self.environ = environ
        headers = {name: environ[key] for name, key in middleware.environ_keys if key in environ}
        query = environ.get("QUERY_STRING", "")
        client = environ.get("REMOTE_ADDR")
        self.ex = middleware.core.begin(method, path, root_path, query, headers, client)
        self.cycle = RequestCycle(middleware.interlock, middleware.core, self.ex)
        environ["interlock"] = self.cycle.tools
        if self.ex.traceparent is not None:  # the trace interlock started (docs/tracing.md)
            environ["HTTP_TRACEPARENT"] = self.ex.traceparent
        self.body: Iterable[bytes] = ()
        self.replacement: list[bytes] | None = None  # a failed commit's problem
        self.length: int | None = None  # the Content-Length the response declared
        self.sent = 0  # body bytes handed to the server
        self.closed = False

    def __call__(self, start_response: StartResponse) -> Iterable[bytes]:
        self.start_response = start_response
        try:
            self._run()
        except BaseException as exc:
            if not self._answer_failure(exc, sys.exc_info()):
                self.close()
                raise
        return self

    def _run(self) -> None:
        refusal = self.cycle.acquire()
        if refusal is not None:
            self.body = self._problem(refusal)
            return
        cache = self.middleware.response_cache
        if cache is not None:
            cache.handle(self.ex, self)
        else:
            self.body = self.middleware.app(self.environ, self._observe)

    def _answer_failure(self, exc: BaseException, exc_info: ExcInfo) -> bool:
        """Answer the handler's exception if the response did not start; True if answered:
        a branch's lock wait (503), or a crash (500: the server's own would lack the id)."""
        problem = self.cycle.failed(exc)
        if problem is not None:
            self.body = self._problem(problem)
            return True
        if self.ex.status is not None or not isinstance(exc, Exception):
            return False
        if "werkzeug.debug.preserve_context" in self.environ:
            return False  # the Werkzeug debugger shows the traceback instead
        self.ex.status = 500
        self.body = self._problem(internal_error(self.ex.request_id), exc_info)
        return True

    def _observe(self, status: str, headers: Headers, exc_info: ExcInfo | None = None) -> Write:
        """The application's ``start_response``: the request id added, the transaction
        decided before the server can send anything."""
        ex = self.ex
        if ex.route is None:  # Flask forgets its request once the app returns
            ex.route = flask_template(self.environ)
        try:
            ex.status = int(status[:3])
        except ValueError:
            ex.status = 500
        if self.cycle.undecided and _client_gone(self.environ):
            ex.disconnected = True  # a client already gone does not get a commit
        refusal = self.cycle.decide()
        if refusal is not None:
            self.replacement = [refusal.body]
            self.length = len(refusal.body)
            _start(self.start_response, refusal, self.ex.request_id, exc_info)
            return _discard
        if not any(n.lower() == "x-request-id" for n, _ in headers):
            headers = [*headers, ("X-Request-ID", ex.request_id)]
        self.length = declared_length(headers)
        if exc_info is None:
            return self.start_response(status, headers)
        return self.start_response(status, headers, exc_info)

    def _problem(self, problem: Problem, exc_info: ExcInfo | None = None) -> list[bytes]:
        _start(self.start_response, problem, self.ex.request_id, exc_info)
        return [problem.body]

    def __iter__(self) -> Iterator[bytes]:
        try:
            if self.replacement is None:
                for chunk in self.body:
                    if self._replaced():  # start_response came with the chunk
                        break
                    self.sent += len(chunk)
                    yield chunk
            if self.replacement is not None:
                self.sent = 0
                for chunk in self.replacement:
                    self.sent += len(chunk)
                    yield chunk
        except BaseException as exc:
            if isinstance(exc, GeneratorExit) or not self._answer_failure(exc, sys.exc_info()):
                raise
            yield from self.body  # a generator app failed before its response started
        self.ex.finished_body = True

    def _replaced(self) -> bool:
        return self.replacement is not None

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        ex = self.ex
        complete = ex.finished_body or (self.length is not None and self.sent >= self.length)
        if not complete and ex.error is None:
            ex.disconnected = True  # the server stopped sending: the client went away
        try:
            close = getattr(self.body, "close", None)  # PEP 3333: close() if it has one
            if close is not None:
                close()
        finally:
            try:
                self.cycle.end()
            finally:
                if ex.route is None and self.middleware.django:
                    ex.route = django_template(utf8(self.environ.get("PATH_INFO", "")) or "/")
                self.cycle.finish()

    # -- the response cache's view of the request (CacheTarget) ----------------------------

    def request(self) -> RequestView:
        environ = self.environ
        port = environ.get("SERVER_PORT")
        server = (environ.get("SERVER_NAME", ""), int(port) if port and port.isdigit() else None)
        return RequestView(environ.get("wsgi.url_scheme", "http"), _fields(environ), server)

    def pass_through(self, x_cache: str | None, on_start: OnStart | None = None) -> None:
        observe = self._observe if x_cache is None else _tagging(self._observe, x_cache)
        if on_start is not None:
            observe = _observing(observe, on_start)
        self.body = self.middleware.app(self.environ, observe)

    def snapshot(self) -> Capture:
        app, copy = self.middleware.app, dict(self.environ)
        return lambda max_body, headers: _capture(app, _with_fields(copy, headers), max_body)

    def respond(self, status: int, headers: Headers, body: bytes) -> None:
        self._observe(status_line(status), headers)
        self.body = [body]

    def wait(self, step: T) -> T:
        return step  # a blocking step is done already: WSGI has no disconnect event


class _ParticipantApp:
    """The participant endpoints as a WSGI app between the middleware and the app."""

    def __init__(self, app: WSGIApp, endpoints: ParticipantEndpoints) -> None:
        self.app = app
        self.endpoints = endpoints

    def __call__(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        request = _ParticipantRequest(self.app, environ, start_response)
        self.endpoints.handle(request)
        return request.body


class _ParticipantRequest:
    """One request as the participant endpoints see it (``ParticipantTarget``)."""

    def __init__(self, app: WSGIApp, environ: WSGIEnviron, start_response: StartResponse) -> None:
        self.app, self.environ, self.start_response = app, environ, start_response
        self.method: str = environ.get("REQUEST_METHOD", "GET")
        self.path = utf8(environ.get("SCRIPT_NAME", "")) + utf8(environ.get("PATH_INFO", ""))
        self.query: str = environ.get("QUERY_STRING", "")
        self.headers = {name: environ[key] for name, key in _PARTICIPANT_KEYS if key in environ}
        tools = environ.get("interlock")
        self.tools = tools if isinstance(tools, RequestTools) else None
        self.body: Iterable[bytes] = ()
        self.kept: tuple[str, Headers] = ("500 Internal Server Error", [])
        self.chunks = b""

    def pass_through(self) -> None:
        self.body = self.app(self.environ, self.start_response)

    def read_body(self, limit: int) -> bytes | None:
        try:
            length = int(self.environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > limit:
            return None
        stream = self.environ.get("wsgi.input")
        if stream is None or length <= 0:
            return b""
        body: bytes = stream.read(length)
        return body

    def respond(self, response: Problem) -> None:
        reason = _PARTICIPANT_REASONS.get(response.status, "")
        self.start_response(f"{response.status} {reason}", response.headers)
        self.body = [response.body]

    def run_branch(self, branch: RemoteBranch, body: bytes) -> int:
        environ = self.environ
        environ[SCOPE_KEY] = branch
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))

        def keep(status: str, headers: Headers, exc_info: ExcInfo | None = None) -> Write:
            self.kept = (status, headers)
            return _discard  # the legacy write() is not supported in a branch

        result = self.app(environ, keep)
        try:
            self.chunks = b"".join(result)
        finally:
            _close(result)
        try:
            return int(self.kept[0][:3])
        except ValueError:
            return 500

    def send_branch(self, extra: Headers) -> None:
        status, headers = self.kept
        self.start_response(status, [*headers, *extra])
        self.body = [self.chunks]


_PARTICIPANT_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    503: "Service Unavailable",
}

# -- protocol helpers ----------------------------------------------------------------------


def declared_length(headers: Headers) -> int | None:
    for name, value in headers:
        if name.lower() == "content-length":
            return int(value) if value.strip().isdigit() else None
    return None


def status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"


def _discard(data: bytes) -> None:
    """The ``write`` callable once the response was replaced: the handler's body is dropped."""


def _close(result: Iterable[bytes]) -> None:
    close = getattr(result, "close", None)  # PEP 3333: close() if it has one
    if close is not None:
        close()


def _start(
    start_response: StartResponse, problem: Problem, request_id: str, exc_info: ExcInfo | None
) -> None:
    headers = [*problem.headers, ("X-Request-ID", request_id)]
    if exc_info is None:
        start_response(status_line(problem.status), headers)
    else:
        start_response(status_line(problem.status), headers, exc_info)


def _tagging(start_response: StartResponse, value: str) -> StartResponse:
    """``start_response`` adding ``X-Cache: value`` to the response's headers."""

    def tagged(status: str, headers: Headers, exc_info: ExcInfo | None = None) -> Write:
        if exc_info is None:
            return start_response(status, [*headers, ("X-Cache", value)])
        return start_response(status, [*headers, ("X-Cache", value)], exc_info)

    return tagged


def _observing(start_response: StartResponse, on_start: OnStart) -> StartResponse:
    """``start_response`` calling ``on_start(status, headers)`` first (not for an error
    page replacing a started response)."""

    def observed(status: str, headers: Headers, exc_info: ExcInfo | None = None) -> Write:
        if exc_info is None:
            on_start(int(status[:3]), [(n.lower(), v) for n, v in headers])
        return start_response(status, headers, exc_info)

    return observed


def _fields(environ: WSGIEnviron) -> Headers:
    """The request's header fields (lower-case names) from ``HTTP_*`` and ``CONTENT_*``."""
    fields: Headers = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            fields.append((key[5:].replace("_", "-").lower(), value))
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            fields.append((key.replace("_", "-").lower(), value))
    return fields


def _with_fields(environ: WSGIEnviron, fields: Headers) -> WSGIEnviron:
    """A copy of ``environ`` whose ``HTTP_*`` keys are ``fields``."""
    copy = {k: v for k, v in environ.items() if not k.startswith("HTTP_")}
    for name, value in fields:
        if name in ("content-type", "content-length"):
            continue
        key = "HTTP_" + name.upper().replace("-", "_")
        copy[key] = f"{copy[key]}, {value}" if key in copy else value
    return copy


def _capture(app: WSGIApp, environ: WSGIEnviron, max_body: int) -> Captured:
    """Run ``app`` on a copy of the request, with an empty body; its response."""
    captured = Captured()
    environ["wsgi.input"] = io.BytesIO(b"")

    def keep(status: str, headers: Headers, exc_info: ExcInfo | None = None) -> Write:
        captured.status = int(status[:3])
        captured.headers = [(n.lower(), v) for n, v in headers]
        return captured.body.extend

    result = app(environ, keep)
    try:
        for chunk in result:
            captured.body += chunk
            if len(captured.body) > max_body:
                captured.truncated = True
                break
    finally:
        _close(result)
    return captured


def _client_gone(environ: WSGIEnviron) -> bool:
    """True if the client's connection reads end-of-file: it went away.

    WSGI has no disconnect event; servers that expose the connection (gunicorn, the
    Werkzeug server) let us peek at it without consuming anything. Others: never gone.
    """
    sock = environ.get("gunicorn.socket") or environ.get("werkzeug.socket")
    if not isinstance(sock, socket.socket):
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except ConnectionError:
        return True
    except (OSError, ValueError):  # TLS sockets take no flags; a descriptor select refuses
        return False


def _flask_exception(sender: Any, exception: BaseException, **extra: Any) -> None:
    """Flask answers a view's exception with its own 500 before the middleware sees it;
    its ``got_request_exception`` signal hands the exception over, so that a branch's lock
    wait or one of interlock's own errors still turns the 500 into its documented problem
    (a 503 ``transaction-blocked``, ``backend-unavailable``, ...)."""
    import flask

    tools = flask.request.environ.get("interlock")
    if isinstance(tools, RequestTools):
        tools.note_handler_error(exception)


def _watch_flask() -> None:
    flask = sys.modules.get("flask")
    if flask is not None:
        flask.got_request_exception.connect(_flask_exception)


def _django_exception(sender: Any, request: Any = None, **extra: Any) -> None:
    """Django's ``got_request_exception``: as :func:`_flask_exception`. Django sends it
    from the ``except`` block that turns the view's exception into its 500, so the
    exception is the one being handled."""
    exception = sys.exc_info()[1]
    tools = getattr(request, "META", {}).get("interlock")  # WSGIRequest.META is the environ
    if exception is not None and isinstance(tools, RequestTools):
        tools.note_handler_error(exception)


def _watch_django() -> None:
    if "django" in sys.modules:
        from django.core.signals import got_request_exception

        got_request_exception.connect(_django_exception, dispatch_uid="interlock.wsgi")


def _serve_metrics(
    interlock: Interlock, multiprocess: bool, environ: WSGIEnviron, start_response: StartResponse
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

    def app(environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        return _serve_metrics(interlock, multiprocess, environ, start_response)

    return app
