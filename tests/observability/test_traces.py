"""The stack's trace path: the demo's OTLP settings, Tempo and Grafana's trace links.

Docker does not run here: the files are checked against the formats Tempo 2.6 and
Grafana 11.3 document (Tempo's configuration reference, Grafana's datasource provisioning
for Tempo, Elasticsearch and Prometheus) and against what interlock really writes.
"""

from __future__ import annotations

import asyncio
import re
import tomllib
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from interlock import AsyncInterlock, InterlockMiddleware
from interlock.testing import asgi_request

from ._support import (
    COMPOSE_FILE,
    PROVISIONING_DIR,
    ROOT,
    catalogue,
    grafana_to_promql,
    load_yaml,
    metric_names,
    series_names,
)
from .test_promql import promtool_check

TEMPO_CONFIG = ROOT / "tempo" / "tempo.yaml"
TEMPO_UID = "interlock-tempo"


def services() -> dict[str, dict[str, Any]]:
    return load_yaml(COMPOSE_FILE)["services"]


def datasources() -> dict[str, dict[str, Any]]:
    """uid -> datasource of the provisioning file."""
    path = PROVISIONING_DIR / "datasources" / "interlock.yml"
    return {ds["uid"]: ds for ds in load_yaml(path)["datasources"]}


def published(service: str) -> dict[int, int]:
    """Container port -> default host port (all bind 127.0.0.1: test_compose.py)."""
    ports = {}
    for spec in services()[service]["ports"]:
        match = re.fullmatch(r"127\.0\.0\.1:\$\{\w+:-(\d+)\}:(\d+)", spec)
        assert match, spec
        ports[int(match.group(2))] = int(match.group(1))
    return ports


def test_tempo_receives_otlp_where_compose_publishes_it() -> None:
    tempo = services()["tempo"]
    assert tempo["image"].startswith("grafana/tempo:2.")
    mounts = dict(v.split(":")[:2] for v in tempo["volumes"])
    assert mounts["./tempo/tempo.yaml"] == "/etc/tempo/tempo.yaml"
    assert tempo["command"] == ["-config.file=/etc/tempo/tempo.yaml"]
    config = load_yaml(TEMPO_CONFIG)
    api_port = config["server"]["http_listen_port"]
    protocols = config["distributor"]["receivers"]["otlp"]["protocols"]
    # OTLP's default ports; 0.0.0.0 inside the container (newer receivers default to
    # localhost, which other containers cannot reach).
    assert protocols["http"]["endpoint"] == "0.0.0.0:4318"
    assert protocols["grpc"]["endpoint"] == "0.0.0.0:4317"
    assert published("tempo") == {api_port: api_port, 4318: 4318, 4317: 4317}
    assert f"localhost:{api_port}/ready" in " ".join(tempo["healthcheck"]["test"])
    storage = config["storage"]["trace"]
    assert storage["backend"] == "local"
    data = dict(v.split(":")[:2] for v in tempo["volumes"])["tempo-data"]
    assert storage["wal"]["path"].startswith(data) and storage["local"]["path"].startswith(data)
    assert "tempo-data" in load_yaml(COMPOSE_FILE)["volumes"]


def test_the_demo_exports_to_tempo() -> None:
    env = services()["app"]["environment"]
    assert env["OTEL_TRACES_EXPORTER"] == "otlp"  # what interlock/demo/tracing.py turns on by
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://tempo:4318"  # OTLP/HTTP
    assert env["OTEL_SERVICE_NAME"] == "interlock-demo"
    # The image installs the extra whose packages the demo's setup imports.
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    extras = re.search(r"pip install '\.\[([\w,]+)\]'", dockerfile)
    assert extras and "otlp" in extras.group(1).split(",")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    otlp = " ".join(project["optional-dependencies"]["otlp"])
    source = (ROOT / "middleware" / "interlock" / "demo" / "tracing.py").read_text("utf-8")
    for module, package in [
        ("opentelemetry.sdk", "opentelemetry-sdk"),
        ("opentelemetry.exporter.otlp.proto.http", "opentelemetry-exporter-otlp-proto-http"),
        ("opentelemetry.instrumentation.asgi", "opentelemetry-instrumentation-asgi"),
    ]:
        assert f"from {module}" in source and package in otlp, package


def test_tempo_datasource_links_traces_to_logs_and_metrics() -> None:
    all_ds = datasources()
    tempo = all_ds[TEMPO_UID]
    assert tempo["type"] == "tempo"
    assert tempo["url"] == f"http://tempo:{load_yaml(TEMPO_CONFIG)['server']['http_listen_port']}"
    logs = tempo["jsonData"]["tracesToLogsV2"]
    assert all_ds[logs["datasourceUid"]]["type"] == "elasticsearch"
    # A Lucene query on the ECS field interlock's log lines carry; `$$` is provisioning's
    # escape of `$`, so Grafana gets ${__trace.traceId}.
    assert logs["customQuery"] is True
    assert logs["query"] == 'trace.id:"$${__trace.traceId}"'
    metrics = tempo["jsonData"]["tracesToMetrics"]
    assert all_ds[metrics["datasourceUid"]]["type"] == "prometheus"
    labels = {t["value"] for t in metrics["tags"]}
    assert labels == {"lock", "cache", "txn"}
    assert all(q["name"] and "{$$__tags}" in q["query"] for q in metrics["queries"])


def test_traces_to_metrics_queries_parse_and_use_catalogue_metrics(tmp_path: Path) -> None:
    queries = datasources()[TEMPO_UID]["jsonData"]["tracesToMetrics"]["queries"]
    exprs = {
        f"check:tempo_{i}": grafana_to_promql(q["query"].replace("$$__tags", 'lock="x"'))
        for i, q in enumerate(queries)
    }
    code, output = promtool_check(exprs, tmp_path)
    assert code == 0, output
    allowed = series_names(catalogue())
    for name, expr in exprs.items():
        assert metric_names(expr) and metric_names(expr) <= allowed, (name, expr)


def test_log_lines_link_to_their_trace() -> None:
    links = datasources()["interlock-elasticsearch"]["jsonData"]["dataLinks"]
    tempo = [link for link in links if link.get("datasourceUid") == TEMPO_UID]
    assert len(tempo) == 1
    # An internal link: `url` is the query sent to Tempo, the field's raw value.
    assert tempo[0]["field"] == "trace.id" and tempo[0]["url"] == "$${__value.raw}"


def _exemplar_labels() -> set[str]:
    """The label names of the exemplars interlock's HTTP metrics really carry."""

    async def scrape() -> bytes:
        async with AsyncInterlock("mem://", registry=CollectorRegistry()) as ail:

            async def hello(scope: Any, receive: Any, send: Any) -> None:
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": b"hi"})

            app = InterlockMiddleware(hello, interlock=ail, routes=["/"])
            await asgi_request(app)
            accept = (b"accept", b"application/openmetrics-text; version=1.0.0")
            return (await asgi_request(app, "GET", "/metrics", headers=[accept])).body

    body = asyncio.run(scrape()).decode()
    return set(re.findall(r" # \{(\w+)=", body))


def test_exemplars_link_to_the_trace_in_tempo() -> None:
    labels = _exemplar_labels()
    assert labels == {"trace_id"}
    destinations = datasources()["interlock-prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    tempo = [d for d in destinations if d.get("datasourceUid") == TEMPO_UID]
    assert len(tempo) == 1 and tempo[0]["name"] in labels
    # The Kibana link stays (test_dashboards.py reads it first).
    assert "url" in destinations[0] and destinations[0]["name"] in labels
