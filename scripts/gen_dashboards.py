"""Generate the Grafana dashboards and the Kibana saved objects of the bundled stack.

Usage::

    python scripts/gen_dashboards.py           # rewrite the checked-in files
    python scripts/gen_dashboards.py --check   # exit 1 when a checked-in file is stale

Writes ``dashboards/grafana/interlock-*.json`` (Grafana dashboard JSON model, provisioned
by ``dashboards/provisioning/dashboards/interlock.yml``) and
``dashboards/kibana/interlock.ndjson`` (Kibana saved objects export format, imported by
the ``kibana-setup`` job of docker-compose.yml). Standard library only; the output is
deterministic, and tests/observability checks that the checked-in files are current.

Metric names come from the catalogue in docs/metrics.md, log fields from docs/logging.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GRAFANA_DIR = ROOT / "dashboards" / "grafana"
KIBANA_FILE = ROOT / "dashboards" / "kibana" / "interlock.ndjson"

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

# Label matchers every Prometheus query carries.
SEL = 'job=~"$job", instance=~"$instance"'
# Lookups answered without running the loader in this request (see docs/metrics.md).
CACHE_HIT_RESULTS = "hit|near_hit|stale|negative_hit|coalesced"

# ---------------------------------------------------------------------------- Kibana links


def kibana_discover_url(search_id: str, field: str) -> str:
    """A Discover URL opening saved search ``search_id`` filtered on ``field`` = the value.

    Grafana fills ``${kibana_url}`` from the dashboard variable and ``${__value.raw}``
    from the clicked cell. The app state is Rison, as Kibana writes it in its own URLs.
    """
    query = f"{field}:%22${{__value.raw}}%22"
    return (
        f"${{kibana_url}}/app/discover#/view/{search_id}"
        "?_g=(time:(from:now-24h,to:now))"
        f"&_a=(query:(language:kuery,query:'{query}'))"
    )


REQUEST_ID_LINK = {
    "title": "Open request ${__value.raw} in Kibana",
    "url": kibana_discover_url(SEARCH_BY_REQUEST, "http.request.id"),
    "targetBlank": True,
}
TRACE_ID_LINK = {
    "title": "Open trace ${__value.raw} in Kibana",
    "url": kibana_discover_url(SEARCH_BY_TRACE, "trace.id"),
    "targetBlank": True,
}

# ---------------------------------------------------------------------------- panels

PROM_DS = {"type": "prometheus", "uid": "${datasource}"}
ES_DS = {"type": "elasticsearch", "uid": ELASTICSEARCH_UID}


def prom(expr: str, legend: str = "__auto", *, exemplar: bool = False) -> dict[str, Any]:
    """A Prometheus query target (refId is set when the panel is built)."""
    return {
        "datasource": PROM_DS,
        "editorMode": "code",
        "expr": expr,
        "exemplar": exemplar,
        "legendFormat": legend,
        "range": True,
    }


def rate(metric: str, matchers: str = "", window: str = "$__rate_interval") -> str:
    sel = f"{matchers}, {SEL}" if matchers else SEL
    return f"rate({metric}{{{sel}}}[{window}])"


def quantile(q: float, metric: str, by: str, matchers: str = "") -> str:
    return f"histogram_quantile({q}, sum by ({by}, le) ({rate(metric + '_bucket', matchers)}))"


def _panel(
    kind: str,
    title: str,
    description: str,
    targets: list[dict[str, Any]],
    unit: str,
    *,
    custom: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    defaults: dict[str, Any] | None = None,
    overrides: list[dict[str, Any]] | None = None,
    transformations: list[dict[str, Any]] | None = None,
    datasource: dict[str, str] = PROM_DS,
) -> dict[str, Any]:
    for ref, target in zip("ABCDEFGH", targets, strict=False):
        target["refId"] = ref
    panel: dict[str, Any] = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": datasource,
        "targets": targets,
        "fieldConfig": {
            "defaults": {"unit": unit, **(defaults or {}), "custom": custom or {}},
            "overrides": overrides or [],
        },
        "options": options or {},
    }
    if transformations:
        panel["transformations"] = transformations
    return panel


def timeseries(
    title: str,
    description: str,
    targets: list[dict[str, Any]],
    unit: str,
    *,
    stack: bool = False,
    max_: float | None = None,
) -> dict[str, Any]:
    defaults: dict[str, Any] = {"min": 0}
    if max_ is not None:
        defaults["max"] = max_
    return _panel(
        "timeseries",
        title,
        description,
        targets,
        unit,
        defaults=defaults,
        custom={
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 20 if stack else 0,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        },
        options={
            "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    )


def stat(
    title: str,
    description: str,
    expr: str,
    unit: str,
    *,
    thresholds: list[tuple[float | None, str]] | None = None,
) -> dict[str, Any]:
    steps = [{"color": color, "value": value} for value, color in (thresholds or [(None, "green")])]
    return _panel(
        "stat",
        title,
        description,
        [prom(expr, "")],
        unit,
        defaults={"thresholds": {"mode": "absolute", "steps": steps}},
        options={
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
            "textMode": "auto",
        },
    )


def state_timeline(title: str, description: str, targets: list[dict[str, Any]]) -> dict[str, Any]:
    return _panel(
        "state-timeline",
        title,
        description,
        targets,
        "none",
        defaults={
            "mappings": [
                {
                    "type": "value",
                    "options": {
                        "0": {"text": "ok", "color": "green", "index": 0},
                        "1": {"text": "degraded", "color": "red", "index": 1},
                    },
                }
            ],
            "thresholds": {
                "mode": "absolute",
                "steps": [{"color": "green", "value": None}, {"color": "red", "value": 1}],
            },
        },
        options={"showValue": "never", "mergeValues": True, "rowHeight": 0.8},
    )


def log_table(title: str, description: str, lucene: str, columns: list[str]) -> dict[str, Any]:
    """Recent log lines from Elasticsearch, with request and trace ids linking to Kibana."""
    target = {
        "datasource": ES_DS,
        "query": lucene,
        "alias": "",
        "metrics": [{"id": "1", "type": "raw_data", "settings": {"size": "100"}}],
        "bucketAggs": [],
        "timeField": "@timestamp",
    }
    overrides = [
        {
            "matcher": {"id": "byName", "options": "http.request.id"},
            "properties": [{"id": "links", "value": [REQUEST_ID_LINK]}],
        },
        {
            "matcher": {"id": "byName", "options": "trace.id"},
            "properties": [{"id": "links", "value": [TRACE_ID_LINK]}],
        },
    ]
    if "event.duration" in columns:
        overrides.append(
            {
                "matcher": {"id": "byName", "options": "event.duration"},
                "properties": [{"id": "unit", "value": "ns"}],
            }
        )
    return _panel(
        "table",
        title,
        description,
        [target],
        "string",
        datasource=ES_DS,
        custom={"filterable": True, "cellOptions": {"type": "auto"}},
        overrides=overrides,
        options={"showHeader": True, "sortBy": [{"displayName": "@timestamp", "desc": True}]},
        transformations=[
            {
                "id": "filterFieldsByName",
                "options": {"include": {"names": ["@timestamp", *columns]}},
            }
        ],
    )


# ---------------------------------------------------------------------------- dashboards


def variables(entity: tuple[str, str, str] | None) -> list[dict[str, Any]]:
    """Datasource, job and instance variables, one optional entity variable, Kibana URL.

    ``entity`` is (variable name, label, metric to read its values from).
    """

    def query_var(name: str, label: str, query: str) -> dict[str, Any]:
        return {
            "name": name,
            "label": label,
            "type": "query",
            "datasource": PROM_DS,
            "definition": query,
            "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
            "refresh": 2,
            "includeAll": True,
            "multi": True,
            "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "sort": 1,
            "hide": 0,
        }

    result: list[dict[str, Any]] = [
        {
            "name": "datasource",
            "label": "Prometheus",
            "type": "datasource",
            "query": "prometheus",
            "current": {"selected": True, "text": "Prometheus", "value": PROMETHEUS_UID},
            "refresh": 1,
            "regex": "",
            "hide": 0,
        },
        query_var("job", "Job", "label_values(interlock_http_requests_total, job)"),
        query_var(
            "instance",
            "Instance",
            'label_values(interlock_http_requests_total{job=~"$job"}, instance)',
        ),
    ]
    if entity is not None:
        name, label, metric = entity
        result.append(query_var(name, label, f"label_values({metric}{{{SEL}}}, {name})"))
    result.append(
        {
            "name": "kibana_url",
            "label": "Kibana URL",
            "description": "Where request and trace id links open Kibana Discover",
            "type": "textbox",
            "query": "http://localhost:5601",
            "current": {"text": "http://localhost:5601", "value": "http://localhost:5601"},
            "hide": 0,
        }
    )
    return result


def layout(rows: Iterable[Iterable[tuple[dict[str, Any], int, int]]]) -> list[dict[str, Any]]:
    """Place (panel, width, height) rows on Grafana's 24-column grid and number them."""
    panels: list[dict[str, Any]] = []
    y = 0
    for row in rows:
        x = 0
        height = 0
        for panel, w, h in row:
            panel["gridPos"] = {"h": h, "w": w, "x": x, "y": y}
            panel["id"] = len(panels) + 1
            panels.append(panel)
            x += w
            height = max(height, h)
        if x > 24:
            raise ValueError(f"row at y={y} is {x} columns wide (max 24)")
        y += height
    return panels


