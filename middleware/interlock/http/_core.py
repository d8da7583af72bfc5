"""The sans-IO core of the ASGI and WSGI middleware.

Everything here is a plain decision or bookkeeping step without network I/O: which rule
applies, the answer to a lock that could not be taken, the route label, and the end of a
request. Its helpers: ``_exchange`` (the per-request state),
``_metrics`` (the HTTP metrics), ``_wire`` (request ids, trace context, text),
``_rules``, ``_routes``, ``_cache`` (response-cache decisions),
``_responses`` (problems, the metrics page) and ``_log`` (the log line).
The steps that do I/O (lock, transaction) are ``interlock._async.http`` (generated into
``_sync.http``); ``interlock.asgi`` and ``interlock.wsgi`` translate their protocol around
both. Per-request state lives in an :class:`Exchange`, never on the middleware.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from interlock import _context, _tracing
from interlock.errors import BackendUnavailable, LockTimeout
from interlock.http._cache import PLAN_HEADERS, CachePlan, plan
from interlock.http._exchange import Exchange as Exchange
from interlock.http._log import write_line
from interlock.http._metrics import HttpMetrics
from interlock.http._problems import backend_unavailable, lock_timeout
from interlock.http._responses import Problem, multiprocess_mode
from interlock.http._routes import UNMATCHED, RouteTemplate, route_path
from interlock.http._rules import CacheRule, LockRule
from interlock.http._wire import new_ids, normalise_method, parse_request_id, parse_traceparent
from interlock.metrics import Metrics

LOGGER = "interlock.http"


class Instrumented(Protocol):
    """An ``Interlock`` or ``AsyncInterlock``: what the core uses of it."""

    metrics: Metrics
    tracer: _tracing.Tracer


_BASE_HEADERS = ("x-request-id", "traceparent", "user-agent")


class HttpCore:
    """Per-middleware configuration and the per-request steps shared by ASGI and WSGI.

    Args:
        interlock: the facade whose metrics and locks the middleware uses.
        locks: lock rules, first match wins.
        cache: response-cache rules, first match wins.
        routes: extra route templates used only as ``route`` labels.
        metrics_path: where the exposition is served; ``None`` turns it off.
        exemplars: attach the trace id as an exemplar (not in multiprocess mode).
        logger: name of the logger of the per-request line.
        trust_request_id: accept a well-formed incoming ``X-Request-ID``.
    """

    def __init__(
        self,
        interlock: Instrumented,
        *,
        locks: Sequence[LockRule] = (),
        cache: Sequence[CacheRule] = (),
        routes: Iterable[str] = (),
        metrics_path: str | None = "/metrics",
        exemplars: bool = True,
        logger: str = LOGGER,
        trust_request_id: bool = True,
    ) -> None:
        metrics = getattr(interlock, "metrics", None)
        if metrics is None or not hasattr(interlock, "lock"):
            raise TypeError(
                f"interlock={interlock!r} must be an Interlock or AsyncInterlock instance"
            )
        self.metrics = metrics
        self.tracer: _tracing.Tracer = interlock.tracer
        self.lock_rules: tuple[LockRule, ...] = _typed(locks, LockRule, "locks")
        self.cache_rules: tuple[CacheRule, ...] = _typed(cache, CacheRule, "cache")
        self.label_routes = tuple(RouteTemplate.compile(r) for r in routes)
        self.rule_routes = tuple(
            [r.route for r in self.lock_rules] + [r.route for r in self.cache_rules]
        )
        if metrics_path is not None and (
            not isinstance(metrics_path, str) or not metrics_path.startswith("/")
        ):
            raise ValueError(f"metrics_path={metrics_path!r} must start with '/' (or be None)")
        self.metrics_path = metrics_path
        self.multiprocess = multiprocess_mode()
        self.exemplars = exemplars and not self.multiprocess
        self.logger = logging.getLogger(logger)
        self.trust_request_id = trust_request_id
        wanted = set(_BASE_HEADERS)
        if self.cache_rules:
            wanted |= PLAN_HEADERS
            for rule in self.cache_rules:
                wanted |= set(rule.vary)
        self.wanted = frozenset(wanted)
        self.wanted_bytes = frozenset(h.encode() for h in wanted)
        self._metrics = HttpMetrics(metrics, self.exemplars)

    # -- request start -------------------------------------------------------------------

    def begin(
        self,
        method: str,
        path: str,
        root_path: str,
        query: str,
        headers: dict[str, str],
        client_ip: str | None,
    ) -> Exchange:
        """Start a request: ids, context, the in-progress gauge, which rules apply."""
        started = time.perf_counter()
        request_id, trace_id, span_id = new_ids()
        if self.trust_request_id:
            request_id = parse_request_id(headers.get("x-request-id")) or request_id
        parent_id = None
        incoming = parse_traceparent(headers.get("traceparent"))
        if incoming is not None:
            trace_id, parent_id, _ = incoming
        method_label = normalise_method(method)
        self._metrics.started(method_label)
        context = _context.RequestContext(request_id, trace_id, span_id)
        ex = Exchange(
            started, method, method_label, path, route_path(path, root_path), query,
            headers, client_ip, request_id, trace_id, span_id, parent_id, context,
        )  # fmt: skip
        if self.tracer.enabled:
            join_trace(ex, incoming)
        for rule in self.lock_rules:
            if rule.applies(method):
                params = rule.route.match(ex.rpath)
                if params is not None:
                    ex.lock = (rule, params)
                    break
        return ex

    def cache_plan(
        self, ex: Exchange, scheme: str, server: tuple[str, int | None] | None = None
    ) -> CachePlan | None:
        """How the response cache treats this request (``None``: no rule matches);
        ``scheme`` and ``server`` (for a request without ``Host``) make the target URI."""
        for rule in self.cache_rules:
            if rule.applies(ex.method):
                params = rule.route.match(ex.rpath)
                if params is not None:
                    return plan(rule, params, ex.path, ex.query, ex.headers, scheme, server)
        return None

    def is_metrics_request(self, method: str, path: str, root_path: str) -> bool:
        return (
            self.metrics_path is not None
            and route_path(path, root_path) == self.metrics_path
            and method in ("GET", "HEAD")
        )

    # -- locks ---------------------------------------------------------------------------

    def lock_failed(self, ex: Exchange, exc: Exception) -> Problem | None:
        """The answer when a lock rule's lock could not be taken (``None``: fail open)."""
        assert ex.lock is not None
        rule = ex.lock[0]
        if isinstance(exc, LockTimeout):
            holder = exc.holder or {}
            _context.record(
                "lock",
                name=rule.name,
                result="timeout",
                wait_ms=round(exc.timeout * 1000, 3),
                holder={k: holder.get(k) for k in ("request_id", "trace_id", "host", "pid")},
            )
            return lock_timeout(
                ex.request_id, rule.name, status=rule.status, retry_after=rule.retry_after
            )
        _context.record("lock", name=rule.name, result="unavailable", error=type(exc).__name__)
        if rule.fail_open and isinstance(exc, BackendUnavailable):
            return None
        return backend_unavailable(ex.request_id, retry_after=rule.retry_after, lock=rule.name)

    # -- request end ---------------------------------------------------------------------

    def route_of(self, ex: Exchange) -> str:
        """The route label: a rule's template, else the framework's or the app's, else unmatched.

        A path that a lock rule (first) or a cache rule template matches is labelled with
        that template whatever the method and however it was answered: a 423 and a cache
        hit never reach the framework's router, so its template is not known for them, and
        one route must keep one label (docs/metrics.md, *Route labels*).
        """
        rpath = ex.rpath
        for template in self.rule_routes:
            if template.regex.match(rpath):
                return template.template
        if ex.route is not None:
            return ex.route
        for template in self.label_routes:
            if template.regex.match(rpath):
                return template.template
        return UNMATCHED

    def finish(self, ex: Exchange) -> None:
        """Record metrics and write the log line, exactly once per exchange."""
        if ex.finished:
            return
        ex.finished = True
        now = time.perf_counter()
        elapsed = now - ex.started
        route = self.route_of(ex)
        status = 499 if ex.disconnected else ex.status or 500  # gone before the end: 499
        self._metrics.finished(ex.method_label, route, status, elapsed, now, ex.trace_id)
        level = logging.INFO
        if ex.error is not None:  # a crash, or a failure answered as documented
            level = logging.WARNING if ex.error_answered else logging.ERROR
        if self.logger.isEnabledFor(level):
            write_line(self.logger, ex, route, status, elapsed, level)


