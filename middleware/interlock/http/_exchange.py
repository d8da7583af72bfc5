"""One request's state: :class:`Exchange`.

:meth:`HttpCore.begin <interlock.http._core.HttpCore.begin>` creates it; the handler's view of
it (``scope["interlock"]`` / ``environ["interlock"]``) is ``interlock._async.http.tools``.
Per-request state lives here and in the drivers' responders, never on the middleware.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from interlock import _context
from interlock.http._cache import CachePlan
from interlock.http._rules import LockRule


@dataclass(slots=True)
class Exchange:
    """The state of one request, created by :meth:`~interlock.http._core.HttpCore.begin`."""

    started: float
    method: str
    method_label: str
    path: str
    rpath: str
    query: str
    headers: dict[str, str]
    client_ip: str | None
    request_id: str
    trace_id: str
    span_id: str
    parent_id: str | None
    context: _context.RequestContext
    route: str | None = None
    status: int | None = None
    error: BaseException | None = None
    disconnected: bool = False
    finished_body: bool = False
    lock: tuple[LockRule, dict[str, str]] | None = None
    cache: CachePlan | None = None
    tags: list[str] = field(default_factory=list)
    finished: bool = False
    handler_error: BaseException | None = None  # what the framework answered with its 500
    error_answered: bool = False  # ``error`` got its documented problem: logged at WARNING
    traceparent: str | None = None  # passed on to the application (docs/tracing.md)


class ClientGone(Exception):
    """The client disconnected while the request was waiting (for a lock, a cached load)."""
