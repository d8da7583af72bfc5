"""Two-phase commit: the coordinator (``AsyncTransaction``) and its participants.

Created by ``AsyncInterlock.transaction(name, timeout=...)``. The app enlists branches —
``await tx.postgres(conn)``, ``await tx.mysql(conn)``, ``tx.redis(store)``, or any
:class:`AsyncParticipant` with ``tx.enlist`` — and does its work in them. A clean exit
commits:

1. prepare every branch concurrently; a branch that refuses, fails or has not voted by
   the deadline aborts the transaction (presumed abort: nothing was logged);
2. record ``commit`` in the decision log (durable, first decision wins);
3. commit every branch; a branch that cannot be reached is left to recovery, which
   finds the decision in the log (the transaction is committed: the block does not raise).

Last-resource commit: when the decision log is PostgreSQL and a PostgreSQL branch runs
on the log's own database, that branch is not prepared; step 2 inserts the decision row
through the branch's connection and commits it locally, so the branch's work and the
decision commit atomically in one COMMIT (docs/transactions.md, *Last-resource commit*).

An exception in the block aborts. The pure rules (states, votes) are in
:mod:`interlock.txn._state`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable  # noqa: F401, RUF100 (sync twin: unused)
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from interlock import _context
from interlock._async.txn_redis import AsyncRedisBranch
from interlock._keys import validate_name
from interlock._synchronization import async_call, async_call_all, async_shielded, async_sleep
from interlock.errors import (
    ConfigError,
    HeuristicOutcome,
    TransactionAborted,
    TransactionError,
    TransactionTimeout,
)
from interlock.txn._errors import TransactionInDoubt
from interlock.txn._events import event
from interlock.txn._records import BranchRef, Decision
from interlock.txn._state import State, Vote, abort_reason, advance
from interlock.txn._xid import branch_xid, new_gtrid

if TYPE_CHECKING:
    from interlock._async.txn_manager import AsyncTransactionManager
    from interlock._async.txn_remote import AsyncRemoteParticipant

DEBUG, INFO, WARNING, ERROR = logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR
_DECIDE_RETRIES = (0.05, 0.2)  # pauses between attempts to record a decision


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


@dataclass(slots=True)
class _Branch:
    participant: AsyncParticipant
    resource: str
    kind: str
    bqual: str
    xid: str
    vote: Vote | None = None

    def ref(self) -> BranchRef:
        return BranchRef(
            self.resource, self.kind, self.bqual, str(getattr(self.participant, "ref", "") or "")
        )


class AsyncTransaction:
    """One distributed transaction; use as an async context manager.

    Attributes:
        name: the transaction name (metric label).
        xid: the global transaction id (also in logs as ``interlock.txn.xid``).
        timeout: seconds from start within which every branch must have voted.
        state: the coordinator state (see :class:`interlock.txn.State`).
        reason: why it aborted (vote_no, timeout, error, client), when it did.
    """

    def __init__(self, manager: AsyncTransactionManager, name: str, timeout: float) -> None:
        self.name = validate_name("transaction", name)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ConfigError(f"timeout={timeout!r} is invalid; pass seconds > 0")
        self._manager = manager
        self.timeout = float(timeout)
        self.started = time.time()
        self.xid = new_gtrid(manager.namespace, manager.coordinator_id, self.started)
        self.state = State.ACTIVE
        self.reason: str | None = None
        self._deadline = time.monotonic() + self.timeout
        self._branches: list[_Branch] = []
        self._stores: dict[str, AsyncRedisBranch] = {}
        self._on_commit: list[Callable[[], Any]] = []
        self._label = manager.metrics.label("interlock_txn_total", "txn", self.name)

    # -- enlisting -----------------------------------------------------------------------

    def _next_branch(self) -> tuple[str, str]:
        self._require(State.ACTIVE)
        bqual = str(len(self._branches) + 1)
        return bqual, branch_xid(self.xid, bqual)

    def _add(self, participant: AsyncParticipant, resource: str, kind: str, bqual: str) -> None:
        validate_name("resource", resource)
        self._branches.append(
            _Branch(participant, resource, kind, bqual, branch_xid(self.xid, bqual))
        )
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
        from interlock._async.txn_postgres import AsyncPostgresParticipant

        bqual, xid = self._next_branch()
        participant = AsyncPostgresParticipant(conn, resource, last_resource)
        table = getattr(self._manager.log, "table", None) if last_resource else None
        await participant.begin(xid, table if isinstance(table, str) else None)
        self._add(participant, resource, participant.kind, bqual)
        return conn

    async def mysql(self, conn: Any, resource: str = "mysql") -> Any:
        """Run ``conn``'s next transaction as an XA branch (PyMySQL).

        Returns:
            ``conn``, now inside the branch: do the work with it, don't commit it.
        """
        from interlock._async.txn_mysql import AsyncMySQLParticipant

        bqual, xid = self._next_branch()
        participant = AsyncMySQLParticipant(conn, resource, xid)
        await participant.begin(self._manager.durability)
        self._add(participant, resource, participant.kind, bqual)
        return conn

    def redis(self, store: str = "default") -> AsyncRedisBranch:
        """The branch staging this transaction's writes to the Redis store ``store``."""
        branch = self._stores.get(store)
        if branch is None:
            bqual, _ = self._next_branch()
            manager = self._manager
            branch = AsyncRedisBranch(
                manager.backend, manager.namespace, store, manager.registered_stores
            )
            self._stores[store] = branch
            self._add(branch, branch.resource, branch.kind, bqual)
        return branch

    def remote(
        self, url: str, *, secret: Any, resource: str = "remote", **options: Any
    ) -> AsyncRemoteParticipant:
        """A branch in another interlock service's database, joined over HTTP.

        Make the call with ``await branch.request("POST", "/path", json=...)``: the remote
        runs it in a branch and prepares it before answering (docs/transactions.md,
        *Remote participants*). Options: ``prefix``, ``timeout``, ``client``.
        """
        from interlock._async.txn_remote import AsyncRemoteParticipant

        bqual, xid = self._next_branch()
        options.setdefault("timeout", self.timeout)
        participant = AsyncRemoteParticipant(
            url, secret=secret, xid=xid, resource=resource, **options
        )
        self._add(participant, resource, participant.kind, bqual)
        return participant

    def enlist(
        self, participant: AsyncParticipant, *, resource: str, kind: str = "custom"
    ) -> AsyncParticipant:
        """Add a custom participant (see :class:`AsyncParticipant`)."""
        bqual, _ = self._next_branch()
        self._add(participant, resource, kind, bqual)
        return participant

    def on_commit(self, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` once the transaction has committed (e.g. invalidate caches).

        With the async API a callback may be a coroutine function; it is awaited.
        """
        self._on_commit.append(callback)

    # -- outcome -------------------------------------------------------------------------

    def _require(self, state: State) -> None:
        if self.state is not state:
            raise TransactionError(
                f"transaction {self.name} ({self.xid}) is {self.state.value}, not {state.value}"
            )

    def _move(self, state: State) -> None:
        self.state = advance(self.state, state)

    async def commit(self) -> None:
        """Commit (two-phase when there are branches).

        Raises:
            TransactionTimeout: a branch did not vote before the deadline.
            TransactionAborted: a branch voted no or failed; everything was rolled back.
            TransactionInDoubt: the decision could not be recorded nor read back.
            HeuristicOutcome: a branch was resolved by hand against the decision.
        """
        self._require(State.ACTIVE)
        manager = self._manager
        if not self._branches:
            self._move(State.COMMITTED)
            self._finished("committed")
            return
        try:
            await manager.ready()
        except BaseException:
            await async_shielded(self._abort("error"))  # e.g. DurabilityError: nothing decided
            raise
        if len(self._branches) == 1:
            branch = self._branches[0]
            one_phase = getattr(branch.participant, "commit_one_phase", None)
            if one_phase is not None:
                await self._commit_one_phase(branch, one_phase)
                return
        last = self._last_resource()
        others = [b for b in self._branches if b is not last]
        self._move(State.PREPARING)
        started = time.monotonic()
        remaining = self._deadline - started
        if remaining > 0:
            results = await async_call_all([partial(self._prepare, b) for b in others], remaining)
        else:
            results = []
        manager.observe(self._label, "prepare", time.monotonic() - started)
        votes = [b.vote or Vote.TIMEOUT for b in others]
        reason = abort_reason(votes, time.monotonic() > self._deadline)
        if reason is not None:
            cause = next((r for r in results if isinstance(r, BaseException)), None)
            await self._abort(reason)
            raise self._aborted_error(reason, cause) from cause
        self._move(State.PREPARED)
        event(
            DEBUG,
            "txn-prepared",
            f"transaction {self.name} prepared",
            name=self.name,
            xid=self.xid,
            state=self.state.value,
        )
        # The last resource is not listed: its fate is the decision row's own.
        decision = Decision(
            self.xid, self.name, "commit", time.time(), tuple(b.ref() for b in others)
        )
        started = time.monotonic()
        deciding = self._decide(decision) if last is None else self._decide_last(last, decision)
        winner = await deciding
        manager.observe(self._label, "decide", time.monotonic() - started)
        if winner.outcome != "commit":
            # Recovery presumed us dead and logged an abort first; it wins.
            await self._abort("timeout")
            raise self._aborted_error("timeout", None)
        event(
            DEBUG,
            "txn-decided",
            f"transaction {self.name} decided commit",
            name=self.name,
            xid=self.xid,
            outcome="commit",
        )
        self._move(State.COMMITTING)
        await async_shielded(self._phase_two(others))

    def _last_resource(self) -> _Branch | None:
        """The branch that commits last with the decision: a PostgreSQL branch on the
        decision log's own database (same server start time and database name)."""
        identity = getattr(self._manager.log, "identity", None)
        if identity is None:
            return None
        for branch in self._branches:
            participant = branch.participant
            if (
                getattr(participant, "last_resource", False)
                and getattr(participant, "identity", None) == identity
                and hasattr(participant, "commit_last")
            ):
                return branch
        return None

    async def _decide_last(self, branch: _Branch, decision: Decision) -> Decision:
        """Record the decision by committing ``branch`` with the decision row in it;
        return the decision that won (an abort tombstone if recovery fenced us first)."""
        manager = self._manager
        log: Any = manager.log  # the PostgreSQL decision log (it has an identity)
        participant: Any = branch.participant
        forget = manager.take_completed()
        statements = log.last_resource_statements(decision, forget)
        try:
            committed = bool(await participant.commit_last(branch.xid, statements))
        except Exception as exc:
            manager.completed(forget)  # forgotten or not: deleting again is harmless
            # The COMMIT may or may not have happened: the decision row says which. Not
            # found proves nothing yet (the server may still be finishing the COMMIT).
            found = await self._read_decision()
            if found is None:
                self._in_doubt_last(branch, exc)
            elif found.outcome != "commit":
                branch.vote = Vote.NO
                return found
            committed = True
        if not committed:
            manager.completed(forget)
            branch.vote = Vote.NO
            found = await self._read_decision()
            if found is not None and found.outcome == "abort":
                return found  # recovery's tombstone won; the insert conflicted with it
            await self._abort("vote_no")
            raise self._aborted_error("vote_no", None)
        branch.vote = Vote.YES
        event(
            DEBUG,
            "txn-branch-committed",
            f"{branch.resource} committed with the decision (last resource)",
            name=self.name,
            xid=self.xid,
            resource=branch.resource,
            branch=branch.bqual,
        )
        return decision

    async def _read_decision(self) -> Decision | None:
        try:
            return await self._manager.log.get(self.xid)
        except Exception:
            return None

    def _in_doubt_last(self, branch: _Branch, exc: Exception) -> NoReturn:
        self._branch_in_doubt(
            branch,
            exc,
            reason="decision_unknown",
            summary=f" in doubt: the last-resource commit on {branch.resource} failed, "
            "outcome unknown",
            detail=f" is in doubt: the last-resource commit on {branch.resource} failed "
            f"({exc}); recovery will resolve it from the decision log",
        )

    def _branch_in_doubt(
        self, branch: _Branch, exc: Exception, *, reason: str, summary: str, detail: str
    ) -> NoReturn:
        """A branch's own commit failed midway: move to in doubt, log, record and raise."""
        self._move(State.IN_DOUBT)
        event(
            WARNING,
            "txn-in-doubt",
            f"transaction {self.name}{summary}",
            name=self.name,
            xid=self.xid,
            resource=branch.resource,
            state=self.state.value,
            reason=reason,
            **{"error.message": str(exc)},
        )
        _context.record("txn", name=self.name, xid=self.xid, outcome="in_doubt", reason=reason)
        raise TransactionInDoubt(
            f"transaction {self.name} ({self.xid}){detail}", xid=self.xid
        ) from exc

    async def _prepare(self, branch: _Branch) -> bool:
        try:
            yes = await branch.participant.prepare(branch.xid)
        except TransactionAborted as exc:
            branch.vote = Vote.NO if exc.reason == "vote_no" else Vote.ERROR
            raise
        except Exception:
            branch.vote = Vote.ERROR
            raise
        branch.vote = Vote.YES if yes else Vote.NO
        if yes:
            event(
                DEBUG,
                "txn-branch-prepared",
                f"{branch.resource} prepared",
                name=self.name,
                xid=self.xid,
                resource=branch.resource,
                branch=branch.bqual,
            )
        else:
            refusal = getattr(branch.participant, "refusal", None)
            event(
                INFO,
                "txn-branch-refused",
                f"{branch.resource} voted no",
                name=self.name,
                xid=self.xid,
                resource=branch.resource,
                branch=branch.bqual,
                refusal=None if refusal is None else ":".join(refusal),
            )
        return bool(yes)

    async def _decide(self, decision: Decision) -> Decision:
        manager = self._manager
        error: Exception | None = None
        for pause in (*_DECIDE_RETRIES, None):
            forget = manager.take_completed()
            try:
                # The first decision wins, so retrying after an unclear failure is safe.
                return await manager.log.decide(decision, forget)
            except Exception as exc:
                manager.completed(forget)  # maybe not forgotten: again next time
                error = exc
                if pause is not None:
                    await async_sleep(pause)
        self._move(State.IN_DOUBT)
        event(
            WARNING,
            "txn-in-doubt",
            f"transaction {self.name} in doubt: decision not recorded",
            name=self.name,
            xid=self.xid,
            state=self.state.value,
            reason="decision_unknown",
            **{"error.message": str(error)},
        )
        _context.record(
            "txn", name=self.name, xid=self.xid, outcome="in_doubt", reason="decision_unknown"
        )
        raise TransactionInDoubt(
            f"transaction {self.name} ({self.xid}) is in doubt: the decision log failed "
            f"({error}); recovery will resolve it once the log is reachable",
            xid=self.xid,
        ) from error

    async def _phase_two(self, branches: list[_Branch]) -> State:
        manager = self._manager
        started = time.monotonic()
        results = await async_call_all([partial(self._commit_branch, b) for b in branches], None)
        manager.observe(self._label, "commit", time.monotonic() - started)
        heuristics = [r for r in results if isinstance(r, HeuristicOutcome)]
        failed = [
            (b, r)
            for b, r in zip(branches, results, strict=True)
            if isinstance(r, Exception) and not isinstance(r, HeuristicOutcome)
        ]
        if failed:
            self._move(State.IN_DOUBT)
            event(
                WARNING,
                "txn-in-doubt",
                f"transaction {self.name} committed but "
                f"{len(failed)} branch(es) unfinished; recovery will complete them",
                name=self.name,
                xid=self.xid,
                state=self.state.value,
                outcome="commit",
                resource=",".join(b.resource for b, _ in failed),
                **{"error.message": str(failed[0][1])},
            )
        else:
            self._move(State.COMMITTED)
            manager.completed([self.xid])  # removed with the next decision, or at close
        self._finished("committed")
        await self._run_on_commit()
        if heuristics:
            for error in heuristics:
                manager.heuristic(self.name, self.xid, str(error))
            raise heuristics[0]
        return self.state

    async def _commit_one_phase(
        self, branch: _Branch, one_phase: Callable[[str], Awaitable[bool]]
    ) -> None:
        """The only branch commits without prepare and without a logged decision: its own
        commit is the decision, so nothing can be left in doubt for recovery."""
        self._move(State.PREPARING)
        if time.monotonic() > self._deadline:
            await self._abort("timeout")
            raise self._aborted_error("timeout", None)
        started = time.monotonic()
        try:
            committed = await one_phase(branch.xid)
        except Exception as exc:
            self._branch_in_doubt(
                branch,
                exc,
                reason="commit_unknown",
                summary=f": one-phase commit on {branch.resource} failed, outcome unknown",
                detail=f": the one-phase commit on {branch.resource} failed ({exc}); "
                "whether it committed is unknown",
            )
        self._manager.observe(self._label, "commit", time.monotonic() - started)
        if not committed:
            branch.vote = Vote.NO
            await self._abort("vote_no")
            raise self._aborted_error("vote_no", None)
        branch.vote = Vote.YES
        for state in (State.PREPARED, State.COMMITTING, State.COMMITTED):
            self._move(state)
        event(
            DEBUG,
            "txn-branch-committed",
            f"{branch.resource} committed in one phase",
            name=self.name,
            xid=self.xid,
            resource=branch.resource,
            branch=branch.bqual,
        )
        self._finished("committed")
        await self._run_on_commit()

    async def _run_on_commit(self) -> None:
        for callback in self._on_commit:
            try:
                await async_call(callback)  # async callbacks are awaited (async API)
            except Exception:  # the transaction is committed; a hook must not undo that
                logging.getLogger("interlock.txn").exception("on_commit callback failed")

    async def _commit_branch(self, branch: _Branch) -> None:
        await branch.participant.commit(branch.xid)
        event(
            DEBUG,
            "txn-branch-committed",
            f"{branch.resource} committed",
            name=self.name,
            xid=self.xid,
            resource=branch.resource,
            branch=branch.bqual,
        )

    async def abort(self, reason: str = "client") -> None:
        """Roll every branch back (``reason`` is the metric label: client by default)."""
        self._require(State.ACTIVE)
        await self._abort(reason)

    async def _abort(self, reason: str) -> State:
        manager = self._manager
        self._move(State.ABORTING)
        self.reason = reason
        started = time.monotonic()
        results = await async_call_all(
            [partial(self._abort_branch, b) for b in self._branches],
            max(self.timeout, 1.0),
            cancel=False,
        )
        manager.observe(self._label, "abort", time.monotonic() - started)
        left = [
            b.resource
            for b, r in zip(self._branches, results, strict=True)
            if isinstance(r, Exception) and not isinstance(r, HeuristicOutcome)
        ]
        if left:
            event(
                WARNING,
                "txn-abort-incomplete",
                f"transaction {self.name} aborted; "
                "recovery will roll back the remaining prepared branches",
                name=self.name,
                xid=self.xid,
                reason=reason,
                resource=",".join(left),
            )
        for result in results:
            if isinstance(result, HeuristicOutcome):
                manager.heuristic(self.name, self.xid, str(result))
        self._move(State.ABORTED)
        manager.metrics.txn_aborts.labels(txn=self._label, reason=reason).inc()
        self._finished("aborted", reason)
        return self.state

    async def _abort_branch(self, branch: _Branch) -> None:
        await branch.participant.abort(branch.xid)
        event(
            DEBUG,
            "txn-branch-aborted",
            f"{branch.resource} rolled back",
            name=self.name,
            xid=self.xid,
            resource=branch.resource,
            branch=branch.bqual,
        )

    def _finished(self, outcome: str, reason: str | None = None) -> None:
        self._manager.metrics.txn_total.labels(txn=self._label, outcome=outcome).inc()
        level = DEBUG if outcome == "committed" else INFO
        event(
            level,
            f"txn-{outcome}",
            f"transaction {self.name} {outcome}",
            name=self.name,
            xid=self.xid,
            state=self.state.value,
            outcome=outcome,
            reason=reason,
            **{"event.duration": int((time.time() - self.started) * 1e9)},
        )
        _context.record("txn", name=self.name, xid=self.xid, outcome=outcome, reason=reason)

    def _aborted_error(self, reason: str, cause: BaseException | None) -> TransactionAborted:
        if reason == "timeout":
            return TransactionTimeout(
                f"transaction {self.name} ({self.xid}) aborted: not every branch voted "
                f"within {self.timeout:g}s",
                reason=reason,
                xid=self.xid,
            )
        refused = [b.resource for b in self._branches if b.vote is not Vote.YES]
        detail = f": {cause}" if cause is not None else ""
        return TransactionAborted(
            f"transaction {self.name} ({self.xid}) aborted ({reason}) by "
            f"{', '.join(refused) or 'the coordinator'}{detail}",
            reason=reason,
            xid=self.xid,
        )

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
            await async_shielded(self._abort("client"))
            return
        await self.commit()

    def __repr__(self) -> str:
        return f"<Transaction {self.name} {self.xid} {self.state.value}>"
