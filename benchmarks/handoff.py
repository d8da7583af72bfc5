#!/usr/bin/env python3
"""Where a contended hand-off's time goes: the holder's Python, the wire, the waiter's Python.

Run:  .venv/bin/python benchmarks/handoff.py [--seconds 3] [--rounds 2] [--api both] [--write]

Same load as the contended part of locks.py (4 processes, one lock, 1 ms inside, 2 ms
outside) on interlock's blocking API, with three timestamps per hand-off taken on one clock
(perf_counter is CLOCK_MONOTONIC, shared by all processes): the holder asks to release,
the holder's release command is about to be written, the waiter's BLPOP has its reply, the
waiter's acquire() returns. ``--api async`` runs the asyncio twin (4 processes x 4 tasks, as
in locks_async.py); there the waiter has its reply when its BLPOP returns, or when the
pub/sub listener gets its message (a waiter past the per-process cap of signal waits).
The middle part is the floor of any lock that goes through
Redis: loopback to Redis, the release script, loopback to the waiter and waking both.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing as mp
import statistics
import time
import uuid
from typing import Any

from _common import machine, start_redis, write_section

TASKS = 4  # asyncio tasks per process (locks_async.py's contended load)


def _worker(url: str, name: str, start: Any, seconds: float, out: Any) -> None:
    import interlock._sync.backend.direct as redis_direct
    import interlock._sync.backend.redis as backend_redis
    from interlock import Interlock

    stamps: dict[str, float] = {}
    wait_signal = backend_redis.RedisBackend.wait_signal
    call = redis_direct.Direct.call

    def stamped_wait(self: Any, key: str, timeout: float) -> bytes | None:
        reply = wait_signal(self, key, timeout)
        stamps["woke"] = time.perf_counter()
        return reply

    def stamped_call(
        self: Any, command: bytes, read_timeout: float | None = None, budget: float | None = None
    ) -> Any:
        if command.startswith(b"*") and b"EVALSHA" in command[:24]:
            stamps["sent"] = time.perf_counter()
        return call(self, command, read_timeout, budget)

    backend_redis.RedisBackend.wait_signal = stamped_wait  # type: ignore[method-assign]
    redis_direct.Direct.call = stamped_call  # type: ignore[method-assign]
    il = Interlock(url, namespace="handoff", registry=None)
    lock = il.lock("bench", name, ttl=10.0, timeout=None)
    lease = lock.acquire()
    assert lease is not None
    lease.release()
    events = []
    start.wait()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        stamps.clear()
        lease = lock.acquire()
        assert lease is not None
        got, woke = time.perf_counter(), stamps.get("woke")
        time.sleep(0.001)
        leaving = time.perf_counter()
        lease.release()
        events.append((got, leaving, woke, stamps["sent"]))
        time.sleep(0.002)
    out.put(events)


def _async_worker(url: str, name: str, start: Any, seconds: float, out: Any) -> None:
    """The asyncio twin: TASKS tasks, stamps kept per task; "woke" is when the waiter has its
    hand-off (its BLPOP reply, or the pub/sub message past the listener's cap)."""
    import asyncio

    import interlock._async.backend.direct as redis_direct
    import interlock._async.backend.redis as backend_redis
    import interlock._async.lock.service as lock_service
    from interlock import AsyncInterlock

    stamps: dict[int, dict[str, float]] = {}

    def mine() -> dict[str, float]:
        return stamps.setdefault(id(asyncio.current_task()), {})

    wait_signal = backend_redis.AsyncRedisBackend.wait_signal
    call = redis_direct.AsyncDirect.call
    on_wake = lock_service.AsyncLockService._on_wake
    woken: dict[str, float] = {}

    async def stamped_wait(self: Any, key: str, timeout: float) -> bytes | None:
        reply = await wait_signal(self, key, timeout)
        mine()["woke"] = time.perf_counter()
        return reply

    async def stamped_call(
        self: Any, command: bytes, read_timeout: float | None = None, budget: float | None = None
    ) -> Any:
        if command.startswith(b"*") and b"EVALSHA" in command[:24]:
            mine()["sent"] = time.perf_counter()
        return await call(self, command, read_timeout, budget)

    def stamped_wake(self: Any, payload: bytes) -> None:
        woken[payload.decode().partition(":")[0]] = time.perf_counter()
        on_wake(self, payload)

    backend_redis.AsyncRedisBackend.wait_signal = stamped_wait  # type: ignore[method-assign]
    redis_direct.AsyncDirect.call = stamped_call  # type: ignore[method-assign]
    lock_service.AsyncLockService._on_wake = stamped_wake  # type: ignore[method-assign]

    async def one(lock: Any) -> list[tuple[float, float, float | None, float]]:
        lease = await lock.acquire()
        await lease.release()
        await asyncio.to_thread(start.wait)
        events = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            mine().clear()
            lease = await lock.acquire()
            got = time.perf_counter()
            woke = mine().get("woke", woken.pop(lease.token, None))
            await asyncio.sleep(0.001)
            leaving = time.perf_counter()
            await lease.release()
            events.append((got, leaving, woke, mine()["sent"]))
            await asyncio.sleep(0.002)
        return events

    async def main() -> None:
        ail = AsyncInterlock(url, namespace="handoff", registry=None)
        lock = ail.lock("bench", name, ttl=10.0, timeout=None)
        for events in await asyncio.gather(*(one(lock) for _ in range(TASKS))):
            out.put(events)
        await ail.aclose()

    asyncio.run(main())


def measure(url: str, seconds: float, api: str = "sync") -> dict[str, float]:
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    name = uuid.uuid4().hex[:8]
    target = _worker if api == "sync" else _async_worker
    procs = [ctx.Process(target=target, args=(url, name, start, seconds, out)) for _ in range(4)]
    for proc in procs:
        proc.start()
    time.sleep(1.5)
    start.set()
    results = len(procs) * (1 if api == "sync" else TASKS)
    events = sorted(e for _ in range(results) for e in out.get(timeout=seconds + 60))
    for proc in procs:
        proc.join(30)
    holder, wire, waiter, total = [], [], [], []
    for before, after in itertools.pairwise(events):
        if after[2] is None:  # acquired without waiting
            continue
        holder.append(before[3] - before[1])
        wire.append(after[2] - before[3])
        waiter.append(after[0] - after[2])
        total.append(after[0] - before[1])
    return {
        "api": api,
        "rate": len(events) / seconds,
        "handoffs": len(total),
        "holder": statistics.median(holder) * 1e6,
        "wire": statistics.median(wire) * 1e6,
        "waiter": statistics.median(waiter) * 1e6,
        "total": statistics.median(total) * 1e6,
        "p90": statistics.quantiles(total, n=10)[-1] * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--api", choices=["sync", "async", "both"], default="both")
    parser.add_argument("--write", action="store_true", help="record in benchmarks/RESULTS.md")
    args = parser.parse_args()
    apis = ["sync", "async"] if args.api == "both" else [args.api]
    with start_redis() as server:
        runs = [measure(server.url, args.seconds, api) for _ in range(args.rounds) for api in apis]
    lines = [
        "## Where a hand-off's time goes",
        "",
        f"`.venv/bin/python benchmarks/handoff.py --seconds {args.seconds:g} --rounds"
        f" {args.rounds} --api {args.api} --write` — {machine()}, 2 cores; the contended load"
        " of locks.py on interlock's blocking API (sync: 4 processes x 1 thread) and of"
        f" locks_async.py on its asyncio API (async: 4 processes x {TASKS} tasks), rounds"
        " interleaved. Medians per hand-off, µs:",
        "",
        "| round | API | acquisitions/s | holder: release() → command written | → waiter has"
        " the reply (wire, Redis, wake-ups) | → waiter's acquire() returns | hand-off"
        " | hand-off p90 |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for n, r in enumerate(runs):
        lines.append(
            f"| {n // len(apis) + 1} | {r['api']} | {r['rate']:,.0f} | {r['holder']:.0f}"
            f" | {r['wire']:.0f} | {r['waiter']:.0f} | {r['total']:.0f} | {r['p90']:.0f} |"
        )
    lines += [
        "",
        "With a 1.08 ms critical section, each µs of hand-off costs about 0.07% of throughput;"
        " the middle column is what any Redis-mediated lock pays at least.",
    ]
    report = "\n".join(lines)
    print(report)
    if args.write:
        write_section("handoff", report)


if __name__ == "__main__":
    main()
