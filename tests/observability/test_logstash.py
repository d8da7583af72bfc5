"""Logstash pipeline, Filebeat shipper and the Elasticsearch index template / ILM setup."""

from __future__ import annotations

import fnmatch
import json
import re

from ._support import (
    LOG_FIELDS,
    LOGSTASH_SETUP,
    ROOT,
    index_template,
    load_yaml,
    logstash_pipeline,
    pipeline_added_fields,
    pipeline_fields,
    run_ok,
    template_mappings,
    transit_log_fields,
)

pipeline = logstash_pipeline


def block(text: str, name: str) -> str:
    """The body of the first `name { ... }` block, braces balanced."""
    start = re.search(rf"\b{name}\s*\{{", text)
    assert start, f"no {name} block"
    depth, i = 1, start.end()
    while depth:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    return text[start.end() : i - 1]


def settings(body: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)\s*=>\s*"?([^"\n]+?)"?\s*$', body, re.MULTILINE))


def test_braces_balance() -> None:
    text = re.sub(r'"[^"]*"', '""', pipeline())
    depth = 0
    for char in text:
        depth += {"{": 1, "}": -1}.get(char, 0)
        assert depth >= 0
    assert depth == 0
    assert [m for m in re.findall(r"^(\w+)\s*\{", text, re.MULTILINE)] == [
        "input",
        "filter",
        "output",
    ]


def test_inputs_take_json_lines_over_tcp_and_beats() -> None:
    inputs = block(pipeline(), "input")
    tcp = settings(block(inputs, "tcp"))
    assert tcp["port"] == "5000" and tcp["codec"] == "json_lines"
    assert settings(block(inputs, "beats"))["port"] == "5044"


def test_output_is_the_logs_interlock_default_data_stream() -> None:
    out = settings(block(block(pipeline(), "output"), "elasticsearch"))
    assert out["data_stream"] == "true"
    name = f"{out['data_stream_type']}-{out['data_stream_dataset']}-{out['data_stream_namespace']}"
    assert name == "logs-interlock-default"
    assert out["data_stream_auto_routing"] == "false"


def test_pipeline_references_only_documented_fields() -> None:
    fields = pipeline_fields()
    assert fields, "no field references found"
    assert fields <= LOG_FIELDS, fields - LOG_FIELDS


def test_fields_documented_as_added_on_the_way_are_added_by_the_pipeline() -> None:
    # docs/logging.md's "Fields added on the way" are exempt from the check that the app
    # writes every referenced field (test_live_logs.py); Logstash must really add them.
    assert transit_log_fields() <= pipeline_added_fields()


def test_filebeat_ships_the_app_container_to_the_beats_input() -> None:
    config = load_yaml(ROOT / "logstash" / "filebeat" / "filebeat.yml")
    assert config["output.logstash"]["hosts"] == ["logstash:5044"]
    template = config["filebeat.autodiscover"]["providers"][0]["templates"][0]
    assert template["condition"]["equals"] == {
        "docker.container.labels.com_docker_compose_service": "app"
    }


def test_index_template_covers_the_data_stream_and_maps_documented_fields() -> None:
    template = index_template()
    assert any(fnmatch.fnmatch("logs-interlock-default", p) for p in template["index_patterns"])
    assert "data_stream" in template
    # Above the built-in logs-*-* template (priority 100), so ours applies.
    assert template["priority"] > 100
    fields = set(template_mappings())
    assert fields <= LOG_FIELDS, fields - LOG_FIELDS
    policy = template["template"]["settings"]["index.lifecycle.name"]
    script = (LOGSTASH_SETUP / "setup-elasticsearch.sh").read_text(encoding="utf-8")
    assert f"_ilm/policy/{policy} " in script


def test_lifecycle_policy_rolls_over_and_deletes() -> None:
    policy = json.loads((LOGSTASH_SETUP / "ilm-policy.json").read_text(encoding="utf-8"))
    phases = policy["policy"]["phases"]
    assert phases["hot"]["actions"]["rollover"]
    assert "delete" in phases["delete"]["actions"]


def test_setup_script_is_valid_and_applies_existing_files() -> None:
    script = LOGSTASH_SETUP / "setup-elasticsearch.sh"
    run_ok(["sh", "-n", script])
    text = script.read_text(encoding="utf-8")
    files = re.findall(r'"\$HERE/([\w.-]+)"', text)
    assert files == ["ilm-policy.json", "index-template.json"]  # policy before template
    for name in files:
        json.loads((LOGSTASH_SETUP / name).read_text(encoding="utf-8"))
