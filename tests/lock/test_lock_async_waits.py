"""asyncio waiters on Redis: the first ones of a process pop signal lists of their own, the
rest share the pub/sub connection; both kinds queue in one FIFO (docs/locks.md)."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from _waits import POLL_S, aqueued
from interlock import AsyncInterlock
from interlock._concurrency import async_dedicated_waits
from services import RedisServer

WAITERS = int(async_dedicated_waits) + 4  # past the cap: some wait through pub/sub


def blocked_on_signals(redis: RedisServer) -> int:
    """Clients blocked in BLPOP on the server now (each test has its own server)."""
    clients = str(redis.command("CLIENT", "LIST"))
    return sum(1 for line in clients.splitlines() if "cmd=blpop" in line)


async def until_blocked(redis: RedisServer, count: int, timeout: float = 5.0) -> None:
    """Return once exactly ``count`` clients are blocked in BLPOP (a queued waiter sends its
    BLPOP just after its queued attempt returns)."""
    deadline = time.monotonic() + timeout
    while (blocked := blocked_on_signals(redis)) != count:
        assert time.monotonic() < deadline, f"{blocked} signal waits, expected {count}"
        await asyncio.sleep(POLL_S)


@pytest.mark.anyio
async def test_waiters_past_the_signal_cap_share_pub_sub_and_keep_their_order(
    fresh_redis: RedisServer,
) -> None:
    namespace = f"t{uuid.uuid4().hex[:12]}"
    ail = AsyncInterlock(fresh_redis.url, namespace=namespace)
    try:
        holder = await ail.lock("queue", 1).acquire()
        assert holder is not None
        order: list[int] = []

        async def take(index: int) -> None:
            async with ail.lock("queue", 1, timeout=10):
                order.append(index)
                await asyncio.sleep(0)

        tasks = []
        for index in range(WAITERS):
            tasks.append(asyncio.ensure_future(take(index)))
            await aqueued(ail, "queue", 1, index + 1)
        # each of the first waiters blocks a connection of its own; the others do not
        await until_blocked(fresh_redis, int(async_dedicated_waits))
        await holder.release()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        assert order == list(range(WAITERS))
        assert await ail.lock_info("queue", 1) is None
    finally:
        await ail.aclose()


@pytest.mark.anyio
async def test_a_cancelled_signal_wait_gives_its_place_back(fresh_redis: RedisServer) -> None:
    ail = AsyncInterlock(fresh_redis.url, namespace=f"t{uuid.uuid4().hex[:12]}")
    try:
        holder = await ail.lock("slot", 1).acquire()
        assert holder is not None
        for _ in range(int(async_dedicated_waits) + 2):  # cancelled waits free their slot
            waiter = asyncio.ensure_future(ail.lock("slot", 1, timeout=10).acquire())
            await aqueued(ail, "slot", 1)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
        waiter = asyncio.ensure_future(ail.lock("slot", 1, timeout=10).acquire())
        await aqueued(ail, "slot", 1)
        await until_blocked(fresh_redis, 1)  # still a signal wait
        await holder.release()
        lease = await asyncio.wait_for(waiter, 10)
        assert lease is not None and lease.fence > holder.fence
        await lease.release()
    finally:
        await ail.aclose()
