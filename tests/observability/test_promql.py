"""Every PromQL expression parses and uses only metrics of the catalogue, which is the set
the package really registers."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry

from ._support import (
    METRICS_DOC,
    catalogue,
    dashboards,
    grafana_to_promql,
    metric_names,
    prometheus_targets,
    recorded_inputs,
    run,
    series_names,
    tool,
)


def dashboard_exprs() -> dict[str, str]:
    """Rule-name-safe id -> PromQL of every dashboard query, variables substituted."""
    exprs = {}
    for board in dashboards().values():
        uid = board["uid"].replace("-", "_")
        for panel, target in prometheus_targets(board):
            exprs[f"check:{uid}:p{panel['id']}_{target['refId']}"] = grafana_to_promql(
                target["expr"]
            )
    return exprs


def variable_queries() -> list[str]:
    return [
        var["definition"]
        for board in dashboards().values()
        for var in board["templating"]["list"]
        if var["type"] == "query"
    ]


def promtool_check(exprs: dict[str, str], tmp_path: Path) -> tuple[int, str]:
    """`promtool check rules` on a file with one recording rule per expression."""
    path = tmp_path / "exprs.yml"
    group = {"name": "exprs", "rules": [{"record": k, "expr": v} for k, v in exprs.items()]}
    path.write_text(yaml.safe_dump({"groups": [group]}), encoding="utf-8")
    proc = run([tool("promtool"), "check", "rules", path])
    return proc.returncode, proc.stdout + proc.stderr


def test_every_dashboard_expression_parses(tmp_path: Path) -> None:
    exprs = dashboard_exprs()
    assert len(exprs) > 40
    code, output = promtool_check(exprs, tmp_path)
    assert code == 0, output
    assert f"SUCCESS: {len(exprs)} rules found" in output


def test_the_parse_check_rejects_broken_promql(tmp_path: Path) -> None:
    # The harness above must be able to fail: an unbalanced expression does not pass.
    code, output = promtool_check({"check:broken": "sum(rate(interlock_txn_total[5m])"}, tmp_path)
    assert code != 0
    assert "check:broken" in output or "parse error" in output


def test_dashboards_use_only_catalogue_metrics() -> None:
    # ... or series a recording rule of prometheus/rules/ writes from them.
    allowed = series_names(catalogue()) | set(recorded_inputs())
    for name, expr in dashboard_exprs().items():
        used = metric_names(expr)
        assert used, f"{name}: no metric in {expr!r}"
        assert used <= allowed, f"{name}: not in the catalogue: {used - allowed}"
    for query in variable_queries():
        metric = re.fullmatch(r"label_values\((\w+)(\{.*\})?, *\w+\)", query)
        assert metric and metric.group(1) in allowed, query


def test_dashboards_show_every_catalogue_metric() -> None:
    # Directly or through the recorded series a panel reads.
    inputs = recorded_inputs()
    shown = set().union(*(metric_names(e) for e in dashboard_exprs().values()))
    shown |= set().union(*(inputs.get(name, set()) for name in shown))
    for name, kind in catalogue().items():
        series = {name, f"{name}_bucket", f"{name}_count", f"{name}_sum"}
        assert shown & series, f"{name} ({kind}) is on no dashboard"


def test_metric_name_extraction() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (lock, le) (rate(interlock_lock_acquire_seconds_bucket"
        '{result="acquired", lock=~"a|b"}[5m]))) > 1 and on (job) up offset 5m'
        " or vector(0) / ignoring (reason) group_left job:x:ratio_rate5m"
    )
    assert metric_names(expr) == {
        "interlock_lock_acquire_seconds_bucket",
        "up",
        "job:x:ratio_rate5m",
    }


def test_catalogue_matches_the_metrics_the_package_registers() -> None:
    # Every name of the catalogue (docs/metrics.md, else DESIGN.md) with its type is
    # exactly what interlock.metrics.Metrics registers, so dashboards and alerts built
    # on the catalogue query series that exist.
    from interlock.metrics import Metrics

    registry = CollectorRegistry()
    Metrics(registry)
    registered = {}
    for family in registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        registered[name] = family.type
    expected = catalogue()
    source = METRICS_DOC.name if METRICS_DOC.exists() else "DESIGN.md's table"
    assert set(registered) == set(expected), f"catalogue ({source}) and package differ"
    for name, kind in expected.items():
        if kind:
            assert registered[name] == kind, name
