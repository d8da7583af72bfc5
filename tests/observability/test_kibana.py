"""Kibana saved objects (dashboards/kibana/interlock.ndjson) in the export format."""

from __future__ import annotations

import fnmatch
import json

from ._support import (
    KIBANA_FILE,
    LOG_FIELDS,
    LOGSTASH_SETUP,
    kibana_fields,
    kibana_objects,
    run_ok,
    search_source,
)

REQUIRED_SEARCHES = {
    "interlock-by-request-id": "http.request.id",
    "interlock-by-trace-id": "trace.id",
    "interlock-lock-lost": '"lock-lost"',
    "interlock-txn-in-doubt": '"txn-in-doubt"',
    "interlock-cache-degraded": '"cache-degraded"',
}


def test_file_is_an_export_with_a_matching_summary_line() -> None:
    lines = KIBANA_FILE.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    summary = records[-1]
    assert summary["exportedCount"] == len(records) - 1 == len(kibana_objects())
    assert summary["missingRefCount"] == 0 and summary["excludedObjectsCount"] == 0
    for obj in records[:-1]:
        assert {"id", "type", "attributes", "references"} <= set(obj)
        assert obj["type"] in {"index-pattern", "search", "dashboard"}
    ids = [(o["type"], o["id"]) for o in records[:-1]]
    assert len(ids) == len(set(ids))


def test_references_resolve_within_the_file() -> None:
    objects = {(o["type"], o["id"]) for o in kibana_objects()}
    for obj in kibana_objects():
        for ref in obj["references"]:
            assert (ref["type"], ref["id"]) in objects, f"{obj['id']}: dangling {ref}"
        if obj["type"] == "search":
            source = search_source(obj)
            names = {r["name"] for r in obj["references"]}
            assert source["indexRefName"] in names


def test_dashboard_panels_match_their_references() -> None:
    (board,) = [o for o in kibana_objects() if o["type"] == "dashboard"]
    panels = json.loads(board["attributes"]["panelsJSON"])
    refs = {r["name"]: r for r in board["references"]}
    assert len(panels) == len(refs) == len(REQUIRED_SEARCHES)
    for panel in panels:
        ref = refs[panel["panelRefName"]]
        assert ref["type"] == panel["type"] == "search"
        assert panel["gridData"]["i"] == panel["panelIndex"]
        assert panel["gridData"]["x"] + panel["gridData"]["w"] <= 48
    assert {r["id"] for r in refs.values()} == set(REQUIRED_SEARCHES)


def test_data_view_covers_the_data_stream_logstash_writes() -> None:
    (view,) = [o for o in kibana_objects() if o["type"] == "index-pattern"]
    assert view["attributes"]["timeFieldName"] == "@timestamp"
    assert fnmatch.fnmatch("logs-interlock-default", view["attributes"]["title"])
    template = json.loads((LOGSTASH_SETUP / "index-template.json").read_text(encoding="utf-8"))
    assert view["attributes"]["title"] in template["index_patterns"]


def test_required_saved_searches() -> None:
    searches = {o["id"]: o for o in kibana_objects() if o["type"] == "search"}
    assert set(REQUIRED_SEARCHES) <= set(searches)
    for object_id, needle in REQUIRED_SEARCHES.items():
        query = search_source(searches[object_id])["query"]
        assert query["language"] == "kuery"
        assert needle in query["query"], object_id


def test_kibana_objects_reference_only_documented_fields() -> None:
    objects = kibana_fields()
    assert set(objects) == {obj["id"] for obj in kibana_objects()}
    for object_id, fields in objects.items():
        for field in fields:
            assert field in LOG_FIELDS, f"{object_id}: {field}"


def test_import_script_posts_the_file_to_the_saved_objects_api() -> None:
    script = KIBANA_FILE.parent / "import.sh"
    run_ok(["sh", "-n", script])
    text = script.read_text(encoding="utf-8")
    assert "/api/saved_objects/_import?overwrite=true" in text
    assert "kbn-xsrf" in text and KIBANA_FILE.name in text
