"""Recovery of a namespace's in-doubt transactions: one pass over the registered resources.

A pass (:meth:`AsyncRecovery.run`) lists the prepared branches of this namespace on every
registered resource and resolves each against the decision log: commit if the decision
is commit; roll back if it is abort; if there is none and the transaction is older than
``safety`` seconds, first log an ``abort`` tombstone (the first decision wins, so a
coordinator still alive cannot commit afterwards), then follow whichever decision won.
Then it checks every logged decision's branches: a branch whose fate contradicts the
decision is a heuristic outcome (ERROR log, counted); decisions whose branches are all
resolved are removed from the log. The pass publishes the in-doubt gauges.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from interlock._async.txn.log import AsyncDecisionLog
from interlock.metrics import Metrics
from interlock.txn._events import event, heuristic_outcome
from interlock.txn._records import (
    BranchRef,
    Decision,
    Heuristic,
    PreparedBranch,
    RecoveryReport,
)
from interlock.txn._state import Action, heuristic, recovery_action

DEFAULT_SAFETY = 60.0
TOMBSTONE_TTL = 86_400.0  # abort tombstones outlive any coordinator that could still decide
UNNAMED = "unknown"  # label of undecided branches: their name is only in the coordinator


class AsyncResource(Protocol):
    """Recovery's view of a resource manager holding prepared branches."""

    name: str
    kind: str

    async def check(self) -> None: ...
    async def prepared(self, namespace: str) -> list[PreparedBranch]: ...
    async def finish(self, branch: PreparedBranch, commit: bool) -> str: ...
    async def fate(self, gtrid: str, ref: BranchRef) -> str: ...
    async def cleanup(self) -> None: ...
    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class RecoveryContext:
    """What recovery needs from the instance's transaction manager.

    Attributes:
        namespace: recovery touches only this namespace's transactions.
        log: the decision log (read, tombstones written, resolved decisions removed).
        resources: the registered resources by name (the manager's own mapping: one
            registered later is in the next pass).
        metrics: the instance's metrics (recovered count, in-doubt gauges).
    """

    namespace: str
    log: AsyncDecisionLog
    resources: Mapping[str, AsyncResource]
    metrics: Metrics


