"""Grafana building blocks: query targets, panels, variables, the grid and the dashboard
frame (Grafana dashboard JSON model, schema 39). The dashboards themselves are in
:mod:`.dashboards`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .config import (
    DASHBOARD_SELECTOR,
    ELASTICSEARCH_UID,
    KIBANA_DASHBOARD_ID,
    PROMETHEUS_UID,
    SEARCH_BY_REQUEST,
    SEARCH_BY_TRACE,
)

Row = Iterable[tuple[dict[str, Any], int, int]]

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
        query = f"label_values({metric}{{{DASHBOARD_SELECTOR}}}, {name})"
        result.append(query_var(name, label, query))
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


def layout(rows: Iterable[Row]) -> list[dict[str, Any]]:
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
    rows: Iterable[Row],
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


