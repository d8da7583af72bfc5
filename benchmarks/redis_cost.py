#!/usr/bin/env python3
"""Redis-side cost of a lock: server CPU per cycle and memory per held lock, with anchors.

Run:  .venv/bin/python benchmarks/redis_cost.py [--cycles 20000] [--locks 2000] [--write]

One throwaway redis-server, every contender in the same run (sync clients):
1. Server CPU per uncontended acquire+release cycle on one key: ``CONFIG RESETSTAT``, the
   cycles, then ``INFO commandstats``. A command a script runs is counted twice there, once
   under its own name and once inside the EVAL/EVALSHA that ran it, so the commands seen
   inside scripts (classified with ``MONITOR`` over a few cycles beforehand) are subtracted.
2. Per script: ``--locks`` distinct locks, each warmed by one cycle (a lock's steady state:
   its fence bookkeeping is there), then all acquired (server µs per acquire), then all
   released (µs per release).
3. Memory: ``MEMORY USAGE`` of every key the held locks created, per lock, and the growth of
   ``used_memory`` per held lock; after the release, the keys left and their longest TTL.
4. The cache (interlock only): server µs per hit, per fill (a miss: lease, load, fill) and
   per ``invalidate_tag``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from _common import machine, start_redis, write_section

# the same raw floor as benchmarks/locks.py: SET NX PX + compare-and-delete
RAW_RELEASE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)
# what the benchmark itself sends after CONFIG RESETSTAT
OWN = {"config|resetstat", "info", "echo", "monitor", "scan", "memory|usage", "pttl", "dbsize"}
TTL_S = 60

Acquire = Callable[[str], Any]
Release = Callable[[str, Any], None]


def _client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=5.0)


def make_contender(kind: str, url: str) -> tuple[str, Acquire, Release, Callable[[], None]]:
    """(key prefix, acquire(key), release(key, handle), close) for one library."""
    client = _client(url)
    if kind == "interlock":
        from interlock import Interlock

        il = Interlock(url, namespace="cost", registry=None)
        locks: dict[str, Any] = {}

        def il_acquire(key: str) -> Any:
            lock = locks.get(key)
            if lock is None:
                lock = locks[key] = il.lock("bench", key, ttl=TTL_S, auto_renew=False)
            return lock.acquire()

        return "cost:*", il_acquire, lambda _key, lease: lease.release(), il.close
    if kind == "redis-py Lock":

        def rp_acquire(key: str) -> Any:
            lock = client.lock(f"rp:{key}", timeout=TTL_S)
            lock.acquire(blocking=False)
            return lock

        return "rp:*", rp_acquire, lambda _key, lock: lock.release(), client.close
    if kind == "python-redis-lock":
        import redis_lock

        def prl_acquire(key: str) -> Any:
            lock = redis_lock.Lock(client, f"prl:{key}", expire=TTL_S)
            lock.acquire(blocking=False)
            return lock

        return "lock*prl:*", prl_acquire, lambda _key, lock: lock.release(), client.close
    if kind == "raw":
        release = client.register_script(RAW_RELEASE)

        def raw_acquire(key: str) -> str:
            token = uuid.uuid4().hex
            client.set(f"raw:{key}", token, nx=True, px=TTL_S * 1000)
            return token

        def raw_release(key: str, token: str) -> None:
            release(keys=[f"raw:{key}"], args=[token])

        return "raw:*", raw_acquire, raw_release, client.close
    raise ValueError(kind)


def kinds() -> list[str]:
    found = ["raw", "interlock", "redis-py Lock"]
    try:
        import redis_lock  # noqa: F401
    except ImportError:
        pass
    else:
        found.append("python-redis-lock")
    return found


# -- measuring --------------------------------------------------------------------------------


def classify(admin: Any, url: str, work: Callable[[], None]) -> dict[str, Counter[str]]:
    """Command name -> Counter of where it ran ('top' or 'lua') while ``work()`` ran."""
    import redis

    monitor = redis.Redis.from_url(url).monitor()
    seen: dict[str, Counter[str]] = {}
    marker = f"redis-cost-{uuid.uuid4().hex}"
    with monitor as m:
        work()
        admin.echo(marker)
        while True:
            event = m.next_command()
            words = event["command"].split(" ")
            if words[0].lower() == "echo" and marker in event["command"]:
                break
            name = words[0].lower().strip('"')
            where = "lua" if event.get("client_type") == "lua" else "top"
            seen.setdefault(name, Counter())[where] += 1
    return seen


def server_usec(admin: Any, where: dict[str, Counter[str]]) -> tuple[float, dict[str, float]]:
    """Top-level server µs since the last reset: (total, per command), nested ones excluded."""
    stats = admin.info("commandstats")
    per: dict[str, float] = {}
    for field, values in stats.items():
        name = field.removeprefix("cmdstat_")
        if name in OWN:
            continue
        seen = where.get(name.split("|")[0], Counter({"top": 1}))
        share = seen["top"] / ((seen["top"] + seen["lua"]) or 1)
        if share:
            per[name] = float(values["usec"]) * share
    return sum(per.values()), per


def measured(
    admin: Any, where: dict[str, Counter[str]], work: Callable[[], None]
) -> tuple[float, dict[str, float]]:
    admin.config_resetstat()
    work()
    return server_usec(admin, where)


def dataset(admin: Any) -> int:
    """Bytes of memory in use, less what the clients' buffers take."""
    memory = admin.info("memory")
    return int(memory["used_memory"]) - int(memory.get("mem_clients_normal", 0))


