"""The sans-IO core of the ASGI and WSGI middleware.

Everything here is a plain decision or bookkeeping step without network I/O: which rule
applies, bounded metric labels, the HTTP metrics and the one log line per request. Its
helpers: ``_http_wire`` (request ids, trace context, text), ``_http_rules``,
``_http_routes``, ``_http_cache`` (response-cache decisions), ``_http_responses``
(problems, the metrics page) and ``_http_log`` (the log line). ``interlock.asgi`` and
``interlock.wsgi`` are short drivers around it; per-request state lives in an
:class:`Exchange`, never on the middleware.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from interlock import _context
from interlock._http_cache import CachePlan, plan
from interlock._http_log import direct_sinks, log_fields, write_direct
from interlock._http_responses import Problem, multiprocess_mode, problem
from interlock._http_routes import UNMATCHED, RouteTemplate, route_path
from interlock._http_rules import CacheRule, LockRule
from interlock._http_txn import cache_view, open_transaction
from interlock._http_wire import new_ids, normalise_method, parse_request_id, parse_traceparent
from interlock.errors import BackendUnavailable, LockTimeout
from interlock.logs import ECS_FIELDS

LOGGER = "interlock.http"
_SERIES_LIMIT = 8192  # cached label children; beyond it, children are looked up each time
_REQUEST_COUNTER = "interlock_http_requests_total"
_DURATION = "interlock_http_request_duration_seconds"
_IN_PROGRESS = "interlock_http_requests_in_progress"
_BASE_HEADERS = ("x-request-id", "traceparent", "user-agent")
_EXEMPLAR_INTERVAL = 1.0  # seconds; a scrape only shows the latest exemplar per bucket


@dataclass(slots=True)
class Exchange:
    """The state of one request, created by :meth:`HttpCore.begin`."""

    started: float
    method: str
    method_label: str
    path: str
    rpath: str
    query: str
    headers: dict[str, str]
    client_ip: str | None
    request_id: str
    trace_id: str
    span_id: str
    parent_id: str | None
    context: _context.RequestContext
    route: str | None = None
    status: int | None = None
    error: BaseException | None = None
    disconnected: bool = False
    finished_body: bool = False
    lock: tuple[LockRule, dict[str, str]] | None = None
    cache: CachePlan | None = None
    tags: list[str] = field(default_factory=list)
    finished: bool = False
    txn: Any = None  # the request's RequestTransaction, once the handler opened it


class RequestTools:
    """What handlers find at ``scope["interlock"]`` / ``environ["interlock"]``.

    Attributes:
        interlock: the ``AsyncInterlock`` (ASGI) or ``Interlock`` (WSGI) of the middleware.
        request_id: the request id echoed in ``X-Request-ID``.
        trace_id: the W3C trace id of the request.
        span_id: this request's span id.
        lease: the lease held for the request by a :class:`LockRule`, or ``None``.
    """

    __slots__ = ("_exchange", "interlock", "lease")

    def __init__(self, interlock: Any, exchange: Exchange) -> None:
        self.interlock = interlock
        self._exchange = exchange
        self.lease: Any = None

    @property
    def request_id(self) -> str:
        return self._exchange.request_id

    @property
    def trace_id(self) -> str:
        return self._exchange.trace_id

    @property
    def span_id(self) -> str:
        return self._exchange.span_id

    @property
    def route(self) -> str | None:
        """The route template used as the metric label; set it when no framework does."""
        return self._exchange.route

    @route.setter
    def route(self, template: str) -> None:
        self._exchange.route = str(template)

    def lock(self, name: str, key: object = "", **options: Any) -> Any:
        """``interlock.lock(...)``; the request's ids go with the holder info."""
        return self.interlock.lock(name, key, **options)

    def cache(self, name: str, **options: Any) -> Any:
        """``interlock.cache(...)``; while the request's transaction is open, its
        ``invalidate_tag`` waits for the commit (and is dropped on abort)."""
        return cache_view(self.interlock.cache(name, **options), self._exchange)

    def transaction(self, name: str, *, timeout: float | None = None) -> Any:
        """The request's transaction: opened on the first call, the same one afterwards.

        The middleware commits it when the response starts with a 2xx/3xx status and
        aborts it otherwise (or on an exception, a disconnect, no response); a failed
        commit turns the response into a problem (409 or 503). See docs/middleware.md.

        Args:
            name: the transaction name (metric label).
            timeout: seconds by which every branch must have voted (the facade's default).

        Returns:
            a :class:`~interlock._http_txn.RequestTransaction`.

        Raises:
            TransactionError: another name than the open one, or the response started.
        """
        return open_transaction(self.interlock, self._exchange, name, timeout)

    def tag(self, *tags: str) -> None:
        """Tag the response for the response cache, to purge it later by tag."""
        self._exchange.tags.extend(str(t) for t in tags)

    def __repr__(self) -> str:
        return f"<RequestTools request_id={self.request_id}>"


