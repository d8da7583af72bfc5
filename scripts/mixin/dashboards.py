"""The four Grafana dashboards: overview (RED + SLO burn), locks, transactions, cache.

Ratios come from :mod:`.promql`, the functions the recording rules and alerts use; a ratio
panel reads the recorded per-instance rates (5m, as the alerts see them). Counts and
latencies read the counters at ``$__rate_interval``, with exemplars.
"""

from __future__ import annotations

from typing import Any

from . import config as c
from . import promql as q
from .grafana import dashboard, log_table, prom, stat, state_timeline, timeseries
from .promql import Raw, Recorded

SEL = c.DASHBOARD_SELECTOR
REQUEST_COLUMNS = c.REQUEST_COLUMNS


def raw(entity: str = "") -> Raw:
    """Counters at Grafana's rate interval, filtered by ``entity`` and $job/$instance."""
    return Raw(c.RATE_INTERVAL, q.matchers(entity, SEL))


def recorded(entity: str = "", window: str = c.RULE_WINDOW) -> Recorded:
    """The recorded per-instance rates, filtered by ``entity`` and $job/$instance."""
    return Recorded(window, q.matchers(entity, SEL))


def rate(metric: str, matchers: str = "", window: str = c.RATE_INTERVAL) -> str:
    return q.rate(metric, matchers, SEL, window=window)


def quantile(q_: float, metric: str, by: str, matchers: str = "") -> str:
    return raw(matchers).quantile(q_, metric, [by])


# fmt: off
def overview() -> dict[str, Any]:
    req = "interlock_http_requests_total"
    dur = "interlock_http_request_duration_seconds"
    route = 'route=~"$route"'
    return dashboard(
        "interlock-overview",
        "interlock / overview",
        "Rate, errors and duration (RED) of the HTTP routes served through interlock, "
        "the error-budget burn of the 99.9% availability SLO and the health of interlock "
        "itself. Request and trace ids link to Kibana.",
        ("route", "Route", req),
        [
            [
                (stat("Request rate", "HTTP requests per second, all routes.",
                      f"sum({rate(req, route)})", "reqps"), 6, 4),
                (stat("Error ratio (5xx)", "Share of requests answered 5xx.",
                      q.http_error_ratio(raw(route)), "percentunit",
                      thresholds=c.ERROR_RATIO_STEPS), 6, 4),
                (stat("p99 duration", "99th percentile of the request duration, all routes.",
                      f"histogram_quantile(0.99, sum by (le) ({rate(dur + '_bucket', route)}))",
                      "s", thresholds=[(None, "green"), (0.5, "orange"), (1, "red")]), 6, 4),
                (stat("In progress", "Requests being served right now.",
                      f"sum(interlock_http_requests_in_progress{{{SEL}}})", "short"), 6, 4),
            ],
            [
                (timeseries("Requests by route", "Requests per second by route template.",
                            [prom(f"sum by (route) ({rate(req, route)})", "{{route}}")],
                            "reqps", stack=True), 12, 8),
                (timeseries("Error ratio by route",
                            "Share of the requests of each route answered 5xx.",
                            [prom(q.http_error_ratio(raw(route), ["route"]), "{{route}}")],
                            "percentunit"), 12, 8),
            ],
            [
                (timeseries("Duration p50 / p99 by route",
                            "Request duration quantiles by route. Exemplars (dots) carry the "
                            "trace id and open the trace's log lines in Kibana.",
                            [prom(quantile(0.5, dur, "route", route), "{{route}} p50"),
                             prom(quantile(0.99, dur, "route", route), "{{route}} p99",
                                  exemplar=True)],
                            "s"), 12, 8),
                (timeseries("Responses by status", "Responses per second by status code.",
                            [prom(f"sum by (status) ({rate(req, route)})", "{{status}}")],
                            "reqps", stack=True), 12, 8),
            ],
            [
                (timeseries("Error budget burn rate",
                            "How fast the 5xx error budget of the 99.9% SLO burns over the "
                            "alerting windows (1 = exactly on budget), from the rates the "
                            "alerts' recording rules use. The fast-burn alert fires above "
                            "14.4 on 1h and 5m, the slow-burn alert above 6 on 6h and 30m.",
                            [prom(f"{q.http_error_ratio(recorded(window=w))} / {c.ERROR_BUDGET}",
                                  w)
                             for w in c.SLO_WINDOWS],
                            "none"), 12, 8),
                (timeseries("interlock health",
                            "Log records dropped by a sink, label values folded into "
                            "__overflow__ by the cardinality cap, and faults injected by "
                            "interlock.chaos (should be 0 outside chaos experiments).",
                            [prom(f"sum by (sink) ({rate('interlock_log_records_dropped_total')})",
                                  "dropped logs {{sink}}"),
                             prom(q.or_zero("sum by (metric) "
                                            f"({rate('interlock_label_overflow_total')})"),
                                  "overflow {{metric}}"),
                             prom(q.or_zero("sum by (kind, target) "
                                            f"({rate('interlock_chaos_injected_total')})"),
                                  "chaos {{kind}} {{target}}")],
                            "ops"), 12, 8),
            ],
            [
                (log_table("Failed or slow requests",
                           "The latest requests that answered 5xx or took longer than one "
                           "second, from Elasticsearch. Click a request or trace id to open "
                           "its log lines in Kibana.",
                           "http.response.status_code:>=500 OR event.duration:>=1000000000",
                           REQUEST_COLUMNS), 24, 10),
            ],
        ],
    )


