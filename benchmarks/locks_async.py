#!/usr/bin/env python3
"""asyncio lock benchmark: interlock's AsyncInterlock vs redis.asyncio Lock, pottery
AIORedlock and the redis.asyncio raw floor; contended also against interlock's sync API.

Run:  .venv/bin/python benchmarks/locks_async.py [--cycles 1000] [--seconds 3] [--rounds 3]
      [--write]

All contenders use the same throwaway redis-server, started by this script, in the same run.
1. Uncontended: acquire+release cycles/s in one task, and Redis round trips per cycle; the
   raw floor is SET NX PX + an EVALSHA compare-and-delete on redis.asyncio.
2. Contended: 4 processes x 4 tasks, one lock, 1 ms inside and 2 ms outside the lock, for
   --seconds: acquisitions/s, wait p50/p99/max, Jain fairness of per-task acquisition counts,
   hand-off (one holder asking to release -> the next holder running). In the same rounds:
   interlock's sync API with 4 processes x 1 thread (locks.py's contended load).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import multiprocessing as mp
import os
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from _common import jain, machine, percentile, start_redis, write_section
from locks import RAW_RELEASE, _contend

KINDS = ["interlock", "redis.asyncio Lock", "pottery AIORedlock", "raw"]
CONTENDED = ["interlock", "redis.asyncio Lock", "pottery AIORedlock", "interlock sync (4 x 1)"]
TASKS = 4
Contender = tuple[Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]]


class AsyncRoundTrips:
    """Counts client->server writes of redis.asyncio connections and of interlock's own
    asyncio wire (one per round trip; a pipeline counts once, like on the wire)."""

    def __init__(self) -> None:
        import redis.asyncio.connection

        from interlock.backends import _wire

        self.count = 0
        send = redis.asyncio.connection.AbstractConnection.send_packed_command
        request = _wire.AsyncWire.request

        async def counting_send(conn: Any, command: Any, check_health: bool = True) -> None:
            self.count += 1
            await send(conn, command, check_health)

        async def counting_request(wire: Any, payload: bytes, timeout: float | None) -> Any:
            self.count += 1
            return await request(wire, payload, timeout)

        redis.asyncio.connection.AbstractConnection.send_packed_command = counting_send  # type: ignore[method-assign]
        _wire.AsyncWire.request = counting_request  # type: ignore[method-assign]


def make_contender(kind: str, url: str, name: str) -> Contender:
    """(acquire, release) coroutine functions for one library, blocking, no timeout."""
    import redis.asyncio as redis_asyncio

    # every contender gets the same client settings: bounded timeouts, as in production
    client = redis_asyncio.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
    if kind == "interlock":
        from interlock import AsyncInterlock

        ail = AsyncInterlock(url, namespace="bench", registry=None)
        lock = ail.lock("bench", name, ttl=10.0, timeout=None)

        async def release_lease(lease: Any) -> None:
            await lease.release()

        return lock.acquire, release_lease
    if kind == "redis.asyncio Lock":

        def redis_lock() -> Contender:  # a Lock's token is per task: one Lock per task
            lock = client.lock(f"rp:{name}", timeout=10, sleep=0.001)

            async def release(_ok: Any) -> None:
                await lock.release()

            return lock.acquire, release

        return _per_task(redis_lock)
    if kind == "pottery AIORedlock":
        from pottery import AIORedlock

        def redlock() -> Contender:
            red = AIORedlock(key=f"pot:{name}", masters={client}, auto_release_time=10)

            async def release(_ok: Any) -> None:
                await red.release()

            return red.acquire, release

        return _per_task(redlock)
    if kind == "raw":
        release_script = client.register_script(RAW_RELEASE)
        key = f"raw:{name}"

        async def acquire() -> str:
            token = uuid.uuid4().hex
            while not await client.set(key, token, nx=True, px=10_000):
                await asyncio.sleep(0.001)
            return token

        async def release(token: str) -> None:
            await release_script(keys=[key], args=[token])

        return acquire, release
    raise ValueError(kind)


def _per_task(build: Callable[[], Contender]) -> Contender:
    """A contender whose lock object holds the owner's token: one object per asyncio task."""
    mine: dict[int, Contender] = {}

    def own() -> Contender:
        task = id(asyncio.current_task())
        if task not in mine:
            mine[task] = build()
        return mine[task]

    async def acquire() -> Any:
        return await own()[0]()

    async def release(token: Any) -> None:
        await own()[1](token)

    return acquire, release


