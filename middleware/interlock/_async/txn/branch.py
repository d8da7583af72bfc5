"""A transaction's branches: the :class:`AsyncParticipant` protocol they speak, and
:class:`AsyncBranch`, one enlisted branch with its id, its vote and the calls the
coordinator makes to it (each logged as a ``txn-branch-*`` event).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from interlock.errors import TransactionAborted
from interlock.txn._events import event
from interlock.txn._records import BranchRef
from interlock.txn._state import Vote
from interlock.txn._xid import branch_xid

DEBUG, INFO = logging.DEBUG, logging.INFO


class AsyncParticipant(Protocol):
    """Anything that can take part in two-phase commit.

    Each method gets the branch id (``<gtrid>:<bqual>``) and must be idempotent. To be
    recoverable after a coordinator crash, a participant must keep its prepared state
    under that id and be registered with a recovery resource.
    """

    async def prepare(self, xid: str) -> bool:
        """Make the branch's work durable but undecided. True votes yes, False votes no
        (the participant has rolled back); an exception counts as an error vote."""

    async def commit(self, xid: str) -> None:
        """Make the prepared work permanent."""

    async def abort(self, xid: str) -> None:
        """Discard the work, prepared or not."""


@runtime_checkable
class LockWaitCapped(Protocol):
    """A participant whose statements wait for row locks no longer than the transaction's
    remaining time (PostgreSQL, MySQL): it tells the error of such a wait from others."""

    def blocked(self, exc: BaseException) -> bool:
        """True if ``exc`` (raised by the app's statement) is this branch's lock wait
        timing out."""


@dataclass(slots=True)
class AsyncBranch:
    """One enlisted branch of the transaction ``txn`` (global id ``gtrid``).

    Attributes:
        participant: what the coordinator calls.
        resource: the resource name (what recovery knows it by).
        kind: ``postgres``, ``mysql``, ``redis``, ``remote`` or a custom kind.
        txn: the transaction's name.
        gtrid: the transaction's global id.
        bqual: the branch qualifier (``1``, ``2``, ... in enlisting order).
        vote: the answer to prepare, once given.
    """

    participant: AsyncParticipant
    resource: str
    kind: str
    txn: str
    gtrid: str
    bqual: str
    vote: Vote | None = None

    @property
    def xid(self) -> str:
        """The branch id, ``<gtrid>:<bqual>``."""
        return branch_xid(self.gtrid, self.bqual)

    def ref(self) -> BranchRef:
        """The branch as recorded with the decision."""
        return BranchRef(
            self.resource, self.kind, self.bqual, str(getattr(self.participant, "ref", "") or "")
        )

    def event(self, level: int, action: str, message: str, **fields: Any) -> None:
        """Log one event of this branch (see :func:`interlock.txn._events.event`)."""
        event(
            level,
            action,
            message,
            name=self.txn,
            xid=self.gtrid,
            resource=self.resource,
            branch=self.bqual,
            **fields,
        )

    async def prepare(self) -> bool:
        """Phase one: ask for a vote and record it (an exception votes error, or no when
        it is a ``TransactionAborted`` with reason ``vote_no``, and propagates)."""
        try:
            yes = await self.participant.prepare(self.xid)
        except TransactionAborted as exc:
            self.vote = Vote.NO if exc.reason == "vote_no" else Vote.ERROR
            raise
        except Exception:
            self.vote = Vote.ERROR
            raise
        self.vote = Vote.YES if yes else Vote.NO
        if yes:
            self.event(DEBUG, "txn-branch-prepared", f"{self.resource} prepared")
        else:
            refusal = getattr(self.participant, "refusal", None)
            self.event(
                INFO,
                "txn-branch-refused",
                f"{self.resource} voted no",
                refusal=None if refusal is None else ":".join(refusal),
            )
        return bool(yes)

    async def commit(self) -> None:
        """Phase two: make the prepared work permanent."""
        await self.participant.commit(self.xid)
        self.event(DEBUG, "txn-branch-committed", f"{self.resource} committed")

    async def abort(self) -> None:
        """Roll the branch back, prepared or not."""
        await self.participant.abort(self.xid)
        self.event(DEBUG, "txn-branch-aborted", f"{self.resource} rolled back")
