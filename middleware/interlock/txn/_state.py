"""The two-phase-commit state machine and the decisions around it, as plain functions.

Coordinator states::

    active ──► preparing ──► prepared ──► committing ──► committed
      │            │             │             └───────► in_doubt   (phase two unfinished;
      │            │             └─────────────────────► in_doubt    recovery completes it)
      └────────────┴─────────────┴──► aborting ──► aborted

Presumed abort: nothing is logged before the decision; a prepared branch without a
logged decision is aborted by recovery once it is older than the safety interval, after
recovery has logged an ``abort`` tombstone that a late coordinator cannot overwrite.
"""

from __future__ import annotations

import enum

from interlock.errors import TransactionAborted, TransactionError, TransactionTimeout


class State(enum.StrEnum):
    ACTIVE = "active"
    PREPARING = "preparing"
    PREPARED = "prepared"
    COMMITTING = "committing"
    COMMITTED = "committed"
    ABORTING = "aborting"
    ABORTED = "aborted"
    IN_DOUBT = "in_doubt"


_NEXT: dict[State, frozenset[State]] = {
    State.ACTIVE: frozenset({State.PREPARING, State.ABORTING, State.COMMITTED}),
    # in_doubt from preparing: the one-phase commit of a single branch failed midway.
    State.PREPARING: frozenset({State.PREPARED, State.ABORTING, State.IN_DOUBT}),
    State.PREPARED: frozenset({State.COMMITTING, State.ABORTING, State.IN_DOUBT}),
    State.COMMITTING: frozenset({State.COMMITTED, State.IN_DOUBT}),
    State.ABORTING: frozenset({State.ABORTED}),
    State.COMMITTED: frozenset(),
    State.ABORTED: frozenset(),
    State.IN_DOUBT: frozenset(),
}

FINAL = frozenset({State.COMMITTED, State.ABORTED, State.IN_DOUBT})


def advance(current: State, new: State) -> State:
    """Return ``new`` if the coordinator may move there from ``current``.

    Raises:
        TransactionError: for a move the protocol forbids (e.g. commit after abort).
    """
    if new not in _NEXT[current]:
        raise TransactionError(f"transaction is {current.value}; it cannot become {new.value}")
    return new


class Vote(enum.StrEnum):
    """A participant's answer to prepare."""

    YES = "yes"
    NO = "no"  # the resource refused (constraint, conflict, validation)
    TIMEOUT = "timeout"  # no answer before the deadline
    ERROR = "error"  # the resource could not be reached or failed


def abort_reason(votes: list[Vote], late: bool) -> str | None:
    """The abort reason for a set of votes, or ``None`` when every branch voted yes in time.

    Timeouts win over refusals and refusals over errors, so the reason names the
    condition an operator can act on first.
    """
    if late or Vote.TIMEOUT in votes:
        return "timeout"
    if Vote.NO in votes:
        return "vote_no"
    if Vote.ERROR in votes:
        return "error"
    return None


def abort_error(
    name: str,
    xid: str,
    reason: str,
    *,
    timeout: float,
    refused: list[str],
    cause: BaseException | None,
) -> TransactionAborted:
    """The error raised when transaction ``name`` aborted for ``reason``.

    Args:
        timeout: the transaction's timeout (for ``TransactionTimeout``'s message).
        refused: the resources whose branch did not vote yes.
        cause: the exception a branch raised, if one did.
    """
    if reason == "timeout":
        return TransactionTimeout(
            f"transaction {name} ({xid}) aborted: not every branch voted within {timeout:g}s",
            reason=reason,
            xid=xid,
        )
    detail = f": {cause}" if cause is not None else ""
    return TransactionAborted(
        f"transaction {name} ({xid}) aborted ({reason}) by "
        f"{', '.join(refused) or 'the coordinator'}{detail}",
        reason=reason,
        xid=xid,
    )


class Action(enum.StrEnum):
    """What recovery does with a prepared branch."""

    COMMIT = "commit"
    ABORT = "abort"
    DECIDE_ABORT = "decide_abort"  # log an abort tombstone first, then follow the winner
    WAIT = "wait"  # undecided and young: its coordinator may still be deciding


def recovery_action(
    outcome: str | None, age: float, safety: float, settle: float = 0.0
) -> Action:
    """Recovery's move for a prepared branch whose logged outcome is ``outcome``.

    Args:
        outcome: ``commit``, ``abort`` or ``None`` (nothing logged).
        age: seconds since the global transaction started.
        safety: seconds an undecided transaction is given before it is presumed aborted.
        settle: seconds a decided transaction is left to its own coordinator's phase two
            (the background worker's passes: finishing it there would race with a healthy
            coordinator and count as a recovery); 0 for an explicit ``recover()``.
    """
    if outcome is not None and age < settle:
        return Action.WAIT
    if outcome == "commit":
        return Action.COMMIT
    if outcome == "abort":
        return Action.ABORT
    return Action.DECIDE_ABORT if age >= safety else Action.WAIT


def heuristic(decision: str, actual: str) -> bool:
    """True when a branch's fate (``committed``/``aborted``) contradicts ``decision``."""
    return (decision == "commit" and actual == "aborted") or (
        decision == "abort" and actual == "committed"
    )