def dashboard(
    uid: str,
    title: str,
    description: str,
    entity: tuple[str, str, str] | None,
    rows: Iterable[Iterable[tuple[dict[str, Any], int, int]]],
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["interlock"],
        "editable": True,
        "graphTooltip": 1,
        "timezone": "browser",
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "links": [
            {
                "title": "interlock dashboards",
                "type": "dashboards",
                "tags": ["interlock"],
                "asDropdown": True,
                "includeVars": True,
                "keepTime": True,
                "icon": "external link",
                "targetBlank": False,
                "tooltip": "",
                "url": "",
            },
            {
                "title": "Logs in Kibana",
                "type": "link",
                "url": f"${{kibana_url}}/app/dashboards#/view/{KIBANA_DASHBOARD_ID}",
                "icon": "doc",
                "targetBlank": True,
                "tags": [],
                "asDropdown": False,
                "includeVars": False,
                "keepTime": False,
                "tooltip": "The interlock logs dashboard in Kibana",
            },
        ],
        "templating": {"list": variables(entity)},
        "panels": layout(rows),
    }


# The panel rows below are laid out as they appear on the grid, one row per block.
# fmt: off
def overview() -> dict[str, Any]:
    req = "interlock_http_requests_total"
    dur = "interlock_http_request_duration_seconds"
    route = 'route=~"$route"'
    any_5xx = 'status=~"5.."'
    errors_5xx = f"{any_5xx}, {route}"
    budget = 0.001  # 99.9% availability SLO, as in prometheus/rules/alerts.yml
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
                      f"(sum({rate(req, errors_5xx)}) or vector(0)) / sum({rate(req, route)})",
                      "percentunit",
                      thresholds=[(None, "green"), (0.001, "orange"), (0.01, "red")]), 6, 4),
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
                            [prom(f"(sum by (route) ({rate(req, errors_5xx)})"
                                  f" or sum by (route) ({rate(req, route)}) * 0)"
                                  f" / sum by (route) ({rate(req, route)})", "{{route}}")],
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
                            "alerting windows (1 = exactly on budget). The fast-burn alert "
                            "fires above 14.4 on 1h and 5m, the slow-burn alert above 6 on "
                            "6h and 30m.",
                            [prom(f"(sum({rate(req, any_5xx, w)}) or vector(0))"
                                  f" / sum({rate(req, '', w)}) / {budget}", w)
                             for w in ("5m", "30m", "1h", "6h")],
                            "none"), 12, 8),
                (timeseries("interlock health",
                            "Log records dropped by a sink, label values folded into "
                            "__overflow__ by the cardinality cap, and faults injected by "
                            "interlock.chaos (should be 0 outside chaos experiments).",
                            [prom(f"sum by (sink) ({rate('interlock_log_records_dropped_total')})",
                                  "dropped logs {{sink}}"),
                             prom(f"sum by (metric) ({rate('interlock_label_overflow_total')})",
                                  "overflow {{metric}}"),
                             prom("sum by (kind, target) "
                                  f"({rate('interlock_chaos_injected_total')})",
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
    timeouts = f'result="timeout", {lock}'
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
                      f"sum({rate(acq + '_count', lock)})", "ops"), 6, 4),
                (stat("Contention", "Share of acquisitions that found the lock held and "
                      "had to wait.",
                      f"sum({rate('interlock_lock_contended_total', lock)})"
                      f" / sum({rate(acq + '_count', lock)})", "percentunit",
                      thresholds=[(None, "green"), (0.2, "orange"), (0.5, "red")]), 6, 4),
                (stat("Timeouts", "Acquisitions per second that gave up (LockTimeout).",
                      f"sum({rate(acq + '_count', timeouts)}) or vector(0)",
                      "ops", thresholds=[(None, "green"), (0.01, "red")]), 6, 4),
                (stat("Leases lost", "Leases lost while held in the selected time range "
                      "(expired or renewal failed).",
                      "sum(increase(interlock_lock_lost_total"
                      f"{{{lock}, {SEL}}}[$__range])) or vector(0)",
                      "short", thresholds=[(None, "green"), (1, "red")]), 6, 4),
            ],
            [
                (timeseries("Contention rate by lock",
                            "Contended acquisitions divided by all acquisitions, per lock: "
                            "rate(interlock_lock_contended_total) / "
                            "rate(interlock_lock_acquire_seconds_count).",
                            [prom(f"sum by (lock) ({rate('interlock_lock_contended_total', lock)})"
                                  f" / sum by (lock) ({rate(acq + '_count', lock)})", "{{lock}}")],
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
                            [prom(f"sum by (lock, reason) (increase(interlock_lock_lost_total"
                                  f"{{{lock}, {SEL}}}[$__rate_interval]))",
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
    aborts = "interlock_txn_aborts_total"
    phase = "interlock_txn_phase_seconds"
    committed = f'outcome="committed", {txn}'
    aborted = f'outcome="aborted", {txn}'
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
                      "reason).",
                      f"(sum({rate(total, aborted)}) or vector(0))"
                      f" / sum({rate(total, txn)})", "percentunit",
                      thresholds=[(None, "green"), (0.05, "orange"), (0.1, "red")]), 6, 4),
                (stat("In doubt", "Transactions prepared but not yet decided.",
                      f"sum(max by (txn) (interlock_txn_in_doubt{{{txn}, {SEL}}})) or vector(0)",
                      "short", thresholds=[(None, "green"), (1, "orange")]), 6, 4),
                (stat("Oldest in doubt", "Age of the oldest in-doubt transaction.",
                      f"max(interlock_txn_oldest_in_doubt_seconds{{{SEL}}}) or vector(0)",
                      "s", thresholds=[(None, "green"), (60, "orange"), (900, "red")]), 6, 4),
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
                            "client (exception in the transaction body).",
                            [prom(f"sum by (txn, reason) ({rate(aborts, txn)})"
                                  f" / ignoring (reason) group_left"
                                  f" sum by (txn) ({rate(total, txn)})",
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
                            [prom(f"max by (txn) (interlock_txn_in_doubt{{{txn}, {SEL}}})",
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
                            [prom("sum by (action) (increase(interlock_txn_recovered_total"
                                  f"{{{SEL}}}[$__rate_interval]))", "{{action}}")],
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
    c = 'cache=~"$cache"'
    counted = f'result!="bypass", {c}'
    hits = f'result=~"{CACHE_HIT_RESULTS}", {c}'
    return dashboard(
        "interlock-cache",
        "interlock / cache",
        "Distributed cache: hit ratio, lookup outcomes, loader latency and degraded "
        "(fail-open) state, by cache name.",
        ("cache", "Cache", reqs),
        [
            [
                (stat("Lookups", "Cache lookups per second, bypasses excluded.",
                      f"sum({rate(reqs, counted)})", "ops"), 6, 4),
                (stat("Hit ratio", "Lookups answered without running the loader (hit, "
                      "near_hit, stale, negative_hit, coalesced) over all lookups but "
                      "bypasses.",
                      f"(sum({rate(reqs, hits)}) or vector(0)) / sum({rate(reqs, counted)})",
                      "percentunit",
                      thresholds=[(None, "red"), (0.5, "orange"), (0.8, "green")]), 6, 4),
                (stat("Loads", "Loader runs per second.",
                      f"sum({rate(load + '_count', c)}) or vector(0)", "ops"), 6, 4),
                (stat("Degraded caches", "Caches failing open right now (backend "
                      "unreachable).",
                      f"count(max by (cache) (interlock_cache_degraded{{{c}, {SEL}}}) > 0)"
                      " or vector(0)",
                      "short", thresholds=[(None, "green"), (1, "red")]), 6, 4),
            ],
            [
                (timeseries("Hit ratio by cache",
                            "Lookups answered without running the loader over all lookups "
                            "but bypasses, per cache.",
                            [prom(f"(sum by (cache) ({rate(reqs, hits)})"
                                  f" or sum by (cache) ({rate(reqs, counted)}) * 0)"
                                  f" / sum by (cache) ({rate(reqs, counted)})", "{{cache}}")],
                            "percentunit", max_=1), 12, 8),
                (timeseries("Outcomes",
                            "Lookups per second by result: hit, near_hit (process-local "
                            "copy), stale (served while refreshing), miss, coalesced "
                            "(waited for another caller's load), negative_hit, bypass, "
                            "error.",
                            [prom(f"sum by (result) ({rate(reqs, c)})", "{{result}}")],
                            "ops", stack=True), 12, 8),
            ],
            [
                (timeseries("Loader latency p50 / p99",
                            "Time spent in cache loaders per cache. Exemplars link to the "
                            "trace's log lines in Kibana.",
                            [prom(quantile(0.5, load, "cache", c), "{{cache}} p50"),
                             prom(quantile(0.99, load, "cache", c), "{{cache}} p99",
                                  exemplar=True)],
                            "s"), 12, 8),
                (timeseries("Loads by cache", "Loader runs per second per cache.",
                            [prom(f"sum by (cache) ({rate(load + '_count', c)})", "{{cache}}")],
                            "ops"), 12, 8),
            ],
            [
                (state_timeline("Degraded",
                                "1 while a cache fails open because its backend is "
                                "unreachable; every lookup then runs the loader.",
                                [prom(f"max by (cache) (interlock_cache_degraded{{{c}, {SEL}}})",
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

# ---------------------------------------------------------------------------- Kibana


def saved_search(
    object_id: str, title: str, description: str, kql: str, columns: list[str]
) -> dict[str, Any]:
    source = {
        "query": {"query": kql, "language": "kuery"},
        "filter": [],
        "indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.index",
    }
    return {
        "id": object_id,
        "type": "search",
        "attributes": {
            "title": title,
            "description": description,
            "columns": columns,
            "sort": [["@timestamp", "desc"]],
            "grid": {},
            "hideChart": False,
            "isTextBasedQuery": False,
            "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps(source, sort_keys=True)},
        },
        "references": [
            {
                "id": DATA_VIEW_ID,
                "name": "kibanaSavedObjectMeta.searchSourceJSON.index",
                "type": "index-pattern",
            }
        ],
    }


def kibana_objects() -> list[dict[str, Any]]:
    data_view = {
        "id": DATA_VIEW_ID,
        "type": "index-pattern",
        "attributes": {
            "title": DATA_VIEW_TITLE,
            "name": "interlock logs",
            "timeFieldName": "@timestamp",
            "fieldFormatMap": json.dumps(
                {
                    "event.duration": {
                        "id": "duration",
                        "params": {"inputFormat": "nanoseconds", "outputFormat": "asMilliseconds"},
                    }
                },
                sort_keys=True,
            ),
        },
        "references": [],
    }
    searches = [
        saved_search(
            SEARCH_BY_REQUEST,
            "interlock: requests by request id",
            'One line per request. Put a request id in the query (http.request.id:"...") '
            "to see everything logged for that request; Grafana links open it so.",
            "http.request.id:*",
            REQUEST_COLUMNS,
        ),
        saved_search(
            SEARCH_BY_TRACE,
            "interlock: log lines by trace id",
            "Every line of a W3C trace across services. Put a trace id in the query "
            '(trace.id:"..."); Grafana exemplars and tables open it so.',
            "trace.id:*",
            ["service.name", "span.id", *REQUEST_COLUMNS],
        ),
        saved_search(
            SEARCH_LOCK_LOST,
            "interlock: lock lost",
            "Leases lost while held (expired, renewal failed, taken); see the "
            "InterlockLockLost runbook.",
            'event.action:"lock-lost"',
            [
                "log.level",
                "interlock.lock.name",
                "interlock.lock.key",
                "interlock.lock.reason",
                "interlock.lock.fence",
                "http.request.id",
                "trace.id",
                "message",
            ],
        ),
        saved_search(
            SEARCH_TXN_IN_DOUBT,
            "interlock: transactions in doubt",
            "Transactions prepared but undecided, and their recovery; see the "
            "InterlockTxnInDoubt runbook.",
            'event.action:"txn-in-doubt" or event.action:"txn-recovered"',
            [
                "log.level",
                "interlock.txn.name",
                "interlock.txn.xid",
                "interlock.txn.outcome",
                "interlock.txn.reason",
                "trace.id",
                "message",
            ],
        ),
        saved_search(
            SEARCH_CACHE_DEGRADED,
            "interlock: cache degraded",
            "Caches failing open because their backend is unreachable; see the "
            "InterlockCacheDegraded runbook.",
            'event.action:"cache-degraded"',
            ["log.level", "interlock.cache.name", "error.message", "message"],
        ),
    ]
    grid = [(0, 0, 48, 15), (0, 15, 24, 15), (24, 15, 24, 15), (0, 30, 24, 15), (24, 30, 24, 15)]
    panels = []
    references = []
    for index, (search, (x, y, w, h)) in enumerate(zip(searches, grid, strict=True)):
        panel_index = str(index + 1)
        panels.append(
            {
                "version": KIBANA_VERSION,
                "type": "search",
                "gridData": {"x": x, "y": y, "w": w, "h": h, "i": panel_index},
                "panelIndex": panel_index,
                "embeddableConfig": {},
                "panelRefName": f"panel_{index}",
            }
        )
        references.append({"id": search["id"], "name": f"panel_{index}", "type": "search"})
    board = {
        "id": KIBANA_DASHBOARD_ID,
        "type": "dashboard",
        "attributes": {
            "title": "interlock logs",
            "description": "Requests and interlock events (lock lost, transactions in doubt, "
            "cache degraded) from the logs-interlock-default data stream.",
            "panelsJSON": json.dumps(panels, sort_keys=True),
            "optionsJSON": json.dumps(
                {
                    "hidePanelTitles": False,
                    "syncColors": False,
                    "syncCursor": True,
                    "syncTooltips": False,
                    "useMargins": True,
                },
                sort_keys=True,
            ),
            "timeRestore": True,
            "timeFrom": "now-1h",
            "timeTo": "now",
            "refreshInterval": {"pause": False, "value": 30000},
            "version": 1,
            "kibanaSavedObjectMeta": {
                "searchSourceJSON": json.dumps(
                    {"query": {"query": "", "language": "kuery"}, "filter": []}, sort_keys=True
                )
            },
        },
        "references": references,
    }
    return [data_view, *searches, board]


def render_ndjson(objects: list[dict[str, Any]]) -> str:
    details = {
        "excludedObjects": [],
        "excludedObjectsCount": 0,
        "exportedCount": len(objects),
        "missingRefCount": 0,
        "missingReferences": [],
    }
    lines = [json.dumps(o, sort_keys=True, separators=(",", ":")) for o in [*objects, details]]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- main


def render() -> dict[Path, str]:
    """Every generated file, path to content."""
    files = {
        GRAFANA_DIR / name: json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
        for name, build in DASHBOARDS.items()
    }
    files[KIBANA_FILE] = render_ndjson(kibana_objects())
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for path, text in render().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(path.relative_to(ROOT))
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    for path in stale:
        print(f"{'stale' if args.check else 'wrote'} {path}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
