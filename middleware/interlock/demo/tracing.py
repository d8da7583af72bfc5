"""The demo's OpenTelemetry setup: spans exported over OTLP/HTTP, off unless asked for.

``OTEL_TRACES_EXPORTER=otlp`` turns it on (the compose stack sets it); the rest is the
SDK's standard environment: ``OTEL_EXPORTER_OTLP_ENDPOINT`` (default
``http://localhost:4318``), ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_TRACES_SAMPLER``. It needs ``pip install 'interlock[otlp]'``; without it, or when a
tracer provider is already configured (``opentelemetry-instrument``), the demo says so and
runs without its own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

EXTRA = "pip install 'interlock[otlp]'"


@dataclass
class DemoTracing:
    """An SDK tracer provider with an OTLP exporter, given to the demo's ``AsyncInterlock``.

    Attributes:
        provider: the ``TracerProvider``.
        endpoint: where spans go (shown in the banner).
    """

    provider: Any
    endpoint: str

    def wrap(self, app: Any) -> Any:
        """``app`` inside OpenTelemetry's ASGI middleware, when installed: a server span per
        request, parent of interlock's spans and the source of the log line's ``trace.id``.
        """
        try:
            from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
        except ImportError:
            return app
        return OpenTelemetryMiddleware(
            app,
            excluded_urls="/metrics",  # Prometheus' scrapes are not requests worth a trace
            tracer_provider=self.provider,
            exclude_spans=["receive", "send"],
        )

    def shutdown(self) -> None:
        """Export what is buffered, then stop the exporter."""
        self.provider.shutdown()


def configure() -> tuple[DemoTracing | None, str]:
    """The demo's tracer provider per ``os.environ``, and a line saying what was done."""
    env = os.environ
    exporters = {e.strip() for e in env.get("OTEL_TRACES_EXPORTER", "").split(",")}
    if "otlp" not in exporters or env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None, "off (OTEL_TRACES_EXPORTER=otlp exports spans, docs/tracing.md)"
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        return None, f"off: OTEL_TRACES_EXPORTER=otlp needs {EXTRA} ({exc.name} is missing)"
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return None, "the tracer provider already configured in this process"
    # The SDK reads OTEL_SERVICE_NAME/OTEL_RESOURCE_ATTRIBUTES and the OTLP variables itself.
    service = {} if "OTEL_SERVICE_NAME" in env else {"service.name": "interlock-demo"}
    provider = TracerProvider(resource=Resource.create(service))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    endpoint = env.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318").rstrip("/") + "/v1/traces",
    )
    return DemoTracing(provider, endpoint), f"OTLP/HTTP to {endpoint}"
