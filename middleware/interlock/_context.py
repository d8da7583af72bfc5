"""The per-request context (request id, trace id) that locks, caches and logs pick up.

The middleware sets it for every request; applications may set it themselves with
:func:`request_context` (e.g. in a job runner). It lives in a ``ContextVar`` so it follows
asyncio tasks and is isolated between threads.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class RequestContext:
    """What interlock knows about the current request.

    Attributes:
        request_id: the ``X-Request-ID`` accepted or generated for the request.
        trace_id: W3C trace id (32 hex digits).
        span_id: W3C span id (16 hex digits).
        events: what interlock did during the request (lock, cache, txn), for the log line.
        otel_parent: the OpenTelemetry context interlock's spans start under when no span
            is active (interlock's middleware outside the OpenTelemetry one; docs/tracing.md).
    """

    request_id: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    events: dict[str, Any] = field(default_factory=dict)
    otel_parent: Any = None


_current: ContextVar[RequestContext | None] = ContextVar("interlock.request", default=None)


def current() -> RequestContext | None:
    """The context of the request being served, or ``None`` outside a request."""
    return _current.get()


def enter(ctx: RequestContext) -> Token[RequestContext | None]:
    """Make ``ctx`` the current request's context; :func:`leave` with the token undoes it."""
    return _current.set(ctx)


def leave(token: Token[RequestContext | None]) -> None:
    """Undo :func:`enter`. From another context than the one that entered (a WSGI iterable
    closed on another thread), there is nothing to restore: the context is cleared."""
    try:
        _current.reset(token)
    except ValueError:
        _current.set(None)


@contextmanager
def request_context(
    request_id: str | None = None, trace_id: str | None = None, span_id: str | None = None
) -> Iterator[RequestContext]:
    """Set the request context for the enclosed block (restored afterwards)."""
    ctx = RequestContext(request_id=request_id, trace_id=trace_id, span_id=span_id)
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)


def record(section: str, **fields: Any) -> None:
    """Merge ``fields`` into the current request's ``section`` (no-op outside a request)."""
    ctx = _current.get()
    if ctx is not None:
        ctx.events.setdefault(section, {}).update(fields)
