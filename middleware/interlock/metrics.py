"""Every interlock metric, created per :class:`Interlock` instance on an injected registry.

Nothing is created at import. ``registry=None`` builds working metrics that are not
registered anywhere, so two instances in one process never clash. Label values are
names chosen in code; :class:`LabelGuard` still caps the distinct values per label and
folds the excess into ``__overflow__`` (counted in ``interlock_label_overflow_total``).
The catalogue with meanings is docs/metrics.md.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

OVERFLOW = "__overflow__"

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
HOLD_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0)


# prometheus-client's per-process files of live gauges: gauge_livesum_1234.db, ...
_LIVE_GAUGE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")


def drop_dead_processes(path: str | os.PathLike[str] | None = None) -> list[int]:
    """Remove the live-gauge files of processes that no longer run; the pids dropped.

    In prometheus-client's multiprocess mode each worker writes its gauges to files named
    after its pid; a server hook (gunicorn's ``child_exit``) usually calls
    ``mark_process_dead``, but ``uvicorn --workers`` has none, and nothing runs for a
    worker killed with SIGKILL. The middleware calls this before each multiprocess
    collection, so the in-progress, held and waiting gauges of a dead worker vanish from
    the next scrape; its counters and histograms stay (they are history, not state).

    A pid counts as alive if a process with it exists and is not a zombie. The directory
    must belong to the processes of one host and pid namespace (as prometheus-client
    requires anyway); a reused pid keeps the dead worker's gauges until it exits too.

    Args:
        path: the multiprocess directory (default ``PROMETHEUS_MULTIPROC_DIR``).
    """
    from prometheus_client.multiprocess import mark_process_dead

    folder = path if path is not None else os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not folder:
        return []
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    pids = {int(m[1]) for m in map(_LIVE_GAUGE_FILE.match, names) if m is not None}
    dead = sorted(pid for pid in pids if not _alive(pid))
    for pid in dead:
        with contextlib.suppress(FileNotFoundError):  # another scrape was first
            mark_process_dead(pid, str(folder))  # type: ignore[no-untyped-call]
    return dead


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    try:  # a killed worker stays a zombie until its parent reaps it
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: trust kill(0)
    fields = stat.rpartition(")")[2].split()
    return not fields or fields[0] not in ("Z", "X")


class LabelGuard:
    """Caps the number of distinct values of each label of each metric.

    Args:
        cap: distinct values allowed per (metric, label); more become ``__overflow__``.
        overflow: the counter incremented, labelled by metric name, for each fold.
    """

    def __init__(self, cap: int, overflow: Counter) -> None:
        self._cap = cap
        self._overflow = overflow
        self._seen: dict[tuple[str, str], set[str]] = {}
        self._lock = threading.Lock()

    def __call__(self, metric: str, label: str, value: str) -> str:
        seen = self._seen.get((metric, label))
        if seen is not None and value in seen:
            return value
        with self._lock:
            seen = self._seen.setdefault((metric, label), set())
            if value in seen:
                return value
            if len(seen) < self._cap:
                seen.add(value)
                return value
        self._overflow.labels(metric=metric).inc()
        return OVERFLOW


class Metrics:
    """The metric objects of one interlock instance (see docs/metrics.md).

    Args:
        registry: where to register; ``None`` registers nowhere.
        label_cap: distinct values allowed per label before ``__overflow__``.
    """

    def __init__(self, registry: CollectorRegistry | None, label_cap: int = 500) -> None:
        r = registry

        def counter(name: str, doc: str, labels: tuple[str, ...]) -> Counter:
            return Counter(f"interlock_{name}", doc, labels, registry=r)

        def gauge(name: str, doc: str, labels: tuple[str, ...], mode: Any = "livesum") -> Gauge:
            return Gauge(f"interlock_{name}", doc, labels, registry=r, multiprocess_mode=mode)

        def histogram(
            name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]
        ) -> Histogram:
            return Histogram(f"interlock_{name}", doc, labels, registry=r, buckets=buckets)

        self.registry = registry
        self.label_overflow = counter(
            "label_overflow", "Label values folded into __overflow__ by the cap", ("metric",)
        )
        self.guard = LabelGuard(label_cap, self.label_overflow)

        self.http_requests = counter(
            "http_requests", "HTTP requests served", ("method", "route", "status")
        )
        self.http_duration = histogram(
            "http_request_duration_seconds",
            "HTTP request duration",
            ("method", "route"),
            LATENCY_BUCKETS,
        )
        self.http_in_progress = gauge(
            "http_requests_in_progress", "HTTP requests being served", ("method",)
        )

        self.lock_acquire = histogram(
            "lock_acquire_seconds",
            "Time to acquire a lock, by result (acquired, timeout, error)",
            ("lock", "result"),
            LATENCY_BUCKETS,
        )
        self.lock_hold = histogram(
            "lock_hold_seconds", "Time a lease was held", ("lock",), HOLD_BUCKETS
        )
        self.lock_contended = counter(
            "lock_contended", "Acquisitions that found the lock held and had to wait", ("lock",)
        )
        self.lock_held = gauge("lock_held", "Leases currently held by this process", ("lock",))
        self.lock_waiting = gauge("lock_waiting", "Callers waiting for a lock", ("lock",))
        self.lock_lost = counter(
            "lock_lost",
            "Leases lost while held, by reason (expired, renewal_failed, restart, taken)",
            ("lock", "reason"),
        )

        self.cache_requests = counter(
            "cache_requests", "Cache lookups by result", ("cache", "result")
        )
        self.cache_load = histogram(
            "cache_load_seconds", "Time spent in cache loaders", ("cache",), LATENCY_BUCKETS
        )
        self.cache_degraded = gauge(
            "cache_degraded", "1 while the cache fails open (backend down)", ("cache",), "livemax"
        )

        self.txn_total = counter("txn", "Finished transactions by outcome", ("txn", "outcome"))
        self.txn_aborts = counter("txn_aborts", "Aborted transactions by reason", ("txn", "reason"))
        self.txn_phase = histogram(
            "txn_phase_seconds", "Duration of 2PC phases", ("txn", "phase"), LATENCY_BUCKETS
        )
        self.txn_in_doubt = gauge("txn_in_doubt", "Transactions prepared but undecided", ("txn",))
        self.txn_oldest_in_doubt = gauge(
            "txn_oldest_in_doubt_seconds", "Age of the oldest in-doubt transaction", (), "livemax"
        )
        self.txn_recovered = counter(
            "txn_recovered", "In-doubt transactions resolved by recovery", ("action",)
        )

        self.log_dropped = counter(
            "log_records_dropped", "Log records dropped (queue full, sink down)", ("sink",)
        )
        self.chaos_injected = counter(
            "chaos_injected", "Faults injected by interlock.chaos", ("kind", "target")
        )

        self._locks: dict[str, LockMetrics] = {}

    def label(self, metric: str, label: str, value: str) -> str:
        """``value`` if under the cap for (metric, label), else ``__overflow__``."""
        return self.guard(metric, label, value)

    def for_lock(self, name: str) -> LockMetrics:
        """The (memoised) metric children of one lock name: no label lookups per call."""
        children = self._locks.get(name)
        if children is None:
            label = self.label("interlock_lock_acquire_seconds", "lock", name)
            children = self._locks[name] = LockMetrics(self, label)
        return children


class LockMetrics:
    """Metric children of one lock name, resolved once."""

    def __init__(self, metrics: Metrics, lock: str) -> None:
        self.acquired = metrics.lock_acquire.labels(lock=lock, result="acquired")
        self.timeout = metrics.lock_acquire.labels(lock=lock, result="timeout")
        self.error = metrics.lock_acquire.labels(lock=lock, result="error")
        self.hold = metrics.lock_hold.labels(lock=lock)
        self.held = metrics.lock_held.labels(lock=lock)
        self.waiting = metrics.lock_waiting.labels(lock=lock)
        self.contended = metrics.lock_contended.labels(lock=lock)
        self._lost = metrics.lock_lost
        self._lock = lock

    def lost(self, reason: str) -> None:
        self._lost.labels(lock=self._lock, reason=reason).inc()