class _Series:
    __slots__ = ("counter", "duration", "exemplar_at", "folded")

    def __init__(self, counter: Any, duration: Any, folded: int) -> None:
        self.counter = counter
        self.duration = duration
        self.folded = folded
        self.exemplar_at = -_EXEMPLAR_INTERVAL


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
        interlock: Any,
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
        self.interlock = interlock
        self.metrics = metrics
        self.lock_rules: tuple[LockRule, ...] = _typed(locks, LockRule, "locks")
        self.cache_rules: tuple[CacheRule, ...] = _typed(cache, CacheRule, "cache")
        self.label_routes = tuple(RouteTemplate.compile(r) for r in routes)
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
            wanted |= {"authorization", "cookie", "if-none-match", "cache-control", "pragma"}
            for rule in self.cache_rules:
                wanted |= set(rule.vary)
        self.wanted = frozenset(wanted)
        self.wanted_bytes = frozenset(h.encode() for h in wanted)
        self._series: dict[tuple[str, str, int], _Series] = {}
        self._in_progress: dict[str, Any] = {}

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
        gauge = self._in_progress.get(method_label)
        if gauge is None:
            label = self.metrics.label(_IN_PROGRESS, "method", method_label)
            gauge = self._in_progress[method_label] = self.metrics.http_in_progress.labels(label)
        gauge.inc()
        context = _context.RequestContext(request_id, trace_id, span_id)
        ex = Exchange(
            started, method, method_label, path, route_path(path, root_path), query,
            headers, client_ip, request_id, trace_id, span_id, parent_id, context,
        )  # fmt: skip
        for rule in self.lock_rules:
            if rule.applies(method):
                params = rule.route.match(ex.rpath)
                if params is not None:
                    ex.lock = (rule, params)
                    break
        return ex

    def cache_plan(self, ex: Exchange) -> CachePlan | None:
        """How the response cache treats this request (``None``: no rule matches)."""
        for rule in self.cache_rules:
            if rule.applies(ex.method):
                params = rule.route.match(ex.rpath)
                if params is not None:
                    return plan(rule, params, ex.method, ex.query, ex.headers)
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
            return problem(
                rule.status,
                "lock-timeout",
                "Resource is locked",
                f"another request holds the {rule.name!r} lock for this resource; retry later",
                request_id=ex.request_id,
                retry_after=rule.retry_after,
                lock=rule.name,
            )
        _context.record("lock", name=rule.name, result="unavailable", error=type(exc).__name__)
        if rule.fail_open and isinstance(exc, BackendUnavailable):
            return None
        return problem(
            503,
            "backend-unavailable",
            "Coordination backend unavailable",
            "the lock service cannot be reached; retry later",
            request_id=ex.request_id,
            retry_after=rule.retry_after,
            lock=rule.name,
        )

    # -- request end ---------------------------------------------------------------------

    def route_of(self, ex: Exchange) -> str:
        """The route label: framework or application, then our rules, else unmatched."""
        if ex.route is not None:
            return ex.route
        if ex.lock is not None:
            return ex.lock[0].route.template
        if ex.cache is not None:
            return ex.cache.rule.route.template
        for template in self.label_routes:
            if template.regex.match(ex.rpath):
                return template.template
        for rule in self.cache_rules:
            if rule.route.regex.match(ex.rpath):
                return rule.route.template
        for lock_rule in self.lock_rules:
            if lock_rule.route.regex.match(ex.rpath):
                return lock_rule.route.template
        return UNMATCHED

    def finish(self, ex: Exchange) -> None:
        """Record metrics and write the log line, exactly once per exchange."""
        if ex.finished:
            return
        ex.finished = True
        now = time.perf_counter()
        elapsed = now - ex.started
        route = self.route_of(ex)
        status = ex.status or (499 if ex.disconnected else 500)
        self._in_progress[ex.method_label].dec()
        series = self._series.get((ex.method_label, route, status))
        if series is None:
            series = self._new_series(ex.method_label, route, status)
        elif series.folded:
            self._count_folds(series.folded)
        if self.exemplars and now - series.exemplar_at >= _EXEMPLAR_INTERVAL:
            series.exemplar_at = now
            exemplar = {"trace_id": ex.trace_id}
            series.counter.inc(1, exemplar)
            series.duration.observe(elapsed, exemplar)
        else:
            series.counter.inc()
            series.duration.observe(elapsed)
        level = logging.ERROR if ex.error is not None else logging.INFO
        if self.logger.isEnabledFor(level):
            self._log(ex, route, status, elapsed, level)

    def _new_series(self, method: str, route: str, status: int) -> _Series:
        label, metrics = self.metrics.label, self.metrics
        m1, r1, s1 = (
            label(_REQUEST_COUNTER, "method", method),
            label(_REQUEST_COUNTER, "route", route),
            label(_REQUEST_COUNTER, "status", str(status)),
        )
        m2, r2 = label(_DURATION, "method", method), label(_DURATION, "route", route)
        folded = (r1 != route) * 1 + (r2 != route) * 2 + (s1 != str(status)) * 4
        series = _Series(
            metrics.http_requests.labels(m1, r1, s1), metrics.http_duration.labels(m2, r2), folded
        )
        if len(self._series) < _SERIES_LIMIT:
            self._series[(method, route, status)] = series
        return series

    def _count_folds(self, folded: int) -> None:
        overflow = self.metrics.label_overflow
        if folded & 5:
            overflow.labels(metric=_REQUEST_COUNTER).inc()
        if folded & 2:
            overflow.labels(metric=_DURATION).inc()

    def _log(self, ex: Exchange, route: str, status: int, elapsed: float, level: int) -> None:
        fields = log_fields(ex, route, status, elapsed)
        message = f"{fields['http.request.method']} {fields['url.path']} {status}"
        logger = self.logger
        sinks = direct_sinks(logger, level)
        if sinks is not None:
            write_direct(sinks, level, logger.name, message, fields)
            return
        record = logging.getLogRecordFactory()(
            logger.name, level, "interlock/_http.py", 0, message, (), None, None, None
        )
        attributes = record.__dict__
        attributes.update(fields)  # like extra=: any formatter sees the ECS fields
        attributes[ECS_FIELDS] = fields  # ours takes them in one step (already clean)
        logger.handle(record)


def _typed(items: Sequence[Any], kind: type, option: str) -> tuple[Any, ...]:
    if isinstance(items, kind):
        items = [items]
    items = tuple(items)
    for item in items:
        if not isinstance(item, kind):
            raise TypeError(f"{option}= takes {kind.__name__} objects, got {item!r}")
    return items
