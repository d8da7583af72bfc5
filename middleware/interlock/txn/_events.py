"""Structured log events of two-phase commit (logger ``interlock.txn``).

Every state change of a transaction is one log record whose ``extra`` carries ECS-style
dotted keys: ``event.action`` (``txn-started``, ``txn-branch-prepared``, ``txn-decided``,
``txn-branch-committed``, ``txn-committed``, ``txn-aborted``, ``txn-in-doubt``,
``txn-recovered``, ``txn-heuristic``, ...) and ``interlock.txn.*`` (name, xid, state,
resource, reason, outcome). Routine steps log at DEBUG, aborts at INFO, in-doubt and
recovery actions at WARNING, heuristic outcomes at ERROR. A transaction that ends in doubt
is also noted on the request's log line (:func:`in_doubt`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from interlock import _context
from interlock.errors import TransactionInDoubt
from interlock.txn._state import State

if TYPE_CHECKING:
    from interlock.metrics import Metrics

logger = logging.getLogger("interlock.txn")


def event(level: int, action: str, message: str, **fields: Any) -> None:
    """Log one transaction event; ``fields`` become ``interlock.txn.<field>`` keys."""
    if not logger.isEnabledFor(level):
        return
    extra: dict[str, Any] = {"event.action": action}
    for key, value in fields.items():
        if value is not None:
            extra[key if "." in key else f"interlock.txn.{key}"] = value
    logger.log(level, message, extra=extra)


def in_doubt(
    name: str,
    xid: str,
    error: BaseException | None,
    *,
    reason: str,
    summary: str,
    detail: str,
    resource: str | None = None,
) -> TransactionInDoubt:
    """Report that transaction ``name`` is in doubt and return the error to raise.

    Args:
        error: what failed (its message goes into the event).
        reason: ``decision_unknown`` or ``commit_unknown`` (event and request log line).
        summary: ends the log message ``transaction <name><summary>``.
        detail: ends the error message ``transaction <name> (<xid>)<detail>``.
        resource: the branch whose commit failed, if one did.
    """
    event(
        logging.WARNING,
        "txn-in-doubt",
        f"transaction {name}{summary}",
        name=name,
        xid=xid,
        resource=resource,
        state=State.IN_DOUBT.value,
        reason=reason,
        **{"error.message": str(error)},
    )
    _context.record("txn", name=name, xid=xid, outcome="in_doubt", reason=reason)
    return TransactionInDoubt(f"transaction {name} ({xid}){detail}", xid=xid)


def heuristic_outcome(metrics: Metrics, name: str, xid: str, detail: str) -> None:
    """Report a heuristic outcome of transaction ``name``: a branch whose fate contradicts
    the decision (counted as ``interlock_txn_recovered_total{action="heuristic"}``, logged
    at ERROR as ``txn-heuristic``)."""
    metrics.txn_recovered.labels(action="heuristic").inc()
    event(
        logging.ERROR,
        "txn-heuristic",
        f"heuristic outcome: {detail}",
        name=name,
        xid=xid,
        outcome="heuristic",
    )
