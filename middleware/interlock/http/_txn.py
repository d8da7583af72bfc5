"""Request-scoped transactions: opened by the handler, decided by the response status.

A handler opens its request's transaction with ``tools.transaction(name)`` and enlists
participants; the middleware commits it when the response starts with a 2xx/3xx status and
aborts it otherwise (4xx/5xx, an exception, a client that went away, no response at all).
The decision is taken when the status is known and *before* anything reaches the client:
the ASGI driver holds ``http.response.start``, the WSGI driver its ``start_response`` call.
A commit that fails replaces the response with an RFC 9457 problem.

Cache tag invalidations made through ``tools.cache(name).invalidate_tag(tag)`` while the
transaction is open are deferred with ``tx.on_commit`` and applied by the driver after the
commit, before the response is sent; an abort drops them.

This module holds the pure parts both drivers share: the commit rule and the log fields
(the problem documents are ``interlock.http._problems``). The handler's view of the
transaction and the steps that commit or abort it are in ``interlock._async.http``
(generated into ``interlock._sync.http``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from interlock.http._problems import transaction_failed
from interlock.http._responses import Problem

if TYPE_CHECKING:
    from interlock.http._exchange import Exchange


def commits(status: int) -> bool:
    """True when a response with ``status`` commits the request's transaction."""
    return 200 <= status < 400


class DecidedTransaction(Protocol):
    """What the log line and the problems name of a request's transaction."""

    @property
    def name(self) -> str: ...  # pragma: no cover

    @property
    def xid(self) -> str: ...  # pragma: no cover

    @property
    def deferred(self) -> int: ...  # pragma: no cover


def record(ex: Exchange, **fields: Any) -> None:
    """Add ``interlock.txn.*`` fields to the request's log line."""
    ex.context.events.setdefault("txn", {}).update(
        {k: v for k, v in fields.items() if v is not None}
    )


def abort_cause(ex: Exchange) -> str:
    """Why a transaction still open when the request ends is aborted."""
    if ex.error is not None:
        return "exception"
    if ex.disconnected:
        return "disconnect"
    return "no_response"


def settled(ex: Exchange, txn: DecidedTransaction, cause: str, applied: int) -> None:
    """Record how the request's transaction ended and what became of its invalidations.

    Args:
        cause: what decided it: ``status``, ``disconnect``, ``exception``, ``no_response``,
            or ``handler`` (it called ``commit()``/``abort()`` itself).
        applied: deferred invalidations applied after the commit.
    """
    record(
        ex,
        name=txn.name,
        xid=txn.xid,
        cause=cause,
        invalidated=applied or None,
        dropped=(txn.deferred - applied) or None,
    )


def failure_problem(ex: Exchange, txn: DecidedTransaction, exc: BaseException) -> Problem:
    """The response that replaces the handler's when the commit failed, or when the
    handler's failure was a branch's lock wait (``TransactionBlocked``); the mapping
    is ``interlock.http._problems``."""
    return transaction_failed(exc, ex.request_id, txn=txn.name, xid=txn.xid)