def locks() -> dict[str, Any]:
    acq = "interlock_lock_acquire_seconds"
    hold = "interlock_lock_hold_seconds"
    lock = 'lock=~"$lock"'
    failures = f'result=~"timeout|error", {lock}'
    acquired = f'result="acquired", {lock}'
    return dashboard(
        "interlock-locks",
        "interlock / locks",
        "Distributed locks: contention, acquire latency, wait versus hold time, current "
        "holders and waiters, timeouts and lost leases, by lock name.",
        ("lock", "Lock", f"{acq}_count"),
        [
            [
                (stat("Acquisitions", "Lock acquisition attempts per second (any result).",
                      raw(lock).rate(q.LOCK_ACQUIRES), "ops"), 6, 4),
                (stat("Contention", "Share of acquisitions that found the lock held and "
                      "had to wait, over 5 minutes (recorded rates).",
                      q.lock_contention(recorded(lock)), "percentunit",
                      thresholds=c.CONTENTION_STEPS), 6, 4),
                (stat("Timeouts", "Acquisitions per second that gave up (LockTimeout).",
                      f"{raw(lock).rate(q.LOCK_TIMEOUTS)} or vector(0)",
                      "ops", thresholds=[(None, "green"), (0.01, "red")]), 6, 4),
                (stat("Leases lost", "Leases lost while held in the selected time range "
                      "(expired or renewal failed).",
                      "sum(increase(interlock_lock_lost_total"
                      f"{{{lock}, {SEL}}}[$__range])) or vector(0)",
                      "short", thresholds=[(None, "green"), (1, "red")]), 6, 4),
            ],
            [
                (timeseries("Contention rate by lock",
                            "Contended acquisitions divided by all acquisitions, per lock, "
                            "over 5 minutes: the contention ratio of the recording rules, "
                            "rate(interlock_lock_contended_total) / "
                            "rate(interlock_lock_acquire_seconds_count).",
                            [prom(q.lock_contention(recorded(lock), ["lock"]), "{{lock}}")],
                            "percentunit", max_=1), 12, 8),
                (timeseries("Acquisitions by result",
                            "Acquisitions per second by lock and result (acquired, timeout, "
                            "error).",
                            [prom(f"sum by (lock, result) ({rate(acq + '_count', lock)})",
                                  "{{lock}} {{result}}")],
                            "ops", stack=True), 12, 8),
            ],
            [
                (timeseries("Acquire latency p50 / p99 by lock",
                            "Time to acquire, successful acquisitions only. Exemplars link "
                            "to the trace's log lines in Kibana.",
                            [prom(quantile(0.5, acq, "lock", acquired),
                                  "{{lock}} p50"),
                             prom(quantile(0.99, acq, "lock", acquired),
                                  "{{lock}} p99", exemplar=True)],
                            "s"), 12, 8),
                (timeseries("Wait vs hold (mean)",
                            "Mean time spent waiting for each lock next to the mean time it "
                            "is held. Waits close to holds mean callers queue behind each "
                            "other.",
                            [prom(f"sum by (lock) ({rate(acq + '_sum', lock)})"
                                  f" / sum by (lock) ({rate(acq + '_count', lock)})",
                                  "{{lock}} wait"),
                             prom(f"sum by (lock) ({rate(hold + '_sum', lock)})"
                                  f" / sum by (lock) ({rate(hold + '_count', lock)})",
                                  "{{lock}} hold")],
                            "s"), 12, 8),
            ],
            [
                (timeseries("Held and waiting",
                            "Leases held and callers waiting right now, summed over "
                            "processes.",
                            [prom(f"sum by (lock) (interlock_lock_held{{{lock}, {SEL}}})",
                                  "{{lock}} held"),
                             prom(f"sum by (lock) (interlock_lock_waiting{{{lock}, {SEL}}})",
                                  "{{lock}} waiting")],
                            "short"), 12, 8),
                (timeseries("Timeouts and errors",
                            "Acquisitions per second that timed out or failed (backend "
                            "error).",
                            [prom(f"sum by (lock, result) "
                                  f"({rate(acq + '_count', failures)})",
                                  "{{lock}} {{result}}")],
                            "ops"), 12, 8),
            ],
            [
                (timeseries("Lost leases",
                            "Leases lost while held, by lock and reason. Any loss means a "
                            "protected section may have run twice; see the InterlockLockLost "
                            "runbook.",
                            [prom(q.or_zero("sum by (lock, reason) (increase("
                                            f"interlock_lock_lost_total{{{lock}, {SEL}}}"
                                            "[$__rate_interval]))"),
                                  "{{lock}} {{reason}}")],
                            "short"), 12, 8),
                (timeseries("Hold time p50 / p99 by lock", "How long leases are held.",
                            [prom(quantile(0.5, hold, "lock", lock), "{{lock}} p50"),
                             prom(quantile(0.99, hold, "lock", lock), "{{lock}} p99")],
                            "s"), 12, 8),
            ],
            [
                (log_table("Lock lost events", "Log events of leases lost while held.",
                           'event.action:"lock-lost"',
                           ["log.level", "interlock.lock.name", "interlock.lock.reason",
                            "interlock.lock.fence", "http.request.id", "trace.id",
                            "message"]), 24, 8),
            ],
        ],
    )


