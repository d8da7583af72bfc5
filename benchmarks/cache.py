#!/usr/bin/env python3
"""Cache benchmark: interlock vs cashews, aiocache and the raw floor, on one throwaway Redis.

Run:  .venv/bin/python benchmarks/cache.py [--rounds 40] [--calls 300] [--write]

Every contender uses the same redis-server, started by this script, in the same run, and
the same value (a small JSON document).
1. Hit latency of a warm key through each library's read-through API (interlock
   ``get_or_load``, cashews ``@cache``, aiocache ``@cached``) against the raw floor: redis-py
   ``GET`` + ``json.loads``. Contenders take turns in interleaved rounds; the ratio is the
   median over rounds of (contender / raw floor of the same round), and the order is shuffled
   every round, so load drift on the machine cancels out.
2. Near-cache hit (``near=True``) against interlock's own Redis hit.
3. Loader calls for 50 concurrent cold callers of one key: in one process, and in each of
   4 processes started together (200 callers), with each library's default and with its
   stampede protection switched on (cashews ``lock=True``, aiocache ``cached_stampede``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from _common import machine, median, start_redis, write_section

TIMES = "\N{MULTIPLICATION SIGN}"
MICRO = "\N{MICRO SIGN}"
DOC = {"id": 42, "name": "widget", "price": 9.99, "tags": ["a", "b"], "stock": 17}
LOAD_SECONDS = 0.1
COLD_CALLERS = 50
PROCESSES = 4
STAMPEDE = ("interlock", "cashews", "cashews lock=True", "aiocache", "aiocache cached_stampede")

Call = Callable[[], Awaitable[Any]]


# -- contenders ------------------------------------------------------------------------------


async def make_reader(
    kind: str, url: str, port: int, loads: list[float], suffix: str
) -> tuple[Call, Any]:
    """A zero-argument coroutine function reading key 42 through ``kind``, and a closer.

    ``suffix`` makes the key unique to a run; processes sharing a suffix share the key.
    """

    async def load() -> dict[str, Any]:
        loads.append(time.monotonic())
        await asyncio.sleep(LOAD_SECONDS)
        return dict(DOC)

    if kind.startswith("raw"):
        import redis.asyncio as redis_asyncio

        timeouts = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0}
        client = redis_asyncio.Redis.from_url(url, **(timeouts if "timeout" in kind else {}))
        await client.set(f"raw:{suffix}", json.dumps(DOC))

        async def raw() -> Any:
            return json.loads(await client.get(f"raw:{suffix}"))

        return raw, client.aclose
    if kind.startswith("interlock"):
        from interlock import AsyncInterlock

        ail = AsyncInterlock(url, namespace=f"bench{suffix}", registry=None)
        cache = ail.cache("products", ttl=600.0, near="near" in kind, lock_wait=10.0)

        async def interlock() -> Any:
            return await cache.get_or_load(42, load)

        return interlock, ail.aclose
    if kind.startswith("cashews"):
        from cashews import Cache

        cashews_cache = Cache()
        cashews_cache.setup(url)

        @cashews_cache(ttl="10m", key="product:{pid}", prefix=suffix, lock="lock" in kind)
        async def product(pid: int) -> Any:
            return await load()

        return (lambda: product(42)), cashews_cache.close
    if kind.startswith("aiocache"):
        from aiocache import RedisCache, cached, cached_stampede
        from aiocache.serializers import JsonSerializer

        decorator = cached_stampede if "stampede" in kind else cached
        options: dict[str, Any] = {"lease": 5} if "stampede" in kind else {}

        @decorator(  # type: ignore[operator]
            ttl=600,
            cache=RedisCache,
            endpoint="127.0.0.1",
            port=port,
            namespace=suffix,
            serializer=JsonSerializer(),
            key_builder=lambda fn, pid: f"product:{pid}",
            **options,
        )
        async def aio_product(pid: int) -> Any:
            return await load()

        async def close() -> None:
            await aio_product.cache.close()

        return (lambda: aio_product(42)), close
    raise ValueError(kind)


# -- 1 and 2: hit latency --------------------------------------------------------------------


async def hit_latency(url: str, port: int, rounds: int, calls: int) -> dict[str, dict[str, float]]:
    kinds = ["raw", "raw (socket_timeout)", "interlock", "cashews", "aiocache", "interlock near"]
    readers: dict[str, Call] = {}
    closers = []
    loads: list[float] = []
    for kind in kinds:
        reader, closer = await make_reader(kind, url, port, loads, uuid.uuid4().hex[:8])
        readers[kind] = reader
        closers.append(closer)
        for _ in range(50):  # fill the key, open connections, load scripts
            await reader()
    per_round: dict[str, list[float]] = {kind: [] for kind in kinds}
    cpu_round: dict[str, list[float]] = {kind: [] for kind in kinds}
    order = random.Random(7)
    for _ in range(rounds):
        for kind in order.sample(kinds, len(kinds)):  # no contender always runs first
            reader = readers[kind]
            started, cpu = time.perf_counter(), time.process_time()
            for _ in range(calls):
                await reader()
            per_round[kind].append((time.perf_counter() - started) / calls)
            cpu_round[kind].append((time.process_time() - cpu) / calls)
    for closer in closers:
        await closer()
    floor, cpu_floor = per_round["raw"], cpu_round["raw"]
    redis_hit = per_round["interlock"]
    out = {}
    for kind, times in per_round.items():
        cpu = cpu_round[kind]
        out[kind] = {
            "us": median(times) * 1e6,
            "vs_raw": median([t / f for t, f in zip(times, floor, strict=True)]),
            "cpu_us": median(cpu) * 1e6,
            "cpu_vs_raw": median([t / f for t, f in zip(cpu, cpu_floor, strict=True)]),
            "speedup_vs_interlock": median([h / t for t, h in zip(times, redis_hit, strict=True)]),
        }
    return out


# -- 3: cold stampede ------------------------------------------------------------------------


async def stampede_once(
    kind: str, url: str, port: int, suffix: str, go: Callable[[], Awaitable[None]]
) -> int:
    """Loader calls when COLD_CALLERS concurrent callers of this process read a cold key."""
    loads: list[float] = []
    reader, closer = await make_reader(kind, url, port, loads, suffix)
    await go()
    await asyncio.gather(*(reader() for _ in range(COLD_CALLERS)))
    await closer()
    return len(loads)


async def nothing() -> None:
    return None


def worker(kind: str, url: str, port: int, suffix: str) -> None:
    """One of the processes of the cross-process stampede: waits for "go" on stdin."""

    async def go() -> None:
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)

    loads = asyncio.run(stampede_once(kind, url, port, suffix, go))
    print(json.dumps({"loads": loads}), flush=True)


def stampede_processes(kind: str, url: str, port: int) -> int:
    """Loader calls when PROCESSES processes x COLD_CALLERS callers hit one cold key."""
    suffix = uuid.uuid4().hex[:8]  # one key for all the processes
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", kind, url, str(port), suffix],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        total = 0
        for proc in procs:
            assert proc.stdout is not None
            total += json.loads(proc.stdout.readline())["loads"]
        return total
    finally:
        for proc in procs:
            proc.wait(60)


# -- report ----------------------------------------------------------------------------------


def report(
    hits: dict[str, dict[str, float]], stampede: dict[str, tuple[int, int]], load: str
) -> str:
    lines = [
        f"Machine: {machine()}, {os.cpu_count()} cores; one throwaway redis-server on "
        f"localhost; all contenders in the same run; load average {load} (other work on "
        "the machine). Medians over interleaved rounds in shuffled order; ratios are medians "
        "of per-round ratios.",
        "",
        f"| read-through hit (warm key) | {MICRO}s per call | {TIMES} raw floor | "
        f"client CPU {MICRO}s per call | {TIMES} raw floor |",
        "|---|---:|---:|---:|---:|",
    ]
    for kind in ("raw", "raw (socket_timeout)", "interlock", "cashews", "aiocache"):
        row = hits[kind]
        lines.append(
            f"| {kind} | {row['us']:.1f} | {row['vs_raw']:.3f} | {row['cpu_us']:.1f} | "
            f"{row['cpu_vs_raw']:.3f} |"
        )
    near = hits["interlock near"]
    lines += [
        "",
        f"Near-cache hit: {near['us']:.2f} {MICRO}s, "
        f"**{near['speedup_vs_interlock']:.0f}{TIMES}** faster than interlock's Redis hit "
        f"({hits['interlock']['us']:.1f} {MICRO}s).",
        "",
        f"| loader calls, {COLD_CALLERS} concurrent cold callers | 1 process | "
        f"{PROCESSES} processes {TIMES} {COLD_CALLERS} |",
        "|---|---|---|",
    ]
    for kind, (one, many) in stampede.items():
        lines.append(f"| {kind} | {one} | {many} |")
    lines += [
        "",
        "Why interlock's hit costs less than the raw floor: its GET goes out on a connection "
        "of its own through interlock's asyncio wire (one transport write, hiredis fed from "
        "the protocol, one future per reply, one timer per connection), skipping redis-py's "
        "asyncio client path (command lookup, `asyncio.wait_for` around each write, "
        "`StreamReader` reads inside `asyncio.timeout`). How much that shows depends on the "
        "machine's state: on this shared VM a send syscall alone takes 5-20 µs depending on "
        "the other load, and the wall-time ratio of the same code ran from 0.43 (raw floor "
        "61 µs) to 0.90 (raw floor 123 µs) between runs; the CPU ratio moves less. "
        "aiocache's cross-process counts "
        "vary from run to run: a stampede waiter waits on an event of its own process, so in "
        "the other processes there is none to wait on and every caller loads.",
    ]
    return "\n".join(lines)


async def run_hits(url: str, port: int, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    return await hit_latency(url, port, args.rounds, args.calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, url, port, suffix = args.worker
        worker(kind, url, int(port), suffix)
        return
    load_before = os.getloadavg()[0]
    with start_redis() as server:
        url, port = server.url, server.port
        hits = asyncio.run(run_hits(url, port, args))
        stampede = {}
        for kind in STAMPEDE:
            server.flushall()
            one = asyncio.run(stampede_once(kind, url, port, uuid.uuid4().hex[:8], nothing))
            server.flushall()
            stampede[kind] = (one, stampede_processes(kind, url, port))
    load = f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    text = report(hits, stampede, load)
    print(text)
    print(json.dumps({"hits": hits, "stampede": stampede}, indent=1))
    if args.write:
        command = (
            f".venv/bin/python benchmarks/cache.py --rounds {args.rounds} --calls {args.calls}"
        )
        write_section("cache", f"## Cache\n\nReproduce: `{command} --write`\n\n{text}")


if __name__ == "__main__":
    sys.exit(main())
