"""The lock contract, run against mem://, a single Redis, a 3-master Redis Cluster and Sentinel."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import threading
import time
import uuid

import pytest

from _waits import aqueued
from interlock import (
    AsyncInterlock,
    FenceRejected,
    Interlock,
    LockAlreadyHeld,
    LockLost,
    LockTimeout,
    request_context,
)


def sample(il: Interlock, name: str, **labels: str) -> float:
    assert il.registry is not None
    value = il.registry.get_sample_value(name, labels)
    return value or 0.0


def test_acquire_release_and_info(il: Interlock) -> None:
    with request_context(request_id="req-1", trace_id="a" * 32), il.lock("account", 42) as lease:
        info = il.lock_info("account", 42)
        assert info is not None
        assert info.fence == lease.fence
        assert info.request_id == "req-1"
        assert info.trace_id == "a" * 32
        assert info.pid > 0 and info.host
        assert 0 < info.ttl_remaining <= 30
        lease.check()
    assert il.lock_info("account", 42) is None
    acquired = sample(il, "interlock_lock_acquire_seconds_count", lock="account", result="acquired")
    assert acquired == 1
    assert sample(il, "interlock_lock_held", lock="account") == 0


def test_nonblocking_returns_none_when_held_elsewhere(il: Interlock) -> None:
    lease = il.lock("account", 1).acquire()
    assert lease is not None
    other: list[object] = []
    thread = threading.Thread(
        target=lambda: other.append(il.lock("account", 1).acquire(blocking=False))
    )
    thread.start()
    thread.join(10)
    assert other == [None]
    lease.release()
    assert il.lock("account", 1).acquire(blocking=False) is not None


def test_timeout_carries_holder(il: Interlock) -> None:
    holder = il.lock("account", 7).acquire()
    assert holder is not None
    errors: list[LockTimeout] = []

    def wait() -> None:
        started = time.monotonic()
        try:
            il.lock("account", 7, timeout=0.3).acquire()
        except LockTimeout as exc:
            errors.append(exc)
            assert 0.25 <= time.monotonic() - started < 3.0

    thread = threading.Thread(target=wait)
    thread.start()
    thread.join(10)
    assert len(errors) == 1
    assert errors[0].holder["fence"] == holder.fence
    assert errors[0].holder["pid"] > 0
    holder.release()
    assert sample(il, "interlock_lock_acquire_seconds_count", lock="account", result="timeout") == 1
    assert sample(il, "interlock_lock_contended_total", lock="account") == 1
    # the timed-out waiter left the queue: the lock is free for a newcomer at once
    assert il.lock("account", 7).acquire(blocking=False) is not None


def test_fence_strictly_increases_across_holders_and_expiry(il: Interlock) -> None:
    fences = []
    for _ in range(5):
        with il.lock("doc", "a") as lease:
            fences.append(lease.fence)
    expired = il.lock("doc", "a", ttl=0.05, auto_renew=False).acquire()
    assert expired is not None
    fences.append(expired.fence)
    time.sleep(0.15)  # let the lease expire on the server (the subject of this test)
    with il.lock("doc", "a") as lease:
        fences.append(lease.fence)
    assert fences == sorted(set(fences)), fences
    with pytest.raises(LockLost):
        expired.release()


def test_already_held_and_reentrant(il: Interlock) -> None:
    lock = il.lock("account", 9)
    with lock:
        with pytest.raises(LockAlreadyHeld):
            il.lock("account", 9).acquire()
    reentrant = il.lock("account", 9, reentrant=True)
    with reentrant as outer:
        with reentrant as inner:
            assert inner is outer
        assert il.lock_info("account", 9) is not None
    assert il.lock_info("account", 9) is None


def test_renewal_keeps_a_long_section_safe(il: Interlock, other: Interlock) -> None:
    with il.lock("job", 1, ttl=0.3) as lease:
        deadline = time.monotonic() + 0.9  # three TTLs
        while time.monotonic() < deadline:
            assert other.lock("job", 1).acquire(blocking=False) is None
            time.sleep(0.05)
        lease.check()
        info = il.lock_info("job", 1)
        assert info is not None and info.fence == lease.fence


def test_lost_lease_when_key_deleted_behind_its_back(
    il: Interlock, caplog: pytest.LogCaptureFixture
) -> None:
    lost = threading.Event()
    lease = il.lock("job", 2, ttl=0.3, on_lost=lambda _lease: lost.set()).acquire()
    assert lease is not None
    il.backend.execute("DEL", lease.keys[0])
    assert lost.wait(5.0), "the renewer should notice the lease is gone"
    with pytest.raises(LockLost):
        lease.check()
    with pytest.raises(LockLost):
        lease.release()
    assert sample(il, "interlock_lock_lost_total", lock="job", reason="taken") == 1
    events = [r for r in caplog.records if getattr(r, "event.action", None) == "lock-lost"]
    assert len(events) == 1
    assert events[0].levelname == "WARNING"
    assert getattr(events[0], "interlock.lock.fence") == lease.fence


def test_extend(il: Interlock) -> None:
    lease = il.lock("job", 3, ttl=1.0, auto_renew=False).acquire()
    assert lease is not None
    lease.extend(5.0)
    info = il.lock_info("job", 3)
    assert info is not None and info.ttl_remaining > 3.0
    lease.release()


def test_waiters_are_served_in_arrival_order(il: Interlock) -> None:
    holder = il.lock("queue", 1).acquire()
    assert holder is not None
    order: list[int] = []
    threads = []
    for index in range(4):
        thread = threading.Thread(
            target=lambda i=index: _take_and_record(il, i, order), name=f"w{index}"
        )
        threads.append(thread)
        thread.start()
        _wait_for_waiters(il, "queue", index + 1)
    holder.release()
    for thread in threads:
        thread.join(10)
    assert order == [0, 1, 2, 3]


def _take_and_record(il: Interlock, index: int, order: list[int]) -> None:
    with il.lock("queue", 1, timeout=10):
        order.append(index)


def _wait_for_waiters(il: Interlock, name: str, count: int) -> None:
    deadline = time.monotonic() + 5
    while sample(il, "interlock_lock_waiting", lock=name) < count:
        assert time.monotonic() < deadline, "waiter did not start waiting"
        time.sleep(0.005)
    # the waiting gauge rises before the queued attempt returns; confirm on the server
    keys = il.lock(name, 1).keys
    while il.backend.execute("ZCARD", keys[2]) < count:
        assert time.monotonic() < deadline, "waiter did not join the queue"
        time.sleep(0.005)


def test_waiter_wakes_when_holder_expires(il: Interlock) -> None:
    il.lock("crash", 1, ttl=0.3, auto_renew=False).acquire()  # never released: a crashed holder
    result: list[float] = []

    def wait() -> None:
        started = time.monotonic()
        with il.lock("crash", 1, timeout=5):
            result.append(time.monotonic() - started)

    thread = threading.Thread(target=wait)
    thread.start()
    thread.join(10)
    assert result and result[0] < 2.0


def test_timeouts_are_kept_to_the_millisecond_not_to_redis_ticks(
    il: Interlock, other: Interlock
) -> None:
    """Redis times blocking commands out only at its 100 ms ticks; waiters keep time themselves."""
    holder = il.lock("tight", 1).acquire()
    assert holder is not None
    elapsed = []
    for _ in range(5):
        started = time.monotonic()
        with pytest.raises(LockTimeout):
            other.lock("tight", 1, timeout=0.05).acquire()
        elapsed.append(time.monotonic() - started)
    holder.release()
    assert 0.05 <= statistics.median(elapsed) < 0.085, elapsed


def test_a_crashed_holders_lock_is_taken_soon_after_its_ttl(il: Interlock) -> None:
    taken = []
    for n in range(3):
        crashed = il.lock("crash-ttl", n, ttl=0.2, auto_renew=False).acquire()  # never released
        assert crashed is not None
        started = time.monotonic()
        result: list[float] = []

        def wait(key: int = n, got: list[float] = result) -> None:
            with il.lock("crash-ttl", key, timeout=5):
                got.append(time.monotonic())

        thread = threading.Thread(target=wait)
        thread.start()
        thread.join(10)
        assert result
        taken.append(result[0] - started)
    assert statistics.median(taken) < 0.27, taken


def test_fenced_set_refuses_older_fence(il: Interlock) -> None:
    with il.lock("doc", "f") as first:
        il.fenced_set("doc-f", b"v1", first.fence)
    with il.lock("doc", "f") as second:
        il.fenced_set("doc-f", b"v2", second.fence)
    with pytest.raises(FenceRejected):
        il.fenced_set("doc-f", b"stale", first.fence)
    assert il.fenced_get("doc-f") == (b"v2", second.fence)


def test_hostile_keys_stay_in_their_namespace(il: Interlock) -> None:
    evil = "x}:{other}:lock:*\r\n"
    with il.lock("account", evil) as lease:
        assert all(k.startswith(f"{il.namespace}:lock:{{account:") for k in lease.keys)
        assert lease.keys[0].count("{") == 1 and lease.keys[0].count("}") == 1
        assert il.lock("account", "x").acquire(blocking=False) is not None


@pytest.mark.anyio
async def test_async_lock_and_cancellation_leaves_no_zombie(backend_url: str) -> None:
    ail = AsyncInterlock(backend_url, namespace=f"t{uuid.uuid4().hex[:12]}")
    holder = await ail.lock("account", 5).acquire()
    assert holder is not None
    waiter = asyncio.ensure_future(ail.lock("account", 5, timeout=10).acquire())
    await aqueued(ail, "account", 5)  # cancelled while it waits in the queue
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await holder.release()
    # the cancelled waiter must not have been handed the lock
    assert await ail.lock_info("account", 5) is None
    async with ail.lock("account", 5) as lease:
        assert lease.fence > holder.fence
    counter = 0

    async def work() -> None:
        nonlocal counter
        for _ in range(25):
            async with ail.lock("counter", 1):
                value = counter
                await asyncio.sleep(0)
                counter = value + 1

    await asyncio.gather(*(work() for _ in range(4)))
    assert counter == 100
    await ail.aclose()


@pytest.mark.anyio
async def test_cancelled_release_still_releases(backend_url: str) -> None:
    ail = AsyncInterlock(backend_url, namespace=f"t{uuid.uuid4().hex[:12]}")
    for delay in (1, 2, 3, 5):  # the release must have started: cancel mid-flight
        lease = await ail.lock("account", delay).acquire()
        assert lease is not None
        task = asyncio.ensure_future(lease.release())
        for _ in range(delay):
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        deadline = time.monotonic() + 5
        while await ail.lock_info("account", delay) is not None:
            assert time.monotonic() < deadline, "a cancelled release left the lock held"
            await asyncio.sleep(0.01)
    await ail.aclose()