async def uncontended(
    url: str, cycles: int, trips: AsyncRoundTrips, rounds: int = 9
) -> dict[str, Any]:
    """Median cycles/s over interleaved rounds in shuffled order; ratios per round."""
    contenders = {kind: make_contender(kind, url, f"u-{uuid.uuid4().hex[:6]}") for kind in KINDS}
    per_cycle: dict[str, float] = {}
    for kind, (acquire, release) in contenders.items():
        for _ in range(200):  # warm up connections and script caches
            await release(await acquire())
        before = trips.count
        for _ in range(100):
            await release(await acquire())
        per_cycle[kind] = (trips.count - before) / 100
    rates: dict[str, list[float]] = {kind: [] for kind in KINDS}
    ratios: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for _ in range(rounds):
        this_round = {}
        for kind in random.sample(KINDS, len(KINDS)):
            acquire, release = contenders[kind]
            started = time.perf_counter()
            for _ in range(cycles):
                await release(await acquire())
            this_round[kind] = cycles / (time.perf_counter() - started)
        for kind in KINDS:
            rates[kind].append(this_round[kind])
            ratios[kind].append(this_round[kind] / this_round["raw"])
    return {
        kind: (statistics.median(rates[kind]), statistics.median(ratios[kind]), per_cycle[kind])
        for kind in KINDS
    }


async def _tasks(kind: str, url: str, name: str, start: Any, seconds: float) -> list[Any]:
    acquire, release = make_contender(kind, url, name)

    async def one() -> tuple[list[float], list[tuple[float, float]]]:
        await release(await acquire())
        waits: list[float] = []
        spans: list[tuple[float, float]] = []  # (got the lock, asked to release it)
        await asyncio.to_thread(start.wait)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            asked = time.perf_counter()
            token = await acquire()
            got = time.perf_counter()
            waits.append(got - asked)
            await asyncio.sleep(0.001)
            leaving = time.perf_counter()
            await release(token)
            spans.append((got, leaving))
            await asyncio.sleep(0.002)
        return waits, spans

    return list(await asyncio.gather(*(one() for _ in range(TASKS))))


def _contend_async(kind: str, url: str, name: str, start: Any, seconds: float, out: Any) -> None:
    for result in asyncio.run(_tasks(kind, url, name, start, seconds)):
        out.put(result)


def contend_once(url: str, kind: str, seconds: float, processes: int = 4) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    name = f"c-{uuid.uuid4().hex[:6]}"
    start, out = ctx.Event(), ctx.Queue()
    sync = kind.startswith("interlock sync")
    target = _contend if sync else _contend_async
    library = "interlock" if sync else kind
    procs = [
        ctx.Process(target=target, args=(library, url, name, start, seconds, out))
        for _ in range(processes)
    ]
    for proc in procs:
        proc.start()
    time.sleep(1.5)  # let every process import and warm up before the start signal
    start.set()
    results = [out.get(timeout=seconds + 60) for _ in range(processes * (1 if sync else TASKS))]
    for proc in procs:
        proc.join(30)
    waits = [w for ws, _ in results for w in ws]
    spans = sorted(span for _, ss in results for span in ss)
    gaps = [after[0] - before[1] for before, after in itertools.pairwise(spans)]
    return {
        "rate": len(waits) / seconds,
        "p50": percentile(waits, 50) * 1000,
        "p99": percentile(waits, 99) * 1000,
        "max": max(waits) * 1000,
        "fairness": jain([len(ws) for ws, _ in results]),
        "handoff": percentile(gaps, 50) * 1e6,
        "hold": percentile([leaving - got for got, leaving in spans], 50) * 1000,
        "contenders": len(results),
    }


