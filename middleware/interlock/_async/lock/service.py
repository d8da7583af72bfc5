"""The per-instance lock machinery shared by every lock (``_sync`` is generated from it).

One :class:`AsyncLockService` per interlock instance owns what is shared between locks:
the wake-up channel (one pub/sub subscription per process), the waiters waiting for a
hand-off, the leases this process holds (for reentrancy checks) and the one background
renewer that extends every auto-renewed lease in batches.

While any lease is held the renewer keeps the subscription up: a Redis restart drops it,
and as soon as it is back every held lease is re-checked on the server (one batch of
``INFO`` reads), so a lease the restart forgot is lost at once (reason ``restart``) — before
the restarted server grants that lock to anyone else (``RESTART_GRACE_S``, docs/locks.md).
"""

from __future__ import annotations

import math
import time
import uuid
from typing import TYPE_CHECKING

from interlock._async.backend.base import AsyncBackend
from interlock._concurrency import AsyncEvent, AsyncWorker, async_dedicated_waits
from interlock._config import Settings
from interlock._tracing import Tracer
from interlock.backends._script import Arg, Script
from interlock.errors import BackendError
from interlock.lock._core import renew_due
from interlock.lock._scripts import EXTEND, INFO
from interlock.metrics import Metrics

if TYPE_CHECKING:
    from interlock._async.lock.lease import AsyncLease


