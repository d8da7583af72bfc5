"""A live run: `interlock demo` under load, scraped by a real Prometheus, queried as Grafana would.

:func:`live_run` starts the demo (its load generator on, ``mem://`` backend, JSON lines to
a file) and Prometheus (``/usr/bin/prometheus``, scraping the demo every second, the
repository's rule files loaded, evaluated every second). While Prometheus gathers
samples, the test drives a few requests of its own, so that rare paths have data too: an
order the stock cannot cover (a 2PC abort, reason ``vote_no``), an unknown path (404,
``__unmatched__``), a catalogue read with a query string and caller-chosen request and
trace ids. Once Prometheus holds :data:`MIN_SCRAPES` successful scrapes (polled on its
HTTP API, bounded by :data:`READY_WITHIN`), every dashboard query (Grafana variables
substituted, see :func:`substitute`), every variable query and every rule expression is
evaluated through ``/api/v1/query``; for each that returns nothing, the vector selectors
that select nothing are recorded. Then the demo is stopped with SIGINT (its log file is
complete once it exits) and Prometheus is stopped. Everything is kept in a
:class:`LiveRun` for the tests to assert on; no process outlives the fixture.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from ._support import (
    RULE_FILES,
    dashboards,
    metric_names,
    prometheus_targets,
    rules,
    tool,
)

JOB = "interlock"
SCRAPE_INTERVAL = "1s"
MIN_SCRAPES = 15  # successful scrapes before querying: ~15 s of data
READY_WITHIN = 60.0  # seconds for the demo and Prometheus to start and gather them
# Grafana's $__rate_interval is max($__interval + scrape interval, 4 x scrape interval);
# with 1 s scrapes and the ~15 s of data held, a 15 s window is what a panel would use.
RATE_INTERVAL = "15s"
RANGE = "1m"  # $__range: the data held is shorter than any dashboard time range
ORDER_TOO_BIG = {"sku": "sku-19", "qty": 1_000_000}  # more than the stock: vote_no
REQUEST_ID = "live-test-request-0001"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
SECRET_QUERY = "page=2&token=s3cr3t"


@dataclass
class Result:
    """One evaluated expression."""

    expr: str
    status: str
    error: str = ""
    result_type: str = ""
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)  # selectors that select nothing

    @property
    def has_data(self) -> bool:
        """At least one finite value (Grafana draws nothing for NaN)."""
        return any(math.isfinite(value) for _, value in self.samples)


@dataclass
class LiveRun:
    demo_url: str
    instance: str
    at: float  # evaluation time (Unix seconds)
    scrapes: int
    dashboard_results: dict[tuple[str, str, str, str], Result]  # (file, panel, ref, mode)
    variable_values: dict[tuple[str, str], list[str]]  # (file, variable) -> values
    rule_results: dict[str, Result]  # alert or record name -> its expression
    recorded: dict[str, Result]  # record name -> the series it wrote
    rules_api: list[dict[str, Any]]  # /api/v1/rules, every rule
    targets: list[dict[str, Any]]  # /api/v1/targets, active
    exemplars: list[dict[str, Any]]  # /api/v1/query_exemplars for the HTTP histogram
    exposition: str  # the demo's /metrics (Prometheus text format)
    driven: Counter[str]  # requests the test sent, by "<status> <path>"
    demo_exit: int | None
    demo_output: str
    log_lines: list[dict[str, Any]]
    timings: dict[str, float]


# ---------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return "(no output)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _stop(proc: subprocess.Popen[bytes], sig: int, wait: float) -> int | None:
    """Send ``sig``; kill after ``wait`` seconds. The exit code, ``None`` if killed."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            return proc.wait(wait)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            return None
    return proc.returncode


