"""Shared helpers for the observability-stack tests: paths, tools, catalogue, PromQL names.

The metric catalogue comes from docs/metrics.md when it exists (names in backticks, the
type read from the same table row), else from :data:`FALLBACK_CATALOGUE`, the table of
DESIGN.md. The log field list is :data:`LOG_FIELDS`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator, Sequence
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

# Fields of the app's log lines (ECS names) that Logstash, the index template, Kibana and
# Grafana's log tables may refer to: the per-request line of DESIGN.md plus the event
# lines. TODO: read this list from docs/logging.md once it is written, and check it against
# lines the app really writes.
LOG_FIELDS = frozenset(
    {
        "@timestamp",
        "log.level",
        "message",
        "service.name",
        "http.request.method",
        "url.path",
        "http.route",
        "http.response.status_code",
        "event.duration",
        "http.request.id",
        "trace.id",
        "span.id",
        "client.ip",
        "user_agent.original",
        "interlock.lock.name",
        "interlock.lock.wait_ms",
        "interlock.lock.fence",
        "interlock.cache.name",
        "interlock.cache.result",
        "interlock.txn.name",
        "interlock.txn.xid",
        "interlock.txn.outcome",
        "interlock.txn.reason",
        "url.query",
        "event.kind",
        "event.category",
        "event.outcome",
        "error.type",
        "error.message",
        # Event lines: event.action is lock-lost (written by interlock.lock with the
        # lock's key and reason), txn-in-doubt, txn-recovered, cache-degraded.
        "event.action",
        "interlock.lock.key",
        "interlock.lock.reason",
        # Set by the Logstash pipeline; ECS wants it equal to data_stream.dataset.
        "event.dataset",
    }
)


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


# ---------------------------------------------------------------------------- catalogue


def catalogue() -> dict[str, str]:
    """Metric name -> type, from docs/metrics.md if it exists, else DESIGN.md's table."""
    if not METRICS_DOC.exists():
        return dict(FALLBACK_CATALOGUE)
    result: dict[str, str] = {}
    for line in METRICS_DOC.read_text(encoding="utf-8").splitlines():
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
