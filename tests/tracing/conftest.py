"""Fixtures of the tracing tests: a real SDK provider with an in-memory exporter.

Providers are passed explicitly (``Interlock(..., tracer_provider=...)``, the OpenTelemetry
middleware's ``tracer_provider=``): the global provider can be set once per process, so
the tests never touch it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


class Spans:
    """The spans a provider finished, by name, with their tree."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    @property
    def finished(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.finished if s.name == name]

    def one(self, name: str) -> ReadableSpan:
        found = self.named(name)
        assert len(found) == 1, f"{name}: {[s.name for s in self.finished]}"
        return found[0]

    def parent_of(self, span: ReadableSpan) -> ReadableSpan | None:
        if span.parent is None:
            return None
        for other in self.finished:
            if other.context.span_id == span.parent.span_id:
                return other
        return None

    def tree(self) -> set[tuple[str, str | None]]:
        """``(name, parent name)`` of every finished span (``None``: a root or remote)."""
        out = set()
        for span in self.finished:
            parent = self.parent_of(span)
            out.add((span.name, parent.name if parent is not None else None))
        return out

    def attrs(self, name: str) -> dict[str, Any]:
        return dict(self.one(name).attributes or {})


@pytest.fixture
def spans() -> Iterator[Spans]:
    found = Spans()
    yield found
    found.provider.shutdown()


@pytest.fixture
def namespace() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture(
    params=[
        pytest.param("mem", id="mem"),
        pytest.param("redis", id="redis", marks=pytest.mark.redis),
    ]
)
def url(request: pytest.FixtureRequest) -> str:
    """``mem://`` and the session's real Redis."""
    if request.param == "mem":
        return "mem://"
    return str(request.getfixturevalue("redis_url"))


def hex_ids(span: ReadableSpan) -> tuple[str, str]:
    return format(span.context.trace_id, "032x"), format(span.context.span_id, "016x")
