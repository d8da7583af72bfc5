"""Waits on observable state with a bounded deadline, instead of sleeps that order events.

``queued`` reads a lock's FIFO waiter queue on the server (``ZCARD`` of its ``:q`` key, see
``interlock.lock._scripts``): a waiter has joined once it is there, whatever the backend.
"""

from __future__ import annotations

import asyncio
import time

from interlock import AsyncInterlock, Interlock

POLL_S = 0.005


def queued(il: Interlock, name: str, key: object, count: int = 1, timeout: float = 10.0) -> None:
    """Return once ``count`` waiters queue for lock ``(name, key)``."""
    queue = il.lock(name, key).keys[2]
    deadline = time.monotonic() + timeout
    while il.backend.execute("ZCARD", queue) < count:
        assert time.monotonic() < deadline, f"{count} waiter(s) did not queue for {name!r}"
        time.sleep(POLL_S)


async def aqueued(
    ail: AsyncInterlock, name: str, key: object, count: int = 1, timeout: float = 10.0
) -> None:
    """Return once ``count`` waiters queue for lock ``(name, key)`` (asyncio)."""
    queue = ail.lock(name, key).keys[2]
    deadline = time.monotonic() + timeout
    while await ail.backend.execute("ZCARD", queue) < count:
        assert time.monotonic() < deadline, f"{count} waiter(s) did not queue for {name!r}"
        await asyncio.sleep(POLL_S)