def start_demo(tmp: Path) -> tuple[subprocess.Popen[bytes], str, Path, Path]:
    """``interlock demo`` on a free port; returns (process, base URL, log file, stderr)."""
    log_file, output = tmp / "demo.jsonl", tmp / "demo.out"
    args = [
        sys.executable, "-m", "interlock.cli", "demo", "--port", "0", "--duration", "180",
        "--log-file", str(log_file), "--rate", "150",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTERLOCK_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with output.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + READY_WITHIN / 2
    while time.monotonic() < deadline and proc.poll() is None:
        found = re.search(r"shop on (http://[\d.]+:\d+)", output.read_text(errors="replace"))
        if found:
            return proc, found.group(1), log_file, output
        time.sleep(0.05)  # polling the demo's banner
    _stop(proc, signal.SIGKILL, 5)
    pytest.fail(f"interlock demo did not start:\n{_tail(output)}", pytrace=False)


def start_prometheus(tmp: Path, target: str) -> tuple[subprocess.Popen[bytes], str, Path]:
    """Prometheus scraping ``target`` as job ``interlock`` with the repository's rules."""
    binary = tool("prometheus")
    config = {
        "global": {
            "scrape_interval": SCRAPE_INTERVAL,
            "scrape_timeout": SCRAPE_INTERVAL,
            "evaluation_interval": SCRAPE_INTERVAL,
        },
        "rule_files": [str(path) for path in RULE_FILES],
        "scrape_configs": [
            {"job_name": JOB, "metrics_path": "/metrics",
             "static_configs": [{"targets": [target]}]},
        ],
    }  # fmt: skip
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    output = tmp / "prometheus.out"
    for _attempt in range(3):  # the free port may be taken meanwhile: try another
        port = free_port()
        args = [
            binary,
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--enable-feature=exemplar-storage",
            "--log.level=warn",
        ]
        with output.open("wb") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + READY_WITHIN / 2
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                    return proc, url, output
            except httpx.HTTPError:
                pass
            time.sleep(0.1)  # polling the readiness endpoint
        _stop(proc, signal.SIGKILL, 5)
        if "address already in use" not in output.read_text(errors="replace"):
            break
    pytest.fail(f"prometheus did not become ready:\n{_tail(output)}", pytrace=False)


# ---------------------------------------------------------------------------- PromQL


def substitute(expr: str, values: dict[str, str]) -> str:
    """A dashboard query with Grafana's variables replaced, failing on unknown ones."""
    expr = expr.replace("$__rate_interval", RATE_INTERVAL).replace("$__range", RANGE)
    expr = expr.replace("$__interval", SCRAPE_INTERVAL)

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise AssertionError(f"unknown variable ${name} in {expr!r}")
        return values[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def regex_value(value: str) -> str:
    """A variable value as Grafana puts it into ``=~"..."``: regex-escaped, PromQL-quoted."""
    return re.escape(value).replace("\\", "\\\\")


def selectors(expr: str) -> list[str]:
    """The vector selectors of an expression (metric name with its label matchers)."""
    found = []
    for name in sorted(metric_names(expr)):
        for match in re.finditer(rf"(?<![\w:]){re.escape(name)}(?![\w:])(\s*\{{[^}}]*\}})?", expr):
            found.append(name + (match.group(1) or "").strip())
    return sorted(set(found))


class PrometheusAPI:
    def __init__(self, url: str) -> None:
        self.url = url
        self.client = httpx.Client(base_url=url, timeout=10)

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        response = self.client.get(path, params=params)
        try:
            body: dict[str, Any] = response.json()
        except json.JSONDecodeError:
            body = {"status": "error", "error": response.text}
        return body

    def query(self, expr: str, at: float | None = None) -> Result:
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        body = self.get("/api/v1/query", **params)
        result = Result(expr, body.get("status", "error"), body.get("error", ""))
        if result.status == "success":
            data = body["data"]
            result.result_type = data["resultType"]
            if data["resultType"] in ("vector", "matrix"):
                for item in data["result"]:
                    values = [item["value"]] if "value" in item else item["values"]
                    for _, value in values:
                        result.samples.append((item["metric"], float(value)))
            elif data["resultType"] == "scalar":
                result.samples.append(({}, float(data["result"][1])))
        return result

    def evaluate(self, expr: str, at: float) -> Result:
        """``expr`` at ``at``; when it has no data, which of its selectors select nothing."""
        result = self.query(expr, at)
        if result.status == "success" and not result.has_data:
            for selector in selectors(expr):
                if not self.query(f"count({selector})", at).samples:
                    result.absent.append(selector)
        return result

    def scalar(self, expr: str) -> float:
        result = self.query(expr)
        return result.samples[0][1] if result.samples else 0.0

    def close(self) -> None:
        self.client.close()


def variable_query(api: PrometheusAPI, definition: str, at: float) -> list[str]:
    """Grafana's ``label_values(selector, label)`` via the label values API."""
    match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", definition)
    assert match, definition
    selector, label = match.groups()
    body = api.get(
        f"/api/v1/label/{label}/values",
        **{"match[]": selector, "start": f"{at - 300:.3f}", "end": f"{at:.3f}"},
    )
    assert body.get("status") == "success", (definition, body)
    return sorted(body["data"])


# ---------------------------------------------------------------------------- the run


def drive(client: httpx.Client, driven: Counter[str]) -> None:
    """The requests the load generator does not send, for panels that need them."""
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/orders", {"json": ORDER_TOO_BIG}),
        ("GET", "/no-such-page", {}),
        ("GET", f"/products?{SECRET_QUERY}",
         {"headers": {"x-request-id": REQUEST_ID, "traceparent": TRACEPARENT}}),
    ]  # fmt: skip
    for method, path, options in requests:
        try:
            response = client.request(method, path, **options)
        except httpx.HTTPError as exc:
            driven[f"{type(exc).__name__} {path}"] += 1
        else:
            driven[f"{response.status_code} {path}"] += 1


def _dashboard_values(board: dict[str, Any], mode: str, job: str, instance: str) -> dict[str, str]:
    values = {}
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            values[var["name"]] = var.get("allValue") or ".*"
        else:
            values[var["name"]] = str(var.get("current", {}).get("value", ""))
    if mode == "selected":
        values["job"], values["instance"] = regex_value(job), regex_value(instance)
    return values


def collect(api: PrometheusAPI, instance: str) -> dict[str, Any]:
    """Evaluate everything the dashboards and rules ask of Prometheus, at one instant."""
    at = time.time()
    out: dict[str, Any] = {"at": at}
    variables: dict[tuple[str, str], list[str]] = {}
    results: dict[tuple[str, str, str, str], Result] = {}
    for name, board in dashboards().items():
        for mode in ("all", "selected"):
            values = _dashboard_values(board, mode, JOB, instance)
            if mode == "all":
                for var in board["templating"]["list"]:
                    if var["type"] == "query":
                        query = substitute(var["definition"], values)
                        variables[(name, var["name"])] = variable_query(api, query, at)
            for panel, target in prometheus_targets(board):
                expr = substitute(target["expr"], values)
                key = (name, panel["title"], target["refId"], mode)
                results[key] = api.evaluate(expr, at)
    rule_results, recorded = {}, {}
    for rule in rules():
        name = rule.get("alert") or rule["record"]
        rule_results[name] = api.evaluate(rule["expr"], at)
        if "record" in rule:
            recorded[name] = api.evaluate(f'{name}{{job="{JOB}"}}', at)
    out.update(variable_values=variables, dashboard_results=results)
    out.update(rule_results=rule_results, recorded=recorded)
    groups = api.get("/api/v1/rules")["data"]["groups"]
    out["rules_api"] = [rule for group in groups for rule in group["rules"]]
    out["targets"] = api.get("/api/v1/targets")["data"]["activeTargets"]
    exemplars = api.get(
        "/api/v1/query_exemplars",
        query=f'interlock_http_request_duration_seconds_bucket{{job="{JOB}"}}',
        start=f"{at - 300:.3f}",
        end=f"{at:.3f}",
    )
    assert exemplars.get("status") == "success", exemplars
    out["exemplars"] = [e for series in exemplars["data"] for e in series["exemplars"]]
    return out


def live_run(tmp: Path) -> LiveRun:
    timings: dict[str, float] = {}
    began = time.monotonic()
    demo, demo_url, log_file, demo_output = start_demo(tmp)
    prometheus: subprocess.Popen[bytes] | None = None
    api: PrometheusAPI | None = None
    driven: Counter[str] = Counter()
    demo_exit: int | None = None
    try:
        timings["demo started"] = time.monotonic() - began
        instance = demo_url.removeprefix("http://")
        prometheus, prometheus_url, prometheus_output = start_prometheus(tmp, instance)
        timings["prometheus ready"] = time.monotonic() - began
        api = PrometheusAPI(prometheus_url)
        scrapes = 0.0
        with httpx.Client(base_url=demo_url, timeout=5) as client:
            deadline = time.monotonic() + READY_WITHIN
            while True:
                drive(client, driven)
                scrapes = api.scalar(f'sum_over_time(up{{job="{JOB}"}}[5m])')
                if scrapes >= MIN_SCRAPES and api.scalar(f'up{{job="{JOB}"}}') == 1:
                    break
                if time.monotonic() > deadline or demo.poll() is not None:
                    pytest.fail(
                        f"{scrapes:.0f}/{MIN_SCRAPES} scrapes after {READY_WITHIN:.0f} s\n"
                        f"demo:\n{_tail(demo_output)}\nprometheus:\n{_tail(prometheus_output)}",
                        pytrace=False,
                    )
                time.sleep(0.25)  # polling Prometheus for more scrapes
            timings["scraped"] = time.monotonic() - began
            exposition = client.get("/metrics").text
        collected = collect(api, instance)
        timings["evaluated"] = time.monotonic() - began
    finally:
        if api is not None:
            api.close()
        demo_exit = _stop(demo, signal.SIGINT, 20)
        if prometheus is not None:
            _stop(prometheus, signal.SIGTERM, 10)
    timings["stopped"] = time.monotonic() - began
    lines = [json.loads(line) for line in log_file.read_text(encoding="utf-8").splitlines()]
    return LiveRun(
        demo_url=demo_url,
        instance=instance,
        scrapes=int(scrapes),
        driven=driven,
        exposition=exposition,
        demo_exit=demo_exit,
        demo_output=demo_output.read_text(errors="replace"),
        log_lines=lines,
        timings=timings,
        **collected,
    )
