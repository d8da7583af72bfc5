"""The log lines `interlock demo` really wrote (--log-file of the live run in _live.py)
against everything that reads them: the Logstash pipeline, the index template, the Kibana
objects and the Grafana log tables.

A healthy demo writes no lock-lost event and, with luck, no failing request; the fields
only those lines carry (:data:`EVENT_ONLY`) are checked on lines the same package writes
in this process when the event is provoked for real: a lease that expires, a handler that
raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import re
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import httpx
import pytest

from interlock import AsyncInterlock, Interlock, InterlockMiddleware
from interlock.logs import configure_logging, unconfigure_logging

from ._live import REQUEST_ID, SECRET_QUERY, TRACEPARENT, LiveRun
from ._support import (
    LOGGING_DOC,
    ROOT,
    dashboards,
    kibana_objects,
    panels,
    referenced_log_fields,
    search_source,
    template_mappings,
    transit_log_fields,
)

# Referenced fields a healthy demo may never write, and the lines that carry them.
EVENT_ONLY = {
    "interlock.lock.key": "lock-lost events",
    "interlock.lock.reason": "lock-lost events",
    "error.type": "failed requests and events",
    "error.message": "failed requests and events",
}
BASE_FIELDS = {"@timestamp", "log.level", "message", "log.logger", "ecs.version", "service.name"}


def fields_of(lines: Iterable[dict[str, Any]]) -> set[str]:
    return set().union(*(line.keys() for line in lines))


@pytest.fixture(scope="module")
def provoked(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Lines interlock writes for events a healthy demo does not have: a lease lost
    (expired) and a request whose handler raised."""
    path = tmp_path_factory.mktemp("events") / "events.jsonl"
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    with path.open("w", encoding="utf-8") as stream:
        configure_logging("interlock-demo", stream=stream)
        try:
            with Interlock("mem://", namespace="demo") as il:
                lease = il.lock("inventory", "sku-0", ttl=0.05, auto_renew=False).acquire()
                assert lease is not None
                deadline = time.monotonic() + 10
                while not lease.lost and time.monotonic() < deadline:
                    time.sleep(0.01)  # polling the lease, which notices its expiry
                with contextlib.suppress(Exception):
                    lease.release()

            async def failing(scope: Any, receive: Any, send: Any) -> None:
                raise RuntimeError("database unreachable")

            async def request() -> None:
                async with AsyncInterlock("mem://", namespace="demo") as ail:
                    app = InterlockMiddleware(failing, interlock=ail)
                    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
                    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                        assert (await c.post("/orders")).status_code == 500

            asyncio.run(request())  # a sync, module-scoped fixture: it runs its own loop
        finally:
            unconfigure_logging()
            root.handlers[:] = handlers
            root.setLevel(level)
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_the_demo_wrote_one_json_line_per_request(live: LiveRun) -> None:
    requests = [line for line in live.log_lines if line["log.logger"] == "interlock.http"]
    served = sum(
        float(value)
        for value in re.findall(
            r"^interlock_http_requests_total\{[^}]*\} (\S+)$", live.exposition, re.MULTILINE
        )
    )
    # /metrics was read before the demo stopped; requests went on until then.
    assert served > 500 and len(requests) >= served
    for line in live.log_lines:
        assert line.keys() >= BASE_FIELDS, line
        assert line["service.name"] == "interlock-demo"


def test_every_field_logstash_kibana_and_grafana_read_is_written(
    live: LiveRun, provoked: list[dict[str, Any]]
) -> None:
    referenced = referenced_log_fields()
    required = set(referenced) - transit_log_fields()
    written = fields_of(live.log_lines)
    missing = required - written
    assert missing <= set(EVENT_ONLY), {f: sorted(referenced[f]) for f in missing - set(EVENT_ONLY)}
    assert set(EVENT_ONLY) <= required, "EVENT_ONLY lists a field nothing reads"
    not_even_on_events = missing - fields_of(provoked)
    assert not not_even_on_events, {f: sorted(referenced[f]) for f in not_even_on_events}


def test_provoked_events_are_the_lines_kibana_and_grafana_look_for(
    provoked: list[dict[str, Any]],
) -> None:
    (lost,) = [line for line in provoked if line.get("event.action") == "lock-lost"]
    assert lost["interlock.lock.name"] == "inventory"
    assert lost["interlock.lock.key"] == "sku-0"
    assert lost["interlock.lock.reason"] == "expired"
    assert isinstance(lost["interlock.lock.fence"], int)
    (failed,) = [line for line in provoked if line.get("http.response.status_code") == 500]
    assert failed["error.type"] == "RuntimeError"
    assert failed["error.message"] == "database unreachable"
    assert failed["log.level"] == "error"


