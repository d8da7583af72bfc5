"""The problem each of interlock's own exceptions answers, whichever path raised it.

A lock rule that cannot take its lock, a request transaction whose commit fails, and an
interlock exception that leaves a handler (its own ``tools.lock(...)`` while Redis is
down, a transaction of its own left in doubt) answer the same RFC 9457 problems
(docs/middleware.md, *Problem responses*)::

    exception                                  status  type (urn:interlock:problem:…)
    BackendError (BackendUnavailable, …)       503     backend-unavailable     Retry-After
    LockTimeout                                423     lock-timeout            Retry-After
    LockLost                                   503     lock-lost               Retry-After
    FenceRejected                              409     fence-rejected
    TransactionBlocked                         503     transaction-blocked     Retry-After: 5
    TransactionAborted, reason vote_no         409     transaction-aborted
    TransactionAborted, other reasons          503     transaction-aborted     Retry-After
    DurabilityError                            503     transaction-aborted (reason durability)
    TransactionInDoubt                         503     transaction-in-doubt
    HeuristicOutcome                           500     transaction-heuristic

Everything else is a crash (a 500 ``internal-error``, or the framework's own): a
``ConfigError``, ``LockAlreadyHeld``, ``CacheError`` or a misused ``TransactionError`` is a
bug in the application, not a state of the world a client can wait out.
"""

from __future__ import annotations

from typing import Any

from interlock.errors import (
    BackendError,
    DurabilityError,
    FenceRejected,
    HeuristicOutcome,
    LockLost,
    LockTimeout,
    TransactionAborted,
    TransactionBlocked,
    TransactionInDoubt,
)
from interlock.http._responses import Problem, problem

RETRY_AFTER = 1.0  # seconds, on a 503 for a passing cause (and a lock rule's default)
BLOCKED_RETRY_AFTER = 5.0  # seconds, on a 503 for a row held by another (prepared) branch
LOCKED = 423  # a lock rule's default status for a lock that stayed taken


def lock_timeout(
    request_id: str, lock: str, *, status: int = LOCKED, retry_after: float = RETRY_AFTER
) -> Problem:
    """Another request held the lock ``lock`` until the wait's timeout."""
    return problem(
        status,
        "lock-timeout",
        "Resource is locked",
        f"another request holds the {lock!r} lock for this resource; retry later",
        request_id=request_id,
        retry_after=retry_after,
        lock=lock,
    )


def backend_unavailable(
    request_id: str, *, retry_after: float = RETRY_AFTER, **extra: Any
) -> Problem:
    """The coordination backend (Redis) could not be reached: locks fail closed."""
    return problem(
        503,
        "backend-unavailable",
        "Coordination backend unavailable",
        "the lock service cannot be reached; retry later",
        request_id=request_id,
        retry_after=retry_after,
        **extra,
    )


def transaction_failed(exc: BaseException, request_id: str, **extra: Any) -> Problem:
    """The problem of a transaction that did not commit (``exc``: why); ``extra`` names it
    (``txn``, ``xid``). An exception that is not a transaction outcome is a participant's
    failure: 503 ``transaction-aborted``, reason ``error``."""
    if isinstance(exc, TransactionInDoubt):
        return problem(
            503,
            "transaction-in-doubt",
            "Transaction outcome unknown",
            "the transaction could not be confirmed; recovery will resolve it. Check the "
            "outcome before retrying",
            request_id=request_id,
            **extra,
        )
    if isinstance(exc, HeuristicOutcome):
        return problem(
            500,
            "transaction-heuristic",
            "Transaction partly undone",
            "the transaction committed, but a participant was resolved against it by hand",
            request_id=request_id,
            **extra,
        )
    if isinstance(exc, DurabilityError):
        return problem(
            503,
            "transaction-aborted",
            "Transaction aborted",
            "the server's transaction decision log cannot promise durable commits (a "
            "configuration error, logged at ERROR as txn-log-not-durable); nothing was changed",
            request_id=request_id,
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
            request_id=request_id,
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
            request_id=request_id,
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
        request_id=request_id,
        retry_after=RETRY_AFTER,
        reason=reason,
        **extra,
    )


_OUTCOMES = (TransactionAborted, TransactionInDoubt, HeuristicOutcome, DurabilityError)


def escaped_problem(
    exc: BaseException, request_id: str, *, txn: str | None = None, xid: str = ""
) -> Problem | None:
    """The problem that answers ``exc`` when it leaves a handler before its response
    started; ``None``: not one of interlock's documented failures (a crash, 500).

    Args:
        exc: what the handler raised (or what its framework answered with its own 500).
        request_id: the request's id, echoed in the problem.
        txn, xid: the request's transaction; named in a transaction problem when ``exc``
            is its outcome (``exc.xid`` is that ``xid``, or carries none).
    """
    if isinstance(exc, _OUTCOMES):
        own = exc.xid if isinstance(exc, (TransactionAborted, TransactionInDoubt)) else ""
        if txn is not None and own in ("", xid):
            return transaction_failed(exc, request_id, txn=txn, xid=xid)
        return transaction_failed(exc, request_id, **({"xid": own} if own else {}))
    if isinstance(exc, LockTimeout):
        return lock_timeout(request_id, exc.name)
    if isinstance(exc, BackendError):
        return backend_unavailable(request_id)
    if isinstance(exc, FenceRejected):
        return problem(
            409,
            "fence-rejected",
            "Lock superseded",
            "a newer holder of this request's lock wrote first; this write was refused",
            request_id=request_id,
        )
    if isinstance(exc, LockLost):
        return problem(
            503,
            "lock-lost",
            "Lock lost",
            "this request's lock expired or was taken before it finished; its work may be "
            "incomplete; retry later",
            request_id=request_id,
            retry_after=RETRY_AFTER,
        )
    return None
