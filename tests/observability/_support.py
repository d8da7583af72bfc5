"""Shared helpers for the observability-stack tests: paths, tools, catalogue, PromQL names.

The metric catalogue comes from docs/metrics.md when it exists (names in backticks, the
type read from the same table row), else from :data:`FALLBACK_CATALOGUE`, the table of
DESIGN.md. The log field list :data:`LOG_FIELDS` is read from docs/logging.md, and
:func:`referenced_log_fields` collects what the Logstash pipeline, the index template,
the Kibana objects and the Grafana log tables refer to.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "prometheus"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
ALERTS_FILE = PROMETHEUS_DIR / "rules" / "alerts.yml"
GRAFANA_DIR = ROOT / "dashboards" / "grafana"
PROVISIONING_DIR = ROOT / "dashboards" / "provisioning"
KIBANA_FILE = ROOT / "dashboards" / "kibana" / "interlock.ndjson"
LOGSTASH_PIPELINE = ROOT / "logstash" / "pipeline" / "interlock.conf"
LOGSTASH_SETUP = ROOT / "logstash" / "setup"
COMPOSE_FILE = ROOT / "docker-compose.yml"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
METRICS_DOC = ROOT / "docs" / "metrics.md"

INSTALL_HINTS = {
    "promtool": "apt-get install prometheus",
    "amtool": "apt-get install prometheus-alertmanager",
    "docker-compose": "apt-get install docker-compose",
    "prometheus": "apt-get install prometheus",
}

# The catalogue of DESIGN.md: metric name -> type.
FALLBACK_CATALOGUE = {
    "interlock_http_requests_total": "counter",
    "interlock_http_request_duration_seconds": "histogram",
    "interlock_http_requests_in_progress": "gauge",
    "interlock_lock_acquire_seconds": "histogram",
    "interlock_lock_hold_seconds": "histogram",
    "interlock_lock_contended_total": "counter",
    "interlock_lock_held": "gauge",
    "interlock_lock_waiting": "gauge",
    "interlock_lock_lost_total": "counter",
    "interlock_cache_requests_total": "counter",
    "interlock_cache_load_seconds": "histogram",
    "interlock_cache_degraded": "gauge",
    "interlock_txn_total": "counter",
    "interlock_txn_aborts_total": "counter",
    "interlock_txn_phase_seconds": "histogram",
    "interlock_txn_in_doubt": "gauge",
    "interlock_txn_oldest_in_doubt_seconds": "gauge",
    "interlock_txn_recovered_total": "counter",
    "interlock_log_records_dropped_total": "counter",
    "interlock_chaos_injected_total": "counter",
    "interlock_label_overflow_total": "counter",
}

LOGGING_DOC = ROOT / "docs" / "logging.md"
_FIELD = re.compile(r"^(?:@timestamp|message|tags|[a-z_@][\w@]*(?:\.[\w@]+)+)$")


def _table_fields(text: str) -> set[str]:
    """Fields named in the *field* column (header ``field``/``fields``) of Markdown tables.

    Cells may abbreviate siblings of the field before them: ```interlock.lock.name`,
    `.key``` names ``interlock.lock.key`` too.
    """
    fields: set[str] = set()
    header: list[str] | None = None
    columns: list[int] = []
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
            columns = [i for i, c in enumerate(cells) if c.lower() in ("field", "fields")]
            continue
        if set(line) <= set("|-: "):
            continue
        for i in columns:
            prefix = ""
            for token in re.findall(r"`([^`]+)`", cells[i] if i < len(cells) else ""):
                if _FIELD.match(token):
                    fields.add(token)
                    prefix = token.rpartition(".")[0]
                elif prefix and re.fullmatch(r"\.[a-z_]\w*", token):
                    fields.add(prefix + token)
    return fields


def documented_log_fields(path: Path = LOGGING_DOC) -> frozenset[str]:
    """Every field the tables of docs/logging.md name."""
    fields = _table_fields(path.read_text(encoding="utf-8"))
    assert fields, f"no fields found in the tables of {path}"
    return frozenset(fields)


def transit_log_fields(path: Path = LOGGING_DOC) -> frozenset[str]:
    """The fields docs/logging.md lists as added on the way (by Logstash), not by the app."""
    text = path.read_text(encoding="utf-8")
    heading = "## Fields added on the way"
    assert heading in text, f"{path} lacks the section {heading!r}"
    return frozenset(_table_fields(text.split(heading, 1)[1].split("\n## ", 1)[0]))


# Fields of the app's log lines (ECS names) that Logstash, the index template, Kibana and
# Grafana's log tables may refer to: the schema of docs/logging.md, where they are
# documented, including the fields Logstash adds on the way (:func:`transit_log_fields`).
# tests/observability/test_live_logs.py checks them against lines the demo really writes.
LOG_FIELDS = documented_log_fields()


# ---------------------------------------------------------------------------- tools


def tool(name: str) -> str:
    """Path of a command-line tool; fails the test naming the package to install."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: {INSTALL_HINTS[name]}", pytrace=False)
    return path