class AsyncLockService:
    """Per-instance lock machinery: wake-ups, held leases, the renewer."""

    def __init__(
        self,
        backend: AsyncBackend,
        settings: Settings,
        metrics: Metrics,
        tracer: Tracer | None = None,
    ) -> None:
        self.backend = backend
        self.settings = settings
        self.metrics = metrics
        self.tracer = tracer or Tracer()
        self.channel = f"{settings.namespace}:wake:{uuid.uuid4().hex}"
        self.listening = False
        self.held: dict[tuple[str, str, int], AsyncLease] = {}
        self._waiters: dict[str, AsyncEvent] = {}
        self._signal_waits = 0  # acquires of this process that may pop a signal list
        self._handoffs: dict[str, int] = {}
        self._leases: set[AsyncLease] = set()
        self._renewer = AsyncWorker(self._renew_loop, "interlock-lock-renewer")
        self._renew_wakeup: AsyncEvent | None = None
        self._renew_at = math.inf  # when the renewer wakes by itself next; inf while it runs
        # re-read every held lease on the server: why one that is gone was lost (or None)
        self._recheck: str | None = None
        self._restarts = backend.restarts
        self._closing = False

    # -- wake-ups ------------------------------------------------------------------------

    def _on_wake(self, payload: bytes) -> None:
        token, _, fence = payload.decode().partition(":")
        waiter = self._waiters.get(token)
        if waiter is not None:
            self._handoffs[token] = int(fence)
            waiter.set()

    def _on_reset(self) -> None:
        for waiter in list(self._waiters.values()):
            waiter.set()  # wake-ups may have been missed: every waiter retries once
        if self.backend.restarts != self._restarts:  # are our leases still there?
            self._restarts = self.backend.restarts
            self._recheck = "restart"
            if self._renew_wakeup is not None:
                self._renew_wakeup.set()

    @property
    def watching(self) -> bool:
        """True once a restart of the server would be noticed: subscribed, and every held
        lease checked since (the first lease of a process is granted before that)."""
        return self.listening and self._recheck is None

    async def ensure_listening(self, timeout: float | None = None) -> None:
        if not self.listening:
            await self.backend.subscribe(self.channel, self._on_wake, timeout)
            if not self.listening:
                self.backend.on_reset(self._on_reset)
                self.listening = True

    def claim_signal_wait(self) -> bool:
        """May one more acquire wait on a connection of its own (a signal list, BLPOP)?

        Where the backend has signal lists, up to ``async_dedicated_waits`` per process (no
        limit for blocking waiters); the others are woken through pub/sub. A True answer is
        given back with :meth:`end_signal_wait`.
        """
        if not self.backend.signals:
            return False
        if async_dedicated_waits == math.inf:
            return True
        if self._signal_waits >= async_dedicated_waits:
            return False
        self._signal_waits += 1
        return True

    def end_signal_wait(self) -> None:
        if async_dedicated_waits != math.inf:
            self._signal_waits -= 1

    def register(self, token: str) -> AsyncEvent:
        waiter = self._waiters[token] = AsyncEvent()
        return waiter

    def unregister(self, token: str) -> None:
        self._waiters.pop(token, None)
        self._handoffs.pop(token, None)

    def handoff(self, token: str) -> int | None:
        return self._handoffs.pop(token, None)

    # -- renewal -------------------------------------------------------------------------

    def track(self, lease: AsyncLease) -> None:
        if lease.auto_renew:
            self._leases.add(lease)
        self._renewer.start()  # it also keeps the subscription up (restart detection)
        # wake it only if it would sleep past this lease's first renewal, or must subscribe:
        # a wake-up per acquire cost a task step (a thread switch in sync code) each
        due = lease.deadline - lease.ttl * 2 / 3 if lease.auto_renew else math.inf
        if self._renew_wakeup is not None and (due < self._renew_at or not self.listening):
            self._renew_wakeup.set()

    def forget(self, lease: AsyncLease) -> None:
        self._leases.discard(lease)
        self.held.pop(lease.held_key, None)

    async def _renew_loop(self) -> None:
        wakeup = self._renew_wakeup = AsyncEvent()
        while not self._closing:
            self._renew_at = math.inf  # a lease tracked from here on wakes it again
            leases = [lease for lease in list(self._leases) if not lease.done]
            now = time.monotonic()
            due = [lease for lease in leases if renew_due(lease.deadline, lease.ttl, now)]
            if due:
                await self._renew(due)
            if self.held and not self.listening:
                await self._listen()
            if self._recheck:
                await self._recheck_held()
            pause = 0.05 if self._recheck or (self.held and not self.listening) else 1.0
            for lease in leases:
                pause = min(pause, lease.deadline - lease.ttl * 2 / 3 - time.monotonic())
            pause = max(pause, 0.005)
            self._renew_at = time.monotonic() + pause
            await wakeup.wait(pause)
            wakeup.clear()

    async def _renew(self, due: list[AsyncLease]) -> None:
        calls: list[tuple[Script, list[str], list[Arg]]] = [
            (EXTEND, lease.keys[:1], [lease.token, lease.ttl_ms]) for lease in due
        ]
        started = time.monotonic()
        try:
            results = await self.backend.run_many(calls)
        except Exception as exc:  # the whole batch failed: judge each lease below
            results = [exc] * len(due)
        for lease, result in zip(due, results, strict=True):
            if lease.done:
                continue
            if isinstance(result, Exception):
                if time.monotonic() >= lease.deadline:
                    lease.mark_lost("renewal_failed", result)
            elif result == 1:
                lease.deadline = started + lease.ttl
            else:
                lease.mark_lost("taken")

    async def _listen(self) -> None:
        """Subscribe, so a restart is noticed; leases taken before then are re-checked."""
        try:
            await self.ensure_listening()
        except BackendError:  # retried by the loop; the leases' own deadlines still hold
            return
        self._recheck = self._recheck or "taken"

    async def _recheck_held(self) -> None:
        """Is every held lease still ours on the server? Lost at once if not."""
        leases = [lease for lease in list(self.held.values()) if not lease.lost]
        calls: list[tuple[Script, list[str], list[Arg]]] = [
            (INFO, lease.keys[:1], []) for lease in leases
        ]
        reason = self._recheck or "taken"
        try:
            results = await self.backend.run_many(calls) if calls else []
        except Exception:  # unreachable: try again shortly
            return
        if not any(isinstance(result, Exception) for result in results):
            self._recheck = None
        for lease, result in zip(leases, results, strict=True):
            if lease.done or isinstance(result, Exception):
                continue
            holder = bytes(result[1]).decode().partition("|")[0] if len(result) > 1 else None
            if holder != lease.token:
                lease.mark_lost("taken" if holder else reason)

    async def aclose(self) -> None:
        self._closing = True
        if self._renew_wakeup is not None:
            self._renew_wakeup.set()
        await self._renewer.join(timeout=2.0)
        if self.listening:
            await self.backend.unsubscribe(self.channel, self._on_wake)
