"""Distributed locks: :class:`AsyncLock` (``_sync`` is generated from this ``_async`` source).

A held lock is an :class:`~interlock._async.lock.lease.AsyncLease`. What all locks of one
interlock instance share — wake-ups, held leases, the renewer — is the
:class:`~interlock._async.lock.service.AsyncLockService`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from interlock import _context
from interlock._async.lock.lease import AsyncLease, OnLost
from interlock._async.lock.service import AsyncLockService
from interlock._concurrency import (
    AsyncEvent,
    async_current_owner,
    async_shielded,
)
from interlock._keys import encode_key, validate_name
from interlock._tracing import Span
from interlock.backends._script import Arg
from interlock.errors import (
    BackendUnavailable,
    ConfigError,
    LockAlreadyHeld,
    LockLost,
    LockTimeout,
)
from interlock.lock._core import (
    MIN_RENEWED_TTL_S,
    QUEUE_REGISTRATION_S,
    cancel_budget,
    holder_arg,
    lock_keys,
    new_lock_token,
    parse_lock,
    signal_key,
    step_budget,
    wait_seconds,
)
from interlock.lock._scripts import ACQUIRE, CANCEL, AcquireReply

logger = logging.getLogger("interlock.lock")
ACQUIRE_SPAN, HOLD_SPAN = "interlock.lock.acquire", "interlock.lock.hold"  # docs/tracing.md
_UNSET: Any = object()
__all__ = ["AsyncLease", "AsyncLock", "OnLost"]


class AsyncLock:
    """A distributed lock on ``(name, key)``; use as a context manager or call acquire().

    Created by ``AsyncInterlock.lock(...)``; see that method for the options.
    """

    def __init__(
        self,
        service: AsyncLockService,
        name: str,
        key: object,
        *,
        ttl: float | None = None,
        timeout: float | None = _UNSET,
        reentrant: bool = False,
        auto_renew: bool = True,
        on_lost: OnLost | None = None,
    ) -> None:
        self.service = service
        self.name = validate_name("lock", name)
        self.key = encode_key(key)
        self.keys = lock_keys(service.settings.namespace, self.name, self.key)
        # the scripts' KEYS (lock, fence bookkeeping): they name the queue's keys themselves
        self.script_keys = self.keys[:2]
        self.ttl = self.validate_ttl(service.settings.lock_ttl if ttl is None else ttl)
        if auto_renew and self.ttl < MIN_RENEWED_TTL_S:
            raise ConfigError(
                f"ttl={self.ttl!r} is too short to renew in the background (renewals run every"
                f" ttl/3 and need a round trip and a scheduled thread/task); pass"
                f" ttl >= {MIN_RENEWED_TTL_S}, or auto_renew=False and extend() yourself"
            )
        self.timeout = self._validate_timeout(
            service.settings.lock_timeout if timeout is _UNSET else timeout
        )
        self.reentrant = reentrant
        self.auto_renew = auto_renew
        self.on_lost = on_lost
        self._entered: dict[int, list[AsyncLease]] = {}

    @staticmethod
    def validate_ttl(ttl: float) -> float:
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0.01 <= ttl <= 86400:
            raise ConfigError(f"ttl={ttl!r} is invalid; pass seconds between 0.01 and 86400")
        return float(ttl)

    @staticmethod
    def _validate_timeout(timeout: float | None) -> float | None:
        if timeout is None:
            return None
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0:
            raise ConfigError(
                f"timeout={timeout!r} is invalid; pass seconds ≥ 0, or None to wait forever"
            )
        return float(timeout)

    async def acquire(
        self, blocking: bool = True, timeout: float | None = _UNSET
    ) -> AsyncLease | None:
        """Acquire the lock.

        Args:
            blocking: wait for the lock; with ``False`` return ``None`` at once if held.
            timeout: seconds to wait (default: the lock's timeout; ``None`` = forever).

        Returns:
            The lease, or ``None`` when ``blocking=False`` and the lock is held elsewhere.

        Raises:
            LockTimeout: not acquired within ``timeout``; carries the holder info.
            LockAlreadyHeld: this task/thread holds it already and it is not reentrant.
            BackendUnavailable: the backend cannot be reached (locks fail closed).
        """
        wait = self.timeout if timeout is _UNSET else self._validate_timeout(timeout)
        held_key = (self.name, self.key, async_current_owner())
        existing = self.service.held.get(held_key)
        if existing is not None and not existing.done and not existing.lost:
            if not self.reentrant:
                raise LockAlreadyHeld(
                    f"lock {self.name!r} key {self.key!r} is already held by this task/thread;"
                    " release it first or create the lock with reentrant=True"
                )
            existing.depth += 1
            return existing
        metrics = self.service.metrics.for_lock(self.name)
        started = time.monotonic()
        outcome = metrics.error
        with self.service.tracer.span(ACQUIRE_SPAN, self._attributes(blocking, wait)) as span:
            try:
                lease = await self._acquire(new_lock_token(), blocking, wait, started, held_key)
                outcome = metrics.acquired if lease is not None else metrics.timeout
            except LockTimeout as exc:
                outcome = metrics.timeout
                _timed_out_span(span, exc)
                raise
            finally:
                outcome.observe(time.monotonic() - started)
            _acquired_span(span, lease, time.monotonic() - started)
        if lease is None:
            return None
        lease.span = self.service.tracer.start(HOLD_SPAN, _held_attributes(lease))
        self.service.held[held_key] = lease
        self.service.track(lease)
        metrics.held.inc()
        if _context.current() is not None:  # inside a request: its log line names the lock
            _context.record(
                "lock", name=self.name, wait_ms=round(lease.wait * 1000, 3), fence=lease.fence
            )
        return lease

    async def _acquire(
        self,
        token: str,
        blocking: bool,
        wait: float | None,
        started: float,
        held_key: tuple[str, str, int],
    ) -> AsyncLease | None:
        service = self.service
        deadline = None if wait is None else started + wait
        # a waiter that may block a connection pops its own signal list; others are woken
        # through pub/sub
        signalled = blocking and service.claim_signal_wait()
        queued = blocking and (signalled or service.listening)
        waiter: AsyncEvent | None = None
        contended = False
        refused_at = started
        metrics = service.metrics.for_lock(self.name)
        try:
            while True:
                remaining = None if deadline is None else deadline - time.monotonic()
                if queued and waiter is None and not signalled:
                    waiter = await self._subscribe_wake_ups(token, deadline)
                # A lease's local deadline counts from a moment the grant cannot precede,
                # so it never runs past the server's expiry: this attempt's send for a
                # grant now (1), else the send of the last attempt that was refused — a
                # hand-off (2, a signal, a wake-up) comes after that refusal.
                sent = time.monotonic()
                reply = await self._attempt(token, queued, remaining, signalled, deadline)
                if not isinstance(reply, list):  # granted now: the bare fence
                    return self._lease(token, int(reply), started, sent, held_key)
                if reply[0] == AcquireReply.HANDED_OFF:
                    return self._lease(token, int(reply[1]), started, refused_at, held_key)
                refused_at = sent
                if not blocking:
                    return None
                if not contended:
                    contended = True
                    metrics.contended.inc()
                    metrics.waiting.inc()
                    _contended_span(service.tracer.current(), reply)
                if not queued:  # the next attempt joins the queue
                    queued = True
                    continue
                fence = await self._wait_for_hand_off(token, reply, deadline, wait, waiter)
                if fence is not None:
                    return self._lease(token, fence, started, refused_at, held_key)
                if deadline is not None and time.monotonic() >= deadline:
                    # woken by our own deadline: no last attempt; leaving the queue (below)
                    # passes on a hand-off that raced us
                    raise self._timed_out(wait, reply)
        except BaseException:
            if queued:
                await async_shielded(self._abandon(token, deadline))
            raise
        finally:
            if signalled:
                service.end_signal_wait()
            if waiter is not None:
                service.unregister(token)
            if contended:
                metrics.waiting.dec()

    async def _subscribe_wake_ups(self, token: str, deadline: float | None) -> AsyncEvent:
        """The event this process's pub/sub listener sets when the lock is handed to us.

        Within the time left; without a listener the wait polls (every ttl/3 at most) and
        the next attempt finds a hand-off.
        """
        service = self.service
        with contextlib.suppress(BackendUnavailable):
            await service.ensure_listening(step_budget(deadline, time.monotonic()))
        return service.register(token)

    async def _wait_for_hand_off(
        self,
        token: str,
        refusal: list[Any],
        deadline: float | None,
        wait: float | None,
        waiter: AsyncEvent | None,
    ) -> int | None:
        """After a refusal, wait (at most until the holder's lease ends) to be handed the lock.

        ``waiter`` is the pub/sub wake-up, ``None`` for a waiter that pops its own signal
        list. Returns the fence handed to us, or ``None`` to attempt again.

        Raises:
            LockTimeout: the deadline passed before the wait could start.
        """
        service = self.service
        fence = None if waiter is None else service.handoff(token)
        if fence is not None:
            return fence
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:  # the attempt itself took time
            raise self._timed_out(wait, refusal)
        pause = wait_seconds(int(refusal[1]), remaining, self.ttl)
        if waiter is None:
            signal = await service.backend.wait_signal(signal_key(self.keys, token), pause)
            return None if signal is None else int(signal)
        await waiter.wait(pause)
        waiter.clear()
        return service.handoff(token)

    def _attributes(self, blocking: bool, wait: float | None) -> dict[str, Any]:
        return {
            "interlock.lock.name": self.name,
            "interlock.lock.key": self.key,
            "interlock.lock.blocking": blocking,
            "interlock.lock.timeout": wait if blocking else None,
            "interlock.lock.ttl": self.ttl,
            "interlock.lock.contended": False,
        }

    def _timed_out(self, wait: float | None, refusal: list[Any]) -> LockTimeout:
        return LockTimeout(self.name, self.key, wait or 0.0, parse_lock(refusal[2]))

    async def _attempt(
        self,
        token: str,
        queued: bool,
        remaining: float | None,
        signalled: bool,
        deadline: float | None,
    ) -> int | list[Any]:
        args: list[Arg] = [token, int(self.ttl * 1000), holder_arg()]
        if queued:  # (an attempt that does not queue sends fewer arguments: Redis is faster)
            horizon = QUEUE_REGISTRATION_S
            if remaining is not None:
                horizon = min(remaining, horizon)
            args += [int(horizon * 1000) + 1000, "" if signalled else self.service.channel]
        reply: int | list[Any] = await self.service.backend.run(
            ACQUIRE, self.script_keys, args, budget=step_budget(deadline, time.monotonic())
        )
        return reply

    async def _abandon(self, token: str, deadline: float | None) -> bool:
        """Leave the wait queue, passing on a hand-off that raced us; False if unreachable.

        Best effort within the caller's time: if Redis does not answer in time the queue
        entry lapses by itself (its registration horizon) and a hand-off to us expires.
        """
        try:
            await self.service.backend.run(
                CANCEL,
                self.script_keys,
                [token],
                budget=cancel_budget(deadline, time.monotonic()),
            )
        except Exception:  # backend down: the queue entry lapses by itself
            logger.debug("could not leave the wait queue of %r", self.name, exc_info=True)
            return False
        return True

    def _lease(
        self,
        token: str,
        fence: int,
        started: float,
        granted_after: float,
        held_key: tuple[str, str, int],
    ) -> AsyncLease:
        return AsyncLease(
            self, token, fence, granted_after, time.monotonic() - started, held_key
        )

    async def exit_lease(self, lease: AsyncLease, failing: bool) -> None:
        try:
            await lease.release()
        except LockLost:
            if not failing:
                raise  # a clean body must learn its critical section was not exclusive

    async def __aenter__(self) -> AsyncLease:
        lease = await self.acquire()
        assert lease is not None  # blocking acquire returns a lease or raises
        self._entered.setdefault(async_current_owner(), []).append(lease)
        return lease

    async def __aexit__(self, *exc_info: object) -> None:
        owner = async_current_owner()
        stack = self._entered[owner]
        lease = stack.pop()
        if not stack:
            del self._entered[owner]
        await self.exit_lease(lease, exc_info[1] is not None)


# -- spans (docs/tracing.md) ---------------------------------------------------------------


def _acquired_span(span: Span, lease: AsyncLease | None, waited: float) -> None:
    span.set("interlock.lock.waited_ms", round(waited * 1000, 3))
    if lease is None:
        span.set("interlock.lock.result", "timeout")  # blocking=False: held elsewhere
        return
    span.update({"interlock.lock.result": "acquired", "interlock.lock.fence": lease.fence})


def _timed_out_span(span: Span, exc: LockTimeout) -> None:
    holder = exc.holder
    span.update(
        {
            "interlock.lock.result": "timeout",
            "interlock.lock.contended": True,
            "interlock.lock.waited_ms": round(exc.timeout * 1000, 3),
            "interlock.lock.holder.host": holder.get("host") or None,
            "interlock.lock.holder.pid": holder.get("pid") or None,
            "interlock.lock.holder.fence": holder.get("fence") or None,
            "interlock.lock.holder.request_id": holder.get("request_id"),
            "interlock.lock.holder.trace_id": holder.get("trace_id"),
        }
    )


def _contended_span(span: Span, refusal: list[Any]) -> None:
    """The first refusal: the acquire waits; link it to the holder's span, if known."""
    if not span.recording:
        return
    span.set("interlock.lock.contended", True)
    holder = parse_lock(refusal[2])
    span.link(holder.get("trace_id"), holder.get("span_id"), {"interlock.lock.link": "holder"})


def _held_attributes(lease: AsyncLease) -> dict[str, Any]:
    return {
        "interlock.lock.name": lease.name,
        "interlock.lock.key": lease.key,
        "interlock.lock.fence": lease.fence,
        "interlock.lock.ttl": lease.ttl,
    }
