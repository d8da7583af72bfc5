"""A held lock: :class:`AsyncLease` (``_sync`` is generated from this ``_async`` source).

Leases are made by :class:`~interlock._async.lock.lock.AsyncLock`; auto-renewal and the held
map live in :class:`~interlock._async.lock.service.AsyncLockService`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from interlock._concurrency import async_shielded
from interlock._tracing import NO_SPAN, Span
from interlock.backends._script import Arg
from interlock.errors import LockLost
from interlock.lock._scripts import EXTEND, RELEASE

if TYPE_CHECKING:
    from interlock._async.lock.lock import AsyncLock

logger = logging.getLogger("interlock.lock")
OnLost = Callable[["AsyncLease"], None]


class AsyncLease:
    """A held lock. Use :meth:`check` before side effects and pass :attr:`fence` along.

    Attributes:
        name: lock name.
        key: encoded resource key.
        fence: fencing token, strictly increasing per (name, key) across all holders.
        token: random owner token stored in the lock.
        ttl: lease time-to-live in seconds (renewed automatically when ``auto_renew``).
        wait: seconds spent waiting for the lock.
        span: the ``interlock.lock.hold`` span, ended at release (docs/tracing.md).
    """

    __slots__ = (
        "_lock",
        "_service",
        "acquired",
        "auto_renew",
        "deadline",
        "depth",
        "done",
        "fence",
        "held_key",
        "key",
        "keys",
        "lost_reason",
        "name",
        "script_keys",
        "span",
        "token",
        "ttl",
        "wait",
    )

    def __init__(
        self,
        lock: AsyncLock,
        token: str,
        fence: int,
        granted_after: float,
        wait: float,
        held_key: tuple[str, str, int],
    ) -> None:
        self._lock = lock
        self._service = lock.service
        self.name = lock.name
        self.key = lock.key
        self.keys = lock.keys
        self.script_keys = lock.script_keys
        self.token = token
        self.fence = fence
        self.ttl = lock.ttl
        self.auto_renew = lock.auto_renew
        self.wait = wait
        self.held_key = held_key
        self.deadline = granted_after + lock.ttl  # a lower bound of the server's expiry
        self.acquired = time.monotonic()
        self.depth = 1
        self.done = False
        self.lost_reason: str | None = None
        self.span: Span = NO_SPAN

    @property
    def ttl_ms(self) -> int:
        return int(self.ttl * 1000)

    @property
    def lost(self) -> bool:
        """True once the lease is known to be lost (see :meth:`check`)."""
        if self.lost_reason is None and not self.done and time.monotonic() > self.deadline:
            self.mark_lost("expired")
        return self.lost_reason is not None

    def mark_lost(self, reason: str, error: BaseException | None = None) -> None:
        if self.lost_reason is not None:
            return
        self.lost_reason = reason
        self._service.metrics.for_lock(self.name).lost(reason)
        self.span.event("interlock.lock.lost", {"interlock.lock.reason": reason})
        self.span.error("LockLost", f"lease lost: {reason}")
        logger.warning(
            "lock lost",
            extra={
                "event.action": "lock-lost",
                "interlock.lock.name": self.name,
                "interlock.lock.key": self.key,
                "interlock.lock.fence": self.fence,
                "interlock.lock.reason": reason,
                "error.message": str(error) if error else None,
            },
        )
        callback = self._lock.on_lost
        if callback is not None:
            try:
                callback(self)
            except Exception:  # the user's callback must not break the renewer
                logger.exception("on_lost callback of lock %r failed", self.name)

    def check(self) -> None:
        """Raise :class:`LockLost` if the lease expired or renewal found it gone."""
        if self.lost:
            raise LockLost(
                f"lease on lock {self.name!r} key {self.key!r} (fence {self.fence}) "
                f"was lost: {self.lost_reason}"
            )

    async def extend(self, ttl: float | None = None) -> None:
        """Reset the lease to ``ttl`` seconds (default: its current TTL) from now.

        Raises:
            LockLost: the lease was no longer ours.
        """
        self.check()
        if ttl is not None:
            self.ttl = self._lock.validate_ttl(ttl)
        started = time.monotonic()
        result = await self._service.backend.run(EXTEND, self.keys[:1], [self.token, self.ttl_ms])
        if result != 1:
            self.mark_lost("taken")
            self.check()
        self.deadline = started + self.ttl

    async def release(self) -> None:
        """Release the lease (or one level of a reentrant lease).

        Raises:
            LockLost: the lease had been lost before release; the critical section may
                have overlapped with another holder.
        """
        if self.depth > 1:
            self.depth -= 1
            return
        if self.done:
            return
        self.done = True
        service = self._service
        service.forget(self)
        held_for = time.monotonic() - self.acquired
        args: list[Arg] = [self.token]
        try:  # the next waiter is handed the lock in this call: bookkeeping comes after
            released = await service.backend.run(RELEASE, self.script_keys, args)
        except BaseException as exc:
            self.span.end(exc)
            if not isinstance(exc, Exception):  # cancelled mid-release: finish it anyway
                await async_shielded(service.backend.run(RELEASE, self.script_keys, args))
            raise
        finally:
            metrics = service.metrics.for_lock(self.name)
            metrics.held.dec()
            metrics.hold.observe(held_for)
        if released != 1:
            self.mark_lost("expired" if self.lost_reason is None else self.lost_reason)
        self.span.end()
        if self.lost_reason is not None:
            self.check()

    async def __aenter__(self) -> AsyncLease:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._lock.exit_lease(self, exc_info[1] is not None)

    def __repr__(self) -> str:
        state = "released" if self.done else (self.lost_reason or "held")
        return f"<Lease {self.name}:{self.key} fence={self.fence} {state}>"
