"""What a lock keeps on the server: what a release leaves, the fence bookkeeping, the queue."""

from __future__ import annotations

import threading
import time

from interlock import Interlock
from interlock.lock import FENCE_IDLE_MS, FENCE_REFRESH_MS, lock_keys


def _keys(il: Interlock, name: str, key: str) -> list[str]:
    return lock_keys(il.namespace, name, key)


def _left(il: Interlock, keys: list[str]) -> list[str]:
    return [key for key in keys if il.backend.execute("EXISTS", key)]


def test_a_release_leaves_only_the_bounded_fence_bookkeeping(il: Interlock) -> None:
    lock_key, bookkeeping, queue, details = keys = _keys(il, "left", "1")
    lease = il.lock("left", 1).acquire()
    assert lease is not None
    assert _left(il, keys) == [lock_key, bookkeeping]
    lease.release()
    assert _left(il, keys) == [bookkeeping]
    assert 0 < il.backend.execute("PTTL", bookkeeping) <= FENCE_IDLE_MS + FENCE_REFRESH_MS

    # the same after a hand-off: the queue's keys go with the last waiter
    holder = il.lock("left", 1).acquire()
    assert holder is not None
    got: list[int] = []
    waiter = threading.Thread(target=lambda: _take(il, got))
    waiter.start()
    _wait_queued(il, queue, 1)
    assert 0 < il.backend.execute("PTTL", queue) <= 11_000  # it lapses if the waiter dies
    assert 0 < il.backend.execute("PTTL", details) <= 11_000
    holder.release()
    waiter.join(10)
    assert got and got[0] > holder.fence
    assert _left(il, keys) == [bookkeeping]


def _take(il: Interlock, got: list[int]) -> None:
    with il.lock("left", 1, timeout=10) as lease:
        got.append(lease.fence)


def _wait_queued(il: Interlock, queue: str, count: int) -> None:
    deadline = time.monotonic() + 5
    while il.backend.execute("ZCARD", queue) < count:
        assert time.monotonic() < deadline, "the waiter did not join the queue"
        time.sleep(0.005)


def test_fences_count_on_when_the_server_clock_is_behind_the_last_fence(il: Interlock) -> None:
    _, bookkeeping, _, _ = _keys(il, "behind", "1")
    seconds, micros = il.backend.execute("TIME")
    ahead = (int(seconds) + 60) * 1_000_000 + int(micros)  # as if the clock stepped back 60 s
    il.backend.execute("SET", bookkeeping, str(ahead), "PX", 5_000)
    fences = []
    for _ in range(3):
        with il.lock("behind", 1) as lease:
            fences.append(lease.fence)
    assert fences == [ahead + 1, ahead + 2, ahead + 3]
    # counting on rewrites the bookkeeping's expiry: it lives as long as acquisitions go on
    assert il.backend.execute("PTTL", bookkeeping) > FENCE_IDLE_MS
