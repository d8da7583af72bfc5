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


def torture(url: str, namespace: str, kind: str, counter: str, seed: int) -> None:
    """Two users (threads, or tasks with ``kind`` async) take lock ("torture", 1) again and
    again until a line on stdin, each section a slow read-modify-write of the ``counter``
    file; then say every acquire's duration and outcome, and every written section."""
    import random
    import threading

    report: dict[str, list[object]] = {"calls": [], "sections": []}
    report["kind"] = kind  # type: ignore[assignment]
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()

    def section(lease: object, rng: random.Random) -> None:
        started = time.time()
        lease.check()  # type: ignore[attr-defined]
        with open(counter) as file:
            value = int(file.read() or 0)
        time.sleep(rng.random() * 0.01)  # widen the window a second holder would hit
        lease.check()  # type: ignore[attr-defined]
        checked = time.time()
        with open(counter, "w") as file:
            file.write(str(value + 1))
        report["sections"].append([started, checked, lease.fence])  # type: ignore[attr-defined]

    def outcome(exc: BaseException | None) -> str:
        return "ok" if exc is None else type(exc).__name__

    if kind == "async":
        async def user(ail: AsyncInterlock, rng: random.Random) -> None:
            while not stop.is_set():
                timeout = rng.choice([0.2, 0.5, 1.0])
                began, error = time.monotonic(), None
                try:
                    lease = await ail.lock("torture", 1, ttl=1.0, timeout=timeout).acquire()
                except Exception as exc:  # LockTimeout, BackendUnavailable: fail closed
                    error = exc
                report["calls"].append([timeout, time.monotonic() - began, outcome(error)])
                if error is None:
                    assert lease is not None
                    try:
                        section(lease, rng)
                        await lease.release()
                    except Exception:  # LockLost, BackendUnavailable: not exclusive, no write
                        pass
                await asyncio.sleep(rng.random() * 0.01)

        async def users() -> None:
            ail = AsyncInterlock(url, namespace=namespace, socket_timeout=0.5)
            await asyncio.gather(*(user(ail, random.Random(seed * 10 + i)) for i in range(2)))
            await ail.aclose()

        asyncio.run(users())
    else:
        il = Interlock(url, namespace=namespace, socket_timeout=0.5)

        def sync_user(rng: random.Random) -> None:
            while not stop.is_set():
                timeout = rng.choice([0.2, 0.5, 1.0])
                began, error = time.monotonic(), None
                try:
                    lease = il.lock("torture", 1, ttl=1.0, timeout=timeout).acquire()
                except Exception as exc:
                    error = exc
                report["calls"].append([timeout, time.monotonic() - began, outcome(error)])
                if error is None:
                    assert lease is not None
                    try:
                        section(lease, rng)
                        lease.release()
                    except Exception:
                        pass
                time.sleep(rng.random() * 0.01)

        threads = [
            threading.Thread(target=sync_user, args=(random.Random(seed * 10 + i),))
            for i in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        il.close()
    say(**report)


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "count":
        count(args[0], args[1], args[2], int(args[3]))
    elif mode == "pause":
        pause_holder(args[0], args[1])
    elif mode == "torture":
        torture(args[0], args[1], args[2], args[3], int(args[4]))
    elif mode == "hold-check":
        hold_and_check(args[0], args[1], args[2])
    elif mode == "hold":
        hold(args[0], args[1], float(args[2]), float(args[3]))