def scan(admin: Any, match: str) -> Iterator[bytes]:
    yield from admin.scan_iter(match=match, count=1000)


def lock_cost(url: str, kind: str, cycles: int, locks: int) -> dict[str, Any]:
    admin = _client(url)
    prefix, acquire, release, close = make_contender(kind, url)
    one = f"one-{uuid.uuid4().hex[:8]}"
    for _ in range(500):  # warm up connections, script caches, the listener
        release(one, acquire(one))
    where = classify(admin, url, lambda: [release(one, acquire(one)) for _ in range(20)])

    def cycle() -> None:
        for _ in range(cycles):
            release(one, acquire(one))

    total, per_command = measured(admin, where, cycle)
    run = f"k{uuid.uuid4().hex[:8]}-"  # this run's locks only: earlier runs' bookkeeping lingers
    names = [f"{run}{i}" for i in range(locks)]
    for name in names:  # each lock's steady state: its fence bookkeeping is there
        release(name, acquire(name))
    time.sleep(1.1)  # what lapses within a second (python-redis-lock's signal keys) is gone
    mine = run.encode()
    bookkeeping = [bytes(k) for k in scan(admin, prefix) if mine in bytes(k)]
    used_before = dataset(admin)
    handles: list[Any] = []
    acquire_us, _ = measured(admin, where, lambda: handles.extend(acquire(n) for n in names))
    used_after = dataset(admin)
    held_keys = [bytes(k) for k in scan(admin, prefix) if mine in bytes(k)]
    usage = [admin.memory_usage(k, samples=0) or 0 for k in held_keys]
    sample = {
        k.decode(): admin.memory_usage(k, samples=0)
        for k in held_keys
        if names[0].encode() + b"}" in k
    }
    release_us, _ = measured(
        admin, where, lambda: [release(n, h) for n, h in zip(names, handles, strict=True)]
    )
    left = [k for k in scan(admin, prefix) if mine in bytes(k)]
    ttls = [admin.pttl(k) for k in left]
    close()
    return {
        "cycle_us": total / cycles,
        "per_command": {name: usec / cycles for name, usec in per_command.items()},
        "acquire_us": acquire_us / locks,
        "release_us": release_us / locks,
        "keys_per_lock": len(held_keys) / locks,
        "bytes_per_lock": sum(usage) / locks,
        "sample": sample,
        "bookkeeping_per_lock": len(bookkeeping) / locks,
        "used_per_lock": (used_after - used_before) / locks,
        "left_per_lock": len(left) / locks,
        "left_ttl_s": max(ttls, default=0) / 1000,
    }