def run(args: Sequence[str | Path], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def run_ok(args: Sequence[str | Path], cwd: Path = ROOT) -> str:
    """Run a command, fail with its output unless it exits 0; return stdout + stderr."""
    proc = run(args, cwd)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(map(str, args))} exited {proc.returncode}:\n{output}"
    return output


# ---------------------------------------------------------------------------- files


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def rules() -> Iterator[dict[str, Any]]:
    """Every rule (recording and alerting) of prometheus/rules/*.yml."""
    for path in RULE_FILES:
        for group in load_yaml(path)["groups"]:
            yield from group["rules"]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def recorded_inputs() -> dict[str, set[str]]:
    """Recorded series -> the metrics it is computed from, through other recorded series."""
    direct = {rule["record"]: metric_names(rule["expr"]) for rule in rules() if "record" in rule}

    def expand(name: str, seen: frozenset[str]) -> set[str]:
        out: set[str] = set()
        for used in direct[name]:
            out |= expand(used, seen | {name}) if used in direct and used not in seen else {used}
        return out

    return {name: expand(name, frozenset()) for name in direct}


def dashboards() -> dict[str, dict[str, Any]]:
    """File name -> Grafana dashboard JSON."""
    return {
        path.name: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(GRAFANA_DIR.glob("*.json"))
    }


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # collapsed rows


def prometheus_targets(
    dashboard: dict[str, Any],
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(panel, target) for every PromQL target of a dashboard."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            if "expr" in target:
                yield panel, target


def provisioned_datasources() -> dict[str, str]:
    """uid -> type of every datasource in dashboards/provisioning/datasources/."""
    result = {}
    for path in sorted((PROVISIONING_DIR / "datasources").glob("*.yml")):
        for ds in load_yaml(path).get("datasources", []):
            result[ds["uid"]] = ds["type"]
    return result


def kibana_objects() -> list[dict[str, Any]]:
    """Saved objects of the NDJSON export, without the trailing export summary."""
    lines = KIBANA_FILE.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if "exportedCount" not in json.loads(line)]


# ---------------------------------------------------------------------------- log fields


def logstash_pipeline() -> str:
    """The Logstash pipeline without comments."""
    text = LOGSTASH_PIPELINE.read_text(encoding="utf-8")
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def _logstash_ref(ref: str) -> str:
    """``[http][request][id]`` -> ``http.request.id``."""
    return ".".join(re.findall(r"\[([\w@.]+)\]", ref))


def pipeline_fields() -> set[str]:
    """Event fields the Logstash pipeline reads or writes (``@metadata`` left out)."""
    text = logstash_pipeline()
    fields = {_logstash_ref(ref) for ref in re.findall(r"((?:\[[\w@.]+\])+)", text)}
    fields |= set(re.findall(r'source\s*=>\s*"([\w.@]+)"', text))
    return {f for f in fields if not f.startswith("@metadata")}


def pipeline_added_fields() -> set[str]:
    """Fields the pipeline sets itself (``add_field``)."""
    text = logstash_pipeline()
    return {
        _logstash_ref(ref)
        for body in re.findall(r"add_field\s*=>\s*\{([^}]*)\}", text)
        for ref in re.findall(r'"((?:\[[\w@.]+\])+)"\s*=>', body)
    }


def mapped_fields(properties: dict[str, Any], prefix: str = "") -> list[str]:
    """Leaf fields of an Elasticsearch mapping's ``properties`` (multi-fields left out)."""
    fields = []
    for name, spec in properties.items():
        if "properties" in spec:
            fields += mapped_fields(spec["properties"], f"{prefix}{name}.")
        else:
            fields.append(prefix + name)
    return fields


def index_template() -> dict[str, Any]:
    return json.loads((LOGSTASH_SETUP / "index-template.json").read_text(encoding="utf-8"))


def template_mappings() -> dict[str, str]:
    """Field -> mapping type of the index template."""

    def walk(properties: dict[str, Any], prefix: str) -> Iterator[tuple[str, str]]:
        for name, spec in properties.items():
            if "properties" in spec:
                yield from walk(spec["properties"], f"{prefix}{name}.")
            else:
                yield prefix + name, spec["type"]

    return dict(walk(index_template()["template"]["mappings"]["properties"], ""))