def join_trace(ex: Exchange, incoming: tuple[str, str, bool] | None) -> None:
    """One trace with OpenTelemetry (docs/tracing.md, *One trace*): inside an active span
    (an OpenTelemetry middleware outside ours, a span the app opened) the request's ids
    are that span's; otherwise interlock's spans start under the caller's span
    (``traceparent``), or under the request's own ids, which it then passes on to the
    application as its ``traceparent`` (an OpenTelemetry middleware inside joins them)."""
    active = _tracing.active_ids()
    if active is not None:
        ex.trace_id, ex.span_id = active
        ex.parent_id = None
        ex.context.trace_id, ex.context.span_id = active
        return
    if incoming is not None and ex.parent_id is not None:
        ex.context.otel_parent = _tracing.remote_parent(ex.trace_id, ex.parent_id, incoming[2])
        return
    ex.context.otel_parent = _tracing.remote_parent(ex.trace_id, ex.span_id, True)
    ex.traceparent = f"00-{ex.trace_id}-{ex.span_id}-01"


def _typed(items: Sequence[Any], kind: type, option: str) -> tuple[Any, ...]:
    if isinstance(items, kind):
        items = [items]
    items = tuple(items)
    for item in items:
        if not isinstance(item, kind):
            raise TypeError(f"{option}= takes {kind.__name__} objects, got {item!r}")
    return items
