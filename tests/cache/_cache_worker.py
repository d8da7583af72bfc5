"""A separate process for the cache tests (run as a script: real processes, real pub/sub).

Each mode prints JSON lines on stdout and takes its cues from stdin, so the test drives
the processes without sleeping.
"""

from __future__ import annotations

import asyncio
import json
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
    elif mode == "hang":
        hang_in_loader(args[0], args[1])