def _compatible(value: Any, kind: str) -> bool:
    """Whether Elasticsearch indexes ``value`` under a field mapped as ``kind``."""
    if value is None:
        return True  # null: indexed as "no value" whatever the type
    if kind in ("keyword", "wildcard", "match_only_text", "text", "constant_keyword"):
        return isinstance(value, str)
    if kind == "long":
        return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63
    if kind in ("float", "double", "scaled_float"):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "ip":
        try:
            ipaddress.ip_address(value)
        except ValueError:
            return False
        return True
    if kind == "date":
        try:
            datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return False
        return True
    raise AssertionError(f"mapping type {kind} not handled by this test")


def test_the_lines_index_under_the_template_mappings(
    live: LiveRun, provoked: list[dict[str, Any]]
) -> None:
    # A value Elasticsearch cannot index under the template's type is a 400 for the
    # whole line (document_parsing_exception): the line would be lost.
    mappings = template_mappings()
    bad: dict[str, Any] = {}
    for line in [*live.log_lines, *provoked]:
        for name, kind in mappings.items():
            if name in line and not _compatible(line[name], kind):
                bad.setdefault(f"{name} ({kind})", line[name])
    assert not bad, bad
    # ... and no line has a value where the template expects an object, or vice versa.
    for line in live.log_lines:
        for name in line:
            assert not any(other.startswith(name + ".") for other in mappings), name


def test_event_actions_searched_for_are_written_by_the_package_and_documented() -> None:
    queries = [
        search_source(o)["query"]["query"] for o in kibana_objects() if o["type"] == "search"
    ]
    queries += [
        panel["targets"][0]["query"]
        for board in dashboards().values()
        for panel in panels(board)
        if panel["datasource"]["type"] == "elasticsearch"
    ]
    actions = set()
    for query in queries:
        for match in re.finditer(r"event\.action:\s*(\([^)]*\)|\"[^\"]*\")", query):
            actions.update(re.findall(r'"([^"]+)"', match.group(1)))
    assert {"lock-lost", "txn-in-doubt", "cache-degraded"} <= actions
    source = "\n".join(p.read_text() for p in (ROOT / "middleware/interlock").rglob("*.py"))
    documented = LOGGING_DOC.read_text(encoding="utf-8")
    for action in actions:
        assert f'"{action}"' in source, f"event.action {action!r}: no code writes it"
        assert f"`{action}`" in documented, f"event.action {action!r} is not in {LOGGING_DOC}"


def test_exemplar_trace_ids_lead_to_logged_requests(live: LiveRun) -> None:
    # Grafana opens Kibana's "log lines by trace id" from an exemplar's trace_id.
    logged = {line.get("trace.id") for line in live.log_lines}
    traces = {exemplar["labels"]["trace_id"] for exemplar in live.exemplars}
    assert traces and traces <= logged, sorted(traces - logged)[:5]


def test_caller_ids_and_secret_query_parameters_in_the_live_log(live: LiveRun) -> None:
    ours = [line for line in live.log_lines if line.get("http.request.id") == REQUEST_ID]
    assert ours
    trace, parent = TRACEPARENT.split("-")[1:3]
    for line in ours:
        assert line["trace.id"] == trace
        assert line["interlock.http.parent_span_id"] == parent
        assert line["url.query"] == SECRET_QUERY.replace("s3cr3t", "[REDACTED]")
    secret = SECRET_QUERY.rpartition("=")[2]
    assert not [line for line in live.log_lines if secret in json.dumps(line)]


def test_aborted_orders_are_logged_with_their_reason(live: LiveRun) -> None:
    aborted = [
        line
        for line in live.log_lines
        if line.get("interlock.http.route") == "/orders"
        and line.get("http.response.status_code") == 409
    ]
    assert aborted
    for line in aborted:
        assert line["interlock.txn.name"] == "checkout"
        assert line["interlock.txn.outcome"] == "aborted"
        assert line["interlock.txn.reason"] == "vote_no"
        assert re.fullmatch(r"\S+", line["interlock.txn.xid"])


def test_log_fields_are_read_from_the_schema_document() -> None:
    from ._support import LOG_FIELDS, documented_log_fields

    assert documented_log_fields() == LOG_FIELDS
    assert {"interlock.lock.key", "interlock.txn.reason", "event.dataset"} <= LOG_FIELDS
    assert transit_log_fields() == {"event.dataset"}
