"""PromQL helpers, and each ratio of interlock written once.

A ratio (lock contention, cache hit ratio, transaction abort ratio, HTTP error ratio) is a
function of a *source* of rates: :class:`Raw` reads the counters (``rate(metric[window])``),
:class:`Recorded` reads the per-instance rates that prometheus/rules/recording.yml records
for each :class:`Counter`. The recording rules, the alerts and the dashboard panels all call
the same function, so they cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from .config import CACHE_HIT_RESULTS

Labels = Sequence[str]


def matchers(*parts: str) -> str:
    """Join label matchers, skipping empty ones."""
    return ", ".join(part for part in parts if part)


def selector(metric: str, *parts: str) -> str:
    """``metric{matchers}``, or the bare name when there are none."""
    joined = matchers(*parts)
    return f"{metric}{{{joined}}}" if joined else metric


def sum_by(by: Labels, expr: str) -> str:
    return f"sum by ({', '.join(by)}) ({expr})" if by else f"sum({expr})"


def or_zero(expr: str) -> str:
    """``expr``, or one series of value 0 while ``expr`` has none.

    For panels of events a healthy system may never have had (a lost lease, an in-doubt
    transaction, an injected fault): Grafana shows 0, the truth, instead of "No data".
    ``on()`` matches every series, so the 0 is added only when ``expr`` returns nothing.
    """
    return f"{expr} or on() vector(0)"


def rate(metric: str, *parts: str, window: str) -> str:
    return f"rate({selector(metric, *parts)}[{window}])"


@dataclass(frozen=True)
class Counter:
    """A counter (or a histogram's ``_count``) whose per-second rate is recorded.

    The recorded series keeps ``job``, ``instance`` and ``keep``; ``match`` restricts the
    counter (e.g. only timeouts).
    """

    name: str  # the metric part of the recorded name, level:name:rate5m
    metric: str
    keep: tuple[str, ...] = ()
    match: str = ""
    # Recorded as 0 (this counter's rate times 0) where ``match`` selects nothing.
    fill: Counter | None = None

    def record(self, window: str) -> str:
        return f"{'_'.join(('job', 'instance', *self.keep))}:{self.name}:rate{window}"


HTTP_REQUESTS = Counter("interlock_http_requests", "interlock_http_requests_total")
HTTP_ERRORS = Counter(
    "interlock_http_errors", "interlock_http_requests_total", (), 'status=~"5.."', HTTP_REQUESTS
)
LOCK_ACQUIRES = Counter(
    "interlock_lock_acquire", "interlock_lock_acquire_seconds_count", ("lock",)
)
LOCK_TIMEOUTS = Counter(
    "interlock_lock_acquire_timeouts",
    "interlock_lock_acquire_seconds_count",
    ("lock",),
    'result="timeout"',
)
LOCK_CONTENDED = Counter("interlock_lock_contended", "interlock_lock_contended_total", ("lock",))
TXN_FINISHED = Counter("interlock_txn", "interlock_txn_total", ("txn",))
TXN_ABORTS = Counter("interlock_txn_aborts", "interlock_txn_aborts_total", ("txn", "reason"))
CACHE_LOOKUPS = Counter(  # every lookup that could have been a hit: all but bypass
    "interlock_cache_requests", "interlock_cache_requests_total", ("cache",), 'result!="bypass"'
)
CACHE_HITS = Counter(
    "interlock_cache_hits",
    "interlock_cache_requests_total",
    ("cache",),
    f'result=~"{CACHE_HIT_RESULTS}"',
    CACHE_LOOKUPS,
)


class Source(Protocol):
    def rate(self, counter: Counter, by: Labels = (), where: str = "") -> str:
        """``sum by (by)`` of the counter's per-second rate, restricted by ``where``."""
        ...


@dataclass(frozen=True)
class Raw:
    """Rates computed from the counters, with ``extra`` matchers on every selector."""

    window: str
    extra: str = ""

    def rate(self, counter: Counter, by: Labels = (), where: str = "") -> str:
        series = rate(counter.metric, counter.match, where, self.extra, window=self.window)
        return sum_by(by, series)

    def quantile(self, q: float, histogram: str, by: Labels, where: str = "") -> str:
        buckets = rate(f"{histogram}_bucket", where, self.extra, window=self.window)
        return f"histogram_quantile({q}, {sum_by((*by, 'le'), buckets)})"


@dataclass(frozen=True)
class Recorded:
    """Rates read from the recorded per-instance series (``job_instance_...:rate5m``)."""

    window: str
    extra: str = ""

    def rate(self, counter: Counter, by: Labels = (), where: str = "") -> str:
        return sum_by(by, selector(counter.record(self.window), where, self.extra))


def ratio(num: str, den: str, by: Labels, *, fill: bool = False, ignoring: Labels = ()) -> str:
    """``num / den``; ``fill`` makes a missing numerator 0 instead of the ratio absent."""
    if fill:
        num = f"({num} or {f'{den} * 0' if by else 'vector(0)'})"
    if ignoring:
        return f"{num} / ignoring ({', '.join(ignoring)}) group_left {den}"
    return f"{num} / {den}"


# ---------------------------------------------------------------------------- the ratios


def http_error_ratio(src: Source, by: Labels = ()) -> str:
    """Share of requests answered 5xx."""
    return ratio(src.rate(HTTP_ERRORS, by), src.rate(HTTP_REQUESTS, by), by, fill=True)


def lock_timeout_ratio(src: Source, by: Labels = ()) -> str:
    """Share of lock acquisitions that gave up (LockTimeout)."""
    return ratio(src.rate(LOCK_TIMEOUTS, by), src.rate(LOCK_ACQUIRES, by), by)


def lock_contention(src: Source, by: Labels = ()) -> str:
    """Share of lock acquisitions that found the lock held and had to wait."""
    return ratio(src.rate(LOCK_CONTENDED, by), src.rate(LOCK_ACQUIRES, by), by)


def txn_abort_ratio(
    src: Source, by: Labels = (), *, reasons: str = "", fill: bool = False
) -> str:
    """Aborted transactions (of ``reasons``, a matcher on ``reason``) over all finished ones.

    Grouped by ``reason``, each reason is divided by all transactions of its group.
    """
    aborts = src.rate(TXN_ABORTS, by, reasons)
    if "reason" in by:
        finished = src.rate(TXN_FINISHED, [label for label in by if label != "reason"])
        return ratio(aborts, finished, by, ignoring=("reason",))
    return ratio(aborts, src.rate(TXN_FINISHED, by), by, fill=fill)


def cache_hit_ratio(src: Source, by: Labels = ()) -> str:
    """Lookups answered without running the loader over all lookups but bypasses."""
    return ratio(src.rate(CACHE_HITS, by), src.rate(CACHE_LOOKUPS, by), by, fill=True)
