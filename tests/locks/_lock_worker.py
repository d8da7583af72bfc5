"""A separate process for the lock tests (run as a script: real processes, real signals)."""

from __future__ import annotations

import asyncio
import json
import sys
import time

import redis

from interlock import AsyncInterlock, FenceRejected, Interlock, LockLost


def count(url: str, namespace: str, counter_key: str, rounds: int) -> None:
    """Non-atomic read-modify-write of a Redis counter inside the lock, ``rounds`` times."""
    il = Interlock(url, namespace=namespace)
    raw = redis.Redis.from_url(url)
    for _ in range(rounds):
        with il.lock("counter", 1, ttl=5.0, timeout=30.0):
            value = int(raw.get(counter_key) or 0)
            raw.set(counter_key, value + 1)
    il.close()


def pause_holder(url: str, namespace: str) -> None:
    """Take the lock, report the fence, block on stdin (the test SIGSTOPs us), then write."""
    il = Interlock(url, namespace=namespace)
    lease = il.lock("doc", 1, ttl=0.5).acquire()
    assert lease is not None
    il.fenced_set("doc-1", b"first", lease.fence)
    print(json.dumps({"fence": lease.fence}), flush=True)
    sys.stdin.readline()
    result: dict[str, object] = {}
    try:
        lease.check()
        result["check"] = "ok"
    except LockLost as exc:
        result["check"] = f"lost: {exc}"
    try:
        il.fenced_set("doc-1", b"stale write", lease.fence)
        result["write"] = "accepted"
    except FenceRejected:
        result["write"] = "rejected"
    print(json.dumps(result), flush=True)
    time.sleep(0.1)
    il.close()


def hold(url: str, namespace: str, ttl: float, seconds: float) -> None:
    """Take lock ("long", 1) with ``ttl``, say so, keep it ``seconds`` (renewed), release."""
    il = Interlock(url, namespace=namespace)
    with il.lock("long", 1, ttl=ttl) as lease:
        print(json.dumps({"fence": lease.fence}), flush=True)
        time.sleep(seconds)  # the held time is the subject of the test
    il.close()


def hold_and_check(url: str, namespace: str, kind: str) -> None:
    """Hold lock ("restart", 1) with ttl 6 s, say its fence, then ``check()`` it every
    millisecond and say when (wall clock) it first raised, and why; at most 20 s."""
    if kind == "async":
        asyncio.run(_async_hold_and_check(url, namespace))
        return
    il = Interlock(url, namespace=namespace, socket_timeout=0.5)
    lease = il.lock("restart", 1, ttl=6.0, auto_renew=kind != "no-renew").acquire()
    assert lease is not None
    while not il.locks.watching:  # a process's first lease is re-checked once subscribed
        time.sleep(0.001)
    say(fence=lease.fence)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            lease.check()
        except LockLost:
            say(lost_at=time.time(), reason=lease.lost_reason)
            break
        time.sleep(0.001)
    il.close()


async def _async_hold_and_check(url: str, namespace: str) -> None:
    ail = AsyncInterlock(url, namespace=namespace, socket_timeout=0.5)
    lease = await ail.lock("restart", 1, ttl=6.0).acquire()
    assert lease is not None
    while not ail.locks.watching:
        await asyncio.sleep(0.001)
    say(fence=lease.fence)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            lease.check()
        except LockLost:
            say(lost_at=time.time(), reason=lease.lost_reason)
            break
        await asyncio.sleep(0.001)
    await ail.aclose()


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "count":
        count(args[0], args[1], args[2], int(args[3]))
    elif mode == "pause":
        pause_holder(args[0], args[1])
    elif mode == "hold-check":
        hold_and_check(args[0], args[1], args[2])
    elif mode == "hold":
        hold(args[0], args[1], float(args[2]), float(args[3]))
