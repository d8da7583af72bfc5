"""Probes and alert readers of an experiment: Prometheus, an app's /metrics, HTTP, commands.

Stdlib HTTP only (``urllib``), so ``interlock chaos`` needs no extra. A probe never raises:
it returns a :class:`ProbeResult` whose ``detail`` says what was seen.
"""

from __future__ import annotations

import json
import operator
import re
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from interlock.chaos._experiment import Probe

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge,
}  # fmt: skip
_SELECTOR = re.compile(r"^\s*([a-zA-Z_:][\w:]*)\s*(?:\{(.*)\})?\s*$")
_MATCHER = re.compile(r'\s*([a-zA-Z_]\w*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    detail: str


class ProbeError(Exception):
    """A probe could not be evaluated (unreachable, bad reply)."""


def http_get(url: str, timeout: float, method: str = "GET") -> tuple[int, bytes]:
    """Status and body of one request (an HTTP error status is an answer, not an error)."""
    if not url.startswith(("http://", "https://")):
        raise ProbeError(f"{url!r} is not an http:// or https:// URL")
    request = urllib.request.Request(url, method=method)  # noqa: S310 - scheme checked
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())
    except (OSError, ValueError) as exc:
        raise ProbeError(f"{type(exc).__name__}: {exc}") from exc


def get_json(url: str, timeout: float = 5.0) -> Any:
    status, body = http_get(url, timeout)
    try:
        data = json.loads(body)
    except ValueError:
        raise ProbeError(f"{url}: HTTP {status}, not JSON") from None
    if status != 200:
        raise ProbeError(f"{url}: HTTP {status}: {str(data)[:200]}")
    return data


def promql(prometheus: str, query: str, timeout: float = 5.0) -> list[float]:
    """The values of an instant query (a scalar as one value)."""
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    body = get_json(url, timeout)
    if body.get("status") != "success":
        raise ProbeError(f"query {query!r}: {body.get('error', body)}")
    data = body["data"]
    if data["resultType"] == "scalar":
        return [float(data["result"][1])]
    if data["resultType"] == "vector":
        return [float(item["value"][1]) for item in data["result"]]
    raise ProbeError(f"query {query!r} returned a {data['resultType']}, not a vector")


def parse_selector(text: str) -> tuple[str, dict[str, str]]:
    """``name{a="b", c="d"}`` -> (name, labels); equality matchers only."""
    match = _SELECTOR.match(text)
    if not match:
        raise ProbeError(f"metric {text!r} is not name{{label=\"value\", ...}}")
    name, body = match.group(1), match.group(2) or ""
    labels, end = {}, 0
    for m in _MATCHER.finditer(body):
        if m.start() != end:
            break
        labels[m.group(1)] = m.group(2).replace('\\"', '"')
        end = m.end()
    if body[end:].strip():
        raise ProbeError(f"metric {text!r}: only label=\"value\" matchers are supported")
    return name, labels


def scrape(url: str, metric: str, timeout: float = 5.0) -> list[float]:
    """Values of the samples of ``metric`` (a selector) on a Prometheus text endpoint."""
    name, labels = parse_selector(metric)
    status, body = http_get(url, timeout)
    if status != 200:
        raise ProbeError(f"{url}: HTTP {status}")
    values = []
    for family in text_string_to_metric_families(body.decode("utf-8", "replace")):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                values.append(float(sample.value))
    return values


def _compare(probe: Probe, values: list[float]) -> ProbeResult:
    if not values:
        if probe.empty is None:
            return ProbeResult(False, "no series")
        values = [probe.empty]
    ok = all(_COMPARE[probe.op](value, probe.threshold) for value in values)
    shown = ", ".join(f"{v:g}" for v in values[:5]) + (" ..." if len(values) > 5 else "")
    return ProbeResult(ok, f"{shown} {probe.op} {probe.threshold:g}: {ok}")


def evaluate(probe: Probe, prometheus: str) -> ProbeResult:
    """Run one probe now."""
    try:
        if probe.kind == "promql":
            if not prometheus:
                return ProbeResult(False, "no Prometheus URL (settings.prometheus or "
                                   "--prometheus)")  # fmt: skip
            return _compare(probe, promql(prometheus, probe.target, probe.timeout))
        if probe.kind == "metrics":
            return _compare(probe, scrape(probe.target, probe.metric, probe.timeout))
        if probe.kind == "http":
            status, _ = http_get(probe.target, probe.timeout, probe.method)
            return ProbeResult(status in probe.status, f"HTTP {status}")
        done = subprocess.run(  # noqa: S602 - the experiment's own command
            probe.target, shell=True, capture_output=True, timeout=probe.timeout, check=False
        )
        tail = (done.stdout + done.stderr).decode(errors="replace").strip()[-200:]
        return ProbeResult(done.returncode == 0, f"exit {done.returncode} {tail}".strip())
    except ProbeError as exc:
        return ProbeResult(False, str(exc))
    except subprocess.TimeoutExpired:
        return ProbeResult(False, f"timed out after {probe.timeout:g} s")


# ---------------------------------------------------------------------------- alerts


@dataclass(frozen=True)
class AlertState:
    name: str
    labels: dict[str, str]
    state: str  # "pending" or "firing"


def read_alerts(prometheus: str = "", alertmanager: str = "") -> list[AlertState]:
    """Active alerts: Alertmanager's ``/api/v2/alerts`` if given, else Prometheus's."""
    found = []
    if alertmanager:
        for item in get_json(f"{alertmanager}/api/v2/alerts?active=true&silenced=false"):
            labels = dict(item.get("labels", {}))
            state = "firing" if item.get("status", {}).get("state") == "active" else "pending"
            found.append(AlertState(labels.get("alertname", ""), labels, state))
        return found
    body = get_json(f"{prometheus}/api/v1/alerts")
    for item in body["data"]["alerts"]:
        labels = dict(item.get("labels", {}))
        found.append(AlertState(labels.get("alertname", ""), labels, str(item.get("state"))))
    return found