class AsyncRecovery:
    """Recovery passes over ``context``'s resources and decision log (one at a time:
    the manager serializes them)."""

    def __init__(self, context: RecoveryContext) -> None:
        self._context = context
        self._in_doubt_labels: set[str] = set()

    async def run(self, safety: float, settle: float = 0.0) -> RecoveryReport:
        """One pass (see the module docstring); ``safety`` as for ``recover``, ``settle``
        as for :func:`~interlock.txn._state.recovery_action`."""
        context = self._context
        report = RecoveryReport()
        now = time.time()
        decisions = {d.xid: d for d in await context.log.list()}
        unreachable: set[str] = set()
        left: dict[str, float] = {}  # gtrid -> created, transactions still unresolved
        done: set[tuple[str, str, str]] = set()  # branches this pass committed/rolled back
        for resource in list(context.resources.values()):
            try:
                branches = await resource.prepared(context.namespace)
            except Exception as exc:
                unreachable.add(resource.name)
                report.errors.append(f"{resource.name}: {exc}")
                continue
            for branch in branches:
                if await self._resolve(
                    resource, branch, decisions, (safety, settle), now, report, left
                ):
                    done.add((resource.name, branch.gtrid, branch.bqual))
            try:
                await resource.cleanup()
            except Exception as exc:
                report.errors.append(f"{resource.name} cleanup: {exc}")
        forget = []
        for decision in decisions.values():
            if decision.xid in left:
                continue
            if decision.outcome == "abort" and not decision.branches:
                if now - decision.created > TOMBSTONE_TTL:
                    forget.append(decision.xid)
                continue
            if await self._complete(decision, unreachable, done, report):
                forget.append(decision.xid)
            else:
                left[decision.xid] = decision.created
        if forget:
            await context.log.forget(forget)
            report.forgotten.extend(forget)
        self._publish_in_doubt(report, left, decisions, now)
        return report

    async def _resolve(
        self,
        resource: AsyncResource,
        branch: PreparedBranch,
        decisions: dict[str, Decision],
        windows: tuple[float, float],
        now: float,
        report: RecoveryReport,
        left: dict[str, float],
    ) -> bool:
        """Resolve one prepared branch; True if this call committed or rolled it back."""
        context = self._context
        label = f"{branch.gtrid}:{branch.bqual}@{resource.name}"
        decision = decisions.get(branch.gtrid)
        safety, settle = windows
        action = recovery_action(
            decision.outcome if decision else None, now - branch.created, safety, settle
        )
        if action is Action.WAIT:
            report.pending.append(label)
            left[branch.gtrid] = branch.created
            return False
        try:
            if action is Action.DECIDE_ABORT or decision is None:
                decision = await context.log.decide(Decision(branch.gtrid, "", "abort", now))
                decisions[branch.gtrid] = decision
                event(
                    logging.WARNING,
                    "txn-presumed-abort",
                    f"no decision for {branch.gtrid} "
                    f"after {now - branch.created:.1f}s: presumed aborted",
                    xid=branch.gtrid,
                    outcome=decision.outcome,
                )
            commit = decision.outcome == "commit"
            result = await resource.finish(branch, commit)
        except Exception as exc:
            report.errors.append(f"{label}: {exc}")
            left[branch.gtrid] = branch.created
            return False
        if result == "busy":
            report.pending.append(label)
            left[branch.gtrid] = branch.created
            return False
        if result != "done":
            return False  # gone meanwhile: its fate is checked with the decision
        action_name = "committed" if commit else "aborted"
        (report.committed if commit else report.aborted).append(label)
        context.metrics.txn_recovered.labels(action=action_name).inc()
        event(
            logging.WARNING,
            "txn-recovered",
            f"recovery {action_name} {label}",
            name=decision.name or None,
            xid=branch.gtrid,
            resource=resource.name,
            branch=branch.bqual,
            outcome=decision.outcome,
        )
        return True

    async def _complete(
        self,
        decision: Decision,
        unreachable: set[str],
        done: set[tuple[str, str, str]],
        report: RecoveryReport,
    ) -> bool:
        """Check the fate of every branch of a decision; True when nothing is left."""
        context = self._context
        complete = True
        for ref in decision.branches:
            if (ref.resource, decision.xid, ref.bqual) in done:
                continue  # resolved by this pass, as the decision says
            resource = context.resources.get(ref.resource)
            if resource is None or ref.resource in unreachable:
                if resource is None:
                    report.errors.append(
                        f"{decision.xid}: resource {ref.resource!r} is not registered for recovery"
                    )
                    if ref.resource not in report.unregistered:
                        report.unregistered.append(ref.resource)
                complete = False
                continue
            try:
                fate = await resource.fate(decision.xid, ref)
            except Exception as exc:
                report.errors.append(f"{decision.xid}:{ref.bqual}@{ref.resource}: {exc}")
                complete = False
                continue
            if fate == "prepared":
                complete = False
            elif heuristic(decision.outcome, fate):
                found = Heuristic(
                    decision.xid, decision.name, ref.resource, ref.bqual, decision.outcome, fate
                )
                report.heuristics.append(found)
                heuristic_outcome(
                    context.metrics,
                    decision.name,
                    decision.xid,
                    f"branch {ref.bqual} on {ref.resource} was {fate} although the "
                    f"decision is {decision.outcome}",
                )
        return complete

    def _publish_in_doubt(
        self,
        report: RecoveryReport,
        left: dict[str, float],
        decisions: dict[str, Decision],
        now: float,
    ) -> None:
        counts: dict[str, int] = {}
        for gtrid in left:
            decision = decisions.get(gtrid)
            name = decision.name if decision is not None and decision.name else UNNAMED
            counts[name] = counts.get(name, 0) + 1
        report.in_doubt = counts
        report.oldest_in_doubt = max((now - c for c in left.values()), default=0.0)
        self.set_gauges(counts, report.oldest_in_doubt)

    def set_gauges(self, counts: dict[str, int], oldest: float) -> None:
        """Publish the in-doubt gauges: ``counts`` by transaction name (names no longer
        counted go to 0) and the age of the oldest unresolved transaction."""
        metrics = self._context.metrics
        labels = {metrics.label("interlock_txn_total", "txn", n): c for n, c in counts.items()}
        for stale in self._in_doubt_labels - set(labels):
            metrics.txn_in_doubt.labels(txn=stale).set(0)
        for label, count in labels.items():
            metrics.txn_in_doubt.labels(txn=label).set(count)
        self._in_doubt_labels = set(labels)
        metrics.txn_oldest_in_doubt.set(max(oldest, 0.0))

    async def in_doubt(self) -> dict[str, Any]:
        """What recovery would look at now: logged decisions and prepared branches."""
        context = self._context
        decisions = await context.log.list()
        by_xid = {d.xid: d for d in decisions}
        now = time.time()
        branches = []
        errors = []
        for resource in list(context.resources.values()):
            try:
                found = await resource.prepared(context.namespace)
            except Exception as exc:
                errors.append(f"{resource.name}: {exc}")
                continue
            for b in found:
                decision = by_xid.get(b.gtrid)
                branches.append(
                    {
                        "resource": resource.name,
                        "xid": b.gtrid,
                        "branch": b.bqual,
                        "age": round(now - b.created, 3),
                        "decision": decision.outcome if decision else None,
                        "name": decision.name if decision else None,
                    }
                )
        return {
            "decisions": [
                {
                    "xid": d.xid,
                    "name": d.name,
                    "outcome": d.outcome,
                    "age": round(now - d.created, 3),
                    "branches": [f"{b.bqual}@{b.resource}" for b in d.branches],
                }
                for d in decisions
            ],
            "prepared": branches,
            "errors": errors,
        }
