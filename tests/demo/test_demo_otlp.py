"""The demo's OTLP export (``OTEL_TRACES_EXPORTER=otlp``), into a local OTLP/HTTP receiver.

The receiver answers ``POST /v1/traces`` as the OTLP/HTTP specification says (protobuf
``ExportTraceServiceRequest`` in, an empty ``ExportTraceServiceResponse`` out), so the
demo's spans are what Tempo would store; they must join the request log lines by trace id.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

# the test extra installs interlock[otlp], which brings these
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from interlock.cli import main


class _Receiver(ThreadingHTTPServer):
    requests: list[ExportTraceServiceRequest]


class _Handler(BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path != "/v1/traces" or self.headers["Content-Type"] != "application/x-protobuf":
            self.send_error(404)
            return
        self.server.requests.append(ExportTraceServiceRequest.FromString(body))
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    server = _Receiver(("127.0.0.1", 0), _Handler)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_demo_exports_spans_that_join_its_log_lines(
    receiver: _Receiver,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    endpoint = f"http://127.0.0.1:{receiver.server_address[1]}"
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "interlock-demo-test")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "200")
    log = tmp_path / "demo.log"
    argv = ["demo", "--duration", "3", "--port", "0", "--log-file", str(log), "--rate", "60"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert f"tracing: OTLP/HTTP to {endpoint}/v1/traces" in err

    # The demo shuts its provider down before it returns: every span has been exported.
    assert receiver.requests
    services, spans = set(), []
    for request in receiver.requests:
        for resource_spans in request.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            services.add(attributes["service.name"])
            spans += [s for scope in resource_spans.scope_spans for s in scope.spans]
    assert services == {"interlock-demo-test"}
    names = {s.name for s in spans}
    assert {"interlock.lock.acquire", "interlock.cache.get_or_load", "interlock.txn"} <= names
    # OpenTelemetry's ASGI middleware is the root of each request (kind SERVER = 2);
    # /metrics is not traced.
    roots = [s for s in spans if not s.parent_span_id]
    assert any(s.kind == 2 for s in roots)
    assert not any("/metrics" in s.name for s in spans)

    # Logs <-> traces: every request line's trace.id is an exported trace (Grafana's
    # Tempo -> Elasticsearch link and back, docs/tracing.md).
    traced = {s.trace_id.hex() for s in spans}
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    requests = [r for r in lines if r.get("log.logger") == "interlock.http"]
    assert len(requests) > 20
    logged = {r["trace.id"] for r in requests if r.get("url.path") != "/metrics"}
    assert logged and logged <= traced, sorted(logged - traced)[:5]


def test_demo_tracing_is_off_by_default(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    assert main(["demo", "--duration", "1", "--port", "0", "--log-file", "none", "--no-load"]) == 0
    assert "tracing: off (OTEL_TRACES_EXPORTER=otlp exports spans" in capsys.readouterr().err
