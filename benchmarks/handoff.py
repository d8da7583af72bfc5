#!/usr/bin/env python3
"""Where a contended hand-off's time goes: the holder's Python, the wire, the waiter's Python.

Run:  .venv/bin/python benchmarks/handoff.py [--seconds 3] [--rounds 2] [--write]

Same load as the contended part of locks.py (4 processes, one lock, 1 ms inside, 2 ms
outside) on interlock's blocking API, with three timestamps per hand-off taken on one clock
(perf_counter is CLOCK_MONOTONIC, shared by all processes): the holder asks to release,
the holder's release command is about to be written, the waiter's BLPOP has its reply, the
waiter's acquire() returns. The middle part is the floor of any lock that goes through
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

    def stamped_call(self: Any, command: bytes, read_timeout: float | None = None) -> Any:
        if command.startswith(b"*") and b"EVALSHA" in command[:24]:
            stamps["sent"] = time.perf_counter()
        return call(self, command, read_timeout)

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


def measure(url: str, seconds: float) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    name = uuid.uuid4().hex[:8]
    procs = [ctx.Process(target=_worker, args=(url, name, start, seconds, out)) for _ in range(4)]
    for proc in procs:
        proc.start()
    time.sleep(1.5)
    start.set()
    events = sorted(e for _ in procs for e in out.get(timeout=seconds + 60))
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
        "rate": len(events) / seconds,
        "handoffs": len(total),
        "holder": statistics.median(holder) * 1e6,
        "wire": statistics.median(wire) * 1e6,
        "waiter": statistics.median(waiter) * 1e6,
        "total": statistics.median(total) * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--write", action="store_true", help="record in benchmarks/RESULTS.md")
    args = parser.parse_args()
    with start_redis() as server:
        runs = [measure(server.url, args.seconds) for _ in range(args.rounds)]
    lines = [
        "## Where a hand-off's time goes",
        "",
        f"`.venv/bin/python benchmarks/handoff.py --seconds {args.seconds:g} --rounds"
        f" {args.rounds} --write` — {machine()}, 2 cores; the contended load of locks.py on"
        " interlock's blocking API. Medians per hand-off, µs:",
        "",
        "| round | acquisitions/s | holder: release() → command written | → waiter has the"
        " reply (wire, Redis, wake-ups) | → waiter's acquire() returns | hand-off |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for n, r in enumerate(runs, 1):
        lines.append(
            f"| {n} | {r['rate']:,.0f} | {r['holder']:.0f} | {r['wire']:.0f} | {r['waiter']:.0f}"
            f" | {r['total']:.0f} |"
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
