"""The transaction manager of one interlock instance: decision log, recovery resources,
recovery passes and the leader-elected recovery worker.

Recovery (:meth:`AsyncTransactionManager.recover`) lists the prepared branches of this
namespace on every registered resource and resolves each against the decision log:
commit if the decision is commit; roll back if it is abort; if there is none and the
transaction is older than ``safety`` seconds, first log an ``abort`` tombstone (the first
decision wins, so a coordinator still alive cannot commit afterwards), then follow
whichever decision won. Then it checks every logged decision's branches: a branch whose
fate contradicts the decision is a heuristic outcome (ERROR log, counted); decisions
whose branches are all resolved are removed from the log.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from interlock._async.backend import AsyncBackend
from interlock._async.lock import AsyncLease, AsyncLock
from interlock._async.txn import AsyncTransaction
from interlock._async.txn_log import (
    AsyncDecisionLog,
    create_decision_log,
    validate_durability,
)
from interlock._async.txn_redis import AsyncRedisResource, AsyncRedisStore
from interlock._keys import validate_name
from interlock._synchronization import AsyncEvent, AsyncMutex, AsyncWorker
from interlock.errors import ConfigError
from interlock.metrics import Metrics
from interlock.txn._events import event
from interlock.txn._records import (
    BranchRef,
    Decision,
    Heuristic,
    PreparedBranch,
    RecoveryReport,
)
from interlock.txn._state import Action, heuristic, recovery_action
from interlock.txn._xid import default_coordinator_id, validate_coordinator_id

if TYPE_CHECKING:
    from interlock._async.txn_postgres import Connect

logger = logging.getLogger("interlock.txn")
DEFAULT_TIMEOUT = 10.0
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


class AsyncTransactionManager:
    """Transactions of one interlock instance (``AsyncInterlock.transactions``).

    Args:
        backend: the coordination backend (Redis decision log, Redis participant).
        namespace: the deployment's namespace; recovery touches only its transactions.
        metrics: the instance's metrics.
        lock: the instance's lock factory (leader election of the recovery worker).
        decision_log: ``None`` (the backend), a ``postgresql://`` URL or a log object.
        durability: ``strict`` or ``relaxed`` (see :mod:`interlock._async.txn_log`).
        coordinator_id: up to 10 characters naming this process in transaction ids
            (``INTERLOCK_COORDINATOR_ID``; default: host name prefix and pid).
    """

    def __init__(
        self,
        backend: AsyncBackend,
        namespace: str,
        metrics: Metrics,
        lock: Callable[..., AsyncLock],
        *,
        decision_log: object = None,
        durability: str = "strict",
        coordinator_id: str | None = None,
    ) -> None:
        self.backend = backend
        self.namespace = namespace
        self.metrics = metrics
        self.durability = validate_durability(durability)
        self.coordinator_id = validate_coordinator_id(
            coordinator_id or os.environ.get("INTERLOCK_COORDINATOR_ID") or default_coordinator_id()
        )
        self.log: AsyncDecisionLog = create_decision_log(
            decision_log, backend, namespace, durability
        )
        self.resources: dict[str, AsyncResource] = {}
        self.add_resource(AsyncRedisResource(backend, namespace))
        self.registered_stores: set[str] = set()
        self._completed: list[str] = []
        self._lock = lock
        self._ready = False
        self._ready_mutex = AsyncMutex()
        self._recovery_mutex = AsyncMutex()
        self._in_doubt_labels: set[str] = set()
        self._worker = AsyncWorker(self._recovery_loop, "interlock-txn-recovery")
        self._worker_wakeup: AsyncEvent | None = None
        self._interval = 10.0
        self._safety = DEFAULT_SAFETY
        self._closing = False

    # -- set-up --------------------------------------------------------------------------

    def transaction(self, name: str, timeout: float | None = None) -> AsyncTransaction:
        return AsyncTransaction(self, name, DEFAULT_TIMEOUT if timeout is None else timeout)

    def store(self, name: str) -> AsyncRedisStore:
        """Read access to the committed values of the Redis store ``name``."""
        return AsyncRedisStore(self.backend, self.namespace, name)

    def add_resource(self, resource: AsyncResource) -> None:
        """Register a resource for recovery (its name is what branches were enlisted as)."""
        validate_name("resource", resource.name)
        if resource.name in self.resources:
            raise ConfigError(f"a recovery resource named {resource.name!r} is registered")
        self.resources[resource.name] = resource

    def add_postgres(self, name: str, connect: str | Connect) -> None:
        """Let recovery resolve branches enlisted as ``tx.postgres(conn, resource=name)``.

        Args:
            connect: a ``postgresql://`` URL, or a function returning a new connection.
        """
        from interlock._async.txn_postgres import AsyncPostgresResource

        self.add_resource(AsyncPostgresResource(name, connect))

    def add_mysql(
        self, name: str, connect: Callable[[], Any], *, retention: float | None = None
    ) -> None:
        """Let recovery resolve branches enlisted as ``tx.mysql(conn, resource=name)``.

        Args:
            connect: a function returning a new PyMySQL connection.
            retention: seconds commit markers are kept for heuristic checks (7 days).
        """
        from interlock._async.txn_mysql import AsyncMySQLResource

        self.add_resource(AsyncMySQLResource(name, connect, retention))

    async def ready(self) -> None:
        """Run the start-up check once, before the first decision (see :meth:`check`)."""
        if self._ready:
            return
        async with self._ready_mutex:
            if not self._ready:
                await self._check()
                self._ready = True

    async def check(self) -> None:
        """Check the decision log and every registered resource now (the start-up check,
        otherwise run before the first decision). Creates the PostgreSQL decision table
        and MySQL commit-marker tables when missing.

        Raises:
            DurabilityError: the decision log cannot promise durable decisions.
            ConfigError: a resource cannot take part (no prepared transactions, no
                XA RECOVER privilege, ...); the message says how to fix it.
        """
        async with self._ready_mutex:
            await self._check()
            self._ready = True

    async def _check(self) -> None:
        await self.log.check()
        for resource in list(self.resources.values()):
            await resource.check()

    # -- completed transactions -----------------------------------------------------------

    def completed(self, xids: list[str]) -> None:
        """Queue decisions of fully committed transactions for removal from the log."""
        self._completed.extend(xids)

    def take_completed(self) -> list[str]:
        """The queued decisions to remove (the caller removes them with its next write)."""
        taken, self._completed = self._completed, []
        return taken

    async def flush_completed(self) -> None:
        """Remove the queued decisions now (at close; otherwise the next decision does)."""
        taken = self.take_completed()
        if taken:
            try:
                await self.log.forget(taken)
            except Exception:  # recovery removes them after checking every branch
                logger.debug("removing completed decisions failed", exc_info=True)

    # -- observability -------------------------------------------------------------------

    def observe(self, label: str, phase: str, seconds: float) -> None:
        self.metrics.txn_phase.labels(txn=label, phase=phase).observe(seconds)

    def heuristic(self, name: str, xid: str, detail: str) -> None:
        self.metrics.txn_recovered.labels(action="heuristic").inc()
        event(
            logging.ERROR,
            "txn-heuristic",
            f"heuristic outcome: {detail}",
            name=name,
            xid=xid,
            outcome="heuristic",
        )

    # -- recovery ------------------------------------------------------------------------

    async def recover(self, *, safety: float = DEFAULT_SAFETY) -> RecoveryReport:
        """Resolve this namespace's in-doubt transactions once (see the module docstring).

        Args:
            safety: seconds an undecided transaction is given before it is presumed
                aborted; keep it above your longest transaction timeout.

        Returns:
            What was committed, rolled back, left pending, and any heuristic outcomes.
        """
        async with self._recovery_mutex:
            await self.ready()
            await self.flush_completed()
            return await self._recover(safety)

    async def _recover(self, safety: float) -> RecoveryReport:
        report = RecoveryReport()
        now = time.time()
        decisions = {d.xid: d for d in await self.log.list()}
        unreachable: set[str] = set()
        left: dict[str, float] = {}  # gtrid -> created, transactions still unresolved
        done: set[tuple[str, str, str]] = set()  # branches this pass committed/rolled back
        for resource in self.resources.values():
            try:
                branches = await resource.prepared(self.namespace)
            except Exception as exc:
                unreachable.add(resource.name)
                report.errors.append(f"{resource.name}: {exc}")
                continue
            for branch in branches:
                if await self._resolve(resource, branch, decisions, safety, now, report, left):
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
            await self.log.forget(forget)
            report.forgotten.extend(forget)
        self._publish_in_doubt(report, left, decisions, now)
        return report

    async def _resolve(
        self,
        resource: AsyncResource,
        branch: PreparedBranch,
        decisions: dict[str, Decision],
        safety: float,
        now: float,
        report: RecoveryReport,
        left: dict[str, float],
    ) -> bool:
        """Resolve one prepared branch; True if this call committed or rolled it back."""
        label = f"{branch.gtrid}:{branch.bqual}@{resource.name}"
        decision = decisions.get(branch.gtrid)
        action = recovery_action(
            decision.outcome if decision else None, now - branch.created, safety
        )
        if action is Action.WAIT:
            report.pending.append(label)
            left[branch.gtrid] = branch.created
            return False
        try:
            if action is Action.DECIDE_ABORT or decision is None:
                decision = await self.log.decide(Decision(branch.gtrid, "", "abort", now))
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
        self.metrics.txn_recovered.labels(action=action_name).inc()
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
        complete = True
        for ref in decision.branches:
            if (ref.resource, decision.xid, ref.bqual) in done:
                continue  # resolved by this pass, as the decision says
            resource = self.resources.get(ref.resource)
            if resource is None or ref.resource in unreachable:
                if resource is None:
                    report.errors.append(
                        f"{decision.xid}: resource {ref.resource!r} is not registered for recovery"
                    )
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
                self.heuristic(
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
        self._set_gauges(counts, report.oldest_in_doubt)

    def _set_gauges(self, counts: dict[str, int], oldest: float) -> None:
        metrics = self.metrics
        labels = {metrics.label("interlock_txn_total", "txn", n): c for n, c in counts.items()}
        for stale in self._in_doubt_labels - set(labels):
            metrics.txn_in_doubt.labels(txn=stale).set(0)
        for label, count in labels.items():
            metrics.txn_in_doubt.labels(txn=label).set(count)
        self._in_doubt_labels = set(labels)
        metrics.txn_oldest_in_doubt.set(max(oldest, 0.0))

    async def in_doubt(self) -> dict[str, Any]:
        """What recovery would look at now: logged decisions and prepared branches."""
        decisions = await self.log.list()
        by_xid = {d.xid: d for d in decisions}
        now = time.time()
        branches = []
        errors = []
        for resource in self.resources.values():
            try:
                found = await resource.prepared(self.namespace)
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

    # -- the recovery worker -------------------------------------------------------------

    def start_recovery(self, *, interval: float = 10.0, safety: float = DEFAULT_SAFETY) -> None:
        """Run recovery every ``interval`` seconds in the background, in one process per
        deployment: the worker that holds the ``txn-recovery`` lock does the work."""
        if interval <= 0 or safety < 0:
            raise ConfigError("interval must be > 0 and safety ≥ 0 seconds")
        self._interval = interval
        self._safety = safety
        self._closing = False
        self._worker.start()

    async def _recovery_loop(self) -> None:
        wakeup = self._worker_wakeup = AsyncEvent()
        lease: AsyncLease | None = None
        ttl = max(self._interval * 3, 5.0)
        while not self._closing:
            try:
                if lease is not None and lease.lost:
                    lease = None
                if lease is None:
                    lease = await self._lock("txn-recovery", ttl=ttl).acquire(blocking=False)
                    if lease is not None:
                        event(
                            logging.INFO,
                            "txn-recovery-leader",
                            "this process now runs transaction recovery",
                            **{"interlock.lock.fence": lease.fence},
                        )
                if lease is not None:
                    report = await self.recover(safety=self._safety)
                    if report.errors:
                        logger.warning("recovery pass had errors: %s", "; ".join(report.errors))
                else:
                    self._set_gauges({}, 0.0)  # the leader reports them
            except Exception:
                logger.exception("transaction recovery pass failed")
            await wakeup.wait(self._interval)
            wakeup.clear()
        if lease is not None:
            try:
                await lease.release()
            except Exception:  # lost already; the next leader takes over after the TTL
                logger.debug("releasing the recovery lease failed", exc_info=True)

    async def aclose(self) -> None:
        await self.flush_completed()
        self._closing = True
        if self._worker_wakeup is not None:
            self._worker_wakeup.set()
        await self._worker.join(timeout=10.0)
        for resource in self.resources.values():
            try:
                await resource.aclose()
            except Exception:
                logger.debug("closing resource %s failed", resource.name, exc_info=True)
        await self.log.aclose()
