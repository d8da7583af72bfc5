"""The background recovery worker: recovery passes every few seconds, in one process per
deployment, elected by the ``txn-recovery`` lock.

The process whose worker holds the lock runs the passes and publishes the in-doubt
gauges; the others report none. A leader whose lease is lost tries to win the lock again;
when a leader dies, another takes over once the lease's TTL (three intervals, at least
5 s) lapses.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable  # noqa: F401, RUF100 (sync twin: unused)

from interlock._async.lock import AsyncLease, AsyncLock
from interlock._async.txn_recovery import DEFAULT_SAFETY
from interlock._synchronization import AsyncEvent, AsyncWorker
from interlock.txn._events import event
from interlock.txn._records import RecoveryReport

logger = logging.getLogger("interlock.txn")


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

    def start(self, interval: float, safety: float) -> None:
        """Start (or keep running) with a pass every ``interval`` seconds."""
        self._interval = interval
        self._safety = safety
        self._closing = False
        self._worker.start()

    async def _loop(self) -> None:
        wakeup = self._wakeup = AsyncEvent()
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
                    report = await self._recover(safety=self._safety)
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
        """Stop the loop (it releases the lease) and wait up to 10 s for it."""
        self._closing = True
        if self._wakeup is not None:
            self._wakeup.set()
        await self._worker.join(timeout=10.0)
