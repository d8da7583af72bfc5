"""Recording a transaction's decision, the step between its two phases.

The decision becomes durable in one of two ways:

* as a record of the decision log (:func:`log_decision`), retried: the first decision for
  an xid wins, so retrying after an unclear failure is safe;
* with last-resource commit, inside the COMMIT of a PostgreSQL branch on the decision
  log's own database (:func:`commit_last`): that branch's work and the decision row
  commit atomically in one COMMIT (docs/transactions.md, *Last-resource commit*).

When neither can be confirmed the transaction is in doubt (``TransactionInDoubt``) and
recovery resolves it from the log.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from interlock._async.txn.branch import AsyncBranch, AsyncLastResource
from interlock._async.txn.log import AsyncDecisionLog, LastResourceLog
from interlock._concurrency import async_sleep
from interlock.txn._events import in_doubt
from interlock.txn._records import Decision
from interlock.txn._state import Vote

DECIDE_RETRIES = (0.05, 0.2)  # pauses between attempts to record a decision


@dataclass(slots=True)
class CompletedDecisions:
    """Decisions of fully committed transactions, queued for removal from the log with
    the next decision write (or at close: ``AsyncTransactionManager.flush_completed``)."""

    xids: list[str] = field(default_factory=list)

    def add(self, xids: Sequence[str]) -> None:
        """Queue ``xids`` (again, after a write that may not have removed them)."""
        self.xids.extend(xids)

    def take(self) -> list[str]:
        """The queued decisions to remove; the caller removes them with its next write."""
        taken, self.xids = self.xids, []
        return taken


@dataclass(frozen=True, slots=True)
class DecisionContext:
    """What recording a decision needs: the instance's decision log and its queue of
    completed decisions (removed in the same write)."""

    log: AsyncDecisionLog
    completed: CompletedDecisions


def last_resource(branches: Sequence[AsyncBranch], log: AsyncDecisionLog) -> AsyncBranch | None:
    """The branch that commits last with the decision: a PostgreSQL branch on the
    decision log's own database (the log's ``identity``: same server start time and
    database name; ``None`` when the log has none) that allows it."""
    identity = log.identity if isinstance(log, LastResourceLog) else None
    if identity is None:
        return None
    for branch in branches:
        participant = branch.participant
        if (
            isinstance(participant, AsyncLastResource)
            and participant.last_resource
            and participant.identity == identity
        ):
            return branch
    return None


async def log_decision(context: DecisionContext, decision: Decision) -> Decision:
    """Record ``decision`` in the decision log; return the decision that won.

    Each attempt also removes the decisions of completed transactions queued in
    ``context``.

    Raises:
        TransactionInDoubt: every attempt failed (already reported).
    """
    error: Exception | None = None
    for pause in (*DECIDE_RETRIES, None):
        forget = context.completed.take()
        try:
            # The first decision wins, so retrying after an unclear failure is safe.
            return await context.log.decide(decision, forget)
        except Exception as exc:
            context.completed.add(forget)  # maybe not forgotten: again next time
            error = exc
            if pause is not None:
                await async_sleep(pause)
    raise in_doubt(
        decision.name,
        decision.xid,
        error,
        reason="decision_unknown",
        summary=" in doubt: decision not recorded",
        detail=f" is in doubt: the decision log failed ({error}); recovery will resolve it "
        "once the log is reachable",
    ) from error


async def commit_last(
    context: DecisionContext, branch: AsyncBranch, decision: Decision
) -> Decision | None:
    """Record ``decision`` by committing ``branch`` with the decision row in it.

    Returns:
        The decision that won (an abort tombstone if recovery fenced us first), or
        ``None`` when the branch refused: it rolled back and nothing was decided.

    Raises:
        TransactionInDoubt: the COMMIT failed and the decision row is not found
            (already reported).
    """
    log, participant = context.log, branch.participant
    if not isinstance(log, LastResourceLog) or not isinstance(participant, AsyncLastResource):
        raise TypeError(f"{branch.resource} cannot commit last with this decision log")
    forget = context.completed.take()
    statements = log.last_resource_statements(decision, forget)
    try:
        committed = bool(await participant.commit_last(branch.xid, statements))
    except Exception as exc:
        context.completed.add(forget)  # forgotten or not: deleting again is harmless
        found = await _decision_after_failed_commit(log, branch, decision, exc)
        if found.outcome != "commit":
            branch.vote = Vote.NO
            return found
        committed = True
    if not committed:
        context.completed.add(forget)
        branch.vote = Vote.NO
        recorded = await read_decision(log, decision.xid)
        if recorded is not None and recorded.outcome == "abort":
            return recorded  # recovery's tombstone won; the insert conflicted with it
        return None
    branch.vote = Vote.YES
    branch.event(
        logging.DEBUG,
        "txn-branch-committed",
        f"{branch.resource} committed with the decision (last resource)",
    )
    return decision


async def _decision_after_failed_commit(
    log: AsyncDecisionLog, branch: AsyncBranch, decision: Decision, exc: Exception
) -> Decision:
    """The decision recorded for ``decision.xid`` after the last resource's COMMIT failed
    with ``exc``: it may or may not have happened, and the decision row says which.

    Raises:
        TransactionInDoubt: no decision is found (which proves nothing yet: the server may
            still be finishing the COMMIT; already reported).
    """
    found = await read_decision(log, decision.xid)
    if found is None:
        raise in_doubt(
            decision.name,
            decision.xid,
            exc,
            resource=branch.resource,
            reason="decision_unknown",
            summary=f" in doubt: the last-resource commit on {branch.resource} failed, "
            "outcome unknown",
            detail=f" is in doubt: the last-resource commit on {branch.resource} failed "
            f"({exc}); recovery will resolve it from the decision log",
        ) from exc
    return found


async def read_decision(log: AsyncDecisionLog, xid: str) -> Decision | None:
    """The logged decision of ``xid``; ``None`` if there is none or the log fails."""
    try:
        return await log.get(xid)
    except Exception:
        return None
