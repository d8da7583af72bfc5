"""The live terminal summary of the demo, computed from interlock's own metrics."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

HITS = ("hit", "near_hit", "stale", "negative_hit", "coalesced")


@dataclass
class Snapshot:
    """Counter totals read from a registry at one moment."""

    requests: float = 0.0
    status: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    buckets: dict[float, float] = field(default_factory=lambda: defaultdict(float))
    contended: float = 0.0
    timeouts: float = 0.0
    acquired: float = 0.0
    cache: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    committed: float = 0.0
    aborted: float = 0.0

    @classmethod
    def read(cls, registry: Any) -> Snapshot:
        snap = cls()
        if registry is None:
            return snap
        for metric in registry.collect():
            for s in metric.samples:
                name, labels, value = s.name, s.labels, s.value
                if name == "interlock_http_requests_total":
                    snap.requests += value
                    snap.status[labels["status"][:1] + "xx"] += value
                elif name == "interlock_http_request_duration_seconds_bucket":
                    snap.buckets[float(labels["le"])] += value
                elif name == "interlock_lock_contended_total":
                    snap.contended += value
                elif name == "interlock_lock_acquire_seconds_count":
                    if labels.get("result") == "timeout":
                        snap.timeouts += value
                    elif labels.get("result") == "acquired":
                        snap.acquired += value
                elif name == "interlock_cache_requests_total":
                    snap.cache[labels["result"]] += value
                elif name == "interlock_txn_total" and labels.get("txn") == "checkout":
                    if labels.get("outcome") == "committed":
                        snap.committed += value
                    else:
                        snap.aborted += value
        return snap


def quantile(q: float, before: dict[float, float], after: dict[float, float]) -> float:
    """``histogram_quantile`` over the bucket increase between two snapshots (seconds)."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return math.nan
    rank = q * counts[-1]
    lower, below = 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if math.isinf(bound):
                return lower
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, count
    return lower


def _rate(value: float, seconds: float) -> str:
    return f"{value / seconds:7.1f}/s" if seconds > 0 else "      -"


def render(before: Snapshot, after: Snapshot, seconds: float) -> list[str]:
    """The summary lines for the interval between two snapshots."""
    requests = after.requests - before.requests
    p99 = quantile(0.99, before.buckets, after.buckets) * 1000
    shares = []
    for klass in ("2xx", "4xx", "5xx"):
        part = after.status.get(klass, 0.0) - before.status.get(klass, 0.0)
        shares.append(f"{klass} {part / requests:4.0%}" if requests else f"{klass}    -")
    cache = {k: after.cache.get(k, 0.0) - before.cache.get(k, 0.0) for k in after.cache}
    looked = sum(v for k, v in cache.items() if k != "bypass")
    hits = sum(cache.get(k, 0.0) for k in HITS)
    ratio = f"{hits / looked:4.0%}" if looked else "   -"
    p99_text = f"{p99:6.1f} ms" if not math.isnan(p99) else "     - ms"
    return [
        f"  requests {_rate(requests, seconds)}   p99 {p99_text}   {'  '.join(shares)}",
        f"  locks    waits {_rate(after.contended - before.contended, seconds)}"
        f"   timeouts {_rate(after.timeouts - before.timeouts, seconds)}"
        f"   acquired {_rate(after.acquired - before.acquired, seconds)}",
        f"  cache    hit ratio {ratio}   hits {_rate(hits, seconds)}"
        f"   misses {_rate(cache.get('miss', 0.0), seconds)}"
        f"   stale {_rate(cache.get('stale', 0.0), seconds)}"
        f"   coalesced {_rate(cache.get('coalesced', 0.0), seconds)}",
        f"  orders   committed {_rate(after.committed - before.committed, seconds)}"
        f"   aborted {_rate(after.aborted - before.aborted, seconds)} (2PC)",
    ]
