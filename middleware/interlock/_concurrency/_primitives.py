"""The few primitives where async and sync code differ, side by side.

Code under ``interlock/_async/`` uses only the ``Async*`` / ``async_*`` names below;
``scripts/unasync.py`` turns them into the plain names for ``interlock/_sync/``. This is
the only module (with its parts ``_threads.py`` and ``_fanout.py``, re-exported here) that
touches ``asyncio`` and ``threading`` scheduling directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections.abc import Awaitable
from typing import Any

from interlock._concurrency._fanout import (
    AsyncFlight,
    Flight,
    async_call,
    async_call_all,
    async_check_cacheable,
    call,
    call_all,
    check_cacheable,
)
from interlock._concurrency._workers import (
    AsyncWorker,
    Strand,
    Worker,
    async_run_blocking,
    run_blocking,
)

__all__ = [
    "AsyncEvent",
    "AsyncFlight",
    "AsyncMutex",
    "AsyncWorker",
    "Event",
    "Flight",
    "Mutex",
    "Strand",
    "Worker",
    "async_call",
    "async_call_all",
    "async_check_cacheable",
    "async_current_owner",
    "async_dedicated_waits",
    "async_run_blocking",
    "async_shielded",
    "async_sleep",
    "call",
    "call_all",
    "check_cacheable",
    "current_owner",
    "dedicated_waits",
    "run_blocking",
    "shielded",
    "sleep",
]



def async_current_owner() -> int:
    """Identity of the running asyncio task (the unit that holds a lease)."""
    task = asyncio.current_task()
    return id(task) if task is not None else threading.get_ident()


def current_owner() -> int:
    """Identity of the running thread (the unit that holds a lease)."""
    return threading.get_ident()


# How many lock waiters of one process may each block a connection of their own while they
# wait: a signal list popped with BLPOP wakes exactly that waiter, straight from its socket,
# with no listener and no hop to another thread or task. A blocking waiter owns its thread
# anyway: no limit. asyncio waiters are cheap tasks, possibly thousands: the first ones wait
# on connections of their own (a pub/sub wake-up costs the listener task's step and redis-py's
# message parsing: a third more per hand-off), the others share the one pub/sub connection.
async_dedicated_waits = 16.0
dedicated_waits = math.inf


async def async_sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


def sleep(seconds: float) -> None:
    time.sleep(seconds)


class AsyncEvent:
    """An asyncio event that may be set from any thread (e.g. a pub/sub callback)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._loop = asyncio.get_running_loop()

    def set(self) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._event.set()
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._event.set)

    def clear(self) -> None:
        self._event.clear()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait until set or ``timeout`` seconds pass; True if the event is set."""
        if self._event.is_set():
            return True
        if timeout is not None and timeout <= 0:
            return False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._event.wait()
        return self._event.is_set()


async def async_shielded(awaitable: Awaitable[Any]) -> Any:
    """Finish ``awaitable`` even if the calling task is being cancelled."""
    return await asyncio.shield(awaitable)


def shielded(value: Any) -> Any:
    """Sync twin of :func:`async_shielded`: the call already ran to completion."""
    return value


class Event:
    """A threading event with the same interface as :class:`AsyncEvent`."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def clear(self) -> None:
        self._event.clear()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        if timeout is not None and timeout <= 0:
            return self._event.is_set()
        return self._event.wait(timeout)


class AsyncMutex:
    """A task lock (asyncio.Lock) for local mutual exclusion."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> None:
        await self._lock.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self._lock.release()


class Mutex:
    """A thread lock with the same interface as :class:`AsyncMutex`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()
