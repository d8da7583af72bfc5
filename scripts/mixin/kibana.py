"""Kibana saved objects (export format): the logs data view, saved searches, a dashboard."""

from __future__ import annotations

import json
from typing import Any

from .config import (
    DATA_VIEW_ID,
    DATA_VIEW_TITLE,
    KIBANA_DASHBOARD_ID,
    KIBANA_VERSION,
    REQUEST_COLUMNS,
    SEARCH_BY_REQUEST,
    SEARCH_BY_TRACE,
    SEARCH_CACHE_DEGRADED,
    SEARCH_LOCK_LOST,
    SEARCH_TXN_IN_DOUBT,
)


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

