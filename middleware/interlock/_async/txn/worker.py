"""The background recovery worker: recovery passes every few seconds, in one process per
deployment, elected by the ``txn-recovery`` lock.

The process whose worker holds the lock runs the passes and publishes the in-doubt
gauges; the others report none. A leader whose lease is lost tries to win the lock again;
when a leader dies, another takes over once the lease's TTL (three intervals, at least
5 s) lapses. A pass that leaves branches pending (a MySQL session not yet gone, a young
undecided transaction) is followed by another sooner: 0.5 s, then twice as long each time,
up to the interval. A pass that fails logs at ERROR the first time (with the error's
message, which names the fix for configuration errors) and again whenever the error
changes; repeats of the same error go to DEBUG.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable  # noqa: F401, RUF100 (sync twin: unused)

from interlock._async.lock.lock import AsyncLease, AsyncLock
from interlock._async.txn.recovery import DEFAULT_SAFETY
from interlock._concurrency import AsyncEvent, AsyncWorker
from interlock.errors import InterlockError
from interlock.lock._core import info_from_reply
from interlock.lock._scripts import INFO
from interlock.txn._events import event
from interlock.txn._records import RecoveryReport

logger = logging.getLogger("interlock.txn")
LEADER_LOCK = "txn-recovery"
PENDING_RETRY = 0.5  # seconds before the pass after one that left branches pending


class AsyncRecoveryWorker:
    """Runs ``recover`` in the background while this process leads recovery.

    Args:
        lock: the instance's lock factory (leader election).
        recover: one recovery pass, given ``safety=`` seconds.
        set_gauges: publishes the in-doubt gauges (``{}`` and 0 when not leading).
    """

    def __init__(
        self,
        lock: Callable[..., AsyncLock],
        recover: Callable[..., Awaitable[RecoveryReport]],
        set_gauges: Callable[[dict[str, int], float], None],
    ) -> None:
        self._lock = lock
        self._recover = recover
        self._set_gauges = set_gauges
        self._worker = AsyncWorker(self._loop, "interlock-txn-recovery")
        self._wakeup: AsyncEvent | None = None
        self._interval = 10.0
        self._safety = DEFAULT_SAFETY
        self._closing = False
        self._last_error = ""
        self._delay = 0.0

    @property
    def running(self) -> bool:
        return self._worker.running

    def startable(self) -> bool:
        """True when :meth:`start` can run here (the async API needs a running loop)."""
        return self._worker.startable()

    def start(self, interval: float, safety: float, *, delay: float = 0.0) -> None:
        """Start (or keep running) with a pass every ``interval`` seconds, the first
        after ``delay`` seconds."""
        self._interval = interval
        self._safety = safety
        self._closing = False
        if not self._worker.running:
            self._delay = delay
        self._worker.start()

    def _failed(self, exc: Exception) -> None:
        text = f"{type(exc).__name__}: {exc}"
        if text == self._last_error:
            logger.debug("transaction recovery pass failed again: %s", text)
            return
        self._last_error = text
        logger.error(
            "transaction recovery pass failed: %s",
            exc,
            exc_info=not isinstance(exc, InterlockError),
            extra={
                "event.action": "txn-recovery-failed",
                "error.type": type(exc).__name__,
                "error.message": str(exc),
            },
        )

    async def _loop(self) -> None:
        wakeup = self._wakeup = AsyncEvent()
        lease: AsyncLease | None = None
        ttl = max(self._interval * 3, 5.0)
        soon = PENDING_RETRY
        if self._delay > 0:
            await wakeup.wait(self._delay)
        while not self._closing:
            delay = self._interval
            try:
                if lease is not None and lease.lost:
                    lease = None
                if lease is None:
                    lease, free = await self._lead(ttl)
                    if lease is None and free:  # refused though free: Redis just restarted
                        delay = min(delay, PENDING_RETRY)
                    if lease is not None:
                        event(
                            logging.INFO,
                            "txn-recovery-leader",
                            "this process now runs transaction recovery",
                            **{"interlock.lock.fence": lease.fence},
                        )
                if lease is not None:
                    report = await self._recover(safety=self._safety)
                    self._last_error = ""
                    if report.errors:
                        logger.warning("recovery pass had errors: %s", "; ".join(report.errors))
                    if report.pending:
                        delay, soon = min(soon, self._interval), soon * 2
                    else:
                        soon = PENDING_RETRY
                else:
                    self._set_gauges({}, 0.0)  # the leader reports them
                    logger.debug(
                        "another process runs transaction recovery",
                        extra={"event.action": "txn-recovery-standby"},
                    )
            except Exception as exc:
                self._failed(exc)
            await wakeup.wait(delay)
            wakeup.clear()
        if lease is not None:
            try:
                await lease.release()
            except Exception:  # lost already; the next leader takes over after the TTL
                logger.debug("releasing the recovery lease failed", exc_info=True)

    async def _lead(self, ttl: float) -> tuple[AsyncLease | None, bool]:
        """The leader's lease if this process wins it now (``None`` while another holds
        it), and whether the lock was free.

        A standby reads the holder first and only tries to acquire a free lock: a refused
        attempt would count as a lock timeout (``interlock_lock_acquire_seconds``) every
        interval in every standby process. A free lock can still be refused, for
        ``RESTART_GRACE_S`` after Redis restarted: the loop then tries again soon.
        """
        lock = self._lock(LEADER_LOCK, ttl=ttl)
        reply = await lock.service.backend.run(INFO, lock.keys[:1], [])
        if info_from_reply(lock.name, lock.key, reply) is not None:
            return None, False
        return await lock.acquire(blocking=False), True

    async def aclose(self) -> None:
        """Stop the loop (it releases the lease) and wait up to 10 s for it."""
        self._closing = True
        if self._wakeup is not None:
            self._wakeup.set()
        await self._worker.join(timeout=10.0)
