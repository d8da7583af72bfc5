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

This module holds what both drivers share and does no I/O itself: the handler's view of
the transaction, the deferring cache view, the commit rule and the problem documents.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from interlock.errors import (
    DurabilityError,
    HeuristicOutcome,
    TransactionAborted,
    TransactionBlocked,
    TransactionError,
    TransactionInDoubt,
)
from interlock.http._responses import Problem, problem
from interlock.txn._state import State

if TYPE_CHECKING:
    from interlock.http._exchange import Exchange

RETRY_AFTER = 1.0  # seconds, on a 503 for a transaction that failed for a passing cause
BLOCKED_RETRY_AFTER = 5.0  # seconds, on a 503 for a row held by another (prepared) branch


def commits(status: int) -> bool:
    """True when a response with ``status`` commits the request's transaction."""
    return 200 <= status < 400


class RequestTransaction:
    """The request's transaction, as ``tools.transaction(name)`` returns it.

    It forwards to the facade's transaction (``AsyncTransaction`` under ASGI, where
    ``postgres``, ``mysql``, ``commit`` and ``abort`` are coroutines; ``Transaction`` under
    WSGI). The middleware commits or aborts it from the response status; ``commit()`` and
    ``abort()`` are there for handlers that must know the outcome before they answer.
    Used as a (async) context manager, the block's exit does not commit: an exception in
    the block aborts at once, a clean exit leaves the decision to the response.

    Attributes:
        transaction: the underlying ``AsyncTransaction`` / ``Transaction``.
        due: ``(cache, tag)`` invalidations to apply now that the transaction committed.
        deferred: how many invalidations were deferred while it was open.
        settled: the middleware has decided it (or seen the handler's decision).
    """

    __slots__ = ("deferred", "due", "settled", "transaction")

    def __init__(self, transaction: Any) -> None:
        self.transaction = transaction
        self.due: list[tuple[Any, str | int]] = []
        self.deferred = 0
        self.settled = False  # the middleware has taken its decision

    @property
    def name(self) -> str:
        return str(self.transaction.name)

    @property
    def xid(self) -> str:
        return str(self.transaction.xid)

    @property
    def state(self) -> State:
        state: State = self.transaction.state
        return state

    @property
    def reason(self) -> str | None:
        reason: str | None = self.transaction.reason
        return reason

    @property
    def active(self) -> bool:
        """True until the transaction is committed or aborted."""
        return self.transaction.state is State.ACTIVE

    def redis(self, store: str = "default") -> Any:
        """The branch staging writes to the Redis store ``store`` (see ``tx.redis``)."""
        return self.transaction.redis(store)

    def postgres(self, conn: Any, resource: str = "postgres") -> Any:
        """Enlist a psycopg connection (a coroutine under ASGI: await it)."""
        return self.transaction.postgres(conn, resource)

    def mysql(self, conn: Any, resource: str = "mysql") -> Any:
        """Enlist a MySQL connection (see ``tx.mysql``; under ASGI a coroutine returning
        an aiomysql connection or a wrapped PyMySQL one)."""
        return self.transaction.mysql(conn, resource)

    def enlist(self, participant: Any, *, resource: str, kind: str = "custom") -> Any:
        """Add a custom participant (see ``Transaction.enlist``)."""
        return self.transaction.enlist(participant, resource=resource, kind=kind)

    def on_commit(self, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` once the transaction has committed."""
        self.transaction.on_commit(callback)

    def commit(self) -> Any:
        """Commit now instead of at the response (a coroutine under ASGI)."""
        return self.transaction.commit()

    def abort(self, reason: str = "client") -> Any:
        """Abort now instead of at the response (a coroutine under ASGI)."""
        return self.transaction.abort(reason)

    def defer_invalidation(self, cache: Any, tag: str | int) -> None:
        """Invalidate ``tag`` of ``cache`` once the transaction commits; never on abort."""
        self.deferred += 1
        self.transaction.on_commit(lambda: self.due.append((cache, tag)))

    def take_due(self) -> list[tuple[Any, str | int]]:
        due, self.due = self.due, []
        return due

    def __enter__(self) -> RequestTransaction:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is not None and self.active:
            self.transaction.abort("client")

    async def __aenter__(self) -> RequestTransaction:
        return self

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is not None and self.active:
            await self.transaction.abort("client")

    def __repr__(self) -> str:
        return f"<RequestTransaction {self.name} {self.xid} {self.state.value}>"


def open_transaction(interlock: Any, ex: Exchange, name: str, timeout: float | None) -> Any:
    """The request's transaction, opened on first use (see ``RequestTools.transaction``)."""
    current: RequestTransaction | None = ex.txn
    if current is not None:
        if current.name != name:
            raise TransactionError(
                f"this request's transaction is {current.name!r}; a request has one "
                f"transaction, so tools.transaction({name!r}) cannot open another (use "
                "interlock.transaction() for an independent one)"
            )
        return current
    if ex.finished or ex.status is not None:
        raise TransactionError(
            f"tools.transaction({name!r}) after the response started: nothing would decide "
            "it; open it before answering, or use interlock.transaction()"
        )
    ex.txn = RequestTransaction(interlock.transaction(name, timeout=timeout))
    return ex.txn


def cache_view(cache: Any, ex: Exchange) -> Any:
    """``cache`` whose ``invalidate_tag`` waits for the request's transaction, if open."""
    if inspect.iscoroutinefunction(getattr(cache, "invalidate_tag", None)):
        return _AsyncCacheView(cache, ex)
    return _CacheView(cache, ex)


class _CacheView:
    __slots__ = ("_cache", "_ex")

    def __init__(self, cache: Any, ex: Exchange) -> None:
        self._cache = cache
        self._ex = ex

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cache, name)

    def _deferred(self, tag: str | int) -> bool:
        txn: RequestTransaction | None = self._ex.txn
        if txn is None or not txn.active:
            return False
        txn.defer_invalidation(self._cache, tag)
        return True

    def invalidate_tag(self, tag: str | int) -> None:
        """Invalidate ``tag`` now, or after commit while the request's transaction is open."""
        if not self._deferred(tag):
            self._cache.invalidate_tag(tag)

    def __repr__(self) -> str:
        return f"<request view of {self._cache!r}>"


class _AsyncCacheView(_CacheView):
    __slots__ = ()

    async def invalidate_tag(self, tag: str | int) -> None:  # type: ignore[override]
        """Invalidate ``tag`` now, or after commit while the request's transaction is open."""
        if not self._deferred(tag):
            await self._cache.invalidate_tag(tag)


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


def settled(ex: Exchange, txn: RequestTransaction, cause: str, applied: int) -> None:
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


def failure_problem(ex: Exchange, txn: RequestTransaction, exc: BaseException) -> Problem:
    """The response that replaces the handler's when the commit failed, or when the
    handler's failure was a branch's lock wait (:class:`TransactionBlocked`)."""
    extra: dict[str, Any] = {"txn": txn.name, "xid": txn.xid}
    if isinstance(exc, TransactionInDoubt):
        return problem(
            503,
            "transaction-in-doubt",
            "Transaction outcome unknown",
            "the transaction could not be confirmed; recovery will resolve it. Check the "
            "outcome before retrying",
            request_id=ex.request_id,
            **extra,
        )
    if isinstance(exc, HeuristicOutcome):
        return problem(
            500,
            "transaction-heuristic",
            "Transaction partly undone",
            "the transaction committed, but a participant was resolved against it by hand",
            request_id=ex.request_id,
            **extra,
        )
    if isinstance(exc, DurabilityError):
        return problem(
            503,
            "transaction-aborted",
            "Transaction aborted",
            "the server's transaction decision log cannot promise durable commits (a "
            "configuration error, logged at ERROR as txn-log-not-durable); nothing was changed",
            request_id=ex.request_id,
            reason="durability",
            **extra,
        )
    if isinstance(exc, TransactionBlocked):
        return problem(
            503,
            "transaction-blocked",
            "Transaction blocked",
            f"a row this request needs on {exc.resource} stayed locked by another transaction "
            "(most likely a prepared branch awaiting recovery) until the transaction's "
            "deadline; nothing was changed; retry later",
            request_id=ex.request_id,
            retry_after=BLOCKED_RETRY_AFTER,
            reason=exc.reason,
            resource=exc.resource,
            **extra,
        )
    if isinstance(exc, TransactionAborted) and exc.reason == "vote_no":
        return problem(
            409,
            "transaction-aborted",
            "Transaction aborted",
            "a participant refused to commit (a constraint, a bound or a conflicting "
            "transaction); nothing was changed",
            request_id=ex.request_id,
            reason=exc.reason,
            **extra,
        )
    reason = exc.reason if isinstance(exc, TransactionAborted) else "error"
    return problem(
        503,
        "transaction-aborted",
        "Transaction aborted",
        "the transaction could not commit in time or a participant failed; nothing was "
        "changed; retry later",
        request_id=ex.request_id,
        retry_after=RETRY_AFTER,
        reason=reason,
        **extra,
    )
