"""The one configuration of the mixin: where files go, selectors, windows and thresholds.

Every number an alert, a recording rule or a dashboard threshold uses is here, so that a
dashboard colours a value red where the alert on it fires.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GRAFANA_DIR = ROOT / "dashboards" / "grafana"
KIBANA_FILE = ROOT / "dashboards" / "kibana" / "interlock.ndjson"
RULES_DIR = ROOT / "prometheus" / "rules"

# ---------------------------------------------------------------------------- selectors

# The scrape job of the bundled stack (prometheus/prometheus.yml); rules aggregate by job.
JOB = "interlock"
# Label matchers every dashboard query carries (Grafana variables).
DASHBOARD_SELECTOR = 'job=~"$job", instance=~"$instance"'
# Grafana's rate window for raw counters on dashboards.
RATE_INTERVAL = "$__rate_interval"
# The window of the recorded rates and ratios the alerts and dashboard ratios read.
RULE_WINDOW = "5m"
# Lookups answered without running the loader in this request (see docs/metrics.md).
CACHE_HIT_RESULTS = "hit|near_hit|stale|negative_hit|coalesced"

# ---------------------------------------------------------------------------- SLO

# 99.9% of requests answer without 5xx; the error budget is the rest.
SLO_AVAILABILITY = 0.999
ERROR_BUDGET = 0.001
# Multi-window, multi-burn-rate alerts (Google SRE workbook): (long, short, burn factor).
BURN_FAST = ("1h", "5m", 14.4)
BURN_SLOW = ("6h", "30m", 6)
SLO_WINDOWS = ("5m", "30m", "1h", "6h")

# ---------------------------------------------------------------------------- thresholds

LOCK_TIMEOUT_RATIO = 0.05  # InterlockLockTimeoutRatioHigh
LOCK_MIN_ACQUIRE_RATE = 0.1  # acquisitions/s below which timeouts do not alert
LOCK_WAIT_P99_SECONDS = 1  # InterlockLockWaitP99High
TXN_ABORT_RATIO = 0.1  # InterlockTxnAbortRateHigh (non-client aborts)
TXN_MIN_RATE = 0.05  # transactions/s below which aborts do not alert
TXN_IN_DOUBT_MAX_AGE = 900  # InterlockTxnInDoubtTooOld, seconds
CACHE_HIT_RATIO_MIN = 0.5  # InterlockCacheHitRatioLow
CACHE_MIN_LOOKUP_RATE = 1  # lookups/s below which a low hit ratio does not alert

# Dashboard colour steps (value, colour); the first step has no value.
Steps = list[tuple[float | None, str]]
CONTENTION_STEPS: Steps = [(None, "green"), (0.2, "orange"), (0.5, "red")]
ERROR_RATIO_STEPS: Steps = [(None, "green"), (ERROR_BUDGET, "orange"), (0.01, "red")]
ABORT_RATIO_STEPS: Steps = [(None, "green"), (0.05, "orange"), (TXN_ABORT_RATIO, "red")]
HIT_RATIO_STEPS: Steps = [(None, "red"), (CACHE_HIT_RATIO_MIN, "orange"), (0.8, "green")]
IN_DOUBT_AGE_STEPS: Steps = [(None, "green"), (60, "orange"), (TXN_IN_DOUBT_MAX_AGE, "red")]

# ---------------------------------------------------------------------------- Grafana, Kibana

# Datasource uids pinned in dashboards/provisioning/datasources/interlock.yml.
PROMETHEUS_UID = "interlock-prometheus"
ELASTICSEARCH_UID = "interlock-elasticsearch"

# Kibana objects (ids are stable so that links from Grafana keep working).
KIBANA_VERSION = "8.15.3"
DATA_VIEW_ID = "interlock-logs"
DATA_VIEW_TITLE = "logs-interlock-*"
KIBANA_DASHBOARD_ID = "interlock-logs-dashboard"
SEARCH_BY_REQUEST = "interlock-by-request-id"
SEARCH_BY_TRACE = "interlock-by-trace-id"
SEARCH_LOCK_LOST = "interlock-lock-lost"
SEARCH_TXN_IN_DOUBT = "interlock-txn-in-doubt"
SEARCH_CACHE_DEGRADED = "interlock-cache-degraded"

# Per-request columns shown in Kibana and in Grafana log tables.
REQUEST_COLUMNS = [
    "log.level",
    "http.request.method",
    "interlock.http.route",
    "http.response.status_code",
    "event.duration",
    "http.request.id",
    "trace.id",
    "message",
]