def contended(
    url: str, seconds: float, rounds: int, kinds: list[str] = CONTENDED
) -> dict[str, dict[str, float]]:
    """Per library, medians over ``rounds`` interleaved rounds, plus the median per-round
    throughput ratio to interlock's sync API."""
    kinds = sorted(set(kinds) | {"interlock sync (4 x 1)"}, key=CONTENDED.index)
    runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    for _ in range(rounds):
        order = random.sample(kinds, len(kinds))
        this_round = {kind: contend_once(url, kind, seconds) for kind in order}
        anchor = this_round["interlock sync (4 x 1)"]["rate"]
        for kind in kinds:
            this_round[kind]["vs_sync"] = this_round[kind]["rate"] / anchor
            runs[kind].append(this_round[kind])
    return {
        kind: {key: statistics.median(run[key] for run in runs[kind]) for key in runs[kind][0]}
        for kind in kinds
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3, help="contended rounds")
    parser.add_argument("--skip-contended", action="store_true", help="(while developing)")
    parser.add_argument("--contended", nargs="*", default=CONTENDED, help="(while developing)")
    parser.add_argument("--write", action="store_true", help="record in benchmarks/RESULTS.md")
    args = parser.parse_args()
    trips = AsyncRoundTrips()
    load_before = os.getloadavg()[0]
    with start_redis() as server:
        unc = asyncio.run(uncontended(server.url, args.cycles, trips))
        con = {}
        if not args.skip_contended:
            con = contended(server.url, args.seconds, args.rounds, args.contended)
    lines = [
        "## Locks under asyncio",
        "",
        f"`.venv/bin/python benchmarks/locks_async.py --cycles {args.cycles} --seconds"
        f" {args.seconds:g} --rounds {args.rounds} --write` — one throwaway redis-server on"
        f" loopback, all contenders in the same run, {machine()}, 2 cores; load average"
        f" {load_before:.1f} before, {os.getloadavg()[0]:.1f} after (other work on the"
        " machine: the asyncio contended figures move with it more than the sync ones).",
        "",
        "Uncontended acquire+release, one task: median of 9 interleaved rounds (shuffled order"
        " each round; the ratio to the raw floor — redis.asyncio SET NX PX + EVALSHA"
        " compare-and-delete — is taken within each round):",
        "",
        "| library | cycles/s | vs raw floor | round trips/cycle |",
        "|---|---:|---:|---:|",
    ]
    for kind in KINDS:
        rate, ratio, per_cycle = unc[kind]
        lines.append(f"| {kind} | {rate:,.0f} | {ratio:.2f}x | {per_cycle:.2f} |")
    if con:
        lines += [
            "",
            f"Contended: 4 processes x {TASKS} tasks, one lock, 1 ms inside, 2 ms outside"
            f" (`asyncio.sleep`), {args.seconds:g} s per run; interlock's sync API with 4"
            f" processes x 1 thread (`time.sleep`) in the same rounds; medians of"
            f" {args.rounds} interleaved rounds:",
            "",
            "| library | acquisitions/s | vs interlock sync | wait p50 ms | wait p99 ms"
            " | p99 target ms | wait max ms | Jain fairness | hold p50 ms | hand-off p50 µs |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for kind in con:
            r = con[kind]
            target = 1.3 * (r["contenders"] - 1) * r["hold"]
            lines.append(
                f"| {kind} | {r['rate']:,.0f} | {r['vs_sync']:.2f}x | {r['p50']:.2f}"
                f" | {r['p99']:.2f} | {target:.2f} | {r['max']:.2f} | {r['fairness']:.3f}"
                f" | {r['hold']:.2f} | {r['handoff']:.0f} |"
            )
        lines += [
            "",
            "Fairness is over the 16 tasks (sync: the 4 processes). p99 target: 1.3 x"
            " (contenders - 1) x the measured hold time (lock held, from acquire() returning to"
            " release() called). Hand-off: from one holder asking to release to the"
            " next holder running (median over successive holders; `benchmarks/handoff.py"
            " --api async` splits it).",
        ]
    report = "\n".join(lines)
    print(report)
    if args.write:
        write_section("locks-async", report)


if __name__ == "__main__":
    main()
