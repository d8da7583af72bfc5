"""A separate process for the cache tests (run as a script: real processes, real pub/sub).

Each mode prints JSON lines on stdout and takes its cues from stdin, so the test drives
the processes without sleeping.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time

from interlock import AsyncInterlock, Interlock


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


async def stampede(url: str, namespace: str, callers: int, load_seconds: float) -> None:
    """``callers`` concurrent get_or_load calls on one cold key, started on "go"."""
    ail = AsyncInterlock(url, namespace=namespace)
    cache = ail.cache("stampede", lock_wait=10.0)
    await cache.get("warm-up")  # connect before the start line, not after
    loads: list[float] = []

    async def load() -> dict[str, object]:
        loads.append(time.time())
        await asyncio.sleep(load_seconds)
        return {"value": 42}

    say(state="ready")
    await asyncio.to_thread(sys.stdin.readline)
    values = await asyncio.gather(*(cache.get_or_load("hot", load) for _ in range(callers)))
    say(loads=len(loads), values=values)
    await ail.aclose()


def watch(url: str, namespace: str) -> None:
    """On "watch <key> <json>", read the key through a near cache until it has that value."""
    il = Interlock(url, namespace=namespace)
    cache = il.cache("coherence", near=True, near_ttl=60.0)
    say(state="ready")
    for line in sys.stdin:
        command, key, expected = line.split(" ", 2)
        if command != "watch":
            break
        wanted = json.loads(expected)
        cache.get(key)  # fill the near cache first
        say(state="watching", near=len(cache._near or ()))  # type: ignore[arg-type]
        reads = 0
        while cache.get(key) != wanted:
            reads += 1
            time.sleep(0.0005)  # polling cadence, so the listener thread gets the GIL
        say(seen_at=time.time(), reads=reads)
    il.close()


def slow_load(url: str, namespace: str) -> None:
    """Load a key slowly: print "loading" in the loader, return "old" after a line on stdin."""
    il = Interlock(url, namespace=namespace)
    cache = il.cache("race", lock_wait=10.0)

    def old() -> str:
        say(state="loading")
        sys.stdin.readline()
        return "old"

    value = cache.get_or_load(1, old, tags=["catalog"])
    say(value=value, after=cache.get(1))
    il.close()


def near_slow_load(url: str, namespace: str) -> None:
    """``slow_load`` with a near cache: after the stale load returns, read the key until
    the old value is gone and say when (the test invalidated the tag during the load)."""
    il = Interlock(url, namespace=namespace)
    cache = il.cache("race", lock_wait=10.0, near=True, near_ttl=30.0)

    def old() -> str:
        say(state="loading")
        sys.stdin.readline()
        return "old"

    value = cache.get_or_load(1, old, tags=["catalog"])
    deadline, reads = time.monotonic() + 10.0, 0
    while cache.get(1, tags=["catalog"]) == "old" and time.monotonic() < deadline:
        reads += 1
        time.sleep(0.0005)
    say(value=value, gone_at=time.time(), reads=reads)
    il.close()


async def storm(url: str, namespace: str, seconds: float, index: int, processes: int) -> None:
    """For ``seconds``: a thread and a task each load a key of their own on a miss (from
    the source of truth, the Redis key ``<namespace>:src``, slowly), while another thread
    and task read every process's keys without loading; all through near caches. Say
    every value read as [started, version]."""
    ail = AsyncInterlock(url, namespace=namespace)
    il = Interlock(url, namespace=namespace)
    acache = ail.cache("storm", near=True, near_ttl=30.0, ttl=30.0)
    cache = il.cache("storm", near=True, near_ttl=30.0, ttl=30.0)
    source = f"{namespace}:src"
    everyone = [f"{i}-{kind}" for i in range(processes) for kind in "sa"]
    reads: list[tuple[float, int]] = []

    async def aload() -> int:
        version = int(await ail.backend.execute("GET", source) or 0)
        await asyncio.sleep(random.random() * 0.02)
        return version

    def load() -> int:
        version = int(il.backend.execute("GET", source) or 0)
        time.sleep(random.random() * 0.02)
        return version

    await acache.get("warm-up")
    cache.get("warm-up")
    say(state="ready")
    await asyncio.to_thread(sys.stdin.readline)
    end = time.monotonic() + seconds

    async def loading_task() -> None:
        while time.monotonic() < end:
            started = time.time()
            version = await acache.get_or_load(f"{index}-a", aload, tags=["catalog"])
            reads.append((started, version))
            await asyncio.sleep(0.001)

    def loading_thread() -> None:
        while time.monotonic() < end:
            started = time.time()
            reads.append((started, cache.get_or_load(f"{index}-s", load, tags=["catalog"])))
            time.sleep(0.001)

    async def reading_task() -> None:
        while time.monotonic() < end:
            for key in everyone:
                started = time.time()
                if (version := await acache.get(key, tags=["catalog"])) is not None:
                    reads.append((started, version))
            await asyncio.sleep(0.001)

    def reading_thread() -> None:
        while time.monotonic() < end:
            for key in everyone:
                started = time.time()
                if (version := cache.get(key, tags=["catalog"])) is not None:
                    reads.append((started, version))
            time.sleep(0.001)

    await asyncio.gather(
        loading_task(), reading_task(),
        asyncio.to_thread(loading_thread), asyncio.to_thread(reading_thread),
    )  # fmt: skip
    say(reads=reads)
    il.close()
    await ail.aclose()


def hang_in_loader(url: str, namespace: str) -> None:
    """Take the fill lease and never finish: the test kills this process."""
    il = Interlock(url, namespace=namespace)
    cache = il.cache("crash", lock_wait=1.0)

    def forever() -> str:
        say(state="loading")
        time.sleep(3600)
        return "never"

    cache.get_or_load(1, forever)


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "stampede":
        asyncio.run(stampede(args[0], args[1], int(args[2]), float(args[3])))
    elif mode == "watch":
        watch(args[0], args[1])
    elif mode == "slow-load":
        slow_load(args[0], args[1])
    elif mode == "near-slow-load":
        near_slow_load(args[0], args[1])
    elif mode == "storm":
        asyncio.run(storm(args[0], args[1], float(args[2]), int(args[3]), int(args[4])))
    elif mode == "hang":
        hang_in_loader(args[0], args[1])
