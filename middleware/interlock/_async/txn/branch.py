"""A transaction's branches: the :class:`AsyncParticipant` protocol they speak, the
optional capabilities a participant may declare, and :class:`AsyncBranch`, one enlisted
branch with its id, its vote and the calls the coordinator makes to it (each logged as a
``txn-branch-*`` event).

A capability is a :func:`~typing.runtime_checkable` Protocol, so a custom participant
opts in by having the members (docs/transactions.md): :class:`AsyncOnePhase`,
:class:`AsyncLastResource`, :class:`LockWaitCapped`, :class:`BranchReferenced`,
:class:`RefusalExplained`.
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
class AsyncOnePhase(Protocol):
    """A participant that can commit without prepare when it is the transaction's only
    branch: its own commit is the decision (PostgreSQL, MySQL, Redis)."""

    async def commit_one_phase(self, xid: str) -> bool:
        """Commit the unprepared work; False when refused (it rolled back)."""


@runtime_checkable
class AsyncLastResource(Protocol):
    """A participant that can commit last, with the decision in its own transaction
    (PostgreSQL on the decision log's database; docs/transactions.md)."""

    last_resource: bool
    """False opts the branch out (``tx.postgres(conn, last_resource=False)``)."""
    identity: tuple[str, str, str] | None
    """Which database the branch is on, compared with the decision log's ``identity``."""

    async def commit_last(self, xid: str, statements: list[tuple[Any, list[Any]]]) -> bool:
        """Run ``statements`` (the decision) in the unprepared branch and commit; False
        when the server refused and rolled everything back."""


@runtime_checkable
class BranchReferenced(Protocol):
    """A participant with a local reference recorded with the decision (a PostgreSQL
    txid, a Redis store name, ...), by which recovery tells a vanished branch's fate."""

    ref: str


@runtime_checkable
class RefusalExplained(Protocol):
    """A participant that says why it voted no: ``(code, message)`` (the Redis store)."""

    refusal: tuple[str, str] | None


@runtime_checkable
class LockWaitCapped(Protocol):
    """A participant whose statements wait for row locks no longer than the transaction's
    remaining time (PostgreSQL, MySQL): it tells the error of such a wait from others."""

    def blocked(self, exc: BaseException) -> bool:
        """True if ``exc`` (raised by the app's statement) is this branch's lock wait
        timing out."""


@dataclass(frozen=True, slots=True)
class BranchStart:
    """What starting the transaction's next branch needs (``AsyncTransaction.next_branch``).

    Attributes:
        bqual: the branch qualifier it gets.
        xid: its branch id, ``<gtrid>:<bqual>``.
        lock_wait: seconds until the transaction's deadline, the longest a statement of
            the branch should wait for a row lock.
        durability: the instance's ``durability`` (``strict`` or ``relaxed``).
        decision_table: the decision log's table when the log can take a last resource
            (PostgreSQL), else ``None``.
    """

    bqual: str
    xid: str
    lock_wait: float
    durability: str
    decision_table: str | None


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
        participant = self.participant
        ref = participant.ref if isinstance(participant, BranchReferenced) else ""
        return BranchRef(self.resource, self.kind, self.bqual, str(ref or ""))

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
            participant = self.participant
            refusal = participant.refusal if isinstance(participant, RefusalExplained) else None
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
