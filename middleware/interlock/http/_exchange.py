"""One request's state (:class:`Exchange`) and the handler's view of it (:class:`RequestTools`).

:meth:`HttpCore.begin <interlock.http._core.HttpCore.begin>` creates the exchange; the drivers
hand the tools to the application at ``scope["interlock"]`` / ``environ["interlock"]``.
Per-request state lives here, never on the middleware.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from interlock import _context
from interlock.http._cache import CachePlan
from interlock.http._rules import LockRule
from interlock.http._txn import cache_view, open_transaction


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
    txn: Any = None  # the request's RequestTransaction, once the handler opened it
    handler_error: BaseException | None = None  # what the framework answered with its 500


class RequestTools:
    """What handlers find at ``scope["interlock"]`` / ``environ["interlock"]``.

    Attributes:
        interlock: the ``AsyncInterlock`` (ASGI) or ``Interlock`` (WSGI) of the middleware.
        request_id: the request id echoed in ``X-Request-ID``.
        trace_id: the W3C trace id of the request.
        span_id: this request's span id.
        lease: the lease held for the request by a :class:`LockRule`, or ``None``.
    """

    __slots__ = ("_exchange", "interlock", "lease")

    def __init__(self, interlock: Any, exchange: Exchange) -> None:
        self.interlock = interlock
        self._exchange = exchange
        self.lease: Any = None

    @property
    def request_id(self) -> str:
        return self._exchange.request_id

    @property
    def trace_id(self) -> str:
        return self._exchange.trace_id

    @property
    def span_id(self) -> str:
        return self._exchange.span_id

    @property
    def route(self) -> str | None:
        """The route template used as the metric label; set it when no framework does."""
        return self._exchange.route

    @route.setter
    def route(self, template: str) -> None:
        self._exchange.route = str(template)

    def lock(self, name: str, key: object = "", **options: Any) -> Any:
        """``interlock.lock(...)``; the request's ids go with the holder info."""
        return self.interlock.lock(name, key, **options)

    def cache(self, name: str, **options: Any) -> Any:
        """``interlock.cache(...)``; while the request's transaction is open, its
        ``invalidate_tag`` waits for the commit (and is dropped on abort)."""
        return cache_view(self.interlock.cache(name, **options), self._exchange)

    def transaction(self, name: str, *, timeout: float | None = None) -> Any:
        """The request's transaction: opened on the first call, the same one afterwards.

        The middleware commits it when the response starts with a 2xx/3xx status and
        aborts it otherwise (or on an exception, a disconnect, no response); a failed
        commit turns the response into a problem (409 or 503). See docs/middleware.md.

        Args:
            name: the transaction name (metric label).
            timeout: seconds by which every branch must have voted (the facade's default).

        Returns:
            a :class:`~interlock.http._txn.RequestTransaction`.

        Raises:
            TransactionError: another name than the open one, or the response started.
        """
        return open_transaction(self.interlock, self._exchange, name, timeout)

    def tag(self, *tags: str) -> None:
        """Tag the response for the response cache, to purge it later by tag."""
        self._exchange.tags.extend(str(t) for t in tags)

    def __repr__(self) -> str:
        return f"<RequestTools request_id={self.request_id}>"
