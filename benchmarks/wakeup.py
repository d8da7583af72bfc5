#!/usr/bin/env python3
"""The floor under every contended lock: how long one process takes to wake another.

Run:  .venv/bin/python benchmarks/wakeup.py [--messages 100] [--write]

A lock hand-off needs one cross-process wake-up, whatever the library: a pub/sub message
(interlock), a BLPOP reply (python-redis-lock), or the next poll (redis-py, pottery). This
measures the first two on a throwaway redis-server, next to a plain GET round trip, so the
contended lock figures can be read against the machine they were taken on.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from typing import Any

from _common import machine, percentile, start_redis, write_section


def _subscriber(url: str, count: int, ready: Any, out: Any) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5.0)
    pubsub = client.pubsub()
    pubsub.subscribe("wake")
    while (message := pubsub.get_message(timeout=1.0)) is None or message["type"] != "subscribe":
        pass
    ready.set()
    delays = []
    while len(delays) < count:
        message = pubsub.get_message(timeout=1.0)
        if message and message["type"] == "message":
            delays.append(time.time() - float(message["data"]))
    out.put(delays)


def _popper(url: str, count: int, ready: Any, out: Any) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5.0)
    ready.set()
    delays = []
    while len(delays) < count:
        item = client.blpop(["wake"], timeout=2)
        if item is not None:
            delays.append(time.time() - float(item[1]))
    out.put(delays)


def measure(url: str, count: int) -> dict[str, list[float]]:
    import redis

    ctx = mp.get_context("spawn")
    client = redis.Redis.from_url(url)
    results: dict[str, list[float]] = {}
    for name, target, send in (
        ("pub/sub message", _subscriber, lambda: client.publish("wake", repr(time.time()))),
        ("BLPOP reply", _popper, lambda: client.lpush("wake", repr(time.time()))),
    ):
        ready, out = ctx.Event(), ctx.Queue()
        proc = ctx.Process(target=target, args=(url, count, ready, out))
        proc.start()
        ready.wait(30)
        time.sleep(0.2)
        for _ in range(count):
            send()
            time.sleep(0.01)  # the waiter is idle between wake-ups, as a lock waiter is
        results[name] = out.get(timeout=60)
        proc.join(10)
    started = time.perf_counter()
    round_trips = []
    for _ in range(count):
        client.get("x")
        round_trips.append(time.perf_counter() - started)
        started = time.perf_counter()
    results["GET round trip (busy client)"] = round_trips
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--write", action="store_true", help="record in benchmarks/RESULTS.md")
    args = parser.parse_args()
    with start_redis() as server:
        results = measure(server.url, args.messages)
    lines = [
        "## Cross-process wake-up",
        "",
        f"`.venv/bin/python benchmarks/wakeup.py --messages {args.messages} --write` — "
        f"{machine()}, 2 cores. Time from sending to the idle receiving process having the "
        "message, versus a round trip of a busy client:",
        "",
        "| path | p50 ms | p90 ms |",
        "|---|---:|---:|",
    ]
    for name, delays in results.items():
        p50, p90 = percentile(delays, 50) * 1000, percentile(delays, 90) * 1000
        lines.append(f"| {name} | {p50:.3f} | {p90:.3f} |")
    lines += [
        "",
        "Every contended lock hand-off pays at least one such wake-up on top of the critical"
        " section (interlock: exactly one, the lock is already the waiter's when it wakes;"
        " python-redis-lock: one plus the woken waiter's SET NX round trip; polling locks: the"
        " rest of their sleep). A waiter idle for only a few milliseconds, as in the contended"
        " lock benchmark, wakes faster than these 10 ms-idle figures: the hand-off column of"
        " the lock benchmark measures it in place.",
    ]
    report = "\n".join(lines)
    print(report)
    if args.write:
        write_section("wakeup", report)


if __name__ == "__main__":
    main()
