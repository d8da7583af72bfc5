"""The coordinator of one transaction: how its enlisted branches end, together.

:class:`AsyncCoordinator` is the base of ``AsyncTransaction`` (which adds enlisting and
the context manager); it gets a :class:`CoordinatorContext`, not the manager. A commit,
after the start-up check (``_ready``):

1. ``_prepare``: every branch votes concurrently; a branch that refuses, fails or has not
   voted by the deadline aborts the transaction (presumed abort: nothing was logged);
2. ``_decide_commit``: records ``commit`` (:mod:`interlock._async.txn.decide`: in the
   decision log, durable, first decision wins; or with a last resource's own COMMIT);
3. ``_phase_two``: commits every branch; a branch that cannot be reached is left to
   recovery, which finds the decision in the log (the transaction is committed: the block
   does not raise).

A lone branch that can commit in one phase (``AsyncOnePhase``) skips all of that
(``_commit_one_phase``): its own commit is the decision. Every move is checked by
:func:`interlock.txn._state.advance` and reported (``txn-*`` events, ``interlock_txn_*``
metrics, the request's log line).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable  # noqa: F401, RUF100 (sync twin: unused)
from dataclasses import dataclass, field
from typing import Any

from interlock import _context
from interlock._async.txn.branch import AsyncBranch, AsyncOnePhase
from interlock._async.txn.decide import DecisionContext, commit_last, last_resource, log_decision
from interlock._concurrency import async_call, async_call_all, async_shielded
from interlock._keys import validate_name
from interlock._tracing import Span, Tracer
from interlock.errors import (
    ConfigError,
    DurabilityError,
    HeuristicOutcome,
    TransactionAborted,
    TransactionError,
    TransactionInDoubt,
)
from interlock.metrics import Metrics
from interlock.txn._events import event, heuristic_outcome, in_doubt
from interlock.txn._records import Decision
from interlock.txn._state import State, Vote, abort_error, abort_reason, advance
from interlock.txn._xid import new_gtrid

DEBUG, INFO, WARNING, ERROR = logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR
# span names (docs/tracing.md)
TXN_SPAN, PREPARE_SPAN = "interlock.txn", "interlock.txn.prepare"
DECIDE_SPAN, COMMIT_SPAN = "interlock.txn.decide", "interlock.txn.commit"
ABORT_SPAN = "interlock.txn.abort"


@dataclass(frozen=True, slots=True)
class CoordinatorContext:
    """What a transaction's coordinator needs from the instance's transaction manager.

    Attributes:
        namespace: the deployment's namespace (part of every transaction id).
        coordinator_id: this process's id (part of every transaction id).
        metrics: the instance's metrics (``interlock_txn_*``).
        decisions: the decision log and the queue of completed decisions to remove.
        ready: the start-up check, run before the first decision.
        tracer: the instance's spans (``interlock.txn`` and its phases, docs/tracing.md).
    """

    namespace: str
    coordinator_id: str
    metrics: Metrics
    decisions: DecisionContext
    ready: Callable[[], Awaitable[None]]
    tracer: Tracer = field(default_factory=Tracer)


class AsyncCoordinator:
    """Commit or abort of one transaction's branches (see ``AsyncTransaction``)."""

    def __init__(self, context: CoordinatorContext, name: str, timeout: float) -> None:
        self.name = validate_name("transaction", name)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ConfigError(f"timeout={timeout!r} is invalid; pass seconds > 0")
        self._coordination = context
        self.timeout = float(timeout)
        self.started = time.time()
        self.xid = new_gtrid(context.namespace, context.coordinator_id, self.started)
        self.state = State.ACTIVE
        self.reason: str | None = None
        self._deadline = time.monotonic() + self.timeout
        self._branches: list[AsyncBranch] = []
        self._on_commit: list[Callable[[], Any]] = []
        self._label = context.metrics.label("interlock_txn_total", "txn", self.name)
        self._span: Span = context.tracer.start(
            TXN_SPAN,
            {"interlock.txn.name": self.name, "interlock.txn.xid": self.xid,
             "interlock.txn.timeout": self.timeout},
        )  # fmt: skip

    def _require(self, state: State) -> None:
        if self.state is not state:
            raise TransactionError(
                f"transaction {self.name} ({self.xid}) is {self.state.value}, not {state.value}"
            )

    def _move(self, state: State) -> None:
        self.state = advance(self.state, state)
        if state is State.IN_DOUBT:
            self._span.set("interlock.txn.outcome", "in_doubt")
            self._span.error("TransactionInDoubt")
            self._span.end()

    def _phase(self, name: str, branches: list[AsyncBranch]) -> Any:
        """The span of one phase, a child of the transaction's (docs/tracing.md)."""
        return self._coordination.tracer.span(
            name, participant_attributes(branches), parent=self._span
        )

    # -- commit ----------------------------------------------------------------------------

    async def commit(self) -> None:
        """Commit (two-phase when there are branches).

        Raises:
            TransactionTimeout: a branch did not vote before the deadline.
            TransactionAborted: a branch voted no or failed; everything was rolled back.
            TransactionInDoubt: the decision could not be recorded nor read back.
            HeuristicOutcome: a branch was resolved by hand against the decision.
        """
        self._require(State.ACTIVE)
        if not self._branches:
            self._move(State.COMMITTED)
            self._finished("committed")
            return
        await self._ready()
        lone = self._branches[0] if len(self._branches) == 1 else None
        if lone is not None and isinstance(lone.participant, AsyncOnePhase):
            await self._commit_one_phase(lone, lone.participant)
            return
        last = last_resource(self._branches, self._coordination.decisions.log)
        others = [b for b in self._branches if b is not last]
        with self._phase(PREPARE_SPAN, others) as span:
            try:
                await self._prepare(others)
            finally:
                span.set("interlock.txn.votes", [(b.vote or Vote.TIMEOUT).value for b in others])
        await self._decide_commit(others, last)
        self._move(State.COMMITTING)
        with self._phase(COMMIT_SPAN, others):
            await async_shielded(self._phase_two(others))

    async def _ready(self) -> None:
        """The start-up check; when it fails nothing is decided: roll the branches back."""
        try:
            await self._coordination.ready()
        except BaseException as exc:
            why = "durability" if isinstance(exc, DurabilityError) else "error"
            if isinstance(exc, Exception):
                self._check_failed(why, exc)
            await async_shielded(self._abort(why))
            raise

    async def _prepare(self, branches: list[AsyncBranch]) -> None:
        """Phase one: ``branches`` vote concurrently before the deadline; a refusal, an
        error or a missing vote aborts (presumed abort: nothing was logged)."""
        self._move(State.PREPARING)
        started = time.monotonic()
        remaining = self._deadline - started
        prepares = [b.prepare for b in branches]
        results = await async_call_all(prepares, remaining) if remaining > 0 else []
        self._observe("prepare", started)
        votes = [b.vote or Vote.TIMEOUT for b in branches]
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

    async def _decide_commit(self, prepared: list[AsyncBranch], last: AsyncBranch | None) -> None:
        """Record ``commit`` for the ``prepared`` branches (with ``last``'s own COMMIT, if
        there is a last resource); abort if recovery's abort was recorded first."""
        # The last resource is not listed: its fate is the decision row's own.
        decision = Decision(
            self.xid, self.name, "commit", time.time(), tuple(b.ref() for b in prepared)
        )
        winner = await self._record(decision, last)
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

    async def _record(self, decision: Decision, last: AsyncBranch | None) -> Decision:
        """Record ``decision`` (by committing ``last`` with it, if there is a last
        resource) and return the decision that won."""
        decisions = self._coordination.decisions
        started = time.monotonic()
        winner: Decision | None
        try:
            with self._phase(DECIDE_SPAN, [last] if last is not None else []) as span:
                span.set("interlock.txn.last_resource", last.resource if last else None)
                if last is None:
                    winner = await log_decision(decisions, decision)
                else:
                    winner = await commit_last(decisions, last, decision)
                span.set("interlock.txn.decision", winner.outcome if winner else "vote_no")
        except TransactionInDoubt:
            self._move(State.IN_DOUBT)
            raise
        if winner is None:  # the last resource refused: rolled back, nothing decided
            await self._abort("vote_no")
            raise self._aborted_error("vote_no", None)
        self._observe("decide", started)
        return winner

    async def _phase_two(self, branches: list[AsyncBranch]) -> State:
        """Phase two: commit ``branches``; one that fails is left to recovery (in doubt),
        a heuristic outcome is raised once the others committed."""
        started = time.monotonic()
        results = await async_call_all([b.commit for b in branches], None)
        self._observe("commit", started)
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
            # Removed with the next decision, or at close.
            self._coordination.decisions.completed.add([self.xid])
        self._finished("committed")
        await self._run_on_commit()
        if heuristics:
            for error in heuristics:
                self._heuristic(error)
            raise heuristics[0]
        return self.state

    async def _commit_one_phase(self, branch: AsyncBranch, participant: AsyncOnePhase) -> None:
        """The only branch commits without prepare and without a logged decision: its own
        commit is the decision, so nothing can be left in doubt for recovery."""
        self._move(State.PREPARING)
        if time.monotonic() > self._deadline:
            await self._abort("timeout")
            raise self._aborted_error("timeout", None)
        started = time.monotonic()
        try:
            with self._phase(COMMIT_SPAN, [branch]) as span:
                span.set("interlock.txn.one_phase", True)
                committed = await participant.commit_one_phase(branch.xid)
        except Exception as exc:
            self._move(State.IN_DOUBT)
            raise in_doubt(
                self.name,
                self.xid,
                exc,
                resource=branch.resource,
                reason="commit_unknown",
                summary=f": one-phase commit on {branch.resource} failed, outcome unknown",
                detail=f": the one-phase commit on {branch.resource} failed ({exc}); "
                "whether it committed is unknown",
            ) from exc
        self._observe("commit", started)
        if not committed:
            branch.vote = Vote.NO
            await self._abort("vote_no")
            raise self._aborted_error("vote_no", None)
        branch.vote = Vote.YES
        for state in (State.PREPARED, State.COMMITTING, State.COMMITTED):
            self._move(state)
        branch.event(DEBUG, "txn-branch-committed", f"{branch.resource} committed in one phase")
        self._finished("committed")
        await self._run_on_commit()

    async def _run_on_commit(self) -> None:
        for callback in self._on_commit:
            try:
                await async_call(callback)  # async callbacks are awaited (async API)
            except Exception:  # the transaction is committed; a hook must not undo that
                logging.getLogger("interlock.txn").exception("on_commit callback failed")

    # -- abort -----------------------------------------------------------------------------

    async def abort(self, reason: str = "client") -> None:
        """Roll every branch back (``reason`` is the metric label: client by default)."""
        self._require(State.ACTIVE)
        await self._abort(reason)

    async def _abort(self, reason: str) -> State:
        self._move(State.ABORTING)
        self.reason = reason
        started = time.monotonic()
        with self._phase(ABORT_SPAN, self._branches) as span:
            span.set("interlock.txn.reason", reason)
            results = await async_call_all(
                [b.abort for b in self._branches], max(self.timeout, 1.0), cancel=False
            )
        self._observe("abort", started)
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
                self._heuristic(result)
        self._move(State.ABORTED)
        self._coordination.metrics.txn_aborts.labels(txn=self._label, reason=reason).inc()
        self._finished("aborted", reason)
        return self.state

    # -- reporting -------------------------------------------------------------------------

    def _observe(self, phase: str, started: float) -> None:
        """Observe the seconds since ``started`` (monotonic) as ``phase``'s duration."""
        phases = self._coordination.metrics.txn_phase
        phases.labels(txn=self._label, phase=phase).observe(time.monotonic() - started)

    def _heuristic(self, error: HeuristicOutcome) -> None:
        heuristic_outcome(self._coordination.metrics, self.name, self.xid, str(error))

    def _check_failed(self, reason: str, exc: Exception) -> None:
        """Say at ERROR why the start-up check refused this transaction, with the fix (the
        exception's message), before the abort hides it behind a status code."""
        action = "txn-log-not-durable" if reason == "durability" else "txn-check-failed"
        event(
            ERROR,
            action,
            f"transaction {self.name} refused before prepare: {exc}",
            name=self.name,
            xid=self.xid,
            reason=reason,
            **{"error.type": type(exc).__name__, "error.message": str(exc)},
        )

    def _finished(self, outcome: str, reason: str | None = None) -> None:
        self._coordination.metrics.txn_total.labels(txn=self._label, outcome=outcome).inc()
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
        span = self._span
        if span.recording:
            span.update(participant_attributes(self._branches))
            span.update({"interlock.txn.outcome": outcome, "interlock.txn.reason": reason})
            if outcome == "aborted" and reason != "client":
                span.error("TransactionAborted", f"aborted: {reason}")
            span.end()

    def _aborted_error(self, reason: str, cause: BaseException | None) -> TransactionAborted:
        refused = [b.resource for b in self._branches if b.vote is not Vote.YES]
        return abort_error(
            self.name, self.xid, reason, timeout=self.timeout, refused=refused, cause=cause
        )


def participant_attributes(branches: list[AsyncBranch]) -> dict[str, Any]:
    """The 2PC participants of a span: how many, their resource names and kinds."""
    return {
        "interlock.txn.participants": len(branches),
        "interlock.txn.resources": [b.resource for b in branches],
        "interlock.txn.kinds": [b.kind for b in branches],
    }
