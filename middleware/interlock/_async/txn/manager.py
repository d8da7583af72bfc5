"""The transaction manager of one interlock instance (``AsyncInterlock.transactions``).

It holds what the instance's transactions share: the decision log, the resources
registered for recovery, the queue of decisions to remove, and the metrics. Recovery
passes are :class:`~interlock._async.txn.recovery.AsyncRecovery`'s (the module docstring
there tells how in-doubt transactions are resolved); the leader-elected background worker
is :class:`~interlock._async.txn.worker.AsyncRecoveryWorker`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from interlock._async.backend.base import AsyncBackend
from interlock._async.lock.lock import AsyncLock
from interlock._async.txn.coordinator import CoordinatorContext
from interlock._async.txn.decide import CompletedDecisions, DecisionContext
from interlock._async.txn.log import (
    AsyncDecisionLog,
    create_decision_log,
    validate_durability,
)
from interlock._async.txn.participants.redis import AsyncRedisResource, AsyncRedisStore
from interlock._async.txn.recovery import (
    DEFAULT_SAFETY,
    AsyncRecovery,
    AsyncResource,
    RecoveryContext,
)
from interlock._async.txn.transaction import AsyncTransaction, TransactionContext
from interlock._async.txn.worker import AsyncRecoveryWorker
from interlock._concurrency import AsyncMutex
from interlock._keys import validate_name
from interlock._tracing import Tracer
from interlock.errors import ConfigError
from interlock.metrics import Metrics
from interlock.txn._records import RecoveryReport
from interlock.txn._xid import default_coordinator_id, validate_coordinator_id

if TYPE_CHECKING:
    from interlock._async.txn.participants.postgres import Connect

__all__ = [
    "DEFAULT_INTERVAL",
    "DEFAULT_SAFETY",
    "DEFAULT_TIMEOUT",
    "AsyncResource",
    "AsyncTransactionManager",
]

logger = logging.getLogger("interlock.txn")
DEFAULT_TIMEOUT = 10.0
DEFAULT_INTERVAL = 10.0  # seconds between recovery passes
SETTLE_S = 5.0  # the worker leaves a decided transaction this long to its own coordinator
# Seconds before the first pass of a worker that started by itself: the app is usually
# still registering its other resources (a pass without them reports their branches).
START_DELAY = 1.0


RECOVER_SPAN = "interlock.txn.recover"  # docs/tracing.md


def recovery_attributes(report: RecoveryReport) -> dict[str, Any]:
    """What one recovery pass did, as span attributes."""
    return {
        "interlock.txn.recover.committed": len(report.committed),
        "interlock.txn.recover.aborted": len(report.aborted),
        "interlock.txn.recover.pending": len(report.pending),
        "interlock.txn.recover.heuristics": len(report.heuristics),
        "interlock.txn.recover.forgotten": len(report.forgotten),
        "interlock.txn.recover.errors": len(report.errors),
        "interlock.txn.recover.in_doubt": sum(report.in_doubt.values()),
    }


class AsyncTransactionManager:
    """Transactions of one interlock instance (``AsyncInterlock.transactions``).

    Args:
        backend: the coordination backend (Redis decision log, Redis participant).
        namespace: the deployment's namespace; recovery touches only its transactions.
        metrics: the instance's metrics.
        lock: the instance's lock factory (leader election of the recovery worker).
        decision_log: ``None`` (the backend), a ``postgresql://`` URL or a log object.
        durability: ``strict`` or ``relaxed`` (see :mod:`interlock._async.txn.log`).
        coordinator_id: up to 10 characters naming this process in transaction ids
            (``INTERLOCK_COORDINATOR_ID``; default: host name prefix and pid).
        recovery: run the recovery worker by itself (see :meth:`start_recovery`) once a
            recovery resource is registered or the first transaction is opened; False
            leaves it to explicit ``start_recovery()`` / ``recover()`` calls.
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
        recovery: bool = True,
        tracer: Tracer | None = None,
    ) -> None:
        if not isinstance(recovery, bool):
            raise ConfigError(
                f"recovery={recovery!r} is invalid; pass True (run the recovery worker by "
                "itself, the default) or False (only explicit start_recovery() / recover())"
            )
        self.backend = backend
        self.namespace = namespace
        self.metrics = metrics
        self.tracer = tracer or Tracer()
        self.durability = validate_durability(durability)
        self.coordinator_id = validate_coordinator_id(
            coordinator_id or os.environ.get("INTERLOCK_COORDINATOR_ID") or default_coordinator_id()
        )
        self.log: AsyncDecisionLog = create_decision_log(
            decision_log, backend, namespace, durability
        )
        self.resources: dict[str, AsyncResource] = {}
        self.auto_recovery = recovery
        self._recovery_settings = (DEFAULT_INTERVAL, DEFAULT_SAFETY)
        self._closed = False
        self._wants_recovery = False  # a resource registered, a transaction opened
        redis = AsyncRedisResource(backend, namespace)  # always there: no reason to start
        self.resources[redis.name] = redis
        self.registered_stores: set[str] = set()
        self._completed = CompletedDecisions()
        self._ready = False
        self._log_checked = False
        self._checked: set[str] = set()  # resources that passed their start-up check
        self._ready_mutex = AsyncMutex()
        self._recovery_mutex = AsyncMutex()
        self._transaction_context = self._context_of_transactions()
        self._recovery = AsyncRecovery(
            RecoveryContext(namespace, self.log, self.resources, metrics)
        )
        self._worker = AsyncRecoveryWorker(
            lock, self._background_pass, self._recovery.set_gauges
        )

    def _context_of_transactions(self) -> TransactionContext:
        """What this manager's transactions get of it (not the manager itself)."""
        return TransactionContext(
            coordinator=CoordinatorContext(
                namespace=self.namespace,
                coordinator_id=self.coordinator_id,
                metrics=self.metrics,
                decisions=DecisionContext(self.log, self._completed),
                ready=self.ready,
                tracer=self.tracer,
            ),
            backend=self.backend,
            durability=self.durability,
            registered_stores=self.registered_stores,
        )

    # -- set-up --------------------------------------------------------------------------

    def transaction(self, name: str, timeout: float | None = None) -> AsyncTransaction:
        transaction = AsyncTransaction(
            self._transaction_context, name, DEFAULT_TIMEOUT if timeout is None else timeout
        )
        self._wants_recovery = True
        self.autostart()
        return transaction

    def store(self, name: str) -> AsyncRedisStore:
        """Read access to the committed values of the Redis store ``name``."""
        return AsyncRedisStore(self.backend, self.namespace, name)

    def add_resource(self, resource: AsyncResource) -> None:
        """Register a resource for recovery (its name is what branches were enlisted as)."""
        validate_name("resource", resource.name)
        if resource.name in self.resources:
            raise ConfigError(f"a recovery resource named {resource.name!r} is registered")
        self.resources[resource.name] = resource
        self._ready = False  # checked before the next decision
        self._wants_recovery = True
        self.autostart()

    def add_postgres(self, name: str, connect: str | Connect) -> None:
        """Let recovery resolve branches enlisted as ``tx.postgres(conn, resource=name)``.

        Args:
            connect: a ``postgresql://`` URL, or a function returning a new connection.
        """
        from interlock._async.txn.participants.postgres import AsyncPostgresResource

        self.add_resource(AsyncPostgresResource(name, connect))

    def add_mysql(
        self, name: str, connect: Callable[[], Any], *, retention: float | None = None
    ) -> None:
        """Let recovery resolve branches enlisted as ``tx.mysql(conn, resource=name)``.

        Args:
            connect: a function returning a new PyMySQL connection.
            retention: seconds commit markers are kept for heuristic checks (7 days).
        """
        from interlock._async.txn.participants.mysql import AsyncMySQLResource

        self.add_resource(AsyncMySQLResource(name, connect, retention))

    async def ready(self) -> None:
        """Run the start-up check once, before the first decision (see :meth:`check`);
        a resource registered later is checked before the next decision."""
        self.autostart()
        if self._ready:
            return
        async with self._ready_mutex:
            if not self._ready:
                await self._check(again=False)
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
        self.autostart()
        async with self._ready_mutex:
            await self._check(again=True)
            self._ready = True

    async def _check(self, *, again: bool) -> None:
        """Check the log and the resources (``again=False``: those not checked yet)."""
        if again or not self._log_checked:
            await self.log.check()
            self._log_checked = True
        for resource in list(self.resources.values()):
            if again or resource.name not in self._checked:
                await resource.check()
                self._checked.add(resource.name)

    # -- completed transactions -----------------------------------------------------------

    async def flush_completed(self) -> None:
        """Remove the decisions of completed transactions now (at close; otherwise the
        next decision does)."""
        taken = self._completed.take()
        if taken:
            try:
                await self.log.forget(taken)
            except Exception:  # recovery removes them after checking every branch
                logger.debug("removing completed decisions failed", exc_info=True)

    # -- recovery ------------------------------------------------------------------------

    async def recover(self, *, safety: float = DEFAULT_SAFETY) -> RecoveryReport:
        """Resolve this namespace's in-doubt transactions once (how: see
        :mod:`interlock._async.txn.recovery`).

        Args:
            safety: seconds an undecided transaction is given before it is presumed
                aborted; keep it above your longest transaction timeout.

        Returns:
            What was committed, rolled back, left pending, and any heuristic outcomes.
        """
        if isinstance(safety, bool) or not isinstance(safety, int | float) or not safety >= 0:
            raise ConfigError(f"safety={safety!r} is invalid; pass seconds ≥ 0")
        async with self._recovery_mutex:
            return await self._recover(safety)

    async def _background_pass(self, *, safety: float) -> RecoveryReport:
        """The worker's pass: a decided transaction is left ``SETTLE_S`` for its own
        coordinator's phase two, so a healthy commit is not "recovered" under its feet."""
        async with self._recovery_mutex:
            return await self._recover(safety, min(safety, SETTLE_S))

    async def _recover(self, safety: float, settle: float = 0.0) -> RecoveryReport:
        with self.tracer.span(RECOVER_SPAN, {"interlock.txn.safety": safety}) as span:
            await self.ready()
            await self.flush_completed()
            report = await self._recovery.run(safety, settle)
            if span.recording:
                span.update(recovery_attributes(report))
            return report

    async def in_doubt(self) -> dict[str, Any]:
        """What recovery would look at now: logged decisions and prepared branches."""
        return await self._recovery.in_doubt()

    def start_recovery(
        self, *, interval: float = DEFAULT_INTERVAL, safety: float = DEFAULT_SAFETY
    ) -> None:
        """Run recovery every ``interval`` seconds in the background, in one process per
        deployment: the worker that holds the ``txn-recovery`` lock does the work.

        With ``recovery=True`` (the default) this happens by itself, with these defaults,
        once a resource is registered or a transaction opened; call it to choose other
        values (a running worker takes them for its next pass).
        """
        if interval <= 0 or safety < 0:
            raise ConfigError(
                f"interval={interval!r} and safety={safety!r} are invalid; pass interval > 0 "
                "and safety ≥ 0 seconds"
            )
        self._recovery_settings = (interval, safety)
        self._closed = False
        self._worker.start(interval, safety)

    @property
    def recovery_running(self) -> bool:
        """True while this process's recovery worker runs (leading or standing by)."""
        return self._worker.running

    def autostart(self) -> None:
        """Start the recovery worker if it should run by itself and is not running: with
        ``recovery=True``, once a resource is registered or a transaction was opened. The
        async API starts it at the first call made inside an event loop (``transaction``,
        ``check``, the middleware's lifespan start-up); a forked child starts its own."""
        if (
            self.auto_recovery
            and self._wants_recovery
            and not self._closed
            and not self._worker.running
            and self._worker.startable()
        ):
            self._worker.start(*self._recovery_settings, delay=START_DELAY)

    async def aclose(self) -> None:
        self._closed = True
        await self.flush_completed()
        await self._worker.aclose()
        for resource in self.resources.values():
            try:
                await resource.aclose()
            except Exception:
                logger.debug("closing resource %s failed", resource.name, exc_info=True)
        await self.log.aclose()
