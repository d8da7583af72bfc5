"""OpenTelemetry spans of locks, caches and transactions, when ``opentelemetry-api`` is there.

Pure: this module talks to the OpenTelemetry API and nothing else. The tools get a
:class:`Tracer` from their facade and open one span per operation::

    with tracer.span("interlock.lock.acquire", {"interlock.lock.name": name}) as span:
        ...
        span.set("interlock.lock.result", "acquired")

Without the API installed, or with no SDK configured (the global provider is still the
API's proxy) or with a no-op provider, :meth:`Tracer.span` returns a shared no-op context
manager and :meth:`Tracer.start` a shared no-op span: the tools pay an attribute check.
The span names and attributes are a contract, listed in docs/tracing.md.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from interlock import _context

try:  # the optional extra `otel`
    from opentelemetry import context as otel_context
    from opentelemetry import trace as otel_trace
    from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
except ImportError:  # pragma: no cover - exercised by installs without the extra
    otel_trace = None  # type: ignore[assignment]

AVAILABLE = otel_trace is not None  # opentelemetry-api is installed
_GLOBAL_SLOT = AVAILABLE and hasattr(otel_trace, "_TRACER_PROVIDER")
Attributes = Mapping[str, Any]
_VERSION = "0"
_HEX = frozenset("0123456789abcdef")


class Span:
    """One of our spans: attributes, events, links, error status; ignores use after end."""

    __slots__ = ("_ended", "_span")

    recording = True

    def __init__(self, span: Any) -> None:
        self._span = span
        self._ended = False

    def set(self, key: str, value: Any) -> None:
        """Set one attribute; ``None`` values are skipped."""
        if value is not None and not self._ended:
            self._span.set_attribute(key, value)

    def update(self, attributes: Attributes) -> None:
        """Set several attributes; ``None`` values are skipped."""
        if not self._ended:
            self._span.set_attributes({k: v for k, v in attributes.items() if v is not None})

    def event(self, name: str, attributes: Attributes | None = None) -> None:
        if not self._ended:
            self._span.add_event(name, dict(attributes or {}))

    def link(self, trace_id: str | None, span_id: str | None, attributes: Attributes) -> None:
        """Link to the span ``span_id`` of the trace ``trace_id`` (hex), if both are valid."""
        linked = span_context(trace_id, span_id)
        if linked is not None and not self._ended:
            self._span.add_link(linked, dict(attributes))

    def error(self, error: BaseException | str, description: str | None = None) -> None:
        """Mark the span failed: ``error.type`` (the exception's class or the ``error``
        string, low-cardinality), the exception event, status ERROR with ``description``."""
        if self._ended:
            return
        if isinstance(error, BaseException):
            self._span.set_attribute("error.type", type(error).__qualname__)
            self._span.record_exception(error)
            description = description or f"{type(error).__name__}: {error}"
        else:
            self._span.set_attribute("error.type", error)
        self._span.set_status(Status(StatusCode.ERROR, description))

    def end(self, error: BaseException | None = None) -> None:
        """End the span (once), failed with ``error`` if it is an :class:`Exception`."""
        if self._ended:
            return
        if isinstance(error, Exception):
            self.error(error)
        self._ended = True
        self._span.end()

    @property
    def ids(self) -> tuple[str, str]:
        """``(trace_id, span_id)`` in hex."""
        ctx = self._span.get_span_context()
        return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


class _NoSpan(Span):
    """The span of a disabled tracer: every call does nothing."""

    __slots__ = ()
    recording = False

    def __init__(self) -> None:
        self._span = None
        self._ended = True

    def set(self, key: str, value: Any) -> None:
        pass

    def update(self, attributes: Attributes) -> None:
        pass

    def error(self, error: BaseException | str, description: str | None = None) -> None:
        pass

    def end(self, error: BaseException | None = None) -> None:
        pass


NO_SPAN: Span = _NoSpan()


class _NoScope:
    """The context manager of a disabled tracer (shared, reentrant)."""

    __slots__ = ()

    def __enter__(self) -> Span:
        return NO_SPAN

    def __exit__(self, *exc_info: object) -> None:
        return None


_NO_SCOPE = _NoScope()


class Tracer:
    """interlock's spans through ``provider``, or the global provider the app configured.

    Args:
        provider: an OpenTelemetry ``TracerProvider``; ``None`` follows the global one
            (``opentelemetry.trace.set_tracer_provider``), read at each span so a provider
            configured after the facade was created is used.
    """

    __slots__ = ("_cached", "_provider")

    def __init__(self, provider: object | None = None) -> None:
        if provider is not None and (
            not AVAILABLE or not isinstance(provider, otel_trace.TracerProvider)
        ):
            raise TypeError(
                f"tracer_provider={provider!r} is not an OpenTelemetry TracerProvider; pass "
                "one (pip install 'interlock[otel]' and the SDK) or None for the global one"
            )
        self._provider = provider
        self._cached: tuple[object, Any] | None = None

    def _tracer(self) -> Any:
        """The OpenTelemetry tracer, or ``None`` when spans would not be recorded."""
        if not AVAILABLE:
            return None
        provider = self._provider
        if provider is None:
            # get_tracer_provider() reads os.environ on each call while none is set: the
            # API's own slot says so for less (it is set once, never unset)
            if _GLOBAL_SLOT and otel_trace._TRACER_PROVIDER is None:
                return None
            provider = otel_trace.get_tracer_provider()
        cached = self._cached
        if cached is not None and cached[0] is provider:
            return cached[1]
        tracer = None
        if not isinstance(provider, otel_trace.ProxyTracerProvider | otel_trace.NoOpTracerProvider):
            tracer = provider.get_tracer("interlock", _VERSION)
        self._cached = (provider, tracer)
        return tracer

    @property
    def enabled(self) -> bool:
        """A provider that records spans is configured."""
        return self._tracer() is not None

    def span(
        self,
        name: str,
        attributes: Attributes | None = None,
        *,
        parent: Span | None = None,
        kind: str = "internal",
    ) -> Any:
        """A context manager: a span made current for the block, ended after it.

        An :class:`Exception` leaving the block marks it failed (``error.type``, the
        exception event, status ERROR); a cancellation only ends it.

        Args:
            name: the span name (docs/tracing.md).
            attributes: its first attributes (``None`` values skipped).
            parent: the parent span, instead of the current context's.
            kind: ``internal`` or ``client``.
        """
        tracer = self._tracer()
        if tracer is None:
            return _NO_SCOPE
        return _scope(tracer, name, attributes, parent, kind)

    def start(
        self, name: str, attributes: Attributes | None = None, *, parent: Span | None = None
    ) -> Span:
        """A span that is not made current (a lease's hold, a transaction); call ``end()``."""
        tracer = self._tracer()
        if tracer is None:
            return NO_SPAN
        return Span(_start(tracer, name, attributes, parent, "internal"))

    def current(self) -> Span:
        """The current context's span (a no-op one when disabled or none is recording)."""
        if self._tracer() is None:
            return NO_SPAN
        span = otel_trace.get_current_span()
        return Span(span) if span.is_recording() else NO_SPAN


def _start(
    tracer: Any, name: str, attributes: Attributes | None, parent: Span | None, kind: str
) -> Any:
    context = None
    if parent is not None and parent._span is not None:
        context = otel_trace.set_span_in_context(parent._span)
    elif otel_trace.get_current_span() is otel_trace.INVALID_SPAN:
        context = _request_parent()
    attrs = {k: v for k, v in attributes.items() if v is not None} if attributes else None
    span_kind = SpanKind.CLIENT if kind == "client" else SpanKind.INTERNAL
    return tracer.start_span(name, context=context, kind=span_kind, attributes=attrs)


@contextmanager
def _scope(
    tracer: Any, name: str, attributes: Attributes | None, parent: Span | None, kind: str
) -> Iterator[Span]:
    span = _start(tracer, name, attributes, parent, kind)
    handle = Span(span)
    token = otel_context.attach(otel_trace.set_span_in_context(span))
    try:
        yield handle
    except Exception as exc:
        handle.error(exc)
        raise
    finally:
        otel_context.detach(token)
        handle.end()


# -- the request's trace -----------------------------------------------------------------


def _request_parent() -> Any:
    """The parent of our spans while a request is served without an active OpenTelemetry
    span (interlock's middleware outside the OpenTelemetry one): the remote span context the
    middleware put in the request context, with the trace id of its log line."""
    ctx = _context.current()
    return None if ctx is None else ctx.otel_parent


def active_ids() -> tuple[str, str] | None:
    """``(trace_id, span_id)`` of the active OpenTelemetry span, if one is valid."""
    if not AVAILABLE:
        return None
    ctx = otel_trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def span_context(trace_id: str | None, span_id: str | None, sampled: bool = True) -> Any:
    """A remote ``SpanContext`` from hex ids, or ``None`` if they are not valid W3C ids."""
    if not AVAILABLE or trace_id is None or span_id is None:
        return None
    if not _is_hex(trace_id, 32) or not _is_hex(span_id, 16):
        return None
    ctx = SpanContext(
        int(trace_id, 16),
        int(span_id, 16),
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT),
    )
    return ctx if ctx.is_valid else None


def remote_parent(trace_id: str, span_id: str, sampled: bool) -> Any:
    """An OpenTelemetry context whose span is the remote ``(trace_id, span_id)``."""
    linked = span_context(trace_id, span_id, sampled)
    if linked is None:
        return None
    return otel_trace.set_span_in_context(otel_trace.NonRecordingSpan(linked))


def _is_hex(value: str, size: int) -> bool:
    return len(value) == size and set(value) <= _HEX


__all__ = ["NO_SPAN", "Span", "Tracer", "active_ids", "remote_parent", "span_context"]
