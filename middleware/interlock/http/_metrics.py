"""The HTTP metrics of one middleware: the in-progress gauge and the request series.

Label children are cached per ``(method, route, status)`` up to a bound; the labels go
through ``metrics.label`` (the label cap), and a series whose labels were folded counts
into the overflow metric on every request.
"""

from __future__ import annotations

from typing import Any

_SERIES_LIMIT = 8192  # cached label children; beyond it, children are looked up each time
_REQUEST_COUNTER = "interlock_http_requests_total"
_DURATION = "interlock_http_request_duration_seconds"
_IN_PROGRESS = "interlock_http_requests_in_progress"
_EXEMPLAR_INTERVAL = 1.0  # seconds; a scrape only shows the latest exemplar per bucket


class _Series:
    __slots__ = ("counter", "duration", "exemplar_at", "folded")

    def __init__(self, counter: Any, duration: Any, folded: int) -> None:
        self.counter = counter
        self.duration = duration
        self.folded = folded
        self.exemplar_at = -_EXEMPLAR_INTERVAL


class HttpMetrics:
    """The request metrics of one middleware, with their label children cached.

    Args:
        metrics: the facade's :class:`~interlock.metrics.Metrics`.
        exemplars: attach the trace id as an exemplar, at most once a second per series.
    """

    __slots__ = ("_in_progress", "_series", "exemplars", "metrics")

    def __init__(self, metrics: Any, exemplars: bool) -> None:
        self.metrics = metrics
        self.exemplars = exemplars
        self._series: dict[tuple[str, str, int], _Series] = {}
        self._in_progress: dict[str, Any] = {}

    def started(self, method: str) -> None:
        """A request with the method label ``method`` is being served."""
        gauge = self._in_progress.get(method)
        if gauge is None:
            label = self.metrics.label(_IN_PROGRESS, "method", method)
            gauge = self._in_progress[method] = self.metrics.http_in_progress.labels(label)
        gauge.inc()

    def finished(
        self, method: str, route: str, status: int, elapsed: float, now: float, trace_id: str
    ) -> None:
        """Count the request and its duration; ``now`` is the ``perf_counter`` at its end."""
        self._in_progress[method].dec()
        series = self._series.get((method, route, status))
        if series is None:
            series = self._new_series(method, route, status)
        elif series.folded:
            self._count_folds(series.folded)
        if self.exemplars and now - series.exemplar_at >= _EXEMPLAR_INTERVAL:
            series.exemplar_at = now
            exemplar = {"trace_id": trace_id}
            series.counter.inc(1, exemplar)
            series.duration.observe(elapsed, exemplar)
        else:
            series.counter.inc()
            series.duration.observe(elapsed)

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