def search_source(obj: dict[str, Any]) -> dict[str, Any]:
    return json.loads(obj["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])


def query_fields(query: str) -> list[str]:
    """Fields of a KQL or Lucene query (``field:value``)."""
    return re.findall(r"([\w.@]+)\s*:", query)


def kibana_fields() -> dict[str, list[str]]:
    """Saved object id -> the fields it refers to (columns, sort, query, time, formats)."""
    result = {}
    for obj in kibana_objects():
        attrs = obj["attributes"]
        fields: list[str] = []
        if obj["type"] == "search":
            fields += attrs["columns"] + [f for f, _ in attrs["sort"]]
            fields += query_fields(search_source(obj)["query"]["query"])
        if obj["type"] == "index-pattern":
            fields += [attrs["timeFieldName"], *json.loads(attrs["fieldFormatMap"])]
        result[obj["id"]] = fields
    return result


def grafana_log_fields() -> dict[str, list[str]]:
    """``dashboard: panel`` -> fields of each Grafana log table (Elasticsearch panels):
    the columns kept, the query, the field overrides (links) and the time field."""
    result = {}
    for name, board in dashboards().items():
        for panel in panels(board):
            if panel["datasource"]["type"] != "elasticsearch":
                continue
            target = panel["targets"][0]
            fields = list(panel["transformations"][0]["options"]["include"]["names"])
            fields += query_fields(target["query"])
            fields += [o["matcher"]["options"] for o in panel["fieldConfig"]["overrides"]]
            fields.append(target["timeField"])
            result[f"{name}: {panel['title']}"] = fields
    return result


def referenced_log_fields() -> dict[str, set[str]]:
    """Where each log field is referred to: field -> {"logstash", "index template", ...}."""
    where: dict[str, set[str]] = {}
    sources: list[tuple[str, Iterable[str]]] = [
        ("logstash pipeline", pipeline_fields()),
        ("index template", template_mappings()),
    ]
    sources += [(f"kibana {key}", fields) for key, fields in kibana_fields().items()]
    sources += [(f"grafana {key}", fields) for key, fields in grafana_log_fields().items()]
    for source, fields in sources:
        for field in fields:
            where.setdefault(field, set()).add(source)
    return where


# ---------------------------------------------------------------------------- catalogue


def catalogue() -> dict[str, str]:
    """Metric name -> type, from docs/metrics.md if it exists, else DESIGN.md's table.

    Only table rows count: prose may name things that share the prefix but are not
    metrics (the PostgreSQL tables ``interlock_txn_decisions``, ``interlock_xa_branches``).
    """
    if not METRICS_DOC.exists():
        return dict(FALLBACK_CATALOGUE)
    result: dict[str, str] = {}
    for line in METRICS_DOC.read_text(encoding="utf-8").splitlines():
        if not line.lstrip().startswith("|"):
            continue
        kind = next((k for k in ("counter", "gauge", "histogram") if k in line.lower()), "")
        for name in re.findall(r"`(interlock_[a-z0-9_]+)`", line):
            result.setdefault(name, kind)
    assert result, f"no `interlock_*` metric names found in {METRICS_DOC}"
    return result


def series_names(metrics: dict[str, str]) -> set[str]:
    """Every series name the catalogue's metrics expose (histogram and counter suffixes)."""
    names = set()
    for name, kind in metrics.items():
        names.add(name)
        if kind in ("histogram", ""):
            names.update(f"{name}_{suffix}" for suffix in ("bucket", "count", "sum", "created"))
        if kind in ("counter", "") and name.endswith("_total"):
            names.add(name.removesuffix("_total") + "_created")
    return names


# ---------------------------------------------------------------------------- PromQL

_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
    "and", "or", "unless", "offset", "atan2", "inf", "nan", "start", "end",
    # aggregation operators, which may be followed by `by (...)` instead of `(`
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (functions, keywords and labels left out)."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    text = re.sub(r"'(?:\\.|[^'\\])*'", "''", text)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r" \1 ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.$])([A-Za-z_:][\w:]*)(\s*\()?", text):
        name, call = match.groups()
        if not call and name.lower() not in _KEYWORDS:
            names.add(name)
    return names


def grafana_to_promql(expr: str) -> str:
    """A dashboard query made plain PromQL: Grafana's variables replaced by sample values."""
    expr = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")
    expr = expr.replace("$__range", "1h")
    return re.sub(r"\$\{?\w+\}?", ".*", expr)