def cache_cost(url: str, ops: int) -> dict[str, float]:
    """Server µs per cache operation; each phase classified (MONITOR) on a sample of itself."""
    from interlock import Interlock

    admin = _client(url)
    il = Interlock(url, namespace="costcache", registry=None)
    cache = il.cache("products", ttl=600.0)
    doc = {"id": 42, "name": "widget", "price": 9.99, "tags": ["a", "b"]}
    shelf = ["shelf"]
    cache.get_or_load("hot", lambda: doc)
    cache.get_or_load("tagged", lambda: doc, tags=shelf)
    run = uuid.uuid4().hex[:8]
    fills = iter(range(10**9))

    def hit() -> None:
        cache.get_or_load("hot", lambda: doc)

    def tagged_hit() -> None:
        cache.get_or_load("tagged", lambda: doc, tags=shelf)

    def fill() -> None:
        cache.get_or_load(f"{run}-{next(fills)}", lambda: doc)

    def invalidate() -> None:
        cache.invalidate_tag("shelf")

    out: dict[str, Any] = {}
    for name, op in (("hit", hit), ("tagged hit", tagged_hit), ("fill", fill),
                     ("invalidate_tag", invalidate)):  # fmt: skip
        for _ in range(200):  # warm up
            op()
        where = classify(admin, url, lambda op=op: [op() for _ in range(20)])
        total, per = measured(admin, where, lambda op=op: [op() for _ in range(ops)])
        out[name] = total / ops
        out[f"{name} commands"] = ", ".join(f"`{n}` {u / ops:.2f}" for n, u in sorted(per.items()))
    il.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cycles", type=int, default=20_000)
    parser.add_argument("--locks", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=3, help="median over interleaved rounds")
    parser.add_argument("--write", action="store_true", help="record in benchmarks/RESULTS.md")
    args = parser.parse_args()
    contenders = kinds()
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in contenders}
    with start_redis() as server:
        time.sleep(2.1)  # past interlock's restart grace: a steady server, as in production
        for _ in range(args.rounds):
            for kind in random.sample(contenders, len(contenders)):
                runs[kind].append(lock_cost(server.url, kind, args.cycles, args.locks))
        cache = cache_cost(server.url, max(args.cycles // 10, 500))
        version = server.command("INFO", "server").split("redis_version:")[1].split()[0]

    def med(kind: str, field: str) -> float:
        return statistics.median(run[field] for run in runs[kind])

    ratio = {
        kind: statistics.median(
            run["cycle_us"] / base["cycle_us"]
            for run, base in zip(runs[kind], runs["raw"], strict=True)
        )
        for kind in contenders
    }
    lines = [
        "## Redis-side cost per lock",
        "",
        f"`.venv/bin/python benchmarks/redis_cost.py --cycles {args.cycles} --locks {args.locks}"
        f" --rounds {args.rounds} --write` — one throwaway redis-server {version} on loopback,"
        f" every contender in the same run (sync clients), {machine()}, 2 cores; medians of"
        f" {args.rounds} rounds, contenders in shuffled order each round (the ratio to raw is"
        " taken within each round).",
        "",
        "Server CPU (`INFO commandstats`, commands run inside scripts subtracted) per"
        f" uncontended acquire+release cycle on one key ({args.cycles} cycles), and per acquire"
        f" and per release over {args.locks} distinct warm locks; memory (`MEMORY USAGE` of"
        " every key a held lock creates; growth of `used_memory` per held lock); keys left after"
        " the release:",
        "",
        "| library | µs/cycle | vs raw | µs/acquire | µs/release | keys/lock | bytes/lock"
        " | used_memory/lock | keys left/lock (longest TTL) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in contenders:
        cycle = med(kind, "cycle_us")
        left = med(kind, "left_per_lock")
        ttl = max(run["left_ttl_s"] for run in runs[kind])
        lines.append(
            f"| {kind} | {cycle:.2f} | {ratio[kind]:.2f}x | {med(kind, 'acquire_us'):.2f}"
            f" | {med(kind, 'release_us'):.2f} | {med(kind, 'keys_per_lock'):.0f}"
            f" | {med(kind, 'bytes_per_lock'):.0f} | {med(kind, 'used_per_lock'):.0f}"
            f" | {left:.0f}" + (f" ({ttl:.0f} s)" if left else "") + " |"
        )
    lines += ["", "Where a cycle's µs go (top-level commands, last round):", ""]
    for kind in contenders:
        per = runs[kind][-1]["per_command"]
        parts = ", ".join(f"`{n}` {u:.2f}" for n, u in sorted(per.items()))
        lines.append(f"- {kind}: {parts}")
    sample = runs["interlock"][-1]["sample"]
    lines += [
        "",
        "interlock's keys of one held lock (`MEMORY USAGE` bytes): "
        + ", ".join(f"`{k}` {v}" for k, v in sample.items()),
        "",
        "The cache (interlock, sync `get_or_load` and `invalidate_tag`), server µs per"
        " operation (top-level commands):",
        "",
        "| operation | server µs | commands |",
        "|---|---:|---|",
        *(
            f"| {name} | {cache[name]:.2f} | {cache[name + ' commands']} |"
            for name in ("hit", "tagged hit", "fill", "invalidate_tag")
        ),
        "",
        "A hit is one GET (a tagged one: one script reading the entry and its tag versions);"
        " a fill is a miss: the lease script (which reads the entry), the load, the fill"
        " script; `invalidate_tag` is one script raising the tag's version.",
    ]
    report = "\n".join(lines)
    print(report)
    if args.write:
        write_section("redis_cost", report)


if __name__ == "__main__":
    main()