def transactions() -> dict[str, Any]:
    txn = 'txn=~"$txn"'
    total = "interlock_txn_total"
    phase = "interlock_txn_phase_seconds"
    committed = f'outcome="committed", {txn}'
    return dashboard(
        "interlock-transactions",
        "interlock / transactions",
        "Two-phase-commit transactions: commit and abort rates, abort reasons, phase "
        "latency, in-doubt transactions and recoveries.",
        ("txn", "Transaction", total),
        [
            [
                (stat("Commits", "Committed transactions per second.",
                      f"sum({rate(total, committed)}) or vector(0)",
                      "ops"), 6, 4),
                (stat("Abort ratio", "Share of finished transactions that aborted (any "
                      "reason), over 5 minutes (recorded rates).",
                      q.txn_abort_ratio(recorded(txn), fill=True), "percentunit",
                      thresholds=c.ABORT_RATIO_STEPS), 6, 4),
                (stat("In doubt", "Transactions prepared but not yet decided.",
                      f"sum(max by (txn) (interlock_txn_in_doubt{{{txn}, {SEL}}})) or vector(0)",
                      "short", thresholds=[(None, "green"), (1, "orange")]), 6, 4),
                (stat("Oldest in doubt", "Age of the oldest in-doubt transaction.",
                      f"max(interlock_txn_oldest_in_doubt_seconds{{{SEL}}}) or vector(0)",
                      "s", thresholds=c.IN_DOUBT_AGE_STEPS), 6, 4),
            ],
            [
                (timeseries("Commits and aborts",
                            "Finished transactions per second by name and outcome.",
                            [prom(f"sum by (txn, outcome) ({rate(total, txn)})",
                                  "{{txn}} {{outcome}}")],
                            "ops", stack=True), 12, 8),
                (timeseries("Abort ratio by reason",
                            "Aborts of each reason divided by all finished transactions: "
                            "vote_no (a participant refused to prepare), timeout, error, "
                            "client (exception in the transaction body), over 5 minutes "
                            "(recorded rates).",
                            [prom(q.txn_abort_ratio(recorded(txn), ["txn", "reason"]),
                                  "{{txn}} {{reason}}")],
                            "percentunit", max_=1), 12, 8),
            ],
            [
                (timeseries("Phase latency p50 / p99",
                            "Duration of the 2PC phases: prepare, decide (durable "
                            "decision), commit and abort.",
                            [prom(quantile(0.5, phase, "phase", txn), "{{phase}} p50"),
                             prom(quantile(0.99, phase, "phase", txn), "{{phase}} p99",
                                  exemplar=True)],
                            "s"), 12, 8),
                (timeseries("In doubt",
                            "Transactions prepared but undecided, by name (max over "
                            "processes).",
                            [prom(q.or_zero(f"max by (txn) (interlock_txn_in_doubt{{{txn}, "
                                            f"{SEL}}})"),
                                  "{{txn}} in doubt")],
                            "short"), 6, 8),
                (timeseries("Oldest in-doubt age",
                            "Age of the oldest in-doubt transaction. Prepared branches hold "
                            "database locks; the InterlockTxnInDoubtTooOld alert fires above "
                            "15 minutes.",
                            [prom(f"max by (job) (interlock_txn_oldest_in_doubt_seconds{{{SEL}}})",
                                  "{{job}}")],
                            "s"), 6, 8),
            ],
            [
                (timeseries("Recoveries",
                            "In-doubt transactions resolved by recovery, by action "
                            "(committed or aborted).",
                            [prom(q.or_zero("sum by (action) (increase("
                                            f"interlock_txn_recovered_total{{{SEL}}}"
                                            "[$__rate_interval]))"), "{{action}}")],
                            "short"), 12, 8),
                (log_table("Transaction events", "In-doubt and recovered transaction events.",
                           'event.action:("txn-in-doubt" OR "txn-recovered")',
                           ["log.level", "interlock.txn.name", "interlock.txn.xid",
                            "interlock.txn.outcome", "interlock.txn.reason", "trace.id",
                            "message"]), 12, 8),
            ],
        ],
    )


