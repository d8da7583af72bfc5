"""A real Prometheus scrapes `interlock demo` under load; every dashboard query, variable
query, recording rule and alert rule is evaluated against what it gathered (see _live.py).

A query must succeed and return data. The only exception is a query whose every missing
input is a metric in :data:`QUIET`: series that a healthy run legitimately never creates
(a lost lease, an in-doubt transaction). For those, the demo's /metrics must still declare
the metric, so the panel shows data as soon as the event happens.
"""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

from ._live import JOB, MIN_SCRAPES, ORDER_TOO_BIG, SECRET_QUERY, LiveRun, Result
from ._support import catalogue, metric_names, rules

# Metrics without series in a healthy demo, and why.
QUIET = {
    "interlock_lock_lost_total": "no lease is lost in a healthy run",
    "interlock_txn_in_doubt": "no transaction is left in doubt (no series until one is)",
    "interlock_txn_recovered_total": "nothing is left to recover",
    "interlock_label_overflow_total": "no label reaches the cardinality cap",
    "interlock_chaos_injected_total": "no fault is injected",
}
TIME_BUDGET = 60.0  # seconds for the whole live run, on a loaded 2-core machine


def quiet_reason(result: Result) -> str | None:
    """Why ``result`` may be empty, or ``None`` when it may not."""
    if not result.absent:
        return None  # every input has series: the query itself loses them
    names = [next(iter(metric_names(selector))) for selector in result.absent]
    if all(name in QUIET for name in names):
        return "; ".join(QUIET[name] for name in names)
    return None


def declared(exposition: str) -> dict[str, str]:
    """Metric name -> type from the ``# TYPE`` lines of a Prometheus text exposition."""
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", exposition, re.MULTILINE))


def test_the_run_stayed_within_its_bounds(live: LiveRun) -> None:
    assert live.timings["stopped"] < TIME_BUDGET, live.timings
    assert live.demo_exit == 0, f"demo exit {live.demo_exit}:\n{live.demo_output[-2000:]}"
    assert live.scrapes >= MIN_SCRAPES
    (target,) = [t for t in live.targets if t["labels"]["job"] == JOB]
    assert target["health"] == "up" and target["lastError"] == ""
    assert target["labels"]["instance"] == live.instance
    # The requests the test added were answered as the panels expect.
    assert set(live.driven) == {
        "409 /orders", "404 /no-such-page", f"200 /products?{SECRET_QUERY}",
    }, (live.driven, ORDER_TOO_BIG)  # fmt: skip


def test_every_dashboard_query_is_valid_and_returns_data(live: LiveRun) -> None:
    failures = []
    quiet = 0
    for (board, panel, ref, mode), result in live.dashboard_results.items():
        where = f"{board} / {panel} [{ref}] ({mode})"
        if result.status != "success":
            failures.append(f"{where}: {result.error}\n    {result.expr}")
        elif not result.has_data:
            if quiet_reason(result) is None:
                absent = ", ".join(result.absent) or "none: the expression drops them"
                failures.append(f"{where}: no data; inputs without series: {absent}")
            else:
                quiet += 1
    assert not failures, "\n".join(failures)
    assert len(live.dashboard_results) > 80  # every target, with variables at All and set
    assert quiet <= len(live.dashboard_results) // 5, "most panels must show data"


def test_every_panel_query_returns_a_series_in_a_healthy_run(live: LiveRun) -> None:
    # Grafana shows "No data" for a query without series, where the truth is 0: every
    # panel query must return a series, quiet metrics included (`or vector(0)` in the
    # generator where a series cannot exist yet).
    empty = sorted(
        f"{board} / {panel} [{ref}] ({mode}): {result.expr}"
        for (board, panel, ref, mode), result in live.dashboard_results.items()
        if result.status == "success" and not result.has_data
    )
    assert not empty, "no series (Grafana: No data):\n" + "\n".join(empty)


def test_quiet_metrics_are_declared_by_the_demo_and_really_quiet(live: LiveRun) -> None:
    # Read on the demo's /metrics: the panels add a 0 where these have no series, so the
    # query results no longer show which inputs were missing. A gauge the recovery worker
    # set back to 0 (an order prepared during a pass) is quiet all the same.
    types = declared(live.exposition)
    values: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(live.exposition):
        for sample in family.samples:
            values.setdefault(sample.name, []).append(sample.value)
    for name, why in QUIET.items():
        assert name in types, f"{name} ({why}) is not declared on the demo's /metrics"
        assert types[name] == catalogue()[name]
        seen = [v for v in values.get(name, []) if v != 0]
        assert not seen, f"{name} has non-zero series now ({seen}): remove it from QUIET"


def test_the_demo_exposes_every_catalogue_metric(live: LiveRun) -> None:
    types = declared(live.exposition)
    for name, kind in catalogue().items():
        assert types.get(name) == kind, f"{name}: {types.get(name)} on /metrics, {kind} listed"


def test_every_rule_is_loaded_and_evaluates_without_error(live: LiveRun) -> None:
    names = [rule.get("alert") or rule["record"] for rule in rules()]
    assert sorted(r["name"] for r in live.rules_api) == sorted(names)
    for rule in live.rules_api:
        assert rule["health"] == "ok" and not rule.get("lastError"), rule
    for name, result in live.rule_results.items():
        assert result.status == "success", f"{name}: {result.error}"


def test_recording_rules_write_series(live: LiveRun) -> None:
    failures = []
    for name, result in live.recorded.items():
        inputs = live.rule_results[name]
        if not result.has_data and quiet_reason(inputs) is None:
            failures.append(f"{name}: no series; inputs without series: {inputs.absent}")
    assert not failures, "\n".join(failures)


def test_alert_expressions_run_on_the_recorded_series(live: LiveRun) -> None:
    # An alert on a recording rule that writes nothing would never fire: every series an
    # alert selects must exist, unless it is quiet.
    for rule in rules():
        if "alert" not in rule:
            continue
        result = live.rule_results[rule["alert"]]
        for selector in result.absent:
            name = next(iter(metric_names(selector)))
            assert name in QUIET, f"{rule['alert']}: {selector} selects nothing"


def test_dashboard_variables_list_what_the_demo_serves(live: LiveRun) -> None:
    values = {}
    for (board, variable), found in live.variable_values.items():
        assert found, f"{board}: ${variable} lists nothing"
        values.setdefault(variable, set()).update(found)
    assert values["job"] == {JOB}
    assert values["instance"] == {live.instance}
    assert {"/orders", "/products", "/inventory/{sku}/reserve", "__unmatched__"} <= values["route"]
    assert "inventory" in values["lock"]
    assert values["lock"] <= {"inventory", "txn-recovery"}  # + the recovery worker (default)
    assert {"checkout", "restock"} <= values["txn"]
    assert {"http", "http-products"} <= values["cache"]


def test_latency_exemplars_carry_trace_ids(live: LiveRun) -> None:
    assert live.exemplars, "no exemplars on interlock_http_request_duration_seconds"
    for exemplar in live.exemplars:
        assert re.fullmatch(r"[0-9a-f]{32}", exemplar["labels"]["trace_id"]), exemplar
