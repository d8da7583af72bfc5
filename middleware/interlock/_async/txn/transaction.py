"""Two-phase commit: ``AsyncTransaction``, the app's handle on one distributed transaction.

Created by ``AsyncInterlock.transaction(name, timeout=...)``. The app enlists branches —
``await tx.postgres(conn)``, ``await tx.mysql(conn)``, ``tx.redis(store)``,
``tx.remote(url, secret=...)``, or any :class:`AsyncParticipant` with ``tx.enlist`` — and
does its work in them. A clean exit commits; an exception in the block aborts.

How it commits is the base class's part,
:class:`~interlock._async.txn.coordinator.AsyncCoordinator` (two-phase commit, one-phase
commit of a lone branch, last-resource commit: docs/transactions.md). The branches and
the participant protocol are in :mod:`interlock._async.txn.branch`; the pure rules
(states, votes) in :mod:`interlock.txn._state`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from interlock._async.backend.base import AsyncBackend
from interlock._async.txn.branch import AsyncBranch, AsyncParticipant, BranchStart, LockWaitCapped
from interlock._async.txn.coordinator import AsyncCoordinator, CoordinatorContext
from interlock._async.txn.log import LastResourceLog
from interlock._async.txn.participants.redis import AsyncRedisBranch
from interlock._concurrency import async_shielded
from interlock._keys import validate_name
from interlock.errors import TransactionBlocked
from interlock.txn._events import event
from interlock.txn._state import State
from interlock.txn._xid import branch_xid

if TYPE_CHECKING:
    from interlock._async.txn.participants.remote import AsyncRemoteParticipant

__all__ = ["AsyncParticipant", "AsyncTransaction"]

DEBUG, WARNING = logging.DEBUG, logging.WARNING


@dataclass(frozen=True, slots=True)
class TransactionContext:
    """What a transaction needs from the instance's transaction manager: its
    coordinator's context, and what enlisting branches takes.

    Attributes:
        coordinator: see :class:`~interlock._async.txn.coordinator.CoordinatorContext`.
        backend: the coordination backend (Redis store branches).
        durability: ``strict`` or ``relaxed`` (MySQL branches check their server).
        registered_stores: the Redis stores recovery knows (a branch registers its own).
    """

    coordinator: CoordinatorContext
    backend: AsyncBackend
    durability: str
    registered_stores: set[str]


class AsyncTransaction(AsyncCoordinator):
    """One distributed transaction; use as an async context manager.

    Attributes:
        name: the transaction name (metric label).
        xid: the global transaction id (also in logs as ``interlock.txn.xid``).
        timeout: seconds from start within which every branch must have voted.
        state: the coordinator state (see :class:`interlock.txn.State`).
        reason: why it aborted (vote_no, timeout, error, durability, client), when it did.
    """

    def __init__(self, context: TransactionContext, name: str, timeout: float) -> None:
        super().__init__(context.coordinator, name, timeout)
        self._context = context
        self._stores: dict[str, AsyncRedisBranch] = {}

    # -- enlisting -----------------------------------------------------------------------

    def next_branch(self) -> BranchStart:
        """What the next branch starts with: its id, its lock-wait cap, ... (the seam of
        enlisting helpers outside this class, such as :mod:`interlock.django`; the branch
        joins with :meth:`add_branch`).

        Raises:
            TransactionError: the transaction is no longer active.
        """
        self._require(State.ACTIVE)
        bqual = str(len(self._branches) + 1)
        log = self._coordination.decisions.log
        return BranchStart(
            bqual=bqual,
            xid=branch_xid(self.xid, bqual),
            lock_wait=max(self._deadline - time.monotonic(), 0.001),
            durability=self._context.durability,
            decision_table=log.table if isinstance(log, LastResourceLog) else None,
        )

    def add_branch(
        self, participant: AsyncParticipant, resource: str, kind: str, bqual: str
    ) -> None:
        """Enlist ``participant``, started as :meth:`next_branch` said, as branch ``bqual``."""
        validate_name("resource", resource)
        self._branches.append(AsyncBranch(participant, resource, kind, self.name, self.xid, bqual))
        event(
            DEBUG,
            "txn-enlisted",
            f"transaction {self.name} enlisted {resource}",
            name=self.name,
            xid=self.xid,
            resource=resource,
            kind=kind,
            branch=bqual,
        )

    async def postgres(
        self, conn: Any, resource: str = "postgres", *, last_resource: bool = True
    ) -> Any:
        """Run ``conn``'s next transaction as a branch (psycopg 3, autocommit off).

        Args:
            last_resource: when ``conn`` is on the PostgreSQL decision log's database
                (same server and database, checked), let this branch commit last with
                the decision instead of preparing it; False always prepares it.

        Returns:
            ``conn``, now inside the branch: do the work with it, don't commit it.
        """
        from interlock._async.txn.participants.postgres import AsyncPostgresParticipant

        start = self.next_branch()
        participant = AsyncPostgresParticipant(conn, resource, last_resource)
        table = start.decision_table if last_resource else None
        await participant.begin(start.xid, table, start.lock_wait)
        self.add_branch(participant, resource, participant.kind, start.bqual)
        return conn

    async def mysql(self, conn: Any, resource: str = "mysql") -> Any:
        """Run ``conn``'s next transaction as an XA branch: a PyMySQL connection, or
        under asyncio also an aiomysql or asyncmy one.

        Returns:
            the connection to do the work with, now inside the branch (don't commit it):
            ``conn`` itself, except that under asyncio a PyMySQL connection comes back
            wrapped: each of its calls is awaited and runs on the connection's own
            thread, so the loop never blocks (docs/transactions.md, *MySQL / MariaDB*).
        """
        from interlock._async.txn.participants.mysql import AsyncMySQLParticipant

        start = self.next_branch()
        participant = AsyncMySQLParticipant(conn, resource, start.xid)
        await participant.begin(start.durability, start.lock_wait)
        self.add_branch(participant, resource, participant.kind, start.bqual)
        return participant.conn

    def redis(self, store: str = "default") -> AsyncRedisBranch:
        """The branch staging this transaction's writes to the Redis store ``store``."""
        branch = self._stores.get(store)
        if branch is None:
            start = self.next_branch()
            context = self._context
            branch = AsyncRedisBranch(
                context.backend, context.coordinator.namespace, store, context.registered_stores
            )
            self._stores[store] = branch
            self.add_branch(branch, branch.resource, branch.kind, start.bqual)
        return branch

    def remote(
        self, url: str, *, secret: Any, resource: str = "remote", **options: Any
    ) -> AsyncRemoteParticipant:
        """A branch in another interlock service's database, joined over HTTP.

        Make the call with ``await branch.request("POST", "/path", json=...)``: the remote
        runs it in a branch and prepares it before answering (docs/transactions.md,
        *Remote participants*). Options: ``prefix``, ``timeout``, ``client``.
        """
        from interlock._async.txn.participants.remote import AsyncRemoteParticipant

        start = self.next_branch()
        options.setdefault("timeout", self.timeout)
        participant = AsyncRemoteParticipant(
            url, secret=secret, xid=start.xid, resource=resource, **options
        )
        self.add_branch(participant, resource, participant.kind, start.bqual)
        return participant

    def enlist(
        self, participant: AsyncParticipant, *, resource: str, kind: str = "custom"
    ) -> AsyncParticipant:
        """Add a custom participant (see :class:`AsyncParticipant`)."""
        self.add_branch(participant, resource, kind, self.next_branch().bqual)
        return participant

    def on_commit(self, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` once the transaction has committed (e.g. invalidate caches).

        With the async API a callback may be a coroutine function; it is awaited.
        """
        self._on_commit.append(callback)

    async def abort_for(self, exc: BaseException | None) -> TransactionBlocked | None:
        """Abort because the work failed with ``exc``; the error to raise instead, if any.

        When ``exc`` (or an exception it was raised from) is a branch's lock wait that hit
        the deadline, the abort's reason is ``lock_timeout``, a WARNING names the likely
        holder and the fix, and the :class:`~interlock.TransactionBlocked` to raise is
        returned. Otherwise the reason is ``client`` and None is returned.
        """
        branch = self._blocked_branch(exc)
        if branch is None:
            await self._abort("client")
            return None
        detail = (
            f"a statement on {branch.resource} waited for a row lock until the deadline "
            f"({self.timeout:g}s, lock wait timeout): most likely the row is held by a "
            "prepared branch of an unfinished transaction (a coordinator crash or a lost "
            "decision log); run `interlock txn recover` or let the recovery worker resolve "
            "it (pg_prepared_xacts / XA RECOVER list such branches)"
        )
        event(
            WARNING,
            "txn-blocked",
            f"transaction {self.name} blocked: {detail}",
            name=self.name,
            xid=self.xid,
            resource=branch.resource,
            reason="lock_timeout",
            **{"error.type": type(exc).__qualname__, "error.message": str(exc)},
        )
        await self._abort("lock_timeout")
        return TransactionBlocked(
            f"transaction {self.name} ({self.xid}) aborted (lock_timeout): {detail}",
            resource=branch.resource,
            xid=self.xid,
        )

    def _blocked_branch(self, exc: BaseException | None) -> AsyncBranch | None:
        seen = 0
        while exc is not None and seen < 8:  # the app's error, or one it was raised from
            for branch in self._branches:
                participant = branch.participant
                if isinstance(participant, LockWaitCapped) and participant.blocked(exc):
                    return branch
            exc, seen = exc.__cause__, seen + 1
        return None

    # -- the block -----------------------------------------------------------------------

    async def __aenter__(self) -> AsyncTransaction:
        event(
            DEBUG,
            "txn-started",
            f"transaction {self.name} started",
            name=self.name,
            xid=self.xid,
            state=self.state.value,
        )
        return self

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if self.state is not State.ACTIVE:
            return  # committed or aborted explicitly inside the block
        if exc is not None:
            blocked = await async_shielded(self.abort_for(exc))
            if blocked is not None:
                raise blocked from exc
            return
        await self.commit()

    def __repr__(self) -> str:
        return f"<Transaction {self.name} {self.xid} {self.state.value}>"