def cache() -> dict[str, Any]:
    reqs = "interlock_cache_requests_total"
    load = "interlock_cache_load_seconds"
    name = 'cache=~"$cache"'
    return dashboard(
        "interlock-cache",
        "interlock / cache",
        "Distributed cache: hit ratio, lookup outcomes, loader latency and degraded "
        "(fail-open) state, by cache name.",
        ("cache", "Cache", reqs),
        [
            [
                (stat("Lookups", "Cache lookups per second, bypasses excluded.",
                      raw(name).rate(q.CACHE_LOOKUPS), "ops"), 6, 4),
                (stat("Hit ratio", "Lookups answered without running the loader (hit, "
                      "near_hit, stale, negative_hit, coalesced) over all lookups but "
                      "bypasses, over 5 minutes (recorded rates).",
                      q.cache_hit_ratio(recorded(name)), "percentunit",
                      thresholds=c.HIT_RATIO_STEPS), 6, 4),
                (stat("Loads", "Loader runs per second.",
                      f"sum({rate(load + '_count', name)}) or vector(0)", "ops"), 6, 4),
                (stat("Degraded caches", "Caches failing open right now (backend "
                      "unreachable).",
                      f"count(max by (cache) (interlock_cache_degraded{{{name}, {SEL}}}) > 0)"
                      " or vector(0)",
                      "short", thresholds=[(None, "green"), (1, "red")]), 6, 4),
            ],
            [
                (timeseries("Hit ratio by cache",
                            "Lookups answered without running the loader over all lookups "
                            "but bypasses, per cache, over 5 minutes: the hit ratio of the "
                            "recording rules.",
                            [prom(q.cache_hit_ratio(recorded(name), ["cache"]), "{{cache}}")],
                            "percentunit", max_=1), 12, 8),
                (timeseries("Outcomes",
                            "Lookups per second by result: hit, near_hit (process-local "
                            "copy), stale (served while refreshing), miss, coalesced "
                            "(waited for another caller's load), negative_hit, bypass, "
                            "error.",
                            [prom(f"sum by (result) ({rate(reqs, name)})", "{{result}}")],
                            "ops", stack=True), 12, 8),
            ],
            [
                (timeseries("Loader latency p50 / p99",
                            "Time spent in cache loaders per cache. Exemplars link to the "
                            "trace's log lines in Kibana.",
                            [prom(quantile(0.5, load, "cache", name), "{{cache}} p50"),
                             prom(quantile(0.99, load, "cache", name), "{{cache}} p99",
                                  exemplar=True)],
                            "s"), 12, 8),
                (timeseries("Loads by cache", "Loader runs per second per cache.",
                            [prom(f"sum by (cache) ({rate(load + '_count', name)})", "{{cache}}")],
                            "ops"), 12, 8),
            ],
            [
                (state_timeline("Degraded",
                                "1 while a cache fails open because its backend is "
                                "unreachable; every lookup then runs the loader.",
                                [prom(f"max by (cache) (interlock_cache_degraded{{{name}, {SEL}}})",
                                      "{{cache}}")]), 24, 6),
            ],
            [
                (log_table("Cache degraded events", "Log events of caches failing open.",
                           'event.action:"cache-degraded"',
                           ["log.level", "interlock.cache.name", "interlock.cache.result",
                            "http.request.id", "trace.id", "message"]), 24, 8),
            ],
        ],
    )

# fmt: on

DASHBOARDS = {
    "interlock-overview.json": overview,
    "interlock-locks.json": locks,
    "interlock-transactions.json": transactions,
    "interlock-cache.json": cache,
}
